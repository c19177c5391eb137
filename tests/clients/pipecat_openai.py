"""pipecat's OpenAIRealtimeLLMService in a minimal pipeline (no transport, no audio devices).

    python pipecat_openai.py ws://127.0.0.1:8080/v1/realtime    # OpenAIRealtimeLLMService(base_url=...)

user aggregator -> the realtime service -> a sink -> assistant aggregator. An LLMRunFrame
sends the context (a user message and a get_weather tool); the model calls the tool,
pipecat runs the registered handler, sends the function_call_output and asks for the
follow-up response, whose audio arrives as TTSAudioRawFrames. The flow is complete when
that response has ended; then the pipeline is ended with an EndFrame.
"""

from __future__ import annotations

import asyncio
import sys

from loguru import logger

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    FunctionCallResultFrame,
    LLMFullResponseEndFrame,
    LLMRunFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.llm_service import FunctionCallParams
from pipecat.services.openai.realtime.events import SessionProperties
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
from pipecat.workers.runner import WorkerRunner

from _common import API_KEY, report

logger.remove()
logger.add(sys.stderr, level="WARNING")


class Sink(FrameProcessor):
    """Watches what the service pushes downstream; sets `done` after the follow-up response."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_bytes = 0
        self.responses_ended = 0
        self.tool_results = 0
        self.errors: list[str] = []
        self.done = asyncio.Event()

    async def process_frame(self, frame, direction: FrameDirection) -> None:  # type: ignore[no-untyped-def]
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.audio_bytes += len(frame.audio)
        elif isinstance(frame, FunctionCallResultFrame):
            self.tool_results += 1
        elif isinstance(frame, LLMFullResponseEndFrame):
            self.responses_ended += 1
            if self.tool_results and self.audio_bytes:
                self.done.set()
        elif isinstance(frame, ErrorFrame):
            self.errors.append(str(frame.error))
        await self.push_frame(frame, direction)


async def main(url: str) -> None:
    calls: list[dict] = []

    async def get_weather(params: FunctionCallParams) -> None:
        calls.append(dict(params.arguments))
        await params.result_callback({"city": params.arguments.get("city"), "temp_c": 21})

    tools = ToolsSchema(standard_tools=[FunctionSchema(
        name="get_weather", description="Weather for a city.",
        properties={"city": {"type": "string"}}, required=["city"])])
    # The tools go in the service's session properties, not the context: the first
    # session.update (sent on connect) then carries them whether or not the context has
    # reached the service by then, so the client side is the same from run to run.
    llm = OpenAIRealtimeLLMService(
        api_key=API_KEY, base_url=url,
        settings=OpenAIRealtimeLLMService.Settings(
            model="gpt-realtime", session_properties=SessionProperties(tools=tools)),
    )
    llm.register_function("get_weather", get_weather)
    context = LLMContext(messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    pair = LLMContextAggregatorPair(context)
    sink = Sink()
    worker = PipelineWorker(Pipeline([pair.user(), llm, sink, pair.assistant()]),
                            params=PipelineParams(), enable_rtvi=False, cancel_on_idle_timeout=False)
    runner = WorkerRunner(handle_sigint=False)

    async def drive() -> None:
        await worker.queue_frame(LLMRunFrame())
        try:
            await asyncio.wait_for(sink.done.wait(), 15)
        finally:
            await worker.queue_frame(EndFrame())

    await runner.add_workers(worker)
    results = await asyncio.gather(runner.run(), drive(), return_exceptions=True)
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    ok = sink.done.is_set() and calls == [{"city": "Paris"}] and not sink.errors and not failures
    report(ok, client="pipecat-ai", tool_calls=calls, audio_bytes=sink.audio_bytes,
           responses_ended=sink.responses_ended, errors=sink.errors + failures)


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(sys.argv[1]), 30))
