"""The event view and the public API: rtproxy.open, Recording, Event, rtproxy.diff,
rtproxy.testing.make_recording, the exception tree."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

import rtproxy
from rtproxy.testing import make_recording
from tests.conftest import ROOT

SAMPLE = ROOT / "recordings" / "sample-voice-turn.rtrec"


def test_import_rtproxy_loads_nothing_heavy() -> None:
    code = ("import sys, rtproxy; rtproxy.open; rtproxy.RtproxyError; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mitmproxy', 'websockets', 'click')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_python_m_rtproxy_runs_the_cli() -> None:
    p = subprocess.run([sys.executable, "-m", "rtproxy", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0 and rtproxy.__version__ in p.stdout


def test_sample_recording_reads_as_events() -> None:
    rec = rtproxy.open(SAMPLE)
    assert rec.header["model"] and rec.handshake is not None and rec.handshake.status == 101
    events = list(rec.events())
    assert [e.index for e in events] == list(range(len(events)))
    assert all(e.side in ("client", "server") and e.opcode in ("text", "binary") for e in events)
    ts = [e.t for e in events]
    assert ts == sorted(ts)
    appends = [e for e in events if e.type == "input_audio_buffer.append"]
    assert appends and all(e.audio is not None and e.audio_ms == len(e.audio) / 48 for e in appends)
    deltas = [e for e in events if e.canonical_type == "response.output_audio.delta"]
    assert deltas and all(e.json["type"] == e.type for e in deltas)
    assert rec.close is not None and rec.close.code == 1000 and rec.close.by in ("client", "server")
    assert rec.cut_short is False
    # data is the exact bytes: the base64 in the JSON is the audio
    assert base64.b64decode(appends[0].json["audio"]) == appends[0].audio
    assert events[0].data == events[0].message.content


def test_make_recording_writes_what_it_is_given(tmp_path: Path) -> None:
    path = make_recording(tmp_path / "r.rtrec", [
        (0, "server", {"type": "session.created", "session": {}}),
        (12.5, "client", '{"type": "response.create"'),  # invalid JSON, kept as text
        (20, "client", b"\x00\x01binary"),
        (30, "server", {"type": "error", "error": {"code": "x", "message": "key sk-proj-abcdefghijklmnop1234"}}),
    ], close=(4000, "beta", "server"), model="gpt-realtime")
    rec = rtproxy.open(path)
    ev = list(rec.events())
    assert [(e.side, e.opcode, e.type) for e in ev] == [
        ("server", "text", "session.created"), ("client", "text", "response.create"),
        ("client", "binary", None), ("server", "text", "error")]
    assert ev[1].t == pytest.approx(0.0125) and ev[1].json is None and ev[1].data == b'{"type": "response.create"'
    assert ev[0].data == b'{"type":"session.created","session":{}}'  # compact JSON
    assert b"sk-proj" not in ev[3].data and ev[3].redacted  # secrets removed as when recording
    assert rec.close.code == 4000 and rec.close.reason == "beta" and rec.close.by == "server"
    assert rec.header["model"] == "gpt-realtime"


def test_a_recording_cut_short(tmp_path: Path) -> None:
    path = make_recording(tmp_path / "r.rtrec", [(0, "server", {"type": "session.created"})], close=None)
    rec = rtproxy.open(path)
    assert len(list(rec.events())) == 1 and rec.cut_short and rec.close is None


def test_untrusted_fields_read_as_unknown(tmp_path: Path) -> None:
    from rtproxy.io.format import RecordingWriter

    p = tmp_path / "odd.rtrec"
    with RecordingWriter(p) as w:
        w.write_header(started=float("nan"), model=42, redactions="x")
        w.write_handshake(status="101", request_headers=[["a", "b", "c"], {"x": 1}, ["Host", "h"]], response_body="text")
        w.write_message(0, True, True, b'{"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/pcm", "rate": "fast"}}}}}')
        w.write_message(1, True, True, b'{"type": "input_audio_buffer.append", "audio": "' + base64.b64encode(b"\0" * 480) + b'"}')
        w.write_message(2, True, True, b'{"type": "x", "a": ' + b"[" * 5000 + b"]" * 5000 + b"}")
        w.write_close(t_ns="soon", code=1e300, reason=b"bytes", closed_by=["x"])
    rec = rtproxy.open(p)
    assert rec.header["started"] is None and rec.header["model"] is None and rec.header["redactions"] == []
    assert rec.handshake.status is None and rec.handshake.request_headers == [("Host", "h")]
    ev = list(rec.events())
    assert ev[1].audio_ms == 10.0  # the bad rate is ignored: PCM16 24 kHz stays in force
    assert ev[2].type == "x" and ev[2].json is None  # too deep: not JSON, no RecursionError
    assert rec.close.code is None and rec.close.t is None and rec.close.reason == "bytes" and rec.close.by is None


def test_errors_form_one_tree(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(rtproxy.NotARecording) as ei:
        rtproxy.open(bad)
    assert isinstance(ei.value, rtproxy.RecordingError) and isinstance(ei.value, rtproxy.RtproxyError)
    assert str(ei.value) == f"{bad}: not an .rtrec recording (wrong magic bytes)"
    from rtproxy import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), rtproxy.RtproxyError)


def test_diff_api(tmp_path: Path) -> None:
    res = rtproxy.diff(SAMPLE, SAMPLE)
    assert res.equivalent and res.to_dict()["verdict"] == "equivalent"


def test_the_examples_in_docs_api_run(tmp_path: Path) -> None:
    import re

    text = (ROOT / "docs" / "API.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 5
    for code in blocks:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert p.returncode == 0, (code, p.stderr)


def test_a_session_event_whose_type_is_written_with_escapes_sets_the_format(tmp_path: Path) -> None:
    """Types are read when asked, except for messages that may be session events: one whose
    type is spelled with JSON escapes still sets the format the appends after it are read in."""
    update = '{"type":"sess\\u0069on.update","session":{"type":"realtime","audio":{"input":{"format":{"type":"audio/pcmu"}}}}}'
    chunk = base64.b64encode(b"\xff" * 800).decode()
    path = make_recording(tmp_path / "escaped.rtrec", [
        (0, "client", update),
        (10, "client", {"type": "input_audio_buffer.append", "audio": chunk}),
        (20, "server", {"type": "response.output_audio.delta", "delta": chunk}),
    ])
    evs = list(rtproxy.open(path).events())
    assert [e.type for e in evs] == ["session.update", "input_audio_buffer.append", "response.output_audio.delta"]
    assert evs[1].format.codec == "g711_ulaw" and evs[1].audio_ms == pytest.approx(100.0)
    assert evs[2].format.codec == "pcm16" and evs[2].audio_ms == pytest.approx(800 / 48)


def test_thousands_of_distinct_types_all_read_right(tmp_path: Path) -> None:
    """Decoded type names are remembered up to a bound; past it they are still decoded."""
    n = 5000
    path = make_recording(tmp_path / "many.rtrec", [(i, "server", {"type": f"x.t{i}"}) for i in range(n)])
    assert [e.type for e in rtproxy.open(path).events()] == [f"x.t{i}" for i in range(n)]
    assert [e.json["type"] for e in rtproxy.open(path).events()][-1] == f"x.t{n - 1}"


def test_head_json_is_each_events_own_head(tmp_path: Path) -> None:
    """``Event.head_json`` is the event without its audio; audio deltas that differ only in
    their event_id are matched by text, and every other difference (an id written with
    escapes, a second event_id further on, another response) is read as written."""
    chunk = base64.b64encode(bytes(range(256)) * 4).decode()
    delta = '{{"type":"response.output_audio.delta","event_id":"{eid}","response_id":"{rid}","item_id":"i1","delta":"{a}"{tail}}}'
    texts = [
        delta.format(eid="ev1", rid="r1", a=chunk, tail=""),
        delta.format(eid="ev2", rid="r1", a=chunk, tail=""),
        delta.format(eid="ev3", rid="r2", a=chunk, tail=""),
        delta.format(eid="ev\\u00e94", rid="r1", a=chunk, tail=""),
        delta.format(eid="ev5", rid="r1", a=chunk, tail=',"event_id":"late"'),
        delta.format(eid="ev6", rid="r1", a=chunk, tail=',"x":1'),
        '{"type":"input_audio_buffer.append","audio":"' + chunk + '"}',
        '{"type":"input_audio_buffer.append","audio":"' + chunk + '"}',
        '{"type":"input_audio_buffer.append","audio":"' + chunk + '",',  # broken
    ]
    path = make_recording(tmp_path / "heads.rtrec", [(i, "server" if "delta" in t else "client", t)
                                                    for i, t in enumerate(texts)])
    heads = [e.head_json for e in rtproxy.open(path).events()]
    assert [h and h.get("event_id") for h in heads[:6]] == ["ev1", "ev2", "ev3", "ev\u00e94", "late", "ev6"]
    assert [h and h["response_id"] for h in heads[:3]] == ["r1", "r1", "r2"]
    assert all(h is None or h.get("delta", h.get("audio")) == "" for h in heads)
    assert heads[5] == {"type": "response.output_audio.delta", "event_id": "ev6", "response_id": "r1",
                        "item_id": "i1", "delta": "", "x": 1}
    assert heads[6] == heads[7] == {"type": "input_audio_buffer.append", "audio": ""} and heads[6] is not heads[7]
    assert heads[8] is None
