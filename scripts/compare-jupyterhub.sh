#!/usr/bin/env bash
# berth beside JupyterHub on this machine, in one go: runs the peer benchmark of
# bench/jupyterhub (it installs pinned JupyterHub from PyPI into a venv) and
# `berth bench`, then prints the ratios JupyterHub / berth for start, stop, stop-all of
# 10 and 50, API read throughput (berth / JupyterHub) and memory per session.
#
#   scripts/compare-jupyterhub.sh                       # JupyterHub light mode (the hub's own cost)
#   MODES="light real" scripts/compare-jupyterhub.sh    # also real jupyter servers (minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
state="${BENCH_STATE:-${TMPDIR:-/tmp}/berth-jupyterhub}"
export BENCH_STATE="$state"
export MODES="${MODES:-light}"

cargo build --release --locked
echo "== JupyterHub ($MODES)"
bench/jupyterhub/run.sh
echo "== berth"
target/release/berth bench --rounds 200 --sandboxes none,bwrap --json > "$state/results/berth.json"

python3 - "$state/results" $MODES <<'PY'
import json, sys
results, modes = sys.argv[1], sys.argv[2:]
berth = {f["name"]: f for f in json.load(open(f"{results}/berth.json"))["figures"]}
def b(prefix):
    for name, figure in berth.items():
        if name.startswith(prefix):
            return figure["p50"]
    raise SystemExit(f"berth bench has no figure '{prefix}'")
open_ready = b("open idle workspace → agent ready, ACP initialised (isolation none)")
open_bwrap = b("open idle workspace → agent ready, ACP initialised (bwrap")
close = b("close one session (isolation none)")
close10, close50 = b("close-all of 10 sessions"), b("close-all of 50 sessions")
reads = max(f["p50"] for n, f in berth.items() if n.startswith("API read throughput"))
per_session = b("server memory per live session, 1000")
print("| figure | JupyterHub | berth | ratio |")
print("|---|---|---|---|")
for mode in modes:
    jh = json.load(open(f"{results}/{mode}.json"))
    start = jh["start_ms"]["median"]
    stop = jh["stop_ms"]["median"]
    stop10 = jh["stop_all_ms"]["10"]["median"]
    stop50 = jh["stop_all_ms"]["50"]["median"]
    jh_reads = max(jh["reads_per_s"].values())
    memory = jh["hub_rss_kb"]
    hub_per_server = (memory["with_running"] - memory["fresh"]) / memory["running"]
    rows = [
        (f"start one server → ready ({mode}) vs open → agent ready (none)", start, open_ready, "ms"),
        (f"start one server → ready ({mode}) vs open → agent ready (bwrap)", start, open_bwrap, "ms"),
        (f"stop one server ({mode}) vs close one session", stop, close, "ms"),
        (f"stop-all of 10 ({mode}) vs close-all of 10", stop10, close10, "ms"),
        (f"stop-all of 50 ({mode}) vs close-all of 50", stop50, close50, "ms"),
    ]
    for name, theirs, ours, unit in rows:
        print(f"| {name} | {theirs:.1f} {unit} | {ours:.2f} {unit} | {theirs / ours:.0f}× faster |")
    print(f"| API reads ({mode}): GET /users/{{u}} vs GET /api/workspaces | {jh_reads:.0f} req/s | {reads:.0f} req/s | {reads / jh_reads:.0f}× more |")
    print(f"| hub memory per running server ({mode}) vs server memory per live session | {hub_per_server:.0f} KiB | {per_session:.1f} KiB | {hub_per_server / max(per_session, 0.1):.0f}× less |")
PY
