"""Fault injection, without sockets: SPEC parsing, planning against a recording, what a
session answers (rtproxy.replay.faults), and the scheduler's delay."""

from __future__ import annotations

import json

import pytest

from rtproxy.errors import FaultSpecError, UsageError
from rtproxy.io.format import Message, split_base64_audio
from rtproxy.replay.faults import (
    CloseWith,
    Delay,
    FaultSession,
    Send,
    Skip,
    Stall,
    error_event,
    failed_response_done,
    parse_fault,
    plan_faults,
    refusal,
)
from rtproxy.replay.script import ReplayScheduler, client_events, server_steps

MS = 1_000_000
STARTED = 1_700_000_000.0


def ev(t_ms: float, from_client: bool, obj: dict) -> Message:
    content = json.dumps(obj).encode()
    return Message(int(t_ms * MS), from_client, True, split_base64_audio(content) or content)


def turn(beta: bool = False) -> list[Message]:
    """session.created (expires in 15 min), one response of three audio deltas, a second
    response.create and its response."""
    delta = "response.audio.delta" if beta else "response.output_audio.delta"
    added = "conversation.item.created" if beta else "conversation.item.added"
    resp = {"object": "realtime.response", "id": "resp_1", "status": "in_progress", "output": []}
    resp.update({"modalities": ["audio"], "output_audio_format": "pcm16"} if beta else {"output_modalities": ["audio"]})
    usage = {"total_tokens": 9, "input_tokens": 4, "output_tokens": 5, "input_token_details": {"cached_tokens": 2}}
    return [
        ev(0, False, {"type": "session.created", "event_id": "e0", "session": {"id": "s", "expires_at": STARTED + 900}}),
        ev(10, True, {"type": "session.update", "session": {"type": "realtime"}}),
        ev(12, False, {"type": "session.updated", "event_id": "e1", "session": {}}),
        ev(20, True, {"type": "response.create"}),
        ev(25, False, {"type": "response.created", "event_id": "e2", "response": resp}),
        ev(26, False, {"type": "response.output_item.added", "event_id": "e3", "response_id": "resp_1",
                       "item": {"id": "item_1", "type": "message"}}),
        ev(27, False, {"type": added, "event_id": "e4", "item": {"id": "item_1", "type": "message"}}),
        ev(30, False, {"type": delta, "event_id": "e5", "response_id": "resp_1", "item_id": "item_1", "delta": "AAAA"}),
        ev(50, False, {"type": delta, "event_id": "e6", "response_id": "resp_1", "item_id": "item_1", "delta": "AAAA"}),
        ev(70, False, {"type": delta, "event_id": "e7", "response_id": "resp_1", "item_id": "item_1", "delta": "AAAA"}),
        ev(80, False, {"type": "response.done", "event_id": "e8",
                       "response": {**resp, "status": "completed", "usage": usage}}),
        ev(81, False, {"type": "rate_limits.updated", "event_id": "e9", "rate_limits": []}),
        ev(100, True, {"type": "response.create"}),
        ev(105, False, {"type": "response.created", "event_id": "e10", "response": {**resp, "id": "resp_2"}}),
        ev(110, False, {"type": "response.done", "event_id": "e11", "response": {**resp, "id": "resp_2"}}),
    ]


def plan(*specs: str, beta: bool = False):
    return plan_faults(specs, turn(beta), header={"started": STARTED})


# ------------------------------------------------------------------ parsing
def test_every_kind_parses() -> None:
    f = parse_fault("close 1011:server error after response.output_audio.delta#3")
    assert (f.kind, f.code, f.reason, f.where, str(f.selector)) == (
        "close", 1011, "server error", "after", "response.output_audio.delta#3"
    )
    assert parse_fault("drop response.done#1").where == "before"
    d = parse_fault("delay 2.5s before response.created#2")
    assert (d.delay_ns, d.where, d.selector.ordinal) == (2_500_000_000, "before", 2)
    assert parse_fault("delay 250ms after response.done").delay_ns == 250 * MS
    assert parse_fault("duplicate response.output_audio.delta#5").selector.ordinal == 5
    e = parse_fault("error conversation_already_has_active_response after response.create#2")
    assert (e.error, e.reason) == ("conversation_already_has_active_response", None)
    fl = parse_fault("fail response#1 inference_rate_limit_exceeded")
    assert (fl.response, fl.error, str(fl.selector)) == (1, "inference_rate_limit_exceeded", "response.created#1")
    assert parse_fault("expire at 30s").selector.at_ns == 30_000_000_000
    assert parse_fault("expire after response.done#1").selector.glob == "response.done"
    assert parse_fault("stall after response.output_audio.delta#2").kind == "stall"
    r = parse_fault("refuse 429")
    assert (r.code, r.session) == (429, None)
    assert parse_fault("refuse 401 session#1").session == 1
    assert parse_fault("close 4000 at @1.5s").selector.at_ns == 1_500_000_000
    assert parse_fault("  drop   response.done  ").selector.ordinal == 1  # spaces, default #1
    assert parse_fault("error server_error:The server had an error after @1s").reason == "The server had an error"


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("explode now", "unknown fault 'explode': expected one of close, drop, delay"),
        ("", "unknown fault ''"),
        ("close after response.done", "expected close CODE[:REASON] after|before SEL"),
        ("close 1005 after response.done", "close code 1005 cannot be sent"),
        ("close 1000:" + "x" * 124 + " after response.done", "a close frame holds 123"),
        ("delay 0s before response.done", "the delay must be longer than 0"),
        ("delay 2 before response.done", "delay '2': expected a duration like 2.5s or 250ms"),
        ("drop @2s", "drop names an event"),
        ("drop response.done#0", "#N counts events from 1"),
        ("drop response.done#x", "#N counts events from 1"),
        ("drop response.done!", "is not an event type"),
        ("error made_up_code after response.create", "unknown error code 'made_up_code': give the message"),
        ("fail response#0 inference_rate_limit_exceeded", "responses are counted from 1"),
        ("fail response inference_rate_limit_exceeded", "expected fail response#N CODE[:MESSAGE]"),
        ("expire at soon", "time 'soon': expected a duration"),
        ("refuse 200", "refuse takes an HTTP error status"),
        ("refuse 418", "no known body for HTTP 418"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, problem: str) -> None:
    with pytest.raises(FaultSpecError) as info:
        parse_fault(spec)
    msg = str(info.value)
    assert msg.startswith(f"--fault {spec!r}: ") and problem in msg, msg
    assert "\n" not in msg
    assert isinstance(info.value, UsageError)


# ------------------------------------------------------------------ planning
def test_plan_resolves_server_events_to_recording_indices() -> None:
    p = plan("close 1011 after response.output_audio.delta#3", "drop response.done#2", "expire at 1s",
             "error response_cancel_not_active after response.create#2", "refuse 429 session#2")
    sides = [(x.side, x.index) for x in p.faults]
    assert sides == [("server", 9), ("server", 14), ("time", None), ("client", None), ("handshake", None)]
    assert p.faults[3].types == {"response.create"}
    assert p.dialect == "ga" and p.session_minutes == 15  # expires_at - started
    assert p.refusal(1) is None and p.refusal(2) is p.faults[4]


def test_ga_and_beta_names_match_each_other_and_the_dialect_is_the_recordings() -> None:
    beta = plan("drop response.output_audio.delta#2", "duplicate conversation.item.added", beta=True)
    assert [x.index for x in beta.faults] == [8, 6] and beta.dialect == "beta"
    ga = plan("drop response.audio.delta#2", "duplicate response.*.delta#3")
    assert [x.index for x in ga.faults] == [8, 9] and ga.dialect == "ga"


def test_plan_of_fail_skips_every_other_event_of_that_response() -> None:
    (f,) = plan("fail response#1 inference_rate_limit_exceeded").faults
    assert f.index == 4  # after response.created#1
    # output_item.added, conversation.item.added (its item), 3 deltas, its response.done
    assert sorted(f.skip) == [5, 6, 7, 8, 9, 10]
    assert f.done_template is not None and f.done_template["response"]["usage"]["total_tokens"] == 9
    (g,) = plan("fail response#2 inference_rate_limit_exceeded").faults
    assert (g.index, sorted(g.skip)) == (13, [14])


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("drop response.text.delta", "the recording has no event 'response.text.delta'"),
        ("close 1011 after response.output_audio.delta#4", "has 3 response.output_audio.delta server events; #4 is beyond it"),
        ("error response_cancel_not_active after response.create#3", "has 2 response.create client events; #3 is beyond"),
        ("fail response#3 inference_rate_limit_exceeded", "has 2 response.created server events; #3 is beyond"),
        ("drop response.create", "response.create is a client event: drop acts on what the server sends"),
        ("duplicate session.update", "session.update is a client event"),
        ("stall before response.create#1", "a fault can come after it, not before"),
        ("close 1000 after response.*#1", "matches client events (response.create) and server events"),
    ],
)
def test_plan_refuses_what_the_recording_does_not_have(spec: str, problem: str) -> None:
    with pytest.raises(FaultSpecError) as info:
        plan(spec)
    assert str(info.value).startswith(f"--fault {spec!r}: ") and problem in str(info.value), str(info.value)


# ------------------------------------------------------------------ built events
def test_error_event_has_the_apis_shape_and_text() -> None:
    e = json.loads(error_event("conversation_already_has_active_response", client_event_id="evt_9", response_id="resp_1",
                               event_id="event_x"))
    assert e == {
        "type": "error", "event_id": "event_x",
        "error": {
            "type": "invalid_request_error", "code": "conversation_already_has_active_response",
            "message": "Conversation already has an active response in progress: resp_1. Wait until the response "
                       "is finished before creating a new one.",
            "param": None, "event_id": "evt_9",
        },
    }
    assert list(e) == ["type", "event_id", "error"]
    assert list(e["error"]) == ["type", "code", "message", "param", "event_id"]
    quiet = json.loads(error_event("conversation_already_has_active_response"))
    assert quiet["error"]["message"] == "Conversation already has an active response"
    assert quiet["event_id"].startswith("event_") and len(quiet["event_id"]) == 27
    exp = json.loads(error_event("session_expired", minutes=15))
    assert exp["error"]["message"] == "Your session hit the maximum duration of 15 minutes."
    own = json.loads(error_event("server_error", message="boom"))["error"]
    assert (own["type"], own["message"]) == ("server_error", "boom")


def test_failed_response_done_keeps_the_dialects_response_members() -> None:
    created = {"type": "response.created", "response": {"object": "realtime.response", "id": "resp_1",
                                                       "status": "in_progress", "modalities": ["audio"],
                                                       "output_audio_format": "pcm16", "output": []}}
    template = {"response": {"usage": {"total_tokens": 9, "input_token_details": {"cached_tokens": 2}}}}
    done = json.loads(failed_response_done(created, "inference_rate_limit_exceeded", dialect="beta",
                                           done_template=template, event_id="event_y"))
    r = done["response"]
    assert done["type"] == "response.done" and done["event_id"] == "event_y"
    assert (r["id"], r["status"], r["modalities"], r["output_audio_format"], r["output"]) == (
        "resp_1", "failed", ["audio"], "pcm16", []
    )
    assert r["status_details"] == {"type": "failed", "error": {
        "type": "invalid_request_error", "code": "inference_rate_limit_exceeded",
        "message": "We're currently processing too many requests \u2014 please try again later."}}
    assert r["usage"] == {"total_tokens": 0, "input_token_details": {"cached_tokens": 0}}
    ga = json.loads(failed_response_done({"response": {"id": "resp_2"}}, "inference_rate_limit_exceeded"))
    assert ga["response"]["usage"]["input_token_details"]["cached_tokens_details"] == {
        "text_tokens": 0, "audio_tokens": 0, "image_tokens": 0}


def test_refusal_bodies() -> None:
    status, body = refusal(parse_fault("refuse 401"), "sk-test-not-a-real-key-1234")
    err = json.loads(body)["error"]
    assert status == 401 and (err["type"], err["code"]) == ("invalid_request_error", "invalid_api_key")
    assert err["message"].startswith("Incorrect API key provided: sk-********************1234.")
    assert "not-a-real" not in err["message"]
    status, body = refusal(parse_fault("refuse 429"))
    err = json.loads(body)["error"]
    assert (status, err["type"], err["code"]) == (429, "insufficient_quota", "insufficient_quota")
    assert err["message"].startswith("You exceeded your current quota")
    status, body = refusal(parse_fault("refuse 503:Service Unavailable"))
    assert status == 503 and json.loads(body)["error"] == {
        "message": "Service Unavailable", "type": "server_error", "param": None, "code": None}


# ------------------------------------------------------------------ one session
def session(*specs: str, beta: bool = False) -> FaultSession:
    return FaultSession(plan(*specs, beta=beta), 0)


def content(m: Message) -> bytes:
    return m.content


def test_session_actions_fire_once_at_their_event() -> None:
    msgs = turn()
    s = session("drop response.output_audio.delta#1", "duplicate response.output_audio.delta#2",
                "close 1011:bye after response.output_audio.delta#3")
    assert s.before(7, 30 * MS) == [Skip()]
    assert s.before(7, 30 * MS) == []  # fired once
    assert s.after(8, content(msgs[8]), 50 * MS) == [Send(content(msgs[8]))]
    assert s.after(9, content(msgs[9]), 70 * MS) == [CloseWith(1011, "bye")]
    assert s.ended == "close 1011:bye after response.output_audio.delta#3"
    assert s.after(10, content(msgs[10]), 80 * MS) == [] and s.before(10, 80 * MS) == []
    assert [(f.spec.split()[0], f.t_ms) for f in s.fired] == [("drop", 30.0), ("duplicate", 50.0), ("close", 70.0)]
    assert s.pending == []


def test_session_fail_sends_a_failed_done_and_skips_the_rest_of_that_response() -> None:
    msgs = turn()
    s = session("fail response#1 inference_rate_limit_exceeded")
    (send,) = s.after(4, content(msgs[4]), 25 * MS)
    assert isinstance(send, Send)
    done = json.loads(send.data)
    assert done["response"]["id"] == "resp_1" and done["response"]["status"] == "failed"
    assert [s.before(i, 0) for i in range(5, 12)] == [[Skip()]] * 6 + [[]]  # rate_limits.updated goes out
    assert s.before(13, 0) == [] and s.before(14, 0) == []  # the next response goes on


def test_session_client_selector_errors_name_the_client_event_and_the_open_response() -> None:
    msgs = turn()
    s = session("error conversation_already_has_active_response after response.create#2",
                "error response_cancel_not_active after response.output_audio.delta#1")
    create = json.dumps({"type": "response.create", "event_id": "evt_live_2"}).encode()
    assert s.client(10 * MS, "response.create", create) == []  # the 1st
    s.after(4, content(msgs[4]), 25 * MS)  # response.created resp_1: in progress
    (send,) = s.after(7, content(msgs[7]), 30 * MS)
    assert json.loads(send.data)["error"]["code"] == "response_cancel_not_active"
    (send,) = s.client(40 * MS, "response.create", create)
    err = json.loads(send.data)["error"]
    assert err["event_id"] == "evt_live_2" and "in progress: resp_1." in err["message"]
    s.after(10, content(msgs[10]), 80 * MS)  # its response.done
    assert s.client(90 * MS, "response.create", create) == []


def test_session_timers_expire_and_stall() -> None:
    s = session("expire at 2s", "delay 100ms at @1s")
    assert s.next_timer() == 1_000 * MS
    assert s.timer(999 * MS) == []
    assert s.timer(1_000 * MS) == [Delay(100 * MS)]
    assert s.next_timer() == 2_000 * MS
    send, close = s.timer(2_001 * MS)
    assert isinstance(send, Send) and json.loads(send.data)["error"]["code"] == "session_expired"
    assert close == CloseWith(1001, "Your session hit the maximum duration of 15 minutes.")
    assert s.next_timer() is None
    st = session("stall after response.output_audio.delta#2", "drop response.done#2")
    assert st.after(8, b"{}", 50 * MS) == [Stall()]
    assert st.pending == ["drop response.done#2"]


def test_delay_before_fires_once() -> None:
    s = session("delay 2.5s before response.created#2")
    assert s.delay_before(4, 0) is None
    assert s.delay_before(13, 100 * MS) == Delay(2_500 * MS)
    assert s.delay_before(13, 100 * MS) is None


# ------------------------------------------------------------------ the scheduler's delay
def due_times(msgs: list[Message], pace: str, delay_at: int | None = None, ns: int = 500 * MS) -> list[int]:
    """(due ms) of every server message; a delay of ``ns`` before the server message at
    recording index ``delay_at``. The client sends each message at its recorded time,
    moved like the server messages it answers."""
    s = ReplayScheduler(server_steps(msgs), client_events(msgs), pace=pace)
    s.start(0)
    out: list[int] = []
    pending = [m for m in msgs if m.from_client]
    delayed_t: int | None = None
    while not s.finished:
        nxt = s.next_send()
        if nxt is None:
            m = pending.pop(0)
            late = ns if delayed_t is not None and m.t_ns > delayed_t else 0
            s.client_message(m.t_ns + late, True, m.content)
            continue
        due, step = nxt
        if step.index == delay_at and delayed_t is None:
            s.delay(due + ns, ns)
            delayed_t = step.t_ns
            continue
        s.pop()
        out.append(due // MS)
    return out


@pytest.mark.parametrize("pace", ["client", "clock"])
def test_scheduler_delay_moves_that_message_and_every_later_one_by_the_same_amount(pace: str) -> None:
    msgs = turn()
    plain = due_times(msgs, pace, None)
    moved = due_times(msgs, pace, 7)  # before the first audio delta: the 6th server message
    assert moved[:5] == plain[:5]
    assert [m - p for m, p in zip(moved[5:], plain[5:])] == [500] * (len(plain) - 5)
