"""rtproxy check on the command line: exit codes, formats, selection, config, folders."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from rtproxy.check import check_file
from rtproxy.check.render import github_escape_data, github_escape_property, visible
from rtproxy.cli.main import cli
from tests.check_helpers import error, response, start, write

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "recordings" / "sample-voice-turn.rtrec"
SCHEMA = ROOT / "tests" / "data" / "sarif-schema-2.1.0.json"


def run(*args: str, cwd: Path | None = None, env: dict | None = None):  # type: ignore[no-untyped-def]
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, ["check", *args], env=env, catch_exceptions=False)
    finally:
        os.chdir(old)


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    """A recording with an error (RT001) and an info (RT004)."""
    ev = start() + response(10, done=False) + [
        (50, "client", {"type": "response.create", "event_id": "rc2"}),
        error(52, "conversation_already_has_active_response", "Conversation already has an active response",
              event_id="rc2")]
    return write(tmp_path, ev, "bad.rtrec")


@pytest.fixture
def info_only(tmp_path: Path) -> Path:
    return write(tmp_path, start() + response(10, status="cancelled"), "info.rtrec")


def test_exit_0_on_clean_sample() -> None:
    r = run(str(SAMPLE))
    assert r.exit_code == 0, r.output
    assert "ok" in r.output and "checked 1 file" in r.output


def test_unanswered_tool_call_sample_has_the_one_warning() -> None:
    sample = ROOT / "recordings" / "sample-unanswered-tool-call.rtrec"
    r = run(str(sample))
    assert r.exit_code == 1, r.output
    lines = r.output.splitlines()
    assert lines[0] == f"{sample}: 0 errors, 1 warning"
    assert re.fullmatch(r"\s+2\.\d{3} s  RT007 warning  #\d+ response\.function_call_arguments\.done: call call_\w+ "
                        r"\(get_weather\) never answered: no function_call_output in the 3\.\d s to the end", lines[1])
    assert lines[2:] == ["checked 1 file: 0 errors, 1 warning in 1 file"]
    # nothing else, not even info
    assert [(f.code, f.severity) for f in check_file(sample)] == [("RT007", "warning")]
    # small, and made with a fake key the recorder stripped
    assert sample.stat().st_size < 200_000
    shown = CliRunner().invoke(cli, ["show", "--json", str(sample)]).output
    assert "sk-" not in shown and "[REDACTED by rtproxy]" in shown
    summary = CliRunner().invoke(cli, ["show", "--summary", str(sample)]).output.splitlines()
    assert summary[-2:] == ["  findings     0 errors, 1 warning (rtproxy check)", lines[1]]


def test_exit_1_on_findings_text(bad: Path) -> None:
    r = run(str(bad))
    assert r.exit_code == 1
    assert re.search(r"RT001 error\s+#\d+ response\.create:", r.output)
    assert "checked 1 file: " in r.output


def test_exit_2_unreadable(tmp_path: Path) -> None:
    p = tmp_path / "junk.rtrec"
    p.write_bytes(b"not a recording at all")
    r = CliRunner().invoke(cli, ["check", str(p)])
    assert r.exit_code == 2
    assert "rtproxy: error:" in r.stderr and "Traceback" not in r.output + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_min_severity(info_only: Path) -> None:
    assert run(str(info_only)).exit_code == 0
    r = run(str(info_only), "--min-severity", "info")
    assert r.exit_code == 1 and "RT012 info" in r.output
    assert run(str(info_only), "--min-severity", "error").exit_code == 0


def test_select_ignore(bad: Path) -> None:
    assert run(str(bad), "--ignore", "RT001").exit_code == 0
    assert run(str(bad), "--select", "RT001").exit_code == 1
    assert run(str(bad), "--select", "RT002,RT003").exit_code == 0
    r = CliRunner().invoke(cli, ["check", str(bad), "--select", "XX9"])
    assert r.exit_code == 2 and "names no rule" in r.stderr


def test_json_document(bad: Path, tmp_path: Path) -> None:
    r = run(str(bad), "--format", "json", "--min-severity", "info")
    doc = json.loads(r.output)
    assert set(doc) == {"files", "summary"}
    (entry,) = doc["files"]
    assert entry["file"] == str(bad)
    for f in entry["findings"]:
        assert set(f) == {"code", "severity", "title", "message", "t", "event_index", "event_type", "related"}
        assert re.fullmatch(r"RT\d{3}", f["code"]) and f["severity"] in ("error", "warning", "info")
        assert isinstance(f["t"], float) and isinstance(f["related"], list)
    rt001 = next(f for f in entry["findings"] if f["code"] == "RT001")
    # event_index is the message's index as `show --json` orders them
    shown = CliRunner().invoke(cli, ["show", "--json", str(bad)]).output.splitlines()
    msgs = [json.loads(x) for x in shown if json.loads(x)["kind"] == "message"]
    assert msgs[rt001["event_index"]]["type"] == "response.create"
    assert doc["summary"]["errors"] >= 1 and doc["summary"]["files"] == 1


def test_github_lines(bad: Path) -> None:
    r = run(str(bad), "--format", "github")
    lines = r.output.splitlines()
    assert lines and all(re.fullmatch(r"::(error|warning|notice) file=[^,:]+,title=[^,:]+::.+", ln) for ln in lines)
    assert any(ln.startswith("::error ") and "RT001" in ln for ln in lines)


def test_github_escaping() -> None:
    assert github_escape_data("50% a\r\nb") == "50%25 a%0D%0Ab"
    assert github_escape_property("a:b,c%") == "a%3Ab%2Cc%25"
    assert visible("x\x1b[31my\u202e") == "x\\x1b[31my\\u202e"


def test_hostile_text_is_escaped(tmp_path: Path) -> None:
    ev = start() + [error(5, "evil\x1b[2J", "hi\x1b]0;pwned\x07\nthere")]
    p = write(tmp_path, ev, "evil.rtrec")
    for fmt in ("text", "github"):
        out = run(str(p), "--format", fmt).output
        assert "\x1b" not in out and "\x07" not in out and "\\x1b" in out
    gh = run(str(p), "--format", "github").output
    assert len(gh.strip().splitlines()) == 1


def test_sarif_validates_against_the_official_schema(bad: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.rtrec"
    broken.write_bytes(b"\x00" * 40)
    r = CliRunner().invoke(cli, ["check", str(bad), str(broken), "--format", "sarif", "--min-severity", "info"])
    assert r.exit_code == 2
    doc = json.loads(r.stdout)
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(doc, schema, cls=jsonschema.Draft4Validator)
    run0 = doc["runs"][0]
    rules = run0["tool"]["driver"]["rules"]
    assert {"id", "name", "shortDescription", "fullDescription", "help", "defaultConfiguration"} <= set(rules[0])
    res = next(x for x in run0["results"] if x["ruleId"] == "RT001")
    assert res["level"] == "error"
    loc = res["locations"][0]
    assert loc["physicalLocation"]["artifactLocation"]["uri"].endswith("bad.rtrec")
    assert loc["logicalLocations"][0]["name"].startswith("event ")
    assert run0["invocations"][0]["executionSuccessful"] is False


def test_pyproject_config(bad: Path, tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "sub").mkdir(parents=True)
    (proj / "pyproject.toml").write_text('[tool.rtproxy.check]\nignore = ["RT001"]\nmin-severity = "warning"\n')
    assert run(str(bad), cwd=proj / "sub").exit_code == 0
    # the command line wins
    assert run(str(bad), "--ignore", "RT002", cwd=proj / "sub").exit_code == 1
    # a rule --select names runs though the settings ignore it (or its prefix) ...
    assert "RT001" in run(str(bad), "--select", "RT001", cwd=proj / "sub").output
    (proj / "pyproject.toml").write_text('[tool.rtproxy.check]\nignore = ["RT00"]\n')
    assert "RT001" in run(str(bad), "--select", "RT001", cwd=proj / "sub").output
    # ... and a broader --select keeps the settings' ignores
    (proj / "pyproject.toml").write_text('[tool.rtproxy.check]\nignore = ["RT001"]\n')
    assert "RT001" not in run(str(bad), "--select", "RT", cwd=proj / "sub").output
    (proj / "pyproject.toml").write_text('[tool.rtproxy.check]\nresponse_timeout_s = 1000\nselect = "RT013"\n')
    never = write(tmp_path, start() + response(10, done=False) + [(60_000, "client", {"type": "input_audio_buffer.clear"})],
                  "never.rtrec")
    assert run(str(never), cwd=proj).exit_code == 0
    assert run(str(never)).exit_code == 1
    (proj / "pyproject.toml").write_text('[tool.rtproxy.check]\nno_such_threshold = 3\n')
    old = os.getcwd()
    os.chdir(proj)
    try:
        r = CliRunner().invoke(cli, ["check", str(never)])
    finally:
        os.chdir(old)
    assert r.exit_code == 2 and "unknown setting" in r.stderr


def test_explain_and_list_rules() -> None:
    r = run("--explain", "RT002")
    assert r.exit_code == 0
    for part in ("What it means", "Why it matters", "How to fix it", "#45"):
        assert part in r.output
    r = run("--list-rules")
    assert r.exit_code == 0 and len(r.output.splitlines()) >= 17
    assert re.match(r"RT001\s+error\s+\S", r.output)
    r = CliRunner().invoke(cli, ["check", "--explain", "RT999"])
    assert r.exit_code == 2


def test_directory_with_several_files_and_a_damaged_one(tmp_path: Path, bad: Path, info_only: Path) -> None:
    d = tmp_path / "many"
    (d / "nested").mkdir(parents=True)
    for i in range(3):
        (d / f"clean{i}.rtrec").write_bytes(SAMPLE.read_bytes())
    (d / "nested" / "bad.rtrec").write_bytes(bad.read_bytes())
    (d / "nested" / "damaged.rtrec").write_bytes(SAMPLE.read_bytes()[:12] + bytes(range(256)) * 8)
    (d / "notes.txt").write_text("not checked")
    r = CliRunner().invoke(cli, ["check", str(d), "--format", "json"])
    assert r.exit_code == 2
    doc = json.loads(r.stdout)
    names = [Path(f["file"]).name for f in doc["files"]]
    assert sorted(names) == ["bad.rtrec", "clean0.rtrec", "clean1.rtrec", "clean2.rtrec", "damaged.rtrec"]
    by = {Path(f["file"]).name: f for f in doc["files"]}
    assert "error" in by["damaged.rtrec"] and by["bad.rtrec"]["findings"]
    assert doc["summary"]["files_unreadable"] == 1
    assert "damaged.rtrec" in r.stderr and "Traceback" not in r.stderr
    # text: a line per file and a total
    r = CliRunner().invoke(cli, ["check", str(d)])
    assert r.exit_code == 2
    assert r.stdout.count(".rtrec: ") == 5 and "checked 5 files" in r.stdout


def test_no_progress_when_piped(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    for i in range(25):
        (d / f"s{i}.rtrec").write_bytes(SAMPLE.read_bytes())
    p = subprocess.run([sys.executable, "-m", "rtproxy", "check", str(d)], capture_output=True, text=True,
                       env={**os.environ, "CI": "true"}, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stderr == "" and "checked 25 files" in p.stdout
