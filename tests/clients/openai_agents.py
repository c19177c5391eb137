"""openai-agents' RealtimeRunner: a text turn whose tool call the agent loop answers itself.

    python openai_agents.py ws://127.0.0.1:8080/v1/realtime?model=gpt-realtime   # model_config={"url": ...}

The agent has a get_weather function tool; the model calls it, the runner runs the tool,
sends its output and asks for the follow-up response; the flow is complete when that
response's audio has been played and the agent's turn ended.
"""

from __future__ import annotations

import asyncio
import sys

from agents import function_tool
from agents.realtime import RealtimeAgent, RealtimeRunner

from _common import API_KEY, report

calls: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """Weather for a city."""
    calls.append(city)
    return f"21 C and sunny in {city}"


async def main(url: str) -> None:
    agent = RealtimeAgent(name="Assistant", instructions="Be brief.", tools=[get_weather])
    runner = RealtimeRunner(agent)
    session = await runner.run(
        model_config={"url": url, "api_key": API_KEY, "initial_model_settings": {"model_name": "gpt-realtime"}}
    )
    types: list[str] = []
    errors: list[str] = []
    async with session:
        await session.send_message("What is the weather in Paris?")
        async for ev in session:
            types.append(ev.type)
            if ev.type == "error":
                errors.append(str(ev.error))
            if ev.type == "agent_end" and "audio_end" in types:  # the follow-up response was played
                break
    ok = calls == ["Paris"] and "audio" in types and "audio_end" in types and not errors
    report(ok, client="openai-agents", events=len(types), tool_calls=calls, errors=errors,
           kinds=sorted(set(types)))


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(sys.argv[1]), 30))
