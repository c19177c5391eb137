"""Audio for listening: PCM16 at 24 kHz -> Opus in WebM at speech quality (pure: bytes in, bytes out).

The HTML page's default audio (``export --format html --audio speech``):
16 kHz wideband Opus in its speech mode (SILK) at 16 kbit/s, about 2 KB a
second instead of 48 KB; every browser plays it natively and seeks in it (the
WebM has cues). The .rtrec keeps the lossless audio; this is only what the
page embeds. Encoding is done by PyAV's bundled ffmpeg and libopus, which
release the GIL, so clips are encoded on every core at once.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable

from rtproxy.io.progress import Progress

__all__ = ["MIME", "RATE", "BITRATE", "encode_speech", "encode_all", "unavailable"]

#: The clips' media type.
MIME = "audio/webm"
#: Sample rate of the Opus stream (wideband: all of speech's clarity).
RATE = 16000
#: Target bits per second (VBR; silence costs almost nothing).
BITRATE = 16000
#: libopus effort (0-10): 1 keeps an hour's audio to seconds of encoding, and
#: speech at 16 kbit/s stays clear.
COMPLEXITY = 1
#: Milliseconds per Opus frame: 60 (as VoIP uses at low bitrates) encodes 7% faster
#: than 20 and 11% smaller (129 s of speech: 0.42 s, 228 KB), at the same bitrate.
FRAME_MS = 60
_SOURCE_RATE = 24000


def unavailable() -> str | None:
    """Why speech clips cannot be made here (PyAV or its libopus missing), or None."""
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a dependency
        return f"PyAV is not installed ({exc})"
    if "libopus" not in av.codecs_available:  # pragma: no cover
        return "this PyAV has no libopus encoder"
    return None


def encode_speech(pcm: bytes, rate: int = _SOURCE_RATE) -> bytes:
    """Mono PCM16 little-endian at ``rate`` -> a complete WebM file with one Opus track."""
    import av
    import numpy as np

    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
    if samples.size < rate // 50:
        # Under one 20 ms frame the resampler's delay swallows it all: pad with silence.
        samples = np.concatenate([samples, np.zeros(rate // 50 - samples.size, dtype="<i2")])
    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as out:
        stream: Any = out.add_stream("libopus", rate=RATE, layout="mono")
        stream.bit_rate = BITRATE
        stream.codec_context.options = {"application": "voip", "compression_level": str(COMPLEXITY),
                                        "frame_duration": str(FRAME_MS)}
        if samples.size:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
            # A minute of samples at a time: the converter and encoder hold a frame's worth
            # each (one frame of a crafted file's 90-minute clip took 3 GiB), and the
            # output is the same as from one frame.
            step = rate * 60
            for i in range(0, samples.size, step):
                frame = av.AudioFrame.from_ndarray(samples[i : i + step].reshape(1, -1), format="s16", layout="mono")
                frame.sample_rate = rate
                frame.pts = i
                for part in resampler.resample(frame):
                    for packet in stream.encode(part):
                        out.mux(packet)
            for part in resampler.resample(None):
                for packet in stream.encode(part):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def encode_all(tracks: Iterable[bytes], workers: int | None = None, progress: Progress | None = None) -> list[bytes]:
    """:func:`encode_speech` of each track, in order, on ``workers`` threads (default: one per core).
    ``progress("encoding audio", seconds done, seconds in all)`` as clips are done."""
    items = list(tracks)
    total = sum(len(t) for t in items) // (2 * _SOURCE_RATE)
    done = 0
    n = workers or min(len(items), os.cpu_count() or 1) or 1
    out: list[bytes] = [b""] * len(items)
    # Longest first, so the last clip to finish is a short one.
    order = sorted(range(len(items)), key=lambda i: -len(items[i]))
    if progress is not None:
        progress("encoding audio", 0, total)
    if n <= 1 or len(items) <= 1:
        results: Iterable[bytes] = map(encode_speech, (items[i] for i in order))
        pool = None
    else:
        pool = ThreadPoolExecutor(n)
        results = pool.map(encode_speech, (items[i] for i in order))
    try:
        for i, data in zip(order, results):
            out[i] = data
            if progress is not None:
                done += len(items[i])
                progress("encoding audio", done // (2 * _SOURCE_RATE), total)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return out
