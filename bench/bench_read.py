"""Reading speed: each reading command on a one-hour recording, against reading
the file's events (``for e in rtproxy.open(p).events(): e.type``) in the same run.

Every command runs as its own process (``python -m rtproxy ...``, the code of
the tree this script is in, via ``PYTHONPATH``), output to a file in a
temporary folder, stderr piped (so no progress display is drawn); the baseline
runs the same way, so interpreter start-up and imports are in both. Rounds are
interleaved (each round runs every command once) and the table gives medians.
Target: every ratio at most 2.00.

Also the size of the html page per hour for each ``--audio`` mode (a tree
without ``--audio`` has ``--no-audio`` for ``none`` and its one audio mode for
the others), and digests of the ``show --json`` and ``export --format jsonl``
output, to check that a change kept them byte for byte.

The session is the synthetic one of ``bench_export.py`` (real speech from
tests/data/speech_24k.pcm, GA event shapes, a microphone streamed the whole
time in 20-100 ms appends, server VAD turns with streamed audio answers); the
microphone floor between turns is gaussian room noise (sigma ``--mic-floor``
LSB, 10 by default as in bench_size.py; 0 for digital silence).

Run::

    .venv/bin/python bench/bench_read.py                       # 60 minutes, 3 rounds
    .venv/bin/python bench/bench_read.py --minutes 5 --runs 1  # a quick look
    .venv/bin/python bench/ab.py BASE bench/bench_read.py --cache /tmp/rtb --rounds 3 --runs 1
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_export import QuickSession  # noqa: E402
from bench_size import write_rtrec  # noqa: E402

BASELINE = "import sys, rtproxy\nfor e in rtproxy.open(sys.argv[1]).events():\n    e.type\n"


class NoisySession(QuickSession):
    """QuickSession with its microphone floor drawn by numpy (an hour in a second)."""

    def __init__(self, seed: int, minutes: float, mic_floor: float) -> None:
        super().__init__(seed, minutes, mic_floor=mic_floor)
        self.np_rng = np.random.default_rng(seed)

    def noise(self, n_samples: int) -> bytes:
        if not self.mic_floor:
            return bytes(2 * n_samples)
        return self.np_rng.normal(0, self.mic_floor, n_samples).astype("<i2").tobytes()


def build(path: Path, minutes: float, seed: int, mic_floor: float) -> int:
    msgs = NoisySession(seed, minutes, mic_floor).build()
    write_rtrec(path, msgs)
    return len(msgs)


def session(cache: str | None, wd: Path, minutes: float, seed: int, mic_floor: float) -> tuple[Path, int | None]:
    """The session's .rtrec: in ``cache`` (built there once, then reused) or in ``wd``.
    Returns it and its message count when it was built now (None when reused)."""
    name = f"session-{minutes:g}min-seed{seed}-floor{mic_floor:g}.rtrec"
    rec = Path(cache) / name if cache else wd / name
    if rec.exists():
        return rec, None
    rec.parent.mkdir(parents=True, exist_ok=True)
    part = rec.with_name(rec.name + f".{os.getpid()}.part")
    n = build(part, minutes, seed, mic_floor)
    os.replace(part, rec)
    return rec, n


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "CI"}
    e["PYTHONPATH"] = str(ROOT)
    return e


def has(args: list[str], needle: str) -> bool:
    p = subprocess.run([sys.executable, "-m", "rtproxy", *args, "--help"], capture_output=True, text=True,
                       env=env(), cwd=ROOT)
    return p.returncode == 0 and needle in p.stdout


def commands(rec: Path, wd: Path) -> dict[str, tuple[list[str], Path | None]]:
    """label -> (argv after ``python``, file whose bytes are the output, or None)."""
    rt = ["-m", "rtproxy"]
    cmds: dict[str, tuple[list[str], Path | None]] = {
        "read events (baseline)": (["-c", BASELINE, str(rec)], None),
        "show": ([*rt, "show", str(rec)], wd / "show.txt"),
        "show --json": ([*rt, "show", "--json", str(rec)], wd / "show.jsonl"),
        "export --format jsonl": ([*rt, "export", str(rec), "--format", "jsonl", "-o", str(wd / "x.jsonl")],
                                  wd / "x.jsonl"),
        "export --format html": ([*rt, "export", str(rec), "--format", "html", "-o", str(wd / "x.html")],
                                 wd / "x.html"),
        "export --format wav": ([*rt, "export", str(rec), "--format", "wav", "-o", str(wd / "x.wav")],
                                wd / "x.wav"),
        "redact --strip-audio --strip-text": (
            [*rt, "redact", str(rec), "--strip-audio", "--strip-text", "-o", str(wd / "x.rtrec")], wd / "x.rtrec"),
    }
    if has(["check"], "Usage"):
        cmds["check"] = ([*rt, "check", str(rec)], wd / "check.txt")
    return cmds


def run_one(argv: list[str], out: Path | None, capture: bool) -> float:
    """Seconds the process took; stdout goes to ``out`` when the command prints its output."""
    if out is not None and out.exists():
        out.unlink()
    stdout = open(out, "wb") if capture and out is not None else subprocess.DEVNULL
    try:
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, *argv], stdout=stdout, stderr=subprocess.PIPE, env=env(), cwd=ROOT)
        dt = time.perf_counter() - t0
    finally:
        if stdout is not subprocess.DEVNULL:
            stdout.close()
    # show/check exit 1 on findings; 2 is an error
    if p.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv[:6])} failed ({p.returncode}):\n{p.stderr.decode()[-2000:]}")
    return dt


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def html_sizes(rec: Path, wd: Path, minutes: float) -> list[tuple[str, float, int]]:
    """(mode, seconds, bytes) of the html export for each --audio mode this tree has."""
    rt = ["-m", "rtproxy", "export", str(rec), "--format", "html"]
    modes: list[tuple[str, list[str]]]
    if has(["export"], "--audio [none|speech|full]") or has(["export"], "--audio"):
        modes = [(m, ["--audio", m]) for m in ("none", "speech", "full")]
    else:
        modes = [("none", ["--no-audio"]), ("(default)", [])]
    out = []
    for name, extra in modes:
        path = wd / f"audio-{name.strip('()')}.html"
        dt = run_one([*rt, *extra, "-o", str(path)], None, False)
        out.append((name, dt, path.stat().st_size))
        path.unlink()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--runs", type=int, default=3, help="interleaved rounds (medians are reported)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--mic-floor", type=float, default=10.0, help="sigma of the microphone's noise floor (LSB)")
    ap.add_argument("--cache", metavar="DIR", help="keep the built session here and reuse it (same minutes/seed)")
    ap.add_argument("--only", action="append", default=[], help="only commands whose label starts with this")
    ap.add_argument("--no-sizes", action="store_true", help="skip the html size per --audio mode")
    args = ap.parse_args()

    wd = Path(tempfile.mkdtemp(prefix="rtproxy-bench-read-"))
    try:
        t0 = time.perf_counter()
        rec, n = session(args.cache, wd, args.minutes, args.seed, args.mic_floor)
        how = f"cached in {args.cache}" if n is None else f"built in {time.perf_counter() - t0:.1f} s"
        print(f"session: {args.minutes:g} min, {'' if n is None else f'{n:,} messages, '}"
              f".rtrec {rec.stat().st_size / 1e6:.1f} MB ({how}); medians of {args.runs} interleaved rounds")

        cmds = commands(rec, wd)
        if args.only:
            cmds = {k: v for k, v in cmds.items()
                    if k == "read events (baseline)" or any(k.startswith(o) for o in args.only)}
        times: dict[str, list[float]] = {k: [] for k in cmds}
        for r in range(args.runs):
            for label, (argv, out) in cmds.items():
                capture = label.startswith(("show", "check"))
                times[label].append(run_one(argv, out, capture))
            print(f"  round {r + 1}/{args.runs} done", file=sys.stderr)
        base = statistics.median(times["read events (baseline)"])
        print(f"{'command':36} {'time':>9} {'ratio':>7}  output")
        for label, (_, out) in cmds.items():
            t = statistics.median(times[label])
            size = f"{out.stat().st_size / 1e6:.1f} MB" if out is not None and out.exists() else ""
            print(f"{label:36} {t:8.2f}s {t / base:6.2f}x  {size}")
        for label in ("show --json", "export --format jsonl"):
            if label in cmds and cmds[label][1] is not None and cmds[label][1].exists():
                print(f"sha256 of {label} output: {digest(cmds[label][1])}")
        if not args.no_sizes:
            hours = args.minutes / 60
            print(f"{'html --audio':36} {'time':>9} {'MB':>9} {'MB per hour':>12}")
            for mode, dt, size in html_sizes(rec, wd, args.minutes):
                print(f"html audio {mode:25} {dt:8.2f}s {size / 1e6:8.1f}  {size / 1e6 / hours:10.1f}")
    finally:
        shutil.rmtree(wd, ignore_errors=True)


if __name__ == "__main__":
    main()
