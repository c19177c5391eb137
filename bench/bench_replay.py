"""Timing fidelity and start-up of `rtproxy replay`.

1. Lateness of `--pace clock`: how late each server message goes out against its
   intended time (recorded offset / speed), p50/p99/max over every message, with
   1 client and with 50 concurrent clients, on a synthetic 10-minute voice
   recording (~50 server messages a second: 20 ms audio deltas, transcript
   deltas, a turn every 5 s). The replay server runs in this process (so every
   lateness figure is collected); the clients run in a subprocess. Each client
   stays --seconds (the schedule is the same all along the recording); the 50
   clients arrive at random times within one second, and only drain their
   sockets, so the figures are the server's own.
   Baseline, same run: the same server with `asyncio.sleep` until the
   due time (the event loop's timer alone, epoll millisecond timeouts).
2. Start-up: time from starting `rtproxy replay FILE` to accepting connections,
   on a one-hour recording vs a tiny one (medians of --repeat runs); and, for
   scale, what reading the hour-long file whole takes.

    .venv/bin/python bench/bench_replay.py [--seconds 60] [--speed 1] [--clients 50]

Targets on a 2-core machine: p99 < 1 ms with one client, < 3 ms with 50.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rtproxy import replay_server  # noqa: E402
from rtproxy.io.format import RecordingWriter, open_recording  # noqa: E402
from rtproxy.replay.script import lateness_stats  # noqa: E402
from rtproxy.replay.server import ReplayConfig, SessionReport, serve_replay  # noqa: E402

MS = 1_000_000
SPEECH = ROOT / "tests" / "data" / "speech_24k.pcm"


def synth_recording(path: Path, seconds: float) -> int:
    """A voice session: 20 ms output audio deltas (50/s), 100 ms input appends (10/s),
    a turn (commit, response.create, response events, transcript) every 5 s."""
    pcm = SPEECH.read_bytes() if SPEECH.exists() else bytes(range(256)) * 4000
    n = 0
    pos = 0

    def audio(nbytes: int) -> str:
        nonlocal pos
        if pos + nbytes > len(pcm):
            pos = 0
        chunk = pcm[pos : pos + nbytes]
        pos += nbytes
        return base64.b64encode(chunk).decode()

    with RecordingWriter(path) as w:
        w.write_header(rtproxy="bench", session_id="bench", started=time.time(),
                       url="ws://127.0.0.1/v1/realtime?model=gpt-realtime", model="gpt-realtime",
                       recorder="bench", upstream=None, redactions=[])
        w.write_handshake(method="GET", url="ws://127.0.0.1/v1/realtime?model=gpt-realtime",
                          path="/v1/realtime?model=gpt-realtime", http_version="HTTP/1.1",
                          request_headers=[], status=101, reason="Switching Protocols",
                          response_headers=[], response_body=b"", subprotocol=None, extensions=None,
                          t_request=time.time(), t_response=time.time())

        def send(t_ms: float, from_client: bool, obj: dict) -> None:
            nonlocal n
            w.write_message(int(t_ms * MS), from_client, True, json.dumps(obj).encode())
            n += 1

        send(0.3, False, {"type": "session.created", "session": {"id": "sess_1"}})
        t = 20.0
        k = 0
        end = seconds * 1000
        while t < end:
            if k % 5 == 0:
                send(t - 7, True, {"type": "input_audio_buffer.append", "audio": audio(4800)})
            if k % 250 == 0:
                send(t - 3, True, {"type": "input_audio_buffer.commit"})
                send(t - 2, True, {"type": "response.create"})
                send(t - 1, False, {"type": "response.created", "response": {"id": f"resp_{k}"}})
            send(t, False, {"type": "response.output_audio.delta", "response_id": f"resp_{k // 250}",
                            "delta": audio(960)})
            if k % 10 == 5:
                send(t + 1, False, {"type": "response.output_audio_transcript.delta", "delta": "word "})
            if k % 250 == 249:
                send(t + 2, False, {"type": "response.done", "response": {"status": "completed"}})
            t += 20.0
            k += 1
    return n


# Clients that only drain their sockets (an upgrade request by hand, then read and
# discard), so the harness costs next to nothing and lateness is the server's own.
CLIENT = r"""
import random, selectors, socket, sys, time
host, port, n, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
sel = selectors.DefaultSelector()
start = time.monotonic()
rng = random.Random(7)
pending = sorted(rng.random() for _ in range(n)) if n > 1 else [0.0]
total = 0
socks = []
while True:
    now = time.monotonic()
    while pending and now >= start + pending[0]:  # independent arrivals within one second
        pending.pop(0)
        s = socket.create_connection((host, port))
        s.sendall(b"GET /v1/realtime?model=gpt-realtime HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, now + seconds)
        socks.append(s)
    if not pending and not sel.get_map():
        break
    for key, _ in sel.select(0.005):
        try:
            data = key.fileobj.recv(1 << 20)
        except BlockingIOError:
            continue
        total += len(data)
        if not data or time.monotonic() >= key.data:
            sel.unregister(key.fileobj)
            key.fileobj.close()
print(total)
"""


async def lateness_run(
    path: Path, clients: int, seconds: float, speed: float, precise: bool
) -> tuple[list[list[int]], int]:
    """Serve ``path`` with --pace clock to ``clients`` for ``seconds``; every lateness (ns), per session."""
    replay_server._PRECISE = precise
    reports: list[SessionReport] = []
    stop = asyncio.Event()
    ready = asyncio.Event()
    port_box: list[int] = []
    cfg = ReplayConfig(str(path), "127.0.0.1", 0, speed, "clock", False, False)
    with open_recording(path) as r:
        handshake = r.recording.handshake or {}

    def on_ready(port: int) -> None:
        port_box.append(port)
        ready.set()

    server = asyncio.create_task(serve_replay(cfg, handshake, on_ready, lambda n, d: None, reports.append, stop))
    await ready.wait()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, "127.0.0.1", str(port_box[0]), str(clients), str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    while len(reports) < clients:
        await asyncio.sleep(0.05)
    stop.set()
    await server
    return [r.lateness_ns for r in reports], int(out.decode().strip() or 0)


def fmt(late: list[int]) -> str:
    p50, p99, mx = lateness_stats(late)
    return f"p50 {p50:6.3f} ms  p99 {p99:7.3f} ms  max {mx:7.3f} ms  ({len(late):,} msgs)"


def split(sessions: list[list[int]], offsets: list[int], speed: float, warmup_s: float = 1.0) -> tuple[list[int], list[int]]:
    """(every lateness, those of messages due after each session's first second)."""
    cut = warmup_s * 1e9 * (speed or 1.0)
    every = [x for s in sessions for x in s]
    steady = [x for s in sessions for i, x in enumerate(s) if offsets[i] >= cut]
    return every, steady


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def startup_time(path: Path) -> float:
    """Seconds from spawning `rtproxy replay` to a TCP connection being accepted."""
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "rtproxy", "replay", str(path), "--listen-port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), 0.5):
                    return time.perf_counter() - t0
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("rtproxy replay exited before listening") from None
                time.sleep(0.002)
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="how long each client listens")
    ap.add_argument("--speed", type=float, default=1.0, help="--speed of the replay")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=5, help="start-up runs per file")
    ap.add_argument("--skip-startup", action="store_true")
    ap.add_argument("--nice", type=int, default=0, help="run at this niceness (negative needs root)")
    ap.add_argument("--skip-lateness", action="store_true")
    args = ap.parse_args()
    if args.nice:
        os.nice(args.nice)
    tmp = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    try:
        if not args.skip_lateness:
            rec10 = tmp / "ten-minutes.rtrec"
            n = synth_recording(rec10, 600)
            with open_recording(rec10) as r:
                server_n = sum(1 for m in r.messages() if not m.from_client)
            with open_recording(rec10) as r:
                offsets = [m.t_ns for m in r.messages() if not m.from_client]
            print(f"10-minute recording: {n:,} messages ({server_n / 600:.1f} server messages/s), "
                  f"{rec10.stat().st_size / 1e6:.1f} MB; --pace clock --speed {args.speed}; "
                  f"each client listens {args.seconds:.0f} s; nice {os.nice(0)}; "
                  f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
            for clients in (1, args.clients):
                base, _ = asyncio.run(lateness_run(rec10, clients, args.seconds, args.speed, False))
                ours, got_o = asyncio.run(lateness_run(rec10, clients, args.seconds, args.speed, True))
                b_all, b_steady = split(base, offsets, args.speed)
                o_all, o_steady = split(ours, offsets, args.speed)
                print(f"  {clients:>2} client(s), all messages    baseline (event-loop timer): {fmt(b_all)}")
                print(f"  {clients:>2} client(s), all messages    rtproxy replay (timerfd)   : {fmt(o_all)}")
                print(f"  {clients:>2} client(s), after 1st second baseline (event-loop timer): {fmt(b_steady)}")
                print(f"  {clients:>2} client(s), after 1st second rtproxy replay (timerfd)   : {fmt(o_steady)}")
                print(f"      p50 ratio baseline/rtproxy {lateness_stats(b_all)[0] / max(1e-6, lateness_stats(o_all)[0]):.0f}x, "
                      f"p99 ratio {lateness_stats(b_all)[1] / max(1e-6, lateness_stats(o_all)[1]):.1f}x; "
                      f"clients received {got_o / 1e6:,.1f} MB")
        if not args.skip_startup:
            hour = tmp / "one-hour.rtrec"
            tiny = tmp / "tiny.rtrec"
            t = time.perf_counter()
            n_hour = synth_recording(hour, 3600)
            made = time.perf_counter() - t
            synth_recording(tiny, 1)
            print(f"one-hour recording: {n_hour:,} messages, {hour.stat().st_size / 1e6:.1f} MB (written in {made:.1f} s)")
            t = time.perf_counter()
            with open_recording(hour) as r:
                whole = sum(1 for _ in r.messages())
            load_all = time.perf_counter() - t
            hours = [startup_time(hour) for _ in range(args.repeat)]
            tinys = [startup_time(tiny) for _ in range(args.repeat)]
            mh, mt = statistics.median(hours), statistics.median(tinys)
            print(f"  start-up to accepting connections, median of {args.repeat}: one hour {mh * 1000:.0f} ms, "
                  f"tiny {mt * 1000:.0f} ms (ratio {mh / mt:.2f})")
            print(f"  for scale: reading the hour-long file whole ({whole:,} messages) takes {load_all * 1000:.0f} ms")
    finally:
        for f in tmp.glob("*"):
            f.unlink()
        os.rmdir(tmp)


if __name__ == "__main__":
    main()
