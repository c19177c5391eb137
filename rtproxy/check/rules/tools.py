"""Function calls: answered or not, and how (RT007); continued off a bad response (RT008)."""

from __future__ import annotations

import json
from typing import Any

from rtproxy.check.finding import Finding
from rtproxy.check.rules.base import Rule, q
from rtproxy.check.state import SessionState, d, error_fields, sid

__all__ = ["ToolCallAnswer", "ToolContinuation"]


def _output_item(ctype: str | None, obj: dict[str, Any] | None) -> dict[str, Any] | None:
    if ctype != "conversation.item.create":
        return None
    item = d(d(obj).get("item"))
    return item if item.get("type") == "function_call_output" else None


class ToolCallAnswer(Rule):
    code = "RT007"
    name = "tool-call-unanswered"
    severity = "warning"
    title = "function call not answered, answered twice or late, or bad arguments"
    types = frozenset({"response.function_call_arguments.done", "response.output_item.done",
                       "conversation.item.create", "response.create", "error"})
    meaning = """
A function call (response.function_call_arguments.done or an output item of
type function_call) with no conversation.item.create function_call_output for
its call_id before the end, or one later than tool_timeout_s; an output with
no response.create after it; two outputs for one call; an output for a
call_id the model never made (or with none: error); one call_id in two items;
arguments that are not a JSON object.
"""
    why = """
The model waits for the output (until a server-side timeout, ~30 s) and the
user hears nothing; without a response.create after the output there is no
reply until the user speaks again; duplicate outputs mean the tool ran twice.
"""
    fix = """
Answer every call_id exactly once, also when the tool is unknown, raises or
times out (send an error as the output), then send response.create; validate
arguments with json.loads and answer bad ones with an error output.
"""
    sources = ("openai/openai-agents-python #3286, PR #3287, #3356", "openai/openai-agents-js PR #1310",
               "community 1079792, 966495", "openai/openai-realtime-api-beta #31", "livekit/agents #2223",
               "mastra-ai/mastra #22969")

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.awaiting_create: list[tuple[Any, str]] = []
        self.seen_items: dict[str, str] = {}
        self.checked_args: set[str] = set()
        self.missing_call_id = False

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        o = d(obj)
        out: list[Finding] = []
        if ctype == "response.create":
            self.awaiting_create = []
            return None
        if ctype == "error":
            err = error_fields(obj)
            if (err.get("param") or "").startswith("item.call_id") and self.missing_call_id:
                st.explain(ev.index)
            return None
        if ctype in ("response.function_call_arguments.done", "response.output_item.done"):
            if ctype == "response.output_item.done":
                item = d(o.get("item"))
                if item.get("type") != "function_call":
                    return None
                cid, iid, args = sid(item.get("call_id")), sid(item.get("id")), item.get("arguments")
            else:
                cid, iid, args = sid(o.get("call_id")), sid(o.get("item_id")), o.get("arguments")
            if cid is None:
                return None
            if iid:
                first = self.seen_items.setdefault(cid, iid)
                if first != iid:
                    out.append(self.on(ev, f"call_id {cid} appears in two function-call items ({first}, {iid}): "
                                           "the same call delivered twice", [st.calls[cid].index] if cid in st.calls else []))
            if cid not in self.checked_args and args is not None:
                self.checked_args.add(cid)
                problem = _args_problem(args)
                if problem:
                    out.append(self.on(ev, f"arguments of call {cid} are {problem}: {q(args, 60)}"))
            return out
        out_item = _output_item(ctype, obj)
        if out_item is None:
            return None
        cid = sid(out_item.get("call_id"))
        if cid is None:
            self.missing_call_id = True
            return [self.on(ev, "function_call_output without a call_id (the server refuses it: missing "
                                "item.call_id)", severity="error")]
        call = st.calls.get(cid)
        if call is None:
            out.append(self.on(ev, f"function_call_output for call_id {cid}, which the model never made"))
        elif call.outputs:
            out.append(self.on(ev, f"second function_call_output for call {cid} (first #{call.outputs[0][0]}): "
                                   "the tool ran twice?", [call.index, call.outputs[0][0]]))
        else:
            late = ev.t - call.t
            if late > self.options.tool_timeout_s:
                out.append(self.on(ev, f"call {cid} ({call.name or '?'}) answered {late:.1f} s after it was made "
                                       f"(over {self.options.tool_timeout_s:g} s)", [call.index]))
        if call is not None:
            call.outputs.append((ev.index, ev.t))
        self.awaiting_create.append((ev, cid))
        return out

    def finish(self, st: SessionState) -> list[Finding] | None:
        out = []
        for call in st.calls.values():
            if not call.outputs:
                out.append(self.at(call.index, call.t, call.event_type,
                                   f"call {call.call_id} ({call.name or '?'}) never answered: no function_call_output "
                                   f"in the {st.end_t - call.t:.1f} s to the end"))
        for ev, cid in self.awaiting_create:
            out.append(self.on(ev, f"function_call_output for {cid} with no response.create after it: "
                                   "no reply until the user speaks"))
        return out


def _args_problem(args: Any) -> str | None:
    if not isinstance(args, str):
        return "not a string"
    try:
        value = json.loads(args)
    except (ValueError, RecursionError):
        return "not valid JSON"
    return None if isinstance(value, dict) else f"JSON but not an object ({type(value).__name__})"


class ToolContinuation(Rule):
    code = "RT008"
    name = "tool-continuation-off-bad-response"
    severity = "error"
    title = "tool continuation off a failed or still-open response"
    types = frozenset({"conversation.item.create"})
    meaning = """
A function_call_output (or the response.create that continues it) for a call
whose response ended failed (error) or cancelled/incomplete (warning), or a
function_call_output sent before that response's response.done (warning: the
response.create that follows races the open response).
"""
    why = """
Continuing off a failed response hangs the turn; continuing before
response.done collides with the open response
(conversation_already_has_active_response).
"""
    fix = """
Wait for response.done of the response that made the call; if it failed,
retry the turn instead of continuing it.
"""
    sources = ("2FastLabs/agent-squad #573, PR #571", "pollen-robotics/reachy_mini_conversation_app PR #406")

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: SessionState) -> list[Finding] | None:
        item = _output_item(ctype, obj)
        cid = sid(item.get("call_id")) if item else None
        call = st.calls.get(cid or "")
        if call is None:
            return None
        r = st.responses.get(call.response_id or "")
        if r is None:
            return None
        if r.status == "failed":
            return [self.on(ev, f"function_call_output for {call.call_id} continues response {r.id}, which "
                                f"failed (#{r.done_index}): the turn will hang", [r.done_index or r.index])]
        if r.open:
            return [self.on(ev, f"function_call_output for {call.call_id} sent before response.done of {r.id}: "
                                "a response.create now would collide with the open response",
                            [r.index], "warning")]
        if r.status in ("cancelled", "incomplete"):
            return [self.on(ev, f"function_call_output for {call.call_id} of response {r.id}, which ended "
                                f"{r.status}: the call may be partial", [r.done_index or r.index], "warning")]
        return None
