"""File size of a 10-minute voice session: .rtrec vs raw JSON vs gzip JSONL vs
a mitmproxy flow file.

The session is synthetic but built from real speech (tests/data/speech_24k.pcm,
24 kHz PCM16 mono, espeak-ng), shaped like the GA Realtime API with server VAD:

* the client streams its microphone the whole time as
  ``input_audio_buffer.append`` chunks of 20-100 ms (random): speech segments
  (random offset and gain) while the user talks, a quiet room-noise floor
  (gaussian, sigma 10 LSB) otherwise; one ``session.update`` at the start;
* the server answers each user turn: ``input_audio_buffer.speech_started`` /
  ``speech_stopped`` / ``committed``, ``conversation.item.added`` / ``done``,
  input transcription delta / completed, ``response.created``,
  ``response.output_item.added``, ``response.content_part.added``,
  ``response.output_audio.delta`` chunks of 20-100 ms of speech interleaved with
  ``response.output_audio_transcript.delta`` words, the ``.done`` events,
  ``response.done`` with usage, ``rate_limits.updated``; ids look like the
  real ones (``event_`` + 21 random characters, ``item_...``, ``resp_...``).

Written as:

* ``.rtrec`` through rtproxy's ``RecordingWriter`` (and, as a cross-check, a
  real capture: the session replayed through ``rtproxy record``);
* raw JSON: the sum of the message texts' bytes;
* gzip -6 JSONL: one message text per line (the plain wire text), and also
  gzip -6 of ``rtproxy show --json`` output (one JSON object per message);
* a mitmproxy flow file: a real ``mitmdump -w FILE`` capture of the session
  replayed through mitmdump (client -> mitmdump -> a replaying server), both
  directions sent concurrently.

Run::

    .venv/bin/python bench/bench_size.py             # 10 minutes of session, ~1-2 minutes
    .venv/bin/python bench/bench_size.py --quick     # 2 minutes of session
    .venv/bin/python bench/bench_size.py --minutes 10 --no-capture   # files only, no proxies
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import gzip
import json
import random
import string
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (  # noqa: E402
    RTPROXY, SPEECH, connect, free_port, machine_line, mitmdump, rtproxy_record, workdir,
)

from rtproxy.io.format import RecordingWriter  # noqa: E402

RATE = 24000
BPS = 2 * RATE  # bytes per second of PCM16 mono

USER_LINES = [
    "What is the weather like in Paris tomorrow?",
    "Can you book a table for two at seven?",
    "Remind me to call my sister when I get home.",
    "How long does it take to boil an egg?",
    "Play something relaxing, maybe some jazz.",
    "What time is it in Tokyo right now?",
    "Tell me a short joke about computers.",
    "Translate good morning into Spanish, please.",
]
ASSISTANT_LINES = [
    "Tomorrow in Paris it will be mostly sunny with a high of twenty two degrees and a light breeze in the afternoon.",
    "Sure, I have booked a table for two at seven o'clock. You will get a confirmation by email shortly.",
    "Okay, I will remind you to call your sister as soon as you arrive home this evening.",
    "For a soft boiled egg, about six minutes; for a hard boiled egg, around ten to twelve minutes in boiling water.",
    "Here is a relaxing jazz playlist. Let me know if you would like something different.",
    "It is currently a quarter past nine in the evening in Tokyo.",
    "Why did the computer go to the doctor? Because it had a virus!",
    "Good morning in Spanish is buenos dias.",
]


@dataclass
class Msg:
    t: float  # seconds since the handshake
    from_client: bool
    text: str


class SessionBuilder:
    def __init__(self, seed: int, minutes: float, mic_floor: float = 10.0) -> None:
        self.rng = random.Random(seed)
        self.mic_floor = mic_floor
        self.seconds = minutes * 60
        self.pcm = array.array("h", SPEECH.read_bytes())
        self.msgs: list[Msg] = []

    # ---- helpers
    def rid(self, prefix: str) -> str:
        chars = string.ascii_letters + string.digits
        return prefix + "_" + "".join(self.rng.choice(chars) for _ in range(21))

    def speech(self, n_samples: int) -> bytes:
        """Real speech from a random offset, with a random gain (no exact repeats)."""
        out = array.array("h")
        gain = self.rng.uniform(0.6, 1.3)
        while len(out) < n_samples:
            off = self.rng.randrange(0, len(self.pcm) - RATE)
            seg = self.pcm[off:off + min(n_samples - len(out), len(self.pcm) - off)]
            out.extend(max(-32768, min(32767, int(x * gain))) for x in seg)
        return out.tobytes()

    def noise(self, n_samples: int) -> bytes:
        if not self.mic_floor:
            return bytes(2 * n_samples)  # digital silence (a gated / noise-suppressed microphone)
        g, sigma = self.rng.gauss, self.mic_floor
        return array.array("h", (int(g(0, sigma)) for _ in range(n_samples))).tobytes()

    def server(self, t: float, type_: str, **kw: object) -> None:
        ev = {"type": type_, "event_id": self.rid("event"), **kw}
        self.msgs.append(Msg(t, False, json.dumps(ev, separators=(",", ":"))))

    def client(self, t: float, obj: dict) -> None:
        self.msgs.append(Msg(t, True, json.dumps(obj, separators=(",", ":"))))

    # ---- the session
    def build(self) -> list[Msg]:
        rng = self.rng
        session = {
            "type": "realtime", "object": "realtime.session", "id": self.rid("sess"),
            "model": "gpt-realtime-2025-08-28", "output_modalities": ["audio"],
            "instructions": "You are a friendly voice assistant. Keep answers short.",
            "tools": [], "tool_choice": "auto", "max_output_tokens": "inf", "tracing": None,
            "prompt": None, "expires_at": 1763780000 + rng.randrange(3600), "include": None,
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": None,
                          "noise_reduction": None,
                          "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                             "silence_duration_ms": 500, "idle_timeout_ms": None,
                                             "create_response": True, "interrupt_response": True}},
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0},
            },
        }
        self.server(0.05, "session.created", session=session)
        upd = {"type": "realtime", "instructions": "You are a friendly voice assistant. Keep answers short.",
               "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe"}},
                         "output": {"voice": "marin"}}}
        self.client(0.06, {"type": "session.update", "session": upd})
        session["audio"]["input"]["transcription"] = {"model": "gpt-4o-mini-transcribe", "language": None,
                                                     "prompt": None}
        self.server(0.09, "session.updated", session=session)

        # Plan turns: (user speech start, end), then the assistant's answer.
        mic: list[tuple[float, float, bool]] = []  # (start, end, speech?)
        t = 0.1
        prev_item = None
        while t < self.seconds:
            gap = rng.uniform(0.6, 2.0)
            mic.append((t, t + gap, False))
            t += gap
            u = rng.uniform(1.5, 5.0)
            if t + u > self.seconds:
                mic.append((t, self.seconds, False))
                break
            mic.append((t, t + u, True))
            u_start, u_end = t, t + u
            t = u_end
            # VAD and the answer
            user_item = self.rid("item")
            self.server(u_start + 0.3, "input_audio_buffer.speech_started",
                        audio_start_ms=int(u_start * 1000) - 300, item_id=user_item)
            t_stop = u_end + 0.5
            self.server(t_stop, "input_audio_buffer.speech_stopped", audio_end_ms=int(u_end * 1000) + 500,
                        item_id=user_item)
            self.server(t_stop + 0.01, "input_audio_buffer.committed", previous_item_id=prev_item,
                        item_id=user_item)
            uitem = {"id": user_item, "type": "message", "status": "completed", "role": "user",
                     "content": [{"type": "input_audio", "transcript": None}]}
            self.server(t_stop + 0.02, "conversation.item.added", previous_item_id=prev_item, item=uitem)
            self.server(t_stop + 0.03, "conversation.item.done", previous_item_id=prev_item, item=uitem)
            resp_id, a_item = self.rid("resp"), self.rid("item")
            resp = {"object": "realtime.response", "id": resp_id, "status": "in_progress",
                    "status_details": None, "output": [], "conversation_id": "conv_" + user_item[5:],
                    "output_modalities": ["audio"], "max_output_tokens": "inf",
                    "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}},
                    "usage": None, "metadata": None}
            self.server(t_stop + 0.04, "response.created", response=resp)
            words = rng.choice(USER_LINES)
            self.server(t_stop + 0.25, "conversation.item.input_audio_transcription.delta", item_id=user_item,
                        content_index=0, delta=words)
            self.server(t_stop + 0.26, "conversation.item.input_audio_transcription.completed",
                        item_id=user_item, content_index=0, transcript=words,
                        usage={"type": "tokens", "total_tokens": 40, "input_tokens": 28,
                               "input_token_details": {"text_tokens": 0, "audio_tokens": 28},
                               "output_tokens": 12})
            aitem = {"id": a_item, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
            t0 = t_stop + 0.35
            self.server(t0, "conversation.item.added", previous_item_id=user_item, item=aitem)
            self.server(t0, "response.output_item.added", response_id=resp_id, output_index=0, item=aitem)
            self.server(t0 + 0.001, "response.content_part.added", response_id=resp_id, item_id=a_item,
                        output_index=0, content_index=0, part={"type": "audio", "transcript": ""})
            answer = rng.choice(ASSISTANT_LINES)
            a_words = answer.split(" ")
            a_secs = len(a_words) * rng.uniform(0.30, 0.40)
            audio = self.speech(int(a_secs * RATE))
            pos, i_word, ts = 0, 0, t0 + 0.002
            while pos < len(audio):
                ms = rng.randint(20, 100)
                chunk = audio[pos:pos + ms * BPS // 1000]
                pos += len(chunk)
                self.server(ts, "response.output_audio.delta", response_id=resp_id, item_id=a_item,
                            output_index=0, content_index=0, delta=base64.b64encode(chunk).decode())
                # words arrive in step with the audio (a bit ahead)
                while i_word < len(a_words) and i_word * a_secs / len(a_words) <= pos / BPS:
                    d = a_words[i_word] + (" " if i_word < len(a_words) - 1 else "")
                    self.server(ts + 0.0005, "response.output_audio_transcript.delta", response_id=resp_id,
                                item_id=a_item, output_index=0, content_index=0, delta=d)
                    i_word += 1
                ts += ms / 1000 / 3  # the API sends audio faster than real time
            while i_word < len(a_words):
                d = a_words[i_word] + (" " if i_word < len(a_words) - 1 else "")
                self.server(ts, "response.output_audio_transcript.delta", response_id=resp_id,
                            item_id=a_item, output_index=0, content_index=0, delta=d)
                i_word += 1
            self.server(ts + 0.001, "response.output_audio.done", response_id=resp_id, item_id=a_item,
                        output_index=0, content_index=0)
            self.server(ts + 0.002, "response.output_audio_transcript.done", response_id=resp_id,
                        item_id=a_item, output_index=0, content_index=0, transcript=answer)
            part = {"type": "audio", "transcript": answer}
            self.server(ts + 0.003, "response.content_part.done", response_id=resp_id, item_id=a_item,
                        output_index=0, content_index=0, part=part)
            done_item = {**aitem, "status": "completed", "content": [{"type": "output_audio", "transcript": answer}]}
            self.server(ts + 0.004, "response.output_item.done", response_id=resp_id, output_index=0,
                        item=done_item)
            self.server(ts + 0.004, "conversation.item.done", previous_item_id=user_item, item=done_item)
            in_tok, out_tok = rng.randint(200, 2000), rng.randint(50, 400)
            usage = {"total_tokens": in_tok + out_tok, "input_tokens": in_tok, "output_tokens": out_tok,
                     "input_token_details": {"text_tokens": in_tok // 3, "audio_tokens": in_tok - in_tok // 3,
                                             "image_tokens": 0, "cached_tokens": rng.randint(0, in_tok // 2),
                                             "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0,
                                                                       "image_tokens": 0}},
                     "output_token_details": {"text_tokens": out_tok // 4, "audio_tokens": out_tok - out_tok // 4}}
            self.server(ts + 0.005, "response.done",
                        response={**resp, "status": "completed", "output": [done_item], "usage": usage})
            self.server(ts + 0.006, "rate_limits.updated", rate_limits=[
                {"name": "requests", "limit": 5000, "remaining": 4999 - rng.randint(0, 50),
                 "reset_seconds": round(rng.uniform(0, 0.1), 3)},
                {"name": "tokens", "limit": 40000, "remaining": 40000 - in_tok - out_tok,
                 "reset_seconds": round(rng.uniform(0, 3), 3)},
            ])
            prev_item = a_item
            t = t0 + a_secs  # the user waits until the answer has played
            mic.append((u_end, t, False))
        # The microphone: continuous chunks of 20-100 ms over the whole session.
        mic.sort()
        tm = 0.1
        for start, end, is_speech in mic:
            tm = max(tm, start)
            while tm < end - 0.005:
                ms = min(rng.randint(20, 100), max(10, int((end - tm) * 1000)))
                n = ms * RATE // 1000
                chunk = self.speech(n) if is_speech else self.noise(n)
                tm += ms / 1000
                self.client(tm, {"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()})
        self.msgs.sort(key=lambda m: m.t)
        return self.msgs


def write_rtrec(path: Path, msgs: list[Msg], level: int | None = None) -> float:
    t0 = time.perf_counter()
    kw = {} if level is None else {"level": level}
    w = RecordingWriter(path, **kw)
    w.write_header(rtproxy="bench", session_id="bench1", started=1763780000.0,
                   url="wss://api.openai.com/v1/realtime?model=gpt-realtime", model="gpt-realtime",
                   recorder="bench_size", upstream="https://api.openai.com", redactions=[])
    w.write_handshake(method="GET", url="wss://api.openai.com/v1/realtime?model=gpt-realtime",
                      path="/v1/realtime?model=gpt-realtime", http_version="HTTP/1.1",
                      request_headers=[["Host", "api.openai.com"], ["Authorization", "<redacted by rtproxy>"]],
                      status=101, reason="Switching Protocols", response_headers=[], response_body=b"",
                      subprotocol=None, extensions=None, t_request=1763780000.0, t_response=1763780000.2)
    for m in msgs:
        w.write_message(int(m.t * 1e9), m.from_client, True, m.text.encode())
    w.write_close(t_ns=int(msgs[-1].t * 1e9) + 1000, code=1000, reason="", closed_by="client")
    w.close(duration_s=msgs[-1].t)
    return time.perf_counter() - t0


async def replay(port: int, msgs: list[Msg], proxy_port: int) -> None:
    """Send the client's messages from a client and the server's from a server,
    both directions at once, through the proxy on proxy_port."""
    import logging

    from websockets.asyncio.server import serve

    # the proxy's eager upstream connection from its start-up probe is not an error
    logging.getLogger("websockets.server").setLevel(logging.CRITICAL)

    server_msgs = [m.text for m in msgs if not m.from_client]
    client_msgs = [m.text for m in msgs if m.from_client]
    got_client = asyncio.Event()

    async def handler(ws) -> None:  # type: ignore[no-untyped-def]
        async def recv_all() -> None:
            n = 0
            async for _ in ws:
                n += 1
                if n == len(client_msgs):
                    got_client.set()
        reader = asyncio.create_task(recv_all())
        for text in server_msgs:
            await ws.send(text)
        await reader

    async with serve(handler, "127.0.0.1", port, max_size=None, compression=None, ping_interval=None):
        async with connect(f"ws://127.0.0.1:{proxy_port}/v1/realtime?model=gpt-realtime") as ws:
            async def recv_all() -> None:
                for _ in range(len(server_msgs)):
                    await ws.recv()
            reader = asyncio.create_task(recv_all())
            for text in client_msgs:
                await ws.send(text)
            await asyncio.wait_for(reader, 300)
            await asyncio.wait_for(got_client.wait(), 300)


def capture(kind: str, msgs: list[Msg], wd: Path) -> tuple[Path, float]:
    """Replay through mitmdump -w or rtproxy record; returns (file, seconds)."""
    port = free_port()
    t0 = time.perf_counter()
    if kind == "mitmdump":
        out = wd / "session.mitm"
        with mitmdump(port, wd, "-w", str(out)) as t:
            asyncio.run(replay(port, msgs, t.port))
            time.sleep(0.5)
    else:
        out_dir = wd / "captured"
        with rtproxy_record(port, wd, out_dir) as t:
            asyncio.run(replay(port, msgs, t.port))
            time.sleep(0.5)
        out = next(out_dir.glob("*.rtrec"))
    return out, time.perf_counter() - t0


# ---- what-if: audio transforms the .rtrec writer could apply (not the current format)
def _delta16(b: bytes) -> bytes:
    """Lane-wise x[i] - x[i-1] (mod 2**16) over little-endian 16-bit samples, in C
    speed big-integer arithmetic (SWAR subtraction: no borrow crosses a lane)."""
    n = len(b) // 2 * 2
    if not n:
        return b
    bits = n * 8
    mask = (1 << bits) - 1
    x = int.from_bytes(b[:n], "little")
    y = (x << 16) & mask
    h = int.from_bytes(b"\x00\x80" * (n // 2), "little")
    d = ((x | h) - (y & (mask ^ h))) ^ ((x ^ (mask ^ y)) & h)
    return d.to_bytes(n, "little") + b[n:]


def _planes(b: bytes) -> bytes:
    """Low bytes of every sample, then high bytes (an odd last byte stays last)."""
    n = len(b) // 2 * 2
    return b[0:n:2] + b[1:n:2] + b[n:]


def _unplanes(b: bytes) -> bytes:
    n = len(b) // 2 * 2
    out = bytearray(len(b))
    out[0:n:2] = b[: n // 2]
    out[1:n:2] = b[n // 2 : n]
    out[n:] = b[n:]
    return bytes(out)


def _add16(x: int, y: int, h: int, mask: int) -> int:
    """Lane-wise (x + y) mod 2**16 (SWAR addition: no carry crosses a lane)."""
    return ((x & (mask ^ h)) + (y & (mask ^ h))) ^ ((x ^ y) & h)


def _undelta16(d: bytes, block: int = 1 << 15) -> bytes:
    """Inverse of :func:`_delta16`: a prefix sum per 32 KiB block (doubling steps),
    plus the previous block's last sample."""
    n = len(d) // 2 * 2
    out, carry = [], 0
    for s in range(0, n, block):
        blk = d[s:min(n, s + block)]
        m = len(blk)
        bits, mask = m * 8, (1 << (m * 8)) - 1
        h = int.from_bytes(b"\x00\x80" * (m // 2), "little")
        x = int.from_bytes(blk, "little")
        sh = 16
        while sh < bits:
            x = _add16(x, (x << sh) & mask, h, mask)
            sh *= 2
        if carry:
            x = _add16(x, int.from_bytes(carry.to_bytes(2, "little") * (m // 2), "little"), h, mask)
        bb = x.to_bytes(m, "little")
        carry = int.from_bytes(bb[-2:], "little")
        out.append(bb)
    return b"".join(out) + d[n:]


#: name -> (encode, decode); what_if checks that decode(encode(audio)) == audio.
TRANSFORMS = {
    "as stored now": None,
    "byte planes": (_planes, _unplanes),
    "delta + byte planes": (lambda b: _planes(_delta16(b)), lambda b: _undelta16(_unplanes(b))),
}


def what_if(msgs: list[Msg], level: int, transform) -> int:  # type: ignore[no-untyped-def]
    """Size of the message records compressed as RecordingWriter does (one
    zstandard block flush per record), with audio parts transformed."""
    import msgpack
    import zstandard

    from rtproxy.io.format import split_base64_audio

    cobj = zstandard.ZstdCompressor(level=level).compressobj()
    pack = msgpack.Packer(use_bin_type=True).pack
    total, last = 0, 0
    for m in msgs:
        content = m.text.encode()
        payload = split_base64_audio(content) or content
        if transform and isinstance(payload, list):
            encode, decode = transform
            coded = [p if i % 2 == 0 else encode(p) for i, p in enumerate(payload)]
            if [p if i % 2 == 0 else decode(p) for i, p in enumerate(coded)] != payload:
                raise AssertionError("audio transform is not lossless")
            payload = coded
        t = int(m.t * 1e9)
        total += len(cobj.compress(pack([t - last, int(m.from_client), payload])))
        total += len(cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
        last = t
    return total


def check_flow_file(path: Path, n: int) -> int:
    from mitmproxy import io

    with open(path, "rb") as f:
        flows = list(io.FlowReader(f).stream())
    ws_msgs = sum(len(fl.websocket.messages) for fl in flows if getattr(fl, "websocket", None))
    if ws_msgs != n:
        raise RuntimeError(f"{path}: {ws_msgs} WebSocket messages in the flow file, expected {n}")
    return ws_msgs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a 2-minute session")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-capture", action="store_true", help="skip the mitmdump / rtproxy record captures")
    ap.add_argument("--mic-floor", type=float, default=10.0,
                    help="sigma (LSB) of the microphone's noise floor between user turns; 0: digital silence")
    ap.add_argument("--no-what-if", action="store_true", help="skip the audio-transform what-if table")
    args = ap.parse_args()
    if args.quick:
        args.minutes = 2.0

    print(machine_line())
    t0 = time.perf_counter()
    msgs = SessionBuilder(args.seed, args.minutes, args.mic_floor).build()
    n_client = sum(m.from_client for m in msgs)
    raw = sum(len(m.text.encode()) for m in msgs)
    print(f"session: {args.minutes:g} min, mic noise floor sigma {args.mic_floor:g} LSB, {len(msgs):,} messages ({n_client:,} from client, "
          f"{len(msgs) - n_client:,} from server), built in {time.perf_counter() - t0:.1f} s")

    rows: list[tuple[str, int, str]] = [("raw JSON text (sum of message bytes)", raw, "")]
    with workdir() as wd:
        # gzip -6 JSONL, plain message text per line
        jsonl = "".join(m.text + "\n" for m in msgs).encode()
        gz = gzip.compress(jsonl, compresslevel=6, mtime=0)
        rows.append(("gzip -6 JSONL (message text per line)", len(gz), "baseline"))

        rt = wd / "session.rtrec"
        secs = write_rtrec(rt, msgs)
        rows.append((".rtrec (RecordingWriter)", rt.stat().st_size, f"written in {secs:.1f} s"))

        show = subprocess.run([RTPROXY, "show", "--json", str(rt)], capture_output=True, check=True).stdout
        rows.append(("gzip -6 of `rtproxy show --json`", len(gzip.compress(show, 6, mtime=0)),
                     f"uncompressed {len(show):,} B"))

        if not args.no_capture:
            flow, secs = capture("mitmdump", msgs, wd)
            check_flow_file(flow, len(msgs))
            rows.append(("mitmproxy flow file (mitmdump -w)", flow.stat().st_size,
                         f"real capture, {secs:.0f} s"))
            rec, secs = capture("rtproxy", msgs, wd)
            rows.append((".rtrec (real rtproxy record capture)", rec.stat().st_size,
                         f"real capture, {secs:.0f} s"))

    base = rows[1][1]
    print()
    print(f"{'format':<42}{'bytes':>15}{'x gzip JSONL':>14}  note")
    for name, size, note in rows:
        print(f"{name:<42}{size:>15,}{size / base:>14.3f}  {note}")
    rtrec = rows[2][1]
    print(f"\ntarget: .rtrec <= 0.75 x gzip JSONL -> {rtrec / base:.3f} "
          f"({'met' if rtrec / base <= 0.75 else 'NOT met'})")

    if not args.no_what_if:
        print("\nwhat-if (NOT the current format): message records compressed as the writer does,")
        print("with the decoded audio parts transformed losslessly before zstandard")
        print("(each part checked to decode back exactly); x gzip JSONL")
        levels = (3, 6, 9)
        print(f"{'audio parts':<24}" + "".join(f"{'zstd -' + str(lv):>12}" for lv in levels))
        for name, tf in TRANSFORMS.items():
            cells = []
            for lv in levels:
                cells.append(f"{what_if(msgs, lv, tf) / base:>12.3f}")
            print(f"{name:<24}" + "".join(cells))


if __name__ == "__main__":
    main()
