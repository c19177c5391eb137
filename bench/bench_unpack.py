"""Audio packing, compiled against NumPy: the same tree, with and without
``rtproxy/io/_audiofast.c`` (``RTPROXY_AUDIO_NUMPY=1`` runs the NumPy code).

1. In one process: unpacking every audio chunk of a session, and packing
   20,000 of them, with each implementation (best of 3, CPU time), checking
   that both give the same bytes.
2. The reading commands that use audio, and two that do not, as processes,
   each mode alternating, with the CPU seconds (user + sys, ``os.wait4``) and
   the wall time of each, against reading the events in the same mode.
   CPU seconds are reported because they move less than wall time when
   something else runs on the machine.

The session is bench_read.py's (built once, or reused with ``--cache``).

Run::

    .venv/bin/python bench/bench_unpack.py --cache /tmp/rtread            # one hour, 3 rounds
    .venv/bin/python bench/bench_unpack.py --minutes 10 --rounds 1        # a quick look
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_read import BASELINE, session  # noqa: E402

from rtproxy.io import audiocodec  # noqa: E402
from rtproxy.io.format import open_recording  # noqa: E402


def in_process(rec: Path) -> None:
    from rtproxy.io import _audio_numpy as numpy_impl

    fast = audiocodec._fast
    if fast is None:
        print("the compiled module is not built here: `pip install -e .` builds it (needs a C compiler)")
        return
    chunks: list[bytes] = []
    with open_recording(rec) as r:
        for m in r.messages():
            packed = m.packed_audio
            if packed:
                chunks.extend(packed)
    samples = sum(len(c) - 1 for c in chunks) // 2
    windows = [chunks[i : i + 400] for i in range(0, len(chunks), 400)]

    def best(f) -> float:  # type: ignore[no-untyped-def]
        times = []
        for _ in range(3):
            t = time.process_time()
            f()
            times.append(time.process_time() - t)
        return min(times)

    tn = best(lambda: [numpy_impl.unpack_each(w) for w in windows])
    tc = best(lambda: [fast.unpack_each(w) for w in windows])
    assert [fast.unpack_each(w) for w in windows[:50]] == [numpy_impl.unpack_each(w) for w in windows[:50]]
    print(f"unpack {len(chunks):,} chunks, {samples / 1e6:.1f} M samples: NumPy {tn:.3f} s "
          f"({tn * 1e9 / samples:.2f} ns/sample), compiled {tc:.3f} s ({tc * 1e9 / samples:.2f} ns/sample), "
          f"{tn / tc:.1f}x")
    pcm = [fast.unpack(c) for c in chunks[:20000]]
    ms = sum(len(p) for p in pcm) / 2 / len(pcm) / 24
    tn = best(lambda: [audiocodec.pack_numpy(p) for p in pcm])
    tc = best(lambda: [fast.pack(p) for p in pcm])
    assert all(fast.pack(p) == audiocodec.pack_numpy(p) for p in pcm[:3000])
    print(f"pack {len(pcm):,} chunks ({ms:.0f} ms each on average): NumPy {tn * 1e6 / len(pcm):.1f} us/chunk, "
          f"compiled {tc * 1e6 / len(pcm):.1f} us/chunk, {tn / tc:.1f}x")


def commands(rec: Path, wd: Path) -> dict[str, list[str]]:
    rt = ["-m", "rtproxy"]
    return {
        "read events (baseline)": ["-c", BASELINE, str(rec)],
        "show --json": [*rt, "show", "--json", str(rec)],
        "export --format jsonl": [*rt, "export", str(rec), "--format", "jsonl", "-o", str(wd / "x.jsonl")],
        "export --format wav": [*rt, "export", str(rec), "--format", "wav", "-o", str(wd / "x.wav")],
        "show (no audio unpacked)": [*rt, "show", str(rec)],
        "check (no audio unpacked)": [*rt, "check", str(rec)],
    }


def run(argv: list[str], numpy: bool, wd: Path) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one command as its own process."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    env["RTPROXY_AUDIO_NUMPY"] = "1" if numpy else "0"
    with open(wd / "stderr.txt", "wb") as err:
        t = time.perf_counter()
        p = subprocess.Popen([sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode not in (0, 1):  # check exits 1 on findings
        raise SystemExit(f"{' '.join(argv[:6])} failed ({p.returncode}):\n{(wd / 'stderr.txt').read_text()[-2000:]}")
    return usage.ru_utime + usage.ru_stime, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians are reported)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--mic-floor", type=float, default=10.0)
    ap.add_argument("--cache", metavar="DIR", help="bench_read.py's cache folder: reuse its session")
    args = ap.parse_args()
    wd = Path(tempfile.mkdtemp(prefix="rtproxy-bench-unpack-"))
    rec, _ = session(args.cache, wd, args.minutes, args.seed, args.mic_floor)
    print(f"session: {args.minutes:g} min, .rtrec {rec.stat().st_size / 1e6:.1f} MB; "
          f"compiled module {'built' if audiocodec.COMPILED else 'NOT built'}", flush=True)
    in_process(rec)
    results: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    cmds = commands(rec, wd)
    for r in range(args.rounds):
        for label, argv in cmds.items():
            for numpy in (True, False):
                results.setdefault((label, numpy), []).append(run(argv, numpy, wd))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    base = {n: statistics.median(c for c, _ in results[("read events (baseline)", n)]) for n in (True, False)}
    print(f"CPU seconds (user + sys), median of {args.rounds}; [wall]; ratio to reading the events in the same mode")
    print(f"{'':28} {'NumPy unpack':>24} {'compiled':>24}")
    for label in cmds:
        cells = []
        for numpy in (True, False):
            cpu = statistics.median(c for c, _ in results[(label, numpy)])
            wall = statistics.median(w for _, w in results[(label, numpy)])
            cells.append(f"{cpu:6.2f} s [{wall:5.2f}] {cpu / base[numpy]:4.2f}x")
        print(f"{label:28} {cells[0]:>24} {cells[1]:>24}")
    for f in wd.iterdir():
        f.unlink()
    wd.rmdir()


if __name__ == "__main__":
    main()
