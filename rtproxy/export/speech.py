"""Audio for listening: PCM16 at 24 kHz -> Opus in WebM at speech quality (pure: bytes in, bytes out).

The HTML page's default audio (``export --format html --audio speech``):
wideband Opus (8 kHz of audio) in its speech mode (SILK) at 16 kbit/s, about
2 KB a second instead of 48 KB; every browser plays it natively and seeks in it
(the WebM has cues). The .rtrec keeps the lossless audio; this is only what the
page embeds. Encoding is done by PyAV's bundled ffmpeg and libopus, which
release the GIL, so clips are encoded on every core at once, and while the
recording is still being read (:class:`ClipEncoder`).
"""

from __future__ import annotations

import io
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from rtproxy.io.progress import Progress

__all__ = ["MIME", "RATE", "BITRATE", "ClipEncoder", "encode_speech", "unavailable"]

#: The clips' media type.
MIME = "audio/webm"
#: Audio bandwidth of the Opus stream, in samples per second (wideband: all of speech's clarity).
RATE = 16000
#: The highest frequency coded (libopus' wideband).
CUTOFF_HZ = RATE // 2
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


#: Input rates libopus takes as they are; audio at any other rate is resampled to 24 kHz.
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def encode_speech(pcm: bytes, rate: int = _SOURCE_RATE) -> bytes:
    """Mono PCM16 little-endian at ``rate`` -> a complete WebM file with one Opus track.

    Wideband: libopus codes up to 8 kHz of audio (the ``cutoff``), whatever the input
    rate. Audio at a rate libopus takes (24 kHz, as the page's tracks are) goes to it as
    it is; resampling it to 16 kHz first cost 15% more time for the same packets' size.
    """
    import av
    import numpy as np

    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
    if samples.size < rate // 50:
        # Under one 20 ms frame the encoder's delay swallows it all: pad with silence.
        samples = np.concatenate([samples, np.zeros(rate // 50 - samples.size, dtype="<i2")])
    direct = rate in OPUS_RATES
    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as out:
        stream: Any = out.add_stream("libopus", rate=rate if direct else _SOURCE_RATE, layout="mono")
        stream.bit_rate = BITRATE
        stream.codec_context.options = {"application": "voip", "compression_level": str(COMPLEXITY),
                                        "frame_duration": str(FRAME_MS), "cutoff": str(CUTOFF_HZ)}
        resampler = None if direct else av.AudioResampler(format="s16", layout="mono", rate=_SOURCE_RATE)
        # A minute of samples at a time: the converter and encoder hold a frame's worth
        # each (one frame of a crafted file's 90-minute clip took 3 GiB), and the
        # output is the same as from one frame.
        step = rate * 60
        for i in range(0, samples.size, step):
            frame = av.AudioFrame.from_ndarray(samples[i : i + step].reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = i
            for part in [frame] if resampler is None else resampler.resample(frame):
                for packet in stream.encode(part):
                    out.mux(packet)
        if resampler is not None:
            for part in resampler.resample(None):
                for packet in stream.encode(part):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


class ClipEncoder:
    """Encodes clips with :func:`encode_speech` on worker threads as they are given
    (:meth:`submit`), so a page's first clips are encoded while the rest of the
    recording is still being read; :meth:`results` returns them in order.

    ``workers``: threads (default: one per core). Call :meth:`close` when done (or
    use it as a context manager): clips not started yet are dropped.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self._pool: ThreadPoolExecutor | None = None
        self._futures: list[Future[bytes]] = []
        self._seconds: list[int] = []

    def submit(self, track: bytes) -> int:
        """Start encoding ``track`` (24 kHz mono PCM16); returns its index in :meth:`results`."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="rtproxy-opus")
        self._futures.append(self._pool.submit(encode_speech, track))
        self._seconds.append(len(track) // (2 * _SOURCE_RATE))
        return len(self._futures) - 1

    def results(self, progress: Progress | None = None) -> list[bytes]:
        """Every clip, in the order given; ``progress("encoding audio", seconds done,
        seconds in all)`` as they are done."""
        total = sum(self._seconds)
        done = 0
        if progress is not None:
            progress("encoding audio", 0, total)
        out: list[bytes] = []
        for fut, secs in zip(self._futures, self._seconds):
            out.append(fut.result())
            if progress is not None:
                done += secs
                progress("encoding audio", done, total)
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> ClipEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
