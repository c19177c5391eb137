"""`rtproxy redact`: a shareable copy that is still a recording (shows, replays, diffs)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
import zstandard

from rtproxy.io.format import open_recording
from tests.conftest import ROOT, RTPROXY
from tests.realtime_server import Scenario, ServerThread, speech_pcm
from tests.session_helpers import USER_AUDIO, record_session

SAID = ["Hello! How can I help you today?", "What is the weather like?", "Hello!", "weather"]
INSTRUCTIONS = ["TOPSECRETINSTRUCTION", "pirate", "You are a helpful assistant."]


def run(*args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RTPROXY, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def raw(path: Path) -> bytes:
    """The decompressed record stream: every byte the file stores."""
    data = path.read_bytes()[10:]
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_session(tmp_path_factory.mktemp("redact") / "rec")


def audio_needles() -> list[bytes]:
    user = USER_AUDIO[4800:4896]
    asst = speech_pcm()[1920 * 3 : 1920 * 3 + 96]
    return [user, asst, base64.b64encode(user)[:64], base64.b64encode(asst)[:64]]


def test_everything_stripped_is_gone_from_the_file_bytes(rec: Path, tmp_path: Path) -> None:
    before = raw(rec)
    needles = [s.encode() for s in SAID + INSTRUCTIONS]
    # the needles are there to begin with
    assert all(n in before for n in needles)
    # audio is stored as bytes, possibly packed (rtproxy.io.audiocodec): look for it in
    # whichever form this file holds; the decoded audio is checked below as well
    audio = [n for n in audio_needles() if n in before]

    out = tmp_path / "copy.rtrec"
    p = run("redact", rec, "-o", out, "--strip-audio", "--strip-text", "--strip-instructions")
    assert p.returncode == 0, p.stderr
    after = raw(out)
    for n in needles + audio:
        assert n not in after, n
    with open_recording(out) as r:
        header = r.recording.header
        msgs = list(r.messages())
        for m in msgs:
            if m.is_text:
                json.loads(m.content)  # every event is still valid JSON
    assert header["stripped"] == ["audio", "instructions", "text"]
    with open_recording(rec) as r:
        orig = list(r.messages())
    assert [m.t_ns for m in msgs] == [m.t_ns for m in orig]  # timing stays true
    assert [sum(map(len, m.audio)) for m in msgs] == [sum(map(len, m.audio)) for m in orig]
    assert all(not any(a) for m in msgs for a in m.audio)  # silence


def test_copy_shows_with_same_structure(rec: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy.rtrec"
    assert run("redact", rec, "-o", out, "--strip-audio", "--strip-text").returncode == 0
    a, b = run("show", rec, "--summary").stdout, run("show", out, "--summary").stdout
    for line in ("responses    1 completed", "errors       2", "audio        client 1.20 s, server 0.60 s"):
        assert line in a and line in b
    assert "[stripped by rtproxy]" in b
    # instructions were not asked to go: they stay
    kept = [json.loads(x) for x in run("show", out, "--json", "--grep", "pirate").stdout.splitlines()]
    assert [d["type"] for d in kept if d["kind"] == "message"] == ["session.update", "session.updated"]


def test_copy_replays_and_diffs(rec: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy.rtrec"
    assert run("redact", rec, "-o", out, "--strip-audio", "--strip-text", "--strip-instructions").returncode == 0
    with ServerThread(Scenario(error_on_second_response=True)) as srv:
        p = run("replay", out, "--to", srv.url + "/v1", "--out-dir", tmp_path / "again", "--speed", "0", timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        sent = srv.logs[0].received
    # the server got the stripped client side: silent audio, no instructions
    appends = [json.loads(x) for x in sent if isinstance(x, str) and "input_audio_buffer.append" in x]
    assert len(appends) == 12 and all(not any(base64.b64decode(a["audio"])) for a in appends)
    assert not any("pirate" in x for x in sent if isinstance(x, str))
    [again] = list((tmp_path / "again").glob("*.rtrec"))
    d = run("diff", out, again)
    assert d.returncode in (0, 1), d.stderr
    assert "client      7 vs 7 events: same" in d.stdout


def test_redact_needs_something_to_strip(rec: Path, tmp_path: Path) -> None:
    p = run("redact", rec, "-o", tmp_path / "x.rtrec")
    assert p.returncode == 2 and "--strip-audio" in p.stderr and "Traceback" not in p.stderr
    bad = tmp_path / "bad.rtrec"
    bad.write_bytes(b"nope")
    p = run("redact", bad, "-o", tmp_path / "y.rtrec", "--strip-text")
    assert p.returncode == 2 and str(bad) in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "y.rtrec").exists()
