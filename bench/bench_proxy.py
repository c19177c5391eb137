"""Per-message cost on loopback: direct vs plain mitmdump vs ``rtproxy record``.

One run starts an echo server (bench/echo_server.py, its own process), a stock
``mitmdump --mode reverse:...`` and an ``rtproxy record`` in front of it, then
measures, in interleaved rounds (the order rotates every round):

* echo round trip of 200 B text messages, one at a time: p50 and p99;
* one-way throughput, 200 B and 8 KB text messages (the 8 KB ones are
  ``input_audio_buffer.append`` events with base64 audio, so the recorder's
  audio path is exercised): the client sends N messages, then ``SYNC``; the
  server answers with its count, which must equal N.

It prints the median over rounds for each set-up and the ratio of per-message
time rtproxy record / mitmdump (target: below 1.25).

Run::

    .venv/bin/python bench/bench_proxy.py            # about 1-2 minutes
    .venv/bin/python bench/bench_proxy.py --quick    # a few seconds per set-up
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SPEECH, Target, connect, machine_line, median, pct, targets, workdir  # noqa: E402


def small_message(size: int = 200) -> str:
    """A transcript-delta-shaped JSON text of exactly ``size`` bytes."""
    base = {"type": "response.output_audio_transcript.delta", "event_id": "event_CQx7ZkP3mA1bT9sWvE2nR",
            "item_id": "item_CQx7ZjKLmN8oP9qR0sT1u", "output_index": 0, "content_index": 0, "delta": ""}
    pad = size - len(json.dumps(base))
    base["delta"] = ("hello there " * 40)[:pad]
    text = json.dumps(base)
    assert len(text) == size, len(text)
    return text


def audio_message(size: int = 8192) -> str:
    """An input_audio_buffer.append of ``size`` bytes with real speech as base64."""
    pcm = SPEECH.read_bytes()
    head = '{"type":"input_audio_buffer.append","event_id":"event_CQx7ZkP3mA1bT9sWvE2nR","audio":"'
    n_b64 = (size - len(head) - 2) // 4 * 4
    audio = base64.b64encode(pcm[48000:48000 + n_b64 // 4 * 3]).decode()
    text = head + audio + '"}'
    return text + " " * (size - len(text))  # trailing JSON whitespace keeps it valid


async def round_trip(t: Target, msg: str, n: int, warmup: int) -> list[float]:
    """Latencies in ms of n echo round trips."""
    out = []
    async with connect(t.url("/echo")) as ws:
        for i in range(warmup + n):
            t0 = time.perf_counter_ns()
            await ws.send(msg)
            back = await ws.recv()
            dt = time.perf_counter_ns() - t0
            if back != msg:
                raise RuntimeError(f"{t.name}: echo differs")
            if i >= warmup:
                out.append(dt / 1e6)
    return out


async def one_way(t: Target, msg: str, n: int) -> float:
    """Messages per second, client -> server, counted by the server."""
    async with connect(t.url("/count")) as ws:
        await ws.send("SYNC")
        await ws.recv()  # connection fully up through the proxy
        t0 = time.perf_counter()
        for _ in range(n):
            await ws.send(msg)
        await ws.send("SYNC")
        count = int(await ws.recv())
        dt = time.perf_counter() - t0
    if count != n:
        raise RuntimeError(f"{t.name}: server counted {count} of {n}")
    return n / dt


async def run(args: argparse.Namespace) -> None:
    small, big = small_message(200), audio_message(8192)
    names = ["direct", "mitmdump", "rtproxy record"]
    rtt50: dict[str, list[float]] = {k: [] for k in names}
    rtt99: dict[str, list[float]] = {k: [] for k in names}
    tp_small: dict[str, list[float]] = {k: [] for k in names}
    tp_big: dict[str, list[float]] = {k: [] for k in names}
    print(machine_line())
    with workdir() as wd, targets(wd) as ts:
        for r in range(args.rounds):
            order = ts[r % 3:] + ts[:r % 3]
            for t in order:
                lat = await round_trip(t, small, args.rtt_n, warmup=50)
                rtt50[t.name].append(pct(lat, 50))
                rtt99[t.name].append(pct(lat, 99))
                tp_small[t.name].append(await one_way(t, small, args.small_n))
                tp_big[t.name].append(await one_way(t, big, args.big_n))
            print(f"round {r + 1}/{args.rounds}: " + "; ".join(
                f"{n}: rtt p50 {rtt50[n][-1]:.3f} ms, {tp_small[n][-1]:,.0f} / {tp_big[n][-1]:,.0f} msg/s"
                for n in names), flush=True)
        rec_files = sorted((wd / "recordings").glob("*.rtrec"))
        print(f"rtproxy record wrote {len(rec_files)} files, "
              f"{sum(f.stat().st_size for f in rec_files):,} B")

    print()
    print(f"medians over {args.rounds} rounds (spread min..max in brackets); "
          f"ratio = per-message time rtproxy record / mitmdump (target < 1.25)")
    hdr = f"{'metric':<28}{'direct':>22}{'mitmdump':>22}{'rtproxy record':>22}{'ratio':>8}"
    print(hdr)
    print("-" * len(hdr))

    def row(label: str, data: dict[str, list[float]], fmt: str, higher_better: bool) -> None:
        cells = []
        for n in names:
            v = data[n]
            cells.append(f"{format(median(v), fmt)} [{format(min(v), fmt)}..{format(max(v), fmt)}]")
        m, rec = median(data["mitmdump"]), median(data["rtproxy record"])
        ratio = m / rec if higher_better else rec / m
        print(f"{label:<28}" + "".join(f"{c:>22}" for c in cells) + f"{ratio:>8.2f}")

    row("echo RTT p50, 200 B (ms)", rtt50, ".3f", False)
    row("echo RTT p99, 200 B (ms)", rtt99, ".3f", False)
    row("one-way msg/s, 200 B", tp_small, ",.0f", True)
    row("one-way msg/s, 8 KB", tp_big, ",.0f", True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds of small counts")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--rtt-n", type=int, default=1000, help="round trips per round")
    ap.add_argument("--small-n", type=int, default=5000, help="200 B messages per round")
    ap.add_argument("--big-n", type=int, default=2000, help="8 KB messages per round")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.rtt_n, args.small_n, args.big_n = 2, 200, 1000, 300
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
