"""Audio of a recording on the session timeline (pure: bytes in, bytes out).

G.711 u-law / a-law decoding by table, 8 kHz -> 24 kHz resampling, WAV
headers, and :class:`ConversationAudio`, which places the user's and the
assistant's audio where a listener would have heard it. Feed it entries of
:func:`rtproxy.view.timeline.annotate` in order, call :meth:`ConversationAudio.finish`,
then write the tracks with :func:`wav_bytes` / :func:`write_wav`.
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from rtproxy.protocol.formats import SESSION_CONFIG_EVENTS, SessionFormats, silence
from rtproxy.view.events import number
from rtproxy.protocol.events import AUDIO_DELTA_EVENTS, AudioFormat, canonical_event_type

__all__ = [
    "RATE",
    "ULAW_TABLE",
    "ALAW_TABLE",
    "decode_ulaw",
    "decode_alaw",
    "to_pcm24k",
    "silence",
    "wav_header",
    "wav_bytes",
    "write_wav",
    "interleave",
    "AudioSegment",
    "ConversationAudio",
]

#: Sample rate of every track rtproxy writes.
RATE = 24000


def _ulaw(byte: int) -> int:
    u = ~byte & 0xFF
    exponent = (u >> 4) & 0x07
    sample = ((((u & 0x0F) << 3) + 0x84) << exponent) - 0x84
    return -sample if u & 0x80 else sample


def _alaw(byte: int) -> int:
    a = byte ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    if exponent == 0:
        sample = (mantissa << 4) + 8
    else:
        sample = ((mantissa << 4) + 0x108) << (exponent - 1)
    return sample if a & 0x80 else -sample


#: G.711 code -> 16-bit linear sample (ITU-T G.711, as the classic Sun tables).
ULAW_TABLE: tuple[int, ...] = tuple(_ulaw(b) for b in range(256))
ALAW_TABLE: tuple[int, ...] = tuple(_alaw(b) for b in range(256))


def _split_tables(table: tuple[int, ...]) -> tuple[bytes, bytes]:
    lo = bytes(v & 0xFF for v in table)
    hi = bytes((v >> 8) & 0xFF for v in table)
    return lo, hi


_ULAW_LO, _ULAW_HI = _split_tables(ULAW_TABLE)
_ALAW_LO, _ALAW_HI = _split_tables(ALAW_TABLE)


def _decode(data: bytes, lo: bytes, hi: bytes) -> bytes:
    # Two byte-translations and two strided copies: C speed, no per-sample Python.
    out = bytearray(2 * len(data))
    out[0::2] = data.translate(lo)
    out[1::2] = data.translate(hi)
    return bytes(out)


def decode_ulaw(data: bytes) -> bytes:
    """G.711 u-law bytes -> PCM16 little-endian at the same rate."""
    return _decode(data, _ULAW_LO, _ULAW_HI)


def decode_alaw(data: bytes) -> bytes:
    """G.711 a-law bytes -> PCM16 little-endian at the same rate."""
    return _decode(data, _ALAW_LO, _ALAW_HI)


def _resample(pcm: bytes, rate: int) -> bytes:
    """PCM16 at ``rate`` -> 24 kHz, by linear interpolation (exact copy at 24 kHz).

    For 8 kHz every third output sample is an input sample unchanged.
    """
    if rate == RATE:
        return pcm
    src = array("h")
    src.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    n = len(src)
    if n == 0:
        return b""
    if RATE % rate == 0:
        k = RATE // rate
        out = array("h", bytes(2 * n * k))
        out[0::k] = src
        nxt = src[1:]
        nxt.append(src[-1])
        for j in range(1, k):
            out[j::k] = array("h", [a + (b - a) * j // k for a, b in zip(src, nxt)])
        return out.tobytes()
    n_out = n * RATE // rate
    step = rate / RATE
    res = array("h", bytes(2 * n_out))
    for i in range(n_out):
        pos = i * step
        a = int(pos)
        b = min(a + 1, n - 1)
        frac = pos - a
        res[i] = int(src[a] + (src[b] - src[a]) * frac)
    return res.tobytes()


def to_pcm24k(audio: bytes, fmt: AudioFormat) -> bytes:
    """Audio as it travels in ``fmt`` -> 24 kHz PCM16 little-endian mono."""
    if fmt.codec == "g711_ulaw":
        return _resample(decode_ulaw(audio), fmt.rate)
    if fmt.codec == "g711_alaw":
        return _resample(decode_alaw(audio), fmt.rate)
    return _resample(audio, fmt.rate)


def wav_header(n_frames: int, channels: int = 1, rate: int = RATE) -> bytes:
    """A 44-byte RIFF/WAVE header for PCM16."""
    block = 2 * channels
    data = n_frames * block
    return (
        b"RIFF" + struct.pack("<I", 36 + data) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
        + b"data" + struct.pack("<I", data)
    )


def wav_bytes(pcm: bytes, channels: int = 1, rate: int = RATE) -> bytes:
    """A complete WAV file around PCM16 samples."""
    return wav_header(len(pcm) // (2 * channels), channels, rate) + pcm


def interleave(left: bytes | bytearray, right: bytes | bytearray) -> bytes:
    """Two mono PCM16 tracks of equal length -> one stereo track."""
    a = array("h")
    a.frombytes(bytes(left))
    b = array("h")
    b.frombytes(bytes(right))
    out = array("h", bytes(4 * len(a)))
    out[0::2] = a
    out[1::2] = b
    return out.tobytes()


def write_wav(fh: BinaryIO, left: bytes | bytearray, right: bytes | bytearray | None = None) -> int:
    """Write a mono (``right`` None) or stereo WAV; returns bytes written.

    Stereo is interleaved a minute at a time so memory stays near the tracks' size.
    """
    if right is None:
        fh.write(wav_header(len(left) // 2, 1))
        fh.write(left)
        return 44 + len(left)
    n = max(len(left), len(right))
    fh.write(wav_header(n // 2, 2))
    step = 2 * RATE * 60
    for i in range(0, n, step):
        a = bytes(left[i : i + step])
        b = bytes(right[i : i + step])
        m = max(len(a), len(b))
        fh.write(interleave(a.ljust(m, b"\0"), b.ljust(m, b"\0")))
    return 44 + 2 * n


@dataclass
class AudioSegment:
    """A stretch of audio placed on the timeline (samples at 24 kHz)."""

    side: str  # "user" | "assistant"
    start: int
    pcm: bytes
    index: int
    """Index of the message it came from."""
    response_id: str | None = None
    item_id: str | None = None

    @property
    def end(self) -> int:
        return self.start + len(self.pcm) // 2


@dataclass
class _Response:
    id: str | None
    t_first: float
    chunks: list[tuple[int, str | None, bytes]] = field(default_factory=list)  # index, item, pcm


class ConversationAudio:
    """Places audio as heard: user appends at their send time, one after another;
    each response's audio from its first delta, one delta after another; an
    assistant item cut where the client truncated it (``audio_end_ms``).

    Call :meth:`feed` with each entry and its parsed head (see
    :func:`rtproxy.view.summary.event_head`), then :meth:`finish`.
    """

    def __init__(self) -> None:
        self.formats = SessionFormats()
        self.user: list[AudioSegment] = []
        self._user_cursor = 0
        self._responses: list[_Response] = []
        self._by_id: dict[str | None, _Response] = {}
        self._truncate: dict[str, int] = {}
        self.assistant: list[AudioSegment] = []

    def feed(self, index: int, t_ns: int, from_client: bool, typ: str | None, head: dict[str, Any] | None, audio: list[bytes]) -> None:
        """Account for one message (``audio``: its decoded base64 values)."""
        canon = canonical_event_type(typ)
        if canon in SESSION_CONFIG_EVENTS:
            self.formats.feed(canon, head)
        if from_client:
            if canon == "conversation.item.truncate" and head is not None:
                item = head.get("item_id")
                end_ms = number(head.get("audio_end_ms"), 0, 1e10)  # untrusted: 1e308, NaN, "fast"
                if isinstance(item, str) and end_ms is not None:
                    self._truncate[item] = int(end_ms * RATE / 1000)
            if audio:
                start = max(t_ns * RATE // 1_000_000_000, self._user_cursor)
                pcm = b"".join(to_pcm24k(a, self.formats.input) for a in audio)
                seg = AudioSegment("user", start, pcm, index)
                self.user.append(seg)
                self._user_cursor = seg.end
            return
        if audio and canon in AUDIO_DELTA_EVENTS:
            rid = head.get("response_id") if head else None
            item = head.get("item_id") if head else None
            r = self._by_id.get(rid) if rid is not None else None
            if r is None:
                r = _Response(rid, t_ns / 1e9)
                self._responses.append(r)
                if rid is not None:
                    self._by_id[rid] = r
            pcm = b"".join(to_pcm24k(a, self.formats.output) for a in audio)
            r.chunks.append((index, item if isinstance(item, str) else None, pcm))

    def finish(self) -> tuple[list[AudioSegment], list[AudioSegment]]:
        """(user segments, assistant segments), truncations applied, on the timeline."""
        played: dict[str | None, int] = {}
        cursor = 0
        out: list[AudioSegment] = []
        for r in self._responses:
            pos = max(int(r.t_first * RATE), cursor)
            for index, item, pcm in r.chunks:
                limit = self._truncate.get(item) if item else None
                done = played.get(item, 0)
                if limit is not None:
                    keep = max(0, min(len(pcm) // 2, limit - done))
                    pcm = pcm[: 2 * keep]
                played[item] = done + len(pcm) // 2
                if not pcm:
                    continue
                seg = AudioSegment("assistant", pos, pcm, index, r.id, item)
                out.append(seg)
                pos = seg.end
            cursor = pos
        self.assistant = out
        return self.user, out


def render_track(segments: list[AudioSegment], n_samples: int) -> bytearray:
    """A mono PCM16 track of ``n_samples`` with each segment copied at its place."""
    track = bytearray(2 * n_samples)
    for s in segments:
        a = 2 * s.start
        b = min(len(track), a + len(s.pcm))
        track[a:b] = s.pcm[: b - a]
    return track


__all__ += ["render_track"]
