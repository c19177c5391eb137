"""Time of ``rtproxy check``: one one-hour voice session against just reading its
events (``for e in rtproxy.open(p).events(): e.type``) in the same run, and a
folder of N ten-minute sessions checked sequentially and in parallel.

The sessions are the synthetic ones of ``bench_size.py`` (real speech, GA event
shapes, a microphone streamed the whole time in 20-100 ms appends, server VAD
turns with streamed audio answers), built by slicing speech as
``bench_export.py`` does. The folder holds copies of one ten-minute session
(the work per file is the same as for distinct ones).

Run::

    .venv/bin/python bench/bench_check.py                  # 60 min session, 3 runs; 50 files
    .venv/bin/python bench/bench_check.py --files 1000     # the big folder
    .venv/bin/python bench/bench_check.py --minutes 10 --runs 1 --files 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import machine_line  # noqa: E402
from bench_size import RATE, SessionBuilder, write_rtrec  # noqa: E402

import rtproxy  # noqa: E402
from rtproxy.check import check_file  # noqa: E402
from rtproxy.check.runner import check_many, collect_files  # noqa: E402


class QuickSession(SessionBuilder):
    """Speech by slicing (no per-sample gain), so an hour builds in seconds."""

    def speech(self, n_samples: int) -> bytes:
        out = array("h")
        while len(out) < n_samples:
            off = self.rng.randrange(0, len(self.pcm) - RATE)
            out.extend(self.pcm[off:off + min(n_samples - len(out), len(self.pcm) - off)])
        return out.tobytes()


def build(path: Path, minutes: float, seed: int) -> int:
    msgs = QuickSession(seed, minutes, mic_floor=0).build()
    write_rtrec(path, msgs)
    return len(msgs)


def timed(fn, runs: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def read_events(p: Path) -> int:
    n = 0
    for e in rtproxy.open(p).events():
        e.type  # noqa: B018 - the baseline the brief names
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the single session")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--files", type=int, default=50, help="ten-minute sessions in the folder (0: skip)")
    ap.add_argument("--folder-runs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    print(machine_line())

    wd = Path(tempfile.mkdtemp(prefix="rtproxy-bench-check-"))
    try:
        one = wd / "hour.rtrec"
        t0 = time.perf_counter()
        n = build(one, args.minutes, args.seed)
        print(f"session: {args.minutes:g} min, {n:,} messages, .rtrec {one.stat().st_size / 1e6:.1f} MB "
              f"(built in {time.perf_counter() - t0:.1f} s); medians of {args.runs} runs")
        # interleaved runs, so a machine shared with other work loads both alike
        bases, chks, findings = [], [], []
        for _ in range(args.runs):
            b, _ = timed(lambda: read_events(one), 1)
            c, findings = timed(lambda: check_file(one), 1)  # type: ignore[assignment]
            bases.append(b)
            chks.append(c)
        base, chk = statistics.median(bases), statistics.median(chks)
        ratios = sorted(c / b for b, c in zip(bases, chks))
        print(f"  read events (e.type)     {base:7.2f} s   1.00x")
        print(f"  rtproxy check            {chk:7.2f} s   {chk / base:4.2f}x   ({len(findings)} findings; "
              f"per-run ratios {', '.join(f'{r:.2f}' for r in ratios)})")

        if args.files:
            folder = wd / "many"
            folder.mkdir()
            ten = wd / "ten.rtrec"
            build(ten, 10, args.seed + 1)
            for i in range(args.files):
                shutil.copyfile(ten, folder / f"s{i:05d}.rtrec")
            files = collect_files([str(folder)])
            cores = os.cpu_count() or 1
            size = ten.stat().st_size * args.files / 1e6
            print(f"folder: {args.files} ten-minute sessions ({size:.0f} MB); medians of {args.folder_runs} runs")
            seq, _ = timed(lambda: list(check_many(files, workers=1)), args.folder_runs)
            par, _ = timed(lambda: list(check_many(files, workers=cores)), args.folder_runs)
            print(f"  sequential               {seq:7.2f} s   {seq / args.files * 1000:6.0f} ms/file")
            print(f"  parallel ({cores} workers)     {par:7.2f} s   {par / args.files * 1000:6.0f} ms/file   "
                  f"speed-up {seq / par:4.2f}x")
    finally:
        shutil.rmtree(wd, ignore_errors=True)


if __name__ == "__main__":
    main()
