"""`rtproxy diff` on crafted recordings: bounded time and memory, strict JSON.

Each case was found by fuzzing: a 547-byte recording whose word diff hung, a
322 kB one whose event pairing hung, a 1.1 MB one that needed more than 4 GB,
and NaN in an event making ``--format json`` invalid JSON. The old behaviour
on normal input is checked against the algorithms it used (SequenceMatcher).
"""

from __future__ import annotations

import json
import random
import resource
import subprocess
import time
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any, Iterator

import pytest

from rtproxy.compare import normalize as normalize_mod
from rtproxy.compare.core import _pair_by_type, _Work, _word_diff, diff_files, word_diff
from rtproxy.compare.normalize import Event
from rtproxy.compare.render import render_json, render_markdown, render_text
from rtproxy.testing import make_recording
from tests.conftest import ROOT, RTPROXY

SAMPLE = ROOT / "recordings" / "sample-voice-turn.rtrec"
BOUND_S = 20.0  # generous on a slow 2-core machine: the old code took minutes


def _strict(text: str) -> Any:
    def no_constant(name: str) -> Any:
        raise AssertionError(f"{name} in the JSON output")

    return json.loads(text, parse_constant=no_constant)


def _diff_json(a: Path, b: Path, *, timeout: float = BOUND_S, limit_as: int | None = None) -> tuple[int, Any, float]:
    def limit() -> None:
        if limit_as is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))

    t0 = time.monotonic()
    res = subprocess.run(
        [*RTPROXY, "diff", str(a), str(b), "--format", "json"],
        capture_output=True, text=True, cwd=ROOT, timeout=timeout, preexec_fn=limit,
    )
    elapsed = time.monotonic() - t0
    assert res.returncode in (0, 1), res.stderr
    return res.returncode, _strict(res.stdout), elapsed


# ------------------------------------------------------------------ word diff
def _old_word_diff(a: str, b: str) -> list[list[str]]:
    """word_diff as it was: SequenceMatcher over all the words."""
    wa, wb = a.split(), b.split()
    out: list[list[str]] = []

    def add(op: str, words: list[str]) -> None:
        if words:
            text = " ".join(words)
            if out and out[-1][0] == op:
                out[-1][1] += " " + text
            else:
                out.append([op, text])

    for op, i1, i2, j1, j2 in SequenceMatcher(None, wa, wb, autojunk=False).get_opcodes():
        if op == "equal":
            add("=", wa[i1:i2])
        else:
            add("-", wa[i1:i2])
            add("+", wb[j1:j2])
    return out


def _sides(words: list[list[str]]) -> tuple[list[str], list[str]]:
    a = [w for op, t in words if op != "+" for w in t.split()]
    b = [w for op, t in words if op != "-" for w in t.split()]
    return a, b


def test_a_transcript_of_20000_equal_words_diffs_at_once(tmp_path: Path) -> None:
    """The fuzzed case: two 547-byte files, 20,000 times "a" then "b" / "c"."""
    for name, last in (("a", "b"), ("b", "c")):
        make_recording(tmp_path / f"{name}.rtrec", [(0, "server", {
            "type": "response.output_audio_transcript.done", "transcript": "a " * 20000 + last})], redact=False)
    code, rep, elapsed = _diff_json(tmp_path / "a.rtrec", tmp_path / "b.rtrec")
    assert code == 1 and elapsed < BOUND_S
    [ev] = rep["events"]
    [change] = ev["changes"]
    assert change["path"] == "transcript" and change["kind"] == "text"
    assert change["words"] == [["=", " ".join(["a"] * 20000)], ["-", "b"], ["+", "c"]]
    assert "note" not in change


def test_word_diffs_without_common_ends_are_bounded_and_still_exact() -> None:
    t0 = time.monotonic()
    words = word_diff("x " + "a " * 20000 + "y", "z " + "a " * 20000 + "w")
    assert words == [["-", "x"], ["+", "z"], ["=", " ".join(["a"] * 20000)], ["-", "y"], ["+", "w"]]
    # Distinct words swapped in pairs: SequenceMatcher is quadratic on it (minutes);
    # past its budget a linear matching still gives a diff that rebuilds both texts.
    a = [str(k) for k in range(20000)]
    b = [w for k in range(0, 20000, 2) for w in (a[k + 1], a[k])]
    words = word_diff(" ".join(a), " ".join(b))
    assert _sides(words) == (a, b)
    many = word_diff("x " * 20000, "x z " * 10000)
    assert _sides(many) == (["x"] * 20000, ["x", "z"] * 10000)
    # Over a million characters a text is not split into words at all, and says so.
    huge, note = _word_diff("a " * 600000, "a  b", _Work())
    assert huge == [["-", " ".join(["a"] * 600000)], ["+", "a b"]]
    assert note == "text over 1,048,576 characters: not compared word by word"
    assert time.monotonic() - t0 < BOUND_S


def test_word_diff_of_normal_transcripts_is_unchanged() -> None:
    rng = random.Random(7)
    vocab = "the a of to and I you it is that what was in for on".split() + [f"w{k}" for k in range(300)]
    for _ in range(300):
        a = [rng.choice(vocab) for _ in range(rng.randrange(0, 600))]
        b = list(a)
        for _ in range(rng.randrange(0, 12)):
            k = rng.randrange(len(b) + 1)
            op = rng.random()
            if op < 0.4 and k < len(b):
                b[k] = rng.choice(vocab)
            elif op < 0.7 and k < len(b):
                del b[k]
            else:
                b[k:k] = [rng.choice(vocab) for _ in range(rng.randrange(1, 5))]
        ta, tb = " ".join(a), "  ".join(b)
        assert word_diff(ta, tb) == _old_word_diff(ta, tb)


# ---------------------------------------------------------------- pairing
def _create(text: str) -> dict[str, Any]:
    return {"type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}


def test_20000_events_of_one_type_pair_in_order(tmp_path: Path) -> None:
    """The fuzzed case: 20,000 conversation.item.create, texts a{k} in A and b{k} in B."""
    n = 20000
    make_recording(tmp_path / "a.rtrec", [(k, "client", _create(f"a{k}")) for k in range(n)], redact=False)
    make_recording(tmp_path / "b.rtrec", [(k, "client", _create(f"b{k}")) for k in range(n)], redact=False)
    code, rep, elapsed = _diff_json(tmp_path / "a.rtrec", tmp_path / "b.rtrec")
    assert code == 1 and elapsed < BOUND_S
    assert rep["counts"]["client"] == {"a": n, "b": n, "changed": n, "missing": 0, "inserted": 0}
    changes = [(e["a"]["message"], e["b"]["message"], e["changes"]) for e in rep["events"]]
    assert [(a, b) for a, b, _ in changes] == [(k + 1, k + 1) for k in range(n)]
    assert changes[123][2] == [{"path": "item.content[0].text", "kind": "text", "a": "a123", "b": "b123",
                                "words": [["-", "a123"], ["+", "b123"]]}]


def _old_type_pairs(run_a: list[int], run_b: list[int], ea: list[Event], eb: list[Event]) -> Iterator[tuple[int, int]]:
    ta = [ea[i].type for i in run_a]
    tb = [eb[j].type for j in run_b]
    for blk in SequenceMatcher(None, ta, tb, autojunk=False).get_matching_blocks():
        for k in range(blk.size):
            yield run_a[blk.a + k], run_b[blk.b + k]


def _old_pair_by_type(run_a: list[int], run_b: list[int], ea: list[Event], eb: list[Event]) -> Iterator[tuple[int, int]]:
    """_pair_by_type as it was, without bounds."""
    from rtproxy.compare.core import _by_turn

    if len(run_a) + len(run_b) <= 4000:
        yield from _old_type_pairs(run_a, run_b, ea, eb)
        return
    ga, gb = _by_turn(run_a, ea), _by_turn(run_b, eb)
    ka = [tuple(ea[i].type for i in g) for g in ga]
    kb = [tuple(eb[j].type for j in g) for g in gb]
    for op, i1, i2, j1, j2 in SequenceMatcher(None, ka, kb, autojunk=False).get_opcodes():
        if op in ("equal", "replace"):
            for x, y in zip(range(i1, i2), range(j1, j2)):
                yield from _old_type_pairs(ga[x], gb[y], ea, eb)


TYPES = ["response.created", "response.output_item.added", "response.output_audio.delta",
         "response.output_audio_transcript.delta", "response.output_audio.done", "response.done",
         "conversation.item.added", "error"]


def _events(rng: random.Random, turns: int, skip: float) -> list[Event]:
    evs = []
    for turn in range(1, turns + 1):
        for t in TYPES[:-1] + (["error"] if rng.random() < 0.1 else []):
            if rng.random() >= skip:
                evs.append(Event("server", t, {"type": t}, len(evs) + 1, 0, turn))
    return evs


@pytest.mark.parametrize("turns", [3, 40, 700])
def test_pairing_of_normal_runs_is_unchanged(turns: int) -> None:
    """Runs of unmatched events as reruns give them (a few per turn, or thousands
    cut into turns): the same pairs as the unbounded SequenceMatcher gave."""
    rng = random.Random(turns)
    for _ in range(5 if turns > 100 else 40):
        ea, eb = _events(rng, turns, 0.1), _events(rng, turns, 0.1)
        run_a, run_b = list(range(len(ea))), list(range(len(eb)))
        assert list(_pair_by_type(run_a, run_b, ea, eb)) == list(_old_pair_by_type(run_a, run_b, ea, eb))


# ------------------------------------------------------------------ memory
def test_40000_long_texts_diff_in_bounded_memory(tmp_path: Path) -> None:
    """The fuzzed case, smaller: 40,000 events of 20 kB each (an 0.4 MB file) needed
    about 40 kB each (text in the event and in its signature): over 1.6 GB. Now
    past 16 Mi characters a long text is its start and SHA-256, with a note."""
    big = make_recording(tmp_path / "big.rtrec", [(0, "server", '{"type":"x","a":"' + "a" * 20000 + '"}')] * 40000,
                         redact=False)
    code, rep, elapsed = _diff_json(big, SAMPLE, timeout=60, limit_as=1 << 30)
    assert code == 1 and elapsed < 60
    assert rep["counts"]["server"]["a"] == 40000 and rep["counts"]["server"]["missing"] == 40000
    texts = [e["event"]["a"] for e in rep["events"] if e["type"] == "x"]
    kept = normalize_mod.TEXT_BUDGET // 20000
    assert texts[:kept] == ["a" * 20000] * kept
    assert texts[kept:] == ["a" * normalize_mod.CUT_SHOW + "\u2026"] * (40000 - kept)
    [note] = [n for n in rep["notes"] if n.startswith("A: ")]
    assert f"{40000 - kept:,} long texts kept only as their start and SHA-256" in note


def _done(text: str) -> dict[str, Any]:
    return {"type": "response.output_audio_transcript.done", "transcript": text}


def test_a_text_cut_in_one_run_equals_the_whole_text_in_the_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(normalize_mod, "TEXT_BUDGET", 700)
    rng = random.Random(3)
    first = " ".join(f"w{rng.randrange(99)}" for _ in range(100))  # ~400 characters each
    second = " ".join(f"w{rng.randrange(99)}" for _ in range(100))
    changed = second[:-2] + "xx"  # differs past what a cut text shows
    a = make_recording(tmp_path / "a.rtrec", [(0, "server", _done(first)), (1, "server", _done(second))])
    # B: an extra long text first, so B keeps less of the rest than A does.
    b = make_recording(tmp_path / "b.rtrec", [
        (0, "client", {"type": "session.update", "session": {"instructions": "be brief " * 50}}),
        (1, "server", _done(first)), (2, "server", _done(changed))])
    r = diff_files(a, b)
    assert [(e.kind, e.type) for e in r.events] == [
        ("inserted", "session.update"), ("changed", "response.output_audio_transcript.done")]
    [fc] = r.events[1].changes
    assert fc.path == "transcript" and fc.a.endswith("\u2026") and fc.b.endswith("\u2026")
    assert fc.note is not None and "compared by SHA-256" in fc.note
    assert fc.a[:-1] == fc.b[:-1] == second[: normalize_mod.CUT_SHOW]
    assert any(n.startswith("A: 1 long text kept only as its start") for n in r.notes)
    assert any(n.startswith("B: 2 long texts kept only as their start") for n in r.notes)
    text = render_text(r)
    assert "compared by SHA-256" in text and "long texts kept only" in text
    assert "compared by SHA-256" in render_markdown(r)
    # The same text, cut in one run and whole in the other, is no difference.
    same = make_recording(tmp_path / "same.rtrec", [
        (0, "client", {"type": "session.update", "session": {"instructions": "be brief " * 50}}),
        (1, "server", _done(first)), (2, "server", _done(second))])
    assert [e.kind for e in diff_files(a, same).events] == ["inserted"]


def test_messages_that_are_no_json_compare_past_the_part_shown(tmp_path: Path) -> None:
    a = make_recording(tmp_path / "a.rtrec", [(0, "server", "x" * 5000)], redact=False)
    b = make_recording(tmp_path / "b.rtrec", [(0, "server", "x" * 4999 + "y")], redact=False)
    r = diff_files(a, b)
    [e] = r.events
    assert e.type == "(not json)" and len(e.changes[0].a) == 2001
    assert diff_files(a, a).equivalent


# ------------------------------------------------------------ strict JSON
def test_json_output_is_strict_json_with_nan_and_infinity_as_null(tmp_path: Path) -> None:
    """The fuzzed case: temperature NaN made `diff --format json` write NaN, which jq rejects."""
    a = make_recording(tmp_path / "a.rtrec", [
        (0, "client", '{"type":"response.create","response":{"temperature":NaN}}'),
        (1, "server", '{"type":"response.function_call_arguments.done","arguments":"{\\"x\\": Infinity}","y":-Infinity}'),
    ], redact=False)
    b = make_recording(tmp_path / "b.rtrec", [
        (1, "server", '{"type":"response.function_call_arguments.done","arguments":"{\\"x\\": 1}","y":2}'),
    ], redact=False)
    code, rep, _ = _diff_json(a, SAMPLE)
    assert code == 1
    [create] = [e for e in rep["events"] if e["type"] == "response.create"]
    assert create["changes"] == [{"path": "response", "kind": "only_a", "a": {"temperature": None}, "b": None}]
    _, rep, _ = _diff_json(a, b)
    [call] = [e for e in rep["events"] if e["kind"] == "changed"]
    assert {c["path"]: (c["a"], c["b"]) for c in call["changes"]} == {"arguments": ('{"x": Infinity}', '{"x": 1}'),
                                                                      "y": (None, 2)}
    assert call["changes"][0]["changes"] == [{"path": "x", "kind": "value", "a": None, "b": 1}]
    r = diff_files(a, b)
    assert _strict(render_json(r)) == rep | {"a": str(a), "b": str(b)}
    # A NaN in both runs is no difference.
    assert diff_files(a, a).equivalent


def test_3000_events_of_10000_values_each_diff_in_bounded_memory(tmp_path: Path) -> None:
    """The fuzzed case: a 36 kB file of 3,000 events each listing 10,000 strings
    took 47 s and 1.7 GB. Past 4 M items a long list is its JSON's start and SHA-256."""
    ev = json.dumps({"type": "x", "a": ["a"] * 10000})
    big = make_recording(tmp_path / "big.rtrec", [(0, "server", ev)] * 3000, redact=False)
    code, rep, elapsed = _diff_json(big, SAMPLE, timeout=60, limit_as=1 << 30)
    assert code == 1 and elapsed < 60
    lists = [e["event"]["a"] for e in rep["events"] if e["type"] == "x"]
    kept = normalize_mod.VALUE_BUDGET // 10000
    assert lists[:kept] == [["a"] * 10000] * kept
    assert lists[kept:] == [json.dumps(["a"] * 10000, separators=(",", ":"))[: normalize_mod.CUT_SHOW] + "\u2026"] * (3000 - kept)
    [note] = [n for n in rep["notes"] if n.startswith("A: ")]
    assert note.startswith(f"A: {3000 - kept:,} lists or objects kept only as the start and SHA-256 of their JSON")


def test_a_list_cut_in_one_run_equals_the_whole_list_in_the_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(normalize_mod, "VALUE_BUDGET", 150)
    tools = [{"type": "function", "name": f"tool_{k}", "parameters": {"type": "object"}} for k in range(30)]

    def update(ts: list[dict[str, Any]]) -> dict[str, Any]:
        return {"type": "session.update", "session": {"tools": ts}}

    changed = [dict(t) for t in tools]
    changed[29]["name"] = "tool_x"  # past what a cut list shows
    a = make_recording(tmp_path / "a.rtrec", [(0, "client", update(tools)), (1, "client", update(tools))])
    # B: a long list first, so B keeps less of the rest than A does.
    pad = {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                         "content": [{"type": "input_text", "text": "x"}] * 60}}
    same = make_recording(tmp_path / "same.rtrec", [(0, "client", pad), (1, "client", update(tools)),
                                                    (2, "client", update(tools))])
    r = diff_files(a, same)
    assert [e.kind for e in r.events] == ["inserted"]
    cut = {n[0]: int(n.split()[1]) for n in r.notes if "lists or objects kept only" in n or "list or object kept only" in n}
    assert 0 < cut["A"] < cut["B"]
    # One update each side: the cut list in B and the whole one in A are compared.
    one = make_recording(tmp_path / "one.rtrec", [(0, "client", update(tools))])
    other = make_recording(tmp_path / "other.rtrec", [(0, "client", pad), (1, "client", update(changed))])
    assert [e.kind for e in diff_files(one, make_recording(
        tmp_path / "one_b.rtrec", [(0, "client", pad), (1, "client", update(tools))])).events] == ["inserted"]
    r = diff_files(one, other)
    assert [(e.kind, e.type) for e in r.events] == [("inserted", "conversation.item.create"), ("changed", "session.update")]
    [fc] = r.events[1].changes
    assert fc.path == "session.tools" and isinstance(fc.a, list) and isinstance(fc.b, str) and fc.b.endswith("\u2026")
    assert fc.note is not None and "characters of JSON" in fc.note
    text = render_text(r)
    assert "compared by SHA-256" in text and "lists or objects kept only" in text
