"""`show --summary` flags what people miss: barge-ins against the audio received, audio formats."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from click.testing import CliRunner

from rtproxy.cli.main import cli
from rtproxy.io.format import RecordingWriter

MS = 1_000_000


def _write(path: Path, truncates: list[tuple[str, int]]) -> None:
    """A response whose item got 3 x 100 ms of pcm16, then the client's truncates."""
    with RecordingWriter(path) as w:
        w.write_header(url="ws://h/v1/realtime?model=m", model="m", started=1.0)
        w.write_handshake(status=101, request_headers=[], response_headers=[])
        t = 0
        def ev(from_client: bool, obj: dict) -> None:
            nonlocal t
            t += 10 * MS
            w.write_message(t, from_client, True, json.dumps(obj).encode())
        ev(False, {"type": "response.created", "response": {"id": "resp_1"}})
        for _ in range(3):
            ev(False, {"type": "response.output_audio.delta", "response_id": "resp_1", "item_id": "item_A",
                       "delta": base64.b64encode(b"\x01\x00" * 2400).decode()})
        ev(False, {"type": "response.done", "response": {"id": "resp_1", "status": "completed"}})
        for item, end_ms in truncates:
            ev(True, {"type": "conversation.item.truncate", "item_id": item, "content_index": 0, "audio_end_ms": end_ms})


def test_truncate_within_received_audio_is_plain(tmp_path: Path) -> None:
    p = tmp_path / "ok.rtrec"
    _write(p, [("item_A", 250)])
    out = CliRunner().invoke(cli, ["show", str(p), "--summary"]).output
    line = next(x for x in out.splitlines() if "truncate #" in x)
    assert "item item_A at 250 ms of 300 ms received" in line and "!!" not in line


def test_truncate_past_the_audio_received_and_before_any_audio_are_flagged(tmp_path: Path) -> None:
    p = tmp_path / "bad.rtrec"
    _write(p, [("item_A", 900), ("item_B", 0)])
    res = CliRunner().invoke(cli, ["show", str(p), "--summary"])
    assert res.exit_code == 0
    lines = [x for x in res.output.splitlines() if "truncate #" in x]
    assert "at 900 ms of 300 ms received  !! audio_end_ms is 600 ms past the audio received" in lines[0]
    assert "item item_B at 0 ms of 0 ms received  !! no audio had been received" in lines[1]
    js = [json.loads(x) for x in CliRunner().invoke(cli, ["show", str(p), "--summary", "--json"]).output.splitlines()]
    tr = [x for x in js if x["kind"] == "truncate"]
    assert [(x["item_id"], x["audio_end_ms"], x["received_ms"]) for x in tr] == [("item_A", 900, 300), ("item_B", 0, 0)]
    assert tr[0]["problem"].startswith("audio_end_ms is 600 ms past")


def test_audio_format_other_than_the_one_asked_for_is_flagged(tmp_path: Path) -> None:
    p = tmp_path / "fmt.rtrec"
    with RecordingWriter(p) as w:
        w.write_header(url="ws://h/v1/realtime?model=m", model="m", started=1.0)
        w.write_handshake(status=101, request_headers=[], response_headers=[])
        ask = {"type": "session.update", "session": {"type": "realtime", "audio": {
            "input": {"format": {"type": "audio/pcmu"}}, "output": {"format": {"type": "audio/pcmu"}}}}}
        got = {"type": "session.updated", "session": {"audio": {
            "input": {"format": {"type": "audio/pcmu"}}, "output": {"format": {"type": "audio/pcm", "rate": 24000}}}}}
        w.write_message(1 * MS, True, True, json.dumps(ask).encode())
        w.write_message(2 * MS, False, True, json.dumps(got).encode())
    out = CliRunner().invoke(cli, ["show", str(p), "--summary"]).output
    flagged = [x for x in out.splitlines() if "!! format" in x]
    assert flagged == ["  !! format    output audio: asked g711_ulaw 8000 Hz, the server reports pcm16 24000 Hz"]


def test_beta_format_names_asked_and_echoed_alike_are_not_flagged(tmp_path: Path) -> None:
    p = tmp_path / "beta.rtrec"
    with RecordingWriter(p) as w:
        w.write_header(url="ws://h/v1/realtime?model=m", model="m", started=1.0)
        w.write_handshake(status=101, request_headers=[], response_headers=[])
        s = {"input_audio_format": "g711_alaw", "output_audio_format": "pcm16"}
        w.write_message(1 * MS, True, True, json.dumps({"type": "session.update", "session": s}).encode())
        w.write_message(2 * MS, False, True, json.dumps({"type": "session.updated", "session": s}).encode())
    out = CliRunner().invoke(cli, ["show", str(p), "--summary"]).output
    assert "!! format" not in out and "responses    0" in out
