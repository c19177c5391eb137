"""Proxy memory over a 100,000-message session: ``rtproxy record`` vs plain
mitmdump (which keeps every WebSocket message of an open flow), and with
``--with-addon`` mitmdump with rtproxy's addon (``-s addons/realtime_recorder.py``).

One WebSocket session per set-up, client -> server, each message a 20 ms
``input_audio_buffer.append`` of real speech (24 kHz PCM16, ~1.3 KB of JSON).
At 0, 25k, 50k, 75k and 100k messages the client sends ``SYNC`` and waits for
the server's count (so the proxy has handled every message), then the proxy
process's VmRSS is read from /proc/PID/status.

Run::

    .venv/bin/python bench/bench_memory.py            # 100,000 messages, ~2-2.5 minutes
    .venv/bin/python bench/bench_memory.py --with-addon   # + mitmdump -s addon, ~3.5 minutes
    .venv/bin/python bench/bench_memory.py --quick    # 20,000 messages
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    ROOT, SPEECH, Target, connect, echo_server, machine_line, mitmdump, rss_kib, rtproxy_record, workdir,
)

CHUNK = 960  # 20 ms of 24 kHz PCM16


def messages(pcm: bytes):  # type: ignore[no-untyped-def]
    i = 0
    while True:
        off = (i * CHUNK) % (len(pcm) - CHUNK)
        audio = base64.b64encode(pcm[off:off + CHUNK]).decode()
        yield f'{{"type":"input_audio_buffer.append","event_id":"event_{i:021d}","audio":"{audio}"}}'
        i += 1


async def session(t: Target, total: int, marks: list[int]) -> list[tuple[int, int, float]]:
    """[(messages sent, RSS KiB, seconds so far)] at each mark."""
    assert t.pid is not None
    pcm = SPEECH.read_bytes()
    gen = messages(pcm)
    out = []
    sent = 0
    async with connect(t.url("/count")) as ws:
        t0 = time.perf_counter()
        for mark in marks:
            while sent < mark:
                await ws.send(next(gen))
                sent += 1
            await ws.send("SYNC")
            count = int(await ws.recv())
            if count != sent:
                raise RuntimeError(f"{t.name}: server counted {count} of {sent}")
            await asyncio.sleep(0.3)
            out.append((sent, rss_kib(t.pid), time.perf_counter() - t0))
            print(f"  {t.name}: {sent:>7,} messages  RSS {out[-1][1] / 1024:7.1f} MiB", flush=True)
    return out


async def run(args: argparse.Namespace) -> None:
    marks = [args.messages * k // args.samples for k in range(args.samples + 1)]
    print(machine_line())
    print(f"{args.messages:,} messages of ~1.3 KB (20 ms audio appends) in one session per set-up")
    results: dict[str, list[tuple[int, int, float]]] = {}
    with workdir() as wd, echo_server(wd) as srv:
        setups = {
            "rtproxy record": lambda: rtproxy_record(srv.port, wd),
            "mitmdump": lambda: mitmdump(srv.port, wd),
            "mitmdump -s realtime_recorder": lambda: mitmdump(
                srv.port, wd, "-s", str(ROOT / "addons" / "realtime_recorder.py"),
                "--set", f"rtrec_dir={wd / 'addon-recordings'}"),
        }
        for name, start in setups.items():
            if not args.with_addon and "-s" in name:
                continue
            if args.only and name != args.only:
                continue
            with start() as t:
                t.name = name
                results[name] = await session(t, args.messages, marks)

    print()
    print("VmRSS of the proxy process (MiB) after N messages")
    names = list(results)
    print(f"{'messages':>10}" + "".join(f"{n:>32}" for n in names))
    for i, mark in enumerate(marks):
        print(f"{mark:>10,}" + "".join(f"{results[n][i][1] / 1024:>32.1f}" for n in names))
    print(f"{'growth':>10}" + "".join(
        f"{(results[n][-1][1] - results[n][0][1]) / 1024:>+32.1f}" for n in names))
    print(f"{'msg/s':>10}" + "".join(
        f"{args.messages / results[n][-1][2]:>32,.0f}" for n in names))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20,000 messages")
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--samples", type=int, default=4, help="RSS samples after the first (evenly spaced)")
    ap.add_argument("--only", choices=["rtproxy record", "mitmdump", "mitmdump -s realtime_recorder"],
                    help="run one set-up only")
    ap.add_argument("--with-addon", action="store_true",
                    help="also run mitmdump -s addons/realtime_recorder.py (about a minute more)")
    args = ap.parse_args()
    if args.quick:
        args.messages = 20_000
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
