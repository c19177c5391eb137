"""Export time and output size for a one-hour voice session: html and wav, against
``rtproxy show --json`` (the JSONL export) measured in the same run; and the html
page's load time in headless Chromium.

The session is the synthetic one of ``bench_size.py`` (real speech from
tests/data/speech_24k.pcm, GA event shapes, a microphone streamed the whole
time in 20-100 ms appends, server VAD turns with streamed audio answers),
written with ``RecordingWriter``. The microphone floor is digital silence here
so building an hour stays quick; that changes the audio's content, not the
number or size of events.

Run::

    .venv/bin/python bench/bench_export.py                 # 60 minutes, 3 runs each
    .venv/bin/python bench/bench_export.py --minutes 10 --runs 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_size import RATE, SessionBuilder, write_rtrec  # noqa: E402

from rtproxy.cli.main import write_jsonl  # noqa: E402
from rtproxy.export.files import export_html, export_wav  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


class QuickSession(SessionBuilder):
    """Speech by slicing (no per-sample gain), so an hour builds in seconds."""

    def speech(self, n_samples: int) -> bytes:
        out = array("h")
        while len(out) < n_samples:
            off = self.rng.randrange(0, len(self.pcm) - RATE)
            out.extend(self.pcm[off:off + min(n_samples - len(out), len(self.pcm) - off)])
        return out.tobytes()


def timed(fn, runs: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def page_load(html: Path, runs: int) -> tuple[float, float, int] | None:
    """(median seconds to a drawn page, median ms per timeline redraw, events) or None."""
    if not os.path.exists(CHROMIUM):
        print(f"  (no {CHROMIUM}: page load not measured; run scripts/install_browser.sh)")
        return None
    from playwright.sync_api import sync_playwright

    loads, draws = [], []
    n = 0
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for _ in range(runs):
                page = b.new_page(viewport={"width": 1400, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                t0 = time.perf_counter()
                page.goto(html.as_uri(), timeout=300_000)
                page.wait_for_selector("body[data-ready='1']", timeout=300_000)
                loads.append(time.perf_counter() - t0)
                if errors:
                    raise RuntimeError(f"page errors: {errors}")
                n = page.evaluate("rtproxy.count")
                # redraw cost at full zoom-out (every event visible), median of 20
                ms = page.evaluate(
                    "(() => {const r=[];for(let i=0;i<20;i++){const t=performance.now();"
                    "document.getElementById('fit').click();r.push(performance.now()-t);}"
                    "r.sort((a,b)=>a-b);return r[10];})()"
                )
                draws.append(ms)
                page.close()
        finally:
            b.close()
    return statistics.median(loads), statistics.median(draws), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    wd = Path(tempfile.mkdtemp(prefix="rtproxy-bench-export-"))
    t0 = time.perf_counter()
    msgs = QuickSession(args.seed, args.minutes, mic_floor=0).build()
    rec = wd / "session.rtrec"
    write_rtrec(rec, msgs)
    print(f"session: {args.minutes:g} min, {len(msgs):,} messages, .rtrec {rec.stat().st_size / 1e6:.1f} MB "
          f"(built in {time.perf_counter() - t0:.1f} s); medians of {args.runs} runs")

    def jsonl() -> int:
        out = wd / "session.jsonl"
        with open(out, "w", encoding="utf-8") as fh:
            write_jsonl(str(rec), fh)
        return out.stat().st_size

    def html() -> int:
        return export_html(str(rec), str(wd / "session.html"))

    def wav() -> int:
        return sum(size for _, size in export_wav(str(rec), str(wd / "session.wav")))

    base_t, base_size = timed(jsonl, args.runs)
    html_t, html_size = timed(html, args.runs)
    wav_t, wav_size = timed(wav, args.runs)
    print(f"{'export':28} {'time':>9} {'vs show --json':>15} {'output':>10}")
    print(f"{'show --json (baseline)':28} {base_t:8.2f}s {'1.00x':>15} {base_size / 1e6:8.1f}MB")
    print(f"{'html':28} {html_t:8.2f}s {html_t / base_t:14.2f}x {html_size / 1e6:8.1f}MB")
    print(f"{'wav (stereo 24 kHz)':28} {wav_t:8.2f}s {wav_t / base_t:14.2f}x {wav_size / 1e6:8.1f}MB")
    res = page_load(wd / "session.html", args.runs)
    if res:
        load, draw, n = res
        print(f"html page in headless Chromium: load to first drawn timeline {load:.2f} s (median), "
              f"{n:,} events; redraw of the whole timeline {draw:.1f} ms")
    for f in wd.iterdir():
        f.unlink()
    wd.rmdir()


if __name__ == "__main__":
    main()
