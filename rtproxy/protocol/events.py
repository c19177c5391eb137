"""What rtproxy knows about the Realtime protocol: event names, audio, formats.

Pure functions on bytes and dicts; no I/O. See ``../shared/PROTOCOL.md`` in the
project's history for the facts collected here.
"""

from __future__ import annotations

import json
import json.scanner
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rtproxy.protocol.formats import AudioFormat, audio_format_from_session

__all__ = [
    "shown_type",
    "BETA_TO_GA",
    "GA_TO_BETA",
    "CLIENT_EVENTS",
    "SERVER_EVENTS",
    "SERVER_EVENTS_BOTH",
    "GA_ONLY_SERVER_EVENTS",
    "BETA_ONLY_SERVER_EVENTS",
    "BETA_ONLY_CLIENT_EVENTS",
    "ID_FIELDS",
    "VOLATILE_FIELDS",
    "ITEM_REFERENCING_CLIENT_EVENTS",
    "AUDIO_MEMBERS",
    "AUDIO_DELTA_EVENTS",
    "AUDIO_DONE_EVENTS",
    "TRANSCRIPT_DELTA_EVENTS",
    "TRANSCRIPT_DONE_EVENTS",
    "TEXT_DELTA_EVENTS",
    "TEXT_DONE_EVENTS",
    "FUNCTION_ARGUMENTS_DELTA_EVENTS",
    "INPUT_TRANSCRIPT_EVENTS",
    "MAX_DEPTH",
    "dialect",
    "is_known",
    "too_deep",
    "canonical_event_type",
    "event_type",
    "parse_event",
    "parse_json",
    "INVALID",
    "model_from_url",
    "ws_url",
    "AudioFormat",
    "audio_format_from_session",
]

#: Server events renamed between the beta and the GA protocol.
BETA_TO_GA: dict[str, str] = {
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "conversation.item.created": "conversation.item.added",
}
GA_TO_BETA = {v: k for k, v in BETA_TO_GA.items()}

# --------------------------------------------------------------- catalogue
# Every event name of the two protocols, by side (openai-python's types and
# ../shared/PROTOCOL.md). Other modules use these groups; none spells a name
# that belongs to one.

#: Server events both protocols send under the same name.
SERVER_EVENTS_BOTH = frozenset(
    {
        "session.created", "session.updated", "conversation.created",
        "conversation.item.created", "conversation.item.deleted", "conversation.item.retrieved",
        "conversation.item.truncated",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.failed",
        "input_audio_buffer.committed", "input_audio_buffer.cleared",
        "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
        "rate_limits.updated", "response.created", "response.done",
        "response.output_item.added", "response.output_item.done",
        "response.content_part.added", "response.content_part.done",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "output_audio_buffer.started", "output_audio_buffer.stopped", "output_audio_buffer.cleared",
        "error",
    }
)
#: Server events only the GA protocol sends.
GA_ONLY_SERVER_EVENTS = frozenset(
    {
        "response.output_audio.delta", "response.output_audio.done",
        "response.output_audio_transcript.delta", "response.output_audio_transcript.done",
        "response.output_text.delta", "response.output_text.done",
        "conversation.item.added", "conversation.item.done",
        "input_audio_buffer.timeout_triggered", "input_audio_buffer.dtmf_event_received",
        "conversation.item.input_audio_transcription.segment",
        "mcp_list_tools.in_progress", "mcp_list_tools.completed", "mcp_list_tools.failed",
        "response.mcp_call_arguments.delta", "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress", "response.mcp_call.completed", "response.mcp_call.failed",
    }
)
#: Server events only the beta protocol sends.
BETA_ONLY_SERVER_EVENTS = frozenset(
    {
        "response.audio.delta", "response.audio.done", "response.audio_transcript.delta",
        "response.audio_transcript.done", "response.text.delta", "response.text.done",
        "transcription_session.created", "transcription_session.updated",
    }
)
SERVER_EVENTS = SERVER_EVENTS_BOTH | GA_ONLY_SERVER_EVENTS | BETA_ONLY_SERVER_EVENTS
#: Client events only the beta protocol defines.
BETA_ONLY_CLIENT_EVENTS = frozenset({"transcription_session.update"})
CLIENT_EVENTS = frozenset(
    {
        "session.update", "input_audio_buffer.append", "input_audio_buffer.commit",
        "input_audio_buffer.clear", "conversation.item.create", "conversation.item.retrieve",
        "conversation.item.truncate", "conversation.item.delete", "response.create",
        "response.cancel", "output_audio_buffer.clear",
    }
) | BETA_ONLY_CLIENT_EVENTS

#: Members that hold ids: they differ between two runs of the same conversation.
ID_FIELDS = frozenset(
    {"event_id", "item_id", "previous_item_id", "response_id", "call_id", "id", "conversation_id"}
)
#: Members whose values are noise between runs (time, quota, token counts).
VOLATILE_FIELDS = frozenset({"expires_at", "rate_limits", "usage"})
#: Client events whose ``item_id`` (or ``call_id``) names something the server assigned.
ITEM_REFERENCING_CLIENT_EVENTS = frozenset(
    {"conversation.item.truncate", "conversation.item.retrieve", "conversation.item.delete"}
)


def dialect(event_type: str | None) -> str | None:
    """``"beta"`` or ``"ga"`` when the name belongs to one protocol only, else None."""
    if event_type in BETA_ONLY_SERVER_EVENTS or event_type in BETA_ONLY_CLIENT_EVENTS:
        return "beta"
    if event_type in GA_ONLY_SERVER_EVENTS:
        return "ga"
    return None


def is_known(event_type: str | None, from_client: bool) -> bool:
    """Whether either protocol defines this event for that side."""
    return event_type in (CLIENT_EVENTS if from_client else SERVER_EVENTS)


AUDIO_DELTA_EVENTS = frozenset({"response.audio.delta", "response.output_audio.delta"})
TRANSCRIPT_DELTA_EVENTS = frozenset(
    {"response.audio_transcript.delta", "response.output_audio_transcript.delta"}
)
TEXT_DELTA_EVENTS = frozenset({"response.text.delta", "response.output_text.delta"})
FUNCTION_ARGUMENTS_DELTA_EVENTS = frozenset(
    {"response.function_call_arguments.delta", "response.mcp_call_arguments.delta"}
)
AUDIO_DONE_EVENTS = frozenset({"response.audio.done", "response.output_audio.done"})
TRANSCRIPT_DONE_EVENTS = frozenset({"response.audio_transcript.done", "response.output_audio_transcript.done"})
TEXT_DONE_EVENTS = frozenset({"response.text.done", "response.output_text.done"})
#: Audio inside events: (event type, member holding base64 audio).
AUDIO_MEMBERS = (
    ("input_audio_buffer.append", "audio"),
    ("response.audio.delta", "delta"),
    ("response.output_audio.delta", "delta"),
    ("conversation.item.create", "item.content[].audio"),
    ("conversation.item.retrieved", "item.content[].audio"),
)
INPUT_TRANSCRIPT_EVENTS = frozenset(
    {
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
    }
)


def canonical_event_type(name: str | None) -> str | None:
    """The GA name for a beta event name (others unchanged)."""
    if name is None:
        return None
    return BETA_TO_GA.get(name, name)


#: Characters of an event type shown in a timeline or a finding (the protocol's longest is 52).
SHOWN_TYPE_CHARS = 120


def shown_type(name: str) -> str:
    """An event type as printed: a crafted 10 KB name is cut to :data:`SHOWN_TYPE_CHARS` with "…"."""
    return name if len(name) <= SHOWN_TYPE_CHARS else name[: SHOWN_TYPE_CHARS - 1] + "\u2026"


# The type member is near the start of every event; a regex on the first bytes
# avoids parsing a 15 MiB JSON document to learn its name.
# (Unrolled and possessive: a name left open within the first bytes fails at once.)
_TYPE_RE = re.compile(rb'"type"\s*+:\s*+"([^"\\]*+(?:\\.[^"\\]*+)*+)"')


#: The names already decoded (a session has a few dozen): decoding the JSON string
#: of each message's type again cost more than finding it.
_TYPE_NAMES: dict[bytes, str | None] = {}
_MAX_TYPE_NAMES = 4096
_UNSEEN = object()


def event_type(head: bytes) -> str | None:
    """The event's ``type`` (top-level), or None for non-JSON or typeless messages.

    ``head`` is the message text, or :attr:`rtproxy.io.format.Message.head`. The
    type is read from the first bytes without parsing the whole message, so a
    message that starts like an event but is broken further on still gets the
    type it claims; callers that need a valid event use :func:`parse_event`.
    """
    stripped = head.lstrip()
    if not stripped.startswith(b"{"):
        return None
    # Fast path: the first "type" member at depth 1 is almost always the first one seen.
    m = _TYPE_RE.search(head, 0, 512)
    if m and _depth_at(head, m.start()) == 1:
        raw = m.group(1)
        name = _TYPE_NAMES.get(raw, _UNSEEN)
        if name is _UNSEEN:
            try:
                name = json.loads(b'"' + raw + b'"')
            except ValueError:
                name = None
            if len(_TYPE_NAMES) < _MAX_TYPE_NAMES:  # a crafted file's million names stay unremembered
                _TYPE_NAMES[raw] = name
        return name  # type: ignore[return-value]
    obj = parse_event(head)
    if obj is None:
        return None
    t = obj.get("type")
    return t if isinstance(t, str) else None


def _depth_at(data: bytes, pos: int) -> int:
    depth = 0
    in_str = False
    esc = False
    for c in data[:pos]:
        if in_str:
            if esc:
                esc = False
            elif c == 0x5C:
                esc = True
            elif c == 0x22:
                in_str = False
        elif c == 0x22:
            in_str = True
        elif c in (0x7B, 0x5B):
            depth += 1
        elif c in (0x7D, 0x5D):
            depth -= 1
    return depth


#: Deepest nesting an event may have and still be parsed (real events nest < 20 deep).
MAX_DEPTH = 200
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")


def too_deep(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether ``data`` (JSON text) nests deeper than ``limit``. Cheap unless it holds many brackets."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth = 0
    for m in _BRACKETS.finditer(_JSON_STRING.sub(b'""', data)):
        if m.group(0) in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


_scan_once = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
_JSON_WS = " \t\n\r"
_NOT_FAST: Any = object()


def _parse_object_fast(data: bytes | str) -> Any:
    """``json.loads(data)`` for the usual event (UTF-8 text, an object first), through
    the C scanner without json.loads' wrappers: most messages of a session are parsed.
    :data:`_NOT_FAST` when json.loads must decide (another encoding, not an object...)."""
    try:
        text = data if isinstance(data, str) else data.decode("utf-8", "surrogatepass")
        start = len(text) - len(text.lstrip(_JSON_WS))
        if text[start : start + 1] != "{":
            return _NOT_FAST
        obj, end = _scan_once(text, start)
    except (ValueError, UnicodeDecodeError, RecursionError, StopIteration):
        return _NOT_FAST
    if end != len(text) and text[end:].strip(_JSON_WS):
        return None  # extra data after the object: not JSON, as json.loads says
    return obj


def parse_event(data: bytes | str) -> dict[str, Any] | None:
    """The event as a dict, or None if it is not a JSON object (or nests deeper than
    :data:`MAX_DEPTH`: a hostile or broken message is shown as not JSON, never a crash)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if too_deep(raw):
        return None
    obj = _parse_object_fast(data)
    if obj is not _NOT_FAST:
        return obj if isinstance(obj, dict) else None
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: nesting deeper than Python's stack allows (a hostile or buggy
        # client); the event is shown as not JSON rather than crashing the reader.
        return None
    return obj if isinstance(obj, dict) else None


class _Invalid:
    __slots__ = ()

    def __repr__(self) -> str:
        return "INVALID"


#: What :func:`parse_json` returns for text that is not JSON (or nests too deep).
INVALID: Any = _Invalid()


def parse_json(data: bytes | str) -> Any:
    """Any JSON value (an object, a list, a string...) from untrusted text, or
    :data:`INVALID` when it is not JSON, not UTF-8, or nests deeper than :data:`MAX_DEPTH`.

    What :func:`parse_event` is for events, for any JSON a reader meets (a
    function call's arguments, a whole message to rewrite). Never raises.
    """
    try:
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    except UnicodeEncodeError:
        return INVALID
    if too_deep(raw):
        return INVALID
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return INVALID


def ws_url(url: str) -> str:
    """The WebSocket form of an upgrade request's URL (``https://`` -> ``wss://``)."""
    if url.startswith("https://"):
        return "wss://" + url[len("https://") :]
    if url.startswith("http://"):
        return "ws://" + url[len("http://") :]
    return url


def model_from_url(url: str) -> str | None:
    """``model`` (or Azure ``deployment``) from a Realtime URL's query string."""
    q = parse_qs(urlsplit(url).query)
    for key in ("model", "deployment"):
        if q.get(key):
            return q[key][0]
    return None
