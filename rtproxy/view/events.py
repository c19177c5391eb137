"""The event view: one way to read a recording, as events. Pure.

:func:`open` gives a :class:`Recording`; :meth:`Recording.events` streams an
:class:`Event` per WebSocket message. Every reader of a recording (show, the
timeline, summaries, exports, diff, replay, check) reads through here, so
they agree on what an event's type, JSON, audio and duration are.

What an event costs is what is asked of it: the type is read from the first
bytes (no parse), the JSON is parsed on first use, audio is unpacked on first
use. The one thing computed for every message is the audio format in force,
for which only session-config events are parsed.

Recordings are untrusted. Header, handshake and close fields are checked for
type and range once (a value that is not what it should be reads as None);
event JSON is parsed with bounded depth (too deep reads as not JSON); nothing
here raises on odd content: only a damaged file raises
:class:`~rtproxy.errors.RecordingError`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from rtproxy.io.format import Message, RecordingReader, open_recording
from rtproxy.protocol.events import canonical_event_type, event_type, parse_event
from rtproxy.protocol.formats import SESSION_CONFIG_EVENTS, AudioFormat, SessionFormats

__all__ = ["open", "Recording", "Event", "Close", "Handshake", "iter_events", "number", "text_or_none"]

# ------------------------------------------------------------ validation
def number(value: Any, lo: float = -math.inf, hi: float = math.inf) -> float | None:
    """``value`` as a finite number within [lo, hi], else None (strings, NaN, bools...)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:  # an int too large for a float
        return None
    if not math.isfinite(f) or not lo <= f <= hi:
        return None
    return f


def integer(value: Any, lo: int = -(1 << 63), hi: int = (1 << 63) - 1) -> int | None:
    """``value`` as a whole number within [lo, hi], else None."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        return None
    return value


def text_or_none(value: Any) -> str | None:
    """``value`` if it is a string, else None (bytes are decoded, never raised on)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return None


def _headers(value: Any) -> list[tuple[str, str]]:
    """Header pairs from a record, skipping entries that are not ``[name, value]`` strings."""
    out: list[tuple[str, str]] = []
    if isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, (list, tuple)) and len(item) == 2:
                k, v = text_or_none(item[0]), text_or_none(item[1])
                if k is not None and v is not None:
                    out.append((k, v))
    elif isinstance(value, dict):
        for k, v in value.items():
            ks, vs = text_or_none(k), text_or_none(v)
            if ks is not None and vs is not None:
                out.append((ks, vs))
    return out


# ----------------------------------------------------------- records
@dataclass(frozen=True, slots=True)
class Close:
    """How the WebSocket ended: code, reason, who closed it (``"client"``, ``"server"``,
    ``"proxy"`` or None) and when (seconds since the handshake, or None)."""

    code: int | None
    reason: str | None
    by: str | None
    t: float | None
    error: str | None = None

    @classmethod
    def from_record(cls, rec: dict[str, Any] | None) -> Close | None:
        if not isinstance(rec, dict):
            return None
        t_ns = number(rec.get("t_ns"), 0, 1e18)
        by = text_or_none(rec.get("closed_by"))
        return cls(
            code=integer(rec.get("code"), 0, 65535),
            reason=text_or_none(rec.get("reason")),
            by=by if by in ("client", "server", "proxy") else None,
            t=None if t_ns is None else t_ns / 1e9,
            error=text_or_none(rec.get("error")),
        )


@dataclass(frozen=True, slots=True)
class Handshake:
    """The upgrade request and the answer to it."""

    method: str | None
    url: str | None
    path: str | None
    status: int | None
    reason: str | None
    request_headers: list[tuple[str, str]] = field(default_factory=list)
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_body: bytes = b""
    subprotocol: str | None = None
    extensions: str | None = None

    @classmethod
    def from_record(cls, rec: dict[str, Any] | None) -> Handshake | None:
        if not isinstance(rec, dict):
            return None
        body = rec.get("response_body")
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogatepass")
        return cls(
            method=text_or_none(rec.get("method")),
            url=text_or_none(rec.get("url")),
            path=text_or_none(rec.get("path")),
            status=integer(rec.get("status"), 100, 999),
            reason=text_or_none(rec.get("reason")),
            request_headers=_headers(rec.get("request_headers")),
            response_headers=_headers(rec.get("response_headers")),
            response_body=bytes(body) if isinstance(body, (bytes, bytearray)) else b"",
            subprotocol=text_or_none(rec.get("subprotocol")),
            extensions=text_or_none(rec.get("extensions")),
        )

    def header(self, name: str, *, response: bool = False) -> str | None:
        """The first value of a header (any letter case), or None."""
        low = name.lower()
        for k, v in self.response_headers if response else self.request_headers:
            if k.lower() == low:
                return v
        return None


def _clean_header(rec: dict[str, Any]) -> dict[str, Any]:
    """The header record's fields, with the ones readers rely on checked for type and range."""
    out = {str(k): v for k, v in rec.items() if k != "k"}
    for key in ("started",):
        out[key] = number(out.get(key), 0, 1e11)  # seconds since 1970, up to year ~5000
    for key in ("rtproxy", "session_id", "url", "model", "recorder", "upstream"):
        if key in out:
            out[key] = text_or_none(out[key])
    red = out.get("redactions")
    out["redactions"] = [r for r in red if isinstance(r, str)] if isinstance(red, list) else []
    return out


# ------------------------------------------------------------- events
class Event:
    """One WebSocket message of a recording, with what rtproxy understands of it.

    ``index`` (0-based over the file's messages), ``t`` (seconds since the
    handshake), ``side`` (``"client"``/``"server"``), ``opcode``
    (``"text"``/``"binary"``), ``type`` (the event type or None), ``json``
    (the event as a dict, or None), ``data`` (the exact bytes), ``audio``
    (decoded audio bytes, or None), ``audio_ms`` (their duration in the format
    in force, or None), ``format`` (that format), ``redacted``.
    """

    __slots__ = ("index", "message", "format", "_type", "_json", "_parsed")

    def __init__(self, index: int, message: Message, fmt: AudioFormat, typ: str | None) -> None:
        self.index = index
        self.message = message
        self.format = fmt
        self._type = typ
        self._json: dict[str, Any] | None = None
        self._parsed = False

    # -- cheap -----------------------------------------------------------
    @property
    def t(self) -> float:
        return self.message.t_ns / 1e9

    @property
    def t_ns(self) -> int:
        return self.message.t_ns

    @property
    def side(self) -> str:
        return "client" if self.message.from_client else "server"

    @property
    def from_client(self) -> bool:
        return self.message.from_client

    @property
    def opcode(self) -> str:
        return "text" if self.message.is_text else "binary"

    @property
    def is_text(self) -> bool:
        return self.message.is_text

    @property
    def type(self) -> str | None:
        """The event's ``type`` as sent (beta or GA name), or None."""
        return self._type

    @property
    def canonical_type(self) -> str | None:
        """The GA name of the type (beta names mapped), or None."""
        return canonical_event_type(self._type)

    @property
    def size(self) -> int:
        return self.message.size

    @property
    def redacted(self) -> bool:
        return self.message.redacted

    @property
    def head(self) -> bytes:
        """The message without its audio bytes (text messages), else b""."""
        return self.message.head if self.message.is_text else b""

    # -- paid on first use ---------------------------------------------------
    @property
    def json(self) -> dict[str, Any] | None:
        """The event as a dict (parsed once, bounded depth), or None if it is not a JSON object."""
        if not self._parsed:
            self._parsed = True
            if self.message.is_text and self._type is not None:
                self._json = parse_event(self.message.content)
        return self._json

    @property
    def data(self) -> bytes:
        """The exact message bytes, as on the wire."""
        return self.message.content

    @property
    def text(self) -> str:
        return self.message.text

    @property
    def audio_bytes(self) -> int:
        """How many decoded audio bytes the message carries (no unpacking)."""
        return self.message.audio_bytes

    @property
    def audio(self) -> bytes | None:
        """The decoded audio the message carries, joined, or None."""
        parts = self.message.audio
        return b"".join(parts) if parts else None

    @property
    def audio_ms(self) -> float | None:
        """The duration of :attr:`audio` in the format in force, or None without audio."""
        n = self.message.audio_bytes
        if not n and not self.message.audio:
            return None
        return self.format.duration_ms(n)

    def __repr__(self) -> str:
        return f"Event(index={self.index}, t={self.t:.3f}, side={self.side!r}, type={self._type!r}, size={self.size})"


def iter_events(messages: Iterable[Message], formats: SessionFormats | None = None) -> Iterator[Event]:
    """An :class:`Event` per message, tracking the session's audio formats as it goes.

    ``formats`` may be passed to read the formats in force after the last event.
    """
    fmts = formats if formats is not None else SessionFormats()
    for i, m in enumerate(messages):
        if m.is_text:
            head = m.head
            typ = event_type(head)
        else:
            head = b""
            typ = None
        ev = Event(i, m, fmts.input if m.from_client else fmts.output, typ)
        if typ in SESSION_CONFIG_EVENTS:
            fmts.feed(typ, ev.json, from_client=m.from_client)
            # The event that sets a format is itself in the new format.
            ev.format = fmts.input if m.from_client else fmts.output
        yield ev


# ---------------------------------------------------------- recording
class Recording:
    """A recording, opened for reading: control records at once, events streamed.

    ``header`` (dict, checked fields), ``handshake`` (:class:`Handshake` or None),
    ``close`` (:class:`Close` or None), ``cut_short`` (the file ends before its
    end record: the recorder was killed), ``events()`` (re-iterable, streams).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        with open_recording(self.path) as reader:
            self._set(reader)
            self._scanned = False

    def _set(self, reader: RecordingReader) -> None:
        rec = reader.recording
        self.version = rec.version
        self.header: dict[str, Any] = _clean_header(rec.header)
        self.handshake: Handshake | None = Handshake.from_record(rec.handshake)
        self.raw_handshake: dict[str, Any] | None = rec.handshake
        self._close = Close.from_record(rec.close)
        self._end = rec.end
        self._cut_short = rec.truncated
        self._cut_detail = rec.truncation_detail

    def _scan(self) -> None:
        """Read the file to its end once, for what only the end says (close, cut short)."""
        if self._scanned:
            return
        with open_recording(self.path) as reader:
            for _ in reader.messages():
                pass
            self._set(reader)
        self._scanned = True

    @property
    def close(self) -> Close | None:
        self._scan()
        return self._close

    @property
    def cut_short(self) -> bool:
        self._scan()
        return self._cut_short

    @property
    def cut_short_detail(self) -> str:
        self._scan()
        return self._cut_detail

    @property
    def end(self) -> dict[str, Any] | None:
        self._scan()
        return self._end

    def events(self, formats: SessionFormats | None = None) -> Iterator[Event]:
        """Stream the events; after the last one, ``close`` and ``cut_short`` are known."""
        with open_recording(self.path) as reader:
            yield from iter_events(reader.messages(), formats)
            self._set(reader)
            self._scanned = True

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __repr__(self) -> str:
        return f"Recording({self.path!r}, model={self.header.get('model')!r})"


def open(path: str | os.PathLike[str]) -> Recording:  # noqa: A001 - the public name is rtproxy.open
    """Open a recording; raises :class:`~rtproxy.errors.RecordingError` if it cannot be read."""
    return Recording(path)
