"""The ``show --json`` / ``export --format jsonl`` lines of a recording (no click).

Every line is ASCII (``json.dumps`` with ``ensure_ascii``): non-ASCII text and
control characters are ``\\uXXXX`` escapes, so the lines are exact, survive any
encoding and put no terminal escape on a terminal. A text message that is not
valid UTF-8 carries ``"base64"`` instead of ``"text"``.
"""

from __future__ import annotations

import base64
import json
from typing import Any, TextIO

from rtproxy.io.format import Message, open_recording
from rtproxy.view.timeline import AudioTotals, annotate

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


def write_jsonl(path: str, out: TextIO, flt: Any = None) -> bool:
    """The ``show --json`` lines for a recording; returns whether it was cut short.

    ``flt`` (an :class:`rtproxy.view.summary.EventFilter`) keeps only matching message
    lines; the header and end lines are always written.
    """
    with open_recording(path) as reader:
        rec = reader.recording
        header = {k: v for k, v in rec.header.items() if k != "k"}
        out.write(json.dumps({"kind": "header", **_jsonable(header), "handshake": _jsonable(rec.handshake)}) + "\n")
        totals = AudioTotals()
        for e in annotate(reader.messages(), totals):
            if flt is not None and not flt.keep(e):
                continue
            # ASCII only: the exact text survives any pipe, and no control character
            # (ESC, U+009B, U+2028) reaches a terminal raw.
            out.write(json.dumps(_message_json(e.type, e.msg)) + "\n")
        close = rec.close or {}
        end = {
            "kind": "end",
            "close_code": close.get("code"),
            "close_reason": close.get("reason"),
            "closed_by": close.get("closed_by"),
            "t": (close.get("t_ns") or 0) / 1e9 if close else None,
            "truncated": rec.truncated,
            "audio_ms": {"client": round(totals.client_ms, 1), "server": round(totals.server_ms, 1)},
        }
        if rec.end:
            end["messages"] = rec.end.get("messages")
        out.write(json.dumps(end) + "\n")
        return rec.truncated


message_json = _message_json
