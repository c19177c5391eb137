"""Focused regressions for what the full hostile-input sweep found
(``RTPROXY_CORPUS_FULL=1 pytest tests/test_hostile_inputs.py``) and the hostile
shapes tried after it (recordings, live replay clients, HAR files to import):
each test names the input and the command that broke, and checks how it behaves now."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from rtproxy.check.engine import Checker
from rtproxy.testing import make_recording
from rtproxy.view.events import open as open_recording


def test_check_keeps_no_payload_of_the_events_its_findings_point_at(tmp_path: Path) -> None:
    """bomb-many-records x check: 60 binary frames of 60 MiB made ``rtproxy check`` hold
    all 3.6 GiB (RT010 kept every binary event, RT018 every event with a bad value...,
    each with its message). What rules keep now is the event's place, not its bytes."""
    big = 1 << 20
    events = [(float(i), "client", bytes([i]) * big) for i in range(24)]  # RT010: binary frames
    events += [(100.0 + i, "server", '{"type":"x.unknown","pad":"' + "a" * big + '"}') for i in range(8)]  # RT010
    events += [(200.0 + i, "client", '{"type":"conversation.item.truncate","item_id":"i","audio_end_ms":"x",'
                                     '"pad":"' + "b" * big + '"}') for i in range(8)]  # RT018
    p = make_recording(tmp_path / "big.rtrec", events, redact=False)
    c = Checker()
    tracemalloc.start()
    try:
        for ev in open_recording(p).events():
            c.feed(ev)
        del ev
        gc.collect()  # the reader's own buffers (a cycle) go
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept < 4 * big, f"the checker holds {kept >> 20} MiB after 40 MiB of messages"
    found = c.finish()
    [binary] = [f for f in found if "binary message(s)" in f.message]
    assert (binary.code, binary.event_index, binary.related) == ("RT010", 0, tuple(range(1, 10)))
    assert "24 binary" in binary.message
    assert any(f.code == "RT010" and "'x.unknown'" in f.message and "(8 times)" in f.message for f in found)
    assert any(f.code == "RT018" and f.event_index == 32 and "audio_end_ms" in f.message for f in found)


_ENCODE_PEAK = """
import resource, sys
import numpy as np
import av
from rtproxy.export.speech import encode_speech

pcm = (np.sin(np.arange(24000 * 600) / 7) * 8000).astype("<i2").tobytes()  # 10 minutes, 27 MiB
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
encode_speech(pcm)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) >> 10)
"""


def test_speech_clip_is_encoded_in_bounded_memory() -> None:
    """bomb-ulaw-audio x export --format html: one 60 MiB delta of 1 kHz PCM makes a
    90-minute clip (the timeline's end), which went to the Opus encoder as one frame:
    4.2 GiB max RSS. A minute at a time now, the same packets; a 10-minute clip took
    205 MiB more, now none."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _ENCODE_PEAK], capture_output=True, text=True, timeout=120, check=True)
    assert int(r.stdout) < 64, f"encoding 10 minutes of speech raised max RSS by {r.stdout.strip()} MiB"


def test_speech_clip_in_pieces_gives_the_packets_of_one_frame() -> None:
    """What the encoder makes of a clip fed a minute at a time is what it made of one frame."""
    import io

    import av
    import numpy as np

    from rtproxy.export.speech import encode_speech

    rng = np.random.default_rng(5)
    pcm = (rng.standard_normal(24000 * 125) * 3000).astype("<i2").tobytes()  # 2 min 5 s

    def one_frame(pcm: bytes, rate: int) -> bytes:
        samples = np.frombuffer(pcm, dtype="<i2")
        buf = io.BytesIO()
        direct = rate in (8000, 12000, 16000, 24000, 48000)  # rates libopus takes as they are
        with av.open(buf, "w", format="webm") as out:
            stream = out.add_stream("libopus", rate=rate if direct else 24000, layout="mono")
            stream.bit_rate = 16000
            stream.codec_context.options = {"application": "voip", "compression_level": "1", "frame_duration": "60",
                                            "cutoff": "8000"}
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, 0
            if direct:
                parts = [frame]
            else:
                resampler = av.AudioResampler(format="s16", layout="mono", rate=24000)
                parts = [*resampler.resample(frame), *resampler.resample(None)]
            for part in parts:
                for packet in stream.encode(part):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        return buf.getvalue()

    def packets(data: bytes) -> list[tuple[int | None, bytes]]:
        with av.open(io.BytesIO(data)) as c:
            return [(p.pts, bytes(p)) for p in c.demux() if p.size]

    for rate in (24000, 8000, 22050):
        assert packets(encode_speech(pcm, rate)) == packets(one_frame(pcm, rate))


def test_diff_hashes_audio_text_with_a_lone_surrogate(tmp_path: Path) -> None:
    """client-bad-audio x diff: an append whose audio is no base64 and holds a lone
    surrogate (``"\\u00e9\\u0000\\ud800"``) made ``rtproxy diff`` fail with an internal
    UnicodeEncodeError; the text is hashed as it is now, and a file equals itself."""
    from rtproxy.compare.core import diff_files

    texts = ['{"type":"input_audio_buffer.append","audio":"\\u00e9\\u0000\\ud800"}',
             '{"type":"input_audio_buffer.append","audio":"\\udc80\\udfff"}']
    p = make_recording(tmp_path / "a.rtrec", [(float(i), "client", t) for i, t in enumerate(texts)], redact=False)
    assert diff_files(str(p), str(p)).equivalent


def test_check_lists_a_bounded_number_of_findings_per_code(tmp_path: Path) -> None:
    """A function call never answered in each of 150,000 responses never created made
    600,000 findings (RT007, RT013, RT016 for every event): check held 372 MiB, export
    --format html 1.2 GiB. A check keeps 1000 of each code and severity, and says how
    many more it left out (same code and severity: filters and the exit status agree)."""
    from rtproxy.check.engine import MAX_FINDINGS_PER_CODE, check_file

    n = MAX_FINDINGS_PER_CODE + 250
    events = [(i / 1000, "server", {"type": "response.function_call_arguments.done", "response_id": f"r{i}",
                                      "item_id": f"i{i}", "call_id": f"c{i}", "name": "f", "arguments": "{}"})
              for i in range(n)]
    p = make_recording(tmp_path / "calls.rtrec", events, redact=False)
    found = check_file(p)
    rt007 = [f for f in found if f.code == "RT007"]
    assert len(rt007) == MAX_FINDINGS_PER_CODE + 1
    last = max(rt007, key=lambda f: f.event_index or 0)
    assert last.event_index == MAX_FINDINGS_PER_CODE and last.severity == "warning"
    assert last.message.startswith(f"250 more warning finding(s) of RT007 left out, the first at #{MAX_FINDINGS_PER_CODE} ")
    assert [f.event_index for f in rt007[:3]] == [0, 1, 2]


def test_strict_replay_closes_with_4900_when_the_divergence_quotes_a_lone_surrogate(tmp_path: Path) -> None:
    """A recorded session.update whose instructions hold a lone surrogate (``"\\ud800 hi"``):
    replay --strict quoted it in its close reason, which cannot be UTF-8, so the session's
    handler died (the client saw 1000, the report said "connection lost"). The surrogate
    is an escape in the reason now, and the close is 4900."""
    import asyncio
    import json
    import re
    import subprocess
    import sys

    import websockets

    p = make_recording(tmp_path / "s.rtrec", [
        (0, "server", {"type": "session.created", "session": {"id": "s"}}),
        (10, "client", '{"type":"session.update","session":{"instructions":"\\ud800 hi"}}'),
        (20, "server", {"type": "session.updated", "session": {}}),
    ], redact=False)
    proc = subprocess.Popen([sys.executable, "-m", "rtproxy", "replay", str(p), "--listen-port", "0", "--once",
                             "--strict"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        port = None
        for line in proc.stdout:
            m = re.search(r"websocket_base_url=ws://[^ ]*:(\d+)/v1", line)
            if m:
                port = int(m.group(1))
                break
        assert port is not None

        async def client() -> websockets.ConnectionClosed:
            async with websockets.connect(f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime") as ws:
                await ws.recv()  # session.created
                await ws.send(json.dumps({"type": "session.update", "session": {"instructions": "other"}}))
                try:
                    while True:
                        await asyncio.wait_for(ws.recv(), 10)
                except websockets.ConnectionClosed as exc:
                    return exc
            raise AssertionError("not closed")

        closed = asyncio.run(client())
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert closed.rcvd is not None and closed.rcvd.code == 4900, closed
    assert '"\\ud800 hi"' in closed.rcvd.reason
    assert "closed with 4900 (--strict, diverged)" in out and proc.returncode == 1, out + err


def test_faults_plan_and_build_events_from_values_with_lone_surrogates(tmp_path: Path) -> None:
    """replay --fault 'fail response#1 server_error:boom' on a recording whose response.created
    id is "\\ud800" stopped at startup with 'internal error: UnicodeEncodeError'; an injected
    error quoting a live client's event_id "\\ud800x" killed the session's handler. The
    injected events now carry such values as the JSON escapes they came as."""
    import json

    from rtproxy.io.format import open_recording as open_messages
    from rtproxy.replay.faults import error_event, failed_response_done, plan_faults

    p = make_recording(tmp_path / "f.rtrec", [
        (0, "server", {"type": "session.created", "session": {"id": "s"}}),
        (10, "client", {"type": "response.create"}),
        (20, "server", '{"type":"response.created","response":{"id":"\\ud800","metadata":{"k":"\\udc00"}}}'),
        (25, "server", '{"type":"response.output_item.added","response_id":"\\ud800","item":{"id":"it\\u00e9"}}'),
        (28, "server", '{"type":"conversation.item.added","item":{"id":"it\\u00e9"}}'),
        (30, "server", '{"type":"response.done","response":{"id":"\\ud800","usage":{"x\\ud800":1}}}'),
    ], redact=False)
    with open_messages(p) as r:
        plan = plan_faults(["fail response#1 server_error:boom"], r.messages())
    [planned] = plan.faults
    assert set(planned.skip) == {3, 4, 5}  # the failing response's events, found by parsing ("\\u00e9")
    created = json.loads('{"type":"response.created","response":{"id":"\\ud800","metadata":{"k":"\\udc00"}}}')
    done = failed_response_done(created, "server_error", message="boom")
    assert b"\\ud800" in done
    assert json.loads(done)["response"]["id"] == "\ud800"
    assert json.loads(error_event("x", message="m", client_event_id="\ud800x"))["error"]["event_id"] == "\ud800x"


def _har(mutate: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "startedDateTime": "2026-01-01T00:00:00.000Z", "time": 1,
        "request": {"method": "GET", "url": "wss://api.openai.com/v1/realtime?model=gpt-realtime",
                    "httpVersion": "HTTP/1.1", "headers": [{"name": "Host", "value": "api.openai.com"}]},
        "response": {"status": 101, "statusText": "Switching Protocols", "headers": [], "content": {"text": ""}},
        "_webSocketMessages": [{"type": "send", "time": 1767225600.1, "opcode": 1, "data": '{"type":"response.create"}'},
                               {"type": "receive", "time": 1767225600.2, "opcode": 1, "data": '{"type":"x"}'}],
    }
    doc = {"log": {"version": "1.2", "creator": {"name": "x", "version": "1"}, "entries": [entry]}}
    mutate(entry, doc)
    return doc


_S = "\ud800"
HOSTILE_HARS: dict[str, Any] = {
    # what each made `rtproxy import` do before: an internal error (AttributeError, TypeError,
    # ValueError, OverflowError, UnicodeEncodeError, RecursionError) instead of one line
    "surrogate-body": (lambda e, d: e["response"]["content"].update(text=_S), "lone surrogate"),
    "surrogate-data": (lambda e, d: e["_webSocketMessages"][0].update(data="x" + _S), "message 0: data holds"),
    "surrogate-header": (lambda e, d: e["request"]["headers"].append({"name": "X", "value": _S}), "request header"),
    "surrogate-url": (lambda e, d: e["request"].update(url="wss://x/" + _S), "request url"),
    "request-int": (lambda e, d: e.update(request=5), '"request" is not an object'),
    "response-str": (lambda e, d: e.update(response="x"), '"response" is not an object'),
    "status-abc": (lambda e, d: e["response"].update(status="abc"), "bad response status 'abc'"),
    "status-1e300": (lambda e, d: e["response"].update(status=1e300), "bad response status"),
    "messages-int": (lambda e, d: e.update(_webSocketMessages=5), "is not a list"),
    "time-nan": (lambda e, d: e["_webSocketMessages"][0].update(time=float("nan")), 'no numeric "time"'),
    "time-1e300": (lambda e, d: e["_webSocketMessages"][0].update(time=1e300), "no time of this session"),
    "body-not-base64": (lambda e, d: e["response"]["content"].update(text="!!!", encoding="base64"), "not base64"),
    "headers-odd": (lambda e, d: e["request"].update(headers=[5, "x", {"name": 1}, None]), None),
    "headers-map": (lambda e, d: e["request"].update(headers={"a": "b"}), None),
    "content-str": (lambda e, d: e["response"].update(content="x"), None),
    "wait-1e308": (lambda e, d: e.update(time=1e308), None),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_HARS))
def test_import_of_a_hostile_har_is_one_line_or_a_recording(tmp_path: Path, name: str) -> None:
    """A HAR is untrusted too: a member of the wrong type, out of range or holding a lone
    surrogate is one error line naming the file and the entry; odd headers are skipped."""
    import json
    import subprocess
    import sys

    mutate, error = HOSTILE_HARS[name]
    src = tmp_path / f"{name}.har"
    src.write_text(json.dumps(_har(mutate)))
    r = subprocess.run([sys.executable, "-m", "rtproxy", "import", str(src), "-o", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    if error is None:
        assert r.returncode == 0, r.stderr
        [rec] = (tmp_path / "out").rglob("*.rtrec")
        assert open_recording(rec).handshake is not None
    else:
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert r.stderr.startswith(f"rtproxy: error: {src}: entry 0") and error in r.stderr, r.stderr


def test_import_of_a_har_nested_too_deep_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    src = tmp_path / "deep.har"
    src.write_text('{"log":{"entries":[' + "[" * 100_000 + "]" * 100_000 + "]}}")
    r = subprocess.run([sys.executable, "-m", "rtproxy", "import", str(src), "-o", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert (r.returncode, r.stderr) == (2, f"rtproxy: error: {src}: not a HAR file (JSON nested deeper than "
                                           "Python can read)\n")


def test_a_reader_keeps_no_more_of_a_ping_than_a_ping_can_carry(tmp_path: Path) -> None:
    """pings x every reader: 5,000 ping records of 1 MiB each (265 KB compressed) made
    ``show``, ``check`` and ``export`` hold them all (4 GB). A ping carries at most 125
    bytes; a reader keeps that much of each, and only the fields a ping has."""
    from rtproxy.io.format import MAX_PING_PAYLOAD, open_recording as open_file, start_recording

    big = 1 << 20
    path = tmp_path / "pings.rtrec"
    with start_recording(path, url="wss://x/v1/realtime", started=1.7e9, recorder="test") as w:
        for i in range(200):
            w.write_control("ping", t_ns=i, payload=bytes(big), junk="j" * big, **{"from": "client"})
        w.write_message(10**6, True, True, b'{"type":"session.update"}')
        w.close()
    tracemalloc.start()
    try:
        rec = open_file(path)
        msgs = list(rec.messages())
        gc.collect()
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(msgs) == 1 and len(rec.recording.pings) == 200
    assert rec.recording.pings[0] == {"k": "ping", "t_ns": 0, "from": "client", "payload": bytes(MAX_PING_PAYLOAD)}
    assert kept < 8 * big, f"the reader holds {kept >> 20} MiB after 400 MiB of pings"


def test_audio_at_a_rate_that_does_not_divide_24k_is_resampled_in_bounded_memory() -> None:
    """rate 1001 x export wav/html: a session.updated saying 1,001 Hz and one 10 MB delta
    (a 1.3 KB file) took 3.1 GB: the whole message went through four float arrays of
    24 times its samples. Resampled a block at a time, it takes about its output."""
    from rtproxy.view.audio import _resample

    pcm = bytes(range(256)) * 8192  # 2 MiB, 1,048,576 samples
    tracemalloc.start()
    try:
        out = _resample(pcm, 1001)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(out) == 2 * (len(pcm) // 2 * 24000 // 1001)
    assert peak < 3 * len(out), f"{peak >> 20} MiB for {len(out) >> 20} MiB of output"


def test_the_html_page_keeps_a_bounded_amount_of_event_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bigtext x export html: 100,000 events of 20 KB (a 1.1 MB file) took the export out
    of memory, each event's JSON kept up to 20,000 characters. Past the page's room for
    event JSON, each event keeps a short start, and says where the whole of it is."""
    import rtproxy.export.html as H
    from rtproxy.io.format import open_recording as open_file
    from rtproxy.view.timeline import annotate

    monkeypatch.setattr(H, "PAGE_JSON_CHARS", 100_000)
    text = '{"type":"x","a":"' + "a" * 30000 + '"}'
    p = make_recording(tmp_path / "bigtext.rtrec", [(float(i), "server", text) for i in range(40)], redact=False)
    b = H.ReportBuilder("bigtext")
    with open_file(p) as reader:
        for e in annotate(reader.messages(), details=False):
            b.feed(e)
    assert [len(t) < H.MAX_JSON_CHARS + 100 for t in b.json[:5]] == [True] * 5
    assert all(t.startswith('{"type":"x"') for t in b.json)
    assert all(len(t) < H.SPENT_JSON_CHARS + 200 and "rtproxy show --json has it whole" in t for t in b.json[5:])
    assert sum(map(len, b.json)) < 100_000 + 40 * (H.MAX_JSON_CHARS + 100) // 8


def test_event_type_names_of_10_kb_are_shown_cut(tmp_path: Path) -> None:
    """types x show / diff / check / html: 30,000 events each of a distinct 10 KB type name
    (a 0.4 MB file) made ``rtproxy show`` and ``diff`` print 300 MB, each finding carry its
    whole name, and the html page keep every name (1 GB). A name is now shown cut (diff:
    its start and a digest, so distinct names stay distinct), and the page lists at most
    MAX_PAGE_TYPES of them."""
    import subprocess

    import rtproxy.export.html as H
    from rtproxy.check import check_file
    from rtproxy.io.format import open_recording as open_file
    from rtproxy.protocol.events import SHOWN_TYPE_CHARS, event_type
    from rtproxy.view.timeline import annotate
    from tests.conftest import RTPROXY

    n = H.MAX_PAGE_TYPES + 200
    names = [f"{k:06d}" + "t" * 10_000 for k in range(n)]
    p = make_recording(tmp_path / "types.rtrec", [(0.0, "server", {"type": t}) for t in names], redact=False)
    # The name is still read whole from the file (the regex no longer backtracks over it).
    assert event_type(b'{"type":"' + names[0].encode() + b'"}') == names[0]
    res = subprocess.run([*RTPROXY, "show", str(p)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if " <- " in ln]
    assert len(lines) == n and all(len(ln) < SHOWN_TYPE_CHARS + 80 for ln in lines)
    assert names[5][: SHOWN_TYPE_CHARS - 1] + "\u2026" in lines[5]
    other = make_recording(tmp_path / "other.rtrec", [(0.0, "server", {"type": "x"})])
    res = subprocess.run([*RTPROXY, "diff", str(p), str(other)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert max(map(len, res.stdout.splitlines())) < 300
    assert names[7][:100] + "\u2026#" in res.stdout
    found = check_file(p)
    assert found and all(f.event_type is None or len(f.event_type) <= SHOWN_TYPE_CHARS for f in found)
    b = H.ReportBuilder("types", audio="none")
    with open_file(p) as reader:
        for e in annotate(reader.messages(), details=False):
            b.feed(e)
    assert len(b.types) == H.MAX_PAGE_TYPES + 1 and b.types[-1] == H.OTHER_TYPES
    assert b.types[3] == names[3][: SHOWN_TYPE_CHARS - 1] + "\u2026"
    assert [b.types[i] for i in b.type[-3:]] == [H.OTHER_TYPES] * 3


def test_the_summary_matches_long_ids_and_shows_their_start(tmp_path: Path) -> None:
    """Long ids x show --summary: each 10 KB response, item and event id was kept whole.
    They are kept as their start and a digest, and still link an error to its event and
    a response's deltas to the response."""
    from rtproxy.io.format import open_recording as open_file
    from rtproxy.view.summary import summarize
    from rtproxy.view.timeline import annotate

    rid, eid = "resp_" + "r" * 10_000, "evt_" + "e" * 10_000
    p = make_recording(tmp_path / "ids.rtrec", [
        (0.0, "client", {"type": "response.create", "event_id": eid}),
        (0.1, "server", {"type": "response.created", "response": {"id": rid, "status": "in_progress"}}),
        (0.2, "server", {"type": "response.output_text.delta", "response_id": rid, "delta": "hi"}),
        (0.3, "server", {"type": "error", "error": {"type": "invalid_request_error", "message": "m", "event_id": eid}}),
        (0.4, "server", {"type": "response.done", "response": {"id": rid, "status": "completed"}}),
    ], redact=False)
    with open_file(p) as reader:
        s = summarize(annotate(reader.messages()), reader)
    [r] = s.responses
    assert r.id is not None and r.id.startswith("resp_rrr") and len(r.id) <= 128 and r.text == "hi"
    [err] = s.errors
    assert err.matched_by == "event_id" and err.cause_index == 0
