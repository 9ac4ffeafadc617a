#!/usr/bin/env bash
# Runs berth's whole test suite on this machine: installs what the tests need when it is
# missing (Debian/Ubuntu packages), then checks formatting and lints and runs every test.
# This is the command the README gives and the one CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Packages the tests use, by the command that shows each is there.
declare -A package_of=(
    [git]=git
)
missing=()
for command in "${!package_of[@]}"; do
    command -v "$command" >/dev/null 2>&1 || missing+=("${package_of[$command]}")
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

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
