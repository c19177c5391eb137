"""Event names of the two Realtime protocols, by side (from openai-python's types,
see ../shared/realtime-bugs.md section 4). Pure data."""

from __future__ import annotations

__all__ = ["CLIENT_TYPES", "SERVER_TYPES", "BETA_ONLY_SERVER", "GA_ONLY_SERVER", "BETA_ONLY_CLIENT"]

_BOTH_SERVER = {
    "session.created", "session.updated", "conversation.created", "conversation.item.created",
    "conversation.item.deleted", "conversation.item.retrieved", "conversation.item.truncated",
    "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.completed",
    "conversation.item.input_audio_transcription.failed",
    "input_audio_buffer.committed", "input_audio_buffer.cleared", "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped", "rate_limits.updated", "response.created", "response.done",
    "response.output_item.added", "response.output_item.done", "response.content_part.added",
    "response.content_part.done", "response.function_call_arguments.delta",
    "response.function_call_arguments.done", "output_audio_buffer.started",
    "output_audio_buffer.stopped", "output_audio_buffer.cleared", "error",
}
#: Server events only the GA protocol sends.
GA_ONLY_SERVER = frozenset({
    "response.output_audio.delta", "response.output_audio.done",
    "response.output_audio_transcript.delta", "response.output_audio_transcript.done",
    "response.output_text.delta", "response.output_text.done",
    "conversation.item.added", "conversation.item.done", "input_audio_buffer.timeout_triggered",
    "input_audio_buffer.dtmf_event_received", "conversation.item.input_audio_transcription.segment",
    "mcp_list_tools.in_progress", "mcp_list_tools.completed", "mcp_list_tools.failed",
    "response.mcp_call_arguments.delta", "response.mcp_call_arguments.done",
    "response.mcp_call.in_progress", "response.mcp_call.completed", "response.mcp_call.failed",
})
#: Server events only the beta protocol sends.
BETA_ONLY_SERVER = frozenset({
    "response.audio.delta", "response.audio.done", "response.audio_transcript.delta",
    "response.audio_transcript.done", "response.text.delta", "response.text.done",
    "transcription_session.created", "transcription_session.updated",
})
SERVER_TYPES = frozenset(_BOTH_SERVER | GA_ONLY_SERVER | BETA_ONLY_SERVER)

BETA_ONLY_CLIENT = frozenset({"transcription_session.update"})
CLIENT_TYPES = frozenset({
    "session.update", "input_audio_buffer.append", "input_audio_buffer.commit",
    "input_audio_buffer.clear", "conversation.item.create", "conversation.item.retrieve",
    "conversation.item.truncate", "conversation.item.delete", "response.create", "response.cancel",
    "output_audio_buffer.clear",
}) | BETA_ONLY_CLIENT
