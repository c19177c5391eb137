"""livekit-plugins-openai without a LiveKit room: RealtimeModel.session() driven directly.

    python livekit_openai.py http://127.0.0.1:8080/v1      # RealtimeModel(base_url=...)

update_instructions, update_chat_ctx with a user message (LiveKit picks the item id and
waits for the server to echo it), generate_reply (matched to its response by the
response.metadata client_event_id the server echoes), the message's text and audio
streams read to their end, then a barge-in: truncate the assistant item at half of the
audio received, and wait for conversation.item.truncated.
"""

from __future__ import annotations

import asyncio
import sys

from livekit.agents import llm
from livekit.plugins import openai

from _common import API_KEY, report


async def read_text(msg: llm.MessageGeneration) -> str:
    return "".join([t async for t in msg.text_stream])


async def read_audio(msg: llm.MessageGeneration) -> float:
    return sum([f.duration * 1000 async for f in msg.audio_stream])


async def main(base: str) -> None:
    model = openai.realtime.RealtimeModel(base_url=base, api_key=API_KEY, model="gpt-realtime", turn_detection=None)
    sess = model.session()
    errors: list[str] = []
    server: list[dict] = []
    truncated = asyncio.Event()

    def on_server(ev: dict) -> None:
        server.append(ev)
        if ev.get("type") == "conversation.item.truncated":
            truncated.set()

    sess.on("error", lambda e: errors.append(repr(e.error)))
    sess.on("openai_server_event_received", on_server)
    try:
        await sess.update_instructions("Be brief.")
        ctx = llm.ChatContext.empty()
        ctx.add_message(role="user", content="What is the weather like?")
        await sess.update_chat_ctx(ctx)
        gen = await asyncio.wait_for(sess.generate_reply(), 10)
        text, audio_ms, message_id, modalities = "", 0.0, None, []
        async for msg in gen.message_stream:
            message_id = msg.message_id
            text, audio_ms = await asyncio.gather(read_text(msg), read_audio(msg))
            modalities = await msg.modalities
        if message_id is None:
            raise RuntimeError("no message generated")
        sess.truncate(message_id=message_id, modalities=modalities, audio_end_ms=int(audio_ms // 2))
        await asyncio.wait_for(truncated.wait(), 10)
    finally:
        await sess.aclose()
        await model.aclose()
    ok = bool(text) and audio_ms > 0 and not errors
    report(ok, client="livekit-plugins-openai", events=len(server), text=text, audio_ms=round(audio_ms),
           errors=errors, item_ids=[ev["item"]["id"] for ev in server if ev.get("type") == "conversation.item.added"])


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(sys.argv[1]), 30))
