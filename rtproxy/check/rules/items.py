"""Items: user transcription (RT014), deltas for unknown items (RT016), history that
cannot be restored (RT021), duplicated server events (RT022)."""

from __future__ import annotations

from typing import Any

from rtproxy.check.finding import Finding
from rtproxy.check.rules.base import Rule, q
from rtproxy.check.state import SessionState, d, error_fields, id_key, s, sid

__all__ = ["UserTranscription", "UnannouncedItem", "AssistantAudioHistory", "DuplicateEvent"]

_COMPLETED = "conversation.item.input_audio_transcription.completed"
_FAILED = "conversation.item.input_audio_transcription.failed"


class UserTranscription(Rule):
    code = "RT014"
    name = "user-transcription"
    severity = "warning"
    title = "user transcription missing, failed, empty or after the reply"
    types = frozenset({"input_audio_buffer.committed", _COMPLETED, _FAILED,
                       "conversation.item.input_audio_transcription.delta"})
    meaning = """
With input transcription on (the session config says so, or transcripts
arrive), a committed user item that gets neither .completed nor .failed
(warning; info within transcript_grace_s of the end), a .failed (warning), an
empty transcript (info), or a transcript arriving after the response.done of
the reply to it (info).
"""
    why = """
UIs and logs show a missing or blank user turn; a transcript after the reply
puts the conversation out of order.
"""
    fix = """
Order by previous_item_id, not by arrival; keep a placeholder until .completed
or .failed; log .failed errors; an empty transcript of short speech is usual
with eager VAD.
"""
    sources = ("community 1068762, 1076308, 971804, 1062286", "sashirestela/simple-openai #258",
               "pipecat-ai/pipecat #1788", "livekit/agents-js PR #28", "openclaw/openclaw PR #113723",
               "ReviewStage/luke PR #614", "openai/openai-realtime-console #35")

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.committed: dict[str, tuple[Any, int | None]] = {}
        self.done: set[str] = set()
        self.saw_any = False

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        o = d(obj)
        iid = sid(o.get("item_id"))
        if iid is None:
            return None
        if ctype == "input_audio_buffer.committed":
            self.committed.setdefault(iid, (ev, None))
            return None
        self.saw_any = True
        if ctype not in (_COMPLETED, _FAILED) or iid in self.done:
            return None
        self.done.add(iid)
        rel = [self.committed[iid][0].index] if iid in self.committed else []
        if ctype == _FAILED:
            e = error_fields({"error": o.get("error")})
            return [self.on(ev, f"transcription of item {iid} failed: {e.get('code') or e.get('type') or '?'} "
                                f"{q(e.get('message') or '', 100)}", rel)]
        tr = o.get("transcript")
        if isinstance(tr, str) and not tr.strip():
            return [self.on(ev, f"empty transcript for item {iid}", rel, "info")]
        if iid in self.committed:
            cev = self.committed[iid][0]
            reply = st.first_response_after(cev.index)
            if reply is not None and reply.done_index is not None and reply.done_index < ev.index:
                return [self.on(ev, f"transcript of item {iid} arrived after the reply (response {reply.id} done "
                                    f"at #{reply.done_index})", rel + [reply.done_index], "info")]
        return None

    def finish(self, st: SessionState) -> list[Finding] | None:
        if not (st.transcription or self.saw_any):
            return None
        out = []
        for iid, (ev, _) in self.committed.items():
            if iid in self.done:
                continue
            near_end = st.end_t - ev.t < self.options.transcript_grace_s
            out.append(self.on(ev, f"committed item {iid} got neither transcription .completed nor .failed"
                                   + (" (the recording ends soon after)" if near_end else ""),
                               severity="info" if near_end else None))
        return out


_ITEM_EVENTS = frozenset({
    "response.output_audio.delta", "response.output_audio.done", "response.output_audio_transcript.delta",
    "response.output_audio_transcript.done", "response.output_text.delta", "response.output_text.done",
    "response.content_part.added", "response.content_part.done", "response.function_call_arguments.delta",
    "response.function_call_arguments.done", "conversation.item.input_audio_transcription.delta",
    _COMPLETED, _FAILED, "conversation.item.input_audio_transcription.segment",
})


class UnannouncedItem(Rule):
    code = "RT016"
    name = "delta-for-unknown-item"
    severity = "warning"
    title = "events for an item never announced"
    types = _ITEM_EVENTS
    meaning = """
Deltas and part events whose item_id was never announced (by
response.output_item.added, conversation.item.added/created, a buffer commit
or the client's conversation.item.create); one finding per item.
"""
    why = """
Clients and relays that key state by item fail on them ("Item not found"),
and some stop processing audio altogether.
"""
    fix = """
Usually the client missed or dropped the announcing event (reconnects,
filters); create item state lazily from the first delta instead of failing.
"""
    sources = ("openai/openai-realtime-api-beta #12", "openai/openai-realtime-console #62")

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.found: dict[str, tuple[Any, list[int]]] = {}

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        iid = sid(d(obj).get("item_id"))
        if iid is None:
            return None
        it = st.items.get(iid)
        if iid in self.found:
            self.found[iid][1].append(ev.index)
        elif it is None or not it.announced:
            self.found[iid] = (ev, [])
        return None

    def finish(self, st: SessionState) -> list[Finding] | None:
        return [self.on(ev, f"{ev.type} for item {iid}, never announced"
                            + (f" ({len(more) + 1} events)" if more else ""), more[:10])
                for iid, (ev, more) in self.found.items()]


_AUDIO_PARTS = frozenset({"audio", "output_audio", "input_audio"})


class AssistantAudioHistory(Rule):
    code = "RT021"
    name = "assistant-audio-history"
    severity = "error"
    title = "conversation.item.create of an assistant message with audio only"
    types = frozenset({"conversation.item.create", "error"})
    meaning = """
A client conversation.item.create of an assistant message whose content is
audio only (no text or transcript), typically history restored after a
reconnect.
"""
    why = """
The API cannot populate assistant audio messages: it answers
missing_required_parameter 'item.content[0].text' and the history is not
restored.
"""
    fix = """
Restore assistant turns as text (their transcript), not audio.
"""
    sources = ("openai/openai-agents-js #963", "openai/openai-openapi #518", "livekit/agents PR #7092")

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.last: int | None = None

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        if ctype == "error":
            err = error_fields(obj)
            if self.last is not None and (err.get("param") or "").startswith("item.content"):
                st.explain(ev.index)
            return None
        item = d(d(obj).get("item"))
        if item.get("role") != "assistant" or item.get("type", "message") != "message":
            return None
        content = item.get("content")
        parts = [d(c) for c in content] if isinstance(content, list) else []
        if parts and all(s(p.get("type")) in _AUDIO_PARTS and not s(p.get("transcript")) and not s(p.get("text"))
                         for p in parts):
            self.last = ev.index
            return [self.on(ev, "assistant message created with audio content only: the API cannot populate "
                                "assistant audio (it asks for item.content[0].text)")]
        return None


class DuplicateEvent(Rule):
    code = "RT022"
    name = "duplicate-server-event"
    severity = "warning"
    title = "a server event delivered twice"
    types = None
    meaning = """
Two server events with the same event_id (one finding, with the count).
"""
    why = """
A relay or reconnect that re-delivers events makes clients play audio twice or
run a tool twice.
"""
    fix = """
Deduplicate by event_id in the relay or client.
"""
    sources = ("mastra-ai/mastra #22969", "pydantic-ai tests/realtime/simulation/_invariants.py (wire.duplicate)")

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.seen: dict[str, int] = {}  # id_key(event_id) -> first index
        self.dups: list[tuple[Any, int, str]] = []  # the first ten (the id as shown)
        self.n_dups = 0

    def wants(self, typ: str | None, ctype: str | None, from_client: bool) -> bool:
        return not from_client and typ is not None

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        if obj is None or ev.side != "server":
            return None
        eid = obj.get("event_id")
        if not isinstance(eid, str):
            return None
        first = self.seen.setdefault(id_key(eid), ev.index)
        if first != ev.index:
            self.n_dups += 1
            if len(self.dups) < 10:
                self.dups.append((ev, first, q(eid, 40)))
        return None

    def finish(self, st: SessionState) -> list[Finding] | None:
        if not self.dups:
            return None
        ev, first, eid = self.dups[0]
        n = self.n_dups
        return [self.on(ev, f"server event_id {eid} seen twice: #{first} and #{ev.index}"
                            + (f" ({n} duplicates in all)" if n > 1 else ""),
                        [first] + [e.index for e, _, _ in self.dups[1:10]])]
