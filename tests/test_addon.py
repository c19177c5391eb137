"""The recorder addon, driven with mitmproxy's own test helpers (no sockets)."""

from __future__ import annotations

import asyncio
import os
import base64
import json
import re
from pathlib import Path

import pytest
import zstandard
from mitmproxy import exceptions, http
from mitmproxy.test import taddons, tflow
from mitmproxy.websocket import WebSocketMessage
from wsproto.frame_protocol import Opcode

from rtproxy.record.addon import RealtimeRecorder, SessionSummary
from rtproxy.io.format import open_recording
from rtproxy.protocol.redaction import MARKER

SECRET = "sk-proj-ADDONsecret0123456789abcd"
NAME_RE = re.compile(r"^\d{8}T\d{6}Z-gpt-realtime-[0-9a-f]{6}\.rtrec$")


def _flow(query: str = "model=gpt-realtime") -> http.HTTPFlow:
    f = tflow.twebsocketflow()
    f.websocket.messages = []
    f.request.host = "api.openai.com"
    f.request.scheme = "https"
    f.request.port = 443
    f.request.path = f"/v1/realtime?{query}"
    f.request.headers["Authorization"] = f"Bearer {SECRET}"
    f.request.headers["Sec-WebSocket-Protocol"] = "realtime"
    f.response.headers["Sec-WebSocket-Protocol"] = "realtime"
    return f


def _send(addon: RealtimeRecorder, f: http.HTTPFlow, from_client: bool, content: bytes, text: bool = True) -> None:
    f.websocket.messages.append(WebSocketMessage(Opcode.TEXT if text else Opcode.BINARY, from_client, content))
    addon.websocket_message(f)


@pytest.fixture
def recorder(tmp_path: Path):
    summaries: list[SessionSummary] = []
    addon = RealtimeRecorder(on_session_end=summaries.append)
    with taddons.context(addon) as tctx:
        tctx.configure(addon, rtrec_dir=str(tmp_path / "rec"))
        addon.summaries = summaries  # type: ignore[attr-defined]
        yield addon, tctx, tmp_path / "rec"


def _only_file(d: Path) -> Path:
    files = sorted(d.glob("*.rtrec"))
    assert len(files) == 1, files
    return files[0]


def test_session_becomes_one_file_with_every_message(recorder) -> None:
    addon, _, out = recorder
    f = _flow(f"model=gpt-realtime&api-key={SECRET}")
    addon.websocket_start(f)
    path = _only_file(out)
    assert NAME_RE.match(path.name), path.name
    audio = json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(4800)).decode()}).encode()
    sent = [
        (False, True, b'{"type":"session.created","event_id":"e1"}'),
        (True, True, audio),
        (True, False, b"\x00\x01\x02"),
        (True, True, "{\"type\":\"x\",\"t\":\"é\"}".encode()),
        (False, True, b""),
    ]
    for fc, text, content in sent:
        _send(addon, f, fc, content, text)
    f.websocket.close_code, f.websocket.close_reason, f.websocket.closed_by_client = 1000, "bye", True
    addon.websocket_end(f)

    with open_recording(path) as r:
        rec, msgs = r.read_all()
    assert [(m.from_client, m.is_text, m.content) for m in msgs] == sent
    assert [m.t_ns for m in msgs] == sorted(m.t_ns for m in msgs)
    assert rec.header["model"] == "gpt-realtime"
    assert rec.header["url"].startswith("wss://api.openai.com/v1/realtime?model=gpt-realtime&api-key=")
    hs = rec.handshake
    assert (hs["status"], hs["subprotocol"], hs["method"]) == (101, "realtime", "GET")
    assert ["Authorization", f"Bearer {MARKER}"] in hs["request_headers"]
    assert SECRET not in repr(rec.header) + repr(hs)
    assert (rec.close["code"], rec.close["reason"], rec.close["closed_by"]) == (1000, "bye", "client")
    assert rec.end["messages"] == {"client": 3, "server": 2} and not rec.truncated
    [summary] = addon.summaries
    assert summary.path == str(path)
    assert (summary.messages_client, summary.messages_server, summary.close_code) == (3, 2, 1000)
    assert summary.bytes_client == len(audio) + 3 + len("{\"type\":\"x\",\"t\":\"é\"}".encode())
    assert str(path) in summary.line()
    assert f.websocket.messages == []  # nothing kept once the session is on disk


def test_messages_are_on_disk_before_the_hook_returns(recorder) -> None:
    addon, _, out = recorder
    f = _flow()
    addon.websocket_start(f)
    path = _only_file(out)
    _send(addon, f, True, b'{"type":"response.create"}')
    # Another reader sees the message at once (the session is still open).
    with open_recording(path) as r:
        assert [m.content for m in r.messages()] == [b'{"type":"response.create"}']
        assert r.recording.truncated


def test_memory_stays_flat_over_100k_messages(recorder) -> None:
    addon, _, out = recorder
    f = _flow()
    addon.websocket_start(f)
    longest = 0
    for i in range(100_000):
        _send(addon, f, i % 2 == 0, b'{"type":"response.output_text.delta","delta":"%d"}' % i)
        longest = max(longest, len(f.websocket.messages))
    assert longest <= 1
    addon.websocket_end(f)
    with open_recording(_only_file(out)) as r:
        n = 0
        for n, m in enumerate(r.messages(), 1):  # noqa: B007
            pass
        assert n == 100_000 and m.content == b'{"type":"response.output_text.delta","delta":"99999"}'


def test_keep_messages_option_leaves_them_in_the_flow(recorder) -> None:
    addon, tctx, _ = recorder
    tctx.configure(addon, rtrec_keep_messages=True)
    f = _flow()
    addon.websocket_start(f)
    for i in range(5):
        _send(addon, f, True, b"m%d" % i)
    assert len(f.websocket.messages) == 5


def test_cycle_through_mitmproxy_event_sequence(recorder) -> None:
    """The hook order mitmproxy really uses (request, response, websocket_start/message/end)."""
    addon, tctx, out = recorder
    f = _flow()
    f.websocket.messages = [
        WebSocketMessage(Opcode.TEXT, False, b'{"type":"session.created"}'),
        WebSocketMessage(Opcode.BINARY, True, b"\xff"),
    ]
    f.websocket.close_code, f.websocket.closed_by_client = 4000, False
    asyncio.run(tctx.cycle(addon, f))
    with open_recording(_only_file(out)) as r:
        rec, msgs = r.read_all()
    assert [(m.from_client, m.content) for m in msgs] == [(False, b'{"type":"session.created"}'), (True, b"\xff")]
    assert (rec.close["code"], rec.close["closed_by"]) == (4000, "server")


def test_refused_upgrade_is_a_recording_without_messages(recorder) -> None:
    addon, _, out = recorder
    f = _flow()
    f.websocket = None
    body = b'{"error":{"type":"invalid_request_error","code":"invalid_api_key"}}'
    f.response = http.Response.make(401, body, {"Content-Type": "application/json", "Set-Cookie": "s=" + SECRET})
    addon.response(f)
    path = _only_file(out)
    with open_recording(path) as r:
        rec, msgs = r.read_all()
    assert msgs == []
    hs = rec.handshake
    assert (hs["status"], hs["reason"], hs["response_body"]) == (401, "Unauthorized", body)
    assert ["Content-Type", "application/json"] in hs["response_headers"]
    assert ["Set-Cookie", MARKER] in hs["response_headers"]
    assert rec.end["refused"] is True and not rec.truncated
    assert addon.summaries[0].status == 401 and "refused upgrade: HTTP 401" in addon.summaries[0].line()


def test_file_is_created_before_the_101_reaches_the_client(recorder) -> None:
    addon, _, out = recorder
    f = _flow()
    addon.response(f)  # mitmproxy calls this with the 101, before forwarding it
    path = _only_file(out)
    addon.websocket_start(f)
    _send(addon, f, True, b"x")
    addon.websocket_end(f)
    assert _only_file(out) == path
    with open_recording(path) as r:
        assert [m.content for m in r.messages()] == [b"x"]


def test_session_is_refused_when_its_file_cannot_be_created(recorder, caplog) -> None:
    """Better no session than an unrecorded one: the flow is killed before the 101 goes out."""
    addon, _, out = recorder
    out.rmdir()
    f = _flow()
    with caplog.at_level("ERROR", logger="rtproxy"):
        addon.response(f)
    assert f.error is not None and f.error.msg == f.error.KILLED_MESSAGE
    assert addon.sessions == {}
    assert "cannot create a recording" in caplog.text and str(out) in caplog.text


def test_file_failing_at_websocket_start_stops_forwarding(recorder) -> None:
    """Without the 101 response hook (another proxy set-up), the file opens at websocket_start."""
    addon, _, out = recorder
    out.rmdir()
    f = _flow()
    addon.websocket_start(f)
    _send(addon, f, True, b"not recorded")
    assert f.websocket.messages[-1].dropped and addon.sessions == {}


def test_write_failure_mid_session_stops_forwarding(recorder, caplog) -> None:
    addon, _, out = recorder
    f = _flow()
    addon.response(f)
    addon.websocket_start(f)
    _send(addon, f, True, b"recorded")
    assert not f.websocket.messages[-1].dropped
    sess = addon.sessions[f.id]
    real_fd = sess.writer._fd
    sess.writer._fd = os.open(os.devnull, os.O_RDONLY)  # writes now fail, as on a full disk
    with caplog.at_level("ERROR", logger="rtproxy"):
        _send(addon, f, False, b"cannot be written")
    assert f.websocket.messages[-1].dropped
    assert "no longer forwarded" in caplog.text and sess.writer.path in caplog.text
    # and the flow is to be closed with 1011 (by rtproxy.record.wsclose, in the layer)
    assert f.metadata["rtproxy.close"] == "rtproxy: recording failed: Bad file descriptor"
    _send(addon, f, True, b"later")
    assert f.websocket.messages[-1].dropped and len(f.websocket.messages) <= 1
    addon.websocket_end(f)
    os.close(real_fd)
    with open_recording(_only_file(out)) as r:
        assert [m.content for m in r.messages()] == [b"recorded"]


def test_plain_http_responses_are_not_recorded(recorder) -> None:
    addon, _, out = recorder
    f = tflow.tflow(resp=True)
    addon.response(f)
    f.response.status_code = 403
    addon.response(f)
    assert list(out.glob("*")) == []


def test_done_closes_out_open_sessions(recorder) -> None:
    addon, _, out = recorder
    flows = [_flow() for _ in range(3)]
    for f in flows:
        addon.websocket_start(f)
        _send(addon, f, True, b'{"type":"response.create"}')
    addon.done()
    files = sorted(out.glob("*.rtrec"))
    assert len(files) == 3
    for p in files:
        with open_recording(p) as r:
            rec, msgs = r.read_all()
        assert [m.content for m in msgs] == [b'{"type":"response.create"}']
        assert not rec.truncated and rec.close["closed_by"] == "proxy" and rec.end["stopped"] is True
    assert addon.sessions == {} and len(addon.summaries) == 3
    # A session that ends after done() (connection torn down) does not write again.
    addon.websocket_end(flows[0])
    assert len(addon.summaries) == 3


def test_secret_in_a_message_is_redacted_and_flagged(recorder) -> None:
    addon, _, out = recorder
    f = _flow()
    addon.websocket_start(f)
    msg = json.dumps({"type": "session.update", "session": {"tools": [{"type": "mcp", "authorization": "tok-PLANTED"}]}}).encode()
    _send(addon, f, True, msg)
    addon.websocket_end(f)
    path = _only_file(out)
    with open_recording(path) as r:
        [m] = list(r.messages())
    assert m.redacted and b"tok-PLANTED" not in m.content and MARKER.encode() in m.content


def test_subprotocol_echoing_the_key_is_masked(recorder) -> None:
    addon, _, out = recorder
    f = _flow()
    f.request.headers["Sec-WebSocket-Protocol"] = f"realtime, openai-insecure-api-key.{SECRET}"
    f.response.headers["Sec-WebSocket-Protocol"] = f"openai-insecure-api-key.{SECRET}"
    addon.response(f)
    addon.websocket_end(f)
    path = _only_file(out)
    raw = zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes()[10:])
    assert SECRET.encode() not in raw and b"openai-insecure-api-key.REDACTED" in raw
    with open_recording(path) as r:
        assert r.recording.handshake["subprotocol"] == "openai-insecure-api-key.REDACTED"
        assert ["Sec-WebSocket-Protocol", "realtime, openai-insecure-api-key.REDACTED"] in r.recording.handshake["request_headers"]


def test_bad_rtrec_dir_is_an_options_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    addon = RealtimeRecorder()
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match="rtrec_dir"):
            tctx.configure(addon, rtrec_dir=str(blocker / "sub"))
        with pytest.raises(exceptions.OptionsError, match="rtrec_dir"):
            tctx.configure(addon, rtrec_dir=str(blocker))


def test_mitmdump_script_exposes_the_recorder() -> None:
    root = Path(__file__).resolve().parent.parent
    with taddons.context() as tctx:
        module = tctx.script(str(root / "addons" / "realtime_recorder.py"))
        assert [type(a).__name__ for a in module.addons] == ["RealtimeRecorder"]


def test_secret_beside_audio_in_one_message_is_redacted_and_audio_kept(recorder) -> None:
    """The recorder looks for secrets around the audio; one next to it is still found."""
    addon, tctx, out = recorder
    f = _flow()
    addon.response(f)
    addon.websocket_start(f)
    audio = bytes(range(256)) * 40
    msg = json.dumps(
        {
            "type": "response.create",
            "response": {
                "tools": [{"type": "mcp", "server_url": "https://mcp.example", "headers": {"X-Key": "mcp-hdr-0123456789"}}],
                "input": [{"type": "message", "role": "user", "content": [{"type": "input_audio", "audio": base64.b64encode(audio).decode()}]}],
            },
        }
    ).encode()
    _send(addon, f, True, msg)
    addon.websocket_end(f)
    with open_recording(_only_file(out)) as r:
        (m,) = list(r.messages())
    assert m.redacted and b"mcp-hdr-0123456789" not in m.content and MARKER.encode() in m.content
    assert m.audio == [audio]
    assert json.loads(m.content)["response"]["input"][0]["content"][0]["audio"] == base64.b64encode(audio).decode()
