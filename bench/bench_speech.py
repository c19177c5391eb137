"""The html page's speech audio: what encoding a one-hour session's clips costs,
against reading the file's events, and what other Opus settings would cost.

``export --format html`` (``--audio speech``, the default) encodes every audible
bar of the conversation as Opus in WebM (:mod:`rtproxy.export.speech`). This
script takes the same bars (made as the page makes them, with ``--audio full``,
whose clips are the bars' PCM) and times:

- reading the file's events (``for e in rtproxy.open(p).events(): e.type``, its
  own process, as in bench_read.py): the baseline, and the 2x budget;
- encoding every clip with :func:`rtproxy.export.speech.encode_speech` in this
  one process (CPU seconds, per second of audio, and bytes per second);
- the same clips through :class:`rtproxy.export.speech.ClipEncoder`, one worker
  per core (wall seconds);
- the least wall time encoding alone needs on this machine (CPU / cores);
- other settings on the first ``--sample`` seconds of clips, against the current
  one in the same run: CPU per second of audio, bytes per second, and PESQ
  wideband (ITU-T P.862.2) if the ``pesq`` package can be imported
  (``pip install pesq``; not a dependency of rtproxy).

Run::

    .venv/bin/python bench/bench_speech.py --cache /tmp/rtread           # the hour of bench_read.py
    .venv/bin/python bench/bench_speech.py --minutes 5 --sample 60       # a quick look
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_read import BASELINE, env, session  # noqa: E402

import rtproxy.export.speech as speech  # noqa: E402
from rtproxy.export.html import ReportBuilder  # noqa: E402
from rtproxy.io.batch import unpack_ahead  # noqa: E402
from rtproxy.io.format import open_recording  # noqa: E402
from rtproxy.view.timeline import annotate  # noqa: E402

RATE = 24000
#: (label, libopus application, bit/s, frame ms); the first is what the page uses.
SETTINGS = [
    ("SILK 16 kbit/s 60 ms (the page's)", "voip", speech.BITRATE, speech.FRAME_MS),
    ("SILK 12 kbit/s 60 ms", "voip", 12000, 60),
    ("SILK 24 kbit/s 20 ms", "voip", 24000, 20),
    ("CELT 16 kbit/s 20 ms", "lowdelay", 16000, 20),
    ("CELT 24 kbit/s 20 ms", "lowdelay", 24000, 20),
]


def page_tracks(path: Path) -> list[bytes]:
    """The PCM (24 kHz mono PCM16) of every bar the html page gives a clip, in page order."""
    b = ReportBuilder(path.name, audio="full")
    with open_recording(str(path)) as reader:
        for e in annotate(unpack_ahead(reader.messages()), details=False):
            b.feed(e)
        _, clips = b.data(reader.recording)
    tracks = []
    for c in clips:
        with wave.open(io.BytesIO(base64.b64decode(c))) as w:
            tracks.append(w.readframes(w.getnframes()))
    return tracks


def encode_with(pcm: bytes, application: str, bitrate: int, frame_ms: int) -> bytes:
    """:func:`encode_speech` with other settings (same container, complexity and cutoff)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as out:
        st: Any = out.add_stream("libopus", rate=RATE, layout="mono")
        st.bit_rate = bitrate
        st.codec_context.options = {"application": application, "compression_level": str(speech.COMPLEXITY),
                                    "frame_duration": str(frame_ms), "cutoff": str(speech.CUTOFF_HZ)}
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = 0
        for packet in st.encode(frame):
            out.mux(packet)
        for packet in st.encode(None):
            out.mux(packet)
    return buf.getvalue()


def decoded_16k(data: bytes) -> np.ndarray:
    import av

    parts = []
    with av.open(io.BytesIO(data)) as c:
        rs = av.AudioResampler(format="s16", layout="mono", rate=16000)
        for f in c.decode(audio=0):
            parts += [g.to_ndarray().reshape(-1) for g in rs.resample(f)]
        parts += [g.to_ndarray().reshape(-1) for g in rs.resample(None)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype="<i2")


def reference_16k(pcm: bytes) -> np.ndarray:
    import av

    frame = av.AudioFrame.from_ndarray(np.frombuffer(pcm, dtype="<i2").reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = RATE
    rs = av.AudioResampler(format="s16", layout="mono", rate=16000)
    return np.concatenate([g.to_ndarray().reshape(-1) for g in rs.resample(frame) + rs.resample(None)])


def pesq_wb(ref: np.ndarray, deg: np.ndarray) -> float | None:
    try:
        from pesq import pesq
    except ImportError:
        return None
    n = min(len(ref), len(deg))
    try:
        return float(pesq(16000, ref[:n], deg[:n], "wb"))
    except Exception:  # noqa: BLE001 - a clip PESQ cannot score (too short, no speech) is left out
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--mic-floor", type=float, default=10.0, help="sigma of the microphone's noise floor (LSB)")
    ap.add_argument("--cache", metavar="DIR", help="keep the built session here and reuse it (as bench_read.py)")
    ap.add_argument("--runs", type=int, default=3, help="baseline reads (median)")
    ap.add_argument("--sample", type=float, default=300.0, help="seconds of clips the other settings are tried on")
    args = ap.parse_args()

    wd = Path(tempfile.mkdtemp(prefix="rtproxy-bench-speech-"))
    rec, _ = session(args.cache, wd, args.minutes, args.seed, args.mic_floor)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    print(f"session: {args.minutes:g} min, .rtrec {rec.stat().st_size / 1e6:.1f} MB; {cores} cores")

    reads = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", BASELINE, str(rec)], check=True, env=env(), cwd=ROOT)
        reads.append(time.perf_counter() - t0)
    base = statistics.median(reads)

    tracks = page_tracks(rec)
    seconds = sum(len(t) for t in tracks) / (2 * RATE)
    print(f"the page's clips: {len(tracks):,}, {seconds:,.0f} s of audio")

    c0 = time.process_time()
    size = sum(len(speech.encode_speech(t)) for t in tracks)
    cpu = time.process_time() - c0
    with speech.ClipEncoder(pool_after_s=0) as enc:
        w0 = time.perf_counter()
        ids = [enc.submit(t) for t in tracks]
        pooled = sum(map(len, enc.results(ids)))
        wall = time.perf_counter() - w0
    assert pooled == size, "the workers' clips differ from this process's"

    print(f"{'':44} {'seconds':>8} {'x read':>7}")
    print(f"{'read events (baseline)':44} {base:8.2f} {1:7.2f}")
    print(f"{'encode, one process (CPU)':44} {cpu:8.2f} {cpu / base:7.2f}   "
          f"{cpu / seconds * 1000:.2f} ms per s of audio, {size / seconds:,.0f} B/s")
    print(f"{f'encode, ClipEncoder with {enc.workers} workers (wall)':44} {wall:8.2f} {wall / base:7.2f}")
    print(f"{f'encode alone at best on {cores} cores (CPU / cores)':44} {cpu / cores:8.2f} {cpu / cores / base:7.2f}")
    print(f"{'2x budget for the whole export':44} {2 * base:8.2f} {2:7.2f}")

    sample, total = [], 0.0
    for t in tracks:
        if total >= args.sample:
            break
        sample.append(t)
        total += len(t) / (2 * RATE)
    refs = [reference_16k(t) for t in sample]
    print(f"\nother settings, on {len(sample)} clips ({total:.0f} s); complexity {speech.COMPLEXITY}, "
          f"cutoff {speech.CUTOFF_HZ} Hz, WebM:")
    print(f"{'setting':36} {'ms/s':>6} {'CPU x':>6} {'B/s':>7} {'size x':>7} {'PESQ-WB':>8}")
    first: tuple[float, float] | None = None
    for label, app, bitrate, frame_ms in SETTINGS:
        c0 = time.process_time()
        outs = [encode_with(t, app, bitrate, frame_ms) for t in sample]
        ms = (time.process_time() - c0) / total * 1000
        bps = sum(map(len, outs)) / total
        scores = [s for s in (pesq_wb(r, decoded_16k(o)) for r, o in zip(refs, outs)) if s is not None]
        first = first or (ms, bps)
        q = f"{statistics.median(scores):8.2f}" if scores else f"{'-':>8}"
        print(f"{label:36} {ms:6.2f} {ms / first[0]:6.2f} {bps:7,.0f} {bps / first[1]:7.2f} {q}")


if __name__ == "__main__":
    main()
