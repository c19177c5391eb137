"""`rtproxy diff` on two one-hour sessions: time, peak memory, and whether it
finds exactly the differences planted in the second one.

Two synthetic one-hour voice sessions (~150,000 messages each) are written
with rtproxy's ``RecordingWriter``, shaped like the GA Realtime API: the user
speaks (real speech from tests/data/speech_24k.pcm, streamed as
``input_audio_buffer.append``), commits and asks for a response; the server
answers with the committed / item / input-transcription events, then audio
deltas interleaved with transcript deltas, the ``.done`` events,
``response.done`` with usage and ``rate_limits.updated``. Every 15th turn the
model first calls a tool, the client sends the output and a second response.

Run B is the same conversation with what always differs between two runs:
other ids, other quota and token counts, input transcription after the
response on odd turns, function-argument deltas cut elsewhere, ±40 ms of
jitter; and with these planted differences:

* turn ~40: one word of the assistant's transcript;
* turn ~90: the tool's arguments (``city``);
* turn ~200: ``response.done`` status ``incomplete``;
* turn ~260: a second ``response.create`` during a response and the
  ``conversation_already_has_active_response`` error it gets;
* turn ~300: the first audio 1 s later;
* the close code and reason (1000 -> 1011).

B comes twice: ``b`` with A's audio chunk sizes (as a client replay of A
gives), ``b_rechunked`` with other sizes for appends and audio deltas (as a
second run against a live API gives). Audio is stored packed; rtproxy diff
unpacks every audio join in batches (``audiocodec.unpack_stream``) and hashes
the joined audio, so both cases cost the same.

The diff is the real command, ``rtproxy diff A B --format json``; the
baseline reads both files with ``open_recording``, touching every message's
event text. Each runs as a fresh process started by a small launcher, so the
peak RSS (``wait4``) is theirs alone. Medians over ``--runs``.

    .venv/bin/python bench/bench_diff.py [--runs 3] [--turns 500] [--keep DIR]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rtproxy.io.format import RecordingWriter  # noqa: E402

SPEECH = (ROOT / "tests" / "data" / "speech_24k.pcm").read_bytes()
TURN_MS = 7200
USER_MS = 3000
BOT_MS = 3000
TOOL_EVERY = 15
PLANTS = {"transcript": 40, "tool_args": 90, "status": 200, "error": 260, "slow": 300}


def audio(turn: int, ms: int, salt: int) -> bytes:
    """``ms`` of real speech from an offset that depends on the turn (same in both runs)."""
    n = 48 * ms
    start = (turn * 7919 + salt * 104729) * 2 % (len(SPEECH) - n)
    return SPEECH[start:start + n]


class Run:
    def __init__(self, seed: int, planted: bool, rechunk: bool = False) -> None:
        self.rng = random.Random(seed)
        self.planted = planted
        self.msgs: list[tuple[int, bool, bytes]] = []
        self.turn_no = 1  # as rtproxy diff counts: 1 + responses done so far
        self.plant_turns: dict[str, int] = {}
        self.append_ms = 25 if rechunk else 20
        self.delta_ms = 20 if rechunk else 25

    def id(self, prefix: str) -> str:
        return f"{prefix}_{self.rng.getrandbits(100):025x}"

    def emit(self, t_ms: float, from_client: bool, obj: dict[str, Any]) -> None:
        if not from_client:
            obj = {"type": obj.pop("type"), "event_id": self.id("event"), **obj}
        self.msgs.append((int(t_ms * 1e6), from_client, json.dumps(obj).encode()))

    def response(self, t: float, logical: int, *, tool: bool, after: list[dict]) -> float:
        rid, iid = self.id("resp"), self.id("item")
        base = {"response_id": rid, "item_id": iid, "output_index": 0}
        self.emit(t, False, {"type": "response.created", "response": {"id": rid, "object": "realtime.response", "status": "in_progress", "output": []}})
        if self.planted and logical == PLANTS["error"] and not tool:
            self.plant_turns["error"] = self.turn_no
            self.emit(t + 2, True, {"type": "response.create"})
            self.emit(t + 4, False, {"type": "error", "error": {"type": "invalid_request_error", "code": "conversation_already_has_active_response", "message": "Conversation already has an active response in progress."}})
        t += 5 + self.rng.uniform(0, 40)
        status = "completed"
        if tool:
            cid = self.id("call")
            args = '{"city": "Paris", "unit": "celsius"}'
            if self.planted and logical == PLANTS["tool_args"]:
                args = '{"city": "Lyon", "unit": "celsius"}'
                self.plant_turns["tool_args"] = self.turn_no
            item = {"id": iid, "type": "function_call", "status": "in_progress", "name": "get_weather", "call_id": cid, "arguments": ""}
            self.emit(t, False, {"type": "response.output_item.added", "response_id": rid, "output_index": 0, "item": item})
            step = 7 if self.planted else 5
            for i in range(0, len(args), step):
                t += 3
                self.emit(t, False, {"type": "response.function_call_arguments.delta", **base, "call_id": cid, "delta": args[i:i + step]})
            self.emit(t + 1, False, {"type": "response.function_call_arguments.done", **base, "call_id": cid, "name": "get_weather", "arguments": args})
            item = {**item, "status": "completed", "arguments": args}
            self.call_id = cid
        else:
            item = {"id": iid, "type": "message", "role": "assistant", "status": "in_progress", "content": []}
            self.emit(t, False, {"type": "response.output_item.added", "response_id": rid, "output_index": 0, "item": item})
            self.emit(t + 1, False, {"type": "response.content_part.added", **base, "content_index": 0, "part": {"type": "audio", "transcript": ""}})
            if self.planted and logical == PLANTS["slow"]:
                t += 1000
                self.plant_turns["slow"] = self.turn_no
            text = f"Sure, here is answer number {logical}: the weather in Paris is mild and sunny today."
            if self.planted and logical == PLANTS["transcript"]:
                text = text.replace("sunny", "cloudy")
                self.plant_turns["transcript"] = self.turn_no
            words = text.split(" ")
            pcm = audio(logical, BOT_MS, 2)
            chunk = 48 * self.delta_ms
            for k, i in enumerate(range(0, len(pcm), chunk)):
                t += self.delta_ms * 0.5  # faster than real time, as the API sends
                self.emit(t, False, {"type": "response.output_audio.delta", **base, "content_index": 0, "delta": base64.b64encode(pcm[i:i + chunk]).decode()})
                if k % 5 == 0 and k // 5 < len(words):
                    w = k // 5
                    self.emit(t, False, {"type": "response.output_audio_transcript.delta", **base, "content_index": 0, "delta": words[w] + (" " if w < len(words) - 1 else "")})
            for w in range(len(range(0, len(pcm), chunk)) // 5 + 1, len(words)):
                self.emit(t, False, {"type": "response.output_audio_transcript.delta", **base, "content_index": 0, "delta": words[w] + (" " if w < len(words) - 1 else "")})
            self.emit(t + 1, False, {"type": "response.output_audio.done", **base, "content_index": 0})
            self.emit(t + 2, False, {"type": "response.output_audio_transcript.done", **base, "content_index": 0, "transcript": text})
            part = {"type": "audio", "transcript": text}
            self.emit(t + 3, False, {"type": "response.content_part.done", **base, "content_index": 0, "part": part})
            item = {**item, "status": "completed", "content": [part]}
            t += 3
            if self.planted and logical == PLANTS["status"]:
                status = "incomplete"
                self.plant_turns["status"] = self.turn_no
        self.emit(t + 1, False, {"type": "response.output_item.done", "response_id": rid, "output_index": 0, "item": item})
        for ev in after:
            t += 2
            self.emit(t, False, ev)
        done = {"id": rid, "object": "realtime.response", "status": status, "output": [item],
                "status_details": None if status == "completed" else {"type": status, "reason": "max_output_tokens"},
                "usage": {"total_tokens": self.rng.randint(100, 900), "input_tokens": self.rng.randint(50, 400),
                          "output_tokens": self.rng.randint(50, 400)}}
        self.emit(t + 2, False, {"type": "response.done", "response": done})
        self.turn_no += 1
        self.emit(t + 3, False, {"type": "rate_limits.updated", "rate_limits": [
            {"name": "requests", "limit": 5000, "remaining": self.rng.randint(0, 5000), "reset_seconds": round(self.rng.random() * 60, 3)},
            {"name": "tokens", "limit": 400000, "remaining": self.rng.randint(0, 400000), "reset_seconds": round(self.rng.random() * 60, 3)}]})
        return t + 3

    def session(self, turns: int) -> None:
        sess = {"id": self.id("sess"), "object": "realtime.session", "type": "realtime", "model": "gpt-realtime",
                "output_modalities": ["audio"], "expires_at": 1760000000 + self.rng.randint(0, 9999),
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}},
                          "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}},
                "instructions": "You are a weather assistant.", "tools": [{"type": "function", "name": "get_weather", "description": "Weather for a city", "parameters": {"type": "object"}}]}
        self.emit(5, False, {"type": "session.created", "session": sess})
        self.emit(10, True, {"type": "session.update", "session": {"type": "realtime", "instructions": "You are a weather assistant."}})
        self.emit(15, False, {"type": "session.updated", "session": sess})
        for logical in range(1, turns + 1):
            t0 = logical * TURN_MS + self.rng.uniform(-40, 40)
            pcm = audio(logical, USER_MS, 1)
            chunk = 48 * self.append_ms
            t = t0
            for i in range(0, len(pcm), chunk):
                t += self.append_ms
                self.emit(t, True, {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[i:i + chunk]).decode()})
            self.emit(t + 5, True, {"type": "input_audio_buffer.commit"})
            uid = self.id("item")
            user_item = {"id": uid, "type": "message", "role": "user", "status": "completed", "content": [{"type": "input_audio", "transcript": None}]}
            t += 10 + self.rng.uniform(0, 30)
            self.emit(t, False, {"type": "input_audio_buffer.committed", "item_id": uid, "previous_item_id": None})
            self.emit(t + 1, False, {"type": "conversation.item.added", "item": user_item, "previous_item_id": None})
            self.emit(t + 2, False, {"type": "conversation.item.done", "item": user_item, "previous_item_id": None})
            said = f"What is the weather like, question {logical}?"
            transcription = [
                {"type": "conversation.item.input_audio_transcription.delta", "item_id": uid, "content_index": 0, "delta": said},
                {"type": "conversation.item.input_audio_transcription.completed", "item_id": uid, "content_index": 0, "transcript": said,
                 "usage": {"type": "tokens", "total_tokens": self.rng.randint(10, 60)}},
            ]
            t += 3
            late = self.planted and logical % 2 == 1
            if not late:
                for ev in transcription:
                    t += 1
                    self.emit(t, False, ev)
            self.emit(t + 1, True, {"type": "response.create"})
            tool = logical % TOOL_EVERY == 0
            t = self.response(t + 10 + self.rng.uniform(0, 30), logical, tool=tool, after=transcription if late else [])
            if tool:
                out_id = self.id("item")
                self.emit(t + 5, True, {"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": self.call_id, "output": '{"temp_c": 18}'}})
                self.emit(t + 8, False, {"type": "conversation.item.added", "item": {"id": out_id, "type": "function_call_output", "call_id": self.call_id, "output": '{"temp_c": 18}'}, "previous_item_id": None})
                self.emit(t + 10, True, {"type": "response.create"})
                self.response(t + 20 + self.rng.uniform(0, 30), logical, tool=False, after=[])

    def write(self, path: Path) -> int:
        w = RecordingWriter(path)
        w.write_header(url="wss://api.openai.com/v1/realtime?model=gpt-realtime", model="gpt-realtime", started=1.76e9, session_id=path.stem)
        w.write_handshake(status=101, reason="Switching Protocols", subprotocol=None, request_headers=[], response_headers=[])
        self.msgs.sort(key=lambda m: m[0])
        for t_ns, from_client, content in self.msgs:
            w.write_message(t_ns, from_client, True, content)
        last = self.msgs[-1][0] + 50_000_000
        code, reason = (1011, "server error") if self.planted else (1000, "")
        w.write_close(t_ns=last, code=code, reason=reason, closed_by="server" if self.planted else "client")
        w.close()
        return len(self.msgs)


_BASELINE = """
import sys
from rtproxy.io.format import open_recording
n = 0
for p in sys.argv[1:]:
    with open_recording(p) as r:
        for m in r.messages():
            m.head
            n += 1
print(n)
"""
# Runs a command and reports its own wall time and peak RSS (wait4). A small
# launcher, so the peak RSS is not the benchmark's own (Linux carries the
# parent's high-water mark over fork + exec).
_LAUNCH = """
import json, os, subprocess, sys, time
t0 = time.perf_counter()
with open(sys.argv[1], "wb") as out:
    p = subprocess.Popen(sys.argv[2:], stdout=out)
    _, status, ru = os.wait4(p.pid, 0)
print(json.dumps({"s": time.perf_counter() - t0, "maxrss_kib": ru.ru_maxrss, "rc": os.waitstatus_to_exitcode(status)}))
"""


def measure(cmd: list[str], ok: tuple[int, ...] = (0,)) -> tuple[float, float, str]:
    """(seconds, peak RSS MiB, stdout) of ``cmd`` run as a fresh process."""
    with tempfile.NamedTemporaryFile() as out:
        res = subprocess.run([sys.executable, "-c", _LAUNCH, out.name, *cmd], capture_output=True, text=True, cwd=ROOT)
        if res.returncode != 0:
            raise SystemExit(f"bench_diff: launcher failed: {res.stderr.strip()}")
        info = json.loads(res.stdout)
        if info["rc"] not in ok:
            raise SystemExit(f"bench_diff: {cmd[:3]} exited with {info['rc']}")
        return info["s"], info["maxrss_kib"] / 1024, Path(out.name).read_text()


def check(report: dict[str, Any], plants: dict[str, int]) -> list[str]:
    """Problems: planted differences not found, or differences reported elsewhere."""
    problems = []
    event_turns = {"transcript": plants["transcript"], "tool_args": plants["tool_args"],
                   "status": plants["status"], "error": plants["error"]}
    seen: set[int] = set()
    for e in report["events"]:
        turns = {s["turn"] for s in (e["a"], e["b"]) if s}
        if not turns & set(event_turns.values()):
            problems.append(f"unexpected {e['kind']} {e['type']} at turn {sorted(turns)}")
        seen |= turns
    for name, turn in event_turns.items():
        if turn not in seen:
            problems.append(f"planted {name} (turn {turn}) not reported")
    timing_turns = {t["turn"]["a"] for t in report["timing"]}
    if timing_turns != {plants["slow"]}:
        problems.append(f"timing reported at turns {sorted(timing_turns)}, planted at {plants['slow']}")
    fields = {c["field"] for c in report["connection"]["changes"]}
    if fields != {"close_code", "close_reason"}:
        problems.append(f"connection changes {sorted(fields)}, planted close_code and close_reason")
    return problems


def report_case(name: str, b: Run, diff_t: list[float], diff_m: list[float], base_t: list[float],
                base_m: list[float], report: dict[str, Any]) -> list[str]:
    med = statistics.median
    print(f"  diff      {name}: rtproxy diff A B --format json (exit 1): median {med(diff_t):.2f} s, "
          f"peak RSS {med(diff_m):.0f} MiB  (runs: {', '.join(f'{x:.2f}' for x in diff_t)})")
    print(f"            vs baseline: time x{med(diff_t) / med(base_t):.2f}, memory x{med(diff_m) / med(base_m):.2f}; "
          f"targets < 5 s: {'met' if med(diff_t) < 5 else 'MISSED'}, < 1 GiB: {'met' if med(diff_m) < 1024 else 'MISSED'}")
    c = report["counts"]
    print(f"            events after normalising: client {c['client']['a']:,} / {c['client']['b']:,}, "
          f"server {c['server']['a']:,} / {c['server']['b']:,}; responses {report['turns']['a']} / {report['turns']['b']}")
    print(f"            found {report['differences']} differences: {len(report['connection']['changes'])} connection, "
          f"{len(report['events'])} events, {len(report['timing'])} timing")
    by_turn: dict[int, list[str]] = {}
    for e in report["events"]:
        s = e["a"] or e["b"]
        by_turn.setdefault(s["turn"], []).append(f"{e['kind']} {e['type']}")
    for plant, turn in sorted(b.plant_turns.items(), key=lambda x: x[1]):
        what = by_turn.get(turn, []) + [f"timing {t['metric']} {t['delta_ms']:+.0f} ms" for t in report["timing"] if t["turn"]["a"] == turn]
        print(f"              planted {plant:10} turn {turn:3}: {'; '.join(what) or 'NOT FOUND'}")
    print(f"              planted close      : {[(x['field'], x['a'], x['b']) for x in report['connection']['changes']]}")
    problems = check(report, b.plant_turns)
    print("            " + ("FAIL: " + "; ".join(problems) if problems else "all planted differences found, no others reported"))
    return problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--turns", type=int, default=500, help="turns of 7.2 s (500 = one hour)")
    ap.add_argument("--keep", type=Path, help="write the recordings here and keep them")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_diff_"))
    out_dir = args.keep or tmp
    out_dir.mkdir(parents=True, exist_ok=True)
    rtproxy = str(Path(sys.executable).parent / "rtproxy")
    try:
        load = os.getloadavg()[0]
        print(f"bench_diff: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
              f"load {load:.2f}, Python {sys.version.split()[0]}")
        t0 = time.perf_counter()
        runs = {"a": Run(1, planted=False), "b": Run(2, planted=True, rechunk=False),
                "b_rechunked": Run(2, planted=True, rechunk=True)}
        paths = {}
        counts = {}
        for key, run in runs.items():
            run.session(args.turns)
            paths[key] = out_dir / f"{key}.rtrec"
            paths[key].unlink(missing_ok=True)
            counts[key] = run.write(paths[key])
            run.msgs.clear()
        print(f"  sessions  {args.turns} turns, {args.turns * TURN_MS / 3.6e6:.2f} h each, written in {time.perf_counter() - t0:.1f} s: "
              + ", ".join(f"{k} {counts[k]:,} messages ({paths[k].stat().st_size / 2**20:.0f} MiB)" for k in runs))
        print("            b: same chunking as a (a client replay of a); b_rechunked: other chunk sizes for appends and audio deltas")
        base_t: list[float] = []
        base_m: list[float] = []
        diff_t: dict[str, list[float]] = {"b": [], "b_rechunked": []}
        diff_m: dict[str, list[float]] = {"b": [], "b_rechunked": []}
        reports: dict[str, Any] = {}
        for _ in range(args.runs):
            t, m, n = measure([sys.executable, "-c", _BASELINE, str(paths["a"]), str(paths["b"])])
            assert int(n) == counts["a"] + counts["b"]
            base_t.append(t)
            base_m.append(m)
            for key in diff_t:
                t, m, out = measure([rtproxy, "diff", str(paths["a"]), str(paths[key]), "--format", "json"], ok=(1,))
                diff_t[key].append(t)
                diff_m[key].append(m)
                reports[key] = json.loads(out)
        med = statistics.median
        print(f"  baseline  read a and b (open_recording, every message): median {med(base_t):.2f} s, "
              f"peak RSS {med(base_m):.0f} MiB  (runs: {', '.join(f'{x:.2f}' for x in base_t)})")
        problems = []
        for key in diff_t:
            problems += report_case(f"a vs {key}", runs[key], diff_t[key], diff_m[key], base_t, base_m, reports[key])
        if problems:
            sys.exit(1)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
