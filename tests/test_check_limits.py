"""rtproxy check on crafted recordings: no reader goes super-linear or keeps every
distinct name, and the findings stay right.

Each recording here made the check take minutes (or gigabytes) before the fix;
sizes are chosen so the old code blew CHECK_BOUND_S several times over on a slow
2-core machine, and the fixed one takes a second or two.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from rtproxy.check import Checker, check_file
from rtproxy.check.finding import Finding
from rtproxy.check.rules.items import AssistantAudioHistory
from rtproxy.testing import make_recording
from rtproxy.view.events import open as open_rec

#: Seconds a check of one crafted recording may take (generous: the fixed code takes 1-4 s).
CHECK_BOUND_S = 20.0

_COMPLETED = "conversation.item.input_audio_transcription.completed"


def _timed_check(path: Path) -> list[Finding]:
    t0 = time.perf_counter()
    found = check_file(path)
    took = time.perf_counter() - t0
    assert took < CHECK_BOUND_S, f"check took {took:.1f} s"
    return found


def _fed_in_bounded_memory(path: Path) -> tuple[Any, Checker]:
    """The recording and a Checker fed all its events, asserting what the check still
    holds after them (not finished) is under 16 MiB."""
    rec = open_rec(path)
    c = Checker()
    tracemalloc.start()
    try:
        for e in rec.events():
            c.feed(e)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held < 16 * 2**20, f"the check holds {held / 2**20:.0f} MiB after the events"
    return rec, c


def _msgs(found: list[Finding], code: str) -> list[str]:
    return [f.message for f in found if f.code == code]


def _no_internal(found: list[Finding]) -> None:
    assert not _msgs(found, "RT000"), _msgs(found, "RT000")


def test_many_items_of_one_response(tmp_path: Path) -> None:
    """state: each item added to a response was looked for in a list of its items
    (100,000 items: ~80 s before)."""
    n = 100_000
    ev: list[tuple[float, str, Any]] = [(0, "server", {"type": "response.created", "response": {"id": "r"}})]
    ev += [(1, "server", {"type": "conversation.item.added", "response_id": "r", "item": {"id": f"i{k}"}})
           for k in range(n)]
    ev += [(2, "server", {"type": "conversation.item.added", "response_id": "r", "item": {"id": "i7"}})]
    found = _timed_check(make_recording(tmp_path / "items.rtrec", ev, redact=False))
    _no_internal(found)
    assert [(f.code, f.event_index) for f in found] == [("RT013", 0)]  # the response never finishes


def test_echo_against_a_huge_assistant_transcript(tmp_path: Path) -> None:
    """RT019: each user transcript was searched for in the whole assistant transcript
    (10 MB; 10,000 transcripts: ~2 min before). Echoes of its start and end are found."""
    n = 10_000
    long = "Hello there, how can I help you today? " + "w " * 5_000_000 + "Thanks for calling, goodbye now."
    done = {"type": "response.done", "response": {"id": "r", "status": "completed", "output": [
        {"id": "a", "type": "message", "role": "assistant", "content": [{"type": "output_audio",
                                                                         "transcript": long}]}]}}
    ev: list[tuple[float, str, Any]] = [(0, "server", done)]
    ev += [(1, "server", {"type": _COMPLETED, "item_id": f"u{k}", "transcript": f"unrelated words {k}"})
           for k in range(n)]
    ev += [(2, "server", {"type": _COMPLETED, "item_id": "head", "transcript": "How can I help you today?"}),
           (3, "server", {"type": _COMPLETED, "item_id": "tail", "transcript": "thanks for calling... goodbye"})]
    found = _timed_check(make_recording(tmp_path / "echo.rtrec", ev, redact=False))
    _no_internal(found)
    echoes = [f for f in found if f.code == "RT019"]
    assert [f.event_index for f in echoes] == [n + 1, n + 2]
    assert "How can I help" in echoes[0].message and "thanks for calling" in echoes[1].message


def test_echo_of_an_ordinary_answer(tmp_path: Path) -> None:
    """RT019 on a real-sized answer: a user transcript that repeats part of it."""
    answer = "Sure! The weather in Paris is sunny, with a high of 24 degrees."
    done = {"type": "response.done", "response": {"id": "r", "status": "completed", "output": [
        {"id": "a", "type": "message", "role": "assistant", "content": [{"type": "output_audio",
                                                                         "transcript": answer}]}]}}
    ev = [(0, "server", done),
          (1, "server", {"type": _COMPLETED, "item_id": "u1", "transcript": "what's the weather tomorrow"}),
          (2, "server", {"type": _COMPLETED, "item_id": "u2", "transcript": "the weather in Paris is sunny"})]
    found = check_file(make_recording(tmp_path / "echo.rtrec", ev, redact=False))
    assert [f.event_index for f in found if f.code == "RT019"] == [2]


def test_transcripts_of_many_commits_with_many_responses(tmp_path: Path) -> None:
    """RT014: each transcript scanned every response for the reply to its item
    (40,000 of each: ~45 s before). The late transcripts still name the reply."""
    n = 40_000
    ev: list[tuple[float, str, Any]] = [(0, "server", {"type": "response.created", "response": {"id": f"r{k}"}})
                                        for k in range(n)]
    ev += [(1, "server", {"type": "input_audio_buffer.committed", "item_id": f"u{k}"}) for k in range(n)]
    ev += [(2, "server", {"type": "response.created", "response": {"id": "reply"}}),
           (3, "server", {"type": "response.done", "response": {"id": "reply", "status": "completed"}})]
    ev += [(4, "server", {"type": _COMPLETED, "item_id": f"u{k}", "transcript": "hi there"}) for k in range(n)]
    found = _timed_check(make_recording(tmp_path / "tr.rtrec", ev, redact=False))
    _no_internal(found)
    late = _msgs(found, "RT014")
    assert len(late) == 1001  # 1000 listed, one counting the others
    assert all("response reply done" in m for m in late[:1000]) and "39000 more" in late[-1]


def test_errors_naming_a_response_create_with_many_pending_updates(tmp_path: Path) -> None:
    """RT009: each error looked for its cause among every unacknowledged session.update,
    and the one found was removed from a list (40,000 of each: ~60 s before)."""
    n = 40_000
    ev: list[tuple[float, str, Any]] = [(0, "client", {"type": "response.create", "event_id": "c"})]
    ev += [(1, "client", {"type": "session.update"}) for _ in range(n)]
    ev += [(2, "server", {"type": "error", "error": {"event_id": "c"}}) for _ in range(n)]
    found = _timed_check(make_recording(tmp_path / "upd.rtrec", ev, redact=False))
    _no_internal(found)
    rt009 = [f for f in found if f.code == "RT009"]
    assert len(rt009) == 1001 and all("never acknowledged" in f.message for f in rt009[:1000])
    assert [f.event_index for f in rt009[:3]] == [1, 2, 3]
    errors = _msgs(found, "RT017")
    assert len(errors) == 1001 and all("caused by #0 response.create" in m for m in errors[:1000])


def test_session_update_rejection_still_pairs_by_event_id(tmp_path: Path) -> None:
    """RT009 with the pending updates kept by index: an error names the second of three."""
    ev = [(0, "client", {"type": "session.update", "event_id": "a", "session": {"instructions": "1"}}),
          (1, "client", {"type": "session.update", "event_id": "b", "session": {"voice": "fable"}}),
          (2, "client", {"type": "session.update", "event_id": "c", "session": {"instructions": "3"}}),
          (3, "server", {"type": "error", "error": {"type": "invalid_request_error", "code": "unknown_parameter",
                                                    "param": "session.voice", "event_id": "b"}}),
          (4, "server", {"type": "session.updated", "session": {"instructions": "1"}}),
          (5, "server", {"type": "session.updated", "session": {"instructions": "3"}})]
    found = check_file(make_recording(tmp_path / "upd.rtrec", ev, redact=False))
    assert [(f.code, f.event_index) for f in found] == [("RT009", 1)]
    assert "'fable'" in found[0].message


def test_rt021_with_a_list_as_part_type(tmp_path: Path) -> None:
    """RT021 on a part whose type is a list: no internal error; audio-only history still found."""
    bad = {"type": "message", "role": "assistant", "content": [{"type": ["audio"]}]}
    audio = {"type": "message", "role": "assistant", "content": [{"type": "audio"}]}
    ev = [(0, "client", {"type": "conversation.item.create", "item": bad}),
          (1, "client", {"type": "conversation.item.create", "item": audio})]
    found = check_file(make_recording(tmp_path / "rt021.rtrec", ev, redact=False))
    _no_internal(found)
    assert [f.event_index for f in found if f.code == "RT021"] == [1]


def test_internal_error_names_the_event_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RT000 (a rule that fails) points at the event with its type, not '(no type)'."""
    def boom(self: Any, *a: Any) -> None:
        raise ValueError("boom")

    monkeypatch.setattr(AssistantAudioHistory, "feed", boom)
    ev = [(0, "client", {"type": "conversation.item.create", "item": {"type": "message"}})]
    found = check_file(make_recording(tmp_path / "rt000.rtrec", ev, redact=False))
    internal = [f for f in found if f.code == "RT000"]
    assert [(f.event_index, f.event_type) for f in internal] == [(0, "conversation.item.create")]
    assert "RT021 failed" in internal[0].message


def test_distinct_type_names_are_not_all_kept(tmp_path: Path) -> None:
    """A check keeps a bounded number of distinct event type names: 20,000 of 4 KB
    (80 MB of names) once stayed in memory to the end. Short unknown types are still
    reported one by one, the rest counted; the dialect of known types still seen."""
    n, width = 20_000, 4_000
    ev: list[tuple[float, str, Any]] = [(0, "client", {"type": "not.a.real.event"}),
                                        (0, "client", {"type": "not.a.real.event"})]
    ev += [(1, "client", {"type": f"{k:08d}" + "x" * width}) for k in range(n)]
    ev += [(2, "server", {"type": "response.audio.delta", "item_id": "x", "delta": ""}),
           (3, "server", {"type": "response.output_audio.delta", "item_id": "x", "delta": ""})]
    path = make_recording(tmp_path / "types.rtrec", ev, redact=False)
    t0 = time.perf_counter()
    rec, c = _fed_in_bounded_memory(path)
    found = c.finish(rec.handshake, rec.close, rec.cut_short)
    assert time.perf_counter() - t0 < CHECK_BOUND_S
    _no_internal(found)
    msgs = _msgs(found, "RT010")
    assert any("'not.a.real.event' is in neither" in m and "(2 times)" in m for m in msgs)
    assert any(m.startswith(f"{n} more event(s) of types in neither") for m in msgs)
    assert any("mixes beta (response.audio.delta" in m for m in msgs)
    assert len(msgs) == 3


def test_long_event_ids_are_remembered_by_digest(tmp_path: Path) -> None:
    """20,000 distinct client event_ids of 4 KB (80 MB of ids) once stayed in memory to the
    end, as did every server duplicate's. Long ids are kept as digests: an error still
    names the client event it names, a duplicated server event_id is still found."""
    n, width = 20_000, 4_000
    ids = [f"{k:08d}" + "e" * width for k in range(n)]
    ev: list[tuple[float, str, Any]] = [(1, "client", {"type": "input_audio_buffer.clear", "event_id": i})
                                        for i in ids]
    ev += [(2, "server", {"type": "error", "event_id": "s" * width,
                          "error": {"type": "invalid_request_error", "code": "x", "message": "m",
                                    "event_id": ids[7]}}),
           (3, "server", {"type": "rate_limits.updated", "event_id": "s" * width, "rate_limits": []})]
    path = make_recording(tmp_path / "ids.rtrec", ev, redact=False)
    rec, c = _fed_in_bounded_memory(path)
    assert c.state.cause_of({"event_id": ids[7]}) == (7, "input_audio_buffer.clear", 0.001)
    found = c.finish(rec.handshake, rec.close, rec.cut_short)
    _no_internal(found)
    (dup,) = [f for f in found if "seen twice" in f.message]
    assert f"#{n} and #{n + 1}" in dup.message


def test_long_item_response_and_call_ids_are_remembered_by_digest(tmp_path: Path) -> None:
    """5,000 items, responses and function calls with distinct ids of 4 KB (60 MB of
    ids) were each kept whole. Past 128 characters they are kept as their start and a digest: a truncate
    still finds its item, and a finding still shows how the id starts."""
    n, width = 5_000, 4_000
    ev: list[tuple[float, str, Any]] = []
    for k in range(n):
        rid, iid, cid = (f"{p}_{k:08d}" + "x" * width for p in ("resp", "item", "call"))
        ev += [(1, "server", {"type": "response.created", "response": {"id": rid, "status": "in_progress"}}),
               (1, "server", {"type": "response.output_item.added", "response_id": rid,
                              "item": {"id": iid, "type": "function_call", "call_id": cid, "name": "f"}}),
               (1, "server", {"type": "response.done", "response": {"id": rid, "status": "completed", "output": [
                   {"id": iid, "type": "function_call", "call_id": cid, "name": "f", "arguments": "{}"}]}})]
    known = "item_00000007" + "x" * width
    ev += [(2, "client", {"type": "conversation.item.truncate", "item_id": known, "content_index": 0,
                          "audio_end_ms": 100}),
           (3, "client", {"type": "conversation.item.truncate", "item_id": "item_unknown" + "y" * width,
                          "content_index": 0, "audio_end_ms": 100})]
    path = make_recording(tmp_path / "ids.rtrec", ev, redact=False)
    rec, c = _fed_in_bounded_memory(path)
    found = c.finish(rec.handshake, rec.close, rec.cut_short)
    _no_internal(found)
    truncates = sorted(f.message for f in found if f.message.startswith("truncate of item"))
    assert len(truncates) == 2
    assert truncates[0].startswith("truncate of item item_00000007" + "x" * 87 + "\u2026#")
    assert "a function_call: only assistant audio can be truncated" in truncates[0]
    assert truncates[1].startswith("truncate of item item_unknown" + "y" * 88 + "\u2026#")
    assert "never announced" in truncates[1]
    # Every call was never answered: one finding names the first call by its id's start.
    calls = [f.message for f in found if "call_00000000" in f.message]
    assert calls and all(len(m) < 400 for m in calls)
