"""The session as a check sees it, event by event: sans-I/O, fed in order.

:class:`SessionState` follows responses, items (with the assistant audio
received and played per item), function calls, the input buffer and the
session config. Every rule reads it; the engine applies each event to it
after the rules have seen the event (so a rule sees the state *before* the
event it is looking at).

Values come from an untrusted recording: every accessor here checks types,
and nothing raises on odd content.
"""

from __future__ import annotations

import base64
import binascii
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rtproxy.protocol.formats import PCM16_24K, AudioFormat
from rtproxy.protocol.values import MAX_ID_CHARS, short_id
from rtproxy.view.events import number

__all__ = ["SessionState", "Resp", "Item", "Call", "s", "sid", "id_key", "d", "num", "error_fields", "audio_len", "AUDIO_DELTA"]

AUDIO_DELTA = "response.output_audio.delta"
#: Server events that carry content of a response (response_id), GA names.
CONTENT_EVENTS = frozenset({
    "response.output_item.added", "response.output_item.done", "response.content_part.added",
    "response.content_part.done", "response.output_text.delta", "response.output_text.done",
    "response.output_audio.delta", "response.output_audio.done",
    "response.output_audio_transcript.delta", "response.output_audio_transcript.done",
    "response.function_call_arguments.delta", "response.function_call_arguments.done",
    "response.mcp_call_arguments.delta", "response.mcp_call_arguments.done",
})


def s(v: Any) -> str | None:
    """``v`` if it is a str, else None."""
    return v if isinstance(v, str) else None


#: An id from an event, as the check keeps it (:func:`rtproxy.protocol.values.short_id`).
sid = short_id


def id_key(v: str) -> str:
    """An id as the check remembers it (:func:`sid`; the same for an id already so kept)."""
    return sid(v) or v


def d(v: Any) -> dict[str, Any]:
    """``v`` if it is a dict, else {}."""
    return v if isinstance(v, dict) else {}


def num(v: Any) -> float | None:
    """``v`` as a finite number (not bool), else None."""
    return number(v)


def error_fields(obj: dict[str, Any] | None) -> dict[str, str | None]:
    """type, code, message, param, event_id of an ``error`` event (strings or None)."""
    e = d(d(obj).get("error"))
    return {k: s(e.get(k)) for k in ("type", "code", "message", "param", "event_id")}


def audio_len(ev: Any, obj: dict[str, Any] | None, key: str) -> int:
    """Decoded audio bytes of an event: the recording's split audio, or (for values
    too short to be stored split) the base64 in ``obj[key]`` decoded here."""
    n = int(getattr(ev, "audio_bytes", 0) or 0)
    if n:
        return n
    v = d(obj).get(key)
    if isinstance(v, str) and v:
        try:
            return len(base64.b64decode(v, validate=True))
        except (binascii.Error, ValueError):
            return 0
    return 0


@dataclass(slots=True)
class Resp:
    """A response, from ``response.created`` to ``response.done``."""

    id: str
    index: int
    t: float
    create_index: int | None = None
    done_index: int | None = None
    done_t: float | None = None
    done_count: int = 0
    status: str | None = None
    status_details: Any = None
    out_of_band: bool = False
    items: list[str] = field(default_factory=list)
    call_ids: list[str] = field(default_factory=list)
    audio_ms: float = 0.0
    item_set: set[str] = field(default_factory=set, repr=False)
    """The ids in :attr:`items` (a crafted response announces 100,000 items)."""

    @property
    def open(self) -> bool:
        return self.done_index is None


@dataclass(slots=True)
class Item:
    """A conversation item, with the audio received for it per content index."""

    id: str
    index: int
    announced: bool = True
    kind: str | None = None
    role: str | None = None
    response_id: str | None = None
    audio_ms: dict[int, float] = field(default_factory=dict)
    first_audio_t: float | None = None
    first_audio_index: int | None = None
    last_audio_t: float | None = None
    play_end: float | None = None
    """When the client would have finished playing the audio received, played as it arrived."""
    audio_done: bool = False

    @property
    def total_audio_ms(self) -> float:
        return sum(self.audio_ms.values())


@dataclass(slots=True)
class Call:
    """A function call the model made, and the client's answers to it."""

    call_id: str
    index: int
    t: float
    name: str | None = None
    item_id: str | None = None
    response_id: str | None = None
    outputs: list[tuple[int, float]] = field(default_factory=list)
    event_type: str | None = None
    """The type of the event at ``index`` (the one the call was first seen in)."""


class SessionState:
    """What is known after the events so far. Read by rules; :meth:`apply` by the engine."""

    def __init__(self) -> None:
        self.index = -1
        self.t = 0.0
        self.session_created: tuple[int, float] | None = None
        self.expires_at: float | None = None
        self.effective: dict[str, Any] | None = None
        """The last session config the server reported (session.created / session.updated)."""
        self.transcription: bool | None = None
        """Input transcription configured (None: the session never said)."""
        self.responses: dict[str, Resp] = {}
        self._resp_order: list[Resp] = []
        self._resp_index: list[int] = []
        """The responses in order of first appearance, and their (increasing) indices."""
        self._resp_sorted = True
        self.open: dict[str, Resp] = {}
        self.last_response: Resp | None = None
        self.items: dict[str, Item] = {}
        self.audio_items: list[Item] = []
        """The last few items that received assistant audio (newest last)."""
        self.calls: dict[str, Call] = {}
        self.client_by_event_id: dict[str, tuple[int, str | None, float]] = {}
        self.last_client: tuple[int, str | None, float] | None = None
        self.last_create: tuple[int, float] | None = None
        self.pending_creates: deque[int] = deque()
        """response.create indices not matched to a response.created yet."""
        self.input_ms = 0.0
        """Input audio appended since the last commit / clear / committed."""
        self.input_format: AudioFormat = PCM16_24K
        self.output_format: AudioFormat = PCM16_24K
        self.audio_in_ms = 0.0
        self.audio_out_ms = 0.0
        self.explained: set[int] = set()
        """Indices of ``error`` events a rule has accounted for."""
        self.handshake: Any = None
        self.close: Any = None
        self.cut_short = False
        self.end_t = 0.0
        self.last_index: int | None = None
        self.nbytes = 0
        """Decoded audio bytes of the event being looked at (appends and audio deltas; else 0)."""
        self.first_of: dict[tuple[str, str | None], Any] = {}
        """The first event of each (side, type), in order of first appearance: every type
        the protocol defines, and the first few others (``engine.MAX_OTHER_TYPES``)."""

    # ------------------------------------------------------------ lookups
    def cause_of(self, err: dict[str, str | None]) -> tuple[int, str | None, float] | None:
        """The client event an error names by event_id, else None."""
        eid = err.get("event_id")
        return self.client_by_event_id.get(id_key(eid)) if eid else None

    def first_response_after(self, index: int) -> Resp | None:
        """The first response that appeared after event ``index``, else None."""
        if not self._resp_sorted:  # events fed out of order: look at each
            return next((r for r in self._resp_order if r.index > index), None)
        k = bisect_right(self._resp_index, index)
        return self._resp_order[k] if k < len(self._resp_order) else None

    def _new_response(self, rid: str, i: int, t: float) -> Resp:
        resp = self.responses[rid] = Resp(rid, i, t)
        if self._resp_index and i < self._resp_index[-1]:
            self._resp_sorted = False
        self._resp_order.append(resp)
        self._resp_index.append(i)
        return resp

    def explain(self, index: int) -> None:
        self.explained.add(index)

    def session_age(self, t: float) -> float:
        return t - (self.session_created[1] if self.session_created else 0.0)

    # -------------------------------------------------------------- apply
    def apply(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None) -> None:
        """Account for one event (after the rules have seen it)."""
        i, t = ev.index, ev.t
        self.index = self.last_index = i
        self.t = t
        if t > self.end_t:
            self.end_t = t
        if ev.from_client:
            if ctype == "input_audio_buffer.append":
                fmt = ev.format
                ms = self.nbytes / fmt.bytes_per_ms
                self.input_ms += ms
                self.audio_in_ms += ms
                self.input_format = fmt
                self.last_client = (i, ctype, t)
                return
            self.last_client = (i, ctype, t)
            if obj is None:
                return
            eid = sid(obj.get("event_id"))
            if eid:
                self.client_by_event_id[eid] = (i, ctype, t)
            if ctype == "response.create":
                self.last_create = (i, t)
                self.pending_creates.append(i)
            elif ctype in ("input_audio_buffer.commit", "input_audio_buffer.clear"):
                self.input_ms = 0.0
            elif ctype == "session.update":
                self.input_format = ev.format
            elif ctype == "conversation.item.create":
                item = d(obj.get("item"))
                iid = sid(item.get("id"))
                if iid and iid not in self.items:
                    self.items[iid] = Item(iid, i, kind=s(item.get("type")), role=s(item.get("role")))
            return
        # server
        self.output_format = ev.format
        if ctype == AUDIO_DELTA:
            self._audio(ev, obj, t)
            return
        if obj is None:
            return
        if ctype in ("session.created", "session.updated", "transcription_session.created",
                     "transcription_session.updated"):
            sess = d(obj.get("session"))
            self.effective = sess
            if ctype in ("session.created", "transcription_session.created") and self.session_created is None:
                self.session_created = (i, t)
                self.expires_at = num(sess.get("expires_at"))
            tr = d(d(d(sess.get("audio")).get("input"))).get("transcription", ...)
            if tr is ...:
                tr = sess.get("input_audio_transcription", ...)
            if tr is not ...:
                self.transcription = bool(tr)
        elif ctype == "response.created":
            r = d(obj.get("response"))
            rid = sid(r.get("id")) or f"#{i}"
            create_index = self.pending_creates.popleft() if self.pending_creates else None
            resp = self.responses.get(rid)
            if resp is None:
                resp = self._new_response(rid, i, t)
                resp.create_index = create_index
            self.open[rid] = resp
            self.last_response = resp
        elif ctype == "response.done":
            r = d(obj.get("response"))
            rid = sid(r.get("id")) or (self.last_response.id if self.last_response else f"#{i}")
            found = self.responses.get(rid)
            if found is None:
                found = self._new_response(rid, i, t)
            resp = found
            resp.done_count += 1
            if resp.done_index is None:
                resp.done_index, resp.done_t = i, t
            resp.status = s(r.get("status"))
            resp.status_details = r.get("status_details")
            self.open.pop(rid, None)
            for out in r.get("output") or () if isinstance(r.get("output"), list) else ():
                self._note_call(d(out), i, t, rid, ev.type)
        elif ctype in ("response.output_item.added", "conversation.item.added", "conversation.item.created",
                       "conversation.item.done", "conversation.item.retrieved", "response.output_item.done"):
            item = d(obj.get("item"))
            iid = sid(item.get("id"))
            orid = sid(obj.get("response_id"))
            if iid:
                it = self.items.get(iid)
                if it is None or not it.announced:
                    new = Item(iid, i, kind=s(item.get("type")), role=s(item.get("role")), response_id=orid)
                    if it is not None:
                        new.audio_ms, new.first_audio_t, new.play_end = it.audio_ms, it.first_audio_t, it.play_end
                        new.first_audio_index, new.last_audio_t = it.first_audio_index, it.last_audio_t
                    self.items[iid] = it = new
                else:
                    it.kind = it.kind or s(item.get("type"))
                    it.role = it.role or s(item.get("role"))
                    it.response_id = it.response_id or orid
                owner = self.responses.get(orid) if orid else None
                if owner is not None and iid not in owner.item_set:
                    owner.item_set.add(iid)
                    owner.items.append(iid)
            if ctype == "response.output_item.done":
                self._note_call(item, i, t, orid, ev.type)
        elif ctype == "input_audio_buffer.committed":
            self.input_ms = 0.0
            iid = sid(obj.get("item_id"))
            if iid and iid not in self.items:
                self.items[iid] = Item(iid, i, kind="message", role="user")
        elif ctype == "response.function_call_arguments.done":
            cid = sid(obj.get("call_id"))
            if cid and cid not in self.calls:
                crid = sid(obj.get("response_id"))
                self.calls[cid] = Call(cid, i, t, s(obj.get("name")), sid(obj.get("item_id")), crid, event_type=ev.type)
                if crid in self.responses:
                    self.responses[crid].call_ids.append(cid)  # type: ignore[index]
        elif ctype == "response.output_audio.done":
            it = self.items.get(sid(obj.get("item_id")) or "")
            if it is not None:
                it.audio_done = True

    def _note_call(self, item: dict[str, Any], i: int, t: float, rid: str | None, etype: str | None) -> None:
        if item.get("type") != "function_call":
            return
        cid = sid(item.get("call_id"))
        if cid and cid not in self.calls:
            self.calls[cid] = Call(cid, i, t, s(item.get("name")), sid(item.get("id")), rid, event_type=etype)
            if rid in self.responses:
                self.responses[rid].call_ids.append(cid)  # type: ignore[index]

    def _audio(self, ev: Any, obj: dict[str, Any] | None, t: float) -> None:
        # the hot path of a voice session: one call per audio delta
        o = obj if obj.__class__ is dict else {}
        iid = o.get("item_id")
        if iid.__class__ is not str:
            iid = "?"
        elif len(iid) > MAX_ID_CHARS:  # (the hot path: short_id only for a long one)
            iid = sid(iid) or "?"
        it = self.items.get(iid)
        if it is None:
            it = self.items[iid] = Item(iid, ev.index, announced=False, response_id=sid(o.get("response_id")))
        ci = o.get("content_index", 0)
        if ci.__class__ is not int:
            ci = 0
        ms = (self.nbytes or audio_len(ev, obj, "delta")) / ev.format.bytes_per_ms
        am = it.audio_ms
        am[ci] = am.get(ci, 0.0) + ms
        if it.first_audio_t is None:
            it.first_audio_t, it.first_audio_index = t, ev.index
            self.audio_items.append(it)
            if len(self.audio_items) > 8:
                del self.audio_items[0]
        it.last_audio_t = t
        pe = it.play_end
        it.play_end = (pe if pe is not None and pe > t else t) + ms / 1000.0
        self.audio_out_ms += ms
        rid = it.response_id or sid(o.get("response_id"))
        r = self.responses.get(rid) if rid else None
        if r is not None:
            r.audio_ms += ms
