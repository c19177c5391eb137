"""Capacity before/after: bench_capacity.py's load and table, with ``rtproxy record``
at a base revision and in the current tree (any number of option sets) as
set-ups of the same run, next to direct and stock mitmdump.

The base revision is checked out into a temporary git worktree (as bench/ab.py
does) and run with ``PYTHONPATH`` pointing at it; every set-up uses the same
venv, server, client load and machine moment, in a rotating order each round.
Everything else (the load, the bar, the table) is bench_capacity.py's.

Run::

    .venv/bin/python bench/bench_capacity_ab.py --base cc7edab --sessions 10,25,50,100,200 --rounds 3 \\
        --current "--workers 2" --current "--workers 1"
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_capacity as bc  # noqa: E402
from _common import PYTHON, ROOT, Target, _process, free_port, machine_line, workdir  # noqa: E402


@contextlib.contextmanager
def _recorder(name: str, tree: Path, args: list[str], upstream: int, out: Path, log: Path) -> Iterator[Target]:
    port = free_port()
    cmd = [PYTHON, "-m", "rtproxy", "record", "--listen-port", str(port), "--upstream",
           f"http://127.0.0.1:{upstream}", "--out-dir", str(out), *args]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with _process(cmd, port, log, cwd=tree, env=env, stop_timeout=30) as proc:
        yield Target(name, port, proc.pid)


_CPU_S = bc._cpu_s


def _cpu_tree(pid: int) -> float:
    """CPU seconds of a process and its children (a recorder's workers)."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    return _CPU_S(pid) + sum(_CPU_S(int(k)) for k in kids)


def _setup(name: str, spec: tuple[Path, list[str]] | None, wd: Path, tag: str,
           info: dict[str, Any]) -> contextlib.AbstractContextManager[tuple[Target, int]]:
    def recorder(upstream: int, out: Path) -> contextlib.AbstractContextManager[Target]:
        assert spec is not None
        return _recorder(name, spec[0], spec[1], upstream, out, wd / f"{tag}.log")

    return bc.setup(name, wd, tag, info, recorder=recorder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="revision of rtproxy to compare against")
    ap.add_argument("--current", action="append", default=[], metavar="ARGS",
                    help='rtproxy record options for a current-tree set-up, e.g. "--workers 2" (repeatable; '
                         'default: one set-up with no options)')
    ap.add_argument("--sessions", default="10,25,50,100,200")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--grace", type=float, default=2.0)
    ap.add_argument("--procs", type=int, default=max(2, os.cpu_count() or 2))
    ap.add_argument("--no-mitmdump", action="store_true", help="leave stock mitmdump out")
    args = ap.parse_args()
    args.sessions = sorted({int(x) for x in args.sessions.split(",") if x.strip()})
    currents = args.current or [""]

    with tempfile.TemporaryDirectory(prefix="rtproxy-capab-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base],
                       check=True, capture_output=True)
        try:
            specs: dict[str, tuple[Path, list[str]] | None] = {"direct": None}
            if not args.no_mitmdump:
                specs["mitmdump"] = None
            specs[f"rtproxy {args.base[:7]}"] = (base, [])
            for c in currents:
                specs[f"rtproxy now {c}".strip()] = (ROOT, c.split())
            out = _run(args, specs)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                           capture_output=True)
    bc.print_table(out)


def _run(args: argparse.Namespace, specs: dict[str, tuple[Path, list[str]] | None]) -> dict[str, Any]:
    started = time.monotonic()
    names = list(specs)
    meta = {"machine": machine_line(), "seconds": args.seconds, "warmup": args.warmup, "grace": args.grace,
            "rounds": args.rounds, "procs": args.procs, "sessions": args.sessions}
    print(meta["machine"], flush=True)
    # The proxy's CPU: the recorder and its workers.
    orig_cpu = bc._cpu_s
    rows: list[dict[str, Any]] = []
    hopeless: dict[str, int] = {}
    k = 0
    with workdir() as wd:
        for n in args.sessions:
            raw: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
            for rnd in range(args.rounds):
                order = names[k % len(names):] + names[:k % len(names)]
                k += 1
                for name in order:
                    if name in hopeless:
                        continue
                    info: dict[str, Any] = {}
                    with _setup(name, specs[name], wd, f"{n}-{rnd}-{names.index(name)}", info) as (t, spid):
                        proxy = t.pid
                        bc._cpu_s = lambda pid: _cpu_tree(pid) if pid == proxy else orig_cpu(pid)  # noqa: B023
                        try:
                            r = bc.run_load(t, spid, n, args)
                        finally:
                            bc._cpu_s = orig_cpu
                    r["round"] = rnd
                    r.update(info)
                    raw[name].append(r)
                    print(f"N={n:>4} round {rnd + 1} {name:<24} p50 {bc._fmt(r['rtt_p50_ms'])} ms, "
                          f"p99 {bc._fmt(r['rtt_p99_ms'])} ms, delivered {r['received']:,}/{r['sent']:,}, "
                          f"CPU proxy {bc._fmt(r['cpu'].get('proxy'), '.0%')} other {r['cpu']['other']:.0%}",
                          flush=True)
                    if r["received"] < bc.HOPELESS * r["scheduled"]:
                        hopeless[name] = n
            for name in names:
                if raw[name]:
                    rows.append(bc.summarize(n, name, raw[name], raw["direct"]))
                else:
                    rows.append({"sessions": n, "setup": name, "skipped": True,
                                 "reason": f"delivered < {bc.HOPELESS:.0%} at N={hopeless[name]}"})
    best: dict[str, int | None] = {}
    for name in names[1:]:
        ok = [n for n in args.sessions
              if bc.at_bar(next((r for r in rows if r["sessions"] == n and r["setup"] == name), {"skipped": True}))]
        best[name] = max(ok) if ok else None
    return {"meta": meta, "points": rows, "largest_n_at_bar": best, "warnings": [],
            "wall_s": round(time.monotonic() - started, 1)}


if __name__ == "__main__":
    main()
