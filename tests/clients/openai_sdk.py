"""The official `openai` Python SDK: a voice turn that ends in a tool call, answered by the app.

    python openai_sdk.py ws://127.0.0.1:8080/v1     # AsyncOpenAI(websocket_base_url=...)

session.update (with a tool), 600 ms of audio in 100 ms appends, commit, response.create;
the model calls get_weather, the app sends the function_call_output and a response.create,
and the follow-up response is read to response.done. Every server event is parsed by the SDK.
"""

from __future__ import annotations

import asyncio
import json
import sys

from openai import AsyncOpenAI

from _common import API_KEY, b64, report, speech

TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


async def main(base: str) -> None:
    client = AsyncOpenAI(api_key=API_KEY, websocket_base_url=base)
    types: list[str] = []
    async with client.realtime.connect(model="gpt-realtime") as conn:

        async def until(typ: str) -> object:
            while True:
                ev = await asyncio.wait_for(conn.recv(), 10)  # parsed into the SDK's models
                types.append(ev.type)
                if ev.type == "error":
                    raise RuntimeError(f"server error: {ev.error}")
                if ev.type == typ:
                    return ev

        await until("session.created")
        await conn.session.update(session={"type": "realtime", "instructions": "Be brief.", "tools": [TOOL]})
        await until("session.updated")
        pcm = speech(600)
        for i in range(0, len(pcm), 4800):
            await conn.input_audio_buffer.append(audio=b64(pcm[i : i + 4800]))
        await conn.input_audio_buffer.commit()
        await conn.response.create()
        call = await until("response.function_call_arguments.done")
        args = json.loads(call.arguments)  # type: ignore[attr-defined]
        await until("response.done")
        await conn.conversation.item.create(item={
            "type": "function_call_output", "call_id": call.call_id,  # type: ignore[attr-defined]
            "output": json.dumps({"city": args["city"], "temp_c": 21}),
        })
        await conn.response.create()
        done = await until("response.done")
    transcript = [c.transcript for o in done.response.output for c in (o.content or [])]  # type: ignore[attr-defined]
    report(True, client="openai-python", events=len(types), tool_args=args, transcript=transcript)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
