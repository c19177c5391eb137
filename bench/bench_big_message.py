"""Time one 15 MiB ``input_audio_buffer.append`` takes: direct vs plain
mitmdump vs ``rtproxy record``. With ``--image``, the message is instead a
``conversation.item.create`` of the same size holding an ``input_image`` (random
bytes as a base64 data URL, as a photo is) and a text part that says "token":
what the recorder's secret scan has to get through.

The message is a real-shaped append event whose base64 audio is looped real
speech (tests/data/speech_24k.pcm), 15 MiB in all. Each sample: the client
sends it, then ``SYNC``; the server (bench/echo_server.py, own process)
answers with its count once the whole message arrived. One connection per
set-up, one warm-up message each, then interleaved rounds; medians printed
with the ratio to mitmdump.

Run::

    .venv/bin/python bench/bench_big_message.py            # 7 samples each, ~1 minute
    .venv/bin/python bench/bench_big_message.py --quick    # 3 samples each
    .venv/bin/python bench/bench_big_message.py --image    # a 15 MiB image message
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import SPEECH, Target, connect, machine_line, median, targets, workdir  # noqa: E402

SIZE = 15 * 1024 * 1024


def big_append(size: int = SIZE) -> str:
    head = '{"type":"input_audio_buffer.append","event_id":"event_CQx7ZkP3mA1bT9sWvE2nR","audio":"'
    n_b64 = (size - len(head) - 2) // 4 * 4
    pcm = SPEECH.read_bytes()
    n_pcm = n_b64 // 4 * 3
    pcm = (pcm * (n_pcm // len(pcm) + 1))[:n_pcm]
    text = head + base64.b64encode(pcm).decode() + '"}'
    return text + " " * (size - len(text))


def big_image(size: int = SIZE) -> str:
    head = ('{"type":"conversation.item.create","event_id":"event_CQx7ZkP3mA1bT9sWvE2nR","item":{"type":"message",'
            '"role":"user","content":[{"type":"input_text","text":"what does the token on this badge say?"},'
            '{"type":"input_image","image_url":"data:image/jpeg;base64,')
    tail = '"}]}}'
    n_b64 = (size - len(head) - len(tail)) // 4 * 4
    text = head + base64.b64encode(random.Random(7).randbytes(n_b64 // 4 * 3)).decode() + tail
    return text + " " * (size - len(text))


async def sample(ws, msg: str, expect: int) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    await ws.send(msg)
    await ws.send("SYNC")
    count = int(await ws.recv())
    dt = time.perf_counter() - t0
    if count != expect:
        raise RuntimeError(f"server counted {count}, expected {expect}")
    return dt * 1000


async def run(args: argparse.Namespace) -> None:
    msg = big_image() if args.image else big_append()
    assert len(msg.encode()) == SIZE
    print(machine_line())
    kind = "conversation.item.create with an input_image" if args.image else "input_audio_buffer.append"
    print(f"message: {kind}, {SIZE:,} B ({SIZE / 2**20:.0f} MiB)")
    names = ["direct", "mitmdump", "rtproxy record"]
    times: dict[str, list[float]] = {n: [] for n in names}
    with workdir() as wd, targets(wd) as ts:
        conns = {}
        for t in ts:
            conns[t.name] = await connect(t.url("/count")).__aenter__()
            await conns[t.name].send("SYNC")
            await conns[t.name].recv()
        try:
            for t in ts:  # one warm-up message each (first-use allocations), not counted
                await sample(conns[t.name], msg, 1)
            for r in range(args.samples):
                order: list[Target] = ts[r % 3:] + ts[:r % 3]
                for t in order:
                    times[t.name].append(await sample(conns[t.name], msg, r + 2))
                print(f"sample {r + 1}/{args.samples}: " + ", ".join(
                    f"{n} {times[n][-1]:.0f} ms" for n in names), flush=True)
        finally:
            for c in conns.values():
                await c.close()
        await asyncio.sleep(0.5)
        files = sorted((wd / "recordings").glob("*.rtrec"))
        total = sum(f.stat().st_size for f in files)
        print(f"rtproxy record file: {total:,} B for {args.samples + 1} x {SIZE:,} B of messages"
              + ("" if args.image else " (looped speech: zstd finds the repeats)"))

    print()
    print(f"median of {args.samples} (min..max), ms per 15 MiB message, client send -> server has it all")
    m = median(times["mitmdump"])
    for n in names:
        v = times[n]
        print(f"  {n:<16}{median(v):>8.0f} ms   [{min(v):.0f}..{max(v):.0f}]   "
              f"x{median(v) / m:.2f} of mitmdump")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 samples")
    ap.add_argument("--samples", type=int, default=7)
    ap.add_argument("--image", action="store_true", help="a 15 MiB conversation.item.create with an image")
    args = ap.parse_args()
    if args.quick:
        args.samples = 3
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
