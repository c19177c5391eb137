"""Reading a recording as a sequence of annotated events (pure, streaming).

Tracks the session's audio formats so audio sizes become durations, and
pulls out the short detail ``rtproxy show`` prints for each message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Iterator

from rtproxy.io.format import Message
from rtproxy.protocol.events import (
    AUDIO_DELTA_EVENTS,
    AudioFormat,
    audio_format_from_session,
    event_type,
    parse_event,
)

__all__ = ["Entry", "annotate", "AudioTotals"]

_DETAIL_FIELDS = ("transcript", "delta", "text", "arguments", "name")
_SESSION_EVENTS = frozenset({"session.update", "session.created", "session.updated"})


@dataclass(slots=True)
class Entry:
    """A message with what rtproxy understood of it."""

    index: int
    msg: Message
    type: str | None
    audio_ms: float
    detail: str


@dataclass
class AudioTotals:
    client_ms: float = 0.0
    server_ms: float = 0.0


def _short(s: str, n: int = 60) -> str:
    s = s.replace("\n", " ")
    return s if len(s) <= n else s[: n - 1] + "…"


def annotate(messages: Iterable[Message], totals: AudioTotals | None = None) -> Iterator[Entry]:
    """Yield an :class:`Entry` per message; fills ``totals`` as it goes."""
    in_fmt = AudioFormat()
    out_fmt = AudioFormat()
    for i, m in enumerate(messages):
        head = m.head if m.is_text else b""
        typ = event_type(head) if m.is_text else None
        audio_ms = 0.0
        detail = ""
        audio = m.audio
        if audio:
            fmt = in_fmt if m.from_client else out_fmt
            nbytes = sum(len(a) for a in audio)
            audio_ms = fmt.duration_ms(nbytes)
            detail = f"{audio_ms:.0f} ms audio"
            if totals is not None:
                if m.from_client:
                    totals.client_ms += audio_ms
                else:
                    totals.server_ms += audio_ms
        elif not m.is_text:
            detail = f"binary {m.size} B"
        elif typ is None:
            detail = "not a JSON event" if m.size else "empty message"
        else:
            obj = None
            if typ in _SESSION_EVENTS or typ == "error" or m.size < 4096:
                obj = parse_event(head)
                if obj is None:
                    # event_type() reads the type from the first bytes; the rest is broken.
                    detail = "invalid JSON"
            if obj is not None:
                if typ in _SESSION_EVENTS and isinstance(obj.get("session"), dict):
                    i_fmt, o_fmt = audio_format_from_session(obj["session"])
                    if i_fmt:
                        in_fmt = i_fmt
                    if o_fmt:
                        out_fmt = o_fmt
                detail = _detail(typ, obj)
        yield Entry(i, m, typ, audio_ms, detail)


def _detail(typ: str, obj: dict) -> str:
    if typ == "error":
        err = obj.get("error") or {}
        if isinstance(err, dict):
            return _short(" ".join(str(err.get(k)) for k in ("type", "code", "message") if err.get(k)), 100)
    if typ == "response.done":
        r = obj.get("response") or {}
        if isinstance(r, dict):
            st = str(r.get("status", ""))
            sd = r.get("status_details")
            if isinstance(sd, dict) and sd.get("reason"):
                st += f" ({sd['reason']})"
            return st
    if typ in ("session.update", "session.created", "session.updated"):
        s = obj.get("session") or {}
        if isinstance(s, dict):
            bits = [str(s.get(k)) for k in ("model", "type") if s.get(k)]
            i_fmt, o_fmt = audio_format_from_session(s)
            if i_fmt or o_fmt:
                fmts = [f"{d} {f.codec}" for d, f in (("in", i_fmt), ("out", o_fmt)) if f]
                bits.append("audio " + " ".join(fmts))
            return " ".join(bits)
    if typ == "conversation.item.truncate":
        return f"audio_end_ms={obj.get('audio_end_ms')}"
    if typ in AUDIO_DELTA_EVENTS:
        return ""
    for k in _DETAIL_FIELDS:
        v = obj.get(k)
        if isinstance(v, str) and v:
            return _short(json.dumps(v, ensure_ascii=False))
    item = obj.get("item")
    if isinstance(item, dict):
        return _short(" ".join(str(item.get(k)) for k in ("type", "role", "name") if item.get(k)))
    return ""
