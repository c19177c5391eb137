"""`rtproxy export` wav / har / jsonl, and `rtproxy import` of HAR files, on sessions
recorded through a real `rtproxy record` process."""

from __future__ import annotations

import json
import subprocess
import wave
from array import array
from pathlib import Path

import pytest

from rtproxy.view.audio import ALAW_TABLE, ULAW_TABLE, decode_alaw, decode_ulaw, to_pcm24k
from rtproxy.io.format import open_recording
from rtproxy.protocol.events import AudioFormat
from tests.conftest import ROOT, RTPROXY
from tests.realtime_server import Scenario, speech_pcm
from tests.session_helpers import USER_AUDIO, record_session

DATA = Path(__file__).parent / "data"


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RTPROXY, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_session(tmp_path_factory.mktemp("export") / "rec")


def samples(pcm: bytes) -> array:
    a = array("h")
    a.frombytes(pcm)
    return a


def read_wav(path: Path) -> tuple[int, int, array]:
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2
        return w.getnchannels(), w.getframerate(), samples(w.readframes(w.getnframes()))


def first_time(rec: Path, typ: str) -> float:
    p = run("show", rec, "--json", "--type", typ)
    return next(json.loads(x)["t"] for x in p.stdout.splitlines() if json.loads(x)["kind"] == "message")


# ---------------------------------------------------------------- G.711 tables
def test_g711_known_values() -> None:
    # ITU-T G.711 reference values (the classic Sun g711.c / audioop tables)
    assert ULAW_TABLE[0x00] == -32124 and ULAW_TABLE[0x80] == 32124
    assert ULAW_TABLE[0x7F] == 0 and ULAW_TABLE[0xFF] == 0
    assert ULAW_TABLE[0x7E] == -8 and ULAW_TABLE[0xFE] == 8
    assert ULAW_TABLE[0x0F] == -16764 and ULAW_TABLE[0x70] == -120
    assert ALAW_TABLE[0x55] == -8 and ALAW_TABLE[0xD5] == 8
    assert ALAW_TABLE[0x00] == -5504 and ALAW_TABLE[0x80] == 5504
    assert ALAW_TABLE[0x2A] == -32256 and ALAW_TABLE[0xAA] == 32256
    assert samples(decode_ulaw(bytes([0x00, 0x80, 0xFF]))).tolist() == [-32124, 32124, 0]
    assert samples(decode_alaw(bytes([0x55, 0xAA]))).tolist() == [-8, 32256]


def test_g711_upsampled_to_24k_keeps_every_input_sample() -> None:
    codes = bytes(range(256))
    out = samples(to_pcm24k(codes, AudioFormat("g711_ulaw", 8000)))
    assert len(out) == 3 * 256
    assert out[0::3].tolist() == [ULAW_TABLE[c] for c in codes]
    for k in range(255):  # interpolated samples lie between their neighbours
        a, b = ULAW_TABLE[codes[k]], ULAW_TABLE[codes[k + 1]]
        assert min(a, b) <= out[3 * k + 1] <= max(a, b)


# ------------------------------------------------------------------------ wav
def test_wav_stereo_user_left_assistant_right_cut_at_truncate(rec: Path, tmp_path: Path) -> None:
    out = tmp_path / "conv.wav"
    p = run("export", rec, "--format", "wav", "-o", out)
    assert p.returncode == 0, p.stderr
    channels, rate, s = read_wav(out)
    assert (channels, rate) == (2, 24000)
    left, right = s[0::2], s[1::2]
    user = samples(USER_AUDIO)
    u0 = int(first_time(rec, "input_audio_buffer.append") * 24000)
    assert left[u0 : u0 + len(user)] == user
    assert not any(left[:u0]) and not any(left[u0 + len(user):])
    # assistant: 600 ms sent, the client truncated at 300 ms
    a0 = int(first_time(rec, "response.output_audio.delta") * 24000)
    sent = samples(speech_pcm()[: 48 * 600])
    heard = 300 * 24
    assert right[a0 : a0 + heard] == sent[:heard]
    assert not any(right[a0 + heard :]) and not any(right[:a0])


def test_wav_split_into_two_mono_files(rec: Path, tmp_path: Path) -> None:
    p = run("export", rec, "--format", "wav", "--split", "-o", tmp_path / "c.wav")
    assert p.returncode == 0, p.stderr
    ch_u, rate_u, user = read_wav(tmp_path / "c-user.wav")
    ch_a, rate_a, asst = read_wav(tmp_path / "c-assistant.wav")
    assert (ch_u, rate_u, ch_a, rate_a) == (1, 24000, 1, 24000)
    u0 = int(first_time(rec, "input_audio_buffer.append") * 24000)
    assert user[u0 : u0 + len(USER_AUDIO) // 2] == samples(USER_AUDIO)
    assert sum(1 for x in asst if x) > 0


def test_wav_decodes_g711_user_audio(tmp_path: Path) -> None:
    codes = bytes(range(256)) * 10  # 320 ms of u-law
    rec = record_session(
        tmp_path / "r", Scenario(), audio=codes, appends=4, errors=False, truncate_ms=None,
        session={"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}}}},
    )
    shown = run("show", rec).stdout
    assert "client 0.32 s" in shown  # u-law durations: 8 bytes a millisecond
    out = tmp_path / "g.wav"
    assert run("export", rec, "--format", "wav", "-o", out).returncode == 0
    _, _, s = read_wav(out)
    left = s[0::2]
    u0 = int(first_time(rec, "input_audio_buffer.append") * 24000)
    assert left[u0 : u0 + 3 * len(codes) : 3].tolist() == [ULAW_TABLE[c] for c in codes]


# ------------------------------------------------------------------------ har
def test_har_shape_and_round_trip_through_import(rec: Path, tmp_path: Path) -> None:
    har = tmp_path / "s.har"
    assert run("export", rec, "--format", "har", "-o", har).returncode == 0
    doc = json.loads(har.read_text())
    assert doc["log"]["version"] == "1.2"
    [entry] = doc["log"]["entries"]
    assert entry["request"]["method"] == "GET" and entry["response"]["status"] == 101
    wsm = entry["_webSocketMessages"]
    with open_recording(rec) as r:
        orig = list(r.messages())
        t_resp = r.recording.handshake["t_response"]
    assert len(wsm) == len(orig)
    assert {m["type"] for m in wsm} == {"send", "receive"} and {m["opcode"] for m in wsm} == {1}
    assert wsm[0]["time"] == pytest.approx(t_resp + orig[0].t_ns / 1e9, abs=1e-6)
    assert "sk-test-SECRET" not in har.read_text()

    p = run("import", har, "-o", tmp_path / "imp")
    assert p.returncode == 0, p.stderr
    assert "close code" in p.stdout and "ping" in p.stdout
    [back] = list((tmp_path / "imp").glob("*.rtrec"))
    with open_recording(back) as r:
        again = list(r.messages())
        header = r.recording.header
    assert [(m.from_client, m.is_text, m.content) for m in again] == [
        (m.from_client, m.is_text, m.content) for m in orig
    ]
    assert all(abs(a.t_ns - b.t_ns) < 10_000 for a, b in zip(again, orig))
    assert any("close code" in x for x in header["source_lacks"])
    assert run("show", back, "--summary").returncode == 0


def test_browser_written_har_imports(tmp_path: Path) -> None:
    src = DATA / "chrome_realtime.har"
    p = run("import", src, "-o", tmp_path)
    assert p.returncode == 0, p.stderr
    files = list(tmp_path.glob("*.rtrec"))
    assert len(files) == 1  # the page's other requests are not WebSocket sessions
    raw_in = src.read_text()
    assert "openai-insecure-api-key.ek_" in raw_in
    with open_recording(files[0]) as r:
        msgs = list(r.messages())
        rec = r.recording
    doc = json.loads(raw_in)
    ws_entry = next(e for e in doc["log"]["entries"] if "_webSocketMessages" in e)
    assert [m.content.decode() for m in msgs] == [m["data"] for m in ws_entry["_webSocketMessages"]]
    assert [m.from_client for m in msgs] == [m["type"] == "send" for m in ws_entry["_webSocketMessages"]]
    protos = dict((k.lower(), v) for k, v in rec.handshake["request_headers"])["sec-websocket-protocol"]
    assert "ek_" not in protos and "REDACTED" in protos
    summary = run("show", files[0], "--summary").stdout
    assert "responses    1 completed" in summary


def test_import_rejects_bad_input_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "x.har"
    bad.write_text('{"nope": 1}')
    p = run("import", bad, "-o", tmp_path / "o")
    assert p.returncode == 2 and "Traceback" not in p.stderr and "not a HAR file" in p.stderr


# ---------------------------------------------------------------------- jsonl
def test_jsonl_is_show_json(rec: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    assert run("export", rec, "--format", "jsonl", "-o", out).returncode == 0
    assert out.read_text() == run("show", rec, "--json").stdout
