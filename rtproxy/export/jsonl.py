"""The ``show --json`` / ``export --format jsonl`` lines of a recording (no click).

Every line is ASCII (``json.dumps`` with ``ensure_ascii``): non-ASCII text and
control characters are ``\\uXXXX`` escapes, so the lines are exact, survive any
encoding and put no terminal escape on a terminal. A text message that is not
valid UTF-8 carries ``"base64"`` instead of ``"text"``.
"""

from __future__ import annotations

import base64
import binascii
import json
from json.encoder import encode_basestring_ascii
from typing import Any, Callable, TextIO

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
    with open_recording(path) as reader:
        rec = reader.recording
        # Header fields checked (started a number or null...), the rest made valid JSON:
        # no NaN, no ext type, no bytes that are not UTF-8 (they become {"base64": ...}).
        header = jsonable(clean_header(rec.header))
        out.write(json.dumps({"kind": "header", **header, "handshake": jsonable(rec.handshake)}) + "\n")
        totals = AudioTotals()
        write = out.write
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
            if m.size > _BIG and isinstance(m.payload, (bytes, bytearray)):
                _write_big(write, ev.type, m)
            else:
                write(_message_line(ev.type, m))
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
        out.write(json.dumps(end) + "\n")
        return rec.truncated


message_json = _message_json

_esc: Callable[[str], str] = encode_basestring_ascii  # what json.dumps uses for str (the C one)
_b64: Callable[..., bytes] = binascii.b2a_base64
_float_repr = float.__repr__  # how json.dumps writes a float
_SIDE = {True: '"from": "client", ', False: '"from": "server", '}


#: Messages larger than this are written a slice at a time (the same line): a
#: crafted recording's 60 MiB messages are not copied whole five times over.
_BIG = 4 << 20
_SLICE = 3 << 20  # a multiple of 3: base64 of each slice joins into the base64 of all


def _write_big(write: Callable[[str], Any], e_type: str | None, m: Message) -> None:
    """Write what :func:`_message_line` returns for ``m`` (whose payload is one ``bytes``), in pieces."""
    data = m.content
    head = (
        '{"kind": "message", "t": ' + _float_repr(m.t_ns / 1e9) + ", " + _SIDE[m.from_client]
        + ('"opcode": "text", ' if m.is_text else '"opcode": "binary", ')
        + '"size": ' + str(m.size) + ', "type": ' + ("null" if e_type is None else _esc(e_type))
    )
    tail = ', "redacted": true}\n' if m.redacted else "}\n"
    text = None
    if m.is_text:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    if text is not None:
        write(head + ', "text": "')
        for i in range(0, len(text), _SLICE):
            write(_esc(text[i : i + _SLICE])[1:-1])
    else:
        write(head + ', "base64": "')
        view = memoryview(data)
        for i in range(0, len(data), _SLICE):
            write(_b64(view[i : i + _SLICE], newline=False).decode("ascii"))
    write('"' + tail)


def _message_line(e_type: str | None, m: Message) -> str:
    """``json.dumps(_message_json(e_type, m)) + "\\n"``, byte for byte, built directly:
    the base64 of audio needs no escaping, so it is never scanned, and the text
    around it is escaped piece by piece."""
    head = (
        '{"kind": "message", "t": ' + _float_repr(m.t_ns / 1e9) + ", " + _SIDE[m.from_client]
        + ('"opcode": "text", ' if m.is_text else '"opcode": "binary", ')
        + '"size": ' + str(m.size) + ', "type": ' + ("null" if e_type is None else _esc(e_type))
    )
    tail = ', "redacted": true}\n' if m.redacted else "}\n"
    if not m.is_text:
        return head + ', "base64": "' + _b64(m.content, newline=False).decode("ascii") + '"' + tail
    payload = m.payload
    if isinstance(payload, (bytes, bytearray)):
        try:
            return head + ', "text": ' + _esc(bytes(payload).decode("utf-8")) + tail
        except UnicodeDecodeError:
            return head + ', "base64": "' + _b64(payload, newline=False).decode("ascii") + '"' + tail
    pieces = [head, ', "text": "']
    try:
        for i, part in enumerate(payload):
            if i % 2:
                pieces.append(_b64(part, newline=False).decode("ascii"))
            else:
                pieces.append(_esc(part.decode("utf-8"))[1:-1])
    except UnicodeDecodeError:
        # Not valid UTF-8 piece by piece (the whole may still be): the plain way.
        return json.dumps(_message_json(e_type, m)) + "\n"
    pieces.append('"')
    pieces.append(tail)
    return "".join(pieces)
