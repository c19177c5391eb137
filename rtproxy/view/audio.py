"""Audio of a recording on the session timeline (pure: bytes in, bytes out).

G.711 u-law / a-law decoding by table, 8 kHz -> 24 kHz resampling, WAV
headers, and :class:`ConversationAudio`, which places the user's and the
assistant's audio where a listener would have heard it. Feed it entries of
:func:`rtproxy.view.timeline.annotate` in order, call :meth:`ConversationAudio.finish`,
then write the tracks with :func:`wav_bytes` / :func:`write_wav`.
"""

from __future__ import annotations

import struct
from operator import itemgetter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from rtproxy.io.audiocodec import interleave_into
from rtproxy.protocol.formats import SESSION_CONFIG_EVENTS, SessionFormats, silence
from rtproxy.view.events import ident, may_set_format, number, parse_head
from rtproxy.protocol.events import AUDIO_DELTA_EVENTS, AudioFormat, canonical_event_type, event_type

if TYPE_CHECKING:
    from rtproxy.io.format import Message

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
#: Longest timeline placed (seconds): the API's sessions last at most an hour; a
#: crafted recording's audio days apart (or gigabytes of it) stops here.
MAX_TIMELINE_S = 90 * 60


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
    import numpy as np  # on first use: commands without audio to render never load it
    if rate == RATE:
        return pcm
    # numpy, not a loop per sample: a crafted session's hours of 1 kHz audio
    # (24 output samples each) take seconds, not minutes. Same arithmetic as before.
    src = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.int32)
    n = len(src)
    if n == 0:
        return b""
    if RATE % rate == 0:
        k = RATE // rate
        nxt_all = np.append(src[1:], src[-1])
        parts = []
        step = 1 << 18  # source samples per block: memory stays a few MiB per block
        for i in range(0, n, step):
            s, nx = src[i : i + step], nxt_all[i : i + step]
            out = np.empty(len(s) * k, dtype=np.int32)
            out[0::k] = s
            for j in range(1, k):
                out[j::k] = s + (nx - s) * j // k  # floor division, as Python's
            parts.append(out.astype("<i2").tobytes())
        return b"".join(parts)
    n_out = n * RATE // rate
    # In blocks of output samples: a whole crafted message at 1,001 Hz (24 times as many
    # samples out, four float arrays of them) once took 3 GB; a block takes a few MiB.
    ratio = rate / RATE
    parts = []
    step = 1 << 18
    for i in range(0, n_out, step):
        pos = np.arange(i, min(i + step, n_out), dtype=np.float64) * ratio
        a = pos.astype(np.int64)
        b = np.minimum(a + 1, n - 1)
        frac = pos - a
        res = np.trunc(src[a] + (src[b] - src[a]) * frac)  # int() truncates toward zero
        parts.append(res.astype("<i2").tobytes())
    return b"".join(parts)


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
    out = bytearray(4 * (min(len(left), len(right)) // 2))
    interleave_into(out, left, right)
    return bytes(out)


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
    samples: int = 0


#: Events whose head :meth:`ConversationAudio.feed` reads (GA names).
_HEAD_EVENTS = frozenset({*SESSION_CONFIG_EVENTS, "conversation.item.truncate", *AUDIO_DELTA_EVENTS})


class ConversationAudio:
    """Places audio as heard: user appends at their send time, one after another;
    each response's audio from its first delta, one delta after another; an
    assistant item cut where the client truncated it (``audio_end_ms``).

    Call :meth:`feed` with each entry and its parsed head (see
    :func:`rtproxy.view.summary.event_head`), then :meth:`finish`.
    """

    def __init__(self, max_seconds: float | None = None) -> None:
        self.formats = SessionFormats()
        #: The timeline ends here: audio placed later is left out (and counted in
        #: ``dropped_ms``), so a crafted file (audio days apart, gigabytes of it)
        #: holds at most this much audio per side in memory.
        self.max_samples = int((MAX_TIMELINE_S if max_seconds is None else max_seconds) * RATE)
        self.dropped_ms = 0.0
        self.user: list[AudioSegment] = []
        self._user_cursor = 0
        self._responses: list[_Response] = []
        self._by_id: dict[str | None, _Response] = {}
        self._truncate: dict[str, int] = {}
        self._assistant_held = 0
        self.assistant: list[AudioSegment] = []
        self._ahead: _Placement | None = None

    @staticmethod
    def wants_head(typ: str | None) -> bool:
        """Whether :meth:`feed` reads the parsed head of an event of this type (others
        may be fed ``None``: an audio append is not parsed for nothing)."""
        return canonical_event_type(typ) in _HEAD_EVENTS

    def feed(self, index: int, t_ns: int, from_client: bool, typ: str | None, head: dict[str, Any] | None, audio: list[bytes]) -> None:
        """Account for one message (``audio``: its decoded base64 values; ``head``: its
        parsed head, or None, which it may be unless :meth:`wants_head`)."""
        canon = canonical_event_type(typ)
        if canon in SESSION_CONFIG_EVENTS:
            self.formats.feed(canon, head)
        if from_client:
            if canon == "conversation.item.truncate" and head is not None:
                item = ident(head.get("item_id"))
                end_ms = number(head.get("audio_end_ms"), 0, 1e10)  # untrusted: 1e308, NaN, "fast"
                if item is not None and end_ms is not None:
                    self._truncate[item] = int(end_ms * RATE / 1000)
            if audio:
                self._user_audio(index, t_ns, audio)
            return
        if audio and canon in AUDIO_DELTA_EVENTS:
            rid = ident(head.get("response_id")) if head else None
            item = ident(head.get("item_id")) if head else None
            r = self._by_id.get(rid) if rid is not None else None
            if r is None:
                r = _Response(rid, t_ns / 1e9)
                self._responses.append(r)
                if rid is not None:
                    self._by_id[rid] = r
            # The earliest this chunk can be placed: after the response's start and what it
            # holds, and after all assistant audio held so far (placed one after another).
            start = max(int(r.t_first * RATE) + r.samples, self._assistant_held)
            pcm = self._fit(start, audio, self.formats.output)
            if pcm:
                r.chunks.append((index, item, pcm))
                r.samples += len(pcm) // 2
                self._assistant_held += len(pcm) // 2

    def feed_message(self, index: int, m: Message) -> None:
        """:meth:`feed` for a message read from the file without an event around it
        (``export --format wav``): its type is read, and its head parsed, only where
        they change what is heard. A client message's audio is the user's whatever its
        type, so only a type that may set a format or truncate is read; a server
        message matters only with audio (a delta) or as a session event."""
        audio = m.audio
        if not m.is_text:
            if audio:
                self.feed(index, m.t_ns, m.from_client, None, None, audio)
            return
        head = m.head
        if m.from_client:
            if not (may_set_format(head) or b"truncate" in head):
                if audio:
                    self._user_audio(index, m.t_ns, audio)
                return
        elif not audio and not may_set_format(head):
            return
        typ = event_type(head)
        self.feed(index, m.t_ns, m.from_client, typ, parse_head(head, typ) if self.wants_head(typ) else None, audio)

    def _user_audio(self, index: int, t_ns: int, audio: list[bytes]) -> None:
        """The user's audio, at its send time or after the user's audio before it."""
        start = max(t_ns * RATE // 1_000_000_000, self._user_cursor)
        pcm = self._fit(start, audio, self.formats.input)
        if pcm:
            self.user.append(AudioSegment("user", start, pcm, index))
            self._user_cursor = start + len(pcm) // 2

    def _fit(self, start: int, audio: list[bytes], fmt: AudioFormat) -> bytes:
        """``audio`` as 24 kHz PCM, cut where the timeline ends (the rest counted as dropped)."""
        room = self.max_samples - start
        total = len(audio[0]) if len(audio) == 1 else sum(len(a) for a in audio)
        pcm16 = fmt.codec == "pcm16"
        if pcm16 and fmt.rate == RATE and 0 < total <= 2 * room and not total % 2:
            # The usual: 24 kHz PCM16, as it came, well before the timeline's end.
            return bytes(audio[0]) if len(audio) == 1 else b"".join(audio)
        width = 2 if pcm16 else 1
        if room <= 0:
            self.dropped_ms += fmt.duration_ms(total)
            return b""
        # Source bytes that make at most `room` samples at 24 kHz (converted only that much).
        keep = min(total, max(width, int(room * fmt.rate / RATE) * width))  # at most `room` samples out
        keep -= keep % width
        if keep < total:
            self.dropped_ms += fmt.duration_ms(total - keep)
            joined = b"".join(audio)[:keep]
            pcm = to_pcm24k(joined, fmt)
        else:
            pcm = b"".join(to_pcm24k(a, fmt) for a in audio)
        return pcm[: 2 * room]

    def finish(self) -> tuple[list[AudioSegment], list[AudioSegment]]:
        """(user segments, assistant segments), truncations applied, on the timeline."""
        place = _Placement()
        out: list[AudioSegment] = []
        for r in self._responses:
            out.extend(self._place(r, place))
        self.assistant = out
        return self.user, out

    @property
    def responses(self) -> int:
        """How many responses with audio have started so far."""
        return len(self._responses)

    def placed_ahead(self) -> list[AudioSegment]:
        """The assistant segments of the responses before the newest one not placed
        ahead yet, placed as :meth:`finish` places them with the truncations known so
        far. A guess made during the read (a later truncation or a late delta changes
        what :meth:`finish` gives), for work that can start early: the page encodes
        these clips while it reads, and keeps those :meth:`finish` confirms."""
        ahead = self._ahead
        if ahead is None:
            ahead = self._ahead = _Placement()
        out: list[AudioSegment] = []
        while ahead.next < len(self._responses) - 1:
            out.extend(self._place(self._responses[ahead.next], ahead))
            ahead.next += 1
        return out

    def _place(self, r: _Response, place: _Placement) -> list[AudioSegment]:
        """One response's chunks on the timeline, after what ``place`` holds so far."""
        played = place.played
        pos = max(int(r.t_first * RATE), place.cursor)
        out: list[AudioSegment] = []
        for index, item, pcm in r.chunks:
            limit = self._truncate.get(item) if item else None
            done = played.get(item, 0)
            if limit is not None:
                keep = max(0, min(len(pcm) // 2, limit - done))
                pcm = pcm[: 2 * keep]
            played[item] = done + len(pcm) // 2
            pcm = pcm[: 2 * max(0, self.max_samples - pos)]  # the timeline ends
            if not pcm:
                continue
            seg = AudioSegment("assistant", pos, pcm, index, r.id, item)
            out.append(seg)
            pos = seg.end
        place.cursor = pos
        return out


class _Placement:
    """Where :meth:`ConversationAudio._place` is: the timeline's cursor, what each item has played."""

    __slots__ = ("cursor", "played", "next")

    def __init__(self) -> None:
        self.cursor = 0
        self.played: dict[str | None, int] = {}
        self.next = 0  # responses placed (placed_ahead)


def render_track(segments: list[AudioSegment], n_samples: int) -> bytearray:
    """A mono PCM16 track of ``n_samples`` with each segment copied at its place."""
    track = bytearray(2 * n_samples)
    for s in segments:
        a = 2 * s.start
        b = min(len(track), a + len(s.pcm))
        track[a:b] = s.pcm[: b - a]
    return track


def render_window(segments: list[AudioSegment], start: int, n_samples: int) -> bytearray:
    """Samples ``start .. start + n_samples`` of the track ``segments`` make (mono PCM16)."""
    track = bytearray(2 * n_samples)
    end = start + n_samples
    for s in segments:
        if s.end <= start or s.start >= end:
            continue
        a = max(s.start, start)
        b = min(s.end, end)
        track[2 * (a - start) : 2 * (b - start)] = s.pcm[2 * (a - s.start) : 2 * (b - s.start)]
    return track


def write_wav_tracks(fh: BinaryIO, left: list[AudioSegment], right: list[AudioSegment] | None, n_samples: int) -> int:
    """Write a mono (``right`` None) or stereo WAV of ``n_samples`` from placed segments,
    a minute at a time: the whole track is never held (only the segments). Returns bytes written."""
    channels = 1 if right is None else 2
    fh.write(wav_header(n_samples, channels))
    step = RATE * 60
    # (start, end, pcm) by start: each window looks only at those that can overlap it.
    lspans = _spans(left)
    rspans = _spans(right) if right is not None else []
    li = ri = 0
    # Each channel's window is filled as bytes, then both are interleaved at once.
    mono = bytearray(2 * min(step, n_samples))
    zeros = bytes(len(mono))
    other = bytearray(len(mono)) if right is not None else None
    stereo = bytearray(2 * len(mono)) if right is not None else None
    for pos in range(0, n_samples, step):
        n = min(step, n_samples - pos)
        li = _fill(mono, lspans, li, pos, n, zeros)
        if stereo is None or other is None:
            fh.write(memoryview(mono)[: 2 * n])
            continue
        ri = _fill(other, rspans, ri, pos, n, zeros)
        k = interleave_into(stereo, memoryview(mono)[: 2 * n], memoryview(other)[: 2 * n])
        fh.write(memoryview(stereo)[:k])
    return 44 + 2 * channels * n_samples


def _spans(segments: list[AudioSegment]) -> list[tuple[int, int, bytes]]:
    spans = [(s.start, s.start + len(s.pcm) // 2, s.pcm) for s in segments]
    spans.sort(key=itemgetter(0))  # placed in order already, as a rule: then this is one pass
    return spans


def _fill(buf: bytearray, spans: list[tuple[int, int, bytes]], i: int, start: int, n: int, zeros: bytes) -> int:
    """Samples ``start .. start + n`` of the track ``spans`` make, into ``buf`` (zeros
    elsewhere, copied from ``zeros``: a window is cleared by a copy, not by megabytes
    of new zeros mapped and faulted in each time); ``i``: the first span that may still
    reach this window. Returns the first one that may reach the next."""
    end = start + n
    view = memoryview(buf)
    view[: 2 * n] = memoryview(zeros)[: 2 * n]
    while i < len(spans) and spans[i][1] <= start:
        i += 1
    j = i
    while j < len(spans) and spans[j][0] < end:
        a, b, pcm = spans[j]
        if b > start:
            lo, hi = max(a, start), min(b, end)
            view[2 * (lo - start) : 2 * (hi - start)] = memoryview(pcm)[2 * (lo - a) : 2 * (hi - a)]
        j += 1
    return i


__all__ += ["render_track", "render_window", "write_wav_tracks", "MAX_TIMELINE_S"]
