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
                _write_big(write, ev.type, m)
            else:
                write(_message_line(ev.type, m, size))
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
_float_repr = float.__repr__  # how json.dumps writes a float
_SIDE = {True: '"from": "client", ', False: '"from": "server", '}


#: Messages larger than this are written a slice at a time (the same line): a
#: crafted recording's 60 MiB messages are not copied whole five times over.
_BIG = 4 << 20
_SLICE = 3 << 20  # a multiple of 3: base64 of each slice joins into the base64 of all


def _head(e_type: str | None, m: Message, size: int) -> bytes:
    """A message line up to its ``"type"`` value (see :func:`_message_line`)."""
    return (
        '{"kind": "message", "t": ' + _float_repr(m.t_ns / 1e9) + ", " + _SIDE[m.from_client]
        + ('"opcode": "text", ' if m.is_text else '"opcode": "binary", ')
        + '"size": ' + str(size) + ', "type": ' + ("null" if e_type is None else _esc(e_type))
    ).encode("ascii")


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
    head = _head(e_type, m, m.size if size is None else size)
    tail = b', "redacted": true}\n' if m.redacted else b"}\n"
    if not m.is_text:
        return b"".join((head, b', "base64": "', _b64(m.content), b'"', tail))
    payload = m.payload
    if isinstance(payload, (bytes, bytearray)):
        try:
            return b"".join((head, b', "text": ', _esc(bytes(payload).decode("utf-8")).encode("ascii"), tail))
        except UnicodeDecodeError:
            return b"".join((head, b', "base64": "', _b64(payload), b'"', tail))
    pieces = [head, b', "text": "']
    try:
        for i, part in enumerate(payload):
            if i % 2:
                pieces.append(_b64(part))
            else:
                pieces.append(_esc(part.decode("utf-8"))[1:-1].encode("ascii"))
    except UnicodeDecodeError:
        # Not valid UTF-8 piece by piece (the whole may still be): the plain way.
        return (json.dumps(_message_json(e_type, m)) + "\n").encode("ascii")
    pieces.append(b'"')
    pieces.append(tail)
    return b"".join(pieces)
