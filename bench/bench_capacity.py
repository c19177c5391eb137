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
50 each way, all ~1.3 KB JSON text frames.

Measured by the client, per delta: round trip = receive time - stamp (the
monotonic clock is the same in every process on Linux). The first
``--warmup`` seconds are left out of the percentiles. Delivered = deltas
received / appends sent, counted until ``--grace`` seconds after the last
append was due; an append still unsent by then (a proxy that stopped reading)
counts against ``sent``. CPU = share of one core used by each process during
the sending window (from /proc).

For each N (``--sessions``) the set-ups run one after the other in a rotating
order, each with a fresh server and a fresh proxy: direct, stock
``mitmdump --mode reverse:... -q`` (all default addons, flows handled as
stock) and ``rtproxy record`` (recordings in a temporary directory, removed
at the end). The client load runs in ``--procs`` processes (asyncio in each,
uvloop if installed) so the client is not the bottleneck; if the direct p99
at some N exceeds ``--direct-warn-ms`` the script says so, as the figures of
the proxies at that N then include client or machine delays. Once a set-up
delivers under 50% at some N, its larger N are skipped.

The bar: p99 added latency (p99 - direct p99 at the same N) under 10 ms with
every message delivered. The script prints the largest N at the bar for each
proxy.

Run::

    .venv/bin/python bench/bench_capacity.py                       # N=10,25,50,100,200, 10 s each; ~3-4 min
    .venv/bin/python bench/bench_capacity.py --quick               # N=10,25, 5 s each
    .venv/bin/python bench/bench_capacity.py --sessions 20,30,40 --seconds 10 --json
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
from typing import Any, Iterator

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


def _connect(url: str):  # type: ignore[no-untyped-def]
    from websockets.asyncio.client import connect as ws_connect

    return ws_connect(url, compression=None, max_size=None, ping_interval=None, open_timeout=30,
                      close_timeout=2)


async def _worker_main(conn: Any, url: str, sessions: list[int], n_total: int, args: dict[str, Any]) -> dict:
    seconds, warmup, grace = args["seconds"], args["warmup"], args["grace"]
    n_msgs = int(round(seconds / PERIOD))
    n_warm = int(round(warmup / PERIOD))
    chunks = audio_chunks(50)
    rtt = array("d")
    lag = array("d")
    res: dict[str, Any] = {"sent": 0, "received": 0, "bad": 0, "errors": [], "connected": 0}

    sem = asyncio.Semaphore(20)

    async def open_one(sid: int):  # type: ignore[no-untyped-def]
        async with sem:
            try:
                return await _connect(f"{url}/v1/realtime?model=gpt-realtime&s={sid}")
            except Exception as exc:  # noqa: BLE001 - counted, the session's messages count as lost
                res["errors"].append(f"connect {sid}: {type(exc).__name__}: {exc}")
                return None

    conns = await asyncio.gather(*(open_one(s) for s in sessions))
    res["connected"] = sum(c is not None for c in conns)
    conn.send(("ready", res["connected"]))
    if not conn.poll(120):
        raise TimeoutError("no start time from the parent")
    t0 = conn.recv()
    deadline = t0 + PERIOD + seconds + grace
    deadline_ns = int(deadline * 1e9)

    async def sender(ws, sid: int, start: float) -> None:  # type: ignore[no-untyped-def]
        prefix = '{"type":"input_audio_buffer.append","event_id":"evt_%d_' % sid
        mono, mono_ns, sleep = time.monotonic, time.monotonic_ns, asyncio.sleep
        for seq in range(n_msgs):
            due = start + seq * PERIOD
            delay = due - mono()
            if delay > 0:
                await sleep(delay)
            now_ns = mono_ns()
            if now_ns > deadline_ns:
                return
            await ws.send(f'{prefix}{seq}_{now_ns}","audio":"{chunks[seq % 50]}"}}')
            res["sent"] += 1
            if seq >= n_warm:
                lag.append(now_ns / 1e9 - due)

    async def receiver(ws, sid: int) -> None:  # type: ignore[no-untyped-def]
        mono_ns = time.monotonic_ns
        key = '"event_id":"evt_%d_' % sid
        got = 0
        async with asyncio.timeout_at(deadline):
            while got < n_msgs:
                msg = await ws.recv()
                now_ns = mono_ns()
                i = msg.find(key) if isinstance(msg, str) else -1
                if i < 0:
                    res["bad"] += 1
                    continue
                i += len(key)
                seq_s, t_s = msg[i:msg.index('"', i)].split("_")
                got += 1
                res["received"] += 1
                if int(seq_s) >= n_warm:
                    rtt.append((now_ns - int(t_s)) / 1e6)

    async def session(ws, sid: int) -> None:  # type: ignore[no-untyped-def]
        start = t0 + PERIOD * sid / n_total
        tasks = [asyncio.create_task(sender(ws, sid, start)), asyncio.create_task(receiver(ws, sid))]
        try:
            for t in tasks:
                try:
                    await t
                except (TimeoutError, asyncio.TimeoutError):
                    pass
                except Exception as exc:  # noqa: BLE001 - a closed connection: the rest is lost
                    if len(res["errors"]) < 20:
                        res["errors"].append(f"session {sid}: {type(exc).__name__}: {exc}")
        finally:
            for t in tasks:
                t.cancel()

    await asyncio.gather(*(session(ws, sid) for ws, sid in zip(conns, sessions) if ws is not None))

    async def close(ws) -> None:  # type: ignore[no-untyped-def]
        try:
            await asyncio.wait_for(ws.close(), 3)
        except Exception:  # noqa: BLE001 - an overloaded proxy: drop the connection
            ws.transport.abort()

    await asyncio.gather(*(close(ws) for ws in conns if ws is not None))
    res["rtt"] = rtt
    res["lag"] = lag
    return res


def _worker(conn: Any, url: str, sessions: list[int], n_total: int, args: dict[str, Any]) -> None:
    _use_uvloop()
    try:
        res = asyncio.run(_worker_main(conn, url, sessions, n_total, args))
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


def run_load(target: Target, server_pid: int, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """N sessions through target; the client load split over worker processes."""
    ctx = mp.get_context("spawn")
    n_procs = max(1, min(args.procs, n))
    wargs = {"seconds": args.seconds, "warmup": args.warmup, "grace": args.grace}
    workers = []
    for w in range(n_procs):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker, args=(child, target.url(""), list(range(w, n, n_procs)), n, wargs),
                        daemon=True)
        p.start()
        child.close()
        workers.append((p, parent))
    try:
        connected = 0
        for p, c in workers:
            if not c.poll(120):
                raise TimeoutError("a client process did not connect its sessions in 120 s")
            kind, val = c.recv()
            if kind != "ready":
                raise RuntimeError(f"client process: {val}")
            connected += val
        t0 = time.monotonic() + 0.3
        for _, c in workers:
            c.send(t0)
        pids = {"proxy": target.pid, "server": server_pid, "client": None}
        time.sleep(max(0.0, t0 + args.warmup - time.monotonic()))
        before = {k: _cpu_s(v) for k, v in pids.items() if v}
        before_client = sum(_cpu_s(p.pid) for p, _ in workers if p.pid)
        t_a = time.monotonic()
        time.sleep(max(0.0, t0 + args.seconds - time.monotonic()))
        t_b = time.monotonic()
        cpu = {k: (_cpu_s(v) - before[k]) / (t_b - t_a) for k, v in pids.items() if v}
        cpu["client"] = (sum(_cpu_s(p.pid) for p, _ in workers if p.pid) - before_client) / (t_b - t_a)
        results = []
        limit = args.seconds + args.grace + 30
        for p, c in workers:
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
def setup(name: str, wd: Path, tag: str) -> Iterator[tuple[Target, int]]:
    """A fresh server and, unless direct, a fresh proxy in front of it."""
    with delta_server(wd) as srv:
        if name == "direct":
            yield srv, srv.pid or 0
        elif name == "mitmdump":
            with mitmdump(srv.port, wd) as t:
                yield t, srv.pid or 0
        else:
            out = wd / f"rec-{tag}"
            try:
                with rtproxy_record(srv.port, wd, out) as t:
                    yield t, srv.pid or 0
            finally:
                shutil.rmtree(out, ignore_errors=True)


# --------------------------------------------------------------------- report

def _fmt(v: float | None, f: str = ".2f") -> str:
    return "-" if v is None else format(v, f)


def at_bar(r: dict[str, Any], direct: dict[str, Any] | None) -> bool:
    if direct is None or r.get("skipped") or r["rtt_p99_ms"] is None or direct["rtt_p99_ms"] is None:
        return False
    return (r["received"] == r["scheduled"] and r["sent"] == r["scheduled"]
            and r["rtt_p99_ms"] - direct["rtt_p99_ms"] < BAR_MS)


def run(args: argparse.Namespace) -> dict[str, Any]:
    log = sys.stderr if args.json else sys.stdout
    started = time.monotonic()
    meta = {"machine": machine_line(), "seconds": args.seconds, "warmup": args.warmup, "grace": args.grace,
            "procs": args.procs, "uvloop": _uvloop_available(), "sessions": args.sessions}
    print(meta["machine"], file=log)
    print(f"{args.seconds:g} s per point, {args.procs} client processes"
          f"{' (uvloop)' if meta['uvloop'] else ''}, grace {args.grace:g} s", file=log, flush=True)
    results: list[dict[str, Any]] = []
    hopeless: dict[str, int] = {}
    with workdir() as wd:
        for i, n in enumerate(args.sessions):
            order = list(SETUPS[i % 3:] + SETUPS[:i % 3])
            for name in order:
                if name in hopeless:
                    print(f"N={n:>4} {name:<15} skipped (delivered < {HOPELESS:.0%} at N={hopeless[name]})",
                          file=log, flush=True)
                    results.append({"sessions": n, "setup": name, "skipped": True})
                    continue
                with setup(name, wd, f"{n}") as (t, server_pid):
                    r = run_load(t, server_pid, n, args)
                results.append(r)
                if r["delivered"] * r["sent_share"] < HOPELESS:
                    hopeless[name] = n
                cpu = r["cpu"]
                print(f"N={n:>4} {name:<15} p50 {_fmt(r['rtt_p50_ms'])} ms, p99 {_fmt(r['rtt_p99_ms'])} ms, "
                      f"delivered {r['received']:,}/{r['sent']:,} (sent {r['sent']:,}/{r['scheduled']:,}), "
                      f"send lag p99 {_fmt(r['send_lag_p99_ms'])} ms, CPU proxy "
                      f"{cpu.get('proxy', 0):.0%} server {cpu['server']:.0%} client {cpu['client']:.0%}"
                      + (f"; errors: {r['errors'][0]}" if r["errors"] else ""), file=log, flush=True)
            d = _find(results, n, "direct")
            if d and d.get("rtt_p99_ms") is not None and d["rtt_p99_ms"] > args.direct_warn_ms:
                print(f"warning: direct p99 at N={n} is {d['rtt_p99_ms']:.1f} ms (> {args.direct_warn_ms:g} ms): "
                      "the client or the machine adds delay at this N", file=log, flush=True)
    best: dict[str, int | None] = {}
    for name in SETUPS[1:]:
        ok = [n for n in args.sessions if at_bar(_find(results, n, name) or {"skipped": True},
                                                 _find(results, n, "direct"))]
        best[name] = max(ok) if ok else None
    return {"meta": meta, "results": results, "largest_n_at_bar": best,
            "wall_s": round(time.monotonic() - started, 1)}


def _find(results: list[dict[str, Any]], n: int, name: str) -> dict[str, Any] | None:
    for r in results:
        if r["sessions"] == n and r["setup"] == name:
            return r
    return None


def _uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def print_table(out: dict[str, Any]) -> None:
    results = out["results"]
    print()
    print("RTT = append sent -> its delta received, percentiles over every message after the warm-up; "
          "added = p99 - direct p99 at the same N; delivered = deltas received / appends sent; "
          "CPU = share of one core")
    hdr = (f"{'sessions':>8}  {'setup':<15}{'RTT p50 ms':>11}{'RTT p99 ms':>11}{'added p99':>10}"
           f"{'delivered':>11}{'proxy CPU':>10}{'client CPU':>11}")
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        n = r["sessions"]
        if r.get("skipped"):
            print(f"{n:>8}  {r['setup']:<15}{'skipped':>11}")
            continue
        d = _find(results, n, "direct")
        added = (r["rtt_p99_ms"] - d["rtt_p99_ms"]) if (d and r["setup"] != "direct" and r["rtt_p99_ms"] is not None
                                                        and d["rtt_p99_ms"] is not None) else None
        share = f"{r['delivered']:.1%}" + ("" if r["sent"] == r["scheduled"] else "*")
        proxy_cpu = f"{r['cpu']['proxy']:.0%}" if "proxy" in r["cpu"] else "-"
        print(f"{n:>8}  {r['setup']:<15}{_fmt(r['rtt_p50_ms']):>11}{_fmt(r['rtt_p99_ms']):>11}"
              f"{_fmt(added, '+.2f'):>10}{share:>11}{proxy_cpu:>10}{r['cpu']['client']:>11.0%}")
    if any(not r.get("skipped") and r["sent"] != r["scheduled"] for r in results):
        print("* some appends were never sent: the proxy stopped reading (see sent in --json)")
    print()
    print(f"largest N with p99 added < {BAR_MS:g} ms and 100% delivered "
          f"(of N = {', '.join(map(str, out['meta']['sessions']))}):")
    for name, n in out["largest_n_at_bar"].items():
        print(f"  {name:<15} {n if n is not None else 'none'}")
    print(f"wall time {out['wall_s']:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", default="10,25,50,100,200", help="comma-separated N (default %(default)s)")
    ap.add_argument("--seconds", type=float, default=10.0, help="sending time per point (default %(default)s)")
    ap.add_argument("--warmup", type=float, default=1.0, help="first seconds left out of the percentiles")
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
    if not args.sessions or min(args.sessions) < 1 or args.seconds <= args.warmup:
        ap.error("--sessions needs positive N and --seconds must exceed --warmup")
    out = run(args)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print_table(out)


if __name__ == "__main__":
    main()
