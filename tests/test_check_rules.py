"""Each rule of rtproxy check: a recording with the pattern, and a near miss without it."""

from __future__ import annotations

import math

import pytest

from rtproxy.check import RULES, Checker, check_events, check_file
from rtproxy.view.events import open as open_rec
from tests.check_helpers import appends, b64, codes, error, found, response, start, write

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "recordings" / "sample-voice-turn.rtrec"


def test_rule_table_is_complete() -> None:
    assert list(RULES) == sorted(RULES)
    for code, r in RULES.items():
        assert r.code == code and r.title and r.meaning and r.why and r.fix and r.sources
        assert r.severity in ("info", "warning", "error")


def test_sample_recording_is_clean() -> None:
    bad = [f for f in check_file(SAMPLE) if f.severity != "info"]
    assert bad == []


def test_clean_session_has_no_findings(tmp_path) -> None:
    ev = start() + [(5, "client", {"type": "session.update", "event_id": "u1", "session": {"type": "realtime",
                                                                                             "instructions": "hi"}}),
                    (6, "server", {"type": "session.updated", "event_id": "e2", "session": {"instructions": "hi"}})]
    ev += appends(10, 30)
    ev += [(3010, "client", {"type": "input_audio_buffer.commit"}), (3011, "client", {"type": "response.create"}),
           (3012, "server", {"type": "input_audio_buffer.committed", "event_id": "e3", "item_id": "item_u"})]
    ev += response(3020)
    assert found(write(tmp_path, ev)) == []


# --------------------------------------------------------------------- RT001
def test_rt001_create_while_active_joined_to_error(tmp_path) -> None:
    ev = start() + response(10, done=False) + [
        (50, "client", {"type": "response.create", "event_id": "rc2"}),
        error(52, "conversation_already_has_active_response", "Conversation already has an active response",
              event_id="rc2"),
    ]
    fs = [f for f in check_file(write(tmp_path, ev)) if f.code == "RT001"]
    assert len(fs) == 1 and fs[0].severity == "error" and fs[0].event_type == "response.create"
    idx = len(start()) + len(response(10, done=False))
    assert fs[0].event_index == idx and idx + 1 in fs[0].related
    assert "RT017" not in codes(write(tmp_path, ev))


def test_rt001_near_miss_after_done(tmp_path) -> None:
    ev = start() + response(10) + [(50, "client", {"type": "response.create"})] + response(60, "resp_2", "item_b")
    assert "RT001" not in codes(write(tmp_path, ev))


def test_rt001_error_without_visible_open_response(tmp_path) -> None:
    ev = start() + [(5, "client", {"type": "response.create"}),
                    error(6, None, "Conversation already has an active response")]
    fs = [f for f in check_file(write(tmp_path, ev)) if f.code == "RT001"]
    assert len(fs) == 1 and fs[0].event_index == 1


# --------------------------------------------------------------------- RT002
def _truncate(t, item="item_a", end=1000, eid="tr1"):
    return (t, "client", {"type": "conversation.item.truncate", "event_id": eid, "item_id": item,
                          "content_index": 0, "audio_end_ms": end})


def test_rt002_past_audio(tmp_path) -> None:
    ev = start() + response(10) + [_truncate(400, end=1500),
                                   error(401, "invalid_value", "Audio content of 1000ms is already shorter than 1500ms",
                                         event_id="tr1")]
    fs = [f for f in check_file(write(tmp_path, ev)) if f.code == "RT002"]
    assert len(fs) == 1 and "500 ms past" in fs[0].message and "refused" in fs[0].message
    assert "RT017" not in codes(write(tmp_path, ev))


def test_rt002_near_miss_exactly_the_audio(tmp_path) -> None:
    ev = start() + response(10) + [_truncate(400, end=1000)]
    assert "RT002" not in codes(write(tmp_path, ev))


def test_rt002_before_any_audio_unknown_and_user_item(tmp_path) -> None:
    ev = start() + response(10, audio_ms=0, done=False) + [_truncate(20, end=0)]
    assert ("RT002", "error") in found(write(tmp_path, ev))
    ev = start() + response(10) + [_truncate(400, item="item_nope", end=10)]
    assert any("never announced" in f.message for f in check_file(write(tmp_path, ev)) if f.code == "RT002")
    ev = start() + [(5, "server", {"type": "input_audio_buffer.committed", "item_id": "item_u"})] + response(10) + [
        _truncate(400, item="item_u", end=10)]
    assert any("user message" in f.message for f in check_file(write(tmp_path, ev)) if f.code == "RT002")


def test_rt002_pcmu_output_format(tmp_path) -> None:
    # G.711: 8 bytes per ms, so 8000 bytes are 1000 ms (as PCM16 they would be 167 ms)
    sess = {"type": "realtime", "audio": {"output": {"format": {"type": "audio/pcmu"}}}}
    ev = [(0, "server", {"type": "session.created", "session": sess}),
          (1, "server", {"type": "response.created", "response": {"id": "r"}}),
          (2, "server", {"type": "response.output_item.added", "response_id": "r",
                         "item": {"id": "i", "type": "message", "role": "assistant"}}),
          (3, "server", {"type": "response.output_audio.delta", "response_id": "r", "item_id": "i",
                         "content_index": 0, "delta": b64(8000)}),
          _truncate(50, item="i", end=900)]
    assert "RT002" not in codes(write(tmp_path, ev))


def test_rt002_stale_truncate(tmp_path) -> None:
    ev = start() + response(10) + [_truncate(10_000, end=500)]
    assert ("RT002", "warning") in found(write(tmp_path, ev))


# --------------------------------------------------------------------- RT003
def test_rt003_barge_in_without_truncate(tmp_path) -> None:
    ev = start() + response(10, audio_ms=3000) + [
        (500, "server", {"type": "input_audio_buffer.speech_started", "audio_start_ms": 400, "item_id": "u"})]
    fs = [f for f in check_file(write(tmp_path, ev)) if f.code == "RT003"]
    assert len(fs) == 1 and "item_a" in fs[0].message


def test_rt003_near_misses(tmp_path) -> None:
    ev = start() + response(10, audio_ms=3000) + [
        (500, "server", {"type": "input_audio_buffer.speech_started", "item_id": "u"}), _truncate(520, end=490)]
    assert "RT003" not in codes(write(tmp_path, ev, "a.rtrec"))
    ev = start() + response(10, audio_ms=1000) + [
        (2000, "server", {"type": "input_audio_buffer.speech_started", "item_id": "u"})]
    assert "RT003" not in codes(write(tmp_path, ev, "b.rtrec"))


# --------------------------------------------------------------------- RT004
def test_rt004_cancel_not_active(tmp_path) -> None:
    ev = start() + response(10) + [(300, "client", {"type": "response.cancel", "event_id": "c1"}),
                                   error(301, "response_cancel_not_active", "Cancellation failed", event_id="c1")]
    fs = [f for f in check_file(write(tmp_path, ev)) if f.code in ("RT004", "RT017")]
    assert [(f.code, f.severity) for f in fs] == [("RT004", "info")]
    ev = start() + response(10, done=False) + [(30, "client", {"type": "response.cancel"})]
    assert "RT004" not in codes(write(tmp_path, ev))


# --------------------------------------------------------------------- RT005
def test_rt005_commit_too_short(tmp_path) -> None:
    ev = start() + appends(10, 1, ms=50) + [
        (70, "client", {"type": "input_audio_buffer.commit", "event_id": "cm"}),
        error(71, "input_audio_buffer_commit_empty", "buffer too small", event_id="cm")]
    fs = [f for f in check_file(write(tmp_path, ev)) if f.code in ("RT005", "RT017")]
    assert [(f.code, f.severity) for f in fs] == [("RT005", "error")]
    ev = start() + appends(10, 1, ms=100) + [(120, "client", {"type": "input_audio_buffer.commit"})]
    assert "RT005" not in codes(write(tmp_path, ev))


def test_rt005_after_server_commit(tmp_path) -> None:
    ev = start() + appends(10, 10) + [(1010, "server", {"type": "input_audio_buffer.committed", "item_id": "u"}),
                                      (1020, "client", {"type": "input_audio_buffer.commit"})]
    assert "RT005" in codes(write(tmp_path, ev))


# --------------------------------------------------------------------- RT006
def test_rt006_asked_vs_reported(tmp_path) -> None:
    upd = {"type": "session.update", "session": {"type": "realtime",
                                                  "audio": {"input": {"format": {"type": "audio/pcmu"}}}}}
    ev = start() + [(5, "client", upd), (6, "server", {"type": "session.updated", "session": start()[0][2]["session"]})]
    fs = [f for f in check_file(write(tmp_path, ev)) if f.code == "RT006"]
    assert len(fs) == 1 and "asked g711_ulaw" in fs[0].message
    ok = start() + [(5, "client", upd), (6, "server", {"type": "session.updated", "session": upd["session"]})]
    assert "RT006" not in codes(write(tmp_path, ok, "ok.rtrec"))


def test_rt006_rate_and_unknown_format(tmp_path) -> None:
    upd = {"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}},
                                                           "output": {"format": "g711-ulaw"}}}}
    msgs = [f.message for f in check_file(write(tmp_path, start() + [(5, "client", upd)])) if f.code == "RT006"]
    assert any("16000" in m for m in msgs) and any("g711-ulaw" in m for m in msgs)


def test_rt006_append_rate(tmp_path) -> None:
    # 16 kHz PCM16 (32 bytes per ms) sent in real time, labelled 24 kHz: 2/3 of real time
    ev = start() + appends(10, 60, ms=100, rate_bytes=32)
    fs = [f for f in check_file(write(tmp_path, ev)) if f.code == "RT006"]
    assert len(fs) == 1 and "0.67x" in fs[0].message and "16000 Hz" in fs[0].message
    assert "RT006" not in codes(write(tmp_path, start() + appends(10, 60), "ok.rtrec"))
    # faster than real time (a file streamed in a burst) is no finding
    assert "RT006" not in codes(write(tmp_path, start() + appends(10, 60, every=10), "burst.rtrec"))


def test_rt006_odd_bytes(tmp_path) -> None:
    ev = start() + [(10, "client", {"type": "input_audio_buffer.append", "audio": b64(4801)})]
    assert any("odd" in f.message for f in check_file(write(tmp_path, ev)) if f.code == "RT006")


# --------------------------------------------------------------------- RT007 / RT008
def _call(t, rid="resp_t", cid="call_1", args='{"city": "Paris"}', done=True, status="completed"):
    item = {"id": f"fc_{cid}", "type": "function_call", "call_id": cid, "name": "weather", "arguments": args}
    ev = [(t, "server", {"type": "response.created", "response": {"id": rid}}),
          (t + 1, "server", {"type": "response.output_item.added", "response_id": rid, "item": {**item, "arguments": ""}}),
          (t + 2, "server", {"type": "response.function_call_arguments.done", "response_id": rid,
                             "item_id": item["id"], "call_id": cid, "name": "weather", "arguments": args})]
    if done:
        ev.append((t + 3, "server", {"type": "response.done", "response": {"id": rid, "status": status,
                                                                           "output": [item]}}))
    return ev


def _output(t, cid="call_1"):
    return (t, "client", {"type": "conversation.item.create",
                          "item": {"type": "function_call_output", "call_id": cid, "output": "{}"}})


def test_rt007_never_answered_and_answered(tmp_path) -> None:
    assert "RT007" in codes(write(tmp_path, start() + _call(10), "a.rtrec"))
    # at the event the call was first seen in, named with its type
    (f,) = [f for f in check_file(tmp_path / "a.rtrec") if f.code == "RT007"]
    assert (f.event_index, f.event_type) == (3, "response.function_call_arguments.done")
    done_only = start() + [(10, "server", {"type": "response.done", "response": {"id": "r", "status": "completed",
                           "output": [{"type": "function_call", "id": "fc", "call_id": "c9", "name": "w"}]}})]
    (f,) = [f for f in check_file(write(tmp_path, done_only, "z.rtrec")) if f.code == "RT007"]
    assert (f.event_index, f.event_type) == (1, "response.done")
    ok = start() + _call(10) + [_output(100), (101, "client", {"type": "response.create"})]
    assert "RT007" not in codes(write(tmp_path, ok, "b.rtrec"))


def test_rt007_variants(tmp_path) -> None:
    def msgs(ev, name):
        return [f.message for f in check_file(write(tmp_path, ev, name)) if f.code == "RT007"]

    assert any("no response.create" in m for m in msgs(start() + _call(10) + [_output(100)], "a.rtrec"))
    two = start() + _call(10) + [_output(100), _output(110), (111, "client", {"type": "response.create"})]
    assert any("second function_call_output" in m for m in msgs(two, "b.rtrec"))
    unk = start() + [_output(100, "call_zzz"), (101, "client", {"type": "response.create"})]
    assert any("never made" in m for m in msgs(unk, "c.rtrec"))
    bad = start() + _call(10, args="[1, 2") + [_output(100), (101, "client", {"type": "response.create"})]
    assert any("not valid JSON" in m for m in msgs(bad, "d.rtrec"))
    arr = start() + _call(10, args="[1, 2]") + [_output(100), (101, "client", {"type": "response.create"})]
    assert any("not an object" in m for m in msgs(arr, "e.rtrec"))
    late = start() + _call(10) + [_output(20_000), (20_001, "client", {"type": "response.create"})]
    assert any("answered 20.0 s" in m for m in msgs(late, "f.rtrec"))


def test_rt008_continuation(tmp_path) -> None:
    early = start() + _call(10, done=False) + [_output(20)]
    assert ("RT008", "warning") in found(write(tmp_path, early, "a.rtrec"))
    failed = start() + _call(10, status="failed") + [_output(100), (101, "client", {"type": "response.create"})]
    assert ("RT008", "error") in found(write(tmp_path, failed, "b.rtrec"))
    ok = start() + _call(10) + [_output(100), (101, "client", {"type": "response.create"})]
    assert "RT008" not in codes(write(tmp_path, ok, "c.rtrec"))


# --------------------------------------------------------------------- RT009
def test_rt009_rejected_shows_asked_and_in_force(tmp_path) -> None:
    ev = start() + [(5, "client", {"type": "session.update", "event_id": "u1", "session": {"voice": "fable"}}),
                    error(6, "unknown_parameter", "Unknown parameter: 'session.voice'.", param="session.voice",
                          event_id="u1")]
    fs = [f for f in check_file(write(tmp_path, ev)) if f.code in ("RT009", "RT017")]
    assert len(fs) == 1 and fs[0].code == "RT009" and fs[0].event_index == 1
    assert "'fable'" in fs[0].message and "rejected" in fs[0].message
    ok = start() + [(5, "client", {"type": "session.update", "session": {"instructions": "x"}}),
                    (6, "server", {"type": "session.updated", "session": {"instructions": "x"}})]
    assert "RT009" not in codes(write(tmp_path, ok, "ok.rtrec"))


def test_rt009_not_acknowledged_and_not_applied(tmp_path) -> None:
    ev = start() + [(5, "client", {"type": "session.update", "session": {"instructions": "x"}})]
    assert ("RT009", "warning") in found(write(tmp_path, ev, "a.rtrec"))
    ev = start() + [(5, "client", {"type": "session.update", "session": {"instructions": "x"}}),
                    (6, "server", {"type": "session.updated", "session": {"instructions": "y"}})]
    assert ("RT009", "info") in found(write(tmp_path, ev, "b.rtrec"))


# --------------------------------------------------------------------- RT010
def test_rt010_beta_against_ga(tmp_path) -> None:
    ev = [error(1, "beta_api_shape_disabled", "The Realtime Beta API is no longer supported.")]
    p = write(tmp_path, ev, headers=[["OpenAI-Beta", "realtime=v1"]], close=(4000, "beta", "server"))
    fs = [f for f in check_file(p) if f.code in ("RT010", "RT017")]
    assert [(f.code, f.severity) for f in fs] == [("RT010", "error")] and "OpenAI-Beta" in fs[0].message


def test_rt010_mixed_and_unknown(tmp_path) -> None:
    ev = start() + [(5, "server", {"type": "response.audio.delta", "item_id": "x", "delta": ""}),
                    (6, "server", {"type": "response.output_audio.delta", "item_id": "x", "delta": ""}),
                    (7, "client", {"type": "not.a.real.event", "event_id": "n1"}),
                    error(8, "invalid_value", "Invalid value: 'not.a.real.event'.", param="type", event_id="n1"),
                    (9, "client", "this is not json")]
    msgs = [f.message for f in check_file(write(tmp_path, ev)) if f.code == "RT010"]
    assert any("mixes" in m for m in msgs) and any("not.a.real.event" in m for m in msgs)
    assert any("not JSON" in m for m in msgs)
    assert "RT017" not in codes(write(tmp_path, ev))
    assert "RT010" not in codes(write(tmp_path, start() + response(10), "ok.rtrec"))


# --------------------------------------------------------------------- RT011
def test_rt011_expiry_and_idle(tmp_path) -> None:
    ev = start() + [error(60_000 * 60, "session_expired", "Your session hit the maximum duration of 60 minutes.")]
    fs = [f for f in check_file(write(tmp_path, ev, close=(1001, "", "server"))) if f.code in ("RT011", "RT017")]
    assert len(fs) == 1 and fs[0].code == "RT011" and "60.0 min" in fs[0].message
    idle = start() + [(5000, "server", {"type": "input_audio_buffer.timeout_triggered", "item_id": "u",
                                        "audio_start_ms": 0, "audio_end_ms": 5000})] + response(5010)
    fs = [f for f in check_file(write(tmp_path, idle, "idle.rtrec")) if f.code == "RT011"]
    assert len(fs) == 1 and fs[0].severity == "info" and fs[0].related


# --------------------------------------------------------------------- RT012
def test_rt012_outcomes(tmp_path) -> None:
    det = {"type": "failed", "error": {"type": "invalid_request_error", "code": "inference_rate_limit_exceeded"}}
    assert ("RT012", "error") in found(write(tmp_path, start() + response(10, status="failed", details=det), "a.rtrec"))
    inc = {"type": "incomplete", "reason": "max_output_tokens"}
    fs = [f for f in check_file(write(tmp_path, start() + response(10, status="incomplete", details=inc), "b.rtrec"))
          if f.code == "RT012"]
    assert fs[0].severity == "warning" and "max_output_tokens" in fs[0].message
    assert ("RT012", "info") in found(write(tmp_path, start() + response(10, status="cancelled"), "c.rtrec"))
    assert "RT012" not in codes(write(tmp_path, start() + response(10), "d.rtrec"))


def test_rt012_rate_limits(tmp_path) -> None:
    low = start() + [(5, "server", {"type": "rate_limits.updated", "rate_limits": [
        {"name": "tokens", "limit": 40000, "remaining": 100, "reset_seconds": 2}]})]
    assert ("RT012", "warning") in found(write(tmp_path, low, "a.rtrec"))
    fine = start() + [(5, "server", {"type": "rate_limits.updated", "rate_limits": [
        {"name": "tokens", "limit": 40000, "remaining": 39000}]})]
    assert "RT012" not in codes(write(tmp_path, fine, "b.rtrec"))


# --------------------------------------------------------------------- RT013
def test_rt013_lifecycle(tmp_path) -> None:
    never = start() + response(10, done=False) + [(60_000, "client", {"type": "input_audio_buffer.clear"})]
    assert ("RT013", "warning") in found(write(tmp_path, never, "a.rtrec"))
    r = response(10)
    twice = start() + r + [(r[-1][0] + 5, "server", r[-1][2])]
    assert ("RT013", "error") in found(write(tmp_path, twice, "b.rtrec"))
    after = start() + r + [(r[-1][0] + 5, "server", {"type": "response.output_audio.delta", "response_id": "resp_1",
                                                     "item_id": "item_a", "delta": b64(480)})]
    assert any("after its response.done" in f.message for f in check_file(write(tmp_path, after, "c.rtrec")))
    assert "RT013" not in codes(write(tmp_path, start() + r, "d.rtrec"))


def test_rt013_interleaved(tmp_path) -> None:
    a = response(10, "resp_a", "item_a", done=False, audio_ms=300)
    b = response(20, "resp_b", "item_b", done=False, audio_ms=300)
    ev = sorted(start() + a + b, key=lambda e: e[0])
    assert any("interleaved" in f.message for f in check_file(write(tmp_path, ev)) if f.code == "RT013")


# --------------------------------------------------------------------- RT014
def test_rt014_transcription(tmp_path) -> None:
    on = {**start()[0][2]["session"], "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}}}
    base = [(0, "server", {"type": "session.created", "session": on}),
            (10, "server", {"type": "input_audio_buffer.committed", "item_id": "item_u"})]
    missing = base + response(20) + [(30_000, "client", {"type": "input_audio_buffer.clear"})]
    assert ("RT014", "warning") in found(write(tmp_path, missing, "a.rtrec"))
    done = base + [(15, "server", {"type": "conversation.item.input_audio_transcription.completed",
                                   "item_id": "item_u", "transcript": "hi there"})] + response(20)
    assert "RT014" not in codes(write(tmp_path, done, "b.rtrec"))
    late = base + response(20) + [(5000, "server", {"type": "conversation.item.input_audio_transcription.completed",
                                                    "item_id": "item_u", "transcript": "hi there"})]
    assert ("RT014", "info") in found(write(tmp_path, late, "c.rtrec"))
    failed = base + [(15, "server", {"type": "conversation.item.input_audio_transcription.failed",
                                     "item_id": "item_u", "error": {"code": "audio_unintelligible"}})]
    assert ("RT014", "warning") in found(write(tmp_path, failed, "d.rtrec"))


# --------------------------------------------------------------------- RT015
def test_rt015_big_append_and_1009(tmp_path) -> None:
    big = start() + [(10, "client", {"type": "input_audio_buffer.append", "audio": b64(12 * 1024 * 1024)})]
    assert ("RT015", "error") in found(write(tmp_path, big, "a.rtrec", close=(1009, "too big", "server")))
    ok = start() + [(10, "client", {"type": "input_audio_buffer.append", "audio": b64(480_000)})]
    assert "RT015" not in codes(write(tmp_path, ok, "b.rtrec"))


# --------------------------------------------------------------------- RT016
def test_rt016_unannounced_item(tmp_path) -> None:
    ev = start() + [(5, "server", {"type": "response.created", "response": {"id": "r"}}),
                    (6, "server", {"type": "response.output_audio.delta", "response_id": "r", "item_id": "item_x",
                                   "delta": b64(480)}),
                    (7, "server", {"type": "response.output_audio.delta", "response_id": "r", "item_id": "item_x",
                                   "delta": b64(480)})]
    fs = [f for f in check_file(write(tmp_path, ev)) if f.code == "RT016"]
    assert len(fs) == 1 and "2 events" in fs[0].message
    assert "RT016" not in codes(write(tmp_path, start() + response(10), "ok.rtrec"))


# --------------------------------------------------------------------- RT017
def test_rt017_refused_upgrade(tmp_path) -> None:
    body = b'{"error": {"type": "invalid_request_error", "code": "invalid_api_key", "message": "Incorrect API key"}}'
    p = write(tmp_path, [], status=401, body=body, headers=[["Host", "api.openai.com"]], close=None)
    fs = [f for f in check_file(p) if f.code == "RT017" and f.severity == "error"]
    assert len(fs) == 1 and "401" in fs[0].message and "invalid_api_key" in fs[0].message
    assert fs[0].event_index is None


def test_rt017_close_and_unexplained_error(tmp_path) -> None:
    p = write(tmp_path, start() + [error(5, "server_error", "boom")], close=(1011, "internal", "server"))
    msgs = [f.message for f in check_file(p) if f.code == "RT017"]
    assert any("1011" in m for m in msgs) and any("server_error" in m for m in msgs)
    assert "RT017" not in codes(write(tmp_path, start(), "ok.rtrec", close=(1000, "", "server")))


# --------------------------------------------------------------------- RT018
@pytest.mark.parametrize("value", ["500", float("nan"), 1e308, math.inf, True, None, {"x": 1}])
def test_rt018_bad_audio_end_ms_is_flagged_never_raises(tmp_path, value) -> None:
    ev = start() + response(10) + [(400, "client", {"type": "conversation.item.truncate", "item_id": "item_a",
                                                    "content_index": 0, "audio_end_ms": value})]
    got = found(write(tmp_path, ev))
    assert ("RT018", "warning") in got and not any(c == "RT000" for c, _ in got)


def test_rt018_rate_fast(tmp_path) -> None:
    upd = {"type": "session.update", "session": {"audio": {"input": {"format": {"type": "audio/pcm", "rate": "fast"}}},
                                                  "temperature": "hot"}}
    got = check_file(write(tmp_path, start() + [(5, "client", upd)]))
    assert any(f.code == "RT018" and "rate" in f.message for f in got)
    assert not any(f.code == "RT000" for f in got)


def test_hostile_values_everywhere_never_raise(tmp_path) -> None:
    odd = [None, "x", 1e308, -1, [], {}, True, float("nan")]
    ev = start()
    t = 10
    names = ["response.created", "response.done", "response.output_item.added", "response.output_audio.delta",
             "conversation.item.truncate", "session.update", "session.updated", "error", "rate_limits.updated",
             "input_audio_buffer.committed", "input_audio_buffer.speech_started", "conversation.item.create",
             "response.function_call_arguments.done", "response.create", "response.cancel",
             "conversation.item.input_audio_transcription.completed", "input_audio_buffer.commit"]
    for name in names:
        for v in odd:
            side = "client" if name in ("conversation.item.truncate", "session.update", "conversation.item.create",
                                        "response.create", "response.cancel", "input_audio_buffer.commit") else "server"
            body = {"type": name, "response": v, "item": v, "item_id": v, "response_id": v, "session": v,
                    "error": v, "rate_limits": v, "call_id": v, "arguments": v, "audio_end_ms": v,
                    "content_index": v, "delta": v, "transcript": v, "event_id": v}
            ev.append((t, side, body))
            t += 1
    got = check_file(write(tmp_path, ev, close=(None, "", "server")))
    assert not [f for f in got if f.code == "RT000"], [f.message for f in got if f.code == "RT000"]


# --------------------------------------------------------------------- RT019 - RT022
def test_rt019_echo(tmp_path) -> None:
    ev = start() + response(10, audio_ms=3000) + [
        (150, "server", {"type": "input_audio_buffer.speech_started", "item_id": "u"}), _truncate(160, end=100)]
    assert "RT019" in codes(write(tmp_path, ev))
    ev = start() + response(10, audio_ms=3000) + [
        (1500, "server", {"type": "input_audio_buffer.speech_started", "item_id": "u"}), _truncate(1510, end=1400)]
    assert "RT019" not in codes(write(tmp_path, ev, "ok.rtrec"))


def test_rt020_speech_never_stopped(tmp_path) -> None:
    ev = start() + [(10, "server", {"type": "input_audio_buffer.speech_started", "item_id": "u1"}),
                    (5000, "server", {"type": "input_audio_buffer.speech_started", "item_id": "u2"}),
                    (5900, "server", {"type": "input_audio_buffer.speech_stopped", "item_id": "u2"})]
    fs = [f for f in check_file(write(tmp_path, ev)) if f.code == "RT020"]
    assert len(fs) == 1 and fs[0].event_index == 1


def test_rt021_assistant_audio_history(tmp_path) -> None:
    item = {"type": "message", "role": "assistant", "content": [{"type": "audio", "audio": b64(4800)}]}
    ev = start() + [(5, "client", {"type": "conversation.item.create", "item": item}),
                    error(6, "missing_required_parameter", "Missing required parameter: 'item.content[0].text'.",
                          param="item.content[0].text")]
    got = codes(write(tmp_path, ev))
    assert "RT021" in got and "RT017" not in got
    text = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello"}]}
    assert "RT021" not in codes(write(tmp_path, start() + [(5, "client", {"type": "conversation.item.create",
                                                                         "item": text})], "ok.rtrec"))


def test_rt022_duplicate_event(tmp_path) -> None:
    r = response(10)
    ev = start() + r + [(r[-1][0] + 1, "server", r[3][2])]
    assert "RT022" in codes(write(tmp_path, ev))


# --------------------------------------------------------------------- API
def test_check_events_and_checker_on_live_events(tmp_path) -> None:
    p = write(tmp_path, start() + response(10, done=False) + [(50, "client", {"type": "response.create"})])
    rec = open_rec(p)
    fs = check_events(rec.events(), select=["RT001"])
    assert [f.code for f in fs] == ["RT001"]
    c = Checker()
    for e in rec.events():
        c.feed(e)
    assert any(f.code == "RT001" for f in c.finish(rec.handshake, rec.close))


def test_finding_to_dict_fields(tmp_path) -> None:
    p = write(tmp_path, start() + response(10, done=False) + [(50, "client", {"type": "response.create"})])
    d = check_file(p, select=["RT001"])[0].to_dict()
    assert set(d) == {"code", "severity", "title", "message", "t", "event_index", "event_type", "related"}
    assert d["t"] == pytest.approx(0.05) and d["event_type"] == "response.create" and isinstance(d["related"], list)


def test_select_ignore_min_severity_in_api(tmp_path) -> None:
    p = write(tmp_path, start() + response(10, status="cancelled") + [(300, "client", {"type": "response.cancel"})])
    assert codes(p) == {"RT004", "RT012"}
    assert codes(p, ignore=["RT004"]) == {"RT012"}
    assert codes(p, select=["RT00"]) == {"RT004"}
    assert codes(p, min_severity="warning") == set()
    with pytest.raises(ValueError):
        check_file(p, select=["RT999"])


def test_docs_catalogue_lists_every_rule() -> None:
    text = (ROOT / "docs" / "CHECK.md").read_text()
    for code, r in RULES.items():
        assert f"## {code}" in text and r.title in text


def test_delta_cache_gives_what_a_parse_gives() -> None:
    import json as _json

    from rtproxy.protocol.events import parse_event as _parse
    from rtproxy.view.events import audio_event_head

    class E:
        def __init__(self, obj: object) -> None:
            self.head = _json.dumps(obj, separators=(",", ":")).encode()
            self.json = _parse(self.head)

    heads = [
        {"type": "response.output_audio.delta", "event_id": f"ev_{i}", "response_id": "r", "item_id": it,
         "content_index": 0, "delta": ""} for i, it in enumerate(["a", "a", "b", "a"])
    ] + [
        {"type": "response.output_audio.delta", "x": {"event_id": "inner"}, "event_id": "outer", "item_id": "a"},
        {"type": "response.output_audio.delta", "x": {"event_id": "inner2"}, "event_id": "outer", "item_id": "a"},
        {"type": "response.output_audio.delta", "event_id": "q\"uote", "item_id": "a"},
    ]
    for h in heads:
        e = E(h)
        assert audio_event_head(e.head) == _parse(e.head) == h
