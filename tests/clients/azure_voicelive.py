"""azure-ai-voicelive's async client: a voice turn, then a barge-in and a look at the item.

    python azure_voicelive.py http://127.0.0.1:8080      # connect(endpoint=...): ws://.../voice-live/realtime

session.update (RequestSession), 600 ms of audio, commit, response.create, read to
response.done; then truncate the assistant item at 200 ms and retrieve it. Voice Live
speaks the beta event names; every event goes through the SDK's typed ServerEvent models.
"""

from __future__ import annotations

import asyncio
import sys

from azure.ai.voicelive.aio import connect
from azure.ai.voicelive.models import Modality, RequestSession, ServerEvent
from azure.core.credentials import AzureKeyCredential

from _common import API_KEY, b64, report, speech


async def main(endpoint: str) -> None:
    types: list[str] = []
    async with connect(endpoint=endpoint, credential=AzureKeyCredential(API_KEY), model="gpt-realtime") as conn:

        async def until(typ: str) -> ServerEvent:
            while True:
                ev = await asyncio.wait_for(conn.recv(), 10)
                if type(ev) is ServerEvent:  # the base class: the SDK did not know the event
                    raise RuntimeError(f"untyped event {ev.get('type')}")
                types.append(ev.type)
                if ev.type == "error":
                    raise RuntimeError(f"server error: {ev.error}")
                if ev.type == typ:
                    return ev

        await until("session.created")
        await conn.session.update(session=RequestSession(
            modalities=[Modality.TEXT, Modality.AUDIO], instructions="Be brief."))
        await until("session.updated")
        pcm = speech(600)
        for i in range(0, len(pcm), 4800):
            await conn.input_audio_buffer.append(audio=b64(pcm[i : i + 4800]))
        await conn.input_audio_buffer.commit()
        await conn.response.create()
        done = await until("response.done")
        item_id = done.response.output[0].id
        await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=200)
        await until("conversation.item.truncated")
        await conn.conversation.item.retrieve(item_id=item_id)
        got = await until("conversation.item.retrieved")
    report(got.item.id == item_id, client="azure-ai-voicelive", events=len(types), item_id=item_id,
           transcript=done.response.output[0].content[0].get("transcript"))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
