#!/usr/bin/env bash
# JupyterHub on this machine doing berth's job, measured from its REST API: start a
# server → ready, stop it, stop-all of 10 and 50, reads per second, the hub's memory.
# Loopback only. Installs pinned JupyterHub from PyPI into $BENCH_STATE/venv once.
#
#   bench/jupyterhub/run.sh                 # light: a stand-in server, the hub's own cost
#   MODES="light real" bench/jupyterhub/run.sh   # also real jupyter servers (minutes)
#
# Results: $BENCH_STATE/results/<mode>.json (default state: ${TMPDIR:-/tmp}/berth-jupyterhub).
# Every process started here (proxy, hub, and the servers the hub spawned) is stopped at
# the end, also on an error or Ctrl-C.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="${BENCH_STATE:-${TMPDIR:-/tmp}/berth-jupyterhub}"
venv="$state/venv"
results="$state/results"
mkdir -p "$results"
modes="${MODES:-light}"

if [ ! -x "$venv/bin/jupyterhub" ] || [ ! -x "$venv/bin/configurable-http-proxy" ]; then
    echo "== installing JupyterHub into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "jupyterhub==6.1.1" "configurable-http-proxy==0.4.0" \
        "jupyter_server==2.21.1" "httpx==0.28.1"
fi

free_port() { "$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
secret() { "$venv/bin/python" -c 'import secrets; print(secrets.token_hex(32))'; }

proxy_pid="" hub_pid=""
stop_all() {
    # The hub first: it stops the servers it spawned (cleanup_servers).
    for pid in $hub_pid $proxy_pid; do
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    # And anything it left: a server still running from this run's directory.
    pkill -f "$here/stand_in_server.py" 2>/dev/null || true
    proxy_pid="" hub_pid=""
}
trap stop_all EXIT

for mode in $modes; do
    run="$state/run/$mode"
    rm -rf "$run" && mkdir -p "$run"
    export BENCH_MODE="$mode" BENCH_RUN="$run"
    export BENCH_PROXY_PORT="$(free_port)" BENCH_PROXY_API_PORT="$(free_port)" BENCH_HUB_PORT="$(free_port)"
    export BENCH_TOKEN="$(secret)" CONFIGPROXY_AUTH_TOKEN="$(secret)"
    export BENCH_API="http://127.0.0.1:$BENCH_HUB_PORT/hub/api"
    echo "== $mode: proxy :$BENCH_PROXY_PORT, hub :$BENCH_HUB_PORT"
    "$venv/bin/configurable-http-proxy" --ip 127.0.0.1 --port "$BENCH_PROXY_PORT" \
        --api-ip 127.0.0.1 --api-port "$BENCH_PROXY_API_PORT" \
        --default-target "http://127.0.0.1:$BENCH_HUB_PORT" >"$run/proxy.log" 2>&1 </dev/null &
    proxy_pid=$!
    (cd "$run" && PATH="$venv/bin:$PATH" exec "$venv/bin/jupyterhub" -f "$here/hub_config.py") \
        >"$run/hub.log" 2>&1 </dev/null &
    hub_pid=$!
    for _ in $(seq 1 1200); do
        curl -sf -o /dev/null "$BENCH_API/" && break
        kill -0 "$hub_pid" 2>/dev/null || { cat "$run/hub.log" >&2; exit 1; }
        sleep 0.1
    done
    "$venv/bin/python" "$here/measure.py" --mode "$mode" --hub-pid "$hub_pid" --out "$results/$mode.json" >/dev/null
    stop_all
    echo "   $results/$mode.json"
done
"$venv/bin/pip" list 2>/dev/null | grep -iE '^(jupyterhub|configurable-http-proxy|jupyter.server|tornado|httpx) ' \
    > "$results/versions.txt" || true
