"""A stand-in for a single-user server, for measuring JupyterHub's own cost.

JupyterHub tells the process it spawns where to listen in JUPYTERHUB_SERVICE_URL and
then polls that address until it answers. This process answers every request at once
with 200 and the hub's version header, and does nothing else.
"""

import asyncio
import os
import urllib.parse

ADDRESS = urllib.parse.urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
VERSION = os.environ.get("BENCH_HUB_VERSION", "")
ANSWER = (
    "HTTP/1.1 200 OK\r\n"
    f"X-JupyterHub-Version: {VERSION}\r\n"
    "Content-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
).encode()


async def answer(reader, writer):
    try:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.write(ANSWER)
        await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, OSError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(answer, ADDRESS.hostname or "127.0.0.1", ADDRESS.port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # the spawner stops its servers with SIGINT first
        pass
