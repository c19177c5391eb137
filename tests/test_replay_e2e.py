"""`rtproxy replay` end to end: record through `rtproxy record`, replay as a real process,
talk to it with the official openai SDK, openai-agents and plain websockets."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets
from agents.realtime import RealtimeAgent, RealtimeRunner
from openai import AsyncOpenAI

from rtproxy.io.format import open_recording
from tests.conftest import ROOT, RTPROXY, Recorder, free_port, wait_port
from tests.realtime_server import Scenario, ServerThread, speech_pcm

pytestmark = pytest.mark.e2e

KEY = "sk-test-not-a-real-key-000000000000"
SESSION = {"type": "realtime", "instructions": "You are a booking assistant."}


async def conversation(
    ws_base: str,
    *,
    chunk_ms: int = 100,
    audio_ms: int = 600,
    wait_before_create: float = 0.0,
    session: dict | None = None,
) -> tuple[list[bytes], dict[str, float]]:
    """session.update, audio in chunk_ms appends, commit, response.create; read until
    response.done and the message after it. Returns the raw server messages and when
    (monotonic s) response.create was sent and response.created arrived."""
    client = AsyncOpenAI(api_key=KEY, websocket_base_url=ws_base)
    pcm = speech_pcm()[: 48 * audio_ms]
    got: list[bytes] = []
    marks: dict[str, float] = {}
    async with client.realtime.connect(model="gpt-realtime") as conn:
        got.append(await conn.recv_bytes())  # session.created
        await conn.session.update(session=session or SESSION)
        got.append(await conn.recv_bytes())  # session.updated
        step = 48 * chunk_ms
        for i in range(0, len(pcm), step):
            await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + step]).decode())
        await conn.input_audio_buffer.commit()
        if wait_before_create:
            await asyncio.sleep(wait_before_create)
        marks["create_sent"] = time.monotonic()
        await conn.response.create()
        done = False
        while True:
            raw = await conn.recv_bytes()
            got.append(raw)
            ev = conn.parse_event(raw)  # the SDK parses every event
            if ev.type == "response.created":
                marks["created_received"] = time.monotonic()
            if done:
                break
            done = ev.type == "response.done"
    return got, marks


def record(server: ServerThread, out_dir: Path, **kw) -> Path:
    rec = Recorder(server.url, out_dir)
    try:
        asyncio.run(conversation(rec.ws_base, **kw))
        (path,) = rec.wait_files(1)
    finally:
        rec.stop()
    return path


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with ServerThread(Scenario()) as srv:
        return record(srv, tmp_path_factory.mktemp("rec") / "recordings")


def server_messages(path: Path) -> list[bytes]:
    with open_recording(path) as r:
        return [m.content for m in r.messages() if not m.from_client]


def recorded_times(path: Path) -> dict[str, int]:
    """Recorded time (ns) of the first client response.create and server response.created."""
    out: dict[str, int] = {}
    with open_recording(path) as r:
        for m in r.messages():
            typ = json.loads(m.content).get("type")
            out.setdefault(typ, m.t_ns)
    return out


class Replay:
    """`rtproxy replay FILE` as a subprocess."""

    def __init__(self, path: Path, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [*RTPROXY, "replay", str(path), "--listen-port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        wait_port(self.port, proc=self.proc)

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1"

    def finish(self, timeout: float = 20) -> tuple[int, str, str]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            out, err = self.proc.communicate()
        return self.proc.returncode, out, err

    def stop(self) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.finish()


def test_sdk_gets_every_server_event_byte_exact_in_order(recording: Path) -> None:
    expected = server_messages(recording)
    rp = Replay(recording, "--once")
    got, _ = asyncio.run(conversation(rp.ws_base))
    code, out, err = rp.finish()
    assert got == expected[: len(got)] and len(got) == len(expected)
    assert code == 0, out + err
    assert f"sent {len(expected)} server messages; 0 divergences" in out
    assert "websocket_base_url=ws://127.0.0.1:" in out


def test_client_that_waits_before_response_create_gets_the_response_after_it(recording: Path) -> None:
    rec = recorded_times(recording)
    gap = (rec["response.created"] - rec["response.create"]) / 1e9
    rp = Replay(recording, "--once")
    got, marks = asyncio.run(conversation(rp.ws_base, wait_before_create=1.0))
    code, out, _ = rp.finish()
    waited = marks["created_received"] - marks["create_sent"]
    assert waited >= gap * 0.9, (waited, gap)
    assert waited < gap + 0.5  # not sent on the recorded clock (which would be ~1 s early)
    assert code == 0 and "0 divergences" in out
    assert got == server_messages(recording)


def test_different_audio_chunk_sizes_still_line_up(recording: Path) -> None:
    rp = Replay(recording, "--once")
    got, _ = asyncio.run(conversation(rp.ws_base, chunk_ms=40))  # recorded with 100 ms appends
    code, out, _ = rp.finish()
    assert got == server_messages(recording)
    assert code == 0 and "0 divergences" in out, out


def test_clock_pace_with_max_speed_sends_everything_without_waiting(recording: Path) -> None:
    expected = server_messages(recording)

    async def raw_client(url: str) -> list[bytes]:
        out = []
        async with websockets.connect(url) as ws:
            while len(out) < len(expected):
                out.append(await ws.recv(decode=False))
        return out

    rp = Replay(recording, "--once", "--pace", "clock", "--speed", "max")
    got = asyncio.run(raw_client(f"ws://127.0.0.1:{rp.port}/anything?model=x"))  # sends nothing at all
    code, out, _ = rp.finish()
    assert got == expected
    assert code == 0 and f"sent {len(expected)} server messages" in out


def test_divergence_lenient_goes_on_and_exits_1(recording: Path) -> None:
    rp = Replay(recording, "--once")
    other = {"type": "realtime", "instructions": "You are a pirate."}
    got, _ = asyncio.run(conversation(rp.ws_base, session=other))
    code, out, _ = rp.finish()
    assert got == server_messages(recording)  # lenient: the replay went on
    assert code == 1
    line = next(l for l in out.splitlines() if "divergence:" in l)
    assert "field session.update session.instructions" in line
    assert '"You are a booking assistant."' in line and '"You are a pirate."' in line
    assert "client message #0 at" in line and "recorded message #1 at" in line
    assert "; 1 divergence;" in out


def test_divergence_strict_closes_with_4900_and_the_reason(recording: Path) -> None:
    rp = Replay(recording, "--once", "--strict")

    async def client() -> websockets.ConnectionClosed:
        async with websockets.connect(rp.ws_base + "/realtime?model=gpt-realtime") as ws:
            await ws.recv()  # session.created
            await ws.send(json.dumps({"type": "response.create"}))  # recording expects session.update
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:
                    await ws.recv()
            return info.value

    closed = asyncio.run(client())
    code, out, _ = rp.finish()
    assert closed.rcvd is not None and closed.rcvd.code == 4900
    assert "recording expected session.update" in closed.rcvd.reason
    assert "got response.create" in closed.rcvd.reason
    assert code == 1 and "closed with 4900" in out


def test_fifty_clients_at_once_each_get_their_own_replay(recording: Path) -> None:
    expected = server_messages(recording)
    rp = Replay(recording)

    async def all_clients() -> list[list[bytes]]:
        return await asyncio.gather(*(conversation(rp.ws_base, chunk_ms=200) for _ in range(50)))

    try:
        results = asyncio.run(all_clients())
    finally:
        code, out, _ = rp.stop()
    assert all(got == expected for got, _ in results)
    reports = [l for l in out.splitlines() if l.startswith("replay session #")]
    assert len(reports) == 50 and all("0 divergences" in l for l in reports)
    assert code == 0


def test_refused_upgrade_recording_is_replayed_as_that_refusal(tmp_path: Path) -> None:
    with ServerThread(Scenario(refuse_status=403)) as srv:
        rec = Recorder(srv.url, tmp_path / "r")
        try:
            with pytest.raises(websockets.exceptions.InvalidStatus):
                asyncio.run(conversation(rec.ws_base))
            (path,) = rec.wait_files(1)
        finally:
            rec.stop()
    with open_recording(path) as r:
        recorded_body = r.recording.handshake["response_body"]
    rp = Replay(path, "--once")

    async def client() -> websockets.InvalidStatus:
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(rp.ws_base + "/realtime?model=gpt-realtime")
        return info.value

    refused = asyncio.run(client())
    code, out, _ = rp.finish()
    assert refused.response.status_code == 403
    assert refused.response.body == recorded_body and b"invalid_api_key" in recorded_body
    assert "refused the upgrade with HTTP 403, as recorded" in out and code == 0


def test_client_replay_against_a_different_server_records_the_new_run(recording: Path, tmp_path: Path) -> None:
    scenario = Scenario(seed=2, transcript="Good morning! Where would you like to go?")
    out_dir = tmp_path / "runs" / "second"
    with ServerThread(scenario) as srv:
        proc = subprocess.run(
            [*RTPROXY, "replay", str(recording), "--to", f"ws://127.0.0.1:{srv.port}/v1", "--out-dir", str(out_dir)],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
            env={**__import__("os").environ, "OPENAI_API_KEY": "sk-replay-secret-key-0123456789abcdef"},
            preexec_fn=lambda: os.umask(0o022),  # 0700 folders whatever the umask
        )
        log = srv.logs[0]
    assert proc.returncode == 0, proc.stderr
    assert [oct(p.stat().st_mode & 0o777) for p in (tmp_path / "runs", out_dir)] == ["0o700", "0o700"]
    (new,) = out_dir.glob("*.rtrec")
    assert f"recorded to {new}" in proc.stdout
    assert "timed out" not in proc.stdout  # each message waited for its server event, which came
    # the second server got the recorded client messages, byte-exact, with our key
    with open_recording(recording) as r:
        recorded_client = [m.content for m in r.messages() if m.from_client]
    assert [x.encode() if isinstance(x, str) else x for x in log.received] == recorded_client
    assert log.headers.get("Authorization") == "Bearer sk-replay-secret-key-0123456789abcdef"
    assert "model=gpt-realtime" in log.path
    # the new file holds that run: its server messages, its transcript, no key
    with open_recording(new) as r:
        msgs = list(r.messages())
        rec = r.recording
    server = [m.content for m in msgs if not m.from_client]
    assert server == [x.encode() if isinstance(x, str) else x for x in log.sent]
    assert any(b"Good morning! Where would you like to go?" in c for c in server)
    assert [m.content for m in msgs if m.from_client] == recorded_client
    assert rec.handshake["status"] == 101 and rec.close["code"] == 1000 and rec.close["closed_by"] == "client"
    assert b"sk-replay-secret" not in new.read_bytes()
    assert rec.header["replay_of"] == str(recording)


async def agent_turn(url: str) -> tuple[list[dict], list[str]]:
    """One openai-agents RealtimeRunner turn: a text message, read until rate_limits.updated."""
    agent = RealtimeAgent(name="Assistant", instructions="You are a booking assistant.")
    runner = RealtimeRunner(agent)
    session = await runner.run(
        model_config={"url": url, "api_key": KEY, "initial_model_settings": {"model_name": "gpt-realtime"}}
    )
    raw: list[dict] = []
    types: list[str] = []
    async with session:
        await session.send_message("Book a table for two.")
        async for ev in session:
            types.append(ev.type)
            if ev.type == "raw_model_event" and ev.data.type == "raw_server_event":
                raw.append(ev.data.data)
                if ev.data.data.get("type") == "rate_limits.updated":
                    break
    return raw, types


def test_openai_agents_realtime_runner_replays(tmp_path: Path) -> None:
    with ServerThread(Scenario()) as srv:
        rec = Recorder(srv.url, tmp_path / "r")
        try:
            asyncio.run(asyncio.wait_for(agent_turn(rec.ws_base + "/realtime?model=gpt-realtime"), 30))
            (path,) = rec.wait_files(1)
        finally:
            rec.stop()
    recorded = [json.loads(c) for c in server_messages(path)]
    rp = Replay(path, "--once")
    raw, types = asyncio.run(asyncio.wait_for(agent_turn(rp.ws_base + "/realtime?model=gpt-realtime"), 30))
    code, out, _ = rp.finish()
    assert code == 0 and "0 divergences" in out, out
    # every event the agents library accepted arrived in the recorded order; the only ones it
    # drops are session.updated echoes of the test server it cannot validate (same when recording)
    assert raw == [e for e in recorded if e in raw]
    assert {e["type"] for e in recorded if e not in raw} <= {"session.updated"}
    assert [e["type"] for e in raw][-2:] == ["response.done", "rate_limits.updated"]
    assert "audio" in types and "agent_start" in types  # the agent played the replayed audio


def test_recorded_subprotocol_is_echoed_and_any_path_accepted(tmp_path: Path) -> None:
    async def browser_like(url: str) -> tuple[str | None, bytes]:
        async with websockets.connect(url, subprotocols=["realtime", "openai-insecure-api-key.sk-abc"]) as ws:
            return ws.subprotocol, await ws.recv(decode=False)

    with ServerThread(Scenario()) as srv:
        rec = Recorder(srv.url, tmp_path / "r")
        try:
            proto, _ = asyncio.run(browser_like(rec.ws_base + "/realtime?model=gpt-realtime"))
            (path,) = rec.wait_files(1)
        finally:
            rec.stop()
    assert proto == "realtime"
    rp = Replay(path, "--once")
    proto, first = asyncio.run(browser_like(f"ws://127.0.0.1:{rp.port}/some/other/path?x=1"))
    rp.finish()
    assert proto == "realtime" and first == server_messages(path)[0]


def test_client_replay_of_a_refused_upgrade_and_clock_pace(recording: Path, tmp_path: Path) -> None:
    with ServerThread(Scenario(refuse_status=401)) as srv:
        proc = subprocess.run(
            [*RTPROXY, "replay", str(recording), "--to", srv.url, "--out-dir", str(tmp_path / "a")],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
        )
    assert proc.returncode == 0, proc.stderr
    assert "upgrade refused with HTTP 401" in proc.stdout
    (refused,) = (tmp_path / "a").glob("*.rtrec")
    with open_recording(refused) as r:
        assert list(r.messages()) == []
        assert r.recording.handshake["status"] == 401
        assert b"invalid_api_key" in r.recording.handshake["response_body"]
    with ServerThread(Scenario()) as srv:
        proc = subprocess.run(
            [*RTPROXY, "replay", str(recording), "--to", srv.url, "--out-dir", str(tmp_path / "b"),
             "--pace", "clock", "--speed", "max"],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
        )
        received = srv.logs[0].received
    assert proc.returncode == 0, proc.stderr
    with open_recording(recording) as r:
        assert [x.encode() if isinstance(x, str) else x for x in received] == [
            m.content for m in r.messages() if m.from_client
        ]


async def tool_turn(ws_base: str, output: str) -> list[bytes]:
    """The model calls a tool; the client answers with ``output`` and asks for a response."""
    client = AsyncOpenAI(api_key=KEY, websocket_base_url=ws_base)
    got: list[bytes] = []
    async with client.realtime.connect(model="gpt-realtime") as conn:
        got.append(await conn.recv_bytes())
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]}
        )
        await conn.response.create()
        call_id = None
        while call_id is None:
            raw = await conn.recv_bytes()
            got.append(raw)
            ev = conn.parse_event(raw)
            if ev.type == "response.function_call_arguments.done":
                call_id = ev.call_id
        while conn.parse_event(got[-1]).type != "rate_limits.updated":
            got.append(await conn.recv_bytes())
        await conn.conversation.item.create(item={"type": "function_call_output", "call_id": call_id, "output": output})
        await conn.response.create()
        while True:
            got.append(await conn.recv_bytes())
            if conn.parse_event(got[-1]).type == "rate_limits.updated":
                break
    return got


def test_a_different_function_output_is_reported_with_the_field(tmp_path: Path) -> None:
    with ServerThread(Scenario(tool_name="get_weather")) as srv:
        rec = Recorder(srv.url, tmp_path / "r")
        try:
            asyncio.run(tool_turn(rec.ws_base, '{"temp_c": 21}'))
            (path,) = rec.wait_files(1)
        finally:
            rec.stop()
    same = Replay(path, "--once")
    assert asyncio.run(tool_turn(same.ws_base, '{"temp_c": 21}')) == server_messages(path)
    code, out, _ = same.finish()
    assert code == 0 and "0 divergences" in out, out
    other = Replay(path, "--once")
    assert asyncio.run(tool_turn(other.ws_base, '{"temp_c": 35}')) == server_messages(path)
    code, out, _ = other.finish()
    assert code == 1
    (line,) = [l for l in out.splitlines() if "divergence:" in l]
    assert "field conversation.item.create item.output" in line
    assert '21}' in line and '35}' in line


async def forgetful_client(url: str, n_expected: int) -> tuple[list[bytes], float, websockets.ConnectionClosed | None]:
    """A plain websockets client that never sends its response.create. Returns the server
    messages it got, seconds from sending its commit to receiving response.created, and
    how the server closed (None if it read every expected message)."""
    pcm = speech_pcm()[: 48 * 600]
    got: list[bytes] = []
    t_commit = t_created = 0.0
    async with websockets.connect(url + "/realtime?model=gpt-realtime") as ws:
        got.append(await ws.recv(decode=False))  # session.created
        await ws.send(json.dumps({"type": "session.update", "session": SESSION}))
        for i in range(0, len(pcm), 4800):
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[i : i + 4800]).decode()}))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        t_commit = time.monotonic()
        try:
            while len(got) < n_expected:
                raw = await ws.recv(decode=False)
                got.append(raw)
                if json.loads(raw)["type"] == "response.created":
                    t_created = time.monotonic()
        except websockets.ConnectionClosed as closed:
            return got, t_created - t_commit, closed
    return got, t_created - t_commit, None


def test_wait_timeout_reports_a_missing_response_create_and_goes_on_or_closes_strict(recording: Path) -> None:
    expected = server_messages(recording)
    rp = Replay(recording, "--once", "--wait-timeout", "0.5")
    got, waited, closed = asyncio.run(forgetful_client(rp.ws_base, len(expected)))
    code, out, _ = rp.finish()
    assert closed is None and got == expected  # lenient: the response came anyway, byte-exact
    assert 0.45 <= waited < 5, waited  # held for the timeout, then released
    assert code == 1, out
    line = next(l for l in out.splitlines() if "divergence:" in l)
    assert "recording expected response.create (recorded message #" in line
    assert "nothing arrived within 0.5 s" in line
    assert "; 1 divergence;" in out

    rp = Replay(recording, "--once", "--wait-timeout", "0.5", "--strict")
    got, _, closed = asyncio.run(forgetful_client(rp.ws_base, len(expected)))
    code, out, _ = rp.finish()
    assert closed is not None and closed.rcvd is not None and closed.rcvd.code == 4900
    assert "response.create" in closed.rcvd.reason and "nothing arrived within 0.5 s" in closed.rcvd.reason
    assert not any(b'"response.created"' in m for m in got)
    assert code == 1 and "closed with 4900" in out


def test_text_and_binary_frames_keep_their_opcode_and_the_close_its_code(tmp_path: Path) -> None:
    """Server messages go out as the frame type they were recorded as; the recorded close ends it."""
    from rtproxy.io.format import RecordingWriter

    path = tmp_path / "frames.rtrec"
    sent = [
        (False, "text", b'{"type":"session.created","session":{"id":"sess_1"}}'),
        (False, "binary", b"\x00\x01\xffraw"),
        (False, "text", "caf\u00e9 \u2014 not JSON".encode()),
        (False, "text", b""),
        (False, "binary", b""),
    ]
    with RecordingWriter(path) as w:
        w.write_header(url="ws://h/v1/realtime?model=m", model="m", started=1.0)
        w.write_handshake(status=101, request_headers=[], response_headers=[], subprotocol=None)
        for i, (fc, kind, data) in enumerate(sent):
            w.write_message((i + 1) * 1_000_000, fc, kind == "text", data)
        w.write_close(t_ns=10_000_000, code=4001, reason="recorded reason", closed_by="server")

    async def client(url: str) -> tuple[list[str | bytes], int | None, str | None]:
        got: list[str | bytes] = []
        async with websockets.connect(url) as ws:
            try:
                while True:
                    got.append(await ws.recv())
            except websockets.ConnectionClosed as exc:
                rcvd = exc.rcvd
                return got, rcvd.code if rcvd else None, rcvd.reason if rcvd else None
        return got, None, None

    rp = Replay(path, "--once", "--pace", "clock", "--speed", "max")
    got, code, reason = asyncio.run(client(rp.ws_base + "/realtime?model=m"))
    rp.finish()
    assert [type(g) for g in got] == [str, bytes, str, str, bytes]
    assert [g.encode() if isinstance(g, str) else g for g in got] == [d for _, _, d in sent]
    assert (code, reason) == (4001, "recorded reason")


# ------------------------------------------- ids the live side chose (substitutions)
TOOL_SCENARIO = dict(strict_ids=True, tool_name="get_weather", tool_followup=True, echo_metadata=True, audio_ms=400)


async def tool_and_truncate_turn(url: str) -> list[dict]:
    """A text turn answered with a tool call, its output, the spoken answer, a barge-in
    truncate, a retrieve and a delete: every id the server assigned is used again."""
    got: list[dict] = []
    async with websockets.connect(url, compression=None, max_size=None) as ws:
        async def until(typ: str) -> dict:
            while True:
                ev = json.loads(await asyncio.wait_for(ws.recv(), 10))
                got.append(ev)
                if ev["type"] in (typ, "error"):
                    return ev

        async def send(obj: dict) -> None:
            await ws.send(json.dumps(obj))

        await until("session.created")
        await send({"type": "session.update", "session": SESSION})
        await until("session.updated")
        await send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]}})
        user_item = (await until("conversation.item.added"))["item"]["id"]
        await send({"type": "response.create", "response": {"metadata": {"turn": "1"}}})
        call = (await until("response.done"))["response"]["output"][0]
        await send({"type": "conversation.item.create", "previous_item_id": call["id"], "item": {
            "type": "function_call_output", "call_id": call["call_id"], "output": '{"temp_c": 21}'}})
        await until("conversation.item.added")
        await send({"type": "response.create"})
        answer = (await until("response.done"))["response"]["output"][0]["id"]
        await send({"type": "conversation.item.truncate", "item_id": answer, "content_index": 0, "audio_end_ms": 200})
        await until("conversation.item.truncated")
        await send({"type": "conversation.item.retrieve", "item_id": user_item})
        await until("conversation.item.retrieved")
        await send({"type": "conversation.item.delete", "item_id": call["id"]})
        await until("conversation.item.deleted")
    return got


def test_client_replay_uses_the_live_servers_ids_against_a_server_that_checks_them(tmp_path: Path) -> None:
    with ServerThread(Scenario(seed=1, **TOOL_SCENARIO)) as srv:
        rec = Recorder(srv.url, tmp_path / "rec")
        try:
            first = asyncio.run(tool_and_truncate_turn(rec.ws_base + "/realtime?model=gpt-realtime"))
            (original,) = rec.wait_files(1)
        finally:
            rec.stop()
    assert not [e for e in first if e["type"] == "error"]

    def rerun(*extra: str) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
        out_dir = tmp_path / ("exact" if extra else "adapted")
        with ServerThread(Scenario(seed=7, **TOOL_SCENARIO)) as live:  # other ids, and it checks them
            proc = subprocess.run(
                [*RTPROXY, "replay", str(original), "--to", f"ws://127.0.0.1:{live.port}/v1",
                 "--out-dir", str(out_dir), "--timeout", "5", *extra],
                capture_output=True, text=True, cwd=ROOT, timeout=60,
            )
        (new,) = out_dir.glob("*.rtrec")
        with open_recording(new) as r:
            events = [json.loads(m.content) for m in r.messages() if not m.from_client]
        return proc, events

    proc, events = rerun()
    assert proc.returncode == 0, proc.stderr
    errors = [e for e in events if e["type"] == "error"]
    assert errors == [], errors
    types = [e["type"] for e in events]
    for t in ("conversation.item.truncated", "conversation.item.retrieved", "conversation.item.deleted"):
        assert t in types
    # call_id and previous_item_id of the output, item_id of truncate, retrieve and delete
    assert "5 server ids substituted in 4 messages" in proc.stdout, proc.stdout
    # the byte-exact tape names ids this server never gave: it says so
    proc, events = rerun("--exact")
    codes = sorted(e["error"]["code"] for e in events if e["type"] == "error")
    assert codes == ["invalid_value", "item_not_found", "item_not_found", "item_truncate_invalid_item_id"], codes
    assert "substituted" not in proc.stdout


async def own_ids_client(ws_base: str, *, swap: bool = False, skip_first_update: bool = False) -> list[dict]:
    """The openai SDK as LiveKit drives it: its own item ids, event ids and response metadata."""
    client = AsyncOpenAI(api_key=KEY, websocket_base_url=ws_base)
    got: list[dict] = []
    async with client.realtime.connect(model="gpt-realtime") as conn:
        async def until(typ: str) -> dict:
            while True:
                ev = json.loads(await asyncio.wait_for(conn.recv_bytes(), 10))
                got.append(ev)
                if ev["type"] in (typ, "error"):
                    return ev

        await until("session.created")
        updates = [{"type": "realtime", "instructions": "You are a booking assistant."},
                   {"type": "realtime", "tool_choice": "auto"}]
        for s in (updates[::-1] if swap else updates)[1 if skip_first_update else 0:]:
            await conn.session.update(session=s, event_id=f"live_evt_{len(got)}_{s.get('tool_choice', 'i')}")
        await until("session.updated")
        await until("session.updated")
        await conn.conversation.item.create(
            item={"id": "item_36d2eba71704", "type": "message", "role": "user",
                  "content": [{"type": "input_text", "text": "Book a table"}]},
            event_id="live_evt_create",
        )
        await until("conversation.item.added")
        await conn.response.create(response={"metadata": {"client_event_id": "live_evt_rc"}}, event_id="live_evt_rc")
        await until("response.done")
        await conn.send({"type": "conversation.item.truncate", "item_id": "item_36d2eba71704", "content_index": 0,
                         "audio_end_ms": 0, "event_id": "live_evt_trunc"})
        await until("conversation.item.truncated")
    return got


async def recorded_own_ids_client(ws_base: str) -> list[dict]:
    """What the recorded run sent: the same conversation with other client-made ids."""
    got: list[dict] = []
    async with websockets.connect(ws_base + "/realtime?model=gpt-realtime", compression=None, max_size=None) as ws:
        async def until(typ: str) -> dict:
            while True:
                ev = json.loads(await asyncio.wait_for(ws.recv(), 10))
                got.append(ev)
                if ev["type"] in (typ, "error"):
                    return ev

        await until("session.created")
        await ws.send(json.dumps({"type": "session.update", "event_id": "rec_evt_1",
                                  "session": {"type": "realtime", "instructions": "You are a booking assistant."}}))
        await ws.send(json.dumps({"type": "session.update", "event_id": "rec_evt_2",
                                  "session": {"type": "realtime", "tool_choice": "auto"}}))
        await until("session.updated")
        await until("session.updated")
        await ws.send(json.dumps({"type": "conversation.item.create", "event_id": "rec_evt_3", "item": {
            "id": "item_0f00c1c0ffee", "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Book a table"}]}}))
        await until("conversation.item.added")
        await ws.send(json.dumps({"type": "response.create", "event_id": "rec_evt_4",
                                  "response": {"metadata": {"client_event_id": "rec_evt_4"}}}))
        await until("response.done")
        await ws.send(json.dumps({"type": "conversation.item.truncate", "event_id": "rec_evt_5",
                                  "item_id": "item_0f00c1c0ffee", "content_index": 0, "audio_end_ms": 0}))
        await until("conversation.item.truncated")
    return got


@pytest.fixture(scope="module")
def own_ids_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with ServerThread(Scenario(echo_metadata=True, audio_ms=200)) as srv:
        rec = Recorder(srv.url, tmp_path_factory.mktemp("own") / "recordings")
        try:
            asyncio.run(recorded_own_ids_client(rec.ws_base))
            (path,) = rec.wait_files(1)
        finally:
            rec.stop()
    return path


def test_server_replay_echoes_the_ids_and_metadata_the_live_client_chose(own_ids_recording: Path) -> None:
    rp = Replay(own_ids_recording, "--once", "--strict")
    got = asyncio.run(own_ids_client(rp.ws_base))
    code, out, err = rp.finish()
    assert code == 0, out + err
    assert "0 divergences" in out
    added = next(e for e in got if e["type"] == "conversation.item.added")
    assert added["item"]["id"] == "item_36d2eba71704"
    done = next(e for e in got if e["type"] == "response.done")
    assert done["response"]["metadata"] == {"client_event_id": "live_evt_rc"}
    truncated = next(e for e in got if e["type"] == "conversation.item.truncated")
    assert truncated["item_id"] == "item_36d2eba71704"
    assert not any(b"item_0f00c1c0ffee" in json.dumps(e).encode() or b"rec_evt_4" in json.dumps(e).encode() for e in got)
    # everything else as recorded: the same messages once the learned values are put back
    recorded = server_messages(own_ids_recording)
    assert len(got) == len(recorded)
    n = int(out.split(" values the client chose substituted")[0].rsplit("; ", 1)[1])
    assert n >= 4, out  # item.added (x2 with .done), response.created/done metadata, truncated
    print(f"server replay substitutions: {out.strip().splitlines()[-1]}")


def test_server_replay_exact_keeps_the_recorded_bytes(own_ids_recording: Path) -> None:
    rp = Replay(own_ids_recording, "--once", "--exact")
    got = asyncio.run(own_ids_client(rp.ws_base))
    code, out, err = rp.finish()
    assert code == 0, out + err
    assert [json.dumps(e) for e in got] == [json.dumps(json.loads(m)) for m in server_messages(own_ids_recording)]
    assert "substituted" not in out and "exact (no substitutions)" in out


def test_swapped_session_updates_do_not_close_a_strict_replay(own_ids_recording: Path) -> None:
    rp = Replay(own_ids_recording, "--once", "--strict")
    got = asyncio.run(own_ids_client(rp.ws_base, swap=True))
    code, out, err = rp.finish()
    assert code == 0, out + err
    assert "0 divergences" in out and "4900" not in out
    assert [e["type"] for e in got][-1] == "conversation.item.truncated"


def test_a_session_update_never_sent_is_reported_when_the_client_leaves(own_ids_recording: Path) -> None:
    # Every event after it came (taken ahead of the awaited session.update, which may come
    # late): the replay goes on, and the one that never came is a divergence at the end.
    rp = Replay(own_ids_recording, "--once", "--wait-timeout", "3")
    got = asyncio.run(own_ids_client(rp.ws_base, skip_first_update=True))
    code, out, err = rp.finish()
    assert [e["type"] for e in got][-1] == "conversation.item.truncated"
    assert code == 1, out + err
    (line,) = [ln for ln in out.splitlines() if "divergence:" in ln]
    assert "recording expected session.update" in line and "never came" in line
    assert "1 divergence;" in out


def test_tls_replay_serves_wss_with_a_certificate_the_client_can_trust(recording: Path, tmp_path: Path) -> None:
    import ssl

    cert_dir = tmp_path / "certs"
    rp = Replay(recording, "--once", "--tls", "--cert-dir", str(cert_dir))
    cert = cert_dir / "rtproxy-replay-cert.pem"
    ctx = ssl.create_default_context(cafile=str(cert))  # verifies the name too (127.0.0.1)

    async def client(port: int) -> list[bytes]:
        out = []
        async with websockets.connect(f"wss://127.0.0.1:{port}/v1/realtime?model=gpt-realtime", ssl=ctx,
                                      compression=None, max_size=None) as ws:
            out.append(await ws.recv(decode=False))
        return out

    got = asyncio.run(client(rp.port))
    code, out, err = rp.finish()
    assert code == 0, err
    assert got == server_messages(recording)[:1]
    assert f"on wss://127.0.0.1:{rp.port}" in out and f"websocket_base_url=wss://127.0.0.1:{rp.port}/v1" in out
    assert f"NODE_EXTRA_CA_CERTS={cert}" in out and f"SSL_CERT_FILE={cert}" in out
    # the same certificate next time (clients keep trusting it); plain ws:// is refused by a TLS client
    before = cert.read_bytes()
    rp2 = Replay(recording, "--once", "--tls", "--cert-dir", str(cert_dir))
    assert asyncio.run(client(rp2.port)) == server_messages(recording)[:1]
    rp2.finish()
    assert cert.read_bytes() == before
    # the openai SDK through SSL_CERT_FILE, as the printed hint says
    rp3 = Replay(recording, "--once", "--tls", "--cert-dir", str(cert_dir))
    proc = subprocess.run(
        [sys.executable, "-c", (
            "import asyncio\nfrom openai import AsyncOpenAI\n"
            "async def main():\n"
            f"    c = AsyncOpenAI(api_key='{KEY}', websocket_base_url='wss://localhost:{rp3.port}/v1')\n"
            "    async with c.realtime.connect(model='gpt-realtime') as conn:\n"
            "        print((await conn.recv()).type)\n"
            "asyncio.run(main())\n")],
        capture_output=True, text=True, timeout=60, env={**os.environ, "SSL_CERT_FILE": str(cert)},
    )
    rp3.finish()
    assert proc.stdout.strip() == "session.created", proc.stderr


def test_tls_with_a_given_certificate_and_key(recording: Path, tmp_path: Path) -> None:
    import ssl

    from rtproxy.replay.tls import self_signed

    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    self_signed(cert, key)
    rp = Replay(recording, "--once", "--cert", str(cert), "--key", str(key))
    ctx = ssl.create_default_context(cafile=str(cert))

    async def client() -> bytes:
        async with websockets.connect(f"wss://localhost:{rp.port}/v1/realtime", ssl=ctx) as ws:
            return await ws.recv(decode=False)

    assert asyncio.run(client()) == server_messages(recording)[0]
    code, out, _ = rp.finish()
    assert code == 0 and f"TLS: certificate {cert}" in out


NODE_CLIENTS = ROOT / "tests" / "clients"


@pytest.mark.skipif(
    not (NODE_CLIENTS / "node_modules" / "ws").is_dir() or __import__("shutil").which("node") is None,
    reason="node and tests/clients/node_modules (ws) not installed",
)
def test_tls_replay_is_trusted_by_node_through_node_extra_ca_certs(recording: Path, tmp_path: Path) -> None:
    rp = Replay(recording, "--once", "--tls", "--cert-dir", str(tmp_path))
    script = (
        'const WebSocket = require("ws");'
        f'const ws = new WebSocket("wss://localhost:{rp.port}/v1/realtime?model=gpt-realtime");'
        'ws.on("message", m => { console.log(JSON.parse(m).type); ws.close(1000); });'
        'ws.on("error", e => { console.log("error " + e.message); process.exit(1); });'
    )
    proc = subprocess.run(
        ["node", "-e", script], capture_output=True, text=True, timeout=60, cwd=NODE_CLIENTS,
        env={**os.environ, "NODE_EXTRA_CA_CERTS": str(tmp_path / "rtproxy-replay-cert.pem")},
    )
    rp.finish()
    assert proc.stdout.strip() == "session.created", proc.stdout + proc.stderr


def test_control_characters_from_the_recording_and_the_client_reach_no_terminal(tmp_path: Path) -> None:
    from rtproxy.testing import make_recording

    # A window-title escape in the model, in a recorded client event's type and in the
    # live client's: the banner, the divergence lines and the report show them as escapes.
    path = make_recording(tmp_path / "esc.rtrec", [
        (0, "server", {"type": "session.created", "session": {}}),
        (1, "client", '{"type":"x\\u001b]0;PWNED\\u0007"}'),
        (2, "server", {"type": "session.updated", "session": {}}),
    ], model="gpt\x1b]0;T\x07", redact=False)
    rp = Replay(path, "--once", "--speed", "max", "--wait-timeout", "1")

    async def client() -> None:
        async with websockets.connect(f"{rp.ws_base}/realtime?model=x") as ws:
            await ws.recv()
            await ws.send('{"type":"y\\u001b[2J","z\\u009b":1}')
            await ws.send('{"type":"x\\u001b]0;PWNED\\u0007"}')
            await ws.recv()

    asyncio.run(client())
    code, out, err = rp.finish()
    assert code == 1, out + err
    assert "\x1b" not in out + err and "\x07" not in out + err and "\x9b" not in out + err
    assert "gpt\\x1b]0;T\\x07" in out  # the model, shown
    assert "got y\\x1b[2J" in out  # the live client's type, shown


def _gap_recording(path: Path, gap_ms: float) -> Path:
    from rtproxy.testing import make_recording

    return make_recording(path, [
        (0, "server", {"type": "session.created", "session": {}}),
        (10, "client", {"type": "response.create"}),
        (10 + gap_ms, "server", {"type": "response.created", "response": {"id": "resp_1"}}),
    ], redact=False, close=(1000, "", "server"))


async def _ask_then_leave(url: str, stay_s: float) -> None:
    async with websockets.connect(url) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "response.create"}))
        await asyncio.sleep(stay_s)


def test_a_client_leaving_or_ctrl_c_ends_a_recorded_hour_long_gap_at_once(tmp_path: Path) -> None:
    """The replay slept through a recorded gap whatever happened: a client that left got its
    report line only when the gap was over, and Ctrl-C (or SIGTERM) waited for it too."""
    import signal

    path = _gap_recording(tmp_path / "gap.rtrec", 3_600_000)
    rp = Replay(path, "--once")
    t0 = time.monotonic()
    asyncio.run(_ask_then_leave(f"{rp.ws_base}/realtime", 0.5))
    code, out, err = rp.finish(timeout=30)
    assert time.monotonic() - t0 < 15, "the report waited for the recorded gap"
    assert code == 0, out + err
    assert "sent 1 server messages (client left before the end)" in out and "closed by the client (1000)" in out

    rp = Replay(path)

    async def stopped_while_waiting() -> int | None:
        async with websockets.connect(f"{rp.ws_base}/realtime") as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "response.create"}))
            await asyncio.sleep(0.5)
            rp.proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(ws.recv(), 15)
            except websockets.ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None
        return -1

    t0 = time.monotonic()
    closed_with = asyncio.run(stopped_while_waiting())
    code, out, err = rp.finish(timeout=30)
    assert time.monotonic() - t0 < 15, "Ctrl-C waited for the recorded gap"
    assert closed_with == 1001 and code == 0, (closed_with, out, err)
    assert "the replay server stopped" in out and "Traceback" not in err


def test_a_gap_past_what_a_clock_holds_and_a_damaged_client_side(tmp_path: Path) -> None:
    """A gap of 2^64 - 1 ns raised OverflowError in the shared timer and hung every later
    session; damage met while reading the client side was taken for the client leaving."""
    import msgpack

    from tests.corpus import MS, _ev, crafted

    huge = crafted(tmp_path / "huge.rtrec", messages=[
        [MS, 0, _ev({"type": "session.created", "session": {}})],
        [MS, 1, _ev({"type": "response.create"})],
        [2**64 - 1, 0, _ev({"type": "response.created", "response": {"id": "r"}})],
    ], close={"closed_by": "server", "code": 1000, "t_ns": 2**64 - 1})
    rp = Replay(huge)
    for _ in range(2):  # the second session is served as the first was
        async def first() -> str:
            async with websockets.connect(f"{rp.ws_base}/realtime") as ws:
                got = json.loads(await asyncio.wait_for(ws.recv(), 10))["type"]
                await ws.send(json.dumps({"type": "response.create"}))
                return got

        assert asyncio.run(first()) == "session.created"
    code, out, err = rp.stop()
    assert out.count("sent 1 server messages (client left before the end)") == 2, out + err
    assert "Traceback" not in err and "Exception" not in err and "Overflow" not in out + err

    damaged = crafted(tmp_path / "damaged.rtrec", messages=[
        [MS, 0, _ev({"type": "session.created", "session": {}})],
        [MS, 1, _ev({"type": "response.create"})],
        [MS, 0, _ev({"type": "response.created", "response": {"id": "r"}})],
    ], close={"code": 1000, "reason": "bye \udc80", "closed_by": "server"},
        packer=msgpack.Packer(use_bin_type=True, unicode_errors="surrogatepass"))
    rp = Replay(damaged, "--once")

    async def client() -> int | None:
        async with websockets.connect(f"{rp.ws_base}/realtime") as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "response.create"}))
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            except websockets.ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None

    assert asyncio.run(client()) == 1011
    code, out, err = rp.finish()
    assert code == 2, out + err
    assert err.strip().startswith(f"rtproxy: error: {damaged}: damaged record") and len(err.strip().splitlines()) == 1
    assert err.strip().endswith("the replay stopped there")


def test_a_5_mib_event_type_from_the_client_is_quoted_cut(tmp_path: Path) -> None:
    from rtproxy.replay.script import DIVERGENCE_QUOTE_CHARS
    from rtproxy.testing import make_recording

    path = make_recording(tmp_path / "t.rtrec", [
        (0, "server", {"type": "session.created", "session": {}}),
        (1, "client", {"type": "response.create"}),
        (2, "server", {"type": "response.created", "response": {"id": "r"}}),
    ], redact=False)
    rp = Replay(path, "--once", "--speed", "max", "--wait-timeout", "1")

    async def client() -> None:
        async with websockets.connect(f"{rp.ws_base}/realtime", max_size=None) as ws:
            await ws.recv()
            for _ in range(3):
                await ws.send(json.dumps({"type": "x" * (5 << 20)}))
            await ws.send(json.dumps({"type": "response.create"}))
            await ws.recv()

    asyncio.run(client())
    code, out, err = rp.finish()
    assert code == 1, err
    lines = [ln for ln in out.splitlines() if "divergence" in ln]
    assert lines and max(map(len, lines)) < 2 * DIVERGENCE_QUOTE_CHARS + 200
    assert "x" * (DIVERGENCE_QUOTE_CHARS - 1) + "\u2026" in out
