"""Capacity: how many concurrent real-time voice sessions a proxy carries on
loopback, direct vs stock mitmdump vs ``rtproxy record``.

The load, per session: one WebSocket client that sends a 20 ms chunk of
PCM16 24 kHz mono audio (960 B of real speech from tests/data/speech_24k.pcm,
1,280 B of base64) as an ``input_audio_buffer.append`` every 20 ms, paced in
real time on an absolute schedule (chunk k is due at start + k x 20 ms, so a
late send does not shift the ones after it; the N sessions are spread evenly
over the 20 ms period). Each append carries a stamp in its ``event_id``:
session, sequence number and the monotonic clock just before the send. The
server (a ``websockets`` server in its own process: this script with
``--serve``) answers every append with a ``response.output_audio.delta`` of
the same audio size that echoes the stamp. A session is thus 100 messages/s,
50 each way, all ~1.4 KB JSON text frames.

Measured by the client, per delta: round trip = receive time - stamp (the
monotonic clock is the same in every process on Linux), over every message
after the first ``--warmup`` seconds: p50 and p99 over all sessions. Delivered
= deltas received / appends sent, counted until ``--grace`` seconds after the
last append was due: on loopback nothing is lost, so a share under 100% is a
proxy whose backlog grew beyond the grace period. Lag = how late the client
sent an append against its due time (the client keeping time). CPU = share of
one core used by each process during the sending window (/proc), and "other":
what the rest of the machine used meanwhile (other work: noise).

The client load runs in ``--procs`` processes (asyncio in each, uvloop if
installed); each session is websockets' sans-I/O client protocol on an asyncio
transport, so a send is one write that never waits for the peer and a client
process carries hundreds of sessions. The direct figures at each N show the
floor: if the direct p99 exceeds ``--direct-warn-ms`` the script says so, as
the proxies' figures at that N then include client, server or machine delays.

For each N (``--sessions``) the set-ups run one after the other in a rotating
order (``--rounds`` times, medians shown), each with a fresh server and a
fresh proxy: direct, stock ``mitmdump --mode reverse:... -q`` (all default
addons, flows kept as stock does) and ``rtproxy record`` (its recordings, in a
temporary directory, are counted and removed). Once a set-up delivers under
50% of the messages at some N, its larger N are skipped.

The bar: p99 added latency (p99 - direct p99 at the same N, same round) under
10 ms with every message delivered. The script prints the largest N at the bar
for each proxy.

Run::

    .venv/bin/python bench/bench_capacity.py              # N=10,25,50,100,200, 10 s each; ~3 min
    .venv/bin/python bench/bench_capacity.py --quick      # N=10,25, 5 s each
    .venv/bin/python bench/bench_capacity.py --sessions 4,6,8,10,12,15 --rounds 3 --json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from array import array
from pathlib import Path
from typing import Any, Callable, Iterator, cast

from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PYTHON,
    SPEECH,
    Target,
    _process,
    free_port,
    machine_line,
    median,
    mitmdump,
    pct,
    rtproxy_record,
    workdir,
)

PERIOD = 0.020  # s of audio per append
CHUNK = 960  # bytes of PCM16 24 kHz mono in 20 ms
SETUPS = ("direct", "mitmdump", "rtproxy record")
BAR_MS = 10.0
HOPELESS = 0.5  # delivered share under which larger N are skipped
NOISY = 0.3  # cores used by other work during a point above which it is marked


def audio_chunks(n: int = 50, skip: int = 0) -> list[str]:
    """n consecutive 20 ms chunks of real speech, base64 (1,280 chars each)."""
    pcm = SPEECH.read_bytes()
    out = []
    for i in range(n):
        a = (skip + i * CHUNK) % (len(pcm) - CHUNK)
        out.append(base64.b64encode(pcm[a:a + CHUNK]).decode())
    return out


# --------------------------------------------------------------------- server

def _serve(port: int) -> None:
    """The Realtime-shaped server: one output_audio.delta per append, echoing its stamp."""
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    chunks = audio_chunks(50, skip=24000 * 2 * 5)  # another stretch of the speech than the client's
    head = '{"type":"response.output_audio.delta","event_id":"'
    mid = ('","response_id":"resp_CQx7ZkP3mA1bT9sWvE2nR","item_id":"item_CQx7ZjKLmN8oP9qR0sT1u",'
           '"output_index":0,"content_index":0,"delta":"')
    key = '"event_id":"'

    async def handler(ws: ServerConnection) -> None:
        n = 0
        try:
            async for msg in ws:
                if not isinstance(msg, str):
                    continue
                i = msg.find(key)
                if i < 0:
                    continue
                i += len(key)
                stamp = msg[i:msg.index('"', i)]
                await ws.send(head + stamp + mid + chunks[n % 50] + '"}')
                n += 1
        except ConnectionClosed:
            pass

    async def main() -> None:
        async with serve(handler, "127.0.0.1", port, max_size=None, compression=None, ping_interval=None,
                         close_timeout=2):
            print(f"capacity server on ws://127.0.0.1:{port}", flush=True)
            await asyncio.Future()

    _use_uvloop()
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass


@contextlib.contextmanager
def delta_server(wd: Path) -> Iterator[Target]:
    port = free_port()
    args = [PYTHON, str(Path(__file__).resolve()), "--serve", str(port)]
    with _process(args, port, wd / f"server-{port}.log") as proc:
        yield Target("direct", port, proc.pid)


# --------------------------------------------------------------------- client

def _use_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


class _Session(asyncio.Protocol):
    """One client session on websockets' sans-I/O protocol: a send is one
    ``transport.write`` (never waits for the peer), a received frame costs
    no task switch, so one client process carries many sessions."""

    def __init__(self, sid: int, url: str, n_warm: int, rtt: array) -> None:
        self.sid, self.n_warm, self.rtt = sid, n_warm, rtt
        self.proto = ClientProtocol(parse_uri(url), max_size=None)  # no extensions: no compression
        self.prefix = b'{"type":"input_audio_buffer.append","event_id":"evt_%d_' % sid
        self.key = b'"event_id":"evt_%d_' % sid
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.sent = self.received = self.bad = 0
        self.partial: bytearray | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.proto.send_request(self.proto.connect())
        self._flush()

    def _flush(self) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        for data in self.proto.data_to_send():
            if data:
                t.write(data)
            elif t.can_write_eof():
                t.write_eof()

    def send(self, seq: int, now_ns: int, audio: bytes) -> bool:
        if self.transport is None or self.transport.is_closing() or not self.opened.done():
            return False
        self.proto.send_text(b'%s%d_%d","audio":"%s"}' % (self.prefix, seq, now_ns, audio))
        self._flush()
        self.sent += 1
        return True

    def data_received(self, data: bytes) -> None:
        now_ns = time.monotonic_ns()
        self.proto.receive_data(data)
        for ev in self.proto.events_received():
            if isinstance(ev, Response):
                if not self.opened.done():
                    if self.proto.handshake_exc is not None:
                        self.opened.set_exception(self.proto.handshake_exc)
                    else:
                        self.opened.set_result(None)
                continue
            if ev.opcode is Opcode.TEXT:
                if ev.fin:
                    self._message(bytes(ev.data), now_ns)
                else:
                    self.partial = bytearray(ev.data)
            elif ev.opcode is Opcode.CONT and self.partial is not None:
                self.partial += ev.data
                if ev.fin:
                    self._message(bytes(self.partial), now_ns)
                    self.partial = None
        self._flush()

    def _message(self, msg: bytes, now_ns: int) -> None:
        i = msg.find(self.key)
        if i < 0:
            self.bad += 1
            return
        i += len(self.key)
        seq, t_ns = msg[i:msg.index(b'"', i)].split(b"_")
        self.received += 1
        if int(seq) >= self.n_warm:
            self.rtt.append((now_ns - int(t_ns)) / 1e6)

    def eof_received(self) -> bool | None:
        self.proto.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing() and self.proto.state is State.OPEN:
            self.proto.send_close(1000)
            self._flush()


async def _worker_main(conn: Any, port: int, sessions: list[int], n_total: int, args: dict[str, Any]) -> dict:
    """Connect this process's sessions, wait for the common start time, run the schedule."""
    seconds, warmup, grace = args["seconds"], args["warmup"], args["grace"]
    n_msgs = int(round(seconds / PERIOD))
    n_warm = int(round(warmup / PERIOD))
    chunks = [c.encode() for c in audio_chunks(50)]
    rtt: array = array("d")
    lag: array = array("d")
    errors: list[str] = []
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(20)

    async def open_one(sid: int) -> _Session | None:
        sess = _Session(sid, f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime&s={sid}", n_warm, rtt)
        async with sem:
            try:
                await asyncio.wait_for(loop.create_connection(lambda: sess, "127.0.0.1", port), 30)
                await asyncio.wait_for(sess.opened, 30)
                return sess
            except Exception as exc:  # noqa: BLE001 - counted: the session's messages are lost
                errors.append(f"connect {sid}: {type(exc).__name__}: {exc}")
                if sess.transport is not None:
                    sess.transport.abort()
                return None

    opened = await asyncio.gather(*(open_one(s) for s in sessions))
    live = [s for s in opened if s is not None]
    conn.send(("ready", len(live)))
    if not conn.poll(120):
        raise TimeoutError("no start time from the parent")
    t0 = conn.recv()
    deadline = t0 + PERIOD + seconds + grace
    deadline_ns = int(deadline * 1e9)

    # The schedule: session s sends chunk k at t0 + PERIOD * (s / n_total + k). All
    # sessions have the same period, so the due times come in a fixed cyclic order.
    order = sorted(live, key=lambda s: s.sid)
    offsets = [PERIOD * s.sid / n_total for s in order]
    mono, mono_ns = time.monotonic, time.monotonic_ns
    k = j = burst = 0
    while order and k < n_msgs:
        due = t0 + offsets[j] + k * PERIOD
        delay = due - mono()
        if delay > 0:
            await asyncio.sleep(delay)
            burst = 0
        elif (burst := burst + 1) >= 64:  # behind schedule: still let the replies in
            await asyncio.sleep(0)
            burst = 0
        now_ns = mono_ns()
        if now_ns > deadline_ns:
            break
        if order[j].send(k, now_ns, chunks[k % 50]) and k >= n_warm:
            lag.append(now_ns / 1e9 - due)
        j += 1
        if j == len(order):
            j, k = 0, k + 1

    # Wait for the last deltas, at most until the deadline.
    while mono() < deadline and any(s.received < s.sent for s in live):
        await asyncio.sleep(0.01)
    for s in live:
        s.close()
    try:
        await asyncio.wait_for(asyncio.gather(*(s.closed for s in live)), 3)
    except (TimeoutError, asyncio.TimeoutError):
        pass
    for s in live:
        if s.transport is not None and not s.closed.done():
            s.transport.abort()
    return {
        "connected": len(live),
        "sent": sum(s.sent for s in live),
        "received": sum(s.received for s in live),
        "bad": sum(s.bad for s in live),
        "errors": errors[:20],
        "rtt": rtt,
        "lag": lag,
    }


def _worker(conn: Any, port: int, sessions: list[int], n_total: int, args: dict[str, Any]) -> None:
    _use_uvloop()
    try:
        res = asyncio.run(_worker_main(conn, port, sessions, n_total, args))
        conn.send(("done", res))
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _cpu_s(pid: int) -> float:
    """utime + stime of a process in seconds (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(k) for k in (task / "children").read_text().split()]
    except OSError:
        pass
    return out


_cpu_s_own = _cpu_s


def _proxy_cpu_s(pid: int) -> float:
    """CPU seconds of the proxy with its child processes (``rtproxy record
    --workers``). A caller that replaced ``_cpu_s`` counts the tree itself."""
    if _cpu_s is not _cpu_s_own:
        return _cpu_s(pid)
    return _cpu_s(pid) + sum(_cpu_s(k) for k in _children(pid))


def _busy_s() -> float:
    """CPU time the whole machine spent busy (all cores, seconds), from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(f) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def run_load(target: Target, server_pid: int, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """N sessions through target; the client load split over worker processes."""
    ctx = mp.get_context("spawn")
    n_procs = max(1, min(args.procs, n))
    wargs = {"seconds": args.seconds, "warmup": args.warmup, "grace": args.grace}
    workers = []
    for w in range(n_procs):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(child, target.port, list(range(w, n, n_procs)), n, wargs),
                        daemon=True)
        p.start()
        child.close()
        workers.append((p, parent))
    try:
        connected = 0
        for _, c in workers:
            if not c.poll(120):
                raise TimeoutError("a client process did not connect its sessions in 120 s")
            kind, val = c.recv()
            if kind != "ready":
                raise RuntimeError(f"client process: {val}")
            connected += val
        t0 = time.monotonic() + 0.3
        for _, c in workers:
            c.send(t0)
        # CPU over the sending window after the warm-up: proxy, server, each client process.
        pids = {"server": server_pid, **({"proxy": target.pid} if target.pid != server_pid else {})}
        pids.update({f"client{i}": p.pid for i, (p, _) in enumerate(workers) if p.pid})
        time.sleep(max(0.0, t0 + args.warmup - time.monotonic()))
        def cpu_of(key: str, pid: int) -> float:
            return _proxy_cpu_s(pid) if key == "proxy" else _cpu_s(pid)

        before = {k: cpu_of(k, v) for k, v in pids.items()}
        busy_a, t_a = _busy_s(), time.monotonic()
        time.sleep(max(0.0, t0 + args.seconds - time.monotonic()))
        busy_b, t_b = _busy_s(), time.monotonic()
        per = {k: (cpu_of(k, v) - before[k]) / (t_b - t_a) for k, v in pids.items()}
        clients = [v for k, v in per.items() if k.startswith("client")]
        cpu = {k: v for k, v in per.items() if not k.startswith("client")}
        cpu["client"] = sum(clients)
        cpu["client_max"] = max(clients, default=0.0)
        # Everything else the machine did meanwhile (other work, this script's parent): noise.
        cpu["other"] = max(0.0, (busy_b - busy_a) / (t_b - t_a) - sum(per.values()))
        results = []
        limit = args.seconds + args.grace + 30
        for _, c in workers:
            if not c.poll(max(1.0, t0 + limit - time.monotonic())):
                raise TimeoutError("a client process did not finish")
            kind, val = c.recv()
            if kind != "done":
                raise RuntimeError(f"client process: {val}")
            results.append(val)
    finally:
        for p, c in workers:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
            c.close()

    rtt = sorted(x for r in results for x in r["rtt"])
    lag = sorted(x for r in results for x in r["lag"])
    sent = sum(r["sent"] for r in results)
    received = sum(r["received"] for r in results)
    scheduled = n * int(round(args.seconds / PERIOD))
    errors = [e for r in results for e in r["errors"]]
    return {
        "sessions": n,
        "setup": target.name,
        "connected": connected,
        "scheduled": scheduled,
        "sent": sent,
        "received": received,
        "bad": sum(r["bad"] for r in results),
        "delivered": received / sent if sent else 0.0,
        "sent_share": sent / scheduled,
        "rtt_p50_ms": pct(rtt, 50) if rtt else None,
        "rtt_p99_ms": pct(rtt, 99) if rtt else None,
        "rtt_max_ms": rtt[-1] if rtt else None,
        "send_lag_p99_ms": pct(lag, 99) * 1e3 if lag else None,
        "cpu": cpu,
        "errors": errors[:5],
    }


@contextlib.contextmanager
def setup(name: str, wd: Path, tag: str, info: dict[str, Any],
          recorder: Callable[[int, Path], contextlib.AbstractContextManager[Target]] | None = None,
          ) -> Iterator[tuple[Target, int]]:
    """A fresh server and, unless direct, a fresh proxy in front of it. For
    rtproxy record, ``info`` gets the number and size of the files it wrote
    (counted once it has stopped, then deleted). ``recorder(upstream port, out dir)``
    starts the recorder (default: ``rtproxy record`` of this tree)."""
    with delta_server(wd) as srv:
        if name == "direct":
            yield srv, srv.pid or 0
        elif name == "mitmdump":
            with mitmdump(srv.port, wd) as t:
                yield t, srv.pid or 0
        else:
            out = wd / f"rec-{tag}"
            try:
                with (recorder or (lambda up, o: rtproxy_record(up, wd, o)))(srv.port, out) as t:
                    yield t, srv.pid or 0
                files = list(out.glob("*.rtrec"))
                info["recordings"] = len(files)
                info["recorded_bytes"] = sum(f.stat().st_size for f in files)
            finally:
                shutil.rmtree(out, ignore_errors=True)


# --------------------------------------------------------------------- report

def _fmt(v: float | None, f: str = ".2f") -> str:
    return "-" if v is None else format(v, f)


def _med(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return median(vals) if vals else None


def summarize(n: int, name: str, rounds: list[dict[str, Any]], direct: list[dict[str, Any]]) -> dict[str, Any]:
    """One row: medians over rounds; added p99 against the direct run of the same round."""
    added = []
    for r in rounds:
        d = next((x for x in direct if x["round"] == r["round"]), None)
        if name != "direct" and d and r["rtt_p99_ms"] is not None and d["rtt_p99_ms"] is not None:
            added.append(r["rtt_p99_ms"] - d["rtt_p99_ms"])
    sent = sum(r["sent"] for r in rounds)
    return {
        "sessions": n,
        "setup": name,
        "rounds": len(rounds),
        "rtt_p50_ms": _med([r["rtt_p50_ms"] for r in rounds]),
        "rtt_p99_ms": _med([r["rtt_p99_ms"] for r in rounds]),
        "rtt_p99_ms_min": min((r["rtt_p99_ms"] for r in rounds if r["rtt_p99_ms"] is not None), default=None),
        "rtt_p99_ms_max": max((r["rtt_p99_ms"] for r in rounds if r["rtt_p99_ms"] is not None), default=None),
        "added_p99_ms": _med(added) if added else None,
        "delivered": sum(r["received"] for r in rounds) / sent if sent else 0.0,
        "all_delivered": all(r["received"] == r["sent"] == r["scheduled"] for r in rounds),
        "send_lag_p99_ms": _med([r["send_lag_p99_ms"] for r in rounds]),
        "cpu": {k: median([r["cpu"][k] for r in rounds]) for k in rounds[0]["cpu"]},
        "skipped": False,
        "per_round": rounds,
    }


def at_bar(row: dict[str, Any]) -> bool:
    return (not row["skipped"] and row["all_delivered"] and row["added_p99_ms"] is not None
            and row["added_p99_ms"] < BAR_MS)


def run(args: argparse.Namespace) -> dict[str, Any]:
    log = sys.stderr if args.json else sys.stdout
    started = time.monotonic()
    meta = {"machine": machine_line(), "seconds": args.seconds, "warmup": args.warmup, "grace": args.grace,
            "rounds": args.rounds, "procs": args.procs, "uvloop": _uvloop_available(),
            "sessions": args.sessions, "bar_added_p99_ms": BAR_MS}
    print(meta["machine"], file=log)
    print(f"{args.seconds:g} s per point, {args.rounds} round(s), {args.procs} client processes"
          f"{' (uvloop)' if meta['uvloop'] else ''}, grace {args.grace:g} s", file=log, flush=True)
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    hopeless: dict[str, int] = {}
    k = 0
    with workdir() as wd:
        for n in args.sessions:
            raw: dict[str, list[dict[str, Any]]] = {name: [] for name in SETUPS}
            for rnd in range(args.rounds):
                order = list(SETUPS[k % 3:] + SETUPS[:k % 3])  # rotate so no set-up always runs first
                k += 1
                for name in order:
                    if name in hopeless:
                        continue
                    info: dict[str, Any] = {}
                    with setup(name, wd, f"{n}-{rnd}", info) as (t, server_pid):
                        r = run_load(t, server_pid, n, args)
                    r["round"] = rnd
                    r.update(info)
                    raw[name].append(r)
                    cpu = r["cpu"]
                    print(f"N={n:>4} round {rnd + 1} {name:<15} p50 {_fmt(r['rtt_p50_ms'])} ms, "
                          f"p99 {_fmt(r['rtt_p99_ms'])} ms, delivered {r['received']:,}/{r['sent']:,} "
                          f"(sent {r['sent']:,}/{r['scheduled']:,}), send lag p99 {_fmt(r['send_lag_p99_ms'])} ms, "
                          f"CPU proxy {_fmt(cpu.get('proxy'), '.0%')} server {cpu['server']:.0%} "
                          f"client {cpu['client']:.0%} (max/process {cpu['client_max']:.0%}) other {cpu['other']:.0%}"
                          + (f"; {r['recordings']} recordings, {r['recorded_bytes'] / 1e6:.1f} MB"
                             if "recordings" in r else "")
                          + (f"; errors: {r['errors'][0]}" if r["errors"] else ""), file=log, flush=True)
                    if name != "direct" and r["received"] < HOPELESS * r["scheduled"]:
                        hopeless[name] = n
            for name in SETUPS:
                if raw[name]:
                    rows.append(summarize(n, name, raw[name], raw["direct"]))
                else:
                    rows.append({"sessions": n, "setup": name, "skipped": True,
                                 "reason": f"delivered < {HOPELESS:.0%} at N={hopeless[name]}"})
                    print(f"N={n:>4} {name:<15} skipped (delivered < {HOPELESS:.0%} at N={hopeless[name]})",
                          file=log, flush=True)
            d = _find(rows, n, "direct")
            if d and not d["skipped"]:
                if d["rtt_p99_ms"] is not None and d["rtt_p99_ms"] > args.direct_warn_ms:
                    warnings.append(f"direct p99 at N={n} is {d['rtt_p99_ms']:.1f} ms (> {args.direct_warn_ms:g} ms): "
                                    "the client, the server or other work on the machine adds delay at this N")
                    print("warning: " + warnings[-1], file=log, flush=True)
                if d["cpu"]["client_max"] > 0.8:
                    warnings.append(f"a client process used {d['cpu']['client_max']:.0%} of a core at N={n} (direct): "
                                    "more --procs")
                    print("warning: " + warnings[-1], file=log, flush=True)
    best: dict[str, int | None] = {}
    for name in SETUPS[1:]:
        ok = [n for n in args.sessions if at_bar(_find(rows, n, name) or {"skipped": True})]
        best[name] = max(ok) if ok else None
    return {"meta": meta, "points": rows, "largest_n_at_bar": best, "warnings": warnings,
            "wall_s": round(time.monotonic() - started, 1)}


def _find(rows: list[dict[str, Any]], n: int, name: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["sessions"] == n and r["setup"] == name), None)


def _uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _ms(v: float | None, sign: str = "") -> str:
    """Milliseconds with 3 significant digits or so: 0.42, 12.8, 2688."""
    if v is None:
        return "-"
    digits = 2 if abs(v) < 10 else 1 if abs(v) < 100 else 0
    return format(v, f"{sign}.{digits}f")


def print_table(out: dict[str, Any]) -> None:
    meta = out["meta"]
    spread = meta["rounds"] > 1
    print()
    print(f"RTT = append sent -> its delta received, over every message after the first {meta['warmup']:g} s; "
          "added = p99 - direct p99 (same N, same round);")
    print("delivered = deltas received / appends sent; lag = send time - due time (client); "
          "CPU = share of one core during the sending window, other = the rest of the machine"
          + (f"; medians of {meta['rounds']} rounds, p99 [min..max]" if spread else ""))
    head = ["sessions", "setup", "RTT p50 ms", "RTT p99 ms", "added p99", "delivered", "lag p99",
            "proxy CPU", "server", "client", "other"]
    lines = [head]
    for r in out["points"]:
        if r["skipped"]:
            lines.append([str(r["sessions"]), r["setup"], f"skipped ({r['reason']})"])
            continue
        p99 = _ms(r["rtt_p99_ms"])
        if spread:
            p99 += f" [{_ms(r['rtt_p99_ms_min'])}..{_ms(r['rtt_p99_ms_max'])}]"
        share = f"{r['delivered']:.1%}" + ("" if all(x["sent"] == x["scheduled"] for x in r["per_round"]) else "*")
        cpu = r["cpu"]
        lines.append([str(r["sessions"]), r["setup"], _ms(r["rtt_p50_ms"]), p99, _ms(r["added_p99_ms"], "+"),
                      share, _ms(r["send_lag_p99_ms"]), _fmt(cpu.get("proxy"), ".0%"), f"{cpu['server']:.0%}",
                      f"{cpu['client']:.0%}", f"{cpu['other']:.0%}" + ("!" if cpu["other"] > NOISY else "")])
    widths = [max(len(line[i]) for line in lines if len(line) > i and len(line) == len(head)) for i in range(len(head))]
    for j, line in enumerate(lines):
        if len(line) < len(head):  # a skipped point
            print(f"{line[0]:>{widths[0]}}  {line[1]:<{widths[1]}}  {line[2]}")
        else:
            print("  ".join(c.ljust(w) if i == 1 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
        if j == 0:
            print("-" * (sum(widths) + 2 * (len(widths) - 1)))
    if any(not r["skipped"] and r["cpu"]["other"] > NOISY for r in out["points"]):
        print(f"! other work used more than {NOISY:.0%} of a core during the point: its figures are noisy")
    if any(not r["skipped"] and any(x["sent"] != x["scheduled"] for x in r["per_round"]) for r in out["points"]):
        print("* some appends were never sent (a connection failed; see --json)")
    for w in out["warnings"]:
        print("warning: " + w)
    print()
    print(f"largest N with p99 added < {BAR_MS:g} ms and 100% delivered "
          f"(of N = {', '.join(map(str, meta['sessions']))}):")
    for name, n in out["largest_n_at_bar"].items():
        print(f"  {name:<15} {n if n is not None else 'none'}")
    print(f"wall time {out['wall_s']:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", default="10,25,50,100,200", help="comma-separated N (default %(default)s)")
    ap.add_argument("--seconds", type=float, default=10.0, help="sending time per point (default %(default)s)")
    ap.add_argument("--warmup", type=float, default=1.0, help="first seconds left out of the percentiles")
    ap.add_argument("--rounds", type=int, default=1, help="repeats of every point, interleaved (medians shown)")
    ap.add_argument("--grace", type=float, default=2.0, help="seconds to wait for deltas after the last append")
    ap.add_argument("--procs", type=int, default=max(2, os.cpu_count() or 2), help="client processes")
    ap.add_argument("--direct-warn-ms", type=float, default=3.0, help="warn when direct p99 exceeds this")
    ap.add_argument("--quick", action="store_true", help="N=10,25, 5 s each")
    ap.add_argument("--json", action="store_true", help="print the results as JSON (progress on stderr)")
    ap.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        _serve(args.serve)
        return
    if args.quick:
        args.sessions, args.seconds = "10,25", 5.0
    args.sessions = sorted({int(x) for x in str(args.sessions).split(",") if x.strip()})
    if not args.sessions or min(args.sessions) < 1 or args.seconds <= args.warmup or args.rounds < 1:
        ap.error("--sessions needs positive N, --rounds at least 1, and --seconds must exceed --warmup")
    out = run(args)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print_table(out)


if __name__ == "__main__":
    main()
