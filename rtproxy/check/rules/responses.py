"""Responses: overlap (RT001), cancel with none active (RT004), how they end (RT012),
their lifecycle (RT013)."""

from __future__ import annotations

from typing import Any

from rtproxy.check.finding import Finding
from rtproxy.check.rules.base import Rule, q
from rtproxy.check.state import CONTENT_EVENTS, SessionState, d, error_fields, num, s, sid

__all__ = ["ActiveResponse", "CancelNotActive", "ResponseOutcome", "ResponseLifecycle"]

_ACTIVE_CODE = "conversation_already_has_active_response"


def _is_active_error(err: dict[str, str | None]) -> bool:
    msg = err.get("message") or ""
    return err.get("code") == _ACTIVE_CODE or msg.startswith("Conversation already has an active response")


class ActiveResponse(Rule):
    code = "RT001"
    name = "response-create-while-active"
    severity = "error"
    title = "response.create while a response is active"
    types = frozenset({"response.create", "error"})
    meaning = """
A client response.create was sent while a response was open (after its
response.created, before its response.done), or the server rejected one with
conversation_already_has_active_response. The error is joined to the request
by error.event_id, else to the last response.create.
"""
    why = """
The server refuses the second response: no response.created follows, so a
client waiting for it hangs (SDKs report a generic timeout after ~10 s) and
the bot goes silent for the rest of the turn.
"""
    fix = """
Wait for response.done before sending response.create (also after a
function_call_output); with server VAD (create_response: true) do not send
your own response.create for a user turn; after a local timeout send
response.cancel before asking again.
"""
    sources = (
        "openai/openai-agents-python #1466, PR #3405 (refs #1168, #1912)", "tleyden/arty #81",
        "openai/openai-realtime-agents #3", "livekit/agents PR #6818 (fixes #6817), #6223",
        "pollen-robotics/reachy_mini_conversation_app PR #406",
    )

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.pending: dict[int, tuple[Any, str | None, int]] = {}
        self.rejected: dict[int, int] = {}
        self.order: list[int] = []
        self.info: dict[int, tuple[float, str | None]] = {}

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        o = d(obj)
        if ctype == "response.create":
            if s(d(o.get("response")).get("conversation")) == "none":
                return None  # out-of-band responses may run beside the conversation's
            self.info[ev.index] = (ev.t, ev.type)
            if st.open:
                r = next(reversed(st.open.values()))
                self.pending[ev.index] = (ev, r.id, r.index)
                self.order.append(ev.index)
            return None
        err = error_fields(obj)
        if not _is_active_error(err):
            return None
        st.explain(ev.index)
        cause = st.cause_of(err)
        ci = cause[0] if cause and cause[1] == "response.create" else (st.last_create[0] if st.last_create else None)
        if ci is None:
            return [self.on(ev, f"the server refused a response: {q(err.get('message'))}, and no "
                                "response.create was sent before it")]
        self.rejected[ci] = ev.index
        if ci not in self.pending:
            t, typ = self.info.get(ci, (ev.t, "response.create"))
            return [self.at(ci, t, typ,
                            "response.create was refused: the server already had a response in progress "
                            f"(not yet announced to the client: server VAD or a racing request); "
                            f"error #{ev.index} {err.get('code') or q(err.get('message'))}", [ev.index])]
        return None

    def finish(self, st: SessionState) -> list[Finding] | None:
        out = []
        for i in self.order:
            ev, rid, ridx = self.pending[i]
            err = self.rejected.get(i)
            if err is not None:
                msg = (f"response.create sent while response {rid} (created #{ridx}) was still open; "
                       f"the server refused it (error #{err}: {_ACTIVE_CODE})")
                out.append(self.on(ev, msg, [ridx, err]))
            else:
                msg = (f"response.create sent while response {rid} (created #{ridx}) was still open; "
                       "no error came back, but it raced the open response")
                out.append(self.on(ev, msg, [ridx], severity="warning"))
        return out


class CancelNotActive(Rule):
    code = "RT004"
    name = "cancel-without-active-response"
    severity = "info"
    title = "response.cancel with no active response"
    types = frozenset({"response.cancel", "error"})
    meaning = """
A response.cancel was sent when no response was open, or the server answered
one with response_cancel_not_active ("Cancellation failed: no active response
found").
"""
    why = """
Benign by itself (many clients filter the error), but it marks a race: the
client believes a response is playing that the server already finished, so
its barge-in logic is working from a stale picture (often: audio buffered on
the client still plays, and only a truncate would fix the context).
"""
    fix = """
Track response.created / response.done; cancel only while a response is open.
After response.done, stop local playback and send conversation.item.truncate
instead.
"""
    sources = ("2FastLabs/agent-squad PR #571", "Azure/azure-sdk-for-python PR #48965 (review)",
               "espressif/esp-webrtc-solution #20")

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.reported: dict[int, Finding] = {}

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        if ctype == "response.cancel":
            if not st.open:
                self.reported[ev.index] = self.on(ev, "response.cancel sent with no response open")
            return None
        err = error_fields(obj)
        if err.get("code") != "response_cancel_not_active":
            return None
        st.explain(ev.index)
        cause = st.cause_of(err)
        ci = cause[0] if cause else (st.last_client[0] if st.last_client else None)
        f = self.reported.pop(ci, None) if ci is not None else None
        if f is not None:
            return [self.at(f.event_index, f.t, f.event_type,
                            f"response.cancel sent with no response open; the server answered "
                            f"response_cancel_not_active (error #{ev.index})", [ev.index])]
        return [self.on(ev, "the server found no active response to cancel (response_cancel_not_active): "
                            "the cancel raced the end of the response", [ci] if ci is not None else [])]

    def finish(self, st: SessionState) -> list[Finding] | None:
        return list(self.reported.values())


class ResponseOutcome(Rule):
    code = "RT012"
    name = "response-not-completed"
    severity = "warning"
    title = "response failed, incomplete or cancelled; rate limit near zero"
    types = frozenset({"response.done", "rate_limits.updated"})
    meaning = """
A response.done whose status is failed (error), incomplete (warning) or
cancelled (info), with its status_details (type, reason: turn_detected,
client_cancelled, max_output_tokens, content_filter; error type and code such
as inference_rate_limit_exceeded). Also a rate_limits.updated whose remaining
is at or near zero.
"""
    why = """
Failed and incomplete responses are often logged at debug level only, so the
agent just seems unresponsive or stops mid-sentence. Rate limits running out
precede failed responses.
"""
    fix = """
Log response.done status_details; retry failed responses with backoff; raise
max_output_tokens; for content_filter, change the prompt; watch
rate_limits.updated and slow down before the limit.
"""
    sources = ("openai/openai-python #2502, PR #3906", "community 1362788", "openai/openai-agents-js #1022",
               "openai/openai-realtime-console #42", "livekit/agents PR #2967, PR #5873")

    _SEV = {"failed": "error", "incomplete": "warning", "cancelled": "info"}

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.low: set[str] = set()

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        o = d(obj)
        if ctype == "rate_limits.updated":
            out = []
            lims = o.get("rate_limits")
            for lim in lims if isinstance(lims, list) else ():
                lim = d(lim)
                name = s(lim.get("name")) or "?"
                limit, remaining = num(lim.get("limit")), num(lim.get("remaining"))
                if limit is None or remaining is None or limit <= 0:
                    continue
                if remaining <= limit * self.options.rate_limit_fraction and name not in self.low:
                    self.low.add(name)
                    reset = num(lim.get("reset_seconds"))
                    out.append(self.on(ev, f"rate limit {q(name)}: {remaining:g} of {limit:g} remaining"
                                           + (f" (resets in {reset:g} s)" if reset is not None else "")))
                elif remaining > limit * self.options.rate_limit_fraction * 2:
                    self.low.discard(name)
            return out
        r = d(o.get("response"))
        status = s(r.get("status"))
        sev = self._SEV.get(status or "")
        if sev is None:
            return None
        sd = d(r.get("status_details"))
        bits = []
        for k in ("type", "reason"):
            if s(sd.get(k)) and sd.get(k) != status:
                bits.append(f"{k} {q(sd.get(k))}")
        e = d(sd.get("error"))
        if e:
            bits.append("error " + " ".join(q(e.get(k)) for k in ("type", "code", "message") if s(e.get(k))))
        usage = d(r.get("usage"))
        if status == "failed" and usage and not any(num(usage.get(k)) for k in ("total_tokens", "output_tokens")):
            bits.append("usage all zero")
        rid = sid(r.get("id")) or "?"
        created = st.responses.get(rid)
        detail = "; ".join(bits) if bits else "no status_details"
        return [self.on(ev, f"response {rid} ended {status}: {detail}", [created.index] if created else [], sev)]


class ResponseLifecycle(Rule):
    code = "RT013"
    name = "response-lifecycle"
    severity = "error"
    title = "response never finishes, finishes twice, or content out of place"
    types = frozenset(CONTENT_EVENTS | {"response.created", "response.done"})
    meaning = """
A response.created with no response.done (or one that takes longer than
response_timeout_s), two response.done for one response, content events
(deltas, items, parts) for a response after its response.done or for a
response never created, and the content of two responses interleaved.
"""
    why = """
Clients assemble output per response: content after the terminal event lands
on whichever response the client is assembling next; a response that never
ends leaves the turn hanging and blocks every later response.create.
"""
    fix = """
Usually a server or proxy fault; on the client, key all content by
response_id and drop what arrives for finished responses, and time out
responses that never finish (then response.cancel).
"""
    sources = ("livekit/agents #3560, #2165, #3821, #6222 (fix PR #3405 / #3400)",
               "openai/openai-realtime-embedded #25",
               "pydantic-ai tests/realtime/simulation/_conformance.py (codec.content_after_terminal, "
               "codec.duplicate_terminal, codec.overlapping_responses)")

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.after_done: set[str] = set()
        self.unknown: set[str] = set()
        self.last_rid: str | None = None
        self.pairs: set[tuple[str, str]] = set()

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        o = d(obj)
        if ctype == "response.created":
            return None
        if ctype == "response.done":
            rid = sid(d(o.get("response")).get("id"))
            r = st.responses.get(rid or "")
            if r is None:
                return [self.on(ev, f"response.done for response {rid or '(no id)'} that was never created",
                                severity="warning")]
            out = []
            if r.done_index is not None:
                out.append(self.on(ev, f"second response.done for response {rid} (first #{r.done_index})",
                                   [r.index, r.done_index]))
            elif ev.t - r.t > self.options.response_timeout_s:
                out.append(self.on(ev, f"response {rid} took {ev.t - r.t:.1f} s from response.created to "
                                       f"response.done (over {self.options.response_timeout_s:g} s)",
                                   [r.index], "warning"))
            return out
        rid = sid(o.get("response_id"))
        if rid is None:
            return None
        r = st.responses.get(rid)
        out = []
        if r is None:
            if rid not in self.unknown:
                self.unknown.add(rid)
                out.append(self.on(ev, f"{ev.type} for response {rid}, which was never created", severity="warning"))
        elif r.done_index is not None and rid not in self.after_done:
            self.after_done.add(rid)
            out.append(self.on(ev, f"{ev.type} for response {rid} after its response.done (#{r.done_index})",
                               [r.index, r.done_index]))
        last = self.last_rid
        if last is not None and last != rid and last in st.open and r is not None and r.open:
            pair = (last, rid)
            if pair not in self.pairs and (rid, last) not in self.pairs:
                self.pairs.add(pair)
                other = st.responses[last]
                out.append(self.on(ev, f"content of responses {last} and {rid} interleaved: both open, "
                                       f"{rid} streams before {last} is done", [other.index, r.index],
                                   "warning"))
        self.last_rid = rid
        return out

    def finish(self, st: SessionState) -> list[Finding] | None:
        out = []
        for r in st.open.values():
            age = st.end_t - r.t
            if age > self.options.response_timeout_s:
                out.append(self.at(r.index, r.t, "response.created",
                                   f"response {r.id} never finished: no response.done in the {age:.1f} s "
                                   "to the end of the recording", severity="warning"))
            else:
                out.append(self.at(r.index, r.t, "response.created",
                                   f"response {r.id} was still open when the recording ended "
                                   f"({age:.1f} s after response.created)", severity="info"))
        return out
