"""End to end: real clients -> `rtproxy record` (or mitmdump -s) -> the Realtime-like server.

Every test checks the .rtrec file against what the client and the server
actually saw, byte for byte.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import websockets
import zstandard
from openai import AsyncOpenAI

from rtproxy.io.format import Message, Recording, open_recording
from rtproxy.protocol.redaction import MARKER
from tests.conftest import ROOT, RTPROXY, Recorder, free_port, wait_port
from tests.realtime_server import Log, Scenario, ServerThread, speech_pcm

pytestmark = pytest.mark.e2e

API_KEY = "sk-test-e2e-0123456789abcdefXYZ"
SPEECH = speech_pcm()[: 48 * 1000]  # 1 s of 24 kHz PCM16


# ------------------------------------------------------------------ helpers
@contextlib.contextmanager
def recording(tmp_path: Path, scenario: Scenario | None = None) -> Iterator[tuple[ServerThread, Recorder]]:
    with ServerThread(scenario or Scenario()) as srv:
        rec = Recorder(srv.url, tmp_path / "rec")
        try:
            yield srv, rec
        finally:
            rec.stop()


def read(path: Path) -> tuple[Recording, list[Message]]:
    with open_recording(path) as r:
        return r.read_all()


def wire(x: str | bytes) -> bytes:
    return x.encode() if isinstance(x, str) else x


def side(msgs: list[Message], from_client: bool) -> list[tuple[bool, bytes]]:
    return [(m.is_text, m.content) for m in msgs if m.from_client == from_client]


def logged(items: list[str | bytes]) -> list[tuple[bool, bytes]]:
    return [(isinstance(x, str), wire(x)) for x in items]


def assert_file_matches_log(path: Path, log: Log) -> tuple[Recording, list[Message]]:
    """Each direction of the file is exactly what the server received / sent, in order."""
    rec, msgs = read(path)
    assert side(msgs, True) == logged(log.received)
    assert side(msgs, False) == logged(log.sent)
    ts = [m.t_ns for m in msgs]
    assert ts == sorted(ts)
    return rec, msgs


def rtproxy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RTPROXY, *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


def ws_url(rec: Recorder, query: str = "model=gpt-realtime") -> str:
    return f"ws://127.0.0.1:{rec.port}/v1/realtime?{query}"


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


@contextlib.contextmanager
def threaded_server(handler, **serve_kwargs) -> Iterator[int]:  # type: ignore[no-untyped-def]
    """A websockets server other than the Realtime-like one (TLS, compression), on its own thread."""
    import threading

    from websockets.asyncio.server import serve

    ready = threading.Event()
    box: dict = {}

    async def main() -> None:
        box["loop"] = asyncio.get_running_loop()
        box["stop"] = box["loop"].create_future()
        async with serve(handler, "127.0.0.1", 0, max_size=None, **serve_kwargs) as server:
            box["port"] = server.sockets[0].getsockname()[1]
            ready.set()
            await box["stop"]

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield box["port"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set_result, None)
        thread.join(10)


async def sdk_voice_turn(ws_base: str, instructions: str = "Be brief.") -> list[bytes]:
    """A voice turn with the official SDK; returns the raw bytes of every server message."""
    client = AsyncOpenAI(api_key=API_KEY, websocket_base_url=ws_base)
    received: list[bytes] = []
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "instructions": instructions})
        for i in range(0, len(SPEECH), 4800):  # 100 ms chunks
            await conn.input_audio_buffer.append(audio=b64(SPEECH[i : i + 4800]))
        await conn.input_audio_buffer.commit()
        await conn.response.create()
        while True:
            raw = await asyncio.wait_for(conn.recv_bytes(), 10)
            received.append(raw)
            if json.loads(raw)["type"] == "rate_limits.updated":  # the server's last event of a turn
                break
    return received


def check_voice_turn(path: Path, log: Log, received: list[bytes]) -> tuple[Recording, list[Message]]:
    rec, msgs = assert_file_matches_log(path, log)
    assert [c for _, c in side(msgs, False)] == received  # what the client got, too
    types = [(m.direction, json.loads(m.content)["type"]) for m in msgs]
    # Directions and order across them: each reply comes after what caused it.
    assert types.index(("client", "session.update")) < types.index(("server", "session.updated"))
    assert types.index(("client", "response.create")) < types.index(("server", "response.created"))
    # (session.created and the client's first message cross on the wire: either may come first.)
    assert ("server", "session.created") in types[:2]
    appends = [m for m in msgs if m.from_client and b"input_audio_buffer.append" in m.head]
    assert b"".join(a for m in appends for a in m.audio) == SPEECH  # audio stored as bytes, intact
    hs = rec.handshake
    assert hs["status"] == 101 and hs["path"] == "/v1/realtime?model=gpt-realtime"
    assert ["Authorization", f"Bearer {MARKER}"] in [[k.title(), v] for k, v in hs["request_headers"]]
    assert rec.header["model"] == "gpt-realtime"
    assert rec.close["closed_by"] == "client" and rec.close["code"] == 1000
    assert not rec.truncated
    return rec, msgs


# ------------------------------------------------- the official SDK, voice turn
@pytest.fixture(scope="module")
def sdk_session(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("sdk")
    with recording(tmp) as (srv, rec):
        received = asyncio.run(sdk_voice_turn(rec.ws_base))
        [path] = rec.wait_files(1)
        rec.stop()
        yield path, srv.logs[0], received, rec.output


def test_sdk_voice_turn_is_recorded_byte_exact(sdk_session) -> None:
    path, log, received, output = sdk_session
    check_voice_turn(path, log, received)
    assert API_KEY not in path.read_bytes().decode("latin-1")
    # The recorder said where the session went.
    assert f"recorded {path}" in output
    n_bytes = sum(len(wire(x)) for x in log.received)
    assert f"client {len(log.received)} msgs / {n_bytes:,} B, server {len(log.sent)} msgs" in output


def test_show_prints_header_and_one_line_per_message(sdk_session) -> None:
    path, log, received, _ = sdk_session
    _, msgs = read(path)
    out = rtproxy("show", str(path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    head = "\n".join(lines[:12])
    assert "/v1/realtime?model=gpt-realtime" in head
    assert "model        gpt-realtime" in head
    assert "started      20" in head and " UTC" in head
    assert "subprotocol  -" in head  # the SDK offers none
    assert "handshake    HTTP 101 Switching Protocols" in head
    assert f"messages     client {len(log.received)}, server {len(log.sent)}" in head
    assert "audio        client 1.00 s, server 0.60 s" in head
    assert "close        1000" in head
    rows = [ln for ln in lines if " ms  " in ln]
    assert len(rows) == len(msgs)
    for row, m in zip(rows, msgs):
        typ = json.loads(m.content)["type"]
        assert f"{m.direction:6} {'->' if m.from_client else '<-'} {typ} " in row, row
    appends = [r for r, m in zip(rows, msgs) if b"input_audio_buffer.append" in m.head]
    assert len(appends) == 10 and all(r.endswith("100 ms audio") for r in appends)
    assert any('"Hello! How can I help you today?"' in r for r in rows)  # transcript detail


def test_show_json_lines_follow_the_schema(sdk_session) -> None:
    path, log, received, _ = sdk_session
    _, msgs = read(path)
    out = rtproxy("show", "--json", str(path))
    assert out.returncode == 0, out.stderr
    objs = [json.loads(line) for line in out.stdout.splitlines()]
    header, body, end = objs[0], objs[1:-1], objs[-1]
    assert header["kind"] == "header" and header["model"] == "gpt-realtime"
    assert header["handshake"]["status"] == 101
    assert len(body) == len(msgs)
    for o, m in zip(body, msgs):
        assert o["kind"] == "message"
        assert set(o) >= {"t", "from", "opcode", "size", "type", "text"}
        assert o["from"] == m.direction and o["opcode"] == "text"
        assert o["text"].encode() == m.content and o["size"] == len(m.content)
        assert o["type"] == json.loads(m.content)["type"]
        assert o["t"] == m.t_ns / 1e9
    assert [o["text"].encode() for o in body if o["from"] == "server"] == received
    assert [o["text"] for o in body if o["from"] == "client"] == log.received
    assert [o["t"] for o in body] == sorted(o["t"] for o in body)
    assert end["kind"] == "end" and end["close_code"] == 1000 and end["truncated"] is False


# --------------------------------------------- odd messages, plain websockets
_N15 = 15 * 1024 * 1024 * 3 // 4 + 3  # raw bytes whose base64 is just over 15 MiB
APPEND_15M = json.dumps({"type": "input_audio_buffer.append", "audio": b64((speech_pcm() * 16)[:_N15])})
ODD: list[str | bytes] = [
    '{"type":"made.up.event","payload":{"x":[1,2,3]}}',
    '{"type": "response.create", oops not json',
    '{"type":"conversation.item.create","item":{"type":"message","role":"user","content":[{"type":"input_text","text":"héllo 世界 🎙️ ∑"}]}}',
    "",
    b"\x00\x01\x02\xfe\xff binary",
    b"",
    APPEND_15M,
    '{"type":"input_audio_buffer.append","audio":"' + b64(SPEECH[:301])[:-3] + 'R=="}',  # non-canonical padding
    "  not even {json",
]


def test_odd_messages_survive_byte_exact(tmp_path: Path) -> None:
    assert len(APPEND_15M) >= 15 * 1024 * 1024

    async def client(url: str) -> list[str | bytes]:
        echoed = []
        async with websockets.connect(url, max_size=None, compression=None) as ws:
            for m in ODD:
                await ws.send(m)
                echoed.append(await asyncio.wait_for(ws.recv(), 20))
        return echoed

    with recording(tmp_path, Scenario(echo=True)) as (srv, rec):
        echoed = asyncio.run(client(ws_url(rec)))
        [path] = rec.wait_files(1)
    assert echoed == ODD
    _, msgs = assert_file_matches_log(path, srv.logs[0])
    assert side(msgs, True) == logged(ODD) == side(msgs, False)
    assert [m.from_client for m in msgs] == [True, False] * len(ODD)
    big = msgs[2 * ODD.index(APPEND_15M)]
    assert len(big.audio) == 1 and big.size == len(APPEND_15M)
    assert path.stat().st_size < 2 * len(APPEND_15M) / 3  # both copies stored as audio bytes
    # show --json gives each payload back exactly: "text" for text, "base64" for binary.
    out = rtproxy("show", "--json", str(path))
    assert out.returncode == 0, out.stderr
    body = [json.loads(line) for line in out.stdout.splitlines()[1:-1]]
    assert len(body) == 2 * len(ODD)
    for o, m in zip(body, msgs):
        if m.is_text:
            assert o["opcode"] == "text" and o["text"].encode() == m.content and "base64" not in o
        else:
            assert o["opcode"] == "binary" and base64.b64decode(o["base64"]) == m.content and "text" not in o
    # The type an event claims; a message that does not start like an event has none.
    assert [o["type"] for o in body[::2]] == ["made.up.event", "response.create", "conversation.item.create",
                                              None, None, None, "input_audio_buffer.append",
                                              "input_audio_buffer.append", None]
    # The lines are ASCII (non-ASCII as \u escapes): exact once parsed, safe on any terminal.
    assert out.stdout.isascii() and any('héllo 世界 🎙️ ∑' in o.get("text", "") for o in body)
    text = rtproxy("show", str(path)).stdout.splitlines()
    rows = [ln for ln in text if " ms  " in ln]
    assert len(rows) == 2 * len(ODD)
    assert rows[2].rstrip().endswith("invalid JSON") and rows[16].rstrip().endswith("not a JSON event")
    assert rows[6].rstrip().endswith("empty message") and rows[8].rstrip().endswith(f"binary {len(ODD[4])} B")


# ---------------------------------------------------------------- SIGKILL
def test_sigkill_mid_session_keeps_everything_forwarded(tmp_path: Path) -> None:
    async def client(url: str, rec: Recorder) -> None:
        ws = await websockets.connect(url, max_size=None, compression=None)
        for i in range(40):
            await ws.send(json.dumps({"type": "conversation.item.create", "n": i, "pad": "x" * (i * 37)}))
            assert json.loads(await ws.recv())["n"] == i
        await ws.send(b"\x00last binary")
        await ws.recv()
        rec.proc.kill()
        rec.proc.wait()
        with contextlib.suppress(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        await ws.close()

    with recording(tmp_path, Scenario(echo=True)) as (srv, rec):
        asyncio.run(client(ws_url(rec), rec))
        [path] = rec.files()
    r, msgs = assert_file_matches_log(path, srv.logs[0])
    assert len(msgs) == 82 and r.truncated and r.end is None
    assert r.header["model"] == "gpt-realtime" and r.handshake["status"] == 101
    for args in (["show"], ["show", "--json"]):
        out = rtproxy(*args, str(path))
        assert out.returncode == 0, out.stderr
        assert "Traceback" not in out.stderr + out.stdout
        assert "cut short" in out.stdout + out.stderr
    last = json.loads(rtproxy("show", "--json", str(path)).stdout.splitlines()[-1])
    assert last["kind"] == "end" and last["truncated"] is True


def test_sigkill_while_the_server_streams_audio(tmp_path: Path) -> None:
    """Killed in the middle of a response: the file has at least what the client got, and
    nothing the server did not send."""

    async def client(url: str, rec: Recorder) -> list[str | bytes]:
        got = []
        async with websockets.connect(url, max_size=None) as ws:
            got.append(await ws.recv())
            await ws.send('{"type":"response.create"}')
            while len(got) < 150:
                got.append(await asyncio.wait_for(ws.recv(), 10))
            rec.proc.kill()
            rec.proc.wait()
        return got

    with recording(tmp_path, Scenario(audio_ms=30_000, chunk_ms=20)) as (srv, rec):
        got = asyncio.run(client(ws_url(rec), rec))
        [path] = rec.files()
        log = srv.logs[0]
        r, msgs = read(path)
    assert r.truncated
    assert side(msgs, True) == logged(log.received) == [(True, b'{"type":"response.create"}')]
    server = side(msgs, False)
    assert len(got) <= len(server) <= len(log.sent)
    assert server == logged(log.sent)[: len(server)]
    assert [c for _, c in server[: len(got)]] == [wire(g) for g in got]
    out = rtproxy("show", str(path))
    assert out.returncode == 0 and "cut short" in out.stdout, out.stderr


# ------------------------------------------------------- refused upgrades
@pytest.mark.parametrize("status", [401, 403])
def test_refused_upgrade_is_a_recording(tmp_path: Path, status: int) -> None:
    async def client(url: str) -> None:
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(url, additional_headers={"Authorization": f"Bearer {API_KEY}"})
        assert info.value.response.status_code == status

    with recording(tmp_path, Scenario(refuse_status=status)) as (srv, rec):
        asyncio.run(client(ws_url(rec)))
        [path] = rec.wait_files(1)
        rec.stop()
    r, msgs = read(path)
    assert msgs == [] and not r.truncated and r.end["refused"] is True
    hs = r.handshake
    assert hs["status"] == status
    body = json.loads(hs["response_body"])
    assert body["error"]["code"] == "invalid_api_key"
    assert ["content-type", "application/json"] in [[k.lower(), v] for k, v in hs["response_headers"]]
    assert API_KEY not in path.read_bytes().decode("latin-1")
    assert f"refused upgrade: HTTP {status}" in rec.output
    out = rtproxy("show", str(path))
    assert out.returncode == 0, out.stderr
    assert f"handshake    HTTP {status}" in out.stdout
    assert "Incorrect API key provided." in out.stdout
    assert "messages     client 0, server 0" in out.stdout


# --------------------------------------------------- simultaneous sessions
def test_simultaneous_sessions_each_in_its_own_file(tmp_path: Path) -> None:
    n = 8

    async def all_clients(ws_base: str) -> list[list[bytes]]:
        return await asyncio.gather(*(sdk_voice_turn(ws_base, f"client number {i}") for i in range(n)))

    with recording(tmp_path) as (srv, rec):
        received = asyncio.run(all_clients(rec.ws_base))
        files = rec.wait_files(n)
    assert len(files) == n == len(srv.logs)
    by_instructions = {}
    for path in files:
        _, msgs = read(path)
        first = json.loads(msgs[[m.from_client for m in msgs].index(True)].content)
        by_instructions[first["session"]["instructions"]] = path
    assert sorted(by_instructions) == sorted(f"client number {i}" for i in range(n))
    for log in srv.logs:
        i = int(json.loads(log.received[0])["session"]["instructions"].rsplit(" ", 1)[1])
        check_voice_turn(by_instructions[f"client number {i}"], log, received[i])


# ------------------------------------------------------------ secrets
S = "PLANTED7f3a9cQzz"


def test_planted_secrets_never_reach_the_disk_and_are_forwarded(tmp_path: Path) -> None:
    query = f"model=gpt-realtime&api-key=sk-{S}q1&key={S}q2&token={S}q3&client_secret=ek_{S}q4"
    headers = {
        "Authorization": f"Bearer sk-{S}auth",
        "api-key": f"{S}azure",
        "Cookie": f"session={S}cookie",
        "OpenAI-Organization": f"org-{S}",
        "OpenAI-Project": f"proj_{S}",
    }
    mcp = {"type": "mcp", "server_label": "wiki", "server_url": "https://mcp.example.com/sse",
           "authorization": f"{S}mcpauth", "headers": {"X-Api-Token": f"{S}mcphdr"}, "require_approval": "never"}
    session_update = json.dumps({"type": "session.update", "session": {"type": "realtime", "tools": [mcp]}})
    response_create = json.dumps({"type": "response.create", "response": {"tools": [{**mcp, "authorization": f"{S}rcauth"}]}})

    async def client(url: str) -> list[str | bytes]:
        got = []
        async with websockets.connect(
            url, additional_headers=headers, subprotocols=["realtime", f"openai-insecure-api-key.sk-{S}sub"],
            max_size=None,
        ) as ws:
            assert ws.subprotocol == "realtime"
            got.append(await ws.recv())
            await ws.send(session_update)
            got.append(await ws.recv())
            await ws.send(response_create)
            while not got[-1].startswith('{"type": "rate_limits.updated"'):
                got.append(await asyncio.wait_for(ws.recv(), 10))
        return got

    with recording(tmp_path, Scenario(client_secret=f"ek_{S}eph")) as (srv, rec):
        got = asyncio.run(client(ws_url(rec, query)))
        [path] = rec.wait_files(1)
    log = srv.logs[0]
    # Forwarding is untouched: the upstream got the real values, the client the real session.
    assert log.headers["Authorization"] == f"Bearer sk-{S}auth" and log.headers["api-key"] == f"{S}azure"
    assert log.headers["Cookie"] == f"session={S}cookie" and log.headers["OpenAI-Project"] == f"proj_{S}"
    assert f"openai-insecure-api-key.sk-{S}sub" in log.headers["Sec-WebSocket-Protocol"]
    assert f"api-key=sk-{S}q1" in log.path and f"client_secret=ek_{S}q4" in log.path
    assert log.received == [session_update, response_create]
    assert f"ek_{S}eph" in got[0] and f"{S}mcpauth" in got[1]  # session.updated echoes the tools
    assert got == log.sent
    # The raw, decompressed file holds none of them, and says what it removed.
    raw = path.read_bytes()
    data = zstandard.ZstdDecompressor().decompressobj().decompress(raw[10:])
    assert S.encode() not in data and S.encode() not in raw
    assert MARKER.encode() in data and b"openai-insecure-api-key.REDACTED" in data
    r, msgs = read(path)
    flagged = [json.loads(m.content)["type"] for m in msgs if m.redacted]
    assert flagged == ["session.created", "session.update", "session.updated", "response.create"]
    # Everything else is byte-exact.
    sent_iter = iter(logged(log.sent))
    for m in msgs:
        if not m.from_client:
            expected = next(sent_iter)
            if not m.redacted:
                assert (m.is_text, m.content) == expected
    assert {"api-key", "key", "token", "client_secret"} <= {x.split(":", 1)[1] for x in r.header["redactions"] if x.startswith("query:")}


# ------------------------------------------------------ Ctrl-C / SIGTERM
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopping_the_recorder_closes_out_open_sessions(tmp_path: Path, sig: int) -> None:
    async def client(url: str, rec: Recorder) -> int:
        async with websockets.connect(url, compression=None) as ws:
            for i in range(3):
                await ws.send(f'{{"type":"conversation.item.create","n":{i}}}')
                await ws.recv()
            code = await asyncio.to_thread(rec.stop, sig)
            with contextlib.suppress(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            return code

    with recording(tmp_path, Scenario(echo=True)) as (srv, rec):
        code = asyncio.run(client(ws_url(rec), rec))
        [path] = rec.files()
    assert code == 0, rec.errors
    assert "Traceback" not in rec.errors
    r, msgs = assert_file_matches_log(path, srv.logs[0])
    assert len(msgs) == 6
    assert not r.truncated and r.end["stopped"] is True
    assert r.close["closed_by"] == "proxy"
    assert f"recorded {path}" in rec.output


# ------------------------------------------------------ mitmdump -s addon
def wait_complete_file(out_dir: Path, timeout: float = 10.0) -> Path:
    """The one recording in out_dir, once its session is over (end record written)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted(out_dir.glob("*.rtrec"))
        if len(files) == 1 and not read(files[0])[0].truncated:
            return files[0]
        time.sleep(0.05)
    raise TimeoutError(f"no complete recording in {out_dir}: {sorted(out_dir.glob('*'))}")


def test_mitmdump_with_the_addon_records_the_same_way(tmp_path: Path) -> None:
    mitmdump = Path(sys.executable).parent / "mitmdump"
    out_dir = tmp_path / "rec"
    with ServerThread(Scenario()) as srv:
        port = free_port()
        proc = subprocess.Popen(
            [str(mitmdump), "--flow-detail", "0", "-s", str(ROOT / "addons" / "realtime_recorder.py"),
             "--set", f"rtrec_dir={out_dir}", "--mode", f"reverse:{srv.url}",
             "--listen-host", "127.0.0.1", "--listen-port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        )
        try:
            wait_port(port, proc=proc)
            received = asyncio.run(sdk_voice_turn(f"ws://127.0.0.1:{port}/v1"))
            path = wait_complete_file(out_dir)
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    rec, _ = check_voice_turn(path, srv.logs[0], received)
    assert rec.header["recorder"] == "mitmproxy"
    assert f"recorded {path}" in out + err  # mitmproxy's event log shows the session line


# ------------------------------------------------------- other recordings
def test_server_close_code_and_reason_are_recorded(tmp_path: Path) -> None:
    async def client(url: str) -> websockets.ConnectionClosed:
        async with websockets.connect(url) as ws:
            await ws.recv()
            await ws.send('{"type":"response.create"}')
            with pytest.raises(websockets.ConnectionClosed) as info:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
        return info.value

    scenario = Scenario(close_code=4000, close_reason="beta_api_shape_disabled", audio_ms=80)
    with recording(tmp_path, scenario) as (srv, rec):
        closed = asyncio.run(client(ws_url(rec)))
        [path] = rec.wait_files(1)
    assert (closed.rcvd.code, closed.rcvd.reason) == (4000, "beta_api_shape_disabled")
    r, _ = assert_file_matches_log(path, srv.logs[0])
    assert (r.close["code"], r.close["reason"], r.close["closed_by"]) == (4000, "beta_api_shape_disabled", "server")
    out = rtproxy("show", str(path))
    assert "close        4000 'beta_api_shape_disabled' by server" in out.stdout


def test_client_dropping_the_connection_is_recorded_as_1006(tmp_path: Path) -> None:
    async def client(url: str) -> None:
        ws = await websockets.connect(url, compression=None)
        await ws.send('{"type":"response.create"}')
        await ws.recv()
        ws.transport.abort()  # no close frame: a crashed or killed app

    with recording(tmp_path, Scenario(echo=True)) as (srv, rec):
        asyncio.run(client(ws_url(rec)))
        [path] = rec.wait_files(1)
    r, msgs = assert_file_matches_log(path, srv.logs[0])
    assert len(msgs) == 2 and not r.truncated
    assert (r.close["code"], r.close["closed_by"]) == (1006, "client")


def test_regular_proxy_mode_records_too(tmp_path: Path) -> None:
    async def client(url: str, proxy: str) -> None:
        async with websockets.connect(url, proxy=proxy, compression=None) as ws:
            for m in ("one", b"\x02", '{"type":"x"}'):
                await ws.send(m)
                assert await ws.recv() == m

    with ServerThread(Scenario(echo=True)) as srv:
        rec = Recorder(srv.url, tmp_path / "rec", "--mode", "regular")
        try:
            asyncio.run(client(f"ws://127.0.0.1:{srv.port}/v1/realtime?model=gpt-realtime", f"http://127.0.0.1:{rec.port}"))
            [path] = rec.wait_files(1)
        finally:
            rec.stop()
    r, msgs = assert_file_matches_log(path, srv.logs[0])
    assert len(msgs) == 6 and r.header["recorder"] == "rtproxy-record/regular"
    assert r.header["url"] == f"ws://127.0.0.1:{srv.port}/v1/realtime?model=gpt-realtime"


def test_record_start_errors_are_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        cases = {
            "address already in use": ["--listen-port", str(busy), "--out-dir", str(tmp_path / "r")],
            "cannot create": ["--listen-port", str(free_port()), "--out-dir", str(blocker / "sub")],
            "expected a URL": ["--upstream", "ftp://example.com", "--out-dir", str(tmp_path / "r")],
        }
        for what, args in cases.items():
            out = rtproxy("record", *args)
            assert out.returncode == 2, (what, out.stderr)
            assert out.stderr.startswith("rtproxy: error: ") and what in out.stderr
            assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_show_on_bad_files_is_a_one_line_error(tmp_path: Path) -> None:
    good = (ROOT / "tests" / "data" / "format_v1.rtrec").read_bytes()
    files = {
        "notes.txt": (b"just text\n", "not an .rtrec recording"),
        "empty.rtrec": (b"", "empty file"),
        "newer.rtrec": (good[:8] + b"\x00\x63" + good[10:], "newer than this rtproxy reads"),
        "corrupt.rtrec": (good[:10] + b"\x28\xb5\x2f\xfd" + b"\xff" * 64, "damaged"),
    }
    for name, (data, what) in files.items():
        p = tmp_path / name
        p.write_bytes(data)
        for args in (["show"], ["show", "--json"]):
            out = rtproxy(*args, str(p))
            assert out.returncode == 2, (name, out.stderr)
            assert out.stderr.startswith(f"rtproxy: error: {p}: "), out.stderr
            assert what in out.stderr and out.stderr.count("\n") == 1, out.stderr
    out = rtproxy("show", str(tmp_path / "missing.rtrec"))
    assert out.returncode == 2 and "missing.rtrec" in out.stderr and "Traceback" not in out.stderr


# ------------------------------------------------------ TLS upstream (wss)
def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_upstream_is_spoken_to_over_wss(tmp_path: Path) -> None:
    """The default upstream is https://api.openai.com: the proxy speaks TLS to it."""
    import ssl

    from tests.realtime_server import RealtimeLikeServer

    cert, key = _self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    app = RealtimeLikeServer(Scenario())
    with threaded_server(app.handler, ssl=ctx, process_request=app.process_request,
                         select_subprotocol=app.select_subprotocol, compression=None) as port:
        rec = Recorder(f"https://127.0.0.1:{port}", tmp_path / "rec", "--ssl-insecure")
        try:
            received = asyncio.run(sdk_voice_turn(rec.ws_base))
            [path] = rec.wait_files(1)
        finally:
            rec.stop()
    r, _ = check_voice_turn(path, app.logs[0], received)
    assert r.header["url"] == f"wss://127.0.0.1:{port}/v1/realtime?model=gpt-realtime"
    assert r.header["upstream"] == f"https://127.0.0.1:{port}"


# ------------------------------------------- negotiated extensions (deflate)
def test_permessage_deflate_is_stored_in_the_handshake_and_payloads_stay_exact(tmp_path: Path) -> None:
    """A server that accepts permessage-deflate: the handshake says so, messages are stored as sent."""
    got_by_server: list[str | bytes] = []

    async def echo(ws) -> None:  # type: ignore[no-untyped-def]
        async for m in ws:
            got_by_server.append(m)
            await ws.send(m)

    sent: list[str | bytes] = ['{"type":"x","text":"' + "compressible " * 500 + '"}', b"\x00" * 5000, "é"]

    async def client(url: str) -> tuple[str | None, list[str | bytes]]:
        async with websockets.connect(url, max_size=None) as ws:
            echoed = []
            for m in sent:
                await ws.send(m)
                echoed.append(await ws.recv())
            return ws.response.headers.get("Sec-WebSocket-Extensions"), echoed

    with threaded_server(echo) as port:  # compression on: websockets' default
        rec = Recorder(f"http://127.0.0.1:{port}", tmp_path / "rec")
        try:
            ext, echoed = asyncio.run(client(ws_url(rec)))
            [path] = rec.wait_files(1)
        finally:
            rec.stop()
    assert echoed == sent == got_by_server
    assert ext and ext.startswith("permessage-deflate")
    r, msgs = read(path)
    assert r.handshake["extensions"] == ext
    assert side(msgs, True) == logged(sent) == side(msgs, False)


# ---------------------------------------------------- failing loudly
def test_session_is_refused_when_its_file_cannot_be_written(tmp_path: Path) -> None:
    """Better no session than an unrecorded one; the recorder says why on stderr."""
    import shutil

    async def client(url: str) -> None:
        with pytest.raises((websockets.InvalidHandshake, OSError)):
            async with websockets.connect(url, open_timeout=10) as ws:
                await ws.send('{"type":"response.create"}')
                await ws.recv()

    with recording(tmp_path, Scenario(echo=True)) as (srv, rec):
        shutil.rmtree(rec.out_dir)
        asyncio.run(client(ws_url(rec)))
        rec.stop()
    assert all(log.received == [] for log in srv.logs)  # nothing passed unrecorded
    assert "rtproxy: cannot create a recording in" in rec.errors and "refusing the session" in rec.errors
    assert "Traceback" not in rec.errors


def test_unreachable_upstream_is_reported_without_secrets(tmp_path: Path) -> None:
    async def client(url: str) -> int:
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(url)
        return info.value.response.status_code

    rec = Recorder(f"http://127.0.0.1:{free_port()}", tmp_path / "rec")
    try:
        status = asyncio.run(client(ws_url(rec, f"model=gpt-realtime&api-key=sk-{S}unreach")))
    finally:
        rec.stop()
    assert status == 502
    assert "upstream not reached" in rec.errors and "Connect call failed" in rec.errors
    assert S not in rec.errors + rec.output
    # a recording all the same: the status the client got, the error text, no messages
    [path] = rec.files()
    r, msgs = read(path)
    assert msgs == [] and not r.truncated and r.end["refused"] is True
    assert (r.handshake["status"], r.handshake["reason"]) == (502, "Bad Gateway")
    assert "Connect call failed" in r.end["error"] and b"Connect call failed" in r.handshake["response_body"]
    assert S not in r.header["url"] and S not in str(r.handshake["request_headers"])
    assert f"recorded {path}: refused upgrade: HTTP 502;" in rec.output


def test_regular_mode_records_wss_with_mitmproxys_ca(tmp_path: Path) -> None:
    """What clients that cannot be re-pointed do: wss:// through the proxy, trusting its CA."""
    import ssl

    from tests.realtime_server import RealtimeLikeServer

    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    app = RealtimeLikeServer(Scenario(echo=True))

    async def client(url: str, proxy: str) -> None:
        ca = Path.home() / ".mitmproxy" / "mitmproxy-ca-cert.pem"  # created by the recorder's first start
        ctx = ssl.create_default_context(cafile=str(ca))
        async with websockets.connect(url, proxy=proxy, ssl=ctx, compression=None) as ws:
            for m in ('{"type":"response.create"}', b"\x01\x02"):
                await ws.send(m)
                assert await ws.recv() == m

    with threaded_server(app.handler, ssl=server_ctx, process_request=app.process_request,
                         select_subprotocol=app.select_subprotocol, compression=None) as port:
        rec = Recorder(f"https://127.0.0.1:{port}", tmp_path / "rec", "--mode", "regular", "--ssl-insecure")
        try:
            url = f"wss://127.0.0.1:{port}/v1/realtime?model=gpt-realtime&api-key=sk-{S}regular"
            asyncio.run(client(url, f"http://127.0.0.1:{rec.port}"))
            [path] = rec.wait_files(1)
        finally:
            rec.stop()
    r, msgs = assert_file_matches_log(path, app.logs[0])
    assert len(msgs) == 4
    assert r.header["url"].startswith(f"wss://127.0.0.1:{port}/v1/realtime?model=gpt-realtime&api-key=")
    assert S not in r.header["url"] and f"sk-{S}regular" in app.logs[0].path


def test_regular_mode_first_start_with_workers_signs_with_the_ca_on_disk(tmp_path: Path) -> None:
    """A first start (no ~/.mitmproxy yet) with several workers: every worker signs with
    the one CA written to disk, so each wss:// session through the proxy verifies
    against the file clients are told to trust, whichever worker takes it."""
    import ssl

    from tests.realtime_server import RealtimeLikeServer

    home = tmp_path / "home"
    home.mkdir()
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    app = RealtimeLikeServer(Scenario(echo=True))
    n = 9

    async def clients(port: int, proxy: str) -> None:
        ctx = ssl.create_default_context(cafile=str(home / ".mitmproxy" / "mitmproxy-ca-cert.pem"))

        async def one(i: int) -> None:
            url = f"wss://127.0.0.1:{port}/v1/realtime?model=gpt-realtime&s={i}"
            async with websockets.connect(url, proxy=proxy, ssl=ctx, compression=None) as ws:
                await ws.send('{"type":"response.create"}')
                assert await ws.recv() == '{"type":"response.create"}'

        await asyncio.gather(*(one(i) for i in range(n)))

    with threaded_server(app.handler, ssl=server_ctx, process_request=app.process_request,
                         select_subprotocol=app.select_subprotocol, compression=None) as port:
        rec = Recorder(f"https://127.0.0.1:{port}", tmp_path / "rec", "--mode", "regular", "--ssl-insecure",
                       "--workers", "3", env={"HOME": str(home)})
        try:
            asyncio.run(clients(port, f"http://127.0.0.1:{rec.port}"))
            assert len(rec.wait_files(n)) == n
        finally:
            rec.stop()
    assert rec.output.count("recorded ") == n and "Traceback" not in rec.errors


# ------------------------------------------- the closing handshake (RFC 6455 section 7)
CLOSE_RACE_RUNS = 20


def test_close_race_what_the_upstream_sent_after_the_clients_close_is_recorded(tmp_path: Path) -> None:
    """A client that closes while the server still sends 6 messages: the file holds every
    message the upstream socket carried (up to the server's own Close), run after run."""
    carried: list[list[str]] = []

    async def upstream(ws) -> None:  # type: ignore[no-untyped-def]
        sent: list[str] = []
        carried.append(sent)
        await ws.recv()
        try:
            for i in range(6):
                m = json.dumps({"type": "response.output_audio_transcript.delta", "n": i, "delta": "x" * 300})
                await ws.send(m)
                sent.append(m)  # written to the socket: on its way to the proxy
                await asyncio.sleep(0.002)
        except websockets.ConnectionClosed:
            pass
        await ws.wait_closed()

    async def client(url: str) -> int:
        async with websockets.connect(url, compression=None) as ws:
            await ws.send('{"type":"response.create"}')
            await ws.recv()
        # leaving the block sends Close (1000) while the server is still sending
        assert ws.close_code == 1000
        return 1

    with threaded_server(upstream, compression=None) as port:
        rec = Recorder(f"http://127.0.0.1:{port}", tmp_path / "rec")
        try:
            for n in range(CLOSE_RACE_RUNS):
                asyncio.run(client(ws_url(rec)))
                rec.wait_files(n + 1)
        finally:
            rec.stop()
    files = rec.files()
    assert len(files) == CLOSE_RACE_RUNS == len(carried)
    by_first = {}
    for path in files:
        r, msgs = read(path)
        server = [m.content.decode() for m in msgs if not m.from_client]
        assert (r.close["code"], r.close["closed_by"]) == (1000, "client")
        by_first[r.handshake["t_request"]] = server
    recorded = [by_first[k] for k in sorted(by_first)]
    counts = [(len(c), len(s)) for c, s in zip(carried, recorded)]
    print(f"close race over {CLOSE_RACE_RUNS} runs, (carried, recorded) server messages: {counts}")
    assert recorded == carried, counts
    if sum(len(c) for c in carried) <= CLOSE_RACE_RUNS:
        # Timing decides whether the server's later messages cross the client's Close;
        # when none did, the equality above held but did not exercise the race.
        pytest.skip(f"the race did not occur in {CLOSE_RACE_RUNS} runs (the server sent nothing after the close)")


def test_pings_and_pongs_are_recorded(tmp_path: Path) -> None:
    async def client(url: str) -> None:
        async with websockets.connect(url, compression=None) as ws:
            await ws.send('{"type":"x"}')
            await ws.recv()
            pong = await ws.ping(b"are-you-there")
            await asyncio.wait_for(pong, 5)
            await ws.send('{"type":"y"}')
            await ws.recv()

    with recording(tmp_path, Scenario(echo=True)) as (srv, rec):
        asyncio.run(client(ws_url(rec)))
        [path] = rec.wait_files(1)
    r, msgs = assert_file_matches_log(path, srv.logs[0])
    assert [(p["k"], p["from"], p["payload"]) for p in r.pings] == [
        ("ping", "client", b"are-you-there"), ("pong", "server", b"are-you-there")]
    assert msgs[1].t_ns <= r.pings[0]["t_ns"] <= r.pings[1]["t_ns"] <= msgs[2].t_ns
    out = rtproxy("show", str(path))  # readers that do not know the records skip them
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stopping_the_recorder_sends_1001_to_both_sides_and_records_it(tmp_path: Path, sig: int) -> None:
    upstream_close: list[tuple[int | None, str | None]] = []

    async def upstream(ws) -> None:  # type: ignore[no-untyped-def]
        with contextlib.suppress(websockets.ConnectionClosed):
            async for m in ws:
                await ws.send(m)
        upstream_close.append((ws.close_code, ws.close_reason))

    async def client(url: str, rec: Recorder) -> tuple[int | None, str | None, int]:
        async with websockets.connect(url, compression=None) as ws:
            await ws.send('{"type":"response.create"}')
            await ws.recv()
            code = await asyncio.to_thread(rec.stop, sig)
            with contextlib.suppress(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            return ws.close_code, ws.close_reason, code

    with threaded_server(upstream, compression=None) as port:
        rec = Recorder(f"http://127.0.0.1:{port}", tmp_path / "rec")
        try:
            got_code, got_reason, exit_code = asyncio.run(client(ws_url(rec), rec))
        finally:
            rec.stop()
        [path] = rec.files()
    assert exit_code == 0, rec.errors
    assert (got_code, got_reason) == (1001, "rtproxy stopped")
    assert upstream_close == [(1001, "rtproxy stopped")]
    r, msgs = read(path)
    assert len(msgs) == 2 and not r.truncated and r.end["stopped"] is True
    assert (r.close["code"], r.close["reason"], r.close["closed_by"]) == (1001, "rtproxy stopped", "proxy")
    assert f"recorded {path}: " in rec.output and "close 1001;" in rec.output
