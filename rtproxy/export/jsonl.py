"""The ``show --json`` / ``export --format jsonl`` lines of a recording (no click).

Every line is ASCII (``json.dumps`` with ``ensure_ascii``): non-ASCII text and
control characters are ``\\uXXXX`` escapes, so the lines are exact, survive any
encoding and put no terminal escape on a terminal. A text message that is not
valid UTF-8 carries ``"base64"`` instead of ``"text"``.
"""

from __future__ import annotations

import base64
import json
from json.encoder import encode_basestring_ascii
from typing import Any, Callable, TextIO, cast

from pybase64 import b64encode as _b64  # base64 with SIMD: a fifth of the time of binascii

from rtproxy.io.batch import unpack_ahead
from rtproxy.io.format import Message, open_recording
from rtproxy.io.progress import Progress, reading
from rtproxy.view.events import Close, End, clean_header, iter_events, jsonable
from rtproxy.view.timeline import AudioTotals, Entry

__all__ = ["write_jsonl", "message_json"]


def _message_json(e_type: str | None, m: Message) -> dict[str, Any]:
    d: dict[str, Any] = {
        "kind": "message",
        "t": m.t_ns / 1e9,
        "from": m.direction,
        "opcode": "text" if m.is_text else "binary",
        "size": m.size,
        "type": e_type,
    }
    content = m.content
    if m.is_text:
        try:
            d["text"] = content.decode("utf-8")
        except UnicodeDecodeError:
            d["base64"] = base64.b64encode(content).decode()
    else:
        d["base64"] = base64.b64encode(content).decode()
    if m.redacted:
        d["redacted"] = True
    return d


def _jsonable(v: Any) -> Any:
    """Kept for callers; the checked conversion is :func:`rtproxy.view.events.jsonable`."""
    return jsonable(v)


def _jsonable_unchecked(v: Any) -> Any:
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(v).decode()}
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def write_jsonl(path: str, out: TextIO, flt: Any = None, progress: Progress | None = None) -> bool:
    """The ``show --json`` lines for a recording; returns whether it was cut short.

    ``flt`` (an :class:`rtproxy.view.summary.EventFilter`) keeps only matching message
    lines; the header and end lines are always written.
    """
    write = _ascii_writer(out)
    with open_recording(path) as reader:
        rec = reader.recording
        # Header fields checked (started a number or null...), the rest made valid JSON:
        # no NaN, no ext type, no bytes that are not UTF-8 (they become {"base64": ...}).
        header = jsonable(clean_header(rec.header))
        write(json.dumps({"kind": "header", **header, "handshake": jsonable(rec.handshake)}).encode() + b"\n")
        totals = AudioTotals()
        # The pieces of the lines (the base64 of the audio among them) are joined and
        # written a batch at a time: each byte is copied once on its way to the file,
        # not into a line, then into the file's buffer.
        pending: list[bytes] = []
        held = 0
        try:
            for ev in iter_events(unpack_ahead(reading(reader.messages(), reader, progress))):
                m = ev.message
                if m.is_text:
                    nbytes = m.audio_bytes
                    if nbytes:  # the audio totals, as annotate() counts them
                        if m.from_client:
                            totals.client_ms += ev.format.duration_ms(nbytes)
                        else:
                            totals.server_ms += ev.format.duration_ms(nbytes)
                if flt is not None and not flt.keep(Entry(ev.index, m, ev.type, 0.0, "")):
                    continue
                # ASCII only: the exact text survives any pipe, and no control character
                # (ESC, U+009B, U+2028) reaches a terminal raw.
                size = m.size
                if size > _BIG and isinstance(m.payload, (bytes, bytearray)):
                    write(b"".join(pending))
                    pending.clear()
                    held = 0
                    _write_big(write, ev.type, m)
                    continue
                pending += _message_pieces(ev.type, m, size)
                held += size
                if held >= _BATCH:
                    write(b"".join(pending))
                    pending.clear()
                    held = 0
        finally:
            # what was read before an error (a damaged record) is written before it is raised
            if pending:
                write(b"".join(pending))
        close = Close.from_record(rec.close)
        end: dict[str, Any] = {
            "kind": "end",
            "close_code": close.code if close else None,
            "close_reason": close.reason if close else None,
            "closed_by": close.by if close else None,
            "t": (close.t or 0.0) if close else None,
            "truncated": rec.truncated,
            "audio_ms": {"client": round(totals.client_ms, 1), "server": round(totals.server_ms, 1)},
        }
        end_rec = End.from_record(rec.end)
        if end_rec is not None:
            end["messages"] = end_rec.messages
        write(json.dumps(end).encode() + b"\n")
        return rec.truncated


def _ascii_writer(out: TextIO) -> Callable[[bytes], Any]:
    """A ``write`` for the (ASCII) bytes of the lines: straight to the binary file under a
    text stream (its text buffer flushed first), so 60 MB of base64 an hour is neither
    decoded to text nor encoded back; ``decode`` into any other text stream (StringIO)."""
    binary = getattr(out, "buffer", None)
    if binary is not None and callable(getattr(binary, "write", None)):
        out.flush()
        return cast("Callable[[bytes], Any]", binary.write)
    return lambda data: out.write(data.decode("ascii"))


message_json = _message_json

_esc: Callable[[str], str] = encode_basestring_ascii  # what json.dumps uses for str (the C one)


#: Messages larger than this are written a slice at a time (the same line): a
#: crafted recording's 60 MiB messages are not copied whole five times over.
_BIG = 4 << 20
_SLICE = 3 << 20  # a multiple of 3: base64 of each slice joins into the base64 of all
#: Bytes of messages whose lines are written at once.
_BATCH = 256 << 10


#: The start of a message line, up to its "type" value: ``t`` by float.__repr__ (what
#: json.dumps writes; ``%r`` is ``ascii(repr())``), size by ``%d`` (``str(int)``).
_HEAD = b'{"kind": "message", "t": %r, %s"size": %d, "type": %s'
_MID = {
    (True, True): b'"from": "client", "opcode": "text", ',
    (True, False): b'"from": "client", "opcode": "binary", ',
    (False, True): b'"from": "server", "opcode": "text", ',
    (False, False): b'"from": "server", "opcode": "binary", ',
}

#: Escaped forms of event types and of the text around audio values: a session repeats
#: the same few (``{"type":"input_audio_buffer.append","audio":"`` ...) thousands of
#: times. Bounded: short keys only, emptied when full (a crafted file's unique texts).
_CACHE_KEY_BYTES = 256
_CACHE_ENTRIES = 4096
_types: dict[str | None, bytes] = {None: b"null"}
_pieces: dict[bytes, bytes] = {}


def _type_json(e_type: str | None) -> bytes:
    b = _types.get(e_type)
    if b is None:
        b = _esc(cast(str, e_type)).encode("ascii")
        if len(e_type or "") <= _CACHE_KEY_BYTES:
            if len(_types) >= _CACHE_ENTRIES:
                _types.clear()
                _types[None] = b"null"
            _types[e_type] = b
    return b


def _text_piece(part: bytes) -> bytes:
    """The JSON-escaped text of one piece of a message (no quotes); raises UnicodeDecodeError."""
    b = _pieces.get(part)
    if b is None:
        b = _esc(part.decode("utf-8"))[1:-1].encode("ascii")
        if len(part) <= _CACHE_KEY_BYTES and type(part) is bytes:
            if len(_pieces) >= _CACHE_ENTRIES:
                _pieces.clear()
            _pieces[part] = b
    return b


def _head(e_type: str | None, m: Message, size: int) -> bytes:
    """A message line up to its ``"type"`` value (see :func:`_message_line`)."""
    return _HEAD % (m.t_ns / 1e9, _MID[m.from_client, m.is_text], size, _type_json(e_type))


def _write_big(write: Callable[[bytes], Any], e_type: str | None, m: Message) -> None:
    """Write what :func:`_message_line` returns for ``m`` (whose payload is one ``bytes``), in pieces."""
    data = m.content
    head = _head(e_type, m, m.size)
    tail = b', "redacted": true}\n' if m.redacted else b"}\n"
    text = None
    if m.is_text:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    if text is not None:
        write(head + b', "text": "')
        for i in range(0, len(text), _SLICE):
            write(_esc(text[i : i + _SLICE])[1:-1].encode("ascii"))
    else:
        write(head + b', "base64": "')
        view = memoryview(data)
        for i in range(0, len(data), _SLICE):
            write(_b64(view[i : i + _SLICE]))
    write(b'"' + tail)


def _message_line(e_type: str | None, m: Message, size: int | None = None) -> bytes:
    """``(json.dumps(_message_json(e_type, m)) + "\\n").encode()``, byte for byte, built
    directly: the base64 of audio needs no escaping, so it is never scanned, and the
    text around it is escaped piece by piece. ``size``: ``m.size`` when known."""
    return b"".join(_message_pieces(e_type, m, m.size if size is None else size))


def _message_pieces(e_type: str | None, m: Message, size: int) -> tuple[bytes, ...] | list[bytes]:
    """The pieces whose concatenation is :func:`_message_line`."""
    head = _head(e_type, m, size)
    tail = b', "redacted": true}\n' if m.redacted else b"}\n"
    if not m.is_text:
        return head, b', "base64": "', _b64(m.content), b'"', tail
    payload = m.payload
    if isinstance(payload, (bytes, bytearray)):
        try:
            return head, b', "text": ', _esc(bytes(payload).decode("utf-8")).encode("ascii"), tail
        except UnicodeDecodeError:
            return head, b', "base64": "', _b64(payload), b'"', tail
    try:
        if len(payload) == 3:  # the usual: one audio value
            return head, b', "text": "', _text_piece(payload[0]), _b64(payload[1]), _text_piece(payload[2]), b'"', tail
        pieces = [head, b', "text": "']
        for i, part in enumerate(payload):
            pieces.append(_b64(part) if i % 2 else _text_piece(part))
    except UnicodeDecodeError:
        # Not valid UTF-8 piece by piece (the whole may still be): the plain way.
        return ((json.dumps(_message_json(e_type, m)) + "\n").encode("ascii"),)
    pieces.append(b'"')
    pieces.append(tail)
    return pieces
