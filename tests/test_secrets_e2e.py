"""Planted secrets, in every place and spelling they travel, never reach a file.

Each secret is planted through the real recorder (``rtproxy record`` in front of
the Realtime-like server, which echoes the key back the way Azure does) and
through ``rtproxy import``; then the raw file, its decompressed bytes, every
export and ``redact``'s copy are searched for it. Each also checks that the
upstream got the real value: redaction happens on the way to disk only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
from pathlib import Path

import pytest
import websockets
import zstandard

from rtproxy.io.format import open_recording
from tests.conftest import ROOT, RTPROXY, Recorder, Upstream
from tests.realtime_server import Scenario, ServerThread

pytestmark = pytest.mark.e2e

TAG = "PLNTx9"


def secret(name: str) -> str:
    return f"{TAG}{name}Q7w3"


# Key-shaped secrets are found by their shape; the others by where they stand
# or because the request used them.
SK_ESCAPED = "sk-" + secret("escsk") + "aaaa"
EK_ESCAPED = "ek_" + secret("escek")
SK_MID = "sk-" + secret("midsk") + "Azzz"
SK_AS_KEY = "sk-" + secret("objkey") + "bbbb"
SK_UNDERSCORE = "sk_" + secret("underscore") + "cccc"
BEARER_TEXT = secret("bearertext")
AUTH_FIRST, AUTH_SECOND = secret("dupauth1"), secret("dupauth2")
MCP_URL_TOKEN = secret("mcpurltoken")
MCP_LIST_HDR, MCP_NESTED_HDR = secret("mcplisthdr"), secret("mcpnested")
AZURE_KEY = secret("azurekey") + "0f0f0f0f"  # not key-shaped: echoed by the upstream
APIM_KEY = secret("apimkey")
HDR_AUTH_1, HDR_AUTH_2 = "sk-" + secret("hdrauth1") + "dddd", "sk-" + secret("hdrauth2") + "eeee"
Q_SUB, Q_ACCESS, Q_REFRESH = secret("qsubkey"), secret("qaccess"), secret("qrefresh")
DEEP = "sk-" + secret("deepnest") + "ffff"


def escaped(s: str, i: int) -> str:
    """``s`` as JSON text with the character at ``i`` written as a \\u escape."""
    return s[:i] + f"\\u{ord(s[i]):04x}" + s[i + 1 :]


CLIENT_MESSAGES = [
    # keys written with JSON escapes
    '{"type":"conversation.item.create","item":{"type":"message","role":"user","content":[{"type":"input_text","text":"'
    + escaped(SK_ESCAPED, 0) + " and " + escaped(EK_ESCAPED, 0) + '"}]}}',
    '{"type":"conversation.item.create","item":{"type":"message","role":"user","content":[{"type":"input_text","text":"'
    + escaped(SK_MID, len(SK_MID) - 4) + '"}]}}',
    # a key used as an object key; sk_ keys; a bearer token in text
    json.dumps({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "metadata": {SK_AS_KEY: 1},
                "content": [{"type": "input_text", "text": f"use {SK_UNDERSCORE} with Authorization: Bearer {BEARER_TEXT}"}]}}),
    # duplicate authorization members, MCP url token, MCP headers as a list and nested
    '{"type":"session.update","session":{"type":"realtime","tools":[{"type":"mcp","server_label":"a",'
    f'"server_url":"https://mcp.example.com/sse?token={MCP_URL_TOKEN}&x=1",'
    f'"authorization":"{AUTH_FIRST}","authorization":"{AUTH_SECOND}",'
    f'"headers":[["X-Token","{MCP_LIST_HDR}"]]}},'
    '{"type":"mcp","server_label":"b","server_url":"https://mcp.example.com/b",'
    f'"headers":{{"outer":{{"inner":"{MCP_NESTED_HDR}"}}}}}}]}}}}',
    # an unknown event: the upstream echoes the Azure key in error.message
    '{"type":"bogus.event"}',
    # ~10,000 levels of nesting with a trigger inside (once recorded as nothing at all)
    '{"type":"conversation.item.create","headers":' + "[" * 10000 + f'"{DEEP}"' + "]" * 10000 + "}",
]

ALL = [SK_ESCAPED, EK_ESCAPED, SK_MID, SK_AS_KEY, SK_UNDERSCORE, BEARER_TEXT, AUTH_FIRST, AUTH_SECOND,
       MCP_URL_TOKEN, MCP_LIST_HDR, MCP_NESTED_HDR, AZURE_KEY, APIM_KEY, HDR_AUTH_1, HDR_AUTH_2,
       Q_SUB, Q_ACCESS, Q_REFRESH, DEEP]


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RTPROXY, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=120)


def leaked(data: bytes) -> list[str]:
    """Planted secrets found in ``data``, in any spelling that would give them away."""
    low = data.lower()
    found = []
    for s in ALL:
        core = s.split(TAG, 1)[1].encode().lower()  # the part after the tag, as written
        if core in low or base64.b64encode(s.encode()) in data:
            found.append(s)
    # an escaped spelling: decode \\u escapes and look again
    text = re.sub(rb"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)).encode(), data).lower()
    found += [s for s in ALL if s not in found and s.split(TAG, 1)[1].encode().lower() in text]
    return found


async def client(url: str) -> list[str]:
    headers = [
        ("Authorization", f"Bearer {HDR_AUTH_1}"),
        ("Authorization", f"Bearer {HDR_AUTH_2}"),
        ("api-key", AZURE_KEY),
        ("Ocp-Apim-Subscription-Key", APIM_KEY),
    ]
    got: list[str] = []
    async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
        got.append(str(await ws.recv()))  # session.created
        for m in CLIENT_MESSAGES:
            await ws.send(m)
        while True:
            got.append(str(await asyncio.wait_for(ws.recv(), 10)))
            if '"error"' in got[-1] and "bogus" in got[-1]:
                break
    return got


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("planted")
    with ServerThread(Scenario(echo_credentials=True)) as srv:
        rec = Recorder(srv.url, tmp / "rec")
        try:
            query = f"model=gpt-realtime&subscription-key={Q_SUB}&access-token={Q_ACCESS}&refresh_token={Q_REFRESH}"
            got = asyncio.run(client(f"ws://127.0.0.1:{rec.port}/v1/realtime?{query}"))
            [path] = rec.wait_files(1)
        finally:
            rec.stop()
        yield path, srv.logs[0], got, rec


def test_the_upstream_gets_every_secret_and_every_message(planted) -> None:
    path, log, got, _ = planted
    assert log.headers["api-key"] == AZURE_KEY and log.headers["Ocp-Apim-Subscription-Key"] == APIM_KEY
    assert Q_SUB in log.path and Q_REFRESH in log.path
    assert log.received == CLIENT_MESSAGES  # the deep one included
    assert AZURE_KEY in got[-1]  # the echo reached the client unchanged


def test_the_file_holds_every_message_and_no_secret(planted) -> None:
    path, log, _, _ = planted
    raw = path.read_bytes()
    data = zstandard.ZstdDecompressor().decompressobj().decompress(raw[10:])
    assert leaked(raw) == [] and leaked(data) == []
    with open_recording(path) as r:
        msgs = list(r.messages())
        hs = r.recording.handshake
    client_msgs = [m for m in msgs if m.from_client]
    assert len(client_msgs) == len(CLIENT_MESSAGES)  # nothing forwarded goes unrecorded
    assert client_msgs[-1].redacted and len(client_msgs[-1].content) > 20000
    headers = {k.lower(): v for k, v in hs["response_headers"]}
    assert "x-echo-api-key" in headers  # the echoing header is kept, its value masked
    # every other message is byte-exact
    for m, sent in zip(client_msgs, CLIENT_MESSAGES):
        if not m.redacted:
            assert m.content == sent.encode()
    assert sum(m.redacted for m in client_msgs) == 5  # all but the bogus event


@pytest.mark.parametrize("cmd", [
    ["show"], ["show", "--json"], ["show", "--summary"],
    ["export", "--format", "jsonl", "-o", "-"],
])
def test_no_command_prints_a_secret(planted, cmd: list[str]) -> None:
    path = planted[0]
    p = run(*cmd[:1], path, *cmd[1:])
    assert p.returncode == 0, p.stderr[-2000:]
    assert leaked(p.stdout.encode("utf-8", "surrogateescape")) == []


@pytest.mark.parametrize("fmt", ["html", "har", "jsonl", "wav"])
def test_no_export_holds_a_secret(planted, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"out.{fmt}"
    p = run("export", planted[0], "--format", fmt, "-o", out)
    assert p.returncode == 0, p.stderr[-2000:]
    for f in tmp_path.iterdir():
        assert leaked(f.read_bytes()) == [], f


def test_redacted_copy_holds_no_secret(planted, tmp_path: Path) -> None:
    out = tmp_path / "share.rtrec"
    p = run("redact", planted[0], "-o", out, "--strip-audio")
    assert p.returncode == 0, p.stderr
    raw = out.read_bytes()
    assert leaked(zstandard.ZstdDecompressor().decompressobj().decompress(raw[10:])) == []


def test_refusal_echoing_the_token_is_masked(tmp_path: Path) -> None:
    token = "sk-" + secret("refused") + "gggg"
    with ServerThread(Scenario(echo_credentials=True, refuse_status=401)) as srv:
        rec = Recorder(srv.url, tmp_path / "rec")
        try:
            async def go() -> int:
                try:
                    async with websockets.connect(
                        f"ws://127.0.0.1:{rec.port}/v1/realtime?model=gpt-realtime",
                        additional_headers=[("Authorization", f"Bearer {token}"), ("api-key", AZURE_KEY)],
                    ):
                        return 101
                except websockets.InvalidStatus as exc:
                    body = exc.response.body or b""
                    assert token.encode() in body  # the client got the echo as sent
                    return exc.response.status_code

            assert asyncio.run(go()) == 401
            [path] = rec.wait_files(1)
        finally:
            rec.stop()
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes()[10:])
    assert token.split(TAG)[1].encode() not in raw and AZURE_KEY.split(TAG)[1].encode() not in raw
    with open_recording(path) as r:
        hs = r.recording.handshake
    assert hs["status"] == 401
    assert b"invalid_api_key" in hs["response_body"]  # the rest of the body is kept
    www = [v for k, v in hs["response_headers"] if k.lower() == "www-authenticate"]
    assert www and www[0].startswith("Bearer ")


def test_har_import_removes_every_variant(tmp_path: Path) -> None:
    """The same messages and handshake, arriving as a browser's HAR."""
    msgs = [{"type": "send", "time": 1.0 + i / 10, "opcode": 1, "data": m} for i, m in enumerate(CLIENT_MESSAGES)]
    msgs.append({"type": "receive", "time": 2.0, "opcode": 1,
                 "data": json.dumps({"type": "error", "error": {"message": f"bad key {AZURE_KEY}"}})})
    har = {"log": {"version": "1.2", "creator": {"name": "test", "version": "1"}, "entries": [{
        "startedDateTime": "2026-01-01T00:00:00.000Z", "time": 1,
        "request": {"method": "GET", "httpVersion": "HTTP/1.1",
                    "url": f"wss://res.openai.azure.com/openai/realtime?api-version=1&subscription-key={Q_SUB}&access-token={Q_ACCESS}",
                    "headers": [{"name": "api-key", "value": AZURE_KEY}, {"name": "Authorization", "value": f"Bearer {HDR_AUTH_1}"},
                                {"name": "authorization", "value": f"Bearer {HDR_AUTH_2}"},
                                {"name": "Ocp-Apim-Subscription-Key", "value": APIM_KEY}],
                    "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0},
        "response": {"status": 101, "statusText": "Switching Protocols", "httpVersion": "HTTP/1.1",
                     "headers": [{"name": "X-Echo-Api-Key", "value": AZURE_KEY}], "cookies": [],
                     "content": {"size": 0, "mimeType": "x-unknown"}, "redirectURL": "", "headersSize": -1, "bodySize": 0},
        "cache": {}, "timings": {"send": 0, "wait": 0, "receive": 0}, "_resourceType": "websocket",
        "_webSocketMessages": msgs,
    }]}}
    src = tmp_path / "capture.har"
    src.write_text(json.dumps(har))
    p = run("import", src, "-o", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    [out] = list((tmp_path / "out").glob("*.rtrec"))
    data = zstandard.ZstdDecompressor().decompressobj().decompress(out.read_bytes()[10:])
    assert leaked(data) == []
    with open_recording(out) as r:
        assert sum(1 for m in r.messages() if m.from_client) == len(CLIENT_MESSAGES)


def _refusing(response: bytes):
    """A raw socket server answering every request with ``response`` (a refused upgrade)."""
    import socket
    import threading

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(response)

    threading.Thread(target=serve, daemon=True).start()
    return sock


def _raw_file(path: Path) -> bytes:
    return path.read_bytes() + zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes()[10:])


def test_close_reasons_pings_and_refusal_reasons_hold_no_key(tmp_path: Path) -> None:
    """A close reason echoing the key ("invalid api key sk-..."), a ping carrying it, a
    refusal's reason phrase quoting it, and a gzip-encoded refusal body holding it were
    all written to the file as they came."""
    import gzip

    key = "sk-" + secret("closeping") + "hhhh"

    async def upstream(ws, up) -> None:
        await ws.recv()
        await ws.ping(key.encode())
        await asyncio.sleep(0.2)
        await ws.close(4001, f"invalid api key {key}")

    with Upstream(upstream) as up:
        rec = Recorder(up.url, tmp_path / "rec")
        try:
            async def go() -> int | None:
                async with websockets.connect(f"ws://127.0.0.1:{rec.port}/v1/realtime?model=m",
                                              additional_headers=[("Authorization", f"Bearer {key}")]) as ws:
                    await ws.send('{"type":"session.update","session":{}}')
                    try:
                        await asyncio.wait_for(ws.recv(), 10)
                    except websockets.ConnectionClosed as exc:
                        assert exc.rcvd is not None and key in exc.rcvd.reason  # the client got it as sent
                        return exc.rcvd.code
                return None

            assert asyncio.run(go()) == 4001
            [path] = rec.wait_files(1)
        finally:
            rec.stop()
    assert secret("closeping").encode() not in _raw_file(path)
    with open_recording(path) as r:
        list(r.messages())
        close = r.recording.close
    assert close["code"] == 4001 and close["reason"].startswith("invalid api key [REDACTED")

    body = gzip.compress(f'{{"error":"bad key {key}"}}'.encode())
    refusal = (f"HTTP/1.1 401 Bad key {key}\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    up = _refusing(refusal)
    rec = Recorder(f"http://127.0.0.1:{up.getsockname()[1]}", tmp_path / "rec2")
    try:
        async def refused() -> int:
            try:
                async with websockets.connect(f"ws://127.0.0.1:{rec.port}/v1/realtime?model=m",
                                              additional_headers=[("Authorization", f"Bearer {key}")]):
                    return 101
            except websockets.InvalidStatus as exc:
                return exc.response.status_code

        assert asyncio.run(refused()) == 401
        [path] = rec.wait_files(1)
    finally:
        rec.stop()
        up.close()
    assert secret("closeping").encode() not in _raw_file(path)
    with open_recording(path) as r:
        hs = r.recording.handshake
    assert hs["status"] == 401 and hs["reason"] == "Bad key [REDACTED by rtproxy]"
    assert hs["response_body"] == b'{"error":"bad key [REDACTED by rtproxy]"}'  # decoded, redacted
    assert not [k for k, _ in hs["response_headers"] if k.lower() == "content-encoding"]


def test_a_key_streamed_in_deltas_reaches_the_client_whole_and_the_file_cut(tmp_path: Path) -> None:
    """The model spells a key out in a transcript, four characters a delta (each
    delta too short to be a key); the recorded deltas mask it from its 11th
    character on, the done event wholly; the client gets every delta as sent."""
    key = "sk-proj-" + secret("streamed") + "0123456789abcdefghijklmnopqrstuvwxyz" * 3
    text = f"Your key is {key}, as you asked."
    # four characters a delta, but for 64 that look like base64 audio (split out as such)
    cut = len("Your key is sk-proj-") + 12
    pieces = [text[i:i + 4] for i in range(0, cut, 4)] + [text[cut:cut + 64]]
    pieces += [text[i:i + 4] for i in range(cut + 64, len(text), 4)]
    assert "".join(pieces) == text and re.fullmatch(r"[A-Za-z0-9]{64}", pieces[cut // 4])

    async def upstream(ws, up) -> None:
        await ws.recv()
        for i, p in enumerate(pieces):
            await ws.send(json.dumps({"type": "response.output_audio_transcript.delta", "event_id": f"event_{i}",
                                      "response_id": "resp_1", "item_id": "item_1", "output_index": 0,
                                      "content_index": 0, "delta": p}))
        await ws.send(json.dumps({"type": "response.output_audio_transcript.done", "response_id": "resp_1",
                                  "item_id": "item_1", "output_index": 0, "content_index": 0, "transcript": text}))
        await ws.recv()

    with Upstream(upstream) as up:
        rec = Recorder(up.url, tmp_path / "rec")
        try:
            async def go() -> str:
                async with websockets.connect(f"ws://127.0.0.1:{rec.port}/v1/realtime?model=m") as ws:
                    await ws.send('{"type":"response.create"}')
                    got = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(len(pieces) + 1)]
                    await ws.send('{"type":"session.update","session":{}}')
                return "".join(e["delta"] for e in got[:-1])

            assert asyncio.run(go()) == text
            [path] = rec.wait_files(1)
        finally:
            rec.stop()
    raw = _raw_file(path)
    assert secret("streamed").encode() not in raw and b"0123456789abcdef" not in raw
    with open_recording(path) as r:
        server = [json.loads(m.content) for m in r.messages() if not m.from_client]
    spelled = "".join(e.get("delta", "") for e in server)
    assert spelled.startswith("Your key is sk-proj-") and spelled.endswith("[REDACTED by rtproxy], as you asked.")
    assert len(spelled.split("[REDACTED")[0]) <= len("Your key is sk-") + 10 + 3
    assert server[-1]["transcript"] == "Your key is [REDACTED by rtproxy], as you asked."


def test_replay_to_a_live_endpoint_records_its_answers_without_the_keys(tmp_path: Path) -> None:
    """``rtproxy replay --to``: the live endpoint echoes the --header key in an error and
    spells a key out in deltas; the new run's file holds neither."""
    from rtproxy.testing import make_recording

    azure = secret("replayazure") + "0f0f0f0f"
    key = "sk-proj-" + secret("replaystream") + "0123456789abcdefghijklmnopqrstuvwxyz"
    text = f"The key is {key}."

    async def upstream(ws, up) -> None:
        await ws.recv()
        await ws.send(json.dumps({"type": "error", "error": {"message": f"key {ws.request.headers['api-key']} is not valid"}}))
        for i in range(0, len(text), 3):
            await ws.send(json.dumps({"type": "response.output_text.delta", "item_id": "item_1", "delta": text[i:i + 3]}))
        await ws.send(json.dumps({"type": "response.done", "response": {"id": "resp_1"}}))

    rec = make_recording(tmp_path / "orig.rtrec", [
        (0, "server", {"type": "session.created", "session": {}}),
        (5, "client", {"type": "response.create"}),
        (10, "server", {"type": "response.done", "response": {"id": "resp_0"}}),
    ])
    with Upstream(upstream) as up:
        p = run("replay", rec, "--to", up.url, "--header", f"api-key: {azure}", "--out-dir", tmp_path / "runs")
    assert p.returncode == 0, p.stderr
    [new] = (tmp_path / "runs").glob("*.rtrec")
    raw = _raw_file(new)
    assert secret("replayazure").encode() not in raw and secret("replaystream").encode() not in raw
    with open_recording(new) as r:
        server = [json.loads(m.content) for m in r.messages() if not m.from_client]
    assert server[0]["error"]["message"] == "key [REDACTED by rtproxy] is not valid"
    assert "".join(e.get("delta", "") for e in server).startswith("The key is sk-proj-")
