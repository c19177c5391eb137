"""Reading a recording as a sequence of annotated events (pure, streaming).

Tracks the session's audio formats so audio sizes become durations, and
pulls out the short detail ``rtproxy show`` prints for each message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from rtproxy.io.format import Message
from rtproxy.protocol.events import AUDIO_DELTA_EVENTS
from rtproxy.protocol.formats import SESSION_CONFIG_EVENTS, audio_format_from_session
from rtproxy.view.events import iter_events

__all__ = ["Entry", "annotate", "AudioTotals"]

_DETAIL_FIELDS = ("transcript", "delta", "text", "arguments", "name")


@dataclass(slots=True)
class Entry:
    """A message with what rtproxy understood of it."""

    index: int
    msg: Message
    type: str | None
    audio_ms: float
    detail: str
    event: Any = None
    """The :class:`rtproxy.view.events.Event` it was made from (to feed other readers in the same pass)."""


@dataclass
class AudioTotals:
    client_ms: float = 0.0
    server_ms: float = 0.0


def _short(s: str, n: int = 60) -> str:
    s = s.replace("\n", " ")
    return s if len(s) <= n else s[: n - 1] + "…"


def annotate(messages: Iterable[Message], totals: AudioTotals | None = None, *, details: bool = True) -> Iterator[Entry]:
    """Yield an :class:`Entry` per message; fills ``totals`` as it goes.

    Reads through the event view (:func:`rtproxy.view.events.iter_events`), so
    durations follow the audio format in force, whichever event set it.
    ``details=False``: every ``detail`` is "" and no event is parsed for it (for
    readers that do not print it: the exports).
    """
    for ev in iter_events(messages):
        m = ev.message
        typ = ev.type
        audio_ms = 0.0
        detail = ""
        nbytes = ev.audio_bytes if m.is_text else 0
        if nbytes or (m.is_text and m.audio):
            audio_ms = ev.format.duration_ms(nbytes)
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
        elif not details:
            pass
        elif typ in SESSION_CONFIG_EVENTS or typ == "error" or m.size < 4096:
            obj = ev.json
            # event_type() reads the type from the first bytes; the rest may be broken.
            detail = "invalid JSON" if obj is None else _detail(typ, obj)
        yield Entry(ev.index, m, typ, audio_ms, detail, ev)


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
    if typ in SESSION_CONFIG_EVENTS:
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
