"""A plain ``websockets`` server for the benchmarks, run as its own process.

Paths select the behaviour:

* ``/echo``  — every message is sent back verbatim (round-trip latency);
* ``/count`` (any other path) — messages are counted, not answered; a text
  message ``"SYNC"`` is answered with the count so far (one-way throughput,
  memory samples).

Run::

    .venv/bin/python bench/echo_server.py --port 9100
"""

from __future__ import annotations

import argparse
import asyncio

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


async def handler(ws: ServerConnection) -> None:
    path = ws.request.path.split("?", 1)[0]
    try:
        if path.endswith("/echo"):
            async for msg in ws:
                await ws.send(msg)
        else:
            n = 0
            async for msg in ws:
                if msg == "SYNC":
                    await ws.send(str(n))
                else:
                    n += 1
    except ConnectionClosed:
        pass


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, max_size=None, compression=None, ping_interval=None):
        print(f"echo server on ws://127.0.0.1:{port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="benchmark WebSocket server")
    ap.add_argument("--port", type=int, required=True)
    try:
        asyncio.run(main(ap.parse_args().port))
    except KeyboardInterrupt:
        pass
