#!/usr/bin/env bash
# Open → agent ready for the real agents berth offers, beside each started bare (the
# process, ACP initialize and session/new), against a loopback stand-in of its provider.
# Installs Claude Code's and Codex's adapters and Gemini CLI with `berth agents install`
# into a cached data directory when missing. An optional argument is the number of rounds (5).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin berth --example bench_agents
home="${BERTH_BENCH_AGENTS_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/berth-test-agents}"
for agent in claude codex gemini; do
    BERTH_DATA="$home" target/release/berth agents install "$agent"
done
BERTH_BENCH_AGENTS="$home/agents" target/release/examples/bench_agents "$@"
