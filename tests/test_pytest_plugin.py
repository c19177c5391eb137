"""The pytest plugin (rtproxy.pytest_plugin): cassettes replayed per test, record modes,
failures a person can act on, marker arguments, xdist; the openai SDK and openai-agents
against cassettes committed in tests/cassettes/.

Most tests run an inner pytest with ``pytester`` (in this process; xdist in a
subprocess); recording goes through ``rtproxy record`` to the local Realtime-like
server (tests/realtime_server.py) as the upstream.

The committed cassettes were recorded through the plugin against that server::

    python tests/realtime_server.py --port 9000 &
    pytest tests/test_pytest_plugin.py -k committed --rtproxy-record-mode all \\
        --rtproxy-upstream http://127.0.0.1:9000
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest
import websockets
import websockets.sync.client

from rtproxy.pytest_plugin import PLACEHOLDER_KEY
from rtproxy.testing import ReplayServer, make_recording
from tests.realtime_server import Scenario, ServerThread, speech_pcm

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.e2e

KEY = "sk-test-not-a-real-key-000000000000"

# A short dialogue: session.update, response.create, a text answer.
TURN = [
    (0, "server", {"type": "session.created", "event_id": "ev_1", "session": {"id": "sess_1"}}),
    (10, "client", {"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief."}}),
    (12, "server", {"type": "session.updated", "event_id": "ev_2", "session": {"id": "sess_1", "instructions": "Be brief."}}),
    (20, "client", {"type": "response.create"}),
    (25, "server", {"type": "response.created", "event_id": "ev_3", "response": {"id": "resp_1", "status": "in_progress"}}),
    (30, "server", {"type": "response.output_text.delta", "event_id": "ev_4", "response_id": "resp_1", "delta": "Hi"}),
    (35, "server", {"type": "response.done", "event_id": "ev_5", "response": {"id": "resp_1", "status": "completed"}}),
    (36, "server", {"type": "rate_limits.updated", "event_id": "ev_6", "rate_limits": []}),
]
# ... and a second turn the app may not reach.
SECOND_TURN = [
    (50, "client", {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                                  "content": [{"type": "input_text", "text": "More."}]}}),
    (52, "server", {"type": "conversation.item.added", "event_id": "ev_7", "item": {"id": "item_2"}}),
    (60, "client", {"type": "response.create"}),
    (65, "server", {"type": "response.created", "event_id": "ev_8", "response": {"id": "resp_2"}}),
    (70, "server", {"type": "response.done", "event_id": "ev_9", "response": {"id": "resp_2", "status": "completed"}}),
]

# What the inner tests import: small apps talking to the replay.
RTAPP = '''
import asyncio, json, threading, time
import websockets, websockets.sync.client


async def talk(url, instructions="Be brief.", until="rate_limits.updated", create=True, first=None):
    """session.update, response.create; read until an event of type `until`. Returns the types."""
    got = []
    async with websockets.connect(url + "?model=gpt-realtime") as ws:
        got.append(json.loads(await ws.recv())["type"])
        if first is not None:
            await ws.send(json.dumps(first))
        await ws.send(json.dumps({"type": "session.update",
                                  "session": {"type": "realtime", "instructions": instructions}}))
        got.append(json.loads(await ws.recv())["type"])
        if create:
            await ws.send(json.dumps({"type": "response.create"}))
        while got[-1] != until:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), 10))["type"])
    return got


def talk_sync(url, **kw):
    return asyncio.run(talk(url, **kw))


def talk_in_thread(url):
    """The same dialogue with websockets' threaded client, from another thread."""
    out = {}

    def run():
        with websockets.sync.client.connect(url) as ws:
            types = [json.loads(ws.recv())["type"]]
            ws.send(json.dumps({"type": "session.update",
                                "session": {"type": "realtime", "instructions": "Be brief."}}))
            types.append(json.loads(ws.recv())["type"])
            ws.send(json.dumps({"type": "response.create"}))
            while types[-1] != "rate_limits.updated":
                types.append(json.loads(ws.recv(timeout=10))["type"])
            out["types"] = types

    t = threading.Thread(target=run)
    t.start()
    t.join(20)
    return out.get("types")
'''

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
{extra}
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester folder with the apps (rtapp.py) and an ini file."""
    pytester.makepyfile(rtapp=RTAPP)
    pytester.makeini(INI.format(extra=""))
    pytester.syspathinsert()
    return pytester


def cassette(pytester: pytest.Pytester, module: str, name: str, events: list[Any] = TURN, **kw: Any) -> Path:
    path = pytester.path / "cassettes" / module / f"{name}.rtrec"
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_recording(path, events, **kw)


def shift(events: list[Any], after_type: str, ms: float) -> list[Any]:
    """The events with every one after the first `after_type` moved `ms` later."""
    out, moved = [], 0.0
    for t, side, ev in events:
        out.append((t + moved, side, ev))
        if moved == 0 and ev.get("type") == after_type:
            moved = ms
    return out


def outcome_text(result: pytest.RunResult) -> str:
    return "\n".join(result.outlines + result.errlines)


# ------------------------------------------------------------------ replay
def test_replay_passes_with_asyncio_sync_threads_and_anyio(inner: pytest.Pytester) -> None:
    for name in ("test_async", "test_sync_thread", "test_anyio", "test_sync_asyncio_run"):
        cassette(inner, "test_ok", name)
    inner.makeconftest("""
import pytest

@pytest.fixture
def anyio_backend():
    return "asyncio"
""")
    inner.makepyfile(test_ok="""
import pytest
from rtapp import talk, talk_in_thread, talk_sync

TYPES = ["session.created", "session.updated", "response.created", "response.output_text.delta",
         "response.done", "rate_limits.updated"]

@pytest.mark.rtproxy
@pytest.mark.asyncio
async def test_async(rtproxy):
    assert rtproxy.mode == "replay" and rtproxy.cassette.name == "test_async.rtrec"
    assert rtproxy.url == rtproxy.websocket_base_url + "/realtime"
    assert rtproxy.http_base_url == rtproxy.websocket_base_url.replace("ws://", "http://")
    assert await talk(rtproxy.url) == TYPES
    (s,) = rtproxy.sessions
    assert s.divergences == [] and s.substitutions == 0

@pytest.mark.rtproxy
def test_sync_thread(rtproxy):
    assert talk_in_thread(rtproxy.url) == TYPES
    assert len(rtproxy.sessions) == 1

@pytest.mark.rtproxy
@pytest.mark.anyio
async def test_anyio(rtproxy):
    assert await talk(rtproxy.url) == TYPES

def test_sync_asyncio_run(rtproxy):   # the fixture alone: default options
    assert talk_sync(rtproxy.url) == TYPES
""")
    result = inner.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_each_test_gets_its_own_server_torn_down_with_it(inner: pytest.Pytester) -> None:
    cassette(inner, "test_own", "test_one")
    cassette(inner, "test_own", "test_two")
    inner.makepyfile(test_own="""
import json, socket, pytest
from rtapp import talk_sync

PORTS = []

@pytest.mark.rtproxy
def test_one(rtproxy):
    PORTS.append(int(rtproxy.url.split(":")[2].split("/")[0]))
    talk_sync(rtproxy.url)

@pytest.mark.rtproxy
def test_two(rtproxy):
    port = int(rtproxy.url.split(":")[2].split("/")[0])
    assert port != PORTS[0]
    with pytest.raises(OSError):  # the first test's server is gone
        socket.create_connection(("127.0.0.1", PORTS[0]), 1).close()
    talk_sync(rtproxy.url)
""")
    inner.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_divergence_fails_with_what_was_expected_what_came_and_where(inner: pytest.Pytester) -> None:
    cassette(inner, "test_div", "test_pirate")
    inner.makepyfile(test_div="""
import pytest
from rtapp import talk

@pytest.mark.rtproxy
@pytest.mark.asyncio
async def test_pirate(rtproxy):
    await talk(rtproxy.url, instructions="You are a pirate.")
""")
    result = inner.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = outcome_text(result)
    assert "rtproxy: the app diverged from its cassette cassettes/test_div/test_pirate.rtrec" in out
    assert "where:    client message #0 at" in out
    assert 'expected: field session.instructions = "Be brief." (cassette message #1 at 10.0 ms)' in out
    assert 'app sent: field session.instructions = "You are a pirate."' in out
    assert '{"type":"session.update","session":{"type":"realtime","instructions":"You are a pirate."}}' in out
    assert "closest recorded candidate: message #1 session.update at 10.0 ms (the one expected here)" in out
    assert "strict: the replay closed the connection (closed with 4900" in out
    assert "the app then failed with ConnectionClosedError: the connection closed with 4900" in out
    assert "re-record: pytest --rtproxy-record-mode all 'test_div.py::test_pirate'" in out
    assert "rtproxy diff cassettes/test_div/test_pirate.rtrec " in out


def test_divergence_fails_the_test_even_when_the_app_catches_the_disconnect(inner: pytest.Pytester) -> None:
    cassette(inner, "test_caught", "test_skips_update", TURN + SECOND_TURN)
    inner.makepyfile(test_caught="""
import json, pytest, websockets

@pytest.mark.rtproxy
@pytest.mark.asyncio
async def test_skips_update(rtproxy):
    async with websockets.connect(rtproxy.url) as ws:
        await ws.recv()
        # the cassette has session.update first; this comes two client events later
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Less."}]}}))
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed:
            pass  # the app shrugs it off
""")
    result = inner.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = outcome_text(result)
    assert "expected: session.update (cassette message #1 at 10.0 ms)" in out
    assert "app sent: conversation.item.create" in out
    assert ("closest recorded candidate: message #8 conversation.item.create at 50.0 ms; differs from what "
            "the app sent in item.content[0].text") in out
    assert '"content":[{"type":"input_text","text":"More."}]' in out
    assert "the app then failed" not in out


def test_a_message_that_never_comes_is_a_divergence_after_wait_timeout(inner: pytest.Pytester) -> None:
    cassette(inner, "test_wait", "test_forgets_create")
    inner.makepyfile(test_wait="""
import pytest, websockets
from rtapp import talk

@pytest.mark.rtproxy(wait_timeout=0.3)
@pytest.mark.asyncio
async def test_forgets_create(rtproxy):
    with pytest.raises(websockets.ConnectionClosed):
        await talk(rtproxy.url, create=False)
""")
    result = inner.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = outcome_text(result)
    assert "nothing arrived within 0.3 s (wait_timeout)" in out
    assert "expected: response.create (cassette message #3 at 20.0 ms)" in out
    assert "app sent: nothing" in out


def test_unconsumed_cassette_fails_naming_what_the_app_never_reached(inner: pytest.Pytester) -> None:
    cassette(inner, "test_unc", "test_one_turn_of_two", TURN + SECOND_TURN)
    slow_limits = shift(TURN, "response.done", 1000)  # rate_limits.updated a second after response.done
    cassette(inner, "test_unc", "test_leaves_after_done", slow_limits)
    cassette(inner, "test_unc", "test_leaves_after_done_allowed", slow_limits)
    cassette(inner, "test_unc", "test_never_connects")
    inner.makepyfile(test_unc="""
import pytest
from rtapp import talk

@pytest.mark.rtproxy
@pytest.mark.asyncio
async def test_one_turn_of_two(rtproxy):
    await talk(rtproxy.url)

@pytest.mark.rtproxy(speed=1)
@pytest.mark.asyncio
async def test_leaves_after_done(rtproxy):
    await talk(rtproxy.url, until="response.done")

@pytest.mark.rtproxy(speed=1, allow_unconsumed=["rate_limits.*"])
@pytest.mark.asyncio
async def test_leaves_after_done_allowed(rtproxy):
    await talk(rtproxy.url, until="response.done")

@pytest.mark.rtproxy
def test_never_connects(rtproxy):
    pass
""")
    result = inner.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=3)
    out = outcome_text(result)
    assert "rtproxy: cassette not fully consumed: cassettes/test_unc/test_one_turn_of_two.rtrec" in out
    assert ("client events never sent (2): #8 conversation.item.create at 50.0 ms, "
            "#10 response.create at 60.0 ms") in out
    assert ("server events never delivered (3): #9 conversation.item.added at 52.0 ms, "
            "#11 response.created at 65.0 ms, #12 response.done at 70.0 ms") in out
    assert "server events never delivered (1): #7 rate_limits.updated at 1036.0 ms" in out
    assert "allow_unconsumed=['rate_limits.updated']" in out
    # a test that never connects fails too (is the app pointed at the real API?)
    assert "the test never connected to the replay of cassettes/test_unc/test_never_connects.rtrec" in out


def test_missing_cassette_in_mode_none_fails_and_creates_nothing(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_missing="""
import pytest

@pytest.mark.rtproxy
def test_greets(rtproxy):
    raise AssertionError("never runs")
""")
    result = inner.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    out = outcome_text(result)
    assert "rtproxy: no cassette for test_missing.py::test_greets:" in out
    assert str(Path("cassettes") / "test_missing" / "test_greets.rtrec") in out
    assert "pytest --rtproxy-record-mode once 'test_missing.py::test_greets'" in out
    assert "never runs" not in out
    assert not (inner.path / "cassettes").exists()


def test_cassette_names_follow_module_test_class_and_parametrize_id(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_names="""
import pytest

@pytest.mark.rtproxy
@pytest.mark.parametrize("x", ["a/b", "c d", 'e:f*?"'])
def test_p(rtproxy, x):
    pass

class TestVoice:
    @pytest.mark.rtproxy
    def test_m(self, rtproxy):
        pass
""")
    out = outcome_text(inner.runpytest("-p", "no:cacheprovider"))
    folder = Path("cassettes") / "test_names"
    for name in ("test_p[a_b].rtrec", "test_p[c_d].rtrec", "test_p[e_f___].rtrec", "TestVoice.test_m.rtrec"):
        assert str(folder / name) + " does not exist" in out, name


def test_placeholder_key_only_while_the_test_runs(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cassette(inner, "test_key", "test_a_uses_the_fixture")
    inner.makepyfile(test_key=f"""
import os, pytest
from rtapp import talk_sync

@pytest.mark.rtproxy
def test_a_uses_the_fixture(rtproxy):
    assert os.environ["OPENAI_API_KEY"] == {PLACEHOLDER_KEY!r}
    talk_sync(rtproxy.url)

def test_b_after_it():
    assert "OPENAI_API_KEY" not in os.environ
""")
    inner.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    cassette(inner, "test_key2", "test_a_real_key_is_left_alone")
    inner.makepyfile(test_key2=f"""
import os
from rtapp import talk_sync

def test_a_real_key_is_left_alone(rtproxy):
    assert os.environ["OPENAI_API_KEY"] == {KEY!r}
    talk_sync(rtproxy.url)
""")
    inner.runpytest("-p", "no:cacheprovider", "test_key2.py").assert_outcomes(passed=1)


# --------------------------------------------------------------- marker arguments
def test_marker_cassette_name_positional_and_keyword(inner: pytest.Pytester) -> None:
    cassette(inner, "test_named", "shared")
    other = inner.path / "elsewhere" / "other.rtrec"
    other.parent.mkdir()
    make_recording(other, TURN)
    inner.makepyfile(test_named=f"""
import pytest
from rtapp import talk_sync

@pytest.mark.rtproxy("shared.rtrec")
def test_positional(rtproxy):
    assert rtproxy.cassette.name == "shared.rtrec"
    talk_sync(rtproxy.url)

@pytest.mark.rtproxy(cassette={str(other)!r})
def test_keyword_absolute(rtproxy):
    assert str(rtproxy.cassette) == {str(other)!r}
    talk_sync(rtproxy.url)

pytestmark = pytest.mark.rtproxy(strict=True)   # module-level marks merge; the closest wins
""")
    inner.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_marker_pace_speed_and_strict(inner: pytest.Pytester) -> None:
    slow = shift(TURN, "response.created", 1000)  # the answer takes a second after response.created
    for name in ("test_clock", "test_speed_1", "test_speed_default_max", "test_lenient"):
        cassette(inner, "test_pace", name, slow)
    inner.makepyfile(test_pace="""
import json, time, asyncio, pytest, websockets
from rtapp import talk

@pytest.mark.rtproxy(pace="clock", speed="max")
@pytest.mark.asyncio
async def test_clock(rtproxy):
    # the recorded offsets, not the client, drive a clock replay: everything arrives unasked
    async with websockets.connect(rtproxy.url) as ws:
        types = [json.loads(await asyncio.wait_for(ws.recv(), 3))["type"] for _ in range(6)]
        await ws.send(json.dumps({"type": "session.update",
                                  "session": {"type": "realtime", "instructions": "Be brief."}}))
        await ws.send(json.dumps({"type": "response.create"}))
    assert types[-1] == "rate_limits.updated"

@pytest.mark.rtproxy(speed=1)
@pytest.mark.asyncio
async def test_speed_1(rtproxy):
    t = time.monotonic()
    await talk(rtproxy.url)
    assert time.monotonic() - t >= 0.9

@pytest.mark.rtproxy
@pytest.mark.asyncio
async def test_speed_default_max(rtproxy):
    t = time.monotonic()
    await talk(rtproxy.url)
    assert time.monotonic() - t < 0.8

@pytest.mark.rtproxy(strict=False)
@pytest.mark.asyncio
async def test_lenient(rtproxy):
    await talk(rtproxy.url, instructions="You are a pirate.")   # not closed: the replay goes on
    (s,) = rtproxy.sessions
    assert len(s.divergences) == 1 and "session.instructions" in s.divergences[0]
    assert s.divergences[0].startswith("divergence: client message #0 at")
""")
    inner.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=4)


def test_marker_faults_unknown_arguments_and_bad_values(inner: pytest.Pytester) -> None:
    from rtproxy.replay.server import ReplayConfig

    faults_supported = "faults" in {f.name for f in dataclasses.fields(ReplayConfig)}
    for name in ("test_faults", "test_unknown", "test_bad_pace"):
        cassette(inner, "test_args", name)
    inner.makepyfile(test_args="""
import pytest

@pytest.mark.rtproxy(faults=["drop:response.done"])
def test_faults(rtproxy):
    pass

@pytest.mark.rtproxy(stirct=True)
def test_unknown(rtproxy):
    pass

@pytest.mark.rtproxy(pace="server")
def test_bad_pace(rtproxy):
    pass
""")
    result = inner.runpytest("-p", "no:cacheprovider")
    out = outcome_text(result)
    assert "unknown argument stirct; it takes cassette, pace, speed, strict, allow_unconsumed, faults" in out
    assert "pace 'server': expected 'client' or 'clock'" in out
    if not faults_supported:
        assert "faults=...: this rtproxy's replay does not inject faults" in out
    else:  # a SPEC that does not parse fails the test at set-up, saying why
        assert "faults: 'drop:response.done': unknown fault 'drop:response.done': expected one of close" in out
    result.assert_outcomes(errors=3)


def test_marker_faults_are_injected_and_the_live_run_keeps_them_as_sent(inner: pytest.Pytester) -> None:
    for name in ("test_error", "test_close", "test_not_in_cassette"):
        cassette(inner, "test_faults", name)
    inner.makepyfile(test_faults="""
import asyncio, json
import pytest, websockets
from rtproxy.io.format import open_recording

async def dialogue(url):
    got, code = [], None
    async with websockets.connect(url + "?model=gpt-realtime") as ws:
        got.append(json.loads(await ws.recv()))
        await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief."}}))
        got.append(json.loads(await ws.recv()))
        await ws.send(json.dumps({"type": "response.create", "event_id": "evt_app_1"}))
        try:
            while got[-1]["type"] != "rate_limits.updated":
                got.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        except websockets.ConnectionClosed as exc:
            code = exc.rcvd.code
    return got, code

def live_run(session):
    with open_recording(session.live) as r:
        msgs = [(m.from_client, json.loads(m.content)) for m in r.messages()]
        return msgs, r.recording.close

@pytest.mark.rtproxy(faults="error conversation_already_has_active_response after response.create#1")
@pytest.mark.asyncio
async def test_error(rtproxy):
    got, code = await dialogue(rtproxy.url)
    err = got[2]
    assert err["type"] == "error" and err["error"]["event_id"] == "evt_app_1" and code is None
    (s,) = rtproxy.sessions
    assert [f.spec for f in s.faults] == ["error conversation_already_has_active_response after response.create#1"]
    assert s.faults[0].t_ms > 0 and not s.divergences
    msgs, _ = live_run(s)
    sent = [e for side, e in msgs if not side]
    assert sent[2] == err  # the live run holds it as the app got it

@pytest.mark.rtproxy(faults=["close 1011:upstream gone after response.output_text.delta#1"])
@pytest.mark.asyncio
async def test_close(rtproxy):
    got, code = await dialogue(rtproxy.url)
    assert code == 1011 and got[-1]["type"] == "response.output_text.delta"
    (s,) = rtproxy.sessions   # the cassette was not played to its end: the fault ended it, no failure
    msgs, close = live_run(s)
    assert close["code"] == 1011 and close["reason"] == "upstream gone" and close["closed_by"] == "server"
    assert [e["type"] for side, e in msgs if not side][-1] == "response.output_text.delta"
    assert isinstance(rtproxy.check(), list)  # rtproxy check reads the live run, close 1011 and all

@pytest.mark.rtproxy(faults=["drop response.output_audio.delta#1"])
def test_not_in_cassette(rtproxy):
    pass
""")
    result = inner.runpytest("-p", "no:cacheprovider")
    out = outcome_text(result)
    assert (
        "faults: 'drop response.output_audio.delta#1': the recording has no event 'response.output_audio.delta'" in out
    ), out
    result.assert_outcomes(passed=2, errors=1)


def test_marker_check_error_fails_on_error_findings_of_the_live_run(inner: pytest.Pytester) -> None:
    pytest.importorskip("rtproxy.check", reason="rtproxy check is not in this tree yet")
    racing = [
        (0, "server", {"type": "session.created", "event_id": "ev_1", "session": {"id": "sess_1"}}),
        (10, "client", {"type": "response.create", "event_id": "c1"}),
        (15, "server", {"type": "response.created", "event_id": "ev_2", "response": {"id": "resp_1", "status": "in_progress"}}),
        (20, "client", {"type": "response.create", "event_id": "c2"}),
        (22, "server", {"type": "error", "event_id": "ev_3", "error": {
            "type": "invalid_request_error", "code": "conversation_already_has_active_response",
            "message": "Conversation already has an active response in progress.", "event_id": "c2"}}),
        (40, "server", {"type": "response.done", "event_id": "ev_4", "response": {"id": "resp_1", "status": "completed"}}),
    ]
    cassette(inner, "test_chk", "test_checked", racing)
    cassette(inner, "test_chk", "test_unchecked", racing)
    inner.makepyfile(test_chk="""
import json, pytest, websockets.sync.client

def race(url):
    with websockets.sync.client.connect(url) as ws:
        ws.recv()
        ws.send(json.dumps({"type": "response.create", "event_id": "c1"}))
        ws.recv()
        ws.send(json.dumps({"type": "response.create", "event_id": "c2"}))
        while json.loads(ws.recv(timeout=5))["type"] != "response.done":
            pass

@pytest.mark.rtproxy(check="error")
def test_checked(rtproxy):
    race(rtproxy.url)

@pytest.mark.rtproxy
def test_unchecked(rtproxy):
    race(rtproxy.url)
    findings = rtproxy.check(select=["RT001"])
    assert [f.code for f in findings] == ["RT001"]
    d = findings[0].to_dict()
    assert {"code", "severity", "title", "message", "t", "event_index", "event_type"} <= set(d)
    assert rtproxy.check(ignore=["RT001"]) == [f for f in rtproxy.check() if f.code != "RT001"]
    assert [f.code for f in rtproxy.sessions[0].findings if f.code == "RT001"] == ["RT001"]
""")
    result = inner.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    out = outcome_text(result)
    assert "rtproxy: check found 1 finding at error level or above in this run:" in out
    assert "RT001 error" in out


# ------------------------------------------------------------------ record modes
@pytest.fixture(scope="module")
def upstream() -> Iterator[ServerThread]:
    with ServerThread(Scenario()) as srv:
        yield srv


RECORDED_TEST = """
import pytest
from rtapp import talk

@pytest.mark.rtproxy
@pytest.mark.asyncio
async def test_greets(rtproxy):
    types = await talk(rtproxy.url)
    assert types[0] == "session.created" and types[-1] == "rate_limits.updated"
    assert rtproxy.mode == {mode!r}
    (session,) = rtproxy.sessions  # while recording too (docs/PYTEST.md's example)
    assert session.divergences == [] and session.live.exists()
"""


def test_record_modes_none_once_all(inner: pytest.Pytester, upstream: ServerThread) -> None:
    path = inner.path / "cassettes" / "test_voice" / "test_greets.rtrec"
    up = ["--rtproxy-upstream", upstream.url, "-p", "no:cacheprovider"]
    connections = len(upstream.logs)

    inner.makepyfile(test_voice=RECORDED_TEST.format(mode="replay"))
    result = inner.runpytest(*up)  # none (default): no cassette, no recording
    result.assert_outcomes(errors=1)
    assert "--rtproxy-record-mode once" in outcome_text(result) and not path.exists()
    assert len(upstream.logs) == connections

    inner.makepyfile(test_voice=RECORDED_TEST.format(mode="record"))
    inner.runpytest("--rtproxy-record-mode", "once", *up).assert_outcomes(passed=1)  # records
    assert path.exists() and len(upstream.logs) == connections + 1
    # private like every recording, whatever the umask: the cassette 0600, its new folders 0700
    assert path.stat().st_mode & 0o777 == 0o600
    assert {p.stat().st_mode & 0o777 for p in (path.parent, path.parent.parent)} == {0o700}
    data = path.read_bytes()
    assert KEY.encode() not in data  # the recorder removed the app's key
    first = path.read_bytes()
    from rtproxy import open as open_rec

    rec = open_rec(path)
    assert rec.handshake is not None and rec.handshake.status == 101
    assert [e.type for e in rec.events()][-1] == "rate_limits.updated"

    inner.makepyfile(test_voice=RECORDED_TEST.format(mode="replay"))
    inner.runpytest("--rtproxy-record-mode", "once", *up).assert_outcomes(passed=1)  # present: replayed
    inner.runpytest(*up).assert_outcomes(passed=1)  # none: replayed
    assert len(upstream.logs) == connections + 1 and path.read_bytes() == first

    inner.makepyfile(test_voice=RECORDED_TEST.format(mode="record"))
    inner.runpytest("--rtproxy-record-mode", "all", *up).assert_outcomes(passed=1)  # always re-records
    assert len(upstream.logs) == connections + 2
    assert path.read_bytes() != first  # the new run: other ids from the server


def test_record_ini_defaults_marker_upstream_and_a_failing_test_writes_nothing(
    inner: pytest.Pytester, upstream: ServerThread
) -> None:
    inner.makeini(INI.format(extra="rtproxy_record_mode = once\nrtproxy_cassette_dir = recs\n"
                               "rtproxy_upstream = http://127.0.0.1:9\n"))
    inner.makepyfile(test_ini=f"""
import pytest
from rtapp import talk

@pytest.mark.rtproxy(upstream={upstream.url!r})
@pytest.mark.asyncio
async def test_recorded(rtproxy):
    assert rtproxy.mode == "record"
    await talk(rtproxy.url)

@pytest.mark.rtproxy(upstream={upstream.url!r})
@pytest.mark.asyncio
async def test_fails_while_recording(rtproxy):
    await talk(rtproxy.url)
    assert False, "the app broke"

@pytest.mark.rtproxy(upstream={upstream.url!r})
@pytest.mark.asyncio
async def test_two_sessions(rtproxy):
    await talk(rtproxy.url)
    await talk(rtproxy.url)
""")
    result = inner.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1, errors=1)
    assert "the test opened 2 WebSocket sessions; a cassette holds one" in outcome_text(result)
    assert not (inner.path / "recs" / "test_ini" / "test_two_sessions.rtrec").exists()
    assert (inner.path / "recs" / "test_ini" / "test_recorded.rtrec").exists()
    assert not (inner.path / "recs" / "test_ini" / "test_fails_while_recording.rtrec").exists()
    assert "the test failed while recording; recs/test_ini/test_fails_while_recording.rtrec was not written" in (
        outcome_text(result)
    )


# ------------------------------------------------------------------ xdist
def test_xdist_four_workers_each_with_their_own_replays(inner: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    for i in range(8):
        cassette(inner, "test_par", f"test_turn[{i}]")
    inner.makepyfile(test_par="""
import pytest
from rtapp import talk

@pytest.mark.rtproxy
@pytest.mark.parametrize("i", range(8))
@pytest.mark.asyncio
async def test_turn(rtproxy, i):
    assert (await talk(rtproxy.url))[-1] == "rate_limits.updated"
    assert len(rtproxy.sessions) == 1
""")
    result = inner.runpytest_subprocess("-n", "4", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=8)
    assert "4 workers" in result.stdout.str() or "created: 4/4 workers" in result.stdout.str()


# ------------------------------------------------------------------ outside pytest
def test_replay_server_context_manager(tmp_path: Path) -> None:
    path = make_recording(tmp_path / "turn.rtrec", TURN)
    with ReplayServer(path, speed="max", strict=True) as srv:
        assert srv.url.startswith("ws://127.0.0.1:") and srv.url.endswith("/v1/realtime")
        with websockets.sync.client.connect(srv.url) as ws:
            assert json.loads(ws.recv())["type"] == "session.created"
            ws.send(json.dumps({"type": "input_audio_buffer.clear"}))  # session.update expected
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:
                    ws.recv(timeout=5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4900
        assert srv.wait_idle(5)
        (s,) = srv.sessions
        assert s.diverged and "recording expected session.update" in s.divergences[0]
        assert s.live is not None and s.live.exists()
        client, _ = s.unconsumed()
        assert [e.type for e in client] == ["session.update", "response.create"]


# --------------------------------------------------- real clients, committed cassettes
@pytest.mark.rtproxy
def test_committed_cassette_openai_sdk(rtproxy: Any) -> None:
    from openai import AsyncOpenAI

    async def main() -> list[str]:
        client = AsyncOpenAI(api_key=os.environ.get("OPENAI_API_KEY") or KEY,
                             websocket_base_url=rtproxy.websocket_base_url)
        pcm = speech_pcm()[: 48 * 400]
        types: list[str] = []
        async with client.realtime.connect(model="gpt-realtime") as conn:
            await conn.session.update(session={"type": "realtime", "instructions": "Be brief."})
            for i in range(0, len(pcm), 4800):
                import base64

                await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + 4800]).decode())
            await conn.input_audio_buffer.commit()
            await conn.response.create()
            async for ev in conn:  # the SDK parses every event
                types.append(ev.type)
                if ev.type == "rate_limits.updated":
                    break
        return types

    types = asyncio.run(asyncio.wait_for(main(), 30))
    assert types[0] == "session.created" and "response.output_audio.delta" in types
    assert types[-2:] == ["response.done", "rate_limits.updated"]
    if rtproxy.mode == "replay":
        (s,) = rtproxy.sessions
        assert s.divergences == []


@pytest.mark.rtproxy
def test_committed_cassette_openai_agents(rtproxy: Any) -> None:
    from agents.realtime import RealtimeAgent, RealtimeRunner

    async def main() -> list[str]:
        agent = RealtimeAgent(name="Assistant", instructions="You are a booking assistant.")
        session = await RealtimeRunner(agent).run(model_config={
            "url": rtproxy.url + "?model=gpt-realtime", "api_key": os.environ.get("OPENAI_API_KEY") or KEY,
            "initial_model_settings": {"model_name": "gpt-realtime"},
        })
        kinds: list[str] = []
        async with session:
            await session.send_message("Book a table for two.")
            async for ev in session:
                kinds.append(ev.type)
                if ev.type == "raw_model_event" and ev.data.type == "raw_server_event":
                    if ev.data.data.get("type") == "rate_limits.updated":
                        break
        return kinds

    kinds = asyncio.run(asyncio.wait_for(main(), 30))
    assert "audio" in kinds and "agent_start" in kinds
    if rtproxy.mode == "replay":
        (s,) = rtproxy.sessions
        assert s.divergences == []


def test_plugin_import_is_light() -> None:
    import subprocess
    import sys

    code = ("import sys, rtproxy.pytest_plugin; "
            "print(sorted(m for m in ('websockets', 'mitmproxy', 'openai', 'zstandard', 'msgpack', 'numpy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr



def test_sessions_count_the_ids_the_replay_substituted(inner: pytest.Pytester) -> None:
    item = {"id": "item_recorded01", "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Hi."}]}
    cassette(inner, "test_subs", "test_own_ids", [
        (0, "server", {"type": "session.created", "event_id": "ev_1", "session": {"id": "sess_1"}}),
        (10, "client", {"type": "conversation.item.create", "item": item}),
        (12, "server", {"type": "conversation.item.added", "event_id": "ev_2", "item": item}),
    ])
    inner.makepyfile(test_subs="""
import json, pytest, websockets.sync.client

@pytest.mark.rtproxy
def test_own_ids(rtproxy):
    with websockets.sync.client.connect(rtproxy.url) as ws:
        ws.recv()
        ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "id": "item_live000001", "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Hi."}]}}))
        added = json.loads(ws.recv(timeout=5))
    (s,) = rtproxy.sessions
    assert s.divergences == []
    if s.substitutions:   # a replay that puts the app's own ids into what it sends
        assert added["item"]["id"] == "item_live000001"
    print("SUBSTITUTIONS", s.substitutions)
""")
    result = inner.runpytest("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=1)
    from rtproxy.replay.server import SessionReport

    if "substitutions" in {f.name for f in dataclasses.fields(SessionReport)}:
        assert "SUBSTITUTIONS 1" in result.stdout.str()
