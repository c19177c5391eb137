"""`rtproxy show` filters and --summary, on a session recorded through `rtproxy record`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import RTPROXY, ROOT
from tests.session_helpers import record_session


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_session(tmp_path_factory.mktemp("show") / "rec")


def show(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RTPROXY, "show", *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=60)


def json_lines(*args: str) -> list[dict]:
    p = show(*args, "--json")
    assert p.returncode == 0, p.stderr
    return [json.loads(line) for line in p.stdout.splitlines()]


def test_type_glob_keeps_only_matching_events_in_both_outputs(rec: Path) -> None:
    all_msgs = [d for d in json_lines(rec) if d["kind"] == "message"]
    deltas = [d for d in json_lines(rec, "--type", "response.output_audio.*") if d["kind"] == "message"]
    assert deltas and all(d["type"].startswith("response.output_audio.") for d in deltas)
    assert len(deltas) == sum(1 for d in all_msgs if (d["type"] or "").startswith("response.output_audio."))
    # the beta name matches the GA event too
    beta = [d for d in json_lines(rec, "--type", "response.audio.delta") if d["kind"] == "message"]
    assert len(beta) == sum(1 for d in all_msgs if d["type"] == "response.output_audio.delta")
    text = show(rec, "--type", "response.output_audio.delta").stdout
    rows = [line for line in text.splitlines() if " ms  " in line and ("<-" in line or "->" in line)]
    assert len(rows) == len(beta) and all("response.output_audio.delta" in r for r in rows)


def test_from_and_grep(rec: Path) -> None:
    client = [d for d in json_lines(rec, "--from", "client") if d["kind"] == "message"]
    assert client and all(d["from"] == "client" for d in client)
    assert len(client) == 12 + 6  # appends + update, commit, 2 creates, bogus, truncate
    hits = [d for d in json_lines(rec, "--grep", "pirate") if d["kind"] == "message"]
    assert {d["type"] for d in hits} == {"session.update", "session.updated"}
    both = [d for d in json_lines(rec, "--grep", "pirate", "--from", "server") if d["kind"] == "message"]
    assert [d["type"] for d in both] == ["session.updated"]
    # header and end lines stay, so the output is still a complete show --json document
    lines = json_lines(rec, "--grep", "no-such-text-anywhere")
    assert [d["kind"] for d in lines] == ["header", "end"]


def test_unfiltered_json_unchanged(rec: Path) -> None:
    from io import StringIO

    from rtproxy.cli.main import write_jsonl

    buf = StringIO()
    write_jsonl(str(rec), buf)
    assert show(rec, "--json").stdout == buf.getvalue()


def test_summary_lines(rec: Path) -> None:
    p = show(rec, "--summary")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "responses    1 completed" in out
    resp = [line for line in out.splitlines() if " response resp_" in line]
    assert len(resp) == 1
    assert "completed" in resp[0] and "audio 600 ms" in resp[0] and '"Hello! How can I help you today?"' in resp[0]
    errs = [line for line in out.splitlines() if " ms  error #" in line]  # the error lines, not findings quoting them
    assert len(errs) == 2
    assert "conversation_already_has_active_response" in errs[0]
    assert "response.create" in errs[0] and "named by error.event_id" in errs[0]
    assert "not.a.real.event" in errs[1] and "last client event before" in errs[1]


def test_summary_json_names_the_cause(rec: Path) -> None:
    lines = json_lines(rec, "--summary")
    responses = [d for d in lines if d["kind"] == "response"]
    errors = [d for d in lines if d["kind"] == "error"]
    assert [r["status"] for r in responses] == ["completed"]
    assert responses[0]["audio_ms"] == pytest.approx(600, abs=1)
    assert errors[0]["matched_by"] == "event_id" and errors[0]["cause_type"] == "response.create"
    assert errors[1]["matched_by"] == "preceding" and errors[1]["cause_type"] == "not.a.real.event"
    assert errors[0]["cause_index"] < errors[0]["index"]


def test_summary_reports_incomplete_status_details(tmp_path: Path) -> None:
    from tests.realtime_server import Scenario

    rec = record_session(tmp_path / "r", Scenario(response_status="incomplete"), errors=False, truncate_ms=None)
    out = show(rec, "--summary").stdout
    assert "responses    1 incomplete" in out
    assert "incomplete (incomplete, max_output_tokens)" in out


def test_bad_file_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.rtrec"
    bad.write_text("hello")
    p = show(bad, "--summary")
    assert p.returncode == 2 and "Traceback" not in p.stderr and str(bad) in p.stderr


def test_grep_for_bytes_that_are_not_utf8_finds_them(tmp_path: Path) -> None:
    from rtproxy.testing import make_recording

    # A shell passes $'\xff' as that byte; it matches the same byte in a message.
    p = make_recording(tmp_path / "b.rtrec", [(0, "client", b"\x00\xff\x01"), (1, "client", {"type": "x"})],
                       redact=False)
    out = subprocess.run([*RTPROXY, "show", "--json", "--grep", b"\xff", str(p)], capture_output=True, cwd=ROOT,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    kinds = [json.loads(line)["kind"] for line in out.stdout.splitlines()]
    assert kinds == ["header", "message", "end"]


def test_the_timeline_is_the_same_held_in_memory_or_spilled_to_a_file(rec: Path, monkeypatch) -> None:
    """show holds the timeline while it counts the header's totals; past its limit
    the timeline goes to a temporary file. Both give the same output."""
    import contextlib
    import importlib
    import io

    cli_main = importlib.import_module("rtproxy.cli.main")

    def run() -> str:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            cli_main._show_text(str(rec))
        return buf.getvalue()

    whole = run()
    lines = whole.splitlines()
    assert len(lines) > 30 and lines[0] == str(rec) and show(rec).stdout == whole
    monkeypatch.setattr(cli_main, "SPOOL_CHARS", 200)
    assert run() == whole
