"""`show --summary` flags what people miss: barge-ins against the audio received, audio formats,
and the findings of `rtproxy check`."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rtproxy.check import check_file
from rtproxy.check.render import finding_line
from rtproxy.cli.main import cli
from rtproxy.io.format import RecordingWriter
from tests.check_helpers import response, start, write

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


# ---------------------------------------------------------------- findings of rtproxy check

def _tool_call(t: float, call_id: str = "call_1", name: str = "get_weather") -> list[tuple[float, str, Any]]:
    """A response that is a function call (announced, arguments done, done)."""
    item = {"id": "item_fc", "type": "function_call", "call_id": call_id, "name": name, "arguments": "{}"}
    return [
        (t, "server", {"type": "response.created", "event_id": "ev_fc_c", "response": {"id": "resp_fc"}}),
        (t + 1, "server", {"type": "response.output_item.added", "event_id": "ev_fc_a", "response_id": "resp_fc",
                           "output_index": 0, "item": {**item, "arguments": ""}}),
        (t + 2, "server", {"type": "response.function_call_arguments.done", "event_id": "ev_fc_d",
                           "response_id": "resp_fc", "item_id": "item_fc", "output_index": 0, "call_id": call_id,
                           "name": name, "arguments": "{}"}),
        (t + 3, "server", {"type": "response.output_item.done", "event_id": "ev_fc_id", "response_id": "resp_fc",
                           "output_index": 0, "item": item}),
        (t + 4, "server", {"type": "response.done", "event_id": "ev_fc_done",
                           "response": {"id": "resp_fc", "status": "completed", "output": [item]}}),
    ]


@pytest.fixture
def with_findings(tmp_path: Path) -> Path:
    """A barge-in truncating 4 s into the 1 s of audio received (RT002), and a function call never answered (RT007)."""
    ev = start() + response(100) + [
        (400, "client", {"type": "conversation.item.truncate", "event_id": "ev_tr", "item_id": "item_a",
                         "content_index": 0, "audio_end_ms": 5000}),
    ] + _tool_call(500)
    return write(tmp_path, ev, "findings.rtrec")


def _show(*args: str) -> str:
    res = CliRunner().invoke(cli, ["show", *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_summary_lists_the_findings_of_check_after_the_responses(with_findings: Path) -> None:
    out = _show(str(with_findings), "--summary").splitlines()
    checked = check_file(with_findings, min_severity="warning")
    assert {f.code for f in checked} == {"RT002", "RT007"}
    head = out.index("  findings     1 error, 1 warning (rtproxy check)")
    # after every response and truncate line, one line per finding, as `rtproxy check` prints it
    assert head > max(i for i, x in enumerate(out) if " response resp_" in x or " truncate #" in x)
    assert out[head + 1:] == [finding_line(f) for f in checked]
    assert re.fullmatch(r"\s+0\.400 s  RT002 error    #\d+ conversation\.item\.truncate: truncate of item item_a .*",
                        out[head + 1])
    assert "RT007 warning" in out[head + 2] and "call call_1 (get_weather) never answered" in out[head + 2]
    # the same findings as `rtproxy check FILE`
    text = CliRunner().invoke(cli, ["check", str(with_findings)]).output
    assert all(line in text.splitlines() for line in out[head + 1:])


def test_summary_of_a_clean_recording_says_no_findings(tmp_path: Path) -> None:
    p = write(tmp_path, start() + response(100), "clean.rtrec")
    out = _show(str(p), "--summary").splitlines()
    assert out[-1] == "  findings     none (rtproxy check)"
    assert sum("findings" in x for x in out) == 1
    last = json.loads(_show(str(p), "--summary", "--json").splitlines()[-1])
    assert last == {"kind": "findings", "findings": []}


def test_summary_json_has_the_findings_with_the_check_json_fields(with_findings: Path) -> None:
    lines = [json.loads(x) for x in _show(str(with_findings), "--summary", "--json").splitlines()]
    assert [x["kind"] for x in lines] == ["response", "response", "truncate", "findings"]
    found = lines[-1]["findings"]
    report = json.loads(CliRunner().invoke(cli, ["check", str(with_findings), "--format", "json"]).output)
    assert found == report["files"][0]["findings"]
    assert [f["code"] for f in found] == ["RT002", "RT007"]
    assert set(found[0]) == {"code", "severity", "title", "message", "t", "event_index", "event_type", "related"}


def test_summary_findings_follow_the_check_settings(with_findings: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.rtproxy.check]\nignore = ["RT002"]\n')
    monkeypatch.chdir(tmp_path)
    out = _show(str(with_findings), "--summary").splitlines()
    assert "  findings     0 errors, 1 warning (rtproxy check)" in out
    assert not any("RT002" in x for x in out)


def test_summary_when_check_cannot_run_is_one_line(with_findings: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.rtproxy.check]\nmin-severity = "loud"\n')
    monkeypatch.chdir(tmp_path)
    out = _show(str(with_findings), "--summary").splitlines()
    assert out[-1].startswith("  findings     not checked: ") and "min-severity" in out[-1]
    assert " response resp_1" in "\n".join(out)  # the rest of the summary is all there
    last = json.loads(_show(str(with_findings), "--summary", "--json").splitlines()[-1])
    assert last["findings"] == [] and "min-severity" in last["error"]


def test_summary_findings_quote_the_recording_as_escapes(tmp_path: Path) -> None:
    name = "get\x1b]0;pwned\x07\u202e</script><img src=x onerror=alert(1)>"
    p = write(tmp_path, start() + _tool_call(100, call_id="call\x1b[2J", name=name), "hostile.rtrec")
    out = _show(str(p), "--summary")
    line = next(x for x in out.splitlines() if "RT007" in x)
    assert "call\\x1b[2J (get\\x1b]0;pwned\\x07\\u202e</script><img src=x onerror=alert(1)>) never answered" in line
    assert not any(c in out for c in "\x1b\x07\u202e")
    js = _show(str(p), "--summary", "--json")
    assert js.isascii()
    assert json.loads(js.splitlines()[-1])["findings"][0]["message"].startswith(f"call call\x1b[2J ({name})")
