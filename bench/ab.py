"""Run one benchmark script under two revisions of rtproxy, rounds interleaved.

The base revision is checked out into a temporary git worktree; each round
runs the base tree's copy of the script, then the current tree's, with
``PYTHONPATH`` pointing at that tree, so both use the same venv, machine and
moment. Every line whose first column is a label and that holds a time in
seconds (``0.86s`` or ``0.86 s``) is collected; the table gives the median of
each label per tree and the ratio current / base.

Run::

    .venv/bin/python bench/ab.py 85baf0b bench/bench_export.py --minutes 10 --runs 1 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_TIME = re.compile(r"^\s*(?P<label>[A-Za-z].*?)\s{2,}(?P<t>\d+(?:\.\d+)?)\s?s\b")
# "  diff      b: ... median 4.45 s" (bench_diff, bench_replay)
_MEDIAN = re.compile(r"^\s*(?P<label>[^:]+?):.*?\bmedian (?P<t>\d+(?:\.\d+)?)\s?(?P<unit>ms|s)\b")


def run(tree: Path, script: str, args: list[str]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    p = subprocess.run([sys.executable, str(tree / script), *args], capture_output=True, text=True,
                       cwd=tree, env=env, timeout=3600)
    if p.returncode != 0:
        raise SystemExit(f"{tree / script} failed:\n{p.stderr[-2000:]}")
    out: dict[str, float] = {}
    for line in p.stdout.splitlines():
        m = _MEDIAN.match(line)
        if m:
            scale = 1e-3 if m.group("unit") == "ms" else 1.0
            out.setdefault(" ".join(m.group("label").split()), float(m.group("t")) * scale)
            continue
        m = _TIME.match(line)
        if m:
            out.setdefault(m.group("label").strip(), float(m.group("t")))
    return out


def build_compiled(tree: Path) -> None:
    """Build a tree's compiled module in place (a worktree has only its source), as
    ``pip install -e .`` does, so the base runs the code it shipped with."""
    src = tree / "rtproxy" / "io" / "_audiofast.c"
    if not src.exists():
        return
    out = src.with_name("_audiofast" + sysconfig.get_config_var("EXT_SUFFIX"))
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-O3", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}", str(src), "-o", str(out)],
                   check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", help="the revision to compare against (e.g. a commit before a change)")
    ap.add_argument("script", help="benchmark script path, relative to the repository root")
    ap.add_argument("--rounds", type=int, default=3)
    args, rest = ap.parse_known_args()
    results: dict[str, dict[str, list[float]]] = {"base": defaultdict(list), "current": defaultdict(list)}
    with tempfile.TemporaryDirectory(prefix="rtproxy-ab-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base],
                       check=True, capture_output=True)
        try:
            build_compiled(base)
            if not (base / args.script).exists():
                raise SystemExit(f"{args.script} does not exist at {args.base}")
            for r in range(args.rounds):
                for name, tree in (("base", base), ("current", ROOT)):
                    for label, t in run(tree, args.script, rest).items():
                        results[name][label].append(t)
                print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)
    labels = [k for k in results["current"] if k in results["base"]]
    print(f"{args.script} {' '.join(rest)}: medians of {args.rounds} interleaved rounds")
    print(f"{'':34} {'base ' + args.base[:10]:>16} {'current':>10} {'ratio':>7}")
    for k in labels:
        b, c = statistics.median(results["base"][k]), statistics.median(results["current"][k])
        print(f"{k[:34]:34} {b:15.3f}s {c:9.3f}s {c / b if b else float('nan'):6.2f}x")


if __name__ == "__main__":
    main()
