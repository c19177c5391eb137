"""A local WebSocket server that answers as the OpenAI Realtime API does.

Tests, benchmarks and the sample recordings talk to this instead of the real
API. It speaks the GA protocol by default (``beta=True`` for the old event
names), keeps a log of every message it sent and received (exact bytes), and
can be varied (ids, chunking, transcript, rate limits...) so two runs of the
"same" conversation differ the way real runs do.

Run it alone::

    python tests/realtime_server.py --port 9000 [--echo]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import math
import random
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.datastructures import Headers

SPEECH_WAV = Path(__file__).parent / "data" / "speech_24k.pcm"


def speech_pcm() -> bytes:
    """Real speech (espeak-ng, 24 kHz PCM16 mono) if shipped, else a tone."""
    if SPEECH_WAV.exists():
        return SPEECH_WAV.read_bytes()
    return tone_pcm(2000)


def tone_pcm(ms: int, freq: float = 440.0, rate: int = 24000) -> bytes:
    n = rate * ms // 1000
    return b"".join(
        int(8000 * math.sin(2 * math.pi * freq * i / rate)).to_bytes(2, "little", signed=True)
        for i in range(n)
    )


@dataclass
class Scenario:
    """How the server behaves; vary fields to make a different run."""

    seed: int = 1
    beta: bool = False
    transcript: str = "Hello! How can I help you today?"
    user_transcript: str = "What is the weather like?"
    chunk_ms: int = 40
    audio_ms: int = 600
    modality: str = "audio"  # or "text"
    response_status: str = "completed"
    tool_name: str | None = None  # answer with a function call instead of audio
    tool_args: str = '{"city": "Paris"}'
    delay_first_audio_ms: int = 0
    rate_limits: bool = True
    transcription_before_response: bool = True
    close_code: int | None = None  # close after the first response.done
    close_reason: str = ""
    refuse_status: int | None = None  # refuse every upgrade with this status
    error_on_second_response: bool = False  # conversation_already_has_active_response
    echo: bool = False  # echo every message back verbatim (benchmarks)
    client_secret: str | None = None  # session.created carries client_secret {value, expires_at}
    echo_credentials: bool = False  # echo the client's key in a header, errors and refusals (as Azure does)
    # Closer to the real API, for clients that depend on it (all off by default):
    strict_ids: bool = False  # track items and calls: truncate/retrieve/delete and function_call_output
    #                           naming an unknown id get the API's error; retrieve/delete answered
    echo_metadata: bool = False  # response.create's response.metadata comes back in response.created/done
    tool_followup: bool = False  # a response.create after a function_call_output answers with audio/text
    output_content: bool = False  # assistant items hold output_audio/output_text content (GA), not audio/text
    item_events: bool = False  # output items also come as conversation.item.added (created) / .done


@dataclass
class Log:
    """What one connection saw, exact bytes/str, in order."""

    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    subprotocol: str | None = None
    received: list[str | bytes] = field(default_factory=list)
    sent: list[str | bytes] = field(default_factory=list)


class RealtimeLikeServer:
    def __init__(self, scenario: Scenario | None = None) -> None:
        self.scenario = scenario or Scenario()
        self.logs: list[Log] = []
        self._ids = itertools.count(1)
        self.rng = random.Random(self.scenario.seed)

    # ids that differ between scenarios with different seeds
    def _id(self, prefix: str) -> str:
        n = next(self._ids)
        tag = "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(10))
        return f"{prefix}_{tag}{n:04d}"

    def _name(self, ga: str) -> str:
        if not self.scenario.beta:
            return ga
        return {
            "response.output_audio.delta": "response.audio.delta",
            "response.output_audio.done": "response.audio.done",
            "response.output_audio_transcript.delta": "response.audio_transcript.delta",
            "response.output_audio_transcript.done": "response.audio_transcript.done",
            "response.output_text.delta": "response.text.delta",
            "response.output_text.done": "response.text.done",
            "conversation.item.added": "conversation.item.created",
        }.get(ga, ga)

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        sc = self.scenario
        auth = (request.headers.get_all("Authorization") or [""])[0]
        if sc.refuse_status or auth == "Bearer sk-refuse-me":
            status = sc.refuse_status or 401
            message = "Incorrect API key provided."
            if sc.echo_credentials:
                message = f"Incorrect API key provided: {auth}. Key {request.headers.get('api-key', '')} is unknown."
            body = json.dumps(
                {"error": {"type": "invalid_request_error", "code": "invalid_api_key", "message": message}}
            ).encode()
            headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            if sc.echo_credentials:
                headers["WWW-Authenticate"] = f'Bearer realm="api", error="invalid_token", token="{auth[7:]}"'
            return Response(status, HTTPStatus(status).phrase, headers, body)
        return None

    def process_response(self, conn: ServerConnection, request: Request, response: Response) -> Response:
        if self.scenario.echo_credentials and "api-key" in request.headers:
            response.headers["X-Echo-Api-Key"] = request.headers["api-key"]
        return response

    def select_subprotocol(self, conn: ServerConnection, offered: list[str]) -> str | None:
        return "realtime" if "realtime" in offered else None

    async def handler(self, ws: ServerConnection) -> None:
        log = Log(path=ws.request.path, headers=dict(ws.request.headers.raw_items()), subprotocol=ws.subprotocol)
        self.logs.append(log)
        sc = self.scenario

        async def send(msg: str | bytes | dict[str, Any]) -> None:
            if isinstance(msg, dict):
                msg = json.dumps(msg)
            log.sent.append(msg)
            await ws.send(msg)

        def ev(type_: str, **kw: Any) -> dict[str, Any]:
            return {"type": self._name(type_), "event_id": self._id("event"), **kw}

        session: dict[str, Any] = {
            "id": self._id("sess"),
            "object": "realtime.session",
            "type": "realtime",
            "model": "gpt-realtime",
            "output_modalities": [sc.modality],
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None},
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy"},
            },
            "instructions": "You are a helpful assistant.",
            "tools": [],
            "expires_at": 1700000000 + self.rng.randint(0, 10000),
        }
        if not sc.echo:
            created = session
            if sc.client_secret:
                created = {**session, "client_secret": {"value": sc.client_secret, "expires_at": 1700000600}}
            await send(ev("session.created", session=created))
        input_bytes = 0
        active_response = False
        responses = 0
        pcm = speech_pcm()
        # strict_ids / tool_followup state: the conversation's items by id, the open calls
        conv: dict[str, Any] = {"items": {}, "calls": set(), "answered_call": False}

        def not_found(code: str, message: str, param: str, cid: Any) -> dict[str, Any]:
            return ev("error", error={"type": "invalid_request_error", "code": code, "message": message,
                                      "param": param, "event_id": cid})
        try:
            async for raw in ws:
                log.received.append(raw)
                if sc.echo:
                    await send(raw)
                    continue
                if isinstance(raw, bytes):
                    await send(ev("error", error={"type": "invalid_request_error", "code": "binary_not_supported", "message": "Binary frames are not supported."}))
                    continue
                try:
                    obj = json.loads(raw)
                    typ = obj.get("type") if isinstance(obj, dict) else None
                except ValueError:
                    await send(ev("error", error={"type": "invalid_request_error", "code": "invalid_json", "message": "Invalid JSON."}))
                    continue
                cid = obj.get("event_id")
                if typ == "session.update":
                    upd = obj.get("session") or {}
                    for k, v in upd.items():
                        if k not in ("type",):
                            session[k] = v
                    await send(ev("session.updated", session=session))
                elif typ == "input_audio_buffer.append":
                    input_bytes += len(base64.b64decode(obj.get("audio", "")))
                elif typ == "input_audio_buffer.commit":
                    item_id = self._id("item")
                    await send(ev("input_audio_buffer.committed", item_id=item_id, previous_item_id=None))
                    item = {"id": item_id, "type": "message", "role": "user", "status": "completed",
                            "content": [{"type": "input_audio", "transcript": None}]}
                    conv["items"][item_id] = item
                    await send(ev("conversation.item.added", item=item, previous_item_id=None))
                    if not sc.beta:
                        await send(ev("conversation.item.done", item=item, previous_item_id=None))
                    self._pending_transcript = (item_id, sc.user_transcript)
                    if sc.transcription_before_response:
                        await self._send_user_transcript(send, ev)
                    input_bytes = 0
                elif typ == "input_audio_buffer.clear":
                    input_bytes = 0
                    await send(ev("input_audio_buffer.cleared"))
                elif typ == "conversation.item.create":
                    item = dict(obj.get("item") or {})
                    if sc.strict_ids and item.get("type") == "function_call_output" and item.get("call_id") not in conv["calls"]:
                        await send(not_found("invalid_value", f"No tool call found for function call output with call_id {item.get('call_id')}.", "item.call_id", cid))
                        continue
                    prev = obj.get("previous_item_id")
                    if sc.strict_ids and prev not in (None, "root") and prev not in conv["items"]:
                        await send(not_found("item_not_found", f"Previous item with item_id not found: {prev}", "previous_item_id", cid))
                        continue
                    item.setdefault("id", self._id("item"))
                    conv["items"][item["id"]] = item
                    if item.get("type") == "function_call_output":
                        conv["answered_call"] = True
                    await send(ev("conversation.item.added", item=item, previous_item_id=None))
                    if not sc.beta:
                        await send(ev("conversation.item.done", item=item, previous_item_id=None))
                elif sc.strict_ids and typ in ("conversation.item.truncate", "conversation.item.retrieve", "conversation.item.delete") and obj.get("item_id") not in conv["items"]:
                    if typ == "conversation.item.truncate":
                        await send(not_found("item_truncate_invalid_item_id", f"Item with item_id not found: {obj.get('item_id')}", "item_id", cid))
                    else:
                        await send(not_found("item_not_found", f"Item with item_id not found: {obj.get('item_id')}", "item_id", cid))
                elif sc.strict_ids and typ == "conversation.item.retrieve":
                    await send(ev("conversation.item.retrieved", item=conv["items"][obj["item_id"]]))
                elif sc.strict_ids and typ == "conversation.item.delete":
                    del conv["items"][obj["item_id"]]
                    await send(ev("conversation.item.deleted", item_id=obj["item_id"]))
                elif typ == "conversation.item.truncate":
                    await send(ev("conversation.item.truncated", item_id=obj.get("item_id"), content_index=0, audio_end_ms=obj.get("audio_end_ms")))
                elif typ == "response.create":
                    if active_response or (sc.error_on_second_response and responses >= 1):
                        await send(ev("error", error={"type": "invalid_request_error", "code": "conversation_already_has_active_response", "message": "Conversation already has an active response in progress.", "event_id": cid}))
                        continue
                    responses += 1
                    params = obj.get("response") if isinstance(obj.get("response"), dict) else {}
                    await self._respond(send, ev, pcm, conv=conv, metadata=params.get("metadata"))
                    if sc.close_code:
                        await ws.close(sc.close_code, sc.close_reason)
                        return
                elif typ == "response.cancel":
                    await send(ev("error", error={"type": "invalid_request_error", "code": "response_cancel_not_active", "message": "Cancellation failed: no active response found.", "event_id": cid}))
                else:
                    message = f"Invalid value: '{typ}'."
                    if sc.echo_credentials:
                        message += f" Request made with key {log.headers.get('api-key', '')}."
                    await send(ev("error", error={"type": "invalid_request_error", "code": "invalid_value", "message": message, "param": "type", "event_id": cid}))
        except websockets.ConnectionClosed:
            pass

    async def _send_user_transcript(self, send, ev) -> None:  # type: ignore[no-untyped-def]
        pending = getattr(self, "_pending_transcript", None)
        if not pending:
            return
        item_id, text = pending
        self._pending_transcript = None
        await send(ev("conversation.item.input_audio_transcription.delta", item_id=item_id, content_index=0, delta=text))
        await send(ev("conversation.item.input_audio_transcription.completed", item_id=item_id, content_index=0, transcript=text))

    async def _respond(self, send, ev, pcm: bytes, conv: dict[str, Any] | None = None, metadata: Any = None) -> None:  # type: ignore[no-untyped-def]
        sc = self.scenario
        resp_id = self._id("resp")
        item_id = self._id("item")
        resp = {"id": resp_id, "object": "realtime.response", "status": "in_progress", "output": [], "status_details": None}
        if sc.echo_metadata:
            resp["metadata"] = metadata
        await send(ev("response.created", response=resp))
        followup = False
        if conv is not None and sc.tool_followup:
            followup, conv["answered_call"] = conv["answered_call"], False
        if sc.tool_name and not followup:
            call_id = self._id("call")
            if conv is not None:
                conv["calls"].add(call_id)
            item = {"id": item_id, "type": "function_call", "status": "in_progress", "name": sc.tool_name, "call_id": call_id, "arguments": ""}
            await send(ev("response.output_item.added", response_id=resp_id, output_index=0, item=item))
            if sc.item_events:
                await send(ev("conversation.item.added", item=item, previous_item_id=None))
            args = sc.tool_args
            step = max(1, len(args) // 3)
            for i in range(0, len(args), step):
                await send(ev("response.function_call_arguments.delta", response_id=resp_id, item_id=item_id, output_index=0, call_id=call_id, delta=args[i:i + step]))
            await send(ev("response.function_call_arguments.done", response_id=resp_id, item_id=item_id, output_index=0, call_id=call_id, name=sc.tool_name, arguments=args))
            item = {**item, "status": "completed", "arguments": args}
            await send(ev("response.output_item.done", response_id=resp_id, output_index=0, item=item))
            if sc.item_events and not sc.beta:
                await send(ev("conversation.item.done", item=item, previous_item_id=None))
        else:
            item = {"id": item_id, "type": "message", "role": "assistant", "status": "in_progress", "content": []}
            await send(ev("response.output_item.added", response_id=resp_id, output_index=0, item=item))
            if sc.item_events:
                await send(ev("conversation.item.added", item=item, previous_item_id=None))
            if sc.modality == "audio":
                part = {"type": "audio", "transcript": ""}
            else:
                part = {"type": "text", "text": ""}
            await send(ev("response.content_part.added", response_id=resp_id, item_id=item_id, output_index=0, content_index=0, part=part))
            if sc.delay_first_audio_ms:
                await asyncio.sleep(sc.delay_first_audio_ms / 1000)
            words = sc.transcript.split(" ")
            if sc.modality == "audio":
                chunk = 48 * sc.chunk_ms
                total = 48 * sc.audio_ms
                audio = (pcm * (total // max(1, len(pcm)) + 1))[:total]
                n_chunks = max(1, math.ceil(total / chunk))
                for i in range(n_chunks):
                    await send(ev("response.output_audio.delta", response_id=resp_id, item_id=item_id, output_index=0, content_index=0, delta=base64.b64encode(audio[i * chunk:(i + 1) * chunk]).decode()))
                    if i < len(words):
                        d = words[i] + (" " if i < len(words) - 1 else "")
                        await send(ev("response.output_audio_transcript.delta", response_id=resp_id, item_id=item_id, output_index=0, content_index=0, delta=d))
                for j in range(n_chunks, len(words)):
                    d = words[j] + (" " if j < len(words) - 1 else "")
                    await send(ev("response.output_audio_transcript.delta", response_id=resp_id, item_id=item_id, output_index=0, content_index=0, delta=d))
                await send(ev("response.output_audio.done", response_id=resp_id, item_id=item_id, output_index=0, content_index=0))
                await send(ev("response.output_audio_transcript.done", response_id=resp_id, item_id=item_id, output_index=0, content_index=0, transcript=sc.transcript))
                part = {"type": "audio", "transcript": sc.transcript}
            else:
                for i, w in enumerate(words):
                    d = w + (" " if i < len(words) - 1 else "")
                    await send(ev("response.output_text.delta", response_id=resp_id, item_id=item_id, output_index=0, content_index=0, delta=d))
                await send(ev("response.output_text.done", response_id=resp_id, item_id=item_id, output_index=0, content_index=0, text=sc.transcript))
                part = {"type": "text", "text": sc.transcript}
            await send(ev("response.content_part.done", response_id=resp_id, item_id=item_id, output_index=0, content_index=0, part=part))
            content = part
            if sc.output_content and not sc.beta:
                content = {**part, "type": "output_" + part["type"]}
            item = {**item, "status": "completed", "content": [content]}
            await send(ev("response.output_item.done", response_id=resp_id, output_index=0, item=item))
            if sc.item_events and not sc.beta:
                await send(ev("conversation.item.done", item=item, previous_item_id=None))
        if not sc.transcription_before_response:
            await self._send_user_transcript(send, ev)
        if conv is not None:
            conv["items"][item_id] = item
        done = {**resp, "status": sc.response_status, "output": [item],
                "status_details": None if sc.response_status == "completed" else {"type": sc.response_status, "reason": "max_output_tokens" if sc.response_status == "incomplete" else "turn_detected"},
                "usage": {"total_tokens": 100 + self.rng.randint(0, 50), "input_tokens": 40, "output_tokens": 60 + self.rng.randint(0, 50)}}
        await send(ev("response.done", response=done))
        if sc.rate_limits:
            await send(ev("rate_limits.updated", rate_limits=[
                {"name": "requests", "limit": 1000, "remaining": 999 - self.rng.randint(0, 100), "reset_seconds": round(self.rng.random() * 60, 3)},
                {"name": "tokens", "limit": 50000, "remaining": 49000 - self.rng.randint(0, 1000), "reset_seconds": round(self.rng.random() * 60, 3)},
            ]))


class ServerThread:
    """Runs a :class:`RealtimeLikeServer` on 127.0.0.1 in a thread of its own."""

    def __init__(self, scenario: Scenario | None = None, port: int = 0) -> None:
        self.app = RealtimeLikeServer(scenario)
        self.port = port
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def scenario(self) -> Scenario:
        return self.app.scenario

    @property
    def logs(self) -> list[Log]:
        return self.app.logs

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = self.loop.create_future()
        async with serve(
            self.app.handler,
            "127.0.0.1",
            self.port,
            process_request=self.app.process_request,
            process_response=self.app.process_response,
            select_subprotocol=self.app.select_subprotocol,
            max_size=None,
            compression=None,
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop

    def __enter__(self) -> ServerThread:
        self.thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("realtime-like server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop and self._stop:
            self.loop.call_soon_threadsafe(self._stop.set_result, None)
        self.thread.join(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--echo", action="store_true", help="echo every message back verbatim")
    ap.add_argument("--beta", action="store_true", help="use beta event names")
    args = ap.parse_args()
    with ServerThread(Scenario(echo=args.echo, beta=args.beta), port=args.port) as srv:
        print(f"realtime-like server on ws://127.0.0.1:{srv.port}", flush=True)
        try:
            srv.thread.join()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
