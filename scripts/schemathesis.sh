#!/usr/bin/env bash
# Runs schemathesis (pinned, from PyPI, in a virtual environment under target/) against a
# live `berth serve` with a token: every check, a bounded number of examples per
# operation, a fixed seed (SCHEMATHESIS_SEED changes it) so a run can be repeated. Fails
# on any server error or any answer the OpenAPI document does not describe; its summary
# is printed. scripts/test.sh runs it after the Rust tests.
set -euo pipefail
cd "$(dirname "$0")/.."

version="4.32.5"
venv="target/schemathesis-$version"
if [ ! -x "$venv/bin/schemathesis" ]; then
    echo "== installing schemathesis $version"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

# The same build as `cargo test --workspace` (all targets, so the same features): after
# the tests it is already there.
cargo build --locked --workspace --all-targets
data="$(mktemp -d /tmp/berth-schemathesis.XXXXXX)"
token="berth_schemathesis_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
BERTH_DATA="$data" BERTH_LISTEN=127.0.0.1:0 BERTH_PREVIEW_LISTEN=127.0.0.1:0 BERTH_ADMIN_TOKEN="$token" \
    BERTH_ISOLATION=none BERTH_LOG=warn BERTH_GIT_LOCAL_ROOTS=/tmp \
    target/debug/berth serve >"$data/serve.out" 2>"$data/serve.log" &
server=$!
stop() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -rf "$data"
}
trap stop EXIT
url=""
for _ in $(seq 1 200); do
    url="$(sed -n 's/^berth listening on //p' "$data/serve.out")"
    [ -n "$url" ] && break
    sleep 0.05
done
[ -n "$url" ] || { cat "$data/serve.log" >&2; echo "berth serve did not start" >&2; exit 1; }

echo "== schemathesis $version against $url (every check, 40 examples per operation)"
"$venv/bin/schemathesis" run "$url/api/openapi.json" --checks all --max-examples 40 \
    -H "Authorization: Bearer $token" --no-color --seed "${SCHEMATHESIS_SEED:-20261201}"
