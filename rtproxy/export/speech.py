"""Audio for listening: PCM16 at 24 kHz -> Opus in WebM at speech quality (pure: bytes in, bytes out).

The HTML page's default audio (``export --format html --audio speech``):
wideband Opus (8 kHz of audio) in its speech mode (SILK) at 16 kbit/s, about
2 KB a second instead of 48 KB; every browser plays it natively and seeks in it
(the WebM has cues). The .rtrec keeps the lossless audio; this is only what the
page embeds. Encoding is done by PyAV's bundled ffmpeg and libopus, in worker
processes, so clips are encoded on every core at once, and while the recording
is still being read (:class:`ClipEncoder`).
"""

from __future__ import annotations

import io
import os
import signal
import queue
import struct
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

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


#: Seconds of audio below which a page's clips are encoded in this process, at the end:
#: starting worker processes costs more than encoding them.
POOL_AFTER_S = 30
_LEN = struct.Struct("<Q")


class ClipEncoder:
    """Encodes clips with :func:`encode_speech` in worker processes as they are given
    (:meth:`submit`), so a page's clips are encoded on the other cores while the
    rest of the recording is still being read; :meth:`results` returns them.

    Processes, not threads: libopus runs without the GIL, but PyAV takes it back for
    every frame and packet, and beside a thread reading the recording each take
    waited for the interpreter's switch interval (an hour's page: 134 of 1,149 clips
    encoded by the end of its 9 s read). Until :data:`POOL_AFTER_S` seconds of
    audio are given, clips wait and are encoded here by :meth:`results`.

    Each worker is ``python -m rtproxy.export.speech``, a clip in and its WebM out on
    its pipes, in a session of its own: Ctrl-C is this process's to handle, and a
    worker ends when its input does (this process closed it, or ended however it
    did). A clip whose worker failed is encoded here.

    ``workers``: processes (default: one per core). Call :meth:`close` when done (or
    use it as a context manager): clips not started yet are dropped.
    """

    def __init__(self, workers: int | None = None, pool_after_s: float = POOL_AFTER_S) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.pool_after_s = pool_after_s
        self._pool: ThreadPoolExecutor | None = None  # a thread per worker, waiting on its pipes
        self._procs: list[subprocess.Popen[bytes]] = []
        self._idle: queue.SimpleQueue[subprocess.Popen[bytes] | None] = queue.SimpleQueue()
        self._tracks: list[bytes | None] = []  # until its clip is collected
        self._futures: list[Future[bytes] | None] = []
        self._seconds: list[float] = []
        self._given = 0.0  # seconds of audio submitted

    def submit(self, track: bytes) -> int:
        """Start encoding ``track`` (24 kHz mono PCM16); returns its index for :meth:`results`."""
        self._tracks.append(track)
        self._futures.append(None)
        self._seconds.append(len(track) / (2 * _SOURCE_RATE))
        self._given += self._seconds[-1]
        if self._pool is not None:
            self._start(len(self._tracks) - 1)
        elif self.workers > 1 and self._given >= self.pool_after_s and self._spawn():
            for i in range(len(self._tracks)):
                self._start(i)
        return len(self._tracks) - 1

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids (none until :data:`POOL_AFTER_S` seconds are given)."""
        return [p.pid for p in self._procs]

    def _spawn(self) -> bool:
        cmd = [sys.executable, "-m", "rtproxy.export.speech"]
        try:
            for _ in range(self.workers):
                self._procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                    stderr=subprocess.DEVNULL, start_new_session=True))
        except OSError:  # cannot start processes here: every clip is encoded in this one
            self.close()
            self.workers = 1
            return False
        for proc in self._procs:
            self._idle.put(proc)
        self._pool = ThreadPoolExecutor(len(self._procs), thread_name_prefix="rtproxy-opus")
        return True

    def _start(self, i: int) -> None:
        assert self._pool is not None
        track = self._tracks[i]
        if track is not None and self._futures[i] is None:
            self._futures[i] = self._pool.submit(self._remote, track)

    def _remote(self, track: bytes) -> bytes:
        """Encode ``track`` in the next idle worker (OSError/EOFError if it failed)."""
        proc = self._idle.get()
        if proc is None:  # a worker that failed: the clip is made here
            self._idle.put(None)
            raise EOFError("an encoder worker ended")
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(_LEN.pack(len(track)))
            proc.stdin.write(track)
            proc.stdin.flush()
            head = proc.stdout.read(_LEN.size)
            if len(head) < _LEN.size:
                raise EOFError("the encoder worker ended")
            (n,) = _LEN.unpack(head)
            data = proc.stdout.read(n)
            if len(data) < n:
                raise EOFError("the encoder worker ended")
        except BaseException:
            proc.kill()
            self._idle.put(None)  # in its place: the clips that draw it are made here
            raise
        self._idle.put(proc)
        return data

    def results(self, ids: list[int] | None = None, progress: Progress | None = None) -> list[bytes]:
        """The clips ``ids`` (default: all, in the order given), waiting for each; the
        others are dropped if not started yet. ``progress("encoding audio", seconds
        done, seconds in all)`` as they are done."""
        chosen = list(range(len(self._tracks))) if ids is None else ids
        keep = set(chosen)
        for i, fut in enumerate(self._futures):
            if i not in keep:
                self._tracks[i] = None
                if fut is not None:
                    fut.cancel()
        total = int(sum(self._seconds[i] for i in keep))
        done = 0.0
        if progress is not None:
            progress("encoding audio", 0, total)
        made: dict[int, bytes] = {}
        out: list[bytes] = []
        for i in chosen:
            if i not in made:
                made[i] = self._result(i)
                done += self._seconds[i]
                if progress is not None:
                    progress("encoding audio", int(done), total)
            out.append(made[i])
        return out

    def _result(self, i: int) -> bytes:
        fut, track = self._futures[i], self._tracks[i] or b""
        self._tracks[i] = None  # kept until now: a clip whose worker failed is made here
        if fut is None:
            return encode_speech(track)
        try:
            return fut.result()
        except (OSError, EOFError, ValueError):
            # The worker could not start, died (killed, out of memory) or failed on this
            # clip: encode it here (an error it raises is this clip's own).
            return encode_speech(track)

    def close(self) -> None:
        """Stop the workers (a clip being encoded is dropped) and wait for them."""
        for proc in self._procs:
            proc.kill()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for proc in self._procs:
            proc.wait()
            for f in (proc.stdin, proc.stdout):
                if f is not None:
                    f.close()
        self._procs = []

    def __enter__(self) -> ClipEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """A worker's loop: clips (8-byte length, then PCM) in, WebM out the same way, until
    the input ends."""
    while True:
        head = inp.read(_LEN.size)
        if len(head) < _LEN.size:
            return
        (n,) = _LEN.unpack(head)
        track = inp.read(n)
        if len(track) < n:
            return
        data = encode_speech(track)
        out.write(_LEN.pack(len(data)))
        out.write(data)
        out.flush()


if __name__ == "__main__":  # a ClipEncoder's worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    except BrokenPipeError:  # the page was made without this clip (or stopped)
        pass
