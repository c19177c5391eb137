"""Hostile inputs for every reader of a recording: a generator, and a runner.

Four classes of input (``Case.cls``):

``client``
    sessions as a buggy or hostile app would send them, in valid files: rates
    that are strings, ``1e400``, lists or negative; ``audio_end_ms`` of
    ``1e308``, ``NaN`` or ``"12"``; JSON nested 10,000 deep; a lone surrogate
    as the event type; strings where numbers belong in ``response.done`` and
    ``rate_limits.updated``; audio values that are no base64 (a lone
    surrogate, a number, an object). Built with :func:`rtproxy.testing.make_recording`
    (``redact=False``); ``tests/test_hostile_inputs.py`` records some of the same
    texts for real through ``rtproxy record``.
``crafted``
    a valid container with odd records: a close ``t_ns`` that is a string, a
    header ``started`` of ``1e300`` or NaN, msgpack ext types, handshake
    headers as triples or maps, a close reason as bytes, message records with
    wrong field types, a negative ``dt``... (written with
    :class:`~rtproxy.io.format.RecordingWriter` or raw msgpack + zstandard).
``damaged``
    a good recording truncated, bit-flipped, garbage, a newer version.
``bomb``
    small files that decompress to gigabytes: one huge record, many large
    records, audio on a timeline days long; or that make a reader's work grow
    with every event (hundreds of thousands of tiny messages, of findings).

:func:`build` writes the corpus into a folder (a sample by default, every
truncation and flip with ``full=True``); :func:`run` runs one command over one
input as a real ``python -m rtproxy`` process and measures it (exit code,
stderr, wall time, max RSS via ``os.wait4``); :func:`table` prints the runs per
command and input class.

    .venv/bin/python tests/corpus.py OUT_DIR        # write the sample corpus
"""

from __future__ import annotations

import base64
import json
import math
import os
import random
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import msgpack
import zstandard

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rtproxy.io.format import FORMAT_VERSION, MAGIC, RecordingWriter  # noqa: E402
from rtproxy.testing import make_recording  # noqa: E402

MS = 1_000_000
CLASSES = ("client", "crafted", "damaged", "bomb")


@dataclass
class Case:
    """One hostile input: a name, its class, the file (a second file for diff)."""

    name: str
    cls: str
    path: Path
    note: str = ""


# ------------------------------------------------------------------ helpers
def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


PCM_100MS = bytes(range(256)) * 18 + bytes(range(192))  # 4800 bytes: 100 ms at 24 kHz
ULAW_100MS = bytes(range(0, 256, 3))[:80] * 10  # 800 bytes: 100 ms at 8 kHz


def raw_file(
    path: Path,
    records: Iterable[Any],
    *,
    version: int = FORMAT_VERSION,
    finish: bool = True,
    packer: msgpack.Packer | None = None,
) -> Path:
    """A file with the .rtrec prefix and ``records`` msgpack-packed in one zstandard frame,
    whatever they hold (the writer's checks bypassed)."""
    packer = packer or msgpack.Packer(use_bin_type=True)
    cobj = zstandard.ZstdCompressor(level=3).compressobj()
    with open(path, "wb") as fh:
        fh.write(MAGIC + struct.pack(">H", version))
        for rec in records:
            fh.write(cobj.compress(rec if isinstance(rec, (bytes, bytearray)) else packer.pack(rec)))
        fh.write(cobj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH if finish else zstandard.COMPRESSOBJ_FLUSH_BLOCK))
    return path


HEADER = {"k": "header", "format_version": 1, "rtproxy": "0.1.0", "session_id": "c0ffee", "started": 1.7e9,
          "url": "wss://api.openai.com/v1/realtime?model=gpt-realtime", "model": "gpt-realtime",
          "recorder": "tests.corpus", "upstream": None, "redactions": []}
HANDSHAKE = {"k": "handshake", "method": "GET", "url": HEADER["url"], "path": "/v1/realtime?model=gpt-realtime",
             "http_version": "HTTP/1.1", "request_headers": [["Host", "api.openai.com"]], "status": 101,
             "reason": "Switching Protocols", "response_headers": [["Upgrade", "websocket"]],
             "response_body": b"", "subprotocol": None, "extensions": None, "t_request": 1.7e9, "t_response": 1.7e9}
CLOSE = {"k": "close", "t_ns": 50 * MS, "code": 1000, "reason": "bye", "closed_by": "client", "error": None}
END = {"k": "end", "messages": {"client": 1, "server": 1}, "bytes": {"client": 10, "server": 10}, "duration_s": 0.05}


def _msg(dt: Any, flags: Any, payload: Any) -> list[Any]:
    return [dt, flags, payload]


def _ev(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


#: A short, ordinary conversation: what the crafted files carry between odd records.
NORMAL_MESSAGES = [
    _msg(MS, 0, _ev({"type": "session.created", "session": {"id": "sess_1"}})),
    _msg(MS, 1, _ev({"type": "input_audio_buffer.append", "audio": b64(PCM_100MS)})),
    _msg(MS, 1, _ev({"type": "response.create"})),
    _msg(MS, 0, _ev({"type": "response.created", "response": {"id": "resp_1"}})),
    _msg(MS, 0, _ev({"type": "response.output_audio.delta", "response_id": "resp_1", "item_id": "it_1",
                     "delta": b64(PCM_100MS)})),
    _msg(MS, 0, _ev({"type": "response.done", "response": {"id": "resp_1", "status": "completed"}})),
]


def crafted(path: Path, *, header: dict[str, Any] | None = None, handshake: dict[str, Any] | None = None,
            messages: list[Any] | None = None, close: dict[str, Any] | None = None,
            end: dict[str, Any] | None = None, extra: list[Any] | None = None, packer: msgpack.Packer | None = None,
            ) -> Path:
    """A raw file: header, handshake, messages, close, end (each overridable; None fields kept as given)."""
    recs: list[Any] = [
        {**HEADER, **(header or {})},
        {**HANDSHAKE, **(handshake or {})},
        *(NORMAL_MESSAGES if messages is None else messages),
        *(extra or []),
        {**CLOSE, **(close or {})},
        {**END, **(end or {})},
    ]
    return raw_file(path, recs, packer=packer)


# ------------------------------------------------------------ class: client
def _deep(n: int) -> str:
    return "[" * n + "]" * n


def _append(audio: bytes) -> dict[str, Any]:
    return {"type": "input_audio_buffer.append", "audio": b64(audio)}


def _delta(audio: bytes, rid: Any = "resp_1", item: Any = "item_1") -> dict[str, Any]:
    return {"type": "response.output_audio.delta", "response_id": rid, "item_id": item, "delta": b64(audio)}


#: Client-mistake texts, as an app would send them (raw JSON text: ``1e400``,
#: ``NaN`` and lone surrogates cannot come out of json.dumps).
RATES = [
    '{"type":"session.update","session":{"type":"realtime","audio":{"input":{"format":{"type":"audio/pcm","rate":"fast"}}}}}',
    '{"type":"session.update","session":{"audio":{"input":{"format":{"type":"audio/pcm","rate":1e400}},'
    '"output":{"format":{"type":"audio/pcm","rate":-24000}}}}}',
    '{"type":"session.update","session":{"audio":{"input":{"format":{"type":"audio/pcm","rate":[24000]}},'
    '"output":{"format":{"type":"audio/pcm","rate":NaN}}}}}',
    '{"type":"session.update","session":{"input_audio_format":{"rate":1},"output_audio_format":7,'
    '"audio":{"input":"pcm16","output":{"format":["audio/pcm"]}}}}',
    '{"type":"session.update","session":"pcm16"}',
    '{"type":"session.update","session":{"audio":[]}}',
    '{"type":"session.updated","session":{"audio":{"output":{"format":{"type":"audio/pcm","rate":1e-300}}}}}',
    '{"type":"session.update","session":{"audio":{"output":{"format":{"type":"audio/pcm","rate":24000.5}}}}}',
]
TRUNCATES = [
    '{"type":"conversation.item.truncate","item_id":"item_1","content_index":0,"audio_end_ms":1e308}',
    '{"type":"conversation.item.truncate","item_id":"item_1","content_index":0,"audio_end_ms":NaN}',
    '{"type":"conversation.item.truncate","item_id":"item_1","content_index":0,"audio_end_ms":"12"}',
    '{"type":"conversation.item.truncate","item_id":"item_1","content_index":0,"audio_end_ms":1e400}',
    '{"type":"conversation.item.truncate","item_id":"item_1","content_index":0,"audio_end_ms":-Infinity}',
    '{"type":"conversation.item.truncate","item_id":["item_1"],"content_index":"0","audio_end_ms":-5}',
    '{"type":"conversation.item.truncate","item_id":{"a":1},"audio_end_ms":true}',
    '{"type":"conversation.item.truncate","item_id":"item_1","audio_end_ms":123456789012345678901234567890}',
]
DEEP = [
    '{"type":"x.deep","a":' + _deep(10_000) + "}",
    '{"type":"session.update","session":' + '{"a":' * 10_000 + "1" + "}" * 10_000 + "}",
    '{"a":' * 10_000 + '{"type":"response.done"}' + "}" * 10_000,  # no type at depth 1
    _deep(10_000),
    '{"type":"response.done","response":' + _deep(5_000) + "}",
    '{"type":"error","error":{"message":' + _deep(3_000) + "}}",
]
SURROGATES = [
    '{"type": "\\ud800"}',
    '{"type":"response.output_audio_transcript.delta","response_id":"resp_1","delta":"\\udfff\\ud83d"}',
    '{"type":"error","error":{"type":"\\ud800","code":"\\udc00","message":"\\ud800 lone"}}',
    '{"type":"response.done","response":{"id":"\\ud800","status":"\\udfff"}}',
    '{"type":"conversation.item.truncate","item_id":"\\ud800","audio_end_ms":1}',
]
WRONG_TYPES = [
    '{"type":"response.created","response":"resp_1"}',
    '{"type":"response.created","response":{"id":["resp_1"]}}',
    '{"type":"response.done","response":{"id":"resp_1","status":123,"status_details":"x",'
    '"usage":{"total_tokens":"many","input_tokens":1e400,"output_tokens":NaN,"input_token_details":[1]}}}',
    '{"type":"response.done","response":{"id":"resp_2","status":{"a":1},'
    '"status_details":{"type":5,"reason":{"a":1},"error":"str"},"usage":"lots","output":"none"}}',
    '{"type":"response.done","response":{"id":"resp_3","status":"failed","status_details":{"error":{"code":[1]}},'
    '"output":[5,{"type":"message","content":"str"},{"type":"message","content":[1,{"transcript":7}]},'
    '{"type":"function_call","name":["f"],"arguments":{"a":1}}]}}',
    '{"type":"response.done","response":[1,2,3]}',
    '{"type":"rate_limits.updated","rate_limits":[{"name":5,"limit":"x","remaining":NaN,"reset_seconds":1e400}]}',
    '{"type":"rate_limits.updated","rate_limits":"none"}',
    '{"type":"rate_limits.updated","rate_limits":[null,"x",{"reset_seconds":-1e308}]}',
    '{"type":"error","error":"boom"}',
    '{"type":"error","error":{"type":["x"],"code":5,"message":{"a":1},"param":1e400,"event_id":[1]}}',
    '{"type":"error","error":{"event_id":{"nested":true}}}',
    '{"type":"response.output_audio.delta","response_id":[1],"item_id":{},"delta":"' + b64(PCM_100MS) + '"}',
    '{"type":"response.output_audio.delta","response_id":"resp_1","item_id":"item_1","delta":5}',
    '{"type":"response.output_audio_transcript.delta","response_id":"resp_1","delta":["x"]}',
    '{"type":"response.output_audio_transcript.done","response_id":"resp_1","transcript":{"t":1}}',
    '{"type":"response.function_call_arguments.done","name":5,"arguments":{"a":1},"response_id":7}',
    '{"type":"conversation.item.create","item":{"type":"message","role":["user"],"content":"hi"}}',
    '{"type":"conversation.item.create","item":"x"}',
    '{"type":"input_audio_buffer.append","audio":12}',
    '{"type":"input_audio_buffer.append","audio":"not base64 at all!!"}',
    '{"type":5}',
    '{"type":null,"event_id":7}',
    '{"type":"response.create","event_id":{"x":1},"response":{"metadata":[1e400]}}',
    '{"type":"session.created","session":{"model":["m"],"type":5}}',
    '{"type":"transcription_session.update","session":{"input_audio_format":{"type":"audio/pcm","rate":"x"}}}',
    '{"type":"x.number","n":1' + "0" * 5000 + "}",  # a 5000-digit integer: int() refuses to parse it by default
]
#: Audio values that are not base64 audio: padding wrong, lone surrogates, numbers, objects.
BAD_AUDIO = [
    '{"type":"input_audio_buffer.append","audio":"AAA"}',
    '{"type":"input_audio_buffer.append","audio":"===="}',
    '{"type":"input_audio_buffer.append","audio":"\\u00e9\\u0000\\ud800"}',  # once: diff's internal error
    '{"type":"input_audio_buffer.append","audio":"\\udc80\\udfff"}',
    '{"type":"input_audio_buffer.append","audio":null}',
    '{"type":"input_audio_buffer.append","audio":[1,2]}',
    '{"type":"input_audio_buffer.append","audio":{"x":1}}',
    '{"type":"input_audio_buffer.append","audio":1e400}',
    '{"type":"input_audio_buffer.append","audio":-1.5}',
    '{"type":"input_audio_buffer.append","audio":true}',
    '{"type":"input_audio_buffer.append","audio":"AAEC\\nAwQF"}',
    '{"type":"input_audio_buffer.append","audio":"-_-_"}',
    '{"type":"input_audio_buffer.append","audio":"AQ=="}',
    '{"type":"input_audio_buffer.append","audio":""}',
    '{"type":"input_audio_buffer.append"}',
    '{"type":"input_audio_buffer.append","audio":"AAAA","audio":5}',
    '{"type":"response.output_audio.delta","response_id":"resp_1","item_id":"item_1","delta":"AQ=="}',
    '{"type":"response.output_audio.delta","response_id":"resp_1","item_id":"item_1","delta":"\\ud800AAA"}',
    '{"type":"response.output_audio.delta","response_id":"resp_1","item_id":"item_1","delta":null}',
    '{"type":"response.output_audio.delta","response_id":"resp_1","item_id":"item_1","delta":{"a":"AAAA"}}',
    '{"type":"conversation.item.create","item":{"type":"message","role":"user","content":[{"type":"input_audio",'
    '"audio":"\\ud800"},{"type":"input_audio","audio":5},{"type":"input_audio","audio":["x"]},"str",7]}}',
    '{"type":"conversation.item.create","item":{"type":"message","role":"user","content":{"type":"input_audio",'
    '"audio":"AAAA"}}}',
]
HOSTILE_TEXT = [
    '{"type":"response.output_audio_transcript.done","response_id":"resp_1","transcript":'
    '"\\u001b[2J\\u001b]0;title\\u0007</script><script>alert(1)</script><!--"}',
    '{"type":"x\\u001b[31m<script>","text":"\\u202eevil\\u2028"}',
]


def client_sessions() -> dict[str, list[tuple[float, str, Any]]]:
    """name -> the events of a client-mistake session (make_recording triples)."""

    def seq(items: Iterable[tuple[str, Any]]) -> list[tuple[float, str, Any]]:
        return [(10.0 * i, side, ev) for i, (side, ev) in enumerate(items)]

    base_turn: list[tuple[str, Any]] = [
        ("server", {"type": "session.created", "session": {"id": "sess_1"}}),
        ("client", _append(PCM_100MS)),
        ("client", {"type": "response.create"}),
        ("server", {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}}),
        ("server", _delta(PCM_100MS)),
        ("server", _delta(ULAW_100MS)),
    ]
    out = {
        "rates": seq([base_turn[0], *(("client", t) for t in RATES), ("client", _append(PCM_100MS)),
                      ("client", _append(ULAW_100MS)), *base_turn[2:]]),
        "truncates": seq([*base_turn, *(("client", t) for t in TRUNCATES)]),
        "deep": seq([*base_turn, *(("client", t) for t in DEEP), *(("server", t) for t in DEEP)]),
        "surrogates": seq([*base_turn, *(("client", t) for t in SURROGATES), *(("server", t) for t in SURROGATES)]),
        "bad-audio": seq([*base_turn, *(("client", t) for t in BAD_AUDIO), *(("server", t) for t in BAD_AUDIO)]),
        "wrong-types": seq([*base_turn, *(("server", t) for t in WRONG_TYPES), *(("client", t) for t in WRONG_TYPES),
                            *(("server", t) for t in HOSTILE_TEXT)]),
    }
    return out


def build_client(out: Path) -> list[Case]:
    cases = []
    for name, events in client_sessions().items():
        p = make_recording(out / f"client-{name}.rtrec", events, redact=False)
        cases.append(Case(f"client-{name}", "client", p))
    return cases


# ----------------------------------------------------------- class: crafted
class _Odd:
    """Not msgpack-serialisable by default; packed as an ext type by the packer below."""


def _ext_packer() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True, default=lambda o: msgpack.ExtType(42, b"\x00\x01ext"))


def crafted_specs() -> dict[str, Callable[[Path], Path]]:
    """name -> a function writing that crafted file at a path."""
    specs: dict[str, Callable[[Path], Path]] = {
        "close-tns-string": lambda p: crafted(p, close={"t_ns": "50000000", "code": "1000", "closed_by": ["client"]}),
        "close-reason-bytes": lambda p: crafted(p, close={"reason": b"\xff\xfebye\x1b[2J", "error": b"\x00err",
                                                           "code": 1e300, "t_ns": -5}),
        "close-huge": lambda p: crafted(p, close={"t_ns": 2**64 - 1, "code": 2**40, "reason": {"a": 1},
                                                   "closed_by": "server"}),
        "close-server-odd-code": lambda p: crafted(p, close={"code": 1, "reason": "x" * 500, "closed_by": "server"}),
        "close-server-reason-surrogate": lambda p: crafted(p, close={"code": 4000, "reason": "bad \ud800 \x1b[2J",
                                                                      "closed_by": "server"},
                                                            packer=msgpack.Packer(use_bin_type=True,
                                                                                  unicode_errors="surrogatepass")),
        "close-not-a-map": lambda p: raw_file(p, [HEADER, HANDSHAKE, *NORMAL_MESSAGES, {"k": "close", "t_ns": None},
                                                  {"k": "close"}, END]),
        "header-started-1e300": lambda p: crafted(p, header={"started": 1e300, "model": 5, "url": ["x"]}),
        "header-started-nan": lambda p: crafted(p, header={"started": math.nan, "session_id": b"\xff", "model": b"m\xff"}),
        "header-started-string": lambda p: crafted(p, header={"started": "yesterday", "redactions": "all",
                                                              "stripped": 5, "format_version": "1"}),
        "header-started-negative": lambda p: crafted(p, header={"started": -1e18, "url": None, "model": None},
                                                     handshake={"t_request": "x", "t_response": math.inf}),
        "ext-types": lambda p: crafted(p, header={"started": _Odd(), "model": _Odd(), "extra": _Odd()},
                                       handshake={"status": _Odd(), "request_headers": [[_Odd(), "v"]]},
                                       close={"code": _Odd(), "reason": _Odd()}, packer=_ext_packer()),
        "ext-in-message": lambda p: crafted(p, messages=[*NORMAL_MESSAGES[:2], [MS, 0, msgpack.ExtType(1, b"x")]]),
        "timestamp-ext": lambda p: crafted(p, header={"started": msgpack.Timestamp(1700000000, 5)},
                                           packer=msgpack.Packer(use_bin_type=True, datetime=True)),
        "headers-triples": lambda p: crafted(p, handshake={"request_headers": [["a", "b", "c"], ["x"], "flat", 5,
                                                                               ["Sec-WebSocket-Protocol", 7]],
                                                           "response_headers": [["a", "b", "c"]]}),
        "headers-maps": lambda p: crafted(p, handshake={"request_headers": {"Host": "x", "n": 5},
                                                        "response_headers": {"X": ["a"], "Y": b"\xff"}}),
        "headers-bytes": lambda p: crafted(p, handshake={"request_headers": [[b"Host", b"\xffx"]],
                                                         "response_headers": [[b"X-A", b"\x00\r\nInjected: 1"]]}),
        "handshake-status-string": lambda p: crafted(p, handshake={"status": "101", "reason": 5, "subprotocol": ["r"],
                                                                   "extensions": 7}),
        "handshake-status-1e300": lambda p: crafted(p, handshake={"status": 1e300, "response_body": 5}),
        "handshake-not-map": lambda p: raw_file(p, [HEADER, {"k": "handshake", "status": None},
                                                    {"k": "handshake", "request_headers": None,
                                                     "response_headers": None}, *NORMAL_MESSAGES, CLOSE, END]),
        "handshake-missing": lambda p: raw_file(p, [HEADER, *NORMAL_MESSAGES, CLOSE, END]),
        "refused-odd": lambda p: crafted(p, handshake={"status": 401, "reason": "Unauthorized\r\nX-Injected: 1",
                                                       "response_headers": [["Content-Type", "application/json"],
                                                                            ["X-Bad", "v\r\nInjected: yes"],
                                                                            ["Bad Name", "x"], ["X-U", "é\ud800"]],
                                                       "response_body": "not bytes \ud800"},
                                         messages=[],
                                         packer=msgpack.Packer(use_bin_type=True, unicode_errors="surrogatepass")),
        "refused-status-99": lambda p: crafted(p, handshake={"status": 99, "response_body": b"x"}, messages=[]),
        "refused-status-999": lambda p: crafted(p, handshake={"status": 999, "reason": None,
                                                              "response_body": b"x" * 100}, messages=[]),
        "refused-status-1000": lambda p: crafted(p, handshake={"status": 1000}, messages=[]),
        "refused-headers-dict": lambda p: crafted(p, handshake={"status": 403, "response_headers": {"a": "b"},
                                                                "response_body": {"x": 1}}, messages=[]),
        "subprotocol-odd": lambda p: crafted(p, handshake={"subprotocol": "bad\r\nX: 1", "extensions": "permessage-deflate"}),
        "subprotocol-nonlatin": lambda p: crafted(p, handshake={"subprotocol": "réaltime\u2028"}),
        "message-wrong-types": lambda p: crafted(p, messages=[*NORMAL_MESSAGES[:2], ["1", 0, b"x"]]),
        "message-float-dt": lambda p: crafted(p, messages=[*NORMAL_MESSAGES[:2], [1.5, 0, b"x"]]),
        "message-negative-dt": lambda p: crafted(p, messages=[*NORMAL_MESSAGES[:2], [-10 * MS, 0, b'{"type":"x"}']]),
        "message-flags-string": lambda p: crafted(p, messages=[*NORMAL_MESSAGES[:2], [MS, "client", b"x"]]),
        "message-payload-str": lambda p: crafted(p, messages=[*NORMAL_MESSAGES[:2], [MS, 0, '{"type":"str"}']]),
        "message-payload-int": lambda p: crafted(p, messages=[*NORMAL_MESSAGES[:2], [MS, 0, 5]]),
        "message-payload-even-list": lambda p: crafted(p, messages=[*NORMAL_MESSAGES[:2], [MS, 0, [b"a", b"b"]]]),
        "message-payload-list-mixed": lambda p: crafted(p, messages=[*NORMAL_MESSAGES[:2], [MS, 0, [b"a", 5, b"c"]]]),
        "message-packed-bad-tag": lambda p: crafted(p, messages=[*NORMAL_MESSAGES[:2],
                                                                 [MS, 8, [b'{"delta":"', b"\x07abc", b'"}']]]),
        "message-packed-empty": lambda p: crafted(p, messages=[*NORMAL_MESSAGES[:2], [MS, 8, [b'{"a":"', b"", b'"}']]]),
        "message-two-fields": lambda p: crafted(p, messages=[*NORMAL_MESSAGES[:2], [MS, 0]]),
        "message-huge-dt": lambda p: crafted(p, messages=[
            *NORMAL_MESSAGES[:2], [2**64 - 1, 1, _ev(_append(PCM_100MS))], [2**64 - 1, 0, _ev(_delta(PCM_100MS))],
            [2**64 - 1, 1, _ev({"type": "conversation.item.truncate", "item_id": "it_1", "audio_end_ms": 50})]]),
        "message-huge-flags": lambda p: crafted(p, messages=[*NORMAL_MESSAGES[:2], [MS, 2**63, b"{}"], [MS, 255, b"x"]]),
        "message-bool-dt": lambda p: crafted(p, messages=[*NORMAL_MESSAGES[:2], [True, 0, b"x"]]),
        "message-invalid-utf8": lambda p: crafted(p, messages=[
            *NORMAL_MESSAGES[:2], [MS, 0, b'{"type":"x\xff\xfe","t":"\xed\xa0\x80"}'], [MS, 1, b"\xff" * 64],
            [MS, 0, [b'{"type":"response.output_audio.delta","delta":"', PCM_100MS, b'","x":"\xff"}']]]),
        "unknown-kinds": lambda p: crafted(p, extra=[{"k": "future", "x": 1}, {"k": 5}, {"no_k": 1}, {}]),
        "map-int-keys": lambda p: crafted(p, extra=[{1: 2, "k": "header"}],
                                          header={"extra": {1: 2}}),
        "two-headers": lambda p: raw_file(p, [HEADER, {**HEADER, "started": "x", "model": 5}, HANDSHAKE,
                                              *NORMAL_MESSAGES, CLOSE, END]),
        "header-not-first": lambda p: raw_file(p, [HANDSHAKE, HEADER, *NORMAL_MESSAGES, CLOSE, END]),
        "header-only": lambda p: raw_file(p, [HEADER]),
        "not-a-map-first": lambda p: raw_file(p, [5, "x", HEADER]),
        "end-odd": lambda p: crafted(p, end={"messages": "x", "bytes": [1], "duration_s": math.nan,
                                             "refused": "yes", "stopped": 5}),
        "end-huge-duration": lambda p: crafted(p, end={"duration_s": 1e308}, close={"t_ns": None}),
        "stripped-odd": lambda p: crafted(p, header={"stripped": [5, {"a": 1}, "audio"]}),
        "null-everything": lambda p: raw_file(p, [{"k": "header"}, {"k": "handshake"}, *NORMAL_MESSAGES,
                                                  {"k": "close"}, {"k": "end"}]),
    }
    return specs


def build_crafted(out: Path, names: Iterable[str] | None = None) -> list[Case]:
    specs = crafted_specs()
    cases = []
    for name in names or specs:
        p = specs[name](out / f"crafted-{name}.rtrec")
        cases.append(Case(f"crafted-{name}", "crafted", p))
    # Through the writer too (header fields the writer passes through as given).
    p = out / "crafted-writer-odd.rtrec"
    with RecordingWriter(p) as w:
        w.write_header(started=math.inf, url=b"wss://x\xff", model=["m"], session_id=None, redactions=None)
        w.write_handshake(status=101, request_headers=[["a", "b", "c"]], response_headers={"a": "b"},
                          subprotocol=b"realtime", reason=None)
        w.write_message(MS, False, True, _ev({"type": "session.created"}))
        w.write_message(2 * MS, True, True, _ev(_append(PCM_100MS)))
        w.write_close(t_ns="soon", code="1000", reason=b"\xff", closed_by=5, error=["x"])
    cases.append(Case("crafted-writer-odd", "crafted", p))
    return cases


# ----------------------------------------------------------- class: damaged
def base_recording(path: Path) -> Path:
    """A good, varied recording (session config, audio both ways, a truncate, an error, a close)."""
    events: list[tuple[float, str, Any]] = [
        (0, "server", {"type": "session.created", "session": {"id": "sess_1"}}),
        (5, "client", {"type": "session.update", "session": {"audio": {"output": {"format": {"type": "audio/pcmu"}}}}}),
        (10, "server", {"type": "session.updated", "session": {"audio": {"output": {"format": {"type": "audio/pcmu"}}}}}),
    ]
    t = 20.0
    for _ in range(6):
        events.append((t, "client", _append(PCM_100MS)))
        t += 100
    events += [
        (t, "client", {"type": "response.create"}),
        (t + 5, "server", {"type": "response.created", "response": {"id": "resp_1"}}),
    ]
    t += 10
    for _ in range(6):
        events.append((t, "server", _delta(ULAW_100MS)))
        events.append((t + 1, "server", {"type": "response.output_audio_transcript.delta", "response_id": "resp_1",
                                         "item_id": "item_1", "delta": "hello "}))
        t += 100
    events += [
        (t, "client", {"type": "conversation.item.truncate", "item_id": "item_1", "content_index": 0,
                       "audio_end_ms": 250}),
        (t + 5, "server", {"type": "response.done", "response": {"id": "resp_1", "status": "cancelled"}}),
        (t + 10, "client", {"type": "response.create"}),
        (t + 12, "server", {"type": "error", "error": {"type": "invalid_request_error", "code": "x"}}),
        (t + 20, "client", b"\x00\x01binary"),
    ]
    return make_recording(path, events, close=(1000, "done", "server"))


def build_damaged(out: Path, *, full: bool = False, seed: int = 1) -> list[Case]:
    base = base_recording(out / "damaged-base.rtrec")
    data = base.read_bytes()
    rng = random.Random(seed)
    cases: list[Case] = []

    def put(name: str, content: bytes, note: str = "") -> None:
        p = out / f"damaged-{name}.rtrec"
        p.write_bytes(content)
        cases.append(Case(f"damaged-{name}", "damaged", p, note))

    put("empty", b"")
    put("magic-only", MAGIC)
    put("prefix-only", MAGIC + struct.pack(">H", FORMAT_VERSION))
    put("garbage", bytes(rng.randrange(256) for _ in range(4096)))
    put("garbage-after-prefix", MAGIC + struct.pack(">H", 1) + bytes(rng.randrange(256) for _ in range(4096)))
    put("newer-version", MAGIC + struct.pack(">H", FORMAT_VERSION + 1) + data[10:])
    put("version-0", MAGIC + struct.pack(">H", 0) + data[10:])
    put("version-65535", MAGIC + struct.pack(">H", 65535) + data[10:])
    put("text-mode-mangled", data.replace(b"\r\n", b"\n"))
    put("trailing-garbage", data + b"\x00garbage" * 100)
    put("two-frames", data + data[10:])
    put("zstd-not-msgpack", MAGIC + struct.pack(">H", 1) + zstandard.ZstdCompressor().compress(b"\xc1" * 100))
    put("html-file", b"<!DOCTYPE html><html><script>alert(1)</script></html>\n" * 20)
    if full:
        cuts = list(range(0, len(data), 3))
        flips = [(pos, bit) for pos in range(10, len(data)) for bit in (0, 7)]
    else:
        cuts = sorted(rng.sample(range(11, len(data)), 6)) + [len(data) // 2, len(data) - 1]
        flips = [(rng.randrange(10, len(data)), rng.randrange(8)) for _ in range(6)]
    for c in cuts:
        put(f"cut-{c}", data[:c], f"truncated at byte {c} of {len(data)}")
    for pos, bit in flips:
        b = bytearray(data)
        b[pos] ^= 1 << bit
        put(f"flip-{pos}-{bit}", bytes(b), f"bit {bit} of byte {pos} flipped")
    return cases


# -------------------------------------------------------------- class: bomb
def _stream_bin_record(cobj: Any, fh: Any, n: int, *, head: bytes, tail: bytes = b"", byte: bytes = b"\0") -> None:
    """Write the compressed msgpack of a message whose payload is ``n`` bytes, streamed."""
    fh.write(cobj.compress(head + b"\xc6" + struct.pack(">I", n)))
    chunk = byte * (1 << 22)
    left = n
    while left:
        step = min(left, len(chunk))
        fh.write(cobj.compress(chunk[:step]))
        left -= step
    if tail:
        fh.write(cobj.compress(tail))


def bomb_file(path: Path, sizes: list[int], *, flags: int = 1, audio: bool = False) -> Path:
    """A file whose messages have payloads of ``sizes`` bytes (zeros), compressed as they stream.

    ``audio``: each payload is a text message with that much audio (``[t0, audio, t1]``).
    """
    packer = msgpack.Packer(use_bin_type=True)
    cobj = zstandard.ZstdCompressor(level=1).compressobj()
    with open(path, "wb") as fh:
        fh.write(MAGIC + struct.pack(">H", FORMAT_VERSION))
        for rec in (HEADER, HANDSHAKE):
            fh.write(cobj.compress(packer.pack(rec)))
        for n in sizes:
            if audio:
                t0 = b'{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"'
                head = b"\x93" + packer.pack(MS) + packer.pack(0) + b"\x93" + packer.pack(t0)
                _stream_bin_record(cobj, fh, n, head=head, tail=packer.pack(b'"}'))
            else:
                head = b"\x93" + packer.pack(MS) + packer.pack(flags)
                _stream_bin_record(cobj, fh, n, head=head)
        fh.write(cobj.compress(packer.pack(CLOSE)))
        fh.write(cobj.compress(packer.pack(END)))
        fh.write(cobj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))
    return path


def build_bombs(out: Path, *, full: bool = False) -> list[Case]:
    cases = []

    def add(name: str, p: Path, note: str) -> None:
        cases.append(Case(f"bomb-{name}", "bomb", p, note))

    add("one-huge-record", bomb_file(out / "bomb-one-huge-record.rtrec", [(4 << 30) - 1 - 64]),
        "one binary message of 4 GiB of zeros")
    add("many-records", bomb_file(out / "bomb-many-records.rtrec", [60 << 20] * (60 if full else 20), flags=2),
        "60 MiB binary messages, 1.2-3.6 GiB in all")
    add("many-text", bomb_file(out / "bomb-many-text.rtrec", [60 << 20] * (8 if full else 3), flags=0),
        "60 MiB text messages of NULs (6x as JSON escapes)")
    add("big-text", raw_file(out / "bomb-big-text.rtrec", [
        HEADER, HANDSHAKE,
        [MS, 1, b'{"type":"conversation.item.create","item":{"content":[{"text":"' + b"a" * (60 << 20) + b'"}]}}'],
        [MS, 0, b'{"type":"response.output_audio_transcript.done","transcript":"' + b"\\u00e9" * (10 << 20) + b'"}'],
        [MS, 0, b'{"type":"x","a":"' + b"a" * (300 << 20) + b'"}'],
        CLOSE, END]), "a 60 MiB JSON event, a 60 MiB transcript of escapes, a 300 MiB record")
    add("big-audio", bomb_file(out / "bomb-big-audio.rtrec", [60 << 20] * (12 if full else 4), audio=True),
        "60 MiB audio deltas")
    # Audio days apart: the WAV timeline would be days long.
    add("timeline-days", raw_file(out / "bomb-timeline-days.rtrec", [
        HEADER, HANDSHAKE,
        [MS, 1, _ev(_append(PCM_100MS))],
        [10**15, 0, _ev(_delta(PCM_100MS))],
        [10**15, 1, _ev(_append(PCM_100MS))],
        CLOSE | {"t_ns": 3 * 10**15}, END]), "audio 11 days apart")
    add("ulaw-audio", raw_file(out / "bomb-ulaw-audio.rtrec", [
        HEADER, HANDSHAKE,
        [MS, 0, _ev({"type": "session.updated", "session": {"audio": {"output": {"format": {"type": "audio/pcm",
                                                                                            "rate": 1000}}}}})],
        [MS, 0, [b'{"type":"response.output_audio.delta","response_id":"r","item_id":"i","delta":"',
                 b"\x01\x02" * (30 << 20), b'"}']],
        CLOSE, END]), "60 MiB of 1 kHz PCM (24x as 24 kHz PCM)")
    add("many-small", _many_small(out / "bomb-many-small.rtrec", 50_000 if not full else 500_000),
        "hundreds of thousands of tiny messages")
    add("many-findings", _many_findings(out / "bomb-many-findings.rtrec", 200_000 if full else 60_000),
        "a function call never answered in each of 200,000 responses never created: 3 findings an event")
    return cases


def _many_findings(path: Path, n: int) -> Path:
    packer = msgpack.Packer(use_bin_type=True)
    cobj = zstandard.ZstdCompressor(level=3).compressobj()
    with open(path, "wb") as fh:
        fh.write(MAGIC + struct.pack(">H", FORMAT_VERSION))
        fh.write(cobj.compress(packer.pack(HEADER) + packer.pack(HANDSHAKE)))
        for k in range(0, n, 10_000):
            fh.write(cobj.compress(b"".join(packer.pack([1000, 0, _ev(
                {"type": "response.function_call_arguments.done", "response_id": f"r{i}", "item_id": f"i{i}",
                 "call_id": f"c{i}", "name": "f", "arguments": "{}"})]) for i in range(k, min(n, k + 10_000)))))
        fh.write(cobj.compress(packer.pack(CLOSE) + packer.pack(END)))
        fh.write(cobj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))
    return path


def _many_small(path: Path, n: int) -> Path:
    packer = msgpack.Packer(use_bin_type=True)
    cobj = zstandard.ZstdCompressor(level=1).compressobj()
    one = packer.pack([1, 1, b'{"type":"response.create","event_id":"e"}'])
    with open(path, "wb") as fh:
        fh.write(MAGIC + struct.pack(">H", FORMAT_VERSION))
        fh.write(cobj.compress(packer.pack(HEADER) + packer.pack(HANDSHAKE)))
        block = one * 10_000
        for _ in range(n // 10_000):
            fh.write(cobj.compress(block))
        fh.write(cobj.compress(packer.pack(CLOSE) + packer.pack(END)))
        fh.write(cobj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))
    return path


def build(out: Path, *, full: bool = False, classes: Iterable[str] = CLASSES) -> list[Case]:
    """Write the corpus into ``out``; returns its cases."""
    out.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []
    classes = set(classes)
    if "client" in classes:
        cases += build_client(out)
    if "crafted" in classes:
        cases += build_crafted(out)
    if "damaged" in classes:
        cases += build_damaged(out, full=full)
    if "bomb" in classes:
        cases += build_bombs(out, full=full)
    return cases


# -------------------------------------------------------------------- runs
#: Every command, as argument lists; {f} is the input, {o} an output path, {ref} a good recording.
COMMANDS: dict[str, list[str]] = {
    "show": ["show", "{f}"],
    "show-json": ["show", "--json", "{f}"],
    "show-filter": ["show", "--type", "response.*", "--grep", "é", "{f}"],
    "summary": ["show", "--summary", "{f}"],
    "summary-json": ["show", "--summary", "--json", "{f}"],
    "export-html": ["export", "--format", "html", "{f}", "-o", "{o}.html"],
    "export-wav": ["export", "--format", "wav", "{f}", "-o", "{o}.wav"],
    "export-wav-split": ["export", "--format", "wav", "--split", "{f}", "-o", "{o}.wav"],
    "export-har": ["export", "--format", "har", "{f}", "-o", "{o}.har"],
    "export-jsonl": ["export", "--format", "jsonl", "{f}", "-o", "-"],
    "diff": ["diff", "{f}", "{ref}"],
    "diff-self-json": ["diff", "--format", "json", "{f}", "{f}"],
    "diff-markdown": ["diff", "--format", "markdown", "{ref}", "{f}"],
    "redact": ["redact", "--strip-audio", "--strip-text", "--strip-instructions", "{f}", "-o", "{o}.rtrec"],
    "check": ["check", "{f}"],
    "check-json": ["check", "--format", "json", "{f}"],
    "replay": ["replay", "{f}", "--listen-port", "0", "--once", "--speed", "max", "--pace", "clock"],
    "replay-client-pace": ["replay", "{f}", "--listen-port", "0", "--once", "--speed", "max", "--wait-timeout", "0.2"],
}
#: Commands run again with stdout that is not UTF-8.
ASCII_COMMANDS = ("show", "summary", "diff-markdown")


@dataclass
class Run:
    case: str
    cls: str
    command: str
    argv: list[str]
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    max_rss_kib: int = 0
    hung: bool = False
    client: str = ""
    """What the replay client saw."""

    @property
    def traceback(self) -> bool:
        return "Traceback" in self.stderr

    def problems(self, *, rss_limit_kib: int = 1 << 20) -> list[str]:
        """What is wrong with this run (empty: a clean run)."""
        out = []
        if self.hung:
            out.append(f"hung (killed after {self.seconds:.0f} s)")
        elif self.returncode not in (0, 1, 2):
            out.append(f"exit code {self.returncode}")
        if self.traceback:
            out.append("traceback on stderr")
        if self.max_rss_kib > rss_limit_kib:
            out.append(f"max RSS {self.max_rss_kib >> 10} MiB")
        if self.returncode not in (0, 1) and not self.hung:
            lines = [ln for ln in self.stderr.splitlines() if ln.strip()]
            errs = [ln for ln in lines if ln.startswith("rtproxy: error: ")]
            if len(errs) != 1 or len(lines) != 1:
                out.append("stderr is not one 'rtproxy: error:' line: " + repr(self.stderr[-600:]))
        if "UnicodeEncodeError" in self.stderr:
            out.append("UnicodeEncodeError")
        if "rtproxy: error: internal error:" in self.stderr:
            out.append("internal error (an exception behind the command line's safety net)")
        if "rtproxy: error: out of memory" in self.stderr:
            out.append("out of memory")
        return out

    def describe(self) -> str:
        return (f"{self.case} x {self.command}: rc={self.returncode} {self.seconds:.1f}s "
                f"rss={self.max_rss_kib >> 10}MiB {'; '.join(self.problems())}\n  argv: {' '.join(self.argv)}\n"
                f"  stderr: {self.stderr[-1500:]!r}\n  client: {self.client}")


def _reader(stream: Any, sink: list[bytes], limit: int = 1 << 20) -> None:
    """Keep the first and last bytes of a stream (stdout of a bomb can be gigabytes)."""
    from collections import deque

    total = 0
    tail: deque[bytes] = deque()
    tail_size = 0
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        if total < limit:
            sink.append(chunk[: limit - total])
        else:
            tail.append(chunk)
            tail_size += len(chunk)
            while tail_size - len(tail[0]) >= limit:
                tail_size -= len(tail.popleft())
        total += len(chunk)
    if tail:
        sink.append(b"\n...\n" + b"".join(tail))
    stream.close()


def run(case: Case, command: str, tmp: Path, ref: Path, *, timeout: float = 60.0,
        env_extra: dict[str, str] | None = None, tag: str = "") -> Run:
    """Run one command over one input; measures exit code, stderr, time and max RSS."""
    out = tmp / f"out-{case.name}-{command}{tag}"
    argv = [a.format(f=case.path, o=out, ref=ref) for a in COMMANDS[command]]
    r = Run(case.name, case.cls, command + tag, argv)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    env.pop("RTPROXY_DEBUG", None)
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "rtproxy", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=tmp, env=env,
                            preexec_fn=_limit_memory)
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    is_replay = command.startswith("replay")
    threads = []
    if is_replay:
        ready = threading.Event()
        port: list[int] = []
        t_out = threading.Thread(target=_replay_stdout, args=(proc.stdout, out_chunks, ready, port), daemon=True)
    else:
        t_out = threading.Thread(target=_reader, args=(proc.stdout, out_chunks), daemon=True)
    t_err = threading.Thread(target=_reader, args=(proc.stderr, err_chunks), daemon=True)
    threads = [t_out, t_err]
    for t in threads:
        t.start()
    deadline = start + timeout
    reaped: tuple[int | None, Any] = (None, None)
    if is_replay:
        while not ready.wait(0.05):
            reaped = _wait(proc, 0)  # (never proc.poll(): it would reap the child, and its rusage)
            if reaped[0] is not None or time.monotonic() > deadline:
                break
        if port:
            r.client = _replay_client(port[0], min(20.0, max(1.0, deadline - time.monotonic())))
    status, usage = reaped if reaped[0] is not None else _wait(proc, deadline)
    r.seconds = time.monotonic() - start
    if status is None:
        r.hung = True
        proc.kill()
        status, usage = _wait(proc, time.monotonic() + 30)
    for t in threads:
        t.join(10)
    r.returncode = None if status is None else os.waitstatus_to_exitcode(status)
    r.max_rss_kib = usage.ru_maxrss if usage is not None else 0
    r.stdout = b"".join(out_chunks).decode("utf-8", "replace")
    r.stderr = b"".join(err_chunks).decode("utf-8", "replace")
    return r


#: A child may map this much before it fails (a bomb must not take the test machine down).
ADDRESS_SPACE_LIMIT = 6 << 30


def _limit_memory() -> None:
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
    except (ValueError, OSError):
        pass


def _wait(proc: subprocess.Popen[bytes], deadline: float) -> tuple[int | None, Any]:
    """``os.wait4`` the child (its own rusage: max RSS) until ``deadline``."""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return status, usage
        if time.monotonic() > deadline:
            return None, None
        time.sleep(0.02)


def _replay_stdout(stream: Any, sink: list[bytes], ready: threading.Event, port: list[int]) -> None:
    import re

    buf = b""
    while True:
        line = stream.readline()
        if not line:
            break
        if len(buf) < 1 << 20:
            buf += line
        m = re.search(rb"websocket_base_url=ws://[^ ]*:(\d+)/v1", line)
        if m and not port:
            port.append(int(m.group(1)))
            ready.set()
    sink.append(buf)
    ready.set()
    stream.close()


def _replay_client(port: int, timeout: float) -> str:
    """Connect to a replay server, send a few client events, read until it closes or goes quiet."""
    import asyncio

    import websockets

    async def go() -> str:
        got = 0
        try:
            async with asyncio.timeout(timeout):
                async with websockets.connect(f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime",
                                              max_size=None, open_timeout=10, compression=None) as ws:
                    await ws.send(json.dumps({"type": "session.update", "session": {}}))
                    await ws.send(json.dumps(_append(PCM_100MS)))
                    await ws.send(json.dumps({"type": "response.create"}))
                    while True:
                        try:
                            await asyncio.wait_for(ws.recv(), 3)
                        except TimeoutError:
                            break
                        got += 1
            return f"received {got}, closed by us"
        except websockets.ConnectionClosed as exc:
            return f"received {got}, closed {exc.rcvd.code if exc.rcvd else None}"
        except websockets.InvalidStatus as exc:
            return f"upgrade refused with HTTP {exc.response.status_code}"
        except TimeoutError:
            return f"received {got}, timed out"
        except (OSError, websockets.WebSocketException) as exc:
            return f"{type(exc).__name__}: {exc}"

    return asyncio.run(go())


def run_all(cases: list[Case], tmp: Path, ref: Path, *, commands: Iterable[str] | None = None,
            workers: int = 2, timeout: float = 60.0, pick: Callable[[Case, str], bool] | None = None) -> list[Run]:
    """Every command over every case (or those ``pick`` keeps), ``workers`` at a time."""
    from concurrent.futures import ThreadPoolExecutor

    jobs: list[tuple[Case, str, dict[str, str] | None, str]] = []
    for c in cases:
        for cmd in commands or COMMANDS:
            if pick is None or pick(c, cmd):
                jobs.append((c, cmd, None, ""))
                if cmd in ASCII_COMMANDS and c.cls == "client":
                    jobs.append((c, cmd, {"PYTHONIOENCODING": "ascii"}, "@ascii"))
    # Slow ones first, so two workers finish together.
    jobs.sort(key=lambda j: (j[0].cls != "bomb", j[1].startswith("replay")))
    with ThreadPoolExecutor(workers) as ex:
        futs = [ex.submit(run, c, cmd, tmp, ref, timeout=timeout, env_extra=env, tag=tag) for c, cmd, env, tag in jobs]
        return [f.result() for f in futs]


def table(runs: list[Run]) -> str:
    """Runs per command and input class: tried / clean / traceback / hang / other problems / max RSS."""
    rows: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        rows.setdefault((r.command.split("@")[0], r.cls), []).append(r)
    lines = [f"{'command':20} {'class':8} {'tried':>6} {'clean':>6} {'trace':>6} {'hang':>5} {'other':>6} {'maxRSS':>8} {'max s':>6}"]
    for (cmd, cls), rs in sorted(rows.items(), key=lambda kv: (list(COMMANDS).index(kv[0][0]), CLASSES.index(kv[0][1]))):
        clean = sum(not r.problems() for r in rs)
        tb = sum(r.traceback for r in rs)
        hang = sum(r.hung for r in rs)
        other = sum(bool(r.problems()) and not r.traceback and not r.hung for r in rs)
        rss = max(r.max_rss_kib for r in rs) >> 10
        secs = max(r.seconds for r in rs)
        lines.append(f"{cmd:20} {cls:8} {len(rs):6} {clean:6} {tb:6} {hang:5} {other:6} {rss:6} MiB {secs:6.1f}")
    tot = len(runs)
    lines.append(f"{'all':20} {'':8} {tot:6} {sum(not r.problems() for r in runs):6} "
                 f"{sum(r.traceback for r in runs):6} {sum(r.hung for r in runs):5}")
    return "\n".join(lines)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--run", action="store_true", help="also run every command and print the table")
    ap.add_argument("--class", dest="classes", action="append", choices=CLASSES)
    ap.add_argument("--command", dest="commands", action="append", choices=list(COMMANDS))
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    cases = build(args.out, full=args.full, classes=args.classes or CLASSES)
    print(f"{len(cases)} inputs in {args.out}")
    if args.run:
        ref = base_recording(args.out / "ref.rtrec") if not (args.out / "ref.rtrec").exists() else args.out / "ref.rtrec"
        runs = run_all(cases, args.out, ref, commands=args.commands, workers=args.workers)
        print(table(runs))
        for r in runs:
            if r.problems():
                print(r.describe())


if __name__ == "__main__":
    main()
