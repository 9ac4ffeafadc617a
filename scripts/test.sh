#!/usr/bin/env bash
# Runs berth's whole test suite on this machine: installs what the tests need when it is
# missing (Debian/Ubuntu packages), then checks formatting and lints and runs every test.
# This is the command the README gives and the one CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Packages the tests use, by the program that shows each is there. Sandboxes see only
# the system's own directories, so python3 must be Debian's, in /usr/bin.
declare -A package_of=(
    [git]=git
    [bwrap]=bubblewrap
    [slirp4netns]=slirp4netns
    [nft]=nftables
    [ip]=iproute2
    [nsenter]=util-linux
    [dockerd]=docker.io
    [/usr/bin/busybox]=busybox-static
    [/usr/bin/python3]=python3
    [/usr/bin/awk]=mawk
    [ssh]=openssh-client
    [/usr/sbin/sshd]=openssh-server
    [chromium]=chromium
    [chromedriver]=chromium-driver
    [psql]=postgresql
)
missing=()
for program in "${!package_of[@]}"; do
    command -v "$program" >/dev/null 2>&1 || missing+=("${package_of[$program]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== installing ${missing[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is not installed; install Rust (https://rustup.rs) and run this again" >&2
    exit 1
fi

# A third-party ACP agent the tests run through berth (crates.io).
if ! command -v elizacp >/dev/null 2>&1; then
    echo "== installing elizacp"
    cargo install elizacp --locked
fi

# npm packages the tests run (a real OpenID provider), cached between runs in
# BERTH_TEST_NODE; node itself comes with Debian's nodejs when it is missing.
export BERTH_TEST_NODE="${BERTH_TEST_NODE:-${XDG_CACHE_HOME:-$HOME/.cache}/berth-test-node}"
if ! command -v npm >/dev/null 2>&1; then
    echo "== installing nodejs and npm"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
fi
node_packages=(oidc-provider@9.13.3)
if [ ! -f "$BERTH_TEST_NODE/node_modules/oidc-provider/package.json" ]; then
    echo "== installing ${node_packages[*]} into $BERTH_TEST_NODE"
    mkdir -p "$BERTH_TEST_NODE"
    [ -f "$BERTH_TEST_NODE/package.json" ] || echo '{"private": true}' >"$BERTH_TEST_NODE/package.json"
    (cd "$BERTH_TEST_NODE" && npm install --no-audit --no-fund --loglevel=error "${node_packages[@]}")
fi

# The real coding agents the tests run through berth (the ACP adapters of Claude Code and
# Codex, and Gemini CLI, each against a stand-in of its provider), installed by berth's own
# `berth agents install` into a data directory of their own, cached between runs (nothing
# is fetched when the version installed is the one berth names).
agents_home="${BERTH_TEST_AGENTS_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/berth-test-agents}"
export BERTH_TEST_AGENTS="$agents_home/agents"
for agent in claude codex gemini; do
    BERTH_DATA="$agents_home" cargo run --quiet --locked --bin berth -- agents install "$agent"
done

# What the script started, stopped when it ends however it ends.
cleanups=()
run_cleanups() { for cleanup in "${cleanups[@]}"; do "$cleanup"; done; }
trap run_cleanups EXIT

# A Docker engine for the docker driver's tests: the one DOCKER_HOST names if it answers,
# else one of our own, with its socket and data under a temporary directory, stopped at
# the end.
if ! docker version >/dev/null 2>&1; then
    docker_dir="$(mktemp -d /tmp/berth-dockerd.XXXXXX)"
    echo "== starting dockerd in $docker_dir"
    as_root dockerd --host "unix://$docker_dir/docker.sock" --data-root "$docker_dir/data" \
        --exec-root "$docker_dir/exec" --pidfile "$docker_dir/docker.pid" >"$docker_dir/dockerd.log" 2>&1 &
    stop_dockerd() {
        as_root kill "$(cat "$docker_dir/docker.pid" 2>/dev/null)" 2>/dev/null || true
        for _ in $(seq 1 100); do [ -e "$docker_dir/docker.pid" ] || break; sleep 0.1; done
        as_root rm -rf "$docker_dir" 2>/dev/null || true
    }
    cleanups+=(stop_dockerd)
    export DOCKER_HOST="unix://$docker_dir/docker.sock"
    for _ in $(seq 1 300); do
        docker version >/dev/null 2>&1 && break
        sleep 0.1
    done
    docker version >/dev/null || { cat "$docker_dir/dockerd.log" >&2; exit 1; }
fi

# A PostgreSQL server for the store's tests on PostgreSQL: the one
# BERTH_TEST_POSTGRES_URL names, else a cluster of our own (initdb as the postgres user)
# on a free loopback port, with its data under a temporary directory, stopped at the end.
if [ -z "${BERTH_TEST_POSTGRES_URL:-}" ]; then
    pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    [ -x "$pg_bin/initdb" ] || { echo "error: PostgreSQL's initdb is not installed" >&2; exit 1; }
    as_postgres() {
        if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$1"; else sudo -u postgres sh -c "$1"; fi
    }
    pg_dir="$(mktemp -d /tmp/berth-postgres.XXXXXX)"
    as_root chown postgres "$pg_dir"
    pg_port="$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    echo "== starting PostgreSQL on 127.0.0.1:$pg_port ($pg_dir)"
    as_postgres "$pg_bin/initdb -D $pg_dir/data -A trust -U postgres >$pg_dir/initdb.log 2>&1"
    as_postgres "$pg_bin/pg_ctl -D $pg_dir/data -l $pg_dir/server.log -w -o '-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1' start >/dev/null"
    stop_postgres() {
        as_postgres "$pg_bin/pg_ctl -D $pg_dir/data -m immediate stop >/dev/null 2>&1" || true
        as_root rm -rf "$pg_dir" 2>/dev/null || true
    }
    cleanups+=(stop_postgres)
    export BERTH_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The browser tests save a screenshot of every page they visit here.
export BERTH_SCREENSHOTS="${BERTH_SCREENSHOTS:-$PWD/target/screenshots}"
rm -rf "$BERTH_SCREENSHOTS"
echo "== cargo test (browser screenshots go to $BERTH_SCREENSHOTS)"
cargo test --workspace --locked
# The API document against the live server: schemathesis (from PyPI, pinned).
scripts/schemathesis.sh
echo "== screenshots of the browser tests: $BERTH_SCREENSHOTS"
find "$BERTH_SCREENSHOTS" -name '*.png' | sort
