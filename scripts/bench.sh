#!/usr/bin/env bash
# Runs `berth bench` with every sandbox kind side by side: none, bubblewrap (isolated and
# outbound networking) and docker. Starts a Docker engine of its own when none answers,
# and, unless BERTH_SANDBOX_IMAGE names one, imports a small local image (busybox, git,
# and the C libraries berth and git need: berth itself is bind-mounted), since no
# registry may be reachable. Extra arguments go to `berth bench` (e.g. --rounds 300 --json).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked
berth=target/release/berth

if ! docker version >/dev/null 2>&1 && command -v dockerd >/dev/null 2>&1; then
    docker_dir="$(mktemp -d /tmp/berth-bench-dockerd.XXXXXX)"
    dockerd --host "unix://$docker_dir/docker.sock" --data-root "$docker_dir/data" \
        --exec-root "$docker_dir/exec" --pidfile "$docker_dir/docker.pid" >"$docker_dir/dockerd.log" 2>&1 &
    trap 'kill "$(cat "$docker_dir/docker.pid" 2>/dev/null)" 2>/dev/null; sleep 1; rm -rf "$docker_dir"' EXIT
    export DOCKER_HOST="unix://$docker_dir/docker.sock"
    for _ in $(seq 1 300); do docker version >/dev/null 2>&1 && break; sleep 0.1; done
fi

if [ -z "${BERTH_SANDBOX_IMAGE:-}" ] && docker version >/dev/null 2>&1; then
    root="$(mktemp -d)"
    mkdir -p "$root/bin" "$root/tmp" "$root/workspace" "$root/etc"
    cp "$(command -v busybox)" "$root/bin/busybox"
    for applet in sh cat mkdir; do ln -s busybox "$root/bin/$applet"; done
    # berth runs git in the sandbox's image.
    mkdir -p "$root/usr/bin"
    cp "$(command -v git)" "$root/usr/bin/git"
    for helper in git-upload-pack git-receive-pack; do ln -s git "$root/usr/bin/$helper"; done
    for library in $( (ldd "$berth"; ldd "$(command -v git)") | grep -o '/[^ ]*' | sort -u); do
        [ -e "$root$library" ] && continue
        mkdir -p "$root$(dirname "$library")"
        cp "$library" "$root$library"
    done
    tar -C "$root" -c . | docker import - berth-bench-sandbox:latest >/dev/null
    rm -rf "$root"
    export BERTH_SANDBOX_IMAGE=berth-bench-sandbox:latest
fi

"$berth" bench "$@"
