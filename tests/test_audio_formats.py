"""Every audio format the protocol allows, however it is configured, gives the right
durations in show, diff, replay pacing and the WAV (the g711 transcription-session case).

A session sends 100 ms of input audio after configuring its format with
``session.update`` (beta or GA shape) or ``transcription_session.update``.
"""

from __future__ import annotations

import base64
import json
import subprocess
import wave
from pathlib import Path

import pytest

import rtproxy
from rtproxy.compare.core import normalize_file
from rtproxy.compare.normalize import PathRules
from rtproxy.replay.script import client_events
from rtproxy.io.format import open_recording
from rtproxy.testing import make_recording
from tests.conftest import ROOT, RTPROXY

# (codec name, bytes per 100 ms, one byte of silence-ish audio)
FORMATS = {
    "pcm16": (4800, b"\x01\x00"),
    "g711_ulaw": (800, b"\x80"),
    "g711_alaw": (800, b"\x2a"),
}
GA = {"pcm16": {"type": "audio/pcm", "rate": 24000}, "g711_ulaw": {"type": "audio/pcmu"}, "g711_alaw": {"type": "audio/pcma"}}


def configure(how: str, codec: str) -> dict:
    if how == "beta session.update":
        return {"type": "session.update", "session": {"input_audio_format": codec, "output_audio_format": codec}}
    if how == "GA session.update":
        return {"type": "session.update", "session": {"type": "realtime", "audio": {
            "input": {"format": GA[codec]}, "output": {"format": GA[codec]}}}}
    return {"type": "transcription_session.update", "session": {"input_audio_format": codec}}


def session(tmp_path: Path, how: str, codec: str) -> Path:
    nbytes, unit = FORMATS[codec]
    audio = (unit * nbytes)[:nbytes]
    events: list = [(0, "server", {"type": "session.created", "session": {}}), (5, "client", configure(how, codec))]
    for i in range(4):  # 4 x 25 ms
        chunk = audio[i * nbytes // 4:(i + 1) * nbytes // 4]
        events.append((10 + 25 * i, "client", {"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()}))
    events.append((120, "client", {"type": "input_audio_buffer.commit"}))
    events.append((130, "server", {"type": "input_audio_buffer.committed", "item_id": "item_1"}))
    return make_recording(tmp_path / f"{codec}.rtrec", events)


CASES = [(how, codec) for how in ("beta session.update", "GA session.update", "transcription_session.update") for codec in FORMATS]


@pytest.mark.parametrize("how,codec", CASES)
def test_event_view_durations(tmp_path: Path, how: str, codec: str) -> None:
    rec = rtproxy.open(session(tmp_path, how, codec))
    appends = [e for e in rec.events() if e.type == "input_audio_buffer.append"]
    assert [round(e.audio_ms, 3) for e in appends] == [25.0] * 4
    assert appends[0].format.codec == codec


@pytest.mark.parametrize("how,codec", CASES)
def test_show_json_and_summary_durations(tmp_path: Path, how: str, codec: str) -> None:
    path = session(tmp_path, how, codec)
    p = subprocess.run([*RTPROXY, "show", str(path), "--json"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stderr
    end = json.loads(p.stdout.splitlines()[-1])
    assert end["audio_ms"]["client"] == 100.0
    p = subprocess.run([*RTPROXY, "show", str(path)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.stdout.count("25 ms audio") == 4


@pytest.mark.parametrize("how,codec", CASES)
def test_diff_audio_duration(tmp_path: Path, how: str, codec: str) -> None:
    n = normalize_file(session(tmp_path, how, codec), PathRules(()))
    appends = [e for e in n.client if e.type == "input_audio_buffer.append"]
    assert appends, "the appends are joined into one event"
    body = json.dumps(appends[0].body)
    assert '"ms": 100.0' in body or '"ms": 100' in body, body


@pytest.mark.parametrize("how,codec", CASES)
def test_replay_paces_by_the_right_duration(tmp_path: Path, how: str, codec: str) -> None:
    with open_recording(session(tmp_path, how, codec)) as r:
        evs = list(client_events(r.messages()))
    commit = [e for e in evs if e.type == "input_audio_buffer.commit"][0]
    assert commit.segment_audio_ms == pytest.approx(100.0)


@pytest.mark.parametrize("codec", list(FORMATS))
def test_wav_decodes_g711_and_lasts_100_ms(tmp_path: Path, codec: str) -> None:
    path = session(tmp_path, "transcription_session.update", codec)
    out = tmp_path / "out.wav"
    p = subprocess.run([*RTPROXY, "export", str(path), "--format", "wav", "--split", "-o", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stderr
    with wave.open(str(tmp_path / "out-user.wav")) as w:
        frames = w.readframes(w.getnframes())
        assert w.getframerate() == 24000
    import numpy as np

    pcm = np.frombuffer(frames, dtype="<i2")
    voiced = pcm[np.abs(pcm) > 0]
    # 100 ms at 24 kHz once decoded; G.711 0x80 / 0x2a decode to one loud constant value, not noise
    assert len(voiced) == pytest.approx(2400, abs=3)
    assert len(set(voiced.tolist())) <= 2
