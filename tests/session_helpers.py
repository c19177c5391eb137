"""Recording real sessions for the export/redact/import tests.

A plain websockets client talks to the Realtime-like server through a real
`rtproxy record` process; the .rtrec it writes is what the tests read.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from pathlib import Path

import websockets

from tests.conftest import Recorder
from tests.realtime_server import Scenario, ServerThread, speech_pcm

__all__ = ["record_session", "client_conversation", "USER_AUDIO"]

#: 1.2 s of real speech the client sends, in 12 appends of 100 ms.
USER_AUDIO = speech_pcm()[: 48 * 1200]


async def client_conversation(
    ws_url: str,
    *,
    appends: int = 12,
    errors: bool = True,
    truncate_ms: int | None = 300,
    audio: bytes = USER_AUDIO,
    session: dict | None = None,
) -> None:
    """A voice turn, a second response.create racing nothing (an error), an unknown event, a truncate."""
    async with websockets.connect(
        ws_url + "/realtime?model=gpt-realtime",
        additional_headers={"Authorization": "Bearer sk-test-SECRETSECRETSECRET1234"},
        max_size=None,
        compression=None,
    ) as ws:
        async def until(typ: str) -> dict:
            while True:
                ev = json.loads(await ws.recv())
                if ev.get("type") in (typ, f"{typ}"):
                    return ev

        await until("session.created")
        await ws.send(json.dumps({"type": "session.update", "event_id": "evt_cfg",
                                  "session": session or {"type": "realtime", "instructions": "Speak like a pirate, TOPSECRETINSTRUCTION."}}))
        await until("session.updated")
        step = len(audio) // appends
        for i in range(appends):
            chunk = audio[i * step:(i + 1) * step]
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "event_id": f"evt_app{i}",
                                      "audio": base64.b64encode(chunk).decode()}))
            await asyncio.sleep(0.01)
        await ws.send(json.dumps({"type": "input_audio_buffer.commit", "event_id": "evt_commit"}))
        await ws.send(json.dumps({"type": "response.create", "event_id": "evt_rc1"}))
        done = await until("response.done")
        item_id = done["response"]["output"][0]["id"]
        if errors:
            await ws.send(json.dumps({"type": "response.create", "event_id": "evt_rc2"}))
            await until("error")
            await ws.send(json.dumps({"type": "not.a.real.event"}))
            await until("error")
        if truncate_ms is not None:
            await ws.send(json.dumps({"type": "conversation.item.truncate", "event_id": "evt_trunc",
                                      "item_id": item_id, "content_index": 0, "audio_end_ms": truncate_ms}))
            await until("conversation.item.truncated")
        await asyncio.sleep(0.05)


def record_session(out_dir: Path, scenario: Scenario | None = None, **kw: object) -> Path:
    """Run :func:`client_conversation` through `rtproxy record`; return the .rtrec path."""
    sc = scenario or Scenario(error_on_second_response=True)
    with ServerThread(sc) as srv:
        rec = Recorder(srv.url, out_dir)
        try:
            # In a thread of its own: callers may already run an event loop (playwright).
            errors: list[BaseException] = []

            def client() -> None:
                try:
                    asyncio.run(client_conversation(f"ws://127.0.0.1:{rec.port}/v1", **kw))  # type: ignore[arg-type]
                except BaseException as exc:  # noqa: BLE001 - re-raised below
                    errors.append(exc)

            t = threading.Thread(target=client)
            t.start()
            t.join(60)
            if errors:
                raise errors[0]
            files = rec.wait_files(1)
        finally:
            rec.stop()
    return files[0]
