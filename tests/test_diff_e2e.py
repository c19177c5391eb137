"""End to end: one scripted conversation recorded twice through a real `rtproxy record`
process in front of the Realtime-like server, then `rtproxy diff` as a subprocess.

Runs that differ only in ids, chunking, rate limits, transcription order or
event naming (beta/GA) must be equivalent (exit 0); every real change must be
reported at its place (exit 1).
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import websockets

from rtproxy.io.format import open_recording
from rtproxy.protocol.events import canonical_event_type
from tests.conftest import ROOT, RTPROXY, Recorder
from tests.realtime_server import Scenario, ServerThread, speech_pcm

pytestmark = pytest.mark.e2e

SPEECH = speech_pcm()[: 48 * 1000]  # 1 s of 24 kHz PCM16
TOOL = {"tool_name": "get_weather", "tool_args": '{"city": "Paris", "unit": "celsius"}'}


async def _until(ws: Any, *types: str) -> dict | None:
    """Read server events until one of ``types`` (compared under GA names); None if closed."""
    want = {canonical_event_type(t) for t in types}
    try:
        while True:
            ev = json.loads(await ws.recv())
            if canonical_event_type(ev.get("type")) in want:
                return ev
    except websockets.ConnectionClosed:
        return None


async def conversation(url: str, *, turns: int = 2, extra_response: bool = False, append_ms: int = 100) -> None:
    """session.update, 1 s of speech, commit, response.create; more response.create turns
    (answering a function call with its output first); then drain and close."""
    async with websockets.connect(
        url + "/v1/realtime?model=gpt-realtime",
        additional_headers={"Authorization": "Bearer sk-test-diff-0000000000000000"},
        max_size=None,
    ) as ws:
        await _until(ws, "session.created")
        await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief."}}))
        await _until(ws, "session.updated")
        step = 48 * append_ms
        for i in range(0, len(SPEECH), step):
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(SPEECH[i:i + step]).decode()}))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        try:
            await ws.send(json.dumps({"type": "response.create"}))
            last = await _until(ws, "response.done", "error")
            for _ in range(turns - 1 + int(extra_response)):
                output = ((last or {}).get("response") or {}).get("output") or []
                for item in output:
                    if item.get("type") == "function_call":
                        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                            "type": "function_call_output", "call_id": item["call_id"], "output": '{"temp_c": 18}'}}))
                        await _until(ws, "conversation.item.added")
                await ws.send(json.dumps({"type": "response.create"}))
                last = await _until(ws, "response.done", "error")
            # drain what follows (rate limits, a server-side close) before closing
            while True:
                await asyncio.wait_for(ws.recv(), 0.3)
        except (websockets.ConnectionClosed, TimeoutError):
            pass


class Bench:
    """One Realtime-like server and one `rtproxy record` for the whole module."""

    def __init__(self, srv: ServerThread, rec: Recorder) -> None:
        self.srv = srv
        self.rec = rec
        self.cache: dict[Any, Path] = {}

    def record(self, scenario: Scenario, **script: Any) -> Path:
        key = (repr(scenario), tuple(sorted(script.items())))
        if key in self.cache:
            return self.cache[key]
        before = set(self.rec.files())
        self.srv.app.scenario = scenario
        self.srv.app.rng = random.Random(scenario.seed)  # ids and quota depend on the seed
        asyncio.run(conversation(f"ws://127.0.0.1:{self.rec.port}", **script))
        files = self.rec.wait_files(len(before) + 1)
        (new,) = set(files) - before
        self.cache[key] = new
        return new


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    with ServerThread(Scenario()) as srv:
        rec = Recorder(srv.url, tmp_path_factory.mktemp("diff") / "rec")
        try:
            yield Bench(srv, rec)
        finally:
            rec.stop()


def rtdiff(a: Path, b: Path, *args: str) -> tuple[int, Any]:
    """Run `rtproxy diff --format json` (unless a format is given); (exit code, parsed output)."""
    if "--format" not in args:
        args = ("--format", "json", *args)
    as_json = args[args.index("--format") + 1] == "json"
    p = subprocess.run([*RTPROXY, "diff", str(a), str(b), *args], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode in (0, 1), p.stderr
    assert not p.stderr
    return p.returncode, (json.loads(p.stdout) if as_json else p.stdout)


def changed(report: dict, type_: str) -> list[dict]:
    return [e for e in report["events"] if e["kind"] == "changed" and e["type"] == type_]


def field(event: dict, path: str) -> dict:
    hits = [c for c in event["changes"] if c["path"] == path]
    assert hits, f"{path} not among {[c['path'] for c in event['changes']]}"
    return hits[0]


def server_messages(path: Path) -> list[str]:
    with open_recording(path) as r:
        return [m.text for m in r.messages() if not m.from_client]


# --------------------------------------------------------------- equivalent
def test_same_conversation_with_other_ids_chunking_quota_and_transcription_order_is_equivalent(bench: Bench) -> None:
    a = bench.record(Scenario(seed=1))
    b = bench.record(
        Scenario(seed=2, chunk_ms=20, rate_limits=False, transcription_before_response=False), append_ms=50
    )
    # the two files really do differ on the wire
    ma, mb = server_messages(a), server_messages(b)
    assert len(mb) > len(ma)
    assert not any("rate_limits.updated" in m for m in mb) and any("rate_limits.updated" in m for m in ma)
    assert json.loads(ma[0])["session"]["id"] != json.loads(mb[0])["session"]["id"]

    rc, report = rtdiff(a, b)
    assert rc == 0, json.dumps(report["events"] + report["timing"], indent=1)[:3000]
    assert report["verdict"] == "equivalent" and report["differences"] == 0
    assert report["turns"] == {"a": 2, "b": 2}
    rc, text = rtdiff(a, b, "--format", "text")
    assert rc == 0 and text.splitlines()[0].startswith("EQUIVALENT")
    assert "\x1b[" not in text  # piped: no colour


def test_beta_and_ga_names_of_one_conversation_are_equivalent(bench: Bench) -> None:
    a = bench.record(Scenario(seed=1))
    b = bench.record(Scenario(seed=3, beta=True))
    assert any('"response.audio.delta"' in m for m in server_messages(b))
    rc, report = rtdiff(a, b)
    assert rc == 0, json.dumps(report["events"], indent=1)[:3000]
    assert any("beta" in n for n in report["notes"])


# ------------------------------------------------------------------ changes
def test_changed_transcript_is_a_word_diff_in_each_turn(bench: Bench) -> None:
    a = bench.record(Scenario(seed=1))
    b = bench.record(Scenario(seed=4, transcript="Hello! How may I help you this evening?"))
    rc, report = rtdiff(a, b)
    assert rc == 1
    evs = changed(report, "response.output_audio_transcript.delta")
    assert [e["a"]["turn"] for e in evs] == [1, 2]
    words = field(evs[0], "delta")["words"]
    assert ["-", "can"] in words and ["+", "may"] in words
    assert ["-", "today?"] in words and ["+", "this evening?"] in words
    assert field(changed(report, "response.output_audio_transcript.done")[0], "transcript")["kind"] == "text"
    assert not [e for e in report["events"] if e["kind"] != "changed"]
    rc, md = rtdiff(a, b, "--format", "markdown")
    assert rc == 1 and "~~can~~ **may**" in md


def test_text_instead_of_audio(bench: Bench) -> None:
    a = bench.record(Scenario(seed=1))
    b = bench.record(Scenario(seed=5, modality="text"))
    rc, report = rtdiff(a, b)
    assert rc == 1
    ev = changed(report, "session.created")[0]
    assert field(ev, "session.output_modalities[0]") == {
        "path": "session.output_modalities[0]", "kind": "value", "a": "audio", "b": "text"}
    kinds = {(e["kind"], e["type"]) for e in report["events"]}
    assert ("missing", "response.output_audio.delta") in kinds
    assert ("inserted", "response.output_text.delta") in kinds
    text = next(e for e in report["events"] if e["type"] == "response.output_text.delta")
    assert text["event"]["delta"] == "Hello! How can I help you today?"
    assert text["b"]["turn"] == 1


def test_tool_called_with_other_arguments(bench: Bench) -> None:
    a = bench.record(Scenario(seed=1, **TOOL))
    b = bench.record(Scenario(seed=6, tool_name="get_weather", tool_args='{"unit": "celsius", "city": "London"}'))
    rc, report = rtdiff(a, b)
    assert rc == 1
    evs = changed(report, "response.function_call_arguments.delta")
    assert [e["a"]["turn"] for e in evs] == [1, 2]
    args = field(evs[0], "delta")
    assert args["kind"] == "json"
    # key order is no difference, the city is
    assert [(c["path"], c["a"], c["b"]) for c in args["changes"]] == [("city", "Paris", "London")]
    # the client's function_call_output still links to the right call: no link change
    assert not [c for e in report["events"] if e["kind"] == "changed" for c in e["changes"] if c["kind"] == "link"]


def test_other_tool_name(bench: Bench) -> None:
    a = bench.record(Scenario(seed=1, **TOOL))
    b = bench.record(Scenario(seed=7, tool_name="get_forecast", tool_args=TOOL["tool_args"]))
    rc, report = rtdiff(a, b)
    assert rc == 1
    ev = changed(report, "response.output_item.added")[0]
    assert (field(ev, "item.name")["a"], field(ev, "item.name")["b"]) == ("get_weather", "get_forecast")
    assert field(changed(report, "response.function_call_arguments.done")[0], "name")["b"] == "get_forecast"


def test_response_status(bench: Bench) -> None:
    a = bench.record(Scenario(seed=1))
    b = bench.record(Scenario(seed=8, response_status="incomplete"))
    rc, report = rtdiff(a, b)
    assert rc == 1
    evs = changed(report, "response.done")
    assert [e["a"]["turn"] for e in evs] == [1, 2]
    st = field(evs[0], "response.status")
    assert (st["a"], st["b"]) == ("completed", "incomplete")
    assert field(evs[0], "response.status_details")["b"] == {"type": "incomplete", "reason": "max_output_tokens"}
    assert {e["type"] for e in report["events"]} == {"response.done"}


def test_error_event_instead_of_second_response(bench: Bench) -> None:
    a = bench.record(Scenario(seed=1))
    b = bench.record(Scenario(seed=9, error_on_second_response=True))
    rc, report = rtdiff(a, b)
    assert rc == 1
    err = [e for e in report["events"] if e["type"] == "error"]
    assert len(err) == 1 and err[0]["kind"] == "inserted"
    assert err[0]["event"]["error"]["code"] == "conversation_already_has_active_response"
    assert err[0]["b"]["turn"] == 2
    missing = {e["type"] for e in report["events"] if e["kind"] == "missing"}
    assert {"response.created", "response.done"} <= missing
    assert all(e["a"]["turn"] == 2 for e in report["events"] if e["kind"] == "missing")
    assert report["turns"] == {"a": 2, "b": 1}


def test_extra_response(bench: Bench) -> None:
    a = bench.record(Scenario(seed=1))
    b = bench.record(Scenario(seed=10), extra_response=True)
    rc, report = rtdiff(a, b)
    assert rc == 1
    assert report["turns"] == {"a": 2, "b": 3}
    assert all(e["kind"] == "inserted" for e in report["events"]), report["events"]
    client = [e for e in report["events"] if e["direction"] == "client"]
    assert [e["type"] for e in client] == ["response.create"]
    server = {e["type"] for e in report["events"] if e["direction"] == "server"}
    assert {"response.created", "response.output_audio.delta", "response.done"} <= server
    assert report["counts"]["server"]["changed"] == 0


def test_close_code(bench: Bench) -> None:
    a = bench.record(Scenario(seed=1), turns=1)
    b = bench.record(Scenario(seed=11, close_code=4000, close_reason="session expired"), turns=1)
    rc, report = rtdiff(a, b)
    assert rc == 1
    changes = {c["field"]: (c["a"], c["b"]) for c in report["connection"]["changes"]}
    assert changes == {"close_code": (1000, 4000), "close_reason": ("", "session expired")}
    assert report["events"] == [] and report["timing"] == []
    rc, text = rtdiff(a, b, "--format", "text")
    assert "close_code    1000 -> 4000" in text


def test_one_second_slower_first_audio(bench: Bench) -> None:
    a = bench.record(Scenario(seed=1), turns=1)
    b = bench.record(Scenario(seed=12, delay_first_audio_ms=1000), turns=1)
    rc, report = rtdiff(a, b)
    assert rc == 1
    assert report["events"] == [] and report["connection"]["changes"] == []
    first = [t for t in report["timing"] if t["metric"] == "first_output_ms"]
    assert len(first) == 1 and first[0]["turn"] == {"a": 1, "b": 1}
    assert 900 <= first[0]["delta_ms"] <= 2000
    # generous tolerance or --no-timing: equivalent
    assert rtdiff(a, b, "--timing-tolerance", "5000")[0] == 0
    assert rtdiff(a, b, "--no-timing")[0] == 0
