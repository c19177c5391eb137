"""Re-create the sample recordings in recordings/.

Each is a real session recorded through `rtproxy record`: the official openai
SDK talks to the local Realtime-like server in tests/ through the proxy, with
real speech (tests/data/speech_24k.pcm) sent in 100 ms appends and a fake API
key (the recorder strips it anyway).

- sample-voice-turn.rtrec: the user's turn; the assistant answers with audio
  and a transcript; the user barges in and the client truncates the
  assistant's audio. `rtproxy check` finds nothing in it.
- sample-unanswered-tool-call.rtrec: the user asks for the weather, the model
  calls get_weather, and the app never answers the call (no
  function_call_output, no response.create): the user waits in silence and
  hangs up. `rtproxy check` reports it (RT007).

::

    .venv/bin/python scripts/make_sample.py                        # both
    .venv/bin/python scripts/make_sample.py unanswered-tool-call   # one
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Awaitable, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from openai import AsyncOpenAI  # noqa: E402

from tests.conftest import free_port, wait_port  # noqa: E402
from tests.realtime_server import Scenario, ServerThread, speech_pcm  # noqa: E402

FAKE_KEY = "sk-sample-not-a-real-key-0000000000"


async def _speak(conn, pcm: bytes) -> None:  # type: ignore[no-untyped-def]
    """Stream ``pcm`` in 100 ms appends at real time, then commit."""
    for i in range(0, len(pcm), 4800):
        await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + 4800]).decode())
        await asyncio.sleep(0.1)
    await conn.input_audio_buffer.commit()


async def voice_turn(ws_base: str) -> None:
    client = AsyncOpenAI(api_key=FAKE_KEY, websocket_base_url=ws_base)
    pcm = speech_pcm()[: 48 * 3000]  # 3 s of the user speaking
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "instructions": "You are a friendly booking assistant. Keep answers short.",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}},
            }
        )
        await _speak(conn, pcm)
        await conn.response.create()
        item_id = None
        received_ms = 0.0
        async for ev in conn:
            if ev.type == "response.output_audio.delta":
                item_id = ev.item_id
                received_ms += len(base64.b64decode(ev.delta)) / 48
            if ev.type == "response.done":
                break
        # The user talks over the assistant: the client truncates what was played.
        await conn.conversation.item.truncate(
            item_id=item_id or "", content_index=0, audio_end_ms=int(received_ms * 0.6)
        )
        async for ev in conn:
            if ev.type == "conversation.item.truncated":
                break


async def unanswered_tool_call(ws_base: str) -> None:
    client = AsyncOpenAI(api_key=FAKE_KEY, websocket_base_url=ws_base)
    pcm = speech_pcm()[: 48 * 2000]  # 2 s of the user speaking
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "instructions": "You are a weather assistant. Use get_weather for any question about the weather.",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}},
                "tools": [{
                    "type": "function",
                    "name": "get_weather",
                    "description": "The current weather in a city.",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                   "required": ["city"]},
                }],
            }
        )
        await _speak(conn, pcm)
        await conn.response.create()
        async for ev in conn:
            # The bug: the app looks for output items of type "function" (it is
            # "function_call"), so the call is never run nor answered, and no
            # response.create follows.
            if ev.type == "response.output_item.done" and ev.item.type == "function":
                output = '{"city": "Paris", "temperature_c": 18, "sky": "cloudy"}'
                await conn.conversation.item.create(
                    item={"type": "function_call_output", "call_id": ev.item.call_id, "output": output})
                await conn.response.create()
            if ev.type == "response.done":
                break
        # The user waits for an answer that never comes, then hangs up.
        await asyncio.sleep(3.0)


#: name -> (file, the server's behaviour, the client's side of the session)
SAMPLES: dict[str, tuple[str, Scenario, Callable[[str], Awaitable[None]]]] = {
    "voice-turn": ("sample-voice-turn.rtrec", Scenario(seed=7, audio_ms=2000, chunk_ms=60), voice_turn),
    "unanswered-tool-call": (
        "sample-unanswered-tool-call.rtrec",
        Scenario(seed=11, tool_name="get_weather", tool_args='{"city": "Paris"}', strict_ids=True,
                 tool_followup=True, item_events=True, output_content=True),
        unanswered_tool_call,
    ),
}


def record(scenario: Scenario, conversation: Callable[[str], Awaitable[None]], out: Path) -> None:
    """Run ``conversation`` through `rtproxy record` in front of the local server; copy the recording to ``out``."""
    with ServerThread(scenario) as srv, tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "rtproxy", "record", "--listen-port", str(port),
             "--upstream", srv.url, "--out-dir", tmp],
            cwd=ROOT,
        )
        try:
            wait_port(port, proc=proc)
            asyncio.run(conversation(f"ws://127.0.0.1:{port}/v1"))
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(20)
        (rec,) = Path(tmp).glob("*.rtrec")
        out.parent.mkdir(exist_ok=True)
        shutil.copyfile(rec, out)
    print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size:,} B)")


def main(names: list[str]) -> None:
    unknown = [n for n in names if n not in SAMPLES]
    if unknown:
        sys.exit(f"unknown sample {', '.join(unknown)}; known: {', '.join(SAMPLES)}")
    for name in names or list(SAMPLES):
        file, scenario, conversation = SAMPLES[name]
        record(scenario, conversation, ROOT / "recordings" / file)


if __name__ == "__main__":
    main(sys.argv[1:])
