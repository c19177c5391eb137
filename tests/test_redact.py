"""`rtproxy redact`: a shareable copy that is still a recording (shows, replays, diffs)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
import zstandard

import rtproxy
from rtproxy.io.format import open_recording
from rtproxy.testing import make_recording
from rtproxy.view.strip import PLACEHOLDER
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


def _walk(v: object, path: str = "") -> list[tuple[str, object]]:
    """Every scalar of a JSON value with its path (lists of ints are also tried as bytes)."""
    if isinstance(v, dict):
        return [p for k, x in v.items() for p in _walk(x, f"{path}.{k}")]
    if isinstance(v, list):
        found = [p for i, x in enumerate(v) for p in _walk(x, f"{path}[{i}]")]
        if v and all(isinstance(x, int) and 0 <= x < 256 for x in v):
            found.append((path + ":bytes", bytes(v).decode("utf-8", "replace")))  # type: ignore[arg-type]
        return found
    return [(path, v)]


_KEPT = ("type", "id", "event_id", "item_id", "call_id", "response_id", "role", "name", "logprob")


def test_strip_text_removes_text_of_any_type_escaped_keys_and_logprob_tokens(tmp_path: Path) -> None:
    """--strip-text --strip-instructions left text in that was not a plain string under a
    plainly spelt key: lists and objects under "text"/"output"/"arguments"/"transcript",
    a list "delta", keys written with escapes (the raw-bytes pre-filter never saw them),
    transcription logprobs' "token" and "bytes", a key given twice, a text delta that
    reads as base64 (split out as audio), and a text member beside audio."""
    pcm = bytes(range(1, 256)) * 8
    b64_text = base64.b64encode(b"SECRET-11 " * 9).decode()
    events: list[tuple[float, str, object]] = [
        (0, "client", {"type": "session.update", "event_id": "evt_0", "session": {
            "type": "realtime", "instructions": {"persona": "SECRET-0"},
            "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}},
            "tools": [{"type": "function", "name": "lookup", "parameters": {
                "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}]}}),
        (1, "client", {"type": "conversation.item.create", "event_id": "evt_1", "item": {
            "id": "item_1", "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": ["SECRET-1"]}]}}),
        (2, "client", {"type": "conversation.item.create", "event_id": "evt_2", "item": {
            "id": "item_2", "type": "function_call_output", "call_id": "call_1", "output": {"ssn": "SECRET-2"}}}),
        (3, "server", {"type": "response.function_call_arguments.done", "event_id": "evt_3", "response_id": "resp_1",
                       "item_id": "item_3", "call_id": "call_1", "name": "lookup", "arguments": {"q": "SECRET-3"}}),
        (4, "server", {"type": "response.output_audio_transcript.done", "event_id": "evt_4", "response_id": "resp_1",
                       "item_id": "item_4", "transcript": {"said": "SECRET-4"}}),
        (5, "server", {"type": "response.output_text.delta", "event_id": "evt_5", "response_id": "resp_1",
                       "item_id": "item_4", "delta": ["SECRET-5"]}),
        (6, "client", '{"type":"conversation.item.create","event_id":"evt_6","item":{"id":"item_6","type":"message",'
                      '"role":"user","content":[{"type":"input_text","t\\u0065xt":"SECRET-6"}]}}'),
        (7, "client", '{"type":"session.update","event_id":"evt_7","session":{"type":"realtime",'
                      '"instructi\\u006fns":"SECRET-7"}}'),
        (8, "server", {"type": "conversation.item.input_audio_transcription.delta", "event_id": "evt_8",
                       "item_id": "item_8", "content_index": 0, "delta": "SECRET-8-delta",
                       "logprobs": [{"token": "SECRET-8", "logprob": -0.1, "bytes": list(b"SECRET-8")}]}),
        (9, "server", {"type": "conversation.item.input_audio_transcription.completed", "event_id": "evt_9",
                       "item_id": "item_8", "content_index": 0, "transcript": "SECRET-9-transcript",
                       "logprobs": [{"token": "SECRET-9", "logprob": -0.25, "bytes": list(b"SECRET-9")}]}),
        (10, "client", '{"type":"conversation.item.create","event_id":"evt_10","item":{"id":"item_10",'
                       '"type":"message","role":"user","content":[{"type":"input_text","text":"SECRET-10","text":""}]}}'),
        (11, "server", {"type": "response.output_text.delta", "event_id": "evt_11", "response_id": "resp_1",
                        "item_id": "item_4", "delta": b64_text}),
        (12, "client", {"type": "input_audio_buffer.append", "event_id": "evt_12",
                        "audio": base64.b64encode(pcm).decode(), "text": "SECRET-12"}),
        (13, "server", {"type": "response.output_audio.delta", "event_id": "evt_13", "response_id": "resp_1",
                        "item_id": "item_4", "output_index": 0, "content_index": 0,
                        "delta": base64.b64encode(pcm[::-1]).decode()}),
        (14, "server", {"type": "response.done", "event_id": "evt_14", "response": {
            "id": "resp_1", "status": "completed", "output": [{"id": "item_4", "type": "message", "role": "assistant",
                                                               "content": [{"type": "output_audio",
                                                                            "transcript": "SECRET-13"}]}]}}),
    ]
    markers = [f"SECRET-{i}" for i in range(14)]
    src = make_recording(tmp_path / "src.rtrec", events, redact=False)  # type: ignore[arg-type]
    before = raw(src)
    assert all(m.encode() in before for m in markers if m != "SECRET-11")

    out = tmp_path / "shared.rtrec"
    p = run("redact", src, "--strip-text", "--strip-instructions", "-o", out)
    assert p.returncode == 0, p.stderr
    after = raw(out)
    for m in markers:
        assert m.encode() not in after, m
    assert b64_text.encode() not in after

    orig, copy = list(rtproxy.open(src).events()), list(rtproxy.open(out).events())
    assert len(copy) == len(orig) == len(events)
    assert b"SECRET-11" in (orig[11].audio or b"")  # the text delta that reads as base64 was split out as audio
    for a, b in zip(orig, copy):
        assert (b.type, b.side, b.t_ns) == (a.type, a.side, a.t_ns)
        obj = json.loads(b.data)  # every event still parses, and as an object
        assert isinstance(obj, dict) and b.json == obj
        text = b.data.decode() + json.dumps(obj, ensure_ascii=False)
        leaks = [m for m in [*markers, b64_text] if m in text]
        leaks += [v for _, v in _walk(obj) if isinstance(v, str) and "SECRET" in v]
        assert not leaks, (b.index, leaks, b.data)
        # types, ids, names and logprob numbers stay, at the same places
        kept = [(k, v) for k, v in _walk(a.json) if k.rsplit(".", 1)[-1] in _KEPT]
        assert kept == [(k, v) for k, v in _walk(obj) if k.rsplit(".", 1)[-1] in _KEPT], b.index
        if b.index != 11:
            assert b.audio == a.audio  # audio is --strip-audio's business: kept as recorded
    assert copy[12].audio == pcm and copy[13].audio == pcm[::-1]
    assert copy[11].audio is None and copy[11].json["delta"] == PLACEHOLDER  # type: ignore[index]
    assert rtproxy.open(out).header["stripped"] == ["instructions", "text"]

    # the shape stays reasonable: placeholders where the text was, structure kept
    session = copy[0].json["session"]  # type: ignore[index]
    assert "instructions" not in session and "instructions" not in copy[7].json["session"]  # type: ignore[index]
    assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["tools"][0]["parameters"]["properties"] == {"text": {"type": "string"}}
    assert copy[1].json["item"]["content"][0]["text"] == PLACEHOLDER  # type: ignore[index]
    assert copy[2].json["item"]["output"] == PLACEHOLDER  # type: ignore[index]
    assert copy[3].json["arguments"] == copy[4].json["transcript"] == copy[5].json["delta"] == PLACEHOLDER  # type: ignore[index]
    assert copy[9].json["logprobs"] == [  # type: ignore[index]
        {"token": PLACEHOLDER, "logprob": -0.25, "bytes": list(PLACEHOLDER.encode())}]
    assert copy[14].json["response"]["output"][0]["content"][0] == {  # type: ignore[index]
        "type": "output_audio", "transcript": PLACEHOLDER}
