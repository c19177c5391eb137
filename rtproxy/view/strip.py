"""Stripping what a person may not share from a recording's messages (pure).

:class:`Stripper` takes each message in order (it tracks the session's audio
formats) and returns the content to write in its place: audio replaced by
silence of the same length, transcripts / text / function arguments and
outputs replaced by a placeholder, ``instructions`` removed. JSON stays valid
and every event keeps its type, ids and timing, so the copy still shows,
replays and diffs. ``rtproxy redact`` writes the result with
:class:`rtproxy.io.format.RecordingWriter`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, cast

from rtproxy.io.audiocodec import pack as pack_audio
from rtproxy.io.audiocodec import unpack_each
from rtproxy.io.format import Message, join_payload
from rtproxy.view.audio import silence
from rtproxy.protocol.events import (
    AUDIO_DELTA_EVENTS,
    INVALID,
    AudioFormat,
    canonical_event_type,
    event_type,
    parse_event,
    parse_json,
)
from rtproxy.protocol.formats import SESSION_CONFIG_EVENTS, SessionFormats

__all__ = ["PLACEHOLDER", "StripOptions", "Stripper"]

_SURROGATE = re.compile("[\ud800-\udfff]")

#: What stripped text becomes.
PLACEHOLDER = "[stripped by rtproxy]"

# Members whose string value is what someone said or typed, or a tool's data.
_TEXT_KEYS = frozenset({"transcript", "text", "arguments", "output"})
# Events whose "delta" is text rather than audio.
_TEXT_DELTA_EVENTS = frozenset(
    {
        "response.output_audio_transcript.delta",
        "response.output_text.delta",
        "response.function_call_arguments.delta",
        "response.mcp_call_arguments.delta",
        "conversation.item.input_audio_transcription.delta",
    }
)
# Events that carry audio and ids only: never parsed, however large.
_AUDIO_ONLY_EVENTS = frozenset({"input_audio_buffer.append", *AUDIO_DELTA_EVENTS})


@dataclass(frozen=True)
class StripOptions:
    audio: bool = False
    text: bool = False
    instructions: bool = False

    def names(self) -> list[str]:
        """What the header's ``stripped`` field lists."""
        return [n for n in ("audio", "text", "instructions") if getattr(self, n)]


class Stripper:
    """Call :meth:`content` for every message in order; write what it returns."""

    def __init__(self, options: StripOptions) -> None:
        self.options = options
        self.formats = SessionFormats()
        self.changed = 0

    def content(self, m: Message) -> bytes:
        """The bytes to record for ``m`` (``m.content`` itself when nothing is stripped)."""
        payload, packed = self.stored(m)
        if isinstance(payload, (bytes, bytearray)):
            return bytes(payload)
        if packed:
            payload = list(payload)
            payload[1::2] = unpack_each(payload[1::2])
        return join_payload(payload)

    def stored(self, m: Message) -> tuple[bytes | list[bytes], bool]:
        """What to record for ``m``, in the form of :meth:`rtproxy.io.format.Message.stored`
        (for :meth:`rtproxy.io.format.RecordingWriter.write_stored`): the message's own
        payload when nothing is stripped, its text around packed silence when only audio
        is, else the new bytes. Audio that is kept or replaced is never unpacked."""
        if not m.is_text:
            return m.stored()
        opts = self.options
        head = m.head
        stored, packed_in = m.stored()
        split = not isinstance(stored, (bytes, bytearray)) and len(stored) > 1  # audio values split out
        canon: str | None = None
        needs_json = (opts.text or opts.instructions) and self._may_hold_text(head, split)
        # The type is read only where it matters: an event that may hold text, and a
        # session event (its name holds "session", or is written with escapes), which
        # sets the formats. An audio append or delta is otherwise copied unread.
        if needs_json or b"session" in head or b"\\" in head:
            canon = canonical_event_type(event_type(head))
            if canon in SESSION_CONFIG_EVENTS:
                self.formats.feed(canon, parse_event(m.content))
        needs_json = needs_json and canon not in _AUDIO_ONLY_EVENTS
        fmt = self.formats.for_side(m.from_client)
        if not needs_json:
            if opts.audio and split:
                parts = cast("list[bytes]", stored)
                extra = 1 if packed_in else 0  # packed audio carries a one-byte tag
                self.changed += 1
                if len(parts) == 3:  # the usual: one audio value
                    return [parts[0], _packed_silence(len(parts[1]) - extra, fmt), parts[2]], True
                out = list(parts)
                out[1::2] = [_packed_silence(len(a) - extra, fmt) for a in parts[1::2]]
                return out, True
            return stored, packed_in
        # Bounded depth (a hostile event nests 10,000 deep): too deep reads as not JSON.
        obj = parse_json(m.content)
        if obj is INVALID:
            if opts.text:
                self.changed += 1
                return PLACEHOLDER.encode(), False
            return m.stored()
        new = self._strip(obj, canon, fmt, parent="")
        if new == obj and not (opts.audio and m.audio):
            return m.stored()
        self.changed += 1
        text = json.dumps(new, ensure_ascii=False, separators=(",", ":"))
        # A lone surrogate (the event held "\\ud800") stays an escape: the text is UTF-8.
        return _SURROGATE.sub(lambda c: f"\\u{ord(c.group()):04x}", text).encode("utf-8"), False

    def _may_hold_text(self, head: bytes, has_audio: bool) -> bool:
        o = self.options
        if o.instructions and b'"instructions"' in head:
            return True
        if o.text:
            if any(k in head for k in (b'"transcript"', b'"text"', b'"arguments"', b'"output"')):
                return True
            # An audio delta's "delta" is "" in the head (its audio was split out): no text.
            n = head.count(b'"delta"')
            return n > 0 and (not has_audio or n > head.count(b'"delta":""'))
        return False

    def _strip(self, v: Any, canon: str | None, fmt: AudioFormat, parent: str) -> Any:
        o = self.options
        if isinstance(v, dict):
            out = {}
            for k, x in v.items():
                if o.instructions and k == "instructions":
                    continue
                if isinstance(x, str):
                    if o.text and k in _TEXT_KEYS and x:
                        out[k] = PLACEHOLDER
                        continue
                    if o.text and k == "delta" and parent == "" and canon in _TEXT_DELTA_EVENTS:
                        out[k] = PLACEHOLDER
                        continue
                    if o.audio and k in ("audio", "delta") and _looks_b64(x):
                        out[k] = _silence_b64(x, fmt)
                        continue
                out[k] = self._strip(x, canon, fmt, k)
            return out
        if isinstance(v, list):
            return [self._strip(x, canon, fmt, parent) for x in v]
        return v


def _looks_b64(s: str) -> bool:
    return len(s) >= 4 and len(s) % 4 == 0 and s.rstrip("=").replace("+", "").replace("/", "").isalnum()


def _silence_b64(s: str, fmt: AudioFormat) -> str:
    import base64

    n = len(s) // 4 * 3 - (len(s) - len(s.rstrip("=")))
    return base64.b64encode(silence(n, fmt)).decode()


#: Longest silence whose packed form is kept for the next value of the same length.
_CACHE_BYTES = 1 << 16
_SILENCE_CACHE: dict[tuple[int, str], bytes] = {}


def _packed_silence(n: int, fmt: AudioFormat) -> bytes:
    """``pack(silence(n, fmt))``; the usual lengths (20-100 ms chunks) are packed once each."""
    key = (n, fmt.codec)
    packed = _SILENCE_CACHE.get(key)
    if packed is None:
        packed = pack_audio(silence(n, fmt))
        if n <= _CACHE_BYTES and len(_SILENCE_CACHE) < 4096:
            _SILENCE_CACHE[key] = packed
    return packed
