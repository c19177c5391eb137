"""Audio formats: what the protocol allows, how a session picks one, silence per codec.

Pure. :class:`SessionFormats` is the one tracker of the formats in force that
every reader uses (the event view, replay, diff, the stripper, exports): it
follows ``session.update`` / ``session.created`` / ``session.updated`` in the
beta and GA shapes, and ``transcription_session.*`` (beta transcription
sessions, whose ``input_audio_format`` sits at the top of ``session``).

Values from a recording are untrusted: a rate that is not a positive whole
number in range, or a format that is not one the protocol defines, is ignored
(the format in force stays as it was) and never raises.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "AudioFormat",
    "PCM16_24K",
    "parse_format",
    "audio_format_from_session",
    "SessionFormats",
    "SESSION_CONFIG_EVENTS",
    "silence",
]

#: Events that set or report the session's configuration (audio formats among it).
SESSION_CONFIG_EVENTS = frozenset(
    {
        "session.update",
        "session.created",
        "session.updated",
        "transcription_session.update",
        "transcription_session.created",
        "transcription_session.updated",
    }
)

#: PCM rates a recording may name (the API uses 24 kHz; others are recorded as asked).
_MIN_RATE, _MAX_RATE = 1000, 384000


class AudioFormat:
    """An audio format as configured in a session: codec and sample rate."""

    __slots__ = ("codec", "rate")

    def __init__(self, codec: str = "pcm16", rate: int = 24000) -> None:
        self.codec = codec  # "pcm16", "g711_ulaw", "g711_alaw"
        self.rate = rate

    @property
    def bytes_per_ms(self) -> float:
        width = 2 if self.codec == "pcm16" else 1
        return self.rate * width / 1000.0

    def duration_ms(self, nbytes: int) -> float:
        return nbytes / self.bytes_per_ms

    @property
    def ga(self) -> dict[str, Any]:
        """The GA ``format`` object for this format."""
        if self.codec == "g711_ulaw":
            return {"type": "audio/pcmu"}
        if self.codec == "g711_alaw":
            return {"type": "audio/pcma"}
        return {"type": "audio/pcm", "rate": self.rate}

    def __repr__(self) -> str:
        return f"AudioFormat({self.codec!r}, {self.rate})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AudioFormat) and (self.codec, self.rate) == (other.codec, other.rate)

    def __hash__(self) -> int:
        return hash((self.codec, self.rate))


PCM16_24K = AudioFormat()
_ULAW = AudioFormat("g711_ulaw", 8000)
_ALAW = AudioFormat("g711_alaw", 8000)


def _rate(value: Any) -> int | None:
    """A sample rate from untrusted JSON: a whole number in range, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return None
        value = int(value)
    if not isinstance(value, int) or not _MIN_RATE <= value <= _MAX_RATE:
        return None
    return value


def parse_format(value: Any) -> AudioFormat | None:
    """A format from a session's ``*_audio_format`` (beta) or ``audio.*.format`` (GA); None if unknown."""
    if isinstance(value, str):
        if value == "pcm16":
            return PCM16_24K
        if value == "g711_ulaw":
            return _ULAW
        if value == "g711_alaw":
            return _ALAW
    elif isinstance(value, dict):
        t = value.get("type")
        if t == "audio/pcm":
            if "rate" not in value or value["rate"] is None:
                return PCM16_24K
            rate = _rate(value["rate"])
            return None if rate is None else (PCM16_24K if rate == 24000 else AudioFormat("pcm16", rate))
        if t == "audio/pcmu":
            return _ULAW
        if t == "audio/pcma":
            return _ALAW
    return None


def audio_format_from_session(session: Any) -> tuple[AudioFormat | None, AudioFormat | None]:
    """(input, output) audio formats named in a session object, beta or GA shape."""
    if not isinstance(session, dict):
        return None, None
    inp = parse_format(session.get("input_audio_format"))
    out = parse_format(session.get("output_audio_format"))
    audio = session.get("audio")
    if isinstance(audio, dict):
        i = audio.get("input")
        o = audio.get("output")
        if isinstance(i, dict):
            inp = parse_format(i.get("format")) or inp
        if isinstance(o, dict):
            out = parse_format(o.get("format")) or out
    return inp, out


class SessionFormats:
    """The input (client) and output (server) audio formats in force, event by event.

    Feed it every session-config event (:data:`SESSION_CONFIG_EVENTS`) in order
    with :meth:`feed`; read :attr:`input` / :attr:`output`, or :meth:`for_side`.
    A ``session.update`` takes effect when sent (the client streams in the new
    format at once); ``session.created`` / ``session.updated`` report what the
    server uses. Both start as PCM16 at 24 kHz, the API's default.
    """

    __slots__ = ("input", "output", "asked_input", "asked_output")

    def __init__(self) -> None:
        self.input: AudioFormat = PCM16_24K
        self.output: AudioFormat = PCM16_24K
        #: What the client last asked for (None: never asked).
        self.asked_input: AudioFormat | None = None
        self.asked_output: AudioFormat | None = None

    def feed(self, event_type: str | None, event: Any, *, from_client: bool | None = None) -> bool:
        """Apply one event; returns whether a format changed."""
        if event_type not in SESSION_CONFIG_EVENTS or not isinstance(event, dict):
            return False
        inp, out = audio_format_from_session(event.get("session"))
        if event_type.endswith(".update"):
            self.asked_input = inp or self.asked_input
            self.asked_output = out or self.asked_output
        changed = False
        if inp is not None and inp != self.input:
            self.input, changed = inp, True
        if out is not None and out != self.output:
            self.output, changed = out, True
        return changed

    def for_side(self, from_client: bool) -> AudioFormat:
        """The format of audio a side sends: the client sends input audio, the server output."""
        return self.input if from_client else self.output


# G.711 encodes silence as 0xFF (mu-law) and 0xD5 (A-law); PCM16 as zeros.
_SILENCE_BYTE = {"pcm16": 0x00, "g711_ulaw": 0xFF, "g711_alaw": 0xD5}


def silence(nbytes: int, fmt: AudioFormat | None = None) -> bytes:
    """``nbytes`` of silence in ``fmt`` (PCM16 when None)."""
    codec = fmt.codec if fmt is not None else "pcm16"
    return bytes([_SILENCE_BYTE.get(codec, 0)]) * max(0, nbytes)
