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

import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from rtproxy.io.format import Message, RecordingReader, open_recording
from rtproxy.protocol.events import AUDIO_DELTA_EVENTS, canonical_event_type, event_type, parse_event
from rtproxy.protocol.formats import SESSION_CONFIG_EVENTS, AudioFormat, SessionFormats
from rtproxy.errors import CorruptRecording
from rtproxy.protocol.values import header_pairs, ident, integer, jsonable, number, text_or_none, valid_header

__all__ = [
    "open",
    "Recording",
    "Event",
    "Close",
    "Handshake",
    "End",
    "iter_events",
    "clean_header",
    "served_handshake",
    "number",
    "integer",
    "text_or_none",
    "ident",
    "jsonable",
]

# ------------------------------------------------------------ validation
# The checks live in rtproxy.protocol.values (one place); re-exported here, where
# readers of a recording look for them.
_headers = header_pairs


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
    http_version: str | None = None
    t_request: float | None = None
    """Unix time of the upgrade request, or None."""
    t_response: float | None = None
    client: str | None = None

    @property
    def refused(self) -> bool:
        """The upgrade was answered with a status other than 101 (a valid status, 100-999)."""
        return self.status is not None and self.status != 101

    @classmethod
    def from_record(cls, rec: dict[str, Any] | None) -> Handshake | None:
        if not isinstance(rec, dict):
            return None
        body = rec.get("response_body")
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogatepass")
        return cls(
            http_version=text_or_none(rec.get("http_version")),
            t_request=number(rec.get("t_request"), 0, 1e11),
            t_response=number(rec.get("t_response"), 0, 1e11),
            client=text_or_none(rec.get("client")),
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


_SUBPROTOCOL = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def served_handshake(path: str | os.PathLike[str] | None, rec: dict[str, Any] | None) -> dict[str, Any]:
    """The recorded handshake as a replay answers it: ``status`` (101, or the refusal's
    200-599), ``reason``, ``response_headers`` and ``subprotocol`` that can go into an
    HTTP/1.1 response as they are (the others are left out), ``response_body``.

    Raises :class:`~rtproxy.errors.CorruptRecording` for a status no server can
    answer an upgrade with (a string, 99, 1000, 1e300; a 1xx other than 101),
    before anything listens.
    """
    hs = Handshake.from_record(rec)
    if hs is None:
        return {"status": 101, "reason": "Switching Protocols", "response_headers": [], "response_body": b"",
                "subprotocol": None}
    raw = rec.get("status") if isinstance(rec, dict) else None
    status = hs.status if hs.status is not None else (101 if raw is None else None)
    if status is None or (status != 101 and not 200 <= status <= 599):
        raise CorruptRecording(
            path,
            f"the recorded upgrade status {raw!r} is not an HTTP status a server can answer with "
            "(101, or 200-599 for a refusal); replay cannot serve this handshake",
        )
    reason = hs.reason or ""
    if not valid_header("x", reason):
        reason = ""  # CR/LF or non-Latin-1 in a reason phrase: the standard phrase is used
    sub = hs.subprotocol
    return {
        "status": status,
        "reason": reason,
        "response_headers": [(k, v) for k, v in hs.response_headers if valid_header(k, v)],
        "response_body": hs.response_body,
        "subprotocol": sub if sub is not None and _SUBPROTOCOL.fullmatch(sub) else None,
    }


@dataclass(frozen=True, slots=True)
class End:
    """The end record: message counts and bytes per side, the session's length."""

    messages_client: int | None = None
    messages_server: int | None = None
    bytes_client: int | None = None
    bytes_server: int | None = None
    duration_s: float | None = None
    refused: bool = False
    stopped: bool = False

    @classmethod
    def from_record(cls, rec: dict[str, Any] | None) -> End | None:
        if not isinstance(rec, dict):
            return None
        m, b = rec.get("messages"), rec.get("bytes")
        msgs: dict[Any, Any] = m if isinstance(m, dict) else {}
        sizes: dict[Any, Any] = b if isinstance(b, dict) else {}
        return cls(
            messages_client=integer(msgs.get("client"), 0),
            messages_server=integer(msgs.get("server"), 0),
            bytes_client=integer(sizes.get("client"), 0),
            bytes_server=integer(sizes.get("server"), 0),
            duration_s=number(rec.get("duration_s"), 0, 1e9),
            refused=rec.get("refused") is True,
            stopped=rec.get("stopped") is True,
        )

    @property
    def messages(self) -> dict[str, int | None]:
        return {"client": self.messages_client, "server": self.messages_server}


def clean_header(rec: dict[str, Any] | None) -> dict[str, Any]:
    """The header record's fields, with the ones readers rely on checked for type and range:
    ``started`` a number of Unix seconds or None, ``url``/``model``/... strings or None,
    ``redactions`` and ``stripped`` lists of strings, keys strings."""
    return _clean_header(rec if isinstance(rec, dict) else {})


def _clean_header(rec: dict[str, Any]) -> dict[str, Any]:
    """The header record's fields, with the ones readers rely on checked for type and range."""
    out = {k: v for k, v in rec.items() if k != "k" and isinstance(k, str)}
    for key in ("started",):
        out[key] = number(out.get(key), 0, 1e11)  # seconds since 1970, up to year ~5000
    for key in ("rtproxy", "session_id", "url", "model", "recorder", "upstream"):
        if key in out:
            out[key] = text_or_none(out[key])
    red = out.get("redactions")
    out["redactions"] = [r for r in red if isinstance(r, str)] if isinstance(red, list) else []
    if "stripped" in out:
        st = out["stripped"]
        out["stripped"] = [r for r in st if isinstance(r, str)] if isinstance(st, list) else []
    if "format_version" in out:
        out["format_version"] = integer(out["format_version"], 0)
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

    __slots__ = ("index", "message", "format", "_type", "_json", "_parsed", "_head_json")

    def __init__(self, index: int, message: Message, fmt: AudioFormat, typ: Any) -> None:
        self.index = index
        self.message = message
        self.format = fmt
        self._type = typ  # str, None, or _LATER: read from the message when asked
        self._json: dict[str, Any] | None = None
        self._parsed = False
        self._head_json: Any = _LATER

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
        t = self._type
        if t is _LATER:
            t = self._type = event_type(self.message.head)
        return t  # type: ignore[no-any-return]

    @property
    def canonical_type(self) -> str | None:
        """The GA name of the type (beta names mapped), or None."""
        return canonical_event_type(self.type)

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
            if self.message.is_text and self.type is not None:
                self._json = parse_event(self.message.content)
        return self._json

    @property
    def head_json(self) -> dict[str, Any] | None:
        """The event as a dict with each audio value ``""`` (what :attr:`head` parses to),
        or None if it is not a JSON object: parsed once (bounded depth) and shared by
        every reader of the event in a pass (summary, check, audio), so do not change it.
        Cheap for audio deltas and appends, which differ only in their event_id."""
        h = self._head_json
        if h is _LATER:
            m = self.message
            h = self._head_json = parse_head(m.head, self.type) if m.is_text else None
        return h  # type: ignore[no-any-return]

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
        return f"Event(index={self.index}, t={self.t:.3f}, side={self.side!r}, type={self.type!r}, size={self.size})"


_LATER: Any = object()

#: Events whose heads differ from one to the next only in their event_id (audio).
_TEMPLATED = frozenset({"input_audio_buffer.append", *AUDIO_DELTA_EVENTS})
#: ``{"type":"...","event_id":"`` at the start: the event_id is the object's own.
_ID_FIRST = re.compile(rb'\{"type":"[^"\\]*","event_id":"([^"\\\x00-\x1f]*)"')
_EVENT_ID = b'"event_id"'
#: Parsed heads by their text with the event_id's value cut out (a session's audio
#: deltas have a few: one per response and item).
_TEMPLATES: dict[bytes, dict[str, Any]] = {}
_MAX_TEMPLATES = 64


def audio_event_head(head: bytes) -> dict[str, Any] | None:
    """``parse_event(head)`` for an audio delta or append, from a parsed one with the
    same text but for the event_id when there is one: a session's deltas are not parsed
    one by one (:attr:`Event.head_json`, and the check for events from elsewhere). Only a head with no escapes, whose one
    ``"event_id"`` member follows ``"type"`` at the start, is matched by its text."""
    if b"\\" in head or len(head) > 4096:
        return parse_event(head)
    m = _ID_FIRST.match(head)
    if m is not None:
        a, b = m.span(1)
        if _EVENT_ID in head[b:]:
            return parse_event(head)
        try:
            eid = m.group(1).decode("utf-8")
        except UnicodeDecodeError:
            return parse_event(head)
        key = head[:a] + head[b:]
    elif _EVENT_ID in head:
        return parse_event(head)
    else:
        eid, key = None, head
    hit = _TEMPLATES.get(key)
    if hit is not None:
        obj = dict(hit)
        if eid is not None:
            obj["event_id"] = eid
        return obj
    parsed = parse_event(head)
    if parsed is not None and (eid is None or parsed.get("event_id") == eid):
        if len(_TEMPLATES) >= _MAX_TEMPLATES:
            _TEMPLATES.clear()
        _TEMPLATES[key] = dict(parsed)
    return parsed


def parse_head(head: bytes, typ: str | None) -> dict[str, Any] | None:
    """A text message's head (:attr:`Message.head`) parsed, given its type as
    :func:`event_type` reads it: None for a message that is not an event. What
    :attr:`Event.head_json` holds, for a reader of messages without events."""
    if typ is None:
        return None
    if canonical_event_type(typ) in _TEMPLATED:
        return audio_event_head(head)
    return parse_event(head)


def may_set_format(head: bytes) -> bool:
    """Whether a text message's type may be a session event (:data:`SESSION_CONFIG_EVENTS`),
    by its head's bytes: such a type is written with ``session`` in it, or with escapes."""
    return b"session" in head or b"\\" in head


def iter_events(messages: Iterable[Message], formats: SessionFormats | None = None) -> Iterator[Event]:
    """An :class:`Event` per message, tracking the session's audio formats as it goes.

    ``formats`` may be passed to read the formats in force after the last event.
    """
    fmts = formats if formats is not None else SessionFormats()
    for i, m in enumerate(messages):
        if m.is_text:
            head = m.head
            # Only a message that may be a session event (its type may be written with
            # escapes) has its type read now; the others when a reader asks.
            typ = event_type(head) if may_set_format(head) else _LATER
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
