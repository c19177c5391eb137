"""Stripping what a person may not share from a recording's messages (pure).

:class:`Stripper` takes each message in order (it tracks the session's audio
formats) and returns the content to write in its place: audio replaced by
silence of the same length, transcripts / text / function arguments and
outputs (whatever their JSON type) and logprob tokens replaced by a placeholder,
``instructions`` and ``prompt`` removed. JSON stays valid
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

# Members whose value is what someone said or typed, or a tool's data: replaced whatever
# its type (a list or an object holds text as well as a string does), unless it is one
# of the structures that share a name (see :func:`_holds_structure`).
_TEXT_KEYS = frozenset({"transcript", "text", "arguments", "output"})
# Lists of {"token", "logprob", "bytes", "top_logprobs"} (transcription events): every
# string in them, and each token's bytes, is text; the numbers stay.
_LOGPROB_KEYS = frozenset({"logprobs", "top_logprobs"})
#: What a stripped token's ``bytes`` become: the placeholder's own.
_PLACEHOLDER_BYTES = tuple(PLACEHOLDER.encode())
# Where a tool's JSON schema starts (session / response "tools", an MCP tool list): its
# members are property names ("text": {"type": "string"}), not text.
_SCHEMA_KEYS = frozenset({"parameters", "input_schema"})
# How far _strip is into a tool definition.
_PLAIN, _IN_TOOLS, _IN_SCHEMA = 0, 1, 2
# Members --strip-instructions removes: the instructions, and a prompt (a stored prompt's
# id and variables, a transcription's prompt hint), which says as much.
_INSTRUCTION_KEYS = frozenset({"instructions", "prompt"})
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
# Events that carry audio and ids only: their "delta" is audio, so they are parsed only
# when their bytes name another member to strip (or hold an escape), however large.
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
        self._named, self._plain, self._split = _prefilters(options)

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
        # One pass over the raw bytes for the usual message: does it name a member to strip?
        backslash = b"\\" in head
        named = delta = False
        find = self._split if split else self._plain
        if find is not None:
            if backslash:  # a key may be spelt with escapes ("t\\u0065xt"): only the parse tells
                named = True
            elif (hit := find.search(head)) is not None:
                named = hit.lastgroup == "n" or cast("re.Pattern[bytes]", self._named).search(head, hit.end()) is not None
                delta = not named
        # The type is read only where it matters: an event that may hold text, and a
        # session event (its name holds "session", or is written with escapes), which
        # sets the formats. An audio append or delta is otherwise copied unread.
        if named or delta or backslash or b"session" in head:
            canon = canonical_event_type(event_type(head))
            if canon in SESSION_CONFIG_EVENTS:
                self.formats.feed(canon, parse_event(m.content))
        # An audio event's "delta" is its audio: it is read only when it names a text key too.
        needs_json = named or (delta and canon not in _AUDIO_ONLY_EVENTS)
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
        content = m.content
        obj = parse_json(content)
        if obj is INVALID:
            if opts.text:
                self.changed += 1
                return PLACEHOLDER.encode(), False
            return m.stored()
        new = self._strip(obj, canon, fmt, "", _PLAIN)
        # Unchanged is copied as is, unless a key is given twice: the parse kept the last
        # value only, so an earlier one ({"text":"secret","text":""}) goes by writing anew.
        if new == obj and not (opts.audio and m.audio) and not _has_duplicate_keys(content):
            return m.stored()
        self.changed += 1
        text = json.dumps(new, ensure_ascii=False, separators=(",", ":"))
        # A lone surrogate (the event held "\\ud800") stays an escape: the text is UTF-8.
        return _SURROGATE.sub(lambda c: f"\\u{ord(c.group()):04x}", text).encode("utf-8"), False

    def _strip(self, v: Any, canon: str | None, fmt: AudioFormat, parent: str, where: int) -> Any:
        o = self.options
        if isinstance(v, dict):
            out = {}
            for k, x in v.items():
                if o.instructions and k in _INSTRUCTION_KEYS and not (where == _IN_SCHEMA and isinstance(x, dict)):
                    continue  # (a tool's parameter of that name stays)
                if o.text:
                    if k == "delta" and parent == "" and canon in _TEXT_DELTA_EVENTS:
                        out[k] = PLACEHOLDER
                        continue
                    if k in _TEXT_KEYS and not _holds_structure(k, x, parent, where):
                        out[k] = x if _empty(x) else PLACEHOLDER
                        continue
                    if k in _LOGPROB_KEYS and where != _IN_SCHEMA:
                        out[k] = _strip_logprobs(x)
                        continue
                if o.audio and k in ("audio", "delta") and isinstance(x, str) and _looks_b64(x):
                    out[k] = _silence_b64(x, fmt)
                    continue
                inner = where
                if k == "tools" and where == _PLAIN:
                    inner = _IN_TOOLS
                elif k in _SCHEMA_KEYS and where == _IN_TOOLS:
                    inner = _IN_SCHEMA
                out[k] = self._strip(x, canon, fmt, k, inner)
            return out
        if isinstance(v, list):
            return [self._strip(x, canon, fmt, parent, where) for x in v]
        return v


def _prefilters(o: StripOptions) -> tuple[re.Pattern[bytes] | None, ...]:
    """What :meth:`Stripper.stored` looks for in a message's raw bytes (its head, when it
    holds no backslash) before parsing it: (names, plain, split). ``names`` finds a member
    to strip other than "delta"; ``plain`` and ``split`` find that (group ``n``) or a
    "delta" that may be text, in a message with no audio split out of it and in one with
    some. Every branch starts with a quote, which the regex engine scans for quickly."""
    names = []
    if o.instructions:
        names += [b"instructions", b"prompt"]
    if o.text:
        names += [b"text", b"transcript", b"arguments", b"output", b"logprobs", b"top_logprobs"]
    if not names:
        return None, None, None
    n = b"|".join(names)
    if not o.text:
        pat = re.compile(b'"(?P<n>' + n + b')"')
        return pat, pat, pat
    # A split message's "delta" is "" in the head where its audio was taken out: text only
    # when another "delta" is not, or when the type names a text delta (a text delta that
    # reads as base64 is split out too).
    return (
        re.compile(b'"(?:' + n + b')"'),
        re.compile(b'"(?:(?P<n>' + n + rb')"|delta")'),
        re.compile(b'"(?:(?P<n>' + n + rb')"|delta"(?!:"")|type"\s*:\s*"[^"\\]*(?:text|transcri|argument))'),
    )


def _holds_structure(key: str, value: Any, parent: str, where: int) -> bool:
    """Whether a member named like text holds structure to strip inside instead: a
    response's ``output`` items, the ``audio.output`` settings (format, voice), and a
    property of a tool's JSON schema ("text": {"type": "string"})."""
    if where == _IN_SCHEMA:
        return isinstance(value, dict)
    if key == "output":
        return (parent == "response" and isinstance(value, list)) or (
            parent == "audio" and isinstance(value, dict)
        )
    return False


def _empty(v: Any) -> bool:
    """Nothing to strip: null, "", [] or {}."""
    return v is None or (isinstance(v, (str, list, dict)) and not v)


def _strip_logprobs(v: Any) -> Any:
    """Logprobs with every string (the tokens) and each token's ``bytes`` stripped; the
    numbers and the shape stay."""
    if isinstance(v, dict):
        return {
            k: list(_PLACEHOLDER_BYTES) if k == "bytes" and isinstance(x, list) and x else _strip_logprobs(x)
            for k, x in v.items()
        }
    if isinstance(v, list):
        return [_strip_logprobs(x) for x in v]
    if isinstance(v, str) and v:
        return PLACEHOLDER
    return v


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise _DuplicateKey
    return d


def _has_duplicate_keys(content: bytes) -> bool:
    """Whether an object of ``content`` (valid JSON, depth already checked) gives a key twice."""
    try:
        json.loads(content, object_pairs_hook=_no_duplicates)
    except _DuplicateKey:
        return True
    except ValueError:
        return False
    return False


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
