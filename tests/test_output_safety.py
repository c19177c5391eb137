"""A hostile recording's terminal escapes are shown, never obeyed: `show`, `show
--summary`, `diff` (text, Markdown, JSON) and the error line; `show --json` is
ASCII and exact."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path

import click
import pytest

from rtproxy.compare.core import diff_files
from rtproxy.compare.normalize import DEFAULT_IGNORES
from rtproxy.compare.render import render_markdown, render_text
from rtproxy.export.textsafe import UNSAFE, visible
from rtproxy.io.format import open_recording
from tests.conftest import ROOT, RTPROXY
from tests.hostile_recording import HOSTILE, TERM, write_hostile


def run(*args: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*RTPROXY, *map(str, args)], capture_output=True, cwd=ROOT, timeout=60)


def assert_inert(out: bytes, *, styles: bool = False) -> str:
    """UTF-8 that holds no control character but newlines (and, with ``styles``,
    the SGR colour sequences rtproxy adds itself)."""
    text = out.decode("utf-8")  # strict: a lone surrogate could not have been encoded
    if styles:
        text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    bad = {m.group() for m in UNSAFE.finditer(text)} - {"\n"}
    assert not bad, f"raw control characters in the output: {sorted(map(ascii, bad))}"
    return text


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    return write_hostile(tmp_path / "hostile.rtrec")


@pytest.fixture
def tame(tmp_path: Path) -> Path:
    return write_hostile(tmp_path / "tame.rtrec", transcript="hello there", event_suffix="")


def test_visible_escapes_every_control_and_keeps_the_rest() -> None:
    assert visible("plain é 漢字 😀 \\x1b") == "plain é 漢字 😀 \\x1b"
    assert visible("\x1b[2J\x07\r\x08\x00\x7f") == "\\x1b[2J\\x07\\x0d\\x08\\x00\\x7f"
    assert visible("\x9b31m \x85 \u2028 \u202e \ud800") == "\\u009b31m \\u0085 \\u2028 \\u202e \\ud800"
    assert visible("a\nb\tc") == "a\\x0ab\\x09c"
    assert visible("a\nb\tc", newlines=True) == "a\nb\\x09c"
    assert visible(None) == "None" and visible(1011) == "1011"
    out = visible(HOSTILE)
    assert not UNSAFE.search(out) and out.encode("utf-8")


def test_show_prints_escapes_as_text(hostile: Path) -> None:
    p = run("show", hostile)
    assert p.returncode == 0, p.stderr
    text = assert_inert(p.stdout)
    assert "\\x1b]0;pwned-title\\x07" in text  # the header's URL, shown
    assert "subprotocol  realtime\\u009b2J" in text
    assert "response.text.delta\\x1b[31m" in text  # an event type with an escape in it
    assert "invalid_request_error x\\x1b[5m" in text
    assert "close        4000 'bye\\x1b]0;close\\x07" in text
    assert "x.surrogate" in text  # lone surrogates in JSON did not stop the listing


def test_show_filters_and_summary_print_escapes_as_text(hostile: Path) -> None:
    p = run("show", hostile, "--type", "error")
    assert p.returncode == 0, p.stderr
    assert "\\x1b[2J" in assert_inert(p.stdout)
    p = run("show", hostile, "--summary")
    assert p.returncode == 0, p.stderr
    text = assert_inert(p.stdout)
    assert "response resp_1" in text and "\\x1b]52;c;cHduZWQ=\\x07" in text and "\\u009b31m" in text
    p = run("show", hostile, "--summary", "--json")
    assert p.returncode == 0, p.stderr
    assert p.stdout.isascii()
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    resp = next(x for x in lines if x["kind"] == "response")
    assert resp["transcript"] == HOSTILE  # exact once parsed


def test_show_json_is_ascii_and_exact(hostile: Path) -> None:
    p = run("show", hostile, "--json")
    assert p.returncode == 0, p.stderr
    assert p.stdout.isascii()
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    msgs = [x for x in lines if x["kind"] == "message"]
    with open_recording(hostile) as r:
        originals = list(r.messages())
    assert len(msgs) == len(originals)
    for d, m in zip(msgs, originals):
        if "text" in d:
            assert d["text"].encode("utf-8") == m.content
        else:  # binary, or text that is not UTF-8
            assert base64.b64decode(d["base64"]) == m.content
    assert next(d for d in msgs if d["type"] == "x.surrogate")["text"] == '{"type":"x.surrogate","text":"\\ud800 \\udfff \\ud83d"}'
    not_utf8 = [d for d in msgs if d["opcode"] == "text" and "base64" in d]
    assert len(not_utf8) == 1 and b"\xff\xfe" in base64.b64decode(not_utf8[0]["base64"])
    assert lines[0]["model"].startswith("m\x1b]0;model\x07")  # exact once parsed
    assert lines[-1]["close_reason"].startswith("bye\x1b]0;close\x07")


def test_export_jsonl_is_the_same_ascii(hostile: Path, tmp_path: Path) -> None:
    out = tmp_path / "h.jsonl"
    p = run("export", hostile, "--format", "jsonl", "-o", out)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == run("show", hostile, "--json").stdout
    assert out.read_bytes().isascii()


def test_diff_text_markdown_json_print_escapes_as_text(hostile: Path, tame: Path) -> None:
    for fmt in ("text", "markdown"):
        p = run("diff", tame, hostile, "--format", fmt)
        assert p.returncode == 1, p.stderr
        text = assert_inert(p.stdout)
        assert "\\x1b]0;pwned-title\\x07" in text and "response.text.delta\\x1b[31m" in text
    p = run("diff", tame, hostile, "--format", "json")
    assert p.returncode == 1 and p.stdout.isascii()
    json.loads(p.stdout)


def test_diff_text_in_colour_adds_only_its_own_styles(hostile: Path, tame: Path) -> None:
    result = diff_files(tame, hostile, ignore=DEFAULT_IGNORES)
    coloured = render_text(result, click.style)
    assert "\x1b[31m" in coloured  # the report's own colours are there
    assert_inert(coloured.encode("utf-8"), styles=True)
    assert_inert(render_markdown(result).encode("utf-8"))


def test_error_line_prints_escapes_as_text(tmp_path: Path) -> None:
    name = tmp_path / ("no\x1b]0;pwned\x07such" + TERM[:12] + ".rtrec")
    p = run("show", name)
    assert p.returncode == 2
    err = assert_inert(p.stderr)
    assert err.startswith("rtproxy: error: ") and "no\\x1b]0;pwned\\x07such" in err
