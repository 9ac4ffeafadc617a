#!/usr/bin/env bash
# The web UI's figures in a real headless Chromium: the dashboard with 100 workspaces and
# the workspace page opening a session with 1,000 history events and a 200-file diff, from
# navigation to the last thing drawn; the bytes the pages load and the workspace page's
# first paint; and in the Terminal tab, a key's time from keydown to its echo drawn (p50,
# p99). Installs Chromium and chromedriver when missing. An optional argument is the
# number of rounds (20).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
    sudo_if_needed apt-get update -q
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
fi
cargo build --release --locked --bin berth --example bench_ui
target/release/examples/bench_ui "$@"
