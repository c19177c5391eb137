"""The replay scheduler, without sockets: recorded dialogue in, send times out."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from rtproxy.io.format import Message, RecordingWriter, open_recording, split_base64_audio
from rtproxy.replay.script import (
    AUDIO,
    EVENT,
    SERVER,
    START,
    ReplayScheduler,
    client_events,
    lateness_stats,
    parse_speed,
    server_steps,
)

MS = 1_000_000


def ev(t_ms: float, from_client: bool, obj: dict) -> Message:
    content = json.dumps(obj).encode()
    return Message(int(t_ms * MS), from_client, True, split_base64_audio(content) or content)


def append(t_ms: float, audio_ms: int) -> Message:
    pcm = b"\x01\x00" * (24 * audio_ms)  # 24 kHz PCM16: 48 bytes a millisecond
    return ev(t_ms, True, {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()})


def live_append(audio_ms: int) -> bytes:
    pcm = b"\x02\x00" * (24 * audio_ms)
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}).encode()


def live(obj: dict) -> bytes:
    return json.dumps(obj).encode()


SESSION = {"type": "realtime", "instructions": "be brief"}


def dialogue() -> list[Message]:
    """session.created; update/updated; 200 ms of audio in 2 appends with speech_started
    after it; commit; response.create and a streamed response."""
    return [
        ev(5, False, {"type": "session.created", "session": {}}),
        ev(100, True, {"type": "session.update", "session": SESSION}),
        ev(102, False, {"type": "session.updated", "session": SESSION}),
        append(200, 100),
        append(300, 100),
        ev(310, False, {"type": "input_audio_buffer.speech_started", "audio_start_ms": 0}),
        ev(400, True, {"type": "input_audio_buffer.commit"}),
        ev(403, False, {"type": "input_audio_buffer.committed"}),
        ev(500, True, {"type": "response.create"}),
        ev(520, False, {"type": "response.created"}),
        ev(560, False, {"type": "response.output_audio_transcript.delta", "delta": "Hi"}),
        ev(600, False, {"type": "response.done"}),
    ]


def drain(s: ReplayScheduler, now: int) -> list[tuple[int, str]]:
    """Pop every step due by ``now``: (due ms, type)."""
    out = []
    while (nxt := s.next_send()) is not None and nxt[0] <= now:
        due, step = nxt
        s.pop()
        out.append((due // MS, step.type))
    return out


def scheduler(msgs: list[Message], **kw) -> ReplayScheduler:
    s = ReplayScheduler(server_steps(msgs), client_events(msgs), **kw)
    s.start(0)
    return s


def test_server_steps_say_what_each_message_followed() -> None:
    steps = list(server_steps(dialogue()))
    got = [(s.type, s.after, s.ordinal, round(s.audio_ms), s.gap_ns // MS) for s in steps]
    assert got == [
        ("session.created", START, 0, 0, 5),
        ("session.updated", EVENT, 0, 0, 2),
        ("input_audio_buffer.speech_started", AUDIO, 1, 200, 10),
        ("input_audio_buffer.committed", EVENT, 1, 0, 3),
        ("response.created", EVENT, 2, 0, 20),
        ("response.output_audio_transcript.delta", SERVER, 0, 0, 40),
        ("response.done", SERVER, 0, 0, 40),
    ]


def test_client_events_fold_appends_into_duration() -> None:
    evs = list(client_events(dialogue()))
    assert [(e.type, round(e.segment_audio_ms)) for e in evs] == [
        ("session.update", 0),
        ("input_audio_buffer.commit", 200),
        ("response.create", 0),
        (None, 0),
    ]


def test_client_pace_waits_for_the_client_then_keeps_the_recorded_gap() -> None:
    s = scheduler(dialogue())
    # session.created is spontaneous: at its recorded offset
    assert drain(s, 50 * MS) == [(5, "session.created")]
    # session.updated waits for the live session.update (sent late, at 1000 ms)
    assert s.next_send() is None
    assert "session.update" in s.waiting_for()
    assert s.client_message(1000 * MS, True, live({"type": "session.update", "session": SESSION})) == []
    assert drain(s, 5000 * MS) == [(1002, "session.updated")]
    for i, t in enumerate((1100, 1150, 1200, 1250)):  # 4 appends of 50 ms instead of 2 of 100 ms
        s.client_message(t * MS, True, live_append(50))
        sent = drain(s, 5000 * MS)
        # speech_started followed 200 ms of audio: released by the 4th chunk, + 10 ms
        assert sent == ([] if i < 3 else [(1260, "input_audio_buffer.speech_started")])
    s.client_message(1300 * MS, True, live({"type": "input_audio_buffer.commit"}))
    assert drain(s, 5000 * MS) == [(1303, "input_audio_buffer.committed")]
    # the client waits 2 s before response.create: the response only comes after it
    assert drain(s, 3000 * MS) == []
    s.client_message(3300 * MS, True, live({"type": "response.create"}))
    assert drain(s, 9000 * MS) == [
        (3320, "response.created"),
        (3360, "response.output_audio_transcript.delta"),
        (3400, "response.done"),
    ]
    assert s.finished and s.divergences == []


def test_speed_divides_gaps_and_zero_removes_them() -> None:
    s = scheduler(dialogue(), speed=2.0)
    assert drain(s, 10 * MS) == [(2, "session.created")]
    s.client_message(100 * MS, True, live({"type": "session.update", "session": SESSION}))
    assert drain(s, 200 * MS) == [(101, "session.updated")]
    fast = scheduler(dialogue(), speed=0.0)
    assert drain(fast, 0) == [(0, "session.created")]


def test_clock_pace_uses_recorded_offsets_only() -> None:
    s = scheduler(dialogue(), pace="clock", speed=1.0)
    assert [t for t, _ in drain(s, 10_000 * MS)] == [5, 102, 310, 403, 520, 560, 600]
    half = scheduler(dialogue(), pace="clock", speed=2.0)
    assert [t for t, _ in drain(half, 10_000 * MS)] == [2, 51, 155, 201, 260, 280, 300]
    assert parse_speed("max") == 0.0 and parse_speed("0") == 0.0 and parse_speed("1.5") == 1.5
    with pytest.raises(ValueError):
        parse_speed("-1")


def test_another_event_type_is_a_divergence_that_says_what_and_where() -> None:
    s = scheduler(dialogue())
    drain(s, 10 * MS)
    (d,) = s.client_message(120 * MS, True, live({"type": "response.create"}))
    text = d.message()
    assert "client message #0 at 120.0 ms" in text
    assert "recording expected session.update (recorded message #1 at 100.0 ms)" in text
    assert "got response.create" in text
    # lenient: it resynchronised on the recorded response.create, so the response follows
    sent = drain(s, 10_000 * MS)
    assert sent[-3:] == [(140, "response.created"), (180, "response.output_audio_transcript.delta"), (220, "response.done")]


def test_unknown_extra_event_does_not_move_the_cursor() -> None:
    s = scheduler(dialogue())
    (d,) = s.client_message(50 * MS, True, live({"type": "conversation.item.delete", "item_id": "x"}))
    assert "expected session.update" in d.message() and "got conversation.item.delete" in d.message()
    assert s.client_message(100 * MS, True, live({"type": "session.update", "session": SESSION})) == []


def test_session_config_difference_names_the_field() -> None:
    s = scheduler(dialogue())
    (d,) = s.client_message(
        100 * MS, True, live({"type": "session.update", "session": {**SESSION, "instructions": "be verbose"}})
    )
    assert d.field == "session.update session.instructions"
    assert '"be brief"' in d.message() and '"be verbose"' in d.message()


def test_function_output_difference_is_a_divergence_event_ids_are_not() -> None:
    item = {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 21}'}
    msgs = [
        ev(10, True, {"type": "conversation.item.create", "event_id": "a", "item": item}),
        ev(12, False, {"type": "conversation.item.added"}),
    ]
    s = scheduler(msgs)
    same = s.client_message(10 * MS, True, live({"type": "conversation.item.create", "event_id": "zz", "item": item}))
    assert same == []
    s2 = scheduler(msgs)
    (d,) = s2.client_message(
        10 * MS, True, live({"type": "conversation.item.create", "item": {**item, "output": '{"temp": 30}'}})
    )
    assert d.field == "conversation.item.create item.output"
    assert "21" in d.expected and "30" in d.got


def test_events_beyond_the_recording_and_binary_messages_diverge() -> None:
    msgs = [ev(10, True, {"type": "response.create"}), ev(20, False, {"type": "response.done"})]
    s = scheduler(msgs)
    assert s.client_message(10 * MS, True, live({"type": "response.create"})) == []
    (d,) = s.client_message(30 * MS, True, live({"type": "response.create"}))
    assert "no more client events (the recording has 1)" in d.message()
    (b,) = s.client_message(40 * MS, False, b"\x00\x01")
    assert "(binary message)" in b.message()


def test_audio_where_the_recording_had_none_diverges_once() -> None:
    s = scheduler(dialogue())
    (d,) = s.client_message(10 * MS, True, live_append(20))
    assert "recording expected session.update" in d.message()
    assert s.client_message(20 * MS, True, live_append(20)) == []


def test_audio_gate_is_released_when_the_segment_ends_early() -> None:
    s = scheduler(dialogue())
    s.client_message(100 * MS, True, live({"type": "session.update", "session": SESSION}))
    s.client_message(200 * MS, True, live_append(50))  # only 50 of the recorded 200 ms
    assert [t for t, _ in drain(s, 1000 * MS)] == [5, 102]
    s.client_message(300 * MS, True, live({"type": "input_audio_buffer.commit"}))
    assert drain(s, 1000 * MS) == [(310, "input_audio_buffer.speech_started"), (310, "input_audio_buffer.committed")]


def test_streams_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "d.rtrec"
    with RecordingWriter(path) as w:
        w.write_header(url="ws://x/v1/realtime?model=m")
        w.write_handshake(status=101)
        for m in dialogue():
            w.write_message(m.t_ns, m.from_client, m.is_text, m.content)
    r1, r2 = open_recording(path), open_recording(path)
    s = ReplayScheduler(server_steps(r1.messages()), client_events(r2.messages()), pace="clock", speed=0)
    s.start(0)
    sent = drain(s, 0)
    assert [t for _, t in sent][0] == "session.created" and len(sent) == 7


def test_lateness_stats() -> None:
    assert lateness_stats([]) == (0.0, 0.0, 0.0)
    p50, p99, mx = lateness_stats([i * MS for i in range(101)])
    assert (p50, p99, mx) == (50.0, 99.0, 100.0)


def test_adjacent_events_sent_in_the_other_order_still_match() -> None:
    msgs = [
        ev(10, True, {"type": "session.update", "session": SESSION}),
        ev(12, False, {"type": "session.updated"}),
        ev(20, True, {"type": "response.create"}),
        ev(30, False, {"type": "response.created"}),
    ]
    s = scheduler(msgs)
    assert s.client_message(100 * MS, True, live({"type": "response.create"})) == []
    assert drain(s, 1000 * MS) == []  # session.updated still waits for session.update
    assert s.client_message(105 * MS, True, live({"type": "session.update", "session": SESSION})) == []
    assert drain(s, 1000 * MS) == [(107, "session.updated"), (110, "response.created")]
    assert s.cursor == 2
    # the swap is given up at the next event that is not the awaited one (a session.update
    # may come later still: test_a_session_update_may_come_after_the_events_recorded_after_it)
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    msgs2 = [ev(10, True, {"type": "conversation.item.create", "item": item}),
             ev(12, False, {"type": "conversation.item.added"}), *msgs[2:],
             ev(40, True, {"type": "input_audio_buffer.clear"})]
    s2 = scheduler(msgs2)
    assert s2.client_message(100 * MS, True, live({"type": "response.create"})) == []
    (d,) = s2.client_message(110 * MS, True, live({"type": "input_audio_buffer.clear"}))
    assert "expected conversation.item.create" in d.message()
    assert [t for _, t in drain(s2, 1000 * MS)] == ["conversation.item.added", "response.created"]


def test_several_differing_fields_are_counted() -> None:
    s = scheduler(dialogue())
    (d,) = s.client_message(
        100 * MS, True, live({"type": "session.update", "session": {"type": "realtime", "instructions": "x", "voice": "ash"}})
    )
    assert d.field == "session.update session.instructions"
    assert "(and 1 more field differs: session.voice)" in d.message()


def test_wait_timeout_reports_the_missing_client_message_and_releases_the_response() -> None:
    s = scheduler(dialogue(), wait_timeout_ns=1000 * MS)
    drain(s, 50 * MS)
    s.client_message(100 * MS, True, live({"type": "session.update", "session": SESSION}))
    drain(s, 200 * MS)
    s.client_message(200 * MS, True, live_append(100))
    s.client_message(300 * MS, True, live_append(100))
    drain(s, 400 * MS)
    s.client_message(400 * MS, True, live({"type": "input_audio_buffer.commit"}))
    assert drain(s, 450 * MS) == [(403, "input_audio_buffer.committed")]
    # response.create was due 97 ms after committed (recorded 403 -> 500 ms): deadline 1 s later
    assert s.next_send() is None
    assert s.next_deadline() == 1500 * MS
    assert s.timeout(1499 * MS) == []  # too early: nothing happens
    assert s.next_send() is None
    [d] = s.timeout(1500 * MS)
    line = d.message()
    assert "recording expected response.create (recorded message #8 at 500.0 ms)" in line
    assert line.startswith("divergence: nothing arrived within 1 s: ")
    assert line.endswith("due as client message #4 by 1500.0 ms")
    assert s.divergences == [d]
    # lenient: the held response goes on as if response.create had arrived at 1500 ms
    assert drain(s, 9000 * MS) == [
        (1520, "response.created"),
        (1560, "response.output_audio_transcript.delta"),
        (1600, "response.done"),
    ]
    assert s.finished and s.next_deadline() is None


def test_wait_timeout_on_missing_input_audio_and_no_deadline_when_off_or_satisfied() -> None:
    s = scheduler(dialogue(), wait_timeout_ns=500 * MS, speed=2.0)
    drain(s, 10 * MS)
    s.client_message(50 * MS, True, live({"type": "session.update", "session": SESSION}))
    assert drain(s, 60 * MS) == [(51, "session.updated")]
    s.client_message(60 * MS, True, live_append(50))  # 50 ms of the 200 the recording had
    # the last append was recorded at 300 ms, 198 ms after session.updated: 99 ms at speed 2
    assert s.next_deadline() == (51 + 99 + 500) * MS
    [d] = s.timeout(650 * MS)
    assert "input_audio_buffer.append (200 ms of input audio before input_audio_buffer.commit)" in d.message()
    assert "recorded message #4 at 300.0 ms" in d.message()
    assert drain(s, 700 * MS) == [(655, "input_audio_buffer.speech_started")]
    # the client goes on normally: no more divergences
    s.client_message(700 * MS, True, live({"type": "input_audio_buffer.commit"}))
    assert drain(s, 800 * MS) == [(701, "input_audio_buffer.committed")]
    assert len(s.divergences) == 1

    forever = scheduler(dialogue())  # wait_timeout_ns 0: wait forever
    drain(forever, 50 * MS)
    assert forever.next_send() is None and forever.next_deadline() is None
    assert forever.timeout(10**15) == [] and forever.divergences == []

    clock = scheduler(dialogue(), pace="clock", wait_timeout_ns=MS)
    assert clock.next_deadline() is None  # clock pace never waits for the client


# ------------------------------------------------ values the live side chose
def pop_all(s: ReplayScheduler, now: int) -> list[bytes]:
    out = []
    while (nxt := s.next_send()) is not None and nxt[0] <= now:
        step = s.pop()
        out.append(s.substitute(step.msg) or step.msg.content)
    return out


def test_ids_event_ids_and_metadata_the_client_chose_are_wildcards_and_substituted() -> None:
    item_rec = {"id": "item_rec0000001", "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": "hi"}]}
    msgs = [
        ev(10, True, {"type": "conversation.item.create", "event_id": "evt_rec_1", "previous_item_id": None,
                      "item": item_rec}),
        ev(12, False, {"type": "conversation.item.added", "event_id": "srv_1", "previous_item_id": None,
                       "item": {**item_rec, "status": "completed"}}),
        ev(20, True, {"type": "response.create", "event_id": "evt_rec_2",
                      "response": {"metadata": {"client_event_id": "evt_rec_2", "n": "1"}}}),
        ev(22, False, {"type": "response.created", "event_id": "srv_2",
                       "response": {"id": "resp_1", "metadata": {"client_event_id": "evt_rec_2", "n": "1"}}}),
        ev(24, False, {"type": "response.output_audio.delta", "event_id": "srv_3", "response_id": "resp_1",
                       "item_id": "item_out", "delta": base64.b64encode(b"\x01\x00" * 480).decode()}),
        ev(30, True, {"type": "conversation.item.truncate", "event_id": "evt_rec_3", "item_id": "item_rec0000001",
                      "content_index": 0, "audio_end_ms": 5}),
        ev(31, False, {"type": "error", "event_id": "srv_4",
                       "error": {"type": "invalid_request_error", "event_id": "evt_rec_3", "message": "no"}}),
    ]
    s = scheduler(msgs)
    item_live = {**item_rec, "id": "item_36d2eba71704"}
    assert s.client_message(10 * MS, True, live({"type": "conversation.item.create", "event_id": "evt_L1",
                                                 "previous_item_id": None, "item": item_live})) == []
    assert s.client_message(20 * MS, True, live({"type": "response.create", "event_id": "evt_L2", "response": {
        "metadata": {"client_event_id": "evt_L2", "n": "1", "extra": True}}})) == []
    assert s.client_message(30 * MS, True, live({"type": "conversation.item.truncate", "event_id": "evt_L3",
                                                 "item_id": "item_36d2eba71704", "content_index": 0,
                                                 "audio_end_ms": 5})) == []
    sent = pop_all(s, 1000 * MS)
    recorded = [m.content for m in msgs if not m.from_client]
    assert sent[0] == recorded[0].replace(b"item_rec0000001", b"item_36d2eba71704")
    assert json.loads(sent[1])["response"]["metadata"] == {"client_event_id": "evt_L2", "n": "1", "extra": True}
    assert sent[1].startswith(recorded[1][: recorded[1].index(b'"metadata"')])  # the rest as recorded
    assert sent[2] == recorded[2]  # an audio delta that names nothing the client chose: untouched
    assert sent[3] == recorded[3].replace(b'"event_id": "evt_rec_3"', b'"event_id": "evt_L3"')
    assert b'"event_id": "srv_4"' in sent[3]  # the server's own event id stays
    assert s.substitutions == 3
    # --exact: the tape as recorded
    s2 = scheduler(msgs, substitute=False)
    s2.client_message(10 * MS, True, live({"type": "conversation.item.create", "item": item_live}))
    assert pop_all(s2, 1000 * MS) == recorded[:1] and s2.substitutions == 0


def test_audio_deltas_get_the_live_item_id_without_their_audio_decoded(tmp_path: Path) -> None:
    audio = base64.b64encode(bytes(range(256)) * 8).decode()
    msgs = [
        ev(10, True, {"type": "conversation.item.create", "item": {"id": "item_rec", "type": "message",
                                                                 "role": "user", "content": []}}),
        ev(20, False, {"type": "response.output_audio.delta", "item_id": "item_rec", "delta": audio,
                       "x": {"item_id": "item_rec"}}),
    ]
    path = tmp_path / "a.rtrec"
    with RecordingWriter(path) as w:
        w.write_header()
        for m in msgs:
            w.write_message(m.t_ns, m.from_client, m.is_text, m.content)
    r1, r2 = open_recording(path), open_recording(path)
    s = ReplayScheduler(server_steps(r1.messages()), client_events(r2.messages()), speed=0)
    s.start(0)
    s.client_message(MS, True, live({"type": "conversation.item.create", "item": {
        "id": "item_LIVE_longer_id", "type": "message", "role": "user", "content": []}}))
    nxt = s.next_send()
    assert nxt is not None
    step = nxt[1]
    assert len(s.subs.edits(step.msg.head)) == 2
    assert step.msg.packed_audio is not None  # still packed: the head was enough to find the edits
    cached = msgs[1].content  # the replay server keeps each message's bytes once decoded
    out = s.substitute(step.msg, cached)
    assert step.msg.packed_audio is not None  # the edits were moved past the audio, not re-encoded
    assert out == msgs[1].content.replace(b"item_rec", b"item_LIVE_longer_id")
    assert s.substitutions == 2


def test_a_call_id_the_client_made_up_is_followed_into_its_output() -> None:
    call = {"type": "function_call", "call_id": "call_rec", "name": "f", "arguments": "{}"}
    out = {"type": "function_call_output", "call_id": "call_rec", "output": "ok"}
    msgs = [
        ev(10, True, {"type": "conversation.item.create", "item": call}),
        ev(20, True, {"type": "conversation.item.create", "item": out}),
        ev(22, False, {"type": "conversation.item.added", "item": {**out, "id": "item_9"}}),
    ]
    s = scheduler(msgs)
    assert s.client_message(10 * MS, True, live({"type": "conversation.item.create",
                                                 "item": {**call, "call_id": "call_live"}})) == []
    assert s.client_message(20 * MS, True, live({"type": "conversation.item.create",
                                                 "item": {**out, "call_id": "call_live"}})) == []
    assert json.loads(pop_all(s, 1000 * MS)[0])["item"]["call_id"] == "call_live"
    # an output for another call is still a divergence
    s2 = scheduler(msgs)
    s2.client_message(10 * MS, True, live({"type": "conversation.item.create", "item": {**call, "call_id": "call_live"}}))
    (d,) = s2.client_message(20 * MS, True, live({"type": "conversation.item.create", "item": {**out, "call_id": "call_other"}}))
    assert d.field == "conversation.item.create item.call_id" and '"call_live"' in d.message()


# ------------------------------------------------ order the client does not fix
def test_two_session_updates_swapped_match_without_divergence() -> None:
    a = {"type": "realtime", "instructions": "first"}
    b = {"type": "realtime", "audio": {"output": {"voice": "ash"}}}
    msgs = [
        ev(10, True, {"type": "session.update", "session": a}),
        ev(11, True, {"type": "session.update", "session": b}),
        ev(12, False, {"type": "session.updated", "n": 1}),
        ev(13, False, {"type": "session.updated", "n": 2}),
        ev(20, True, {"type": "response.create"}),
        ev(30, False, {"type": "response.created"}),
    ]
    s = scheduler(msgs)
    assert s.client_message(10 * MS, True, live({"type": "session.update", "session": b})) == []
    assert s.client_message(11 * MS, True, live({"type": "session.update", "session": a})) == []
    assert s.client_message(20 * MS, True, live({"type": "response.create"})) == []
    assert [t for _, t in drain(s, 1000 * MS)] == ["session.updated", "session.updated", "response.created"]
    assert s.divergences == []
    # one swap, then the next event, and the session ends: the session.update that
    # never came is one divergence, when the client leaves
    s2 = scheduler(msgs)
    assert s2.client_message(10 * MS, True, live({"type": "session.update", "session": b})) == []
    assert s2.client_message(12 * MS, True, live({"type": "response.create"})) == []
    assert [t for _, t in drain(s2, 1000 * MS)] == ["session.updated", "session.updated", "response.created"]
    (d,) = s2.end(50 * MS)
    assert "recording expected session.update (recorded message #0 at 10.0 ms)" in d.message()
    assert "never came" in d.message()
    assert s2.end(60 * MS) == [] and len(s2.divergences) == 1
    # a client that only stops early (nothing taken out of order) is no divergence
    s3 = scheduler(msgs)
    assert s3.client_message(10 * MS, True, live({"type": "session.update", "session": a})) == []
    assert s3.end(50 * MS) == [] and s3.divergences == []


def test_a_session_update_may_come_after_the_events_recorded_after_it() -> None:
    # @openai/agents-realtime sends its full session.update when the socket opens and a
    # tracing-only one when session.created arrives; its first message may go out before
    # either, so the tracing one can come after the turn's item and response.create.
    tracing = {"type": "realtime", "tracing": "auto"}
    full = {"type": "realtime", "instructions": "Be brief."}
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Paris?"}]}
    msgs = [
        ev(9, True, {"type": "session.update", "session": tracing}),
        ev(10, True, {"type": "session.update", "session": full}),
        ev(12, False, {"type": "session.updated", "n": 1}),
        ev(13, False, {"type": "session.updated", "n": 2}),
        ev(14, True, {"type": "conversation.item.create", "item": item}),
        ev(14, True, {"type": "response.create"}),
        ev(15, False, {"type": "response.created"}),
        ev(40, True, {"type": "conversation.item.create", "item": {**item, "role": "system"}}),
        ev(41, True, {"type": "response.create", "response": {"instructions": "again"}}),
        ev(42, True, {"type": "response.cancel"}),
        ev(50, False, {"type": "response.done"}),
    ]
    s = scheduler(msgs)
    for t, e in [(10, {"type": "session.update", "session": full}),
                 (11, {"type": "conversation.item.create", "item": item}),
                 (11, {"type": "response.create"}),
                 (16, {"type": "session.update", "session": tracing})]:
        assert s.client_message(t * MS, True, live(e)) == []
    assert [t for _, t in drain(s, 1000 * MS)] == ["session.updated", "session.updated", "response.created"]
    assert s.cursor == 4 and s.end(20 * MS) == [] and s.divergences == []
    # Late by more than WINDOW events: the one after the window is a divergence.
    s2 = scheduler(msgs)
    rest = [{"type": "session.update", "session": full}, {"type": "conversation.item.create", "item": item},
            {"type": "response.create"}, {"type": "conversation.item.create", "item": {**item, "role": "system"}}]
    for k, e in enumerate(rest):
        assert s2.client_message((10 + k) * MS, True, live(e)) == []
    (d,) = s2.client_message(20 * MS, True, live({"type": "response.create", "response": {"instructions": "again"}}))
    assert "recording expected session.update (recorded message #0 at 9.0 ms), got response.create" in d.message()
    # Only a session.update may be that late: another awaited event allows one leap.
    msgs3 = [
        ev(10, True, {"type": "conversation.item.create", "item": item}),
        ev(11, True, {"type": "session.update", "session": full}),
        ev(12, True, {"type": "response.create"}),
        ev(13, False, {"type": "response.created"}),
    ]
    s3 = scheduler(msgs3)
    assert s3.client_message(10 * MS, True, live({"type": "session.update", "session": full})) == []
    (d,) = s3.client_message(11 * MS, True, live({"type": "response.create"}))
    assert "recording expected conversation.item.create" in d.message()


def test_a_late_session_update_is_waited_for_a_second_not_the_whole_wait_timeout() -> None:
    # The events after it came; its answer (and so every server message after it) waits
    # for it. SDK tasks race by milliseconds: after a second it is given up, reported,
    # and the rest goes out, however long --wait-timeout is.
    msgs = [
        ev(10, True, {"type": "session.update", "session": {"type": "realtime", "instructions": "x"}}),
        ev(12, False, {"type": "session.updated"}),
        ev(20, True, {"type": "response.create"}),
        ev(30, False, {"type": "response.created"}),
    ]
    s = scheduler(msgs, wait_timeout_ns=10_000 * MS)
    assert s.client_message(15 * MS, True, live({"type": "response.create"})) == []
    assert drain(s, 500 * MS) == [] and s.next_deadline() == 1015 * MS
    assert s.timeout(1000 * MS) == []
    (d,) = s.timeout(1015 * MS)
    assert d.message().startswith("divergence: nothing arrived within 1 s: recording expected session.update")
    assert [t for _, t in drain(s, 2000 * MS)] == ["session.updated", "response.created"]
    assert s.end(3000 * MS) == [] and len(s.divergences) == 1
    # without a leap, the step waits the whole --wait-timeout
    s2 = scheduler(msgs, wait_timeout_ns=10_000 * MS)
    assert s2.next_deadline() == 10_010 * MS


def test_appends_racing_a_conversation_item_create_are_no_divergence() -> None:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}
    msgs = [
        append(10, 100),
        append(20, 100),
        ev(30, True, {"type": "conversation.item.create", "item": item}),
        ev(31, False, {"type": "conversation.item.added"}),
        ev(40, True, {"type": "input_audio_buffer.commit"}),
        ev(41, False, {"type": "input_audio_buffer.committed"}),
    ]
    # the create overtakes the second append
    s = scheduler(msgs)
    assert s.client_message(10 * MS, True, live_append(100)) == []
    assert s.client_message(15 * MS, True, live({"type": "conversation.item.create", "item": item})) == []
    assert s.client_message(20 * MS, True, live_append(100)) == []
    assert s.client_message(40 * MS, True, live({"type": "input_audio_buffer.commit"})) == []
    assert [t for _, t in drain(s, 1000 * MS)] == ["conversation.item.added", "input_audio_buffer.committed"]
    # recorded the other way round: the create before the appends of the turn
    msgs2 = [
        ev(5, True, {"type": "conversation.item.create", "item": item}),
        ev(6, False, {"type": "conversation.item.added"}),
        append(10, 100),
        append(20, 100),
        ev(25, False, {"type": "input_audio_buffer.speech_started"}),
        ev(40, True, {"type": "input_audio_buffer.commit"}),
        ev(41, False, {"type": "input_audio_buffer.committed"}),
    ]
    s = scheduler(msgs2)
    assert s.client_message(10 * MS, True, live_append(100)) == []  # overtook the create
    assert s.client_message(12 * MS, True, live({"type": "conversation.item.create", "item": item})) == []
    assert drain(s, 1000 * MS) == [(13, "conversation.item.added")]  # 100 of 200 ms: speech_started waits
    assert s.client_message(20 * MS, True, live_append(100)) == []
    assert drain(s, 1000 * MS) == [(25, "input_audio_buffer.speech_started")]
    assert s.client_message(40 * MS, True, live({"type": "input_audio_buffer.commit"})) == []
    assert s.divergences == []


def test_id_aligner_learns_the_live_servers_ids_by_type_and_order() -> None:
    from rtproxy.replay.substitute import IdAligner

    a = IdAligner()
    a.recorded(live({"type": "session.created", "session": {"id": "sess_R"}}))
    a.recorded(live({"type": "response.output_item.added", "response_id": "resp_R",
                     "item": {"id": "item_R", "type": "function_call", "call_id": "call_R"}}))
    a.live(live({"type": "session.created", "session": {"id": "sess_L"}}))
    a.live(live({"type": "response.output_audio.delta", "item_id": "item_X", "delta": ""}))  # deltas: skipped
    a.live(live({"type": "response.output_item.added", "response_id": "resp_L",
                 "item": {"id": "item_L", "type": "function_call", "call_id": "call_L"}}))
    truncate = ev(0, True, {"type": "conversation.item.truncate", "event_id": "item_R", "item_id": "item_R",
                            "content_index": 0, "audio_end_ms": 10})
    out = a.apply(truncate)
    assert out == truncate.content.replace(b'"item_id": "item_R"', b'"item_id": "item_L"')  # not the event_id
    output = ev(0, True, {"type": "conversation.item.create", "previous_item_id": "item_R",
                          "item": {"type": "function_call_output", "call_id": "call_R", "output": "{}"}})
    assert json.loads(a.apply(output) or b"") == {
        "type": "conversation.item.create", "previous_item_id": "item_L",
        "item": {"type": "function_call_output", "call_id": "call_L", "output": "{}"}}
    assert a.apply(ev(0, True, {"type": "response.create"})) is None


def test_append_durations_follow_a_server_session_event_wherever_its_type_is(tmp_path: Path) -> None:
    """The format in force comes from the event view: a session.created whose "type" comes
    after a long field still sets g711 (800 bytes = 100 ms), as show and diff read it."""
    from rtproxy.testing import make_recording

    created = {"event_id": "e" * 400, "type": "session.created",
               "session": {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}}}}}
    chunk = base64.b64encode(b"\xff" * 800).decode()
    path = make_recording(tmp_path / "g711.rtrec", [
        (0, "server", created),
        (10, "client", {"type": "input_audio_buffer.append", "audio": chunk}),
        (20, "client", {"type": "input_audio_buffer.append", "audio": chunk}),
        (30, "client", {"type": "input_audio_buffer.commit"}),
    ])
    with open_recording(path) as r:
        commit = next(e for e in client_events(r.messages()) if e.type == "input_audio_buffer.commit")
    assert commit.segment_audio_ms == pytest.approx(200.0)


def test_substitutions_learn_no_huge_values_and_a_bounded_number() -> None:
    """A client's 5 MiB event_ids were each remembered for the session (1 GB for 200)."""
    from rtproxy.replay import substitute as sub

    s = sub.Substitutions(sub.server_rule)
    assert not s.learn("evt_1", "x" * (sub.MAX_LEARNED_CHARS + 1))
    assert not s.learn("e" * (sub.MAX_LEARNED_CHARS + 1), "evt_live")
    assert s.learn("evt_1", "evt_live") and s.value("evt_1") == "evt_live"
    for k in range(sub.MAX_LEARNED + 10):
        s.learn(f"evt_r{k}", f"evt_l{k}")
    assert len(s.ids) == sub.MAX_LEARNED
    assert s.value("evt_1") == "evt_1" and s.value("evt_r9") == "evt_r9"  # the oldest went
    assert s.value(f"evt_r{sub.MAX_LEARNED + 9}") == f"evt_l{sub.MAX_LEARNED + 9}"


def test_input_audio_no_message_waits_on_is_remembered_in_bounded_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each append's arrival was kept for the whole segment while no recorded message
    waited on the audio (20 MiB an hour of 20 ms appends); past the bound the older half goes,
    and audio a message does wait on still releases it."""
    from rtproxy.replay import script

    monkeypatch.setattr(script, "_MAX_CROSSINGS", 64)
    s = scheduler(dialogue(), pace="client")
    s.client_message(0, True, live({"type": "session.update", "session": SESSION}))
    drain(s, 200 * MS)
    for k in range(1000):  # 10 s of 10 ms appends, nothing waiting on them past 200 ms
        s.client_message((210 + 10 * k) * MS, True, live_append(10))
    assert len(s._crossings) <= 64
    assert ("input_audio_buffer.speech_started" in [t for _, t in drain(s, 20_000 * MS)])
