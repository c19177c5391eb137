"""rtproxy.compare.normalize / rtproxy.compare.core / `rtproxy diff`, on recordings written with RecordingWriter."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pty
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rtproxy.cli.main import cli
from rtproxy.compare.core import align, normalize_file, word_diff
from rtproxy.io.format import RecordingWriter
from rtproxy.compare.normalize import DEFAULT_IGNORES, PathError, PathRules
from tests.conftest import ROOT, RTPROXY

BETA = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "conversation.item.added": "conversation.item.created",
}
USER_AUDIO = bytes(range(256)) * 60  # 15360 B = 320 ms of pcm16
BOT_AUDIO = bytes(reversed(range(256))) * 90  # 23040 B = 480 ms


class Conv:
    """A scripted Realtime conversation with run-to-run noise (ids, quota, usage) from ``seed``."""

    def __init__(self, seed: int = 1, *, beta: bool = False, tools: list[dict] | None = None) -> None:
        self.rng = random.Random(seed)
        self.beta = beta
        self.t = 0.0
        self.msgs: list[tuple[float, bool, Any]] = []
        session = {"id": self.id("sess"), "model": "gpt-realtime", "output_modalities": ["audio"],
                   "expires_at": 1700000000 + self.rng.randint(0, 9999), "tools": tools or [],
                   "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}}}}
        self.s("session.created", session=session)
        self.c({"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief."}})
        self.s("session.updated", session=session)

    def id(self, prefix: str) -> str:
        return f"{prefix}_{self.rng.getrandbits(48):012x}"

    def c(self, obj: dict, dt: float = 5) -> None:
        self.t += dt
        self.msgs.append((self.t, True, obj))

    def s(self, typ: str, dt: float = 5, **kw: Any) -> None:
        self.t += dt
        typ = BETA.get(typ, typ) if self.beta else typ
        self.msgs.append((self.t, False, {"type": typ, "event_id": self.id("event"), **kw}))

    def user_turn(self, *, appends: int = 4, transcription_after: bool = False, response: dict | None = None,
                  user_transcript: str = "What is the weather like?") -> None:
        step = -(-len(USER_AUDIO) // appends)
        for i in range(0, len(USER_AUDIO), step):
            self.c({"type": "input_audio_buffer.append", "audio": base64.b64encode(USER_AUDIO[i:i + step]).decode()}, dt=20)
        self.c({"type": "input_audio_buffer.commit"})
        uid = self.id("item")
        item = {"id": uid, "type": "message", "role": "user", "content": [{"type": "input_audio", "transcript": None}]}
        self.s("input_audio_buffer.committed", item_id=uid, previous_item_id=None)
        self.s("conversation.item.added", item=item, previous_item_id=None)
        if not self.beta:
            self.s("conversation.item.done", item=item, previous_item_id=None)
        transcription = [
            ("conversation.item.input_audio_transcription.delta", {"item_id": uid, "content_index": 0, "delta": user_transcript}),
            ("conversation.item.input_audio_transcription.completed", {"item_id": uid, "content_index": 0, "transcript": user_transcript}),
        ]
        if not transcription_after:
            for typ, kw in transcription:
                self.s(typ, **kw)
        self.c({"type": "response.create"})
        self.response(**(response or {}), _after=transcription if transcription_after else [])

    def response(self, *, transcript: str = "Hello! How can I help you today?", chunks: int = 4,
                 first_ms: float = 40, status: str = "completed", audio: bytes = BOT_AUDIO,
                 tool: str | None = None, args: str = '{"city": "Paris"}', modality: str = "audio",
                 _after: list | None = None) -> None:
        rid, iid = self.id("resp"), self.id("item")
        base = {"response_id": rid, "item_id": iid, "output_index": 0}
        self.s("response.created", response={"id": rid, "status": "in_progress", "output": []})
        if tool:
            cid = self.id("call")
            item = {"id": iid, "type": "function_call", "name": tool, "call_id": cid, "arguments": ""}
            self.s("response.output_item.added", response_id=rid, output_index=0, item=item)
            step = -(-len(args) // chunks)
            for i in range(0, len(args), step):
                self.s("response.function_call_arguments.delta", dt=first_ms if i == 0 else 5, **base, call_id=cid, delta=args[i:i + step])
            self.s("response.function_call_arguments.done", **base, call_id=cid, name=tool, arguments=args)
            item = {**item, "arguments": args, "status": "completed"}
        else:
            item = {"id": iid, "type": "message", "role": "assistant", "content": []}
            self.s("response.output_item.added", response_id=rid, output_index=0, item=item)
            self.s("response.content_part.added", **base, content_index=0, part={"type": modality})
            words = transcript.split(" ")
            if modality == "audio":
                step = -(-len(audio) // chunks)
                for k, i in enumerate(range(0, len(audio), step)):
                    self.s("response.output_audio.delta", dt=first_ms if k == 0 else 5, **base, content_index=0,
                           delta=base64.b64encode(audio[i:i + step]).decode())
                    if k < len(words):
                        sep = " " if k < len(words) - 1 else ""
                        self.s("response.output_audio_transcript.delta", **base, content_index=0, delta=words[k] + sep)
                rest = " ".join(words[chunks:])
                if rest:
                    self.s("response.output_audio_transcript.delta", **base, content_index=0, delta=rest)
                self.s("response.output_audio.done", **base, content_index=0)
                self.s("response.output_audio_transcript.done", **base, content_index=0, transcript=transcript)
                part = {"type": "audio", "transcript": transcript}
            else:
                for k, w in enumerate(words):
                    sep = " " if k < len(words) - 1 else ""
                    self.s("response.output_text.delta", dt=first_ms if k == 0 else 5, **base, content_index=0, delta=w + sep)
                self.s("response.output_text.done", **base, content_index=0, text=transcript)
                part = {"type": "text", "text": transcript}
            self.s("response.content_part.done", **base, content_index=0, part=part)
            item = {**item, "content": [part], "status": "completed"}
        self.s("response.output_item.done", response_id=rid, output_index=0, item=item)
        for typ, kw in _after or []:
            self.s(typ, **kw)
        self.s("response.done", response={"id": rid, "status": status, "output": [item],
               "usage": {"total_tokens": self.rng.randint(50, 500), "output_tokens": self.rng.randint(1, 50)}})
        self.s("rate_limits.updated", rate_limits=[{"name": "tokens", "limit": 50000, "remaining": self.rng.randint(0, 50000)}])
        self.last_call = item.get("call_id")

    def write(self, path: Path, *, close: tuple[int, str] = (1000, ""), status: int = 101,
              subprotocol: str | None = None, model: str = "gpt-realtime") -> Path:
        w = RecordingWriter(path)
        w.write_header(url=f"ws://127.0.0.1/v1/realtime?model={model}", model=model, started=1.7e9, session_id="x")
        w.write_handshake(status=status, reason="Switching Protocols", subprotocol=subprotocol, request_headers=[], response_headers=[])
        for t, from_client, obj in self.msgs:
            w.write_message(int(t * 1e6), from_client, True, json.dumps(obj).encode())
        w.write_close(t_ns=int((self.t + 5) * 1e6), code=close[0], reason=close[1], closed_by="client")
        w.close()
        return path


def two_turns(seed: int, **kw: Any) -> Conv:
    c = Conv(seed, beta=kw.pop("beta", False))
    c.user_turn(**kw)
    c.user_turn(**kw)
    return c


def run(*args: Any) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["diff", *map(str, args)])
    return res.exit_code, res.output


def report(a: Path, b: Path, *args: Any) -> tuple[int, dict]:
    code, out = run(a, b, "--format", "json", *args)
    return code, json.loads(out)


# ------------------------------------------------------------- normalising
def test_ids_become_ordinals_in_order_of_appearance_and_keep_their_links(tmp_path: Path) -> None:
    n = normalize_file(two_turns(1).write(tmp_path / "a.rtrec"))
    created = [e for e in n.server if e.type == "response.created"]
    assert [e.body["response"]["id"] for e in created] == ["resp#1", "resp#2"]
    assert n.server[0].body["session"]["id"] == "sess#1"
    added = [e for e in n.server if e.type == "response.output_item.added"]
    audio = [e for e in n.server if e.type == "response.output_audio.delta"]
    assert [e.body["item"]["id"] for e in added] == [e.body["item_id"] for e in audio] == ["item#2", "item#4"]
    assert "event_id" not in n.server[0].body and "expires_at" not in n.server[0].body["session"]
    assert not [e for e in n.server if e.type == "rate_limits.updated"]


def test_deltas_are_joined_per_item_and_part(tmp_path: Path) -> None:
    c = Conv(1)
    c.user_turn(appends=7, response={"chunks": 6})
    n = normalize_file(c.write(tmp_path / "a.rtrec"))
    (append,) = [e for e in n.client if e.type == "input_audio_buffer.append"]
    assert append.body["audio"]["ms"] == 320.0 and append.messages == 7
    (audio,) = [e for e in n.server if e.type == "response.output_audio.delta"]
    assert audio.body["delta"]["ms"] == 480.0 and audio.messages == 6
    # the hash of the joined audio, although the file stores it packed chunk by chunk
    assert audio.body["delta"]["sha256"] == hashlib.sha256(BOT_AUDIO).hexdigest()[:16]
    (tr,) = [e for e in n.server if e.type == "response.output_audio_transcript.delta"]
    assert tr.body["delta"].split() == "Hello! How can I help you today?".split()


def test_transcription_is_placed_after_its_item_wherever_it_arrived(tmp_path: Path) -> None:
    a = normalize_file(two_turns(1).write(tmp_path / "a.rtrec"))
    b = normalize_file(two_turns(2, transcription_after=True).write(tmp_path / "b.rtrec"))
    assert [e.type for e in a.server] == [e.type for e in b.server]
    i = [e.type for e in a.server].index("input_audio_buffer.committed")
    assert a.server[i + 1].type == "conversation.item.input_audio_transcription.delta"


def test_path_rules_most_specific_wins() -> None:
    r = PathRules(DEFAULT_IGNORES, ["response.usage.total_tokens"])
    from rtproxy.compare.normalize import _Normalizer

    body = _Normalizer(r).body({"type": "response.done", "event_id": "e1", "response": {
        "usage": {"total_tokens": 5, "output_tokens": 3}, "status": "completed"}})
    assert body == {"type": "response.done", "response": {"usage": {"total_tokens": 5}, "status": "completed"}}
    body = _Normalizer(PathRules(["session.tools[*].description"])).body(
        {"session": {"tools": [{"name": "a", "description": "x"}, {"name": "b", "description": "y"}]}})
    assert body == {"session": {"tools": [{"name": "a"}, {"name": "b"}]}}
    with pytest.raises(PathError):
        PathRules(["session..tools"])


def test_word_diff_and_align() -> None:
    assert word_diff("a b c d", "a x c d e") == [["=", "a"], ["-", "b"], ["+", "x"], ["=", "c d"], ["+", "e"]]
    steps = align(list("abcXdef"), list("abYcdef"))
    assert [s for s in steps if None in s] == [(None, 2), (3, None)]
    assert len([s for s in steps if None not in s]) == 6


# ------------------------------------------------------------------ diffing
def test_noise_chunking_order_and_names_are_equivalent(tmp_path: Path) -> None:
    a = two_turns(1).write(tmp_path / "a.rtrec")
    b = two_turns(2, appends=9, transcription_after=True, response={"chunks": 7}).write(tmp_path / "b.rtrec")
    beta = two_turns(3, beta=True).write(tmp_path / "beta.rtrec")
    assert run(a, b)[0] == 0
    code, out = run(a, beta)
    assert code == 0 and out.startswith("EQUIVALENT") and "beta event names" in out


def test_keep_brings_back_an_ignored_field_and_ignore_hides_one(tmp_path: Path) -> None:
    a = two_turns(1).write(tmp_path / "a.rtrec")
    b = two_turns(2).write(tmp_path / "b.rtrec")
    code, rep = report(a, b, "--keep", "response.usage")
    assert code == 1
    paths = {c["path"] for e in rep["events"] for c in e["changes"]}
    assert paths == {"response.usage.total_tokens", "response.usage.output_tokens"}
    c = two_turns(3, response={"status": "incomplete"}).write(tmp_path / "c.rtrec")
    assert run(a, c)[0] == 1
    assert run(a, c, "--ignore", "response.status")[0] == 0
    code, rep = report(a, b, "--keep", "rate_limits.updated")
    assert code == 1 and {e["type"] for e in rep["events"]} == {"rate_limits.updated"}


def test_changed_arguments_compare_as_parsed_json(tmp_path: Path) -> None:
    def conv(seed: int, args: str) -> Conv:
        c = Conv(seed)
        c.user_turn(response={"tool": "get_weather", "args": args})
        c.c({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": c.last_call, "output": "{}"}})
        c.s("conversation.item.added", item={"id": c.id("item"), "type": "function_call_output", "call_id": c.last_call, "output": "{}"})
        return c

    a = conv(1, '{"city": "Paris", "unit": "c"}').write(tmp_path / "a.rtrec")
    same = conv(2, '{"unit":"c","city":"Paris"}').write(tmp_path / "same.rtrec")
    other = conv(3, '{"city": "Rome", "unit": "c"}').write(tmp_path / "b.rtrec")
    assert run(a, same)[0] == 0
    code, rep = report(a, other)
    assert code == 1
    (delta,) = [e for e in rep["events"] if e["type"] == "response.function_call_arguments.delta"]
    (ch,) = delta["changes"]
    assert ch["kind"] == "json" and [(x["path"], x["a"], x["b"]) for x in ch["changes"]] == [("city", "Paris", "Rome")]

    # the client answering another call than the one the server made is a broken link
    bad = conv(4, '{"city": "Paris", "unit": "c"}')
    bad.msgs[-2][2]["item"]["call_id"] = "call_somethingelse"
    code, rep = report(a, bad.write(tmp_path / "bad.rtrec"))
    assert code == 1
    (ev,) = [e for e in rep["events"] if e["direction"] == "client"]
    assert ev["changes"][0]["path"] == "item.call_id" and ev["changes"][0]["kind"] == "link"


def test_an_extra_response_does_not_shift_the_rest(tmp_path: Path) -> None:
    a = two_turns(1).write(tmp_path / "a.rtrec")
    c = Conv(2)
    c.user_turn()
    c.c({"type": "response.create"})
    c.response(transcript="Anything else?")
    c.user_turn()
    code, rep = report(a, c.write(tmp_path / "b.rtrec"))
    assert code == 1
    assert {e["kind"] for e in rep["events"]} == {"inserted"}
    assert {e["b"]["turn"] for e in rep["events"]} == {2}
    assert rep["turns"] == {"a": 2, "b": 3} and rep["timing"] == []


def test_timing_beyond_tolerance(tmp_path: Path) -> None:
    a = two_turns(1).write(tmp_path / "a.rtrec")
    c = Conv(2)
    c.user_turn()
    c.user_turn(response={"first_ms": 640})
    code, rep = report(a, c.write(tmp_path / "b.rtrec"))
    assert code == 1 and rep["events"] == []
    assert [(t["metric"], t["turn"]["a"], t["delta_ms"]) for t in rep["timing"]] == [
        ("first_output_ms", 2, 600.0), ("response_ms", 2, 600.0)]
    assert run(a, tmp_path / "b.rtrec", "--timing-tolerance", "700")[0] == 0
    code, out = run(a, tmp_path / "b.rtrec")
    assert "turn 2 (resp#2): end of input -> first audio/text 85 ms -> 685 ms (+600 ms)" in out


def test_connection_facts(tmp_path: Path) -> None:
    a = two_turns(1).write(tmp_path / "a.rtrec")
    b = two_turns(1).write(tmp_path / "b.rtrec", status=101, subprotocol="realtime", model="gpt-realtime-mini", close=(4000, "expired"))
    code, rep = report(a, b)
    assert code == 1 and rep["events"] == []
    assert {c["field"]: [c["a"], c["b"]] for c in rep["connection"]["changes"]} == {
        "subprotocol": [None, "realtime"], "model": ["gpt-realtime", "gpt-realtime-mini"],
        "close_code": [1000, 4000], "close_reason": ["", "expired"]}


def test_input_audio_in_an_item_is_a_duration_and_hash(tmp_path: Path) -> None:
    def conv(audio: bytes) -> Conv:
        c = Conv(1)
        c.c({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
            {"type": "input_audio", "audio": base64.b64encode(audio).decode()}]}})
        return c

    a = conv(USER_AUDIO).write(tmp_path / "a.rtrec")
    b = conv(USER_AUDIO[:9600]).write(tmp_path / "b.rtrec")
    n = normalize_file(a)
    assert n.client[-1].body["item"]["content"][0]["audio"]["ms"] == 320.0
    code, rep = report(a, b)
    paths = {c["path"]: (c["a"], c["b"]) for c in rep["events"][0]["changes"]}
    assert paths["item.content[0].audio.ms"] == (320.0, 200.0) and "item.content[0].audio.sha256" in paths


# --------------------------------------------------------------------- CLI
def test_outputs_and_exit_codes(tmp_path: Path) -> None:
    a = two_turns(1).write(tmp_path / "a.rtrec")
    b = two_turns(2, response={"transcript": "Hello! How may I help you today?"}).write(tmp_path / "b.rtrec")
    code, out = run(a, b)
    lines = out.splitlines()
    assert code == 1 and lines[0].startswith("DIFFERENT: 10 differences")
    assert "Summary" in lines[4] and "\x1b[" not in out
    assert "delta: Hello! How [-can-] {+may+} I help you today?" in out
    code, md = run(a, b, "--format", "markdown")
    assert code == 1 and md.startswith("### rtproxy diff: DIFFERENT") and "How ~~can~~ **may** I" in md

    code, out = run(a, tmp_path / "missing.rtrec")
    assert code == 2 and out.count("\n") == 1 and "missing.rtrec: no such file" in out
    (tmp_path / "junk.rtrec").write_bytes(b"hello")
    code, out = run(a, tmp_path / "junk.rtrec")
    assert code == 2 and "not an .rtrec recording" in out and "Traceback" not in out
    code, out = run(a, b, "--ignore", "a..b")
    assert code == 2 and "bad path 'a..b'" in out

    code, out = run("--help")
    assert code == 0 and all(p in out for p in DEFAULT_IGNORES)
    assert "0 equivalent; 1 different; 2 error" in out


def test_colour_on_a_terminal_only(tmp_path: Path) -> None:
    a = two_turns(1).write(tmp_path / "a.rtrec")
    b = two_turns(2, response={"status": "cancelled"}).write(tmp_path / "b.rtrec")
    master, slave = pty.openpty()
    p = subprocess.Popen([*RTPROXY, "diff", str(a), str(b)], stdout=slave, stderr=subprocess.DEVNULL, cwd=ROOT)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    assert p.wait(30) == 1
    os.close(master)
    assert b"\x1b[" in out and b"DIFFERENT" in out
    piped = subprocess.run([*RTPROXY, "diff", str(a), str(b)], capture_output=True, cwd=ROOT)
    assert piped.returncode == 1 and b"\x1b[" not in piped.stdout


def test_long_reruns_where_every_audio_differs_pair_turn_by_turn(tmp_path: Path) -> None:
    """No unique anchors at all (same words every turn, other audio every turn): still
    every event is paired with its counterpart and only the audio is reported."""
    turns = 300
    a, b = Conv(1), Conv(2)
    for k in range(turns):
        a.user_turn(response={"audio": BOT_AUDIO})
        b.user_turn(response={"audio": BOT_AUDIO[k % 7:] + BOT_AUDIO[: k % 7 + 1]})
    code, rep = report(a.write(tmp_path / "a.rtrec"), b.write(tmp_path / "b.rtrec"), "--no-timing")
    assert code == 1
    assert rep["counts"]["server"]["a"] > 4000
    assert {e["kind"] for e in rep["events"]} == {"changed"}
    assert {e["type"] for e in rep["events"]} == {"response.output_audio.delta"}
    assert [e["a"]["turn"] for e in rep["events"]] == [e["b"]["turn"] for e in rep["events"]] == list(range(1, turns + 1))
    assert {c["path"] for e in rep["events"] for c in e["changes"]} == {"delta.sha256"}
    hashes = [c[side] for e in rep["events"] for c in e["changes"] for side in "ab"]
    assert not [h for h in hashes if h.startswith("~")]  # real hashes in the report
    assert hashes[0] == hashlib.sha256(BOT_AUDIO).hexdigest()[:16]
    assert run(tmp_path / "a.rtrec", tmp_path / "b.rtrec", "--no-timing", "--ignore", "**.sha256")[0] == 0


def test_beta_protocol_is_recognised_from_the_handshake() -> None:
    from rtproxy.compare.core import _beta_handshake

    assert _beta_handshake({"request_headers": [["OpenAI-Beta", "realtime=v1"]]})
    assert _beta_handshake({"request_headers": [[b"Sec-WebSocket-Protocol", b"realtime, openai-beta.realtime-v1"]]})
    assert not _beta_handshake({"request_headers": [["Sec-WebSocket-Protocol", "realtime"]]})
