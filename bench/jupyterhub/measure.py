"""Measures a running JupyterHub doing what berth does: start a server and wait until it
is ready, stop it, stop many at once, answer API reads, and the hub's memory.

    measure.py --mode light --hub-pid PID --out results/light.json

The hub's API is at BENCH_API with the token BENCH_TOKEN. Every figure is a wall-clock
time seen by a client of the REST API, as `berth bench` measures berth's.
"""

import argparse
import asyncio
import json
import os
import statistics
import time

import httpx

API = os.environ["BENCH_API"]
HEADERS = {"Authorization": "token " + os.environ["BENCH_TOKEN"]}
PATIENCE = 300.0


def summary(samples):
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))],
    }


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def until(check, what):
    deadline = time.monotonic() + PATIENCE
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting: {what}")
        await asyncio.sleep(0.005)


async def server_of(client, user):
    answer = await client.get(f"{API}/users/{user}")
    answer.raise_for_status()
    return answer.json().get("servers", {}).get("")


async def start(client, user):
    """Asks for the user's server; returns when the hub says it is ready."""
    answer = await client.post(f"{API}/users/{user}/server")
    if answer.status_code not in (201, 202):
        raise SystemExit(f"start of {user}: {answer.status_code} {answer.text}")

    async def ready():
        server = await server_of(client, user)
        return bool(server and server.get("ready"))

    await until(ready, f"{user}'s server ready")


async def stop(client, user):
    """Asks for the user's server to stop; returns when the hub no longer has it."""
    answer = await client.delete(f"{API}/users/{user}/server")
    if answer.status_code not in (202, 204):
        raise SystemExit(f"stop of {user}: {answer.status_code} {answer.text}")

    async def gone():
        return await server_of(client, user) is None

    await until(gone, f"{user}'s server stopped")


async def make_users(client, names):
    answer = await client.post(f"{API}/users", json={"usernames": names})
    if answer.status_code not in (201, 409):
        raise SystemExit(f"creating users: {answer.status_code} {answer.text}")


async def timed(work):
    began = time.perf_counter()
    await work
    return (time.perf_counter() - began) * 1000


async def reads_per_second(client, user, clients, seconds):
    count = 0
    deadline = time.monotonic() + seconds

    async def reader():
        nonlocal count
        while time.monotonic() < deadline:
            answer = await client.get(f"{API}/users/{user}")
            answer.raise_for_status()
            count += 1

    began = time.perf_counter()
    await asyncio.gather(*(reader() for _ in range(clients)))
    return count / (time.perf_counter() - began)


async def measure(args):
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(headers=HEADERS, timeout=PATIENCE, limits=limits) as client:
        figures = {"mode": args.mode, "hub_rss_kb": {"fresh": rss_kb(args.hub_pid)}}
        await make_users(client, ["single"])
        starts, stops = [], []
        for _ in range(args.rounds):
            starts.append(await timed(start(client, "single")))
            stops.append(await timed(stop(client, "single")))
        figures["start_ms"], figures["stop_ms"] = summary(starts), summary(stops)

        figures["stop_all_ms"] = {}
        for n in args.counts:
            users = [f"many-{n}-{i}" for i in range(n)]
            await make_users(client, users)
            samples = []
            for _ in range(args.batch_rounds):
                await asyncio.gather(*(start(client, user) for user in users))
                if n == max(args.counts) and "with_running" not in figures["hub_rss_kb"]:
                    figures["hub_rss_kb"]["with_running"] = rss_kb(args.hub_pid)
                    figures["hub_rss_kb"]["running"] = n
                samples.append(await timed(asyncio.gather(*(stop(client, user) for user in users))))
            figures["stop_all_ms"][str(n)] = summary(samples)

        figures["reads_per_s"] = {}
        for clients in args.clients:
            figures["reads_per_s"][str(clients)] = await reads_per_second(client, "single", clients, args.seconds)
    return figures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", required=True)
    parser.add_argument("--hub-pid", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "20")))
    parser.add_argument("--batch-rounds", type=int, default=int(os.environ.get("BENCH_BATCH_ROUNDS", "3")))
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_READ_SECONDS", "5")))
    args = parser.parse_args()
    figures = asyncio.run(measure(args))
    with open(args.out, "w") as out:
        json.dump(figures, out, indent=2)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
