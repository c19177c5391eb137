"""`rtproxy replay` option and input errors (in-process), and the client replay's URL and
header rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from rtproxy.cli.main import cli
from rtproxy.replay.client import ClientReplayError, parse_header, target_url


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["replay", *args])
    return res.exit_code, res.output


def test_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    code, out = run(str(tmp_path / "nope.rtrec"))
    assert code == 2
    assert out.strip().splitlines() == [f"rtproxy: error: {tmp_path / 'nope.rtrec'}: no such file"]


def test_not_a_recording(tmp_path: Path) -> None:
    bad = tmp_path / "bad.rtrec"
    bad.write_text("hello")
    code, out = run(str(bad))
    assert code == 2 and "not an .rtrec recording" in out and "Traceback" not in out


def test_bad_speed_and_pace(tmp_path: Path) -> None:
    code, out = run("x.rtrec", "--speed", "-2")
    assert code == 2 and "--speed" in out
    code, out = run("x.rtrec", "--speed", "fast")
    assert code == 2 and "--speed" in out
    code, out = run("x.rtrec", "--pace", "server")
    assert code == 2 and "--pace server is for client replay" in out
    # NaN ended every session after 0 messages; 1e-12 made times overflow the clock.
    for speed in ("nan", "1e-12", "-inf"):
        code, out = run("x.rtrec", "--speed", speed)
        assert code == 2 and f"--speed {speed}: expected a factor from 0.001 up, or 0 / max" in out
    # inf / NaN seconds closed every connection with 1011 and printed nothing.
    for wait in ("inf", "nan"):
        code, out = run("x.rtrec", "--wait-timeout", wait)
        assert code == 2 and f"{wait} is not a number of seconds" in out


def test_client_replay_errors(tmp_path: Path) -> None:
    code, out = run("x.rtrec", "--to", "ws://127.0.0.1:9", "--header", "no colon")
    assert code == 2 and 'expected "Name: value"' in out
    code, out = run("x.rtrec", "--to", "ws://127.0.0.1:9", "--pace", "client")
    assert code == 2 and "expected server or clock" in out


def test_client_replay_to_nothing_listening(tmp_path: Path) -> None:
    from tests.conftest import free_port

    sample = Path(__file__).resolve().parent.parent / "recordings" / "sample-voice-turn.rtrec"
    if not sample.exists():
        pytest.skip("no sample recording")
    code, out = run(str(sample), "--to", f"ws://127.0.0.1:{free_port()}", "--out-dir", str(tmp_path / "runs" / "new"))
    assert code == 2 and "cannot connect to ws://127.0.0.1:" in out
    assert len(out.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no run, no folder left behind


def test_parse_header() -> None:
    assert parse_header("OpenAI-Project: proj_1") == ("OpenAI-Project", "proj_1")
    assert parse_header("Authorization: Bearer a:b") == ("Authorization", "Bearer a:b")
    with pytest.raises(ValueError):
        parse_header("Bad Name: x")


def test_target_url_reuses_the_recorded_path_and_query() -> None:
    rec = "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert target_url(rec, "ws://127.0.0.1:9000") == "ws://127.0.0.1:9000/v1/realtime?model=gpt-realtime"
    assert target_url(rec, "http://127.0.0.1:9000/v1") == "ws://127.0.0.1:9000/v1/realtime?model=gpt-realtime"
    assert target_url(rec, "https://api.openai.com/v1/realtime?model=gpt-realtime-mini") == (
        "wss://api.openai.com/v1/realtime?model=gpt-realtime-mini"
    )
    with pytest.raises(ClientReplayError):
        target_url(rec, "ftp://x")
