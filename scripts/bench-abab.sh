#!/usr/bin/env bash
# berth bench of two builds in one run, alternating (before, after, before, after): the
# given commit's and this checkout's, both release builds, with the same arguments.
#   scripts/bench-abab.sh <before-commit> [berth bench arguments...]
# e.g. scripts/bench-abab.sh a7de504 --sandboxes none,bwrap,docker --docker-rounds 20 \
#        --hold 0 --database postgres://postgres@127.0.0.1:5432/postgres
set -euo pipefail
cd "$(dirname "$0")/.."
before="${1:?the commit to compare with}"
shift
work="$(mktemp -d /tmp/berth-abab.XXXXXX)"
trap 'git worktree remove --force "$work/src" >/dev/null 2>&1 || true' EXIT
git worktree add --force --detach "$work/src" "$before" >/dev/null
(cd "$work/src" && CARGO_TARGET_DIR="$work/target" cargo build --release --locked --bin berth)
cargo build --release --locked --bin berth
cp "$work/target/release/berth" "$work/berth-before"
cp target/release/berth "$work/berth-after"
for round in 1 2; do
    for which in before after; do
        echo "=== $which (round $round)"
        "$work/berth-$which" bench "$@"
    done
done
