"""Re-create recordings/sample-voice-turn.rtrec.

Records a real session through `rtproxy record`: the official openai SDK talks
to the local Realtime-like server in tests/ through the proxy. The user's turn
is real speech (tests/data/speech_24k.pcm) sent in 100 ms appends; the
assistant answers with audio and a transcript; the user barges in and the
client truncates the assistant's audio.

    .venv/bin/python scripts/make_sample.py
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from openai import AsyncOpenAI  # noqa: E402

from tests.conftest import free_port, wait_port  # noqa: E402
from tests.realtime_server import Scenario, ServerThread, speech_pcm  # noqa: E402

OUT = ROOT / "recordings" / "sample-voice-turn.rtrec"


async def conversation(ws_base: str) -> None:
    client = AsyncOpenAI(api_key="sk-sample-not-a-real-key-0000000000", websocket_base_url=ws_base)
    pcm = speech_pcm()[: 48 * 3000]  # 3 s of the user speaking
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(
            session={
                "type": "realtime",
                "instructions": "You are a friendly booking assistant. Keep answers short.",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}},
            }
        )
        for i in range(0, len(pcm), 4800):
            await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + 4800]).decode())
            await asyncio.sleep(0.1)
        await conn.input_audio_buffer.commit()
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


def main() -> None:
    scenario = Scenario(seed=7, audio_ms=2000, chunk_ms=60)
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
        OUT.parent.mkdir(exist_ok=True)
        shutil.copyfile(rec, OUT)
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size:,} B)")


if __name__ == "__main__":
    main()
