"""`rtproxy replay FILE --fault SPEC` end to end: a real replay process, the openai SDK and
plain websockets clients, and what they observe for each fault kind (GA and beta recordings)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets
from openai import AsyncOpenAI
from openai.types.beta.realtime import ErrorEvent as BetaErrorEvent
from openai.types.realtime import RealtimeErrorEvent

from rtproxy.io.format import open_recording
from rtproxy.testing import make_recording
from tests.conftest import ROOT, RTPROXY, free_port, wait_port

pytestmark = pytest.mark.e2e

KEY = "sk-test-not-a-real-key-000000000000"
STARTED = 1_700_000_000.0
AUDIO = base64.b64encode(b"\x01\x00" * 960).decode()  # 40 ms of PCM16 at 24 kHz


def conversation(beta: bool) -> list[Any]:
    """Two responses: the first with four audio deltas 20 ms apart, the second asked for
    after rate_limits.updated."""
    delta = "response.audio.delta" if beta else "response.output_audio.delta"
    added = "conversation.item.created" if beta else "conversation.item.added"
    shape = {"modalities": ["audio"], "output_audio_format": "pcm16"} if beta else {"output_modalities": ["audio"]}
    usage = {"total_tokens": 30, "input_tokens": 10, "output_tokens": 20,
             "input_token_details": {"cached_tokens": 0, "text_tokens": 10, "audio_tokens": 0},
             "output_token_details": {"text_tokens": 5, "audio_tokens": 15}}

    def resp(rid: str, status: str = "in_progress", **more: Any) -> dict[str, Any]:
        return {"object": "realtime.response", "id": rid, "status": status, "status_details": None, "output": [],
                **shape, **more}

    def d(t: float, n: int, rid: str = "resp_1") -> tuple[float, str, dict[str, Any]]:
        return (t, "server", {"type": delta, "event_id": f"ev_d{n}", "response_id": rid, "item_id": f"item_{rid}",
                              "output_index": 0, "content_index": 0, "delta": AUDIO})

    return [
        (5, "server", {"type": "session.created", "event_id": "ev_1",
                       "session": {"id": "sess_1", "object": "realtime.session", "expires_at": STARTED + 1800}}),
        (20, "client", {"type": "session.update", "session": {"type": "realtime"}}),
        (22, "server", {"type": "session.updated", "event_id": "ev_2", "session": {"id": "sess_1"}}),
        (30, "client", {"type": "response.create"}),
        (40, "server", {"type": "response.created", "event_id": "ev_3", "response": resp("resp_1")}),
        (41, "server", {"type": "response.output_item.added", "event_id": "ev_4", "response_id": "resp_1",
                        "output_index": 0, "item": {"id": "item_resp_1", "type": "message", "role": "assistant"}}),
        (42, "server", {"type": added, "event_id": "ev_5", "item": {"id": "item_resp_1", "type": "message"}}),
        d(60, 1), d(80, 2), d(100, 3), d(120, 4),
        (140, "server", {"type": "response.done", "event_id": "ev_6",
                         "response": resp("resp_1", "completed", usage=usage)}),
        (141, "server", {"type": "rate_limits.updated", "event_id": "ev_7", "rate_limits": []}),
        (160, "client", {"type": "response.create"}),
        (170, "server", {"type": "response.created", "event_id": "ev_8", "response": resp("resp_2")}),
        d(190, 5, "resp_2"),
        (210, "server", {"type": "response.done", "event_id": "ev_9",
                         "response": resp("resp_2", "completed", usage=usage)}),
    ]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("faults")
    return {
        name: make_recording(folder / f"{name}.rtrec", conversation(name == "beta"), started=STARTED)
        for name in ("ga", "beta")
    }


def recorded_server(path: Path) -> list[bytes]:
    with open_recording(path) as r:
        return [m.content for m in r.messages() if not m.from_client]


class Replay:
    """`rtproxy replay FILE --once --fault ...` as a subprocess."""

    def __init__(self, path: Path, *specs: str) -> None:
        self.port = free_port()
        args = [a for s in specs for a in ("--fault", s)]
        self.proc = subprocess.Popen(
            [*RTPROXY, "replay", str(path), "--listen-port", str(self.port), "--once", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        wait_port(self.port, proc=self.proc)
        self.url = f"ws://127.0.0.1:{self.port}/v1/realtime?model=gpt-realtime"
        self.ws_base = f"ws://127.0.0.1:{self.port}/v1"

    def finish(self, timeout: float = 15) -> str:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            out, err = self.proc.communicate()
        assert err == "", err
        return out


@dataclass
class Seen:
    raw: list[bytes] = field(default_factory=list)
    at: list[float] = field(default_factory=list)
    close: tuple[int, str] | None = None

    @property
    def types(self) -> list[str]:
        return [json.loads(r)["type"] for r in self.raw]

    def first(self, typ: str) -> dict[str, Any]:
        return next(json.loads(r) for r in self.raw if json.loads(r)["type"] == typ)


async def talk(url: str, *, quiet_s: float = 1.0, stay: float = 0.0) -> Seen:
    """The recorded client side with websockets: session.update, response.create, and a
    second response.create after rate_limits.updated; reads until the connection closes
    or nothing comes for ``quiet_s``."""
    seen = Seen()
    async with websockets.connect(url) as ws:
        creates = 0

        async def send(obj: dict[str, Any]) -> None:
            try:
                await ws.send(json.dumps(obj))
            except websockets.ConnectionClosed:
                pass  # closed meanwhile: what the server sent before its close is still to be read

        try:
            while True:
                raw = await asyncio.wait_for(ws.recv(decode=False), quiet_s)
                seen.raw.append(raw)
                seen.at.append(time.monotonic())
                typ = json.loads(raw)["type"]
                if typ == "session.created":
                    await send({"type": "session.update", "session": {"type": "realtime"}})
                elif typ == "session.updated" or (typ == "rate_limits.updated" and creates == 1):
                    creates += 1
                    await send({"type": "response.create", "event_id": f"evt_client_{creates}"})
        except (TimeoutError, asyncio.TimeoutError):
            pass
        except websockets.ConnectionClosed as exc:
            seen.close = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (1006, "")
    return seen


def run(path: Path, *specs: str, **kw: Any) -> tuple[Seen, str]:
    rp = Replay(path, *specs)
    seen = asyncio.run(talk(rp.url, **kw))
    return seen, rp.finish()


def fault_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("replay session #1"))


# ------------------------------------------------------------------ close, drop, duplicate
def test_close_with_a_code_right_after_the_nth_delta(recordings: dict[str, Path]) -> None:
    expected = recorded_server(recordings["ga"])
    seen, out = run(recordings["ga"], "close 1011:server error after response.output_audio.delta#3")
    assert seen.raw == expected[:8]  # session.created ... delta#3, byte-exact
    assert seen.close == (1011, "server error")
    line = fault_line(out)
    assert "closed with 1011 'server error' by a fault" in line
    assert "faults: close 1011:server error after response.output_audio.delta#3 at " in line


def test_openai_sdk_sees_the_close_code(recordings: dict[str, Path]) -> None:
    rp = Replay(recordings["ga"], "close 1013:try again later before response.created#2")

    async def sdk() -> tuple[list[str], websockets.ConnectionClosed]:
        client = AsyncOpenAI(api_key=KEY, websocket_base_url=rp.ws_base)
        types: list[str] = []
        async with client.realtime.connect(model="gpt-realtime") as conn:
            await conn.session.update(session={"type": "realtime"})
            await conn.response.create()
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:
                    ev = await conn.recv()
                    types.append(ev.type)
                    if ev.type == "rate_limits.updated":
                        await conn.response.create()
            return types, info.value

    types, closed = asyncio.run(sdk())
    rp.finish()
    assert types[-2:] == ["response.done", "rate_limits.updated"] and "response.created" in types
    assert types.count("response.created") == 1
    assert closed.rcvd is not None and (closed.rcvd.code, closed.rcvd.reason) == (1013, "try again later")


def test_drop_never_sends_that_message_and_nothing_else_changes(recordings: dict[str, Path]) -> None:
    expected = recorded_server(recordings["ga"])
    seen, out = run(recordings["ga"], "drop response.done#1")
    done1 = next(r for r in expected if b'"ev_6"' in r)
    assert seen.raw == [r for r in expected if r is not done1]
    assert "faults: drop response.done#1 at " in fault_line(out) and "(not sent)" in out


def test_duplicate_sends_it_twice_in_a_row(recordings: dict[str, Path]) -> None:
    expected = recorded_server(recordings["beta"])
    seen, _ = run(recordings["beta"], "duplicate response.output_audio.delta#2")  # GA name, beta recording
    i = next(k for k, r in enumerate(expected) if b'"ev_d2"' in r)
    assert seen.raw == expected[: i + 1] + [expected[i]] + expected[i + 1 :]


# ------------------------------------------------------------------ delay, stall, expire
def test_delay_moves_that_message_and_every_later_one(recordings: dict[str, Path]) -> None:
    seen, out = run(recordings["ga"], "delay 400ms before response.output_audio.delta#2")
    t = {json.loads(r)["event_id"]: at for r, at in zip(seen.raw, seen.at)}
    assert len(seen.raw) == len(recorded_server(recordings["ga"]))
    gap = (t["ev_d2"] - t["ev_d1"]) * 1000
    assert abs(gap - (20 + 400)) < 20, gap  # recorded 20 ms, plus the delay
    for a, b in (("ev_d2", "ev_d3"), ("ev_d3", "ev_d4")):
        assert abs((t[b] - t[a]) * 1000 - 20) < 20, (a, b, t[b] - t[a])  # the rest keeps its spacing
    assert "faults: delay 400ms before response.output_audio.delta#2 at " in fault_line(out)


def test_stall_sends_nothing_more_but_keeps_the_socket_open_and_answers_pings(recordings: dict[str, Path]) -> None:
    expected = recorded_server(recordings["ga"])
    rp = Replay(recordings["ga"], "stall after response.output_audio.delta#2")

    async def client() -> tuple[list[bytes], float]:
        got: list[bytes] = []
        async with websockets.connect(rp.url) as ws:
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
            await ws.send(json.dumps({"type": "response.create"}))
            with pytest.raises((TimeoutError, asyncio.TimeoutError)):
                while True:
                    got.append(await asyncio.wait_for(ws.recv(decode=False), 0.8))
            t0 = time.monotonic()
            await asyncio.wait_for(await ws.ping(), 2)  # the pong comes: the connection is alive
            return got, time.monotonic() - t0

    got, pong_s = asyncio.run(client())
    out = rp.finish()
    assert got == expected[:7]  # up to delta#2
    assert pong_s < 1.0
    line = fault_line(out)
    assert "closed by the client (1000)" in line and "faults: stall after response.output_audio.delta#2 at " in line


@pytest.mark.parametrize(("name", "minutes"), [("ga", 30), ("beta", 30)])
def test_expire_sends_session_expired_then_closes_1001(recordings: dict[str, Path], name: str, minutes: int) -> None:
    rp = Replay(recordings[name], "expire at 120ms")
    t0 = time.monotonic()
    seen = asyncio.run(talk(rp.url))
    out = rp.finish()
    assert "error" in seen.types, (" ".join(seen.types), seen.close, out)
    err = seen.first("error")
    at = (seen.at[seen.types.index("error")] - t0) * 1000
    assert 100 < at < 400, at
    text = f"Your session hit the maximum duration of {minutes} minutes."  # session.created expires_at
    assert err["error"] == {"type": "invalid_request_error", "code": "session_expired", "message": text,
                            "param": None, "event_id": None}
    assert seen.types[-1] == "error" and seen.close == (1001, text)
    assert "faults: expire at 120ms at " in fault_line(out)


# ------------------------------------------------------------------ error, fail
@pytest.mark.parametrize("name", ["ga", "beta"])
def test_error_event_shape_in_both_dialects(recordings: dict[str, Path], name: str) -> None:
    expected = recorded_server(recordings[name])
    seen, out = run(recordings[name], "error conversation_already_has_active_response after response.create#2",
                    "error conversation_already_has_active_response after response.output_audio.delta#1")
    errors = [json.loads(r) for r in seen.raw if json.loads(r)["type"] == "error"]
    assert [r for r in seen.raw if json.loads(r)["type"] != "error"] == expected  # nothing else changed
    mid, answer = errors
    for e in errors:
        assert list(e) == ["type", "event_id", "error"] and list(e["error"]) == ["type", "code", "message", "param", "event_id"]
        assert e["event_id"].startswith("event_") and len(e["event_id"]) == 27
        (BetaErrorEvent if name == "beta" else RealtimeErrorEvent).model_validate(e)
    # during response 1, answering no client event
    assert mid["error"] == {
        "type": "invalid_request_error", "code": "conversation_already_has_active_response",
        "message": "Conversation already has an active response in progress: resp_1. Wait until the response "
                   "is finished before creating a new one.",
        "param": None, "event_id": None,
    }
    assert seen.types[seen.types.index("error") - 1] == ("response.audio.delta" if name == "beta"
                                                         else "response.output_audio.delta")
    # right after the client's 2nd response.create, naming it; no response was in progress
    assert answer["error"]["event_id"] == "evt_client_2"
    assert answer["error"]["message"] == "Conversation already has an active response"
    i = [k for k, t in enumerate(seen.types) if t == "error"][1]
    assert seen.types[i - 1] == "rate_limits.updated" and seen.types[i + 1] == "response.created"
    assert fault_line(out).count(" at ") >= 2


def test_openai_sdk_parses_the_injected_error_and_failed_response(recordings: dict[str, Path]) -> None:
    rp = Replay(recordings["ga"], "fail response#1 inference_rate_limit_exceeded",
                "error response_cancel_not_active after response.create#2")

    async def sdk() -> list[Any]:
        client = AsyncOpenAI(api_key=KEY, websocket_base_url=rp.ws_base)
        events: list[Any] = []
        async with client.realtime.connect(model="gpt-realtime") as conn:
            await conn.session.update(session={"type": "realtime"})
            await conn.response.create()
            while True:
                ev = await asyncio.wait_for(conn.recv(), 5)
                events.append(ev)
                if ev.type == "rate_limits.updated":
                    await conn.response.create()
                if ev.type == "response.done" and ev.response.id == "resp_2":
                    return events

    events = asyncio.run(sdk())
    rp.finish()
    types = [e.type for e in events]
    assert types == ["session.created", "session.updated", "response.created", "response.done",
                     "rate_limits.updated", "error", "response.created", "response.output_audio.delta",
                     "response.done"]
    failed = events[3].response
    assert (failed.id, failed.status, failed.output) == ("resp_1", "failed", [])
    assert failed.status_details.type == "failed"
    assert (failed.status_details.error.type, failed.status_details.error.code) == (
        "invalid_request_error", "inference_rate_limit_exceeded")
    assert failed.usage.total_tokens == 0
    assert events[5].error.code == "response_cancel_not_active"
    assert events[5].error.message == "Cancellation failed: no active response found"


@pytest.mark.parametrize("name", ["ga", "beta"])
def test_fail_ends_that_response_failed_and_skips_the_rest_of_it(recordings: dict[str, Path], name: str) -> None:
    expected = recorded_server(recordings[name])
    seen, out = run(recordings[name], "fail response#1 inference_rate_limit_exceeded")
    done = json.loads(seen.raw[3])
    assert seen.types[:4] == ["session.created", "session.updated", "response.created", "response.done"]
    created = json.loads(expected[2])["response"]
    assert done["response"] == {
        **created, "status": "failed",
        "status_details": {"type": "failed", "error": {
            "type": "invalid_request_error", "code": "inference_rate_limit_exceeded",
            "message": "We're currently processing too many requests \u2014 please try again later."}},
        "output": [],
        "usage": {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0,
                  "input_token_details": {"cached_tokens": 0, "text_tokens": 0, "audio_tokens": 0},
                  "output_token_details": {"text_tokens": 0, "audio_tokens": 0}},
    }
    if name == "beta":
        assert done["response"]["modalities"] == ["audio"] and "output_modalities" not in done["response"]
    # nothing more of resp_1; rate_limits.updated and the second response as recorded
    rest = [r for r in expected[3:] if b"resp_1" not in r]
    assert seen.raw[4:] == rest
    assert "7 of its events not sent" in fault_line(out)


# ------------------------------------------------------------------ refuse
@pytest.mark.parametrize(("status", "code"), [(429, "insufficient_quota"), (401, "invalid_api_key")])
def test_refuse_the_upgrade_with_the_apis_json_body(recordings: dict[str, Path], status: int, code: str) -> None:
    rp = Replay(recordings["ga"], f"refuse {status}")

    async def client() -> Any:
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(rp.url, additional_headers={"Authorization": f"Bearer {KEY}"})
        return info.value.response

    resp = asyncio.run(client())
    out = rp.finish()
    assert resp.status_code == status and resp.headers["Content-Type"] == "application/json"
    err = json.loads(resp.body)["error"]
    assert set(err) == {"message", "type", "code", "param"} and err["code"] == code
    if status == 401:
        assert err["message"].startswith("Incorrect API key provided: sk-") and KEY not in err["message"]
    assert f"refused the upgrade with HTTP {status}, by the fault 'refuse {status}'" in out


# ------------------------------------------------------------------ bad SPECs
BAD = {
    "close 1011 after response.output_audio.delta#9": "the recording has 5 response.output_audio.delta server events; #9 is beyond it",
    "drop response.output_text.delta": "the recording has no event 'response.output_text.delta'",
    "drop response.create#1": "response.create is a client event",
    "fail response#3 inference_rate_limit_exceeded": "the recording has 2 response.created server events",
    "error no_such_code after response.create": "unknown error code 'no_such_code'",
    "teleport after response.done": "unknown fault 'teleport'",
    "delay soon before response.done": "delay 'soon': expected a duration like 2.5s or 250ms",
}


def test_bad_specs_are_a_one_line_error_before_listening(recordings: dict[str, Path]) -> None:
    procs = {
        spec: subprocess.Popen(
            [*RTPROXY, "replay", str(recordings["ga"]), "--listen-port", str(free_port()), "--fault", spec],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        for spec in BAD
    }
    for spec, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (spec, out, err)
        assert out == ""  # never listened: no address printed
        lines = err.splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"rtproxy: error: --fault {spec!r}: ") and BAD[spec] in lines[0], lines[0]
