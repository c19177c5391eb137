"""Values that are not what the protocol says (RT018): a rate "fast", audio_end_ms
1e308 or NaN, strings where numbers belong."""

from __future__ import annotations

import math
from typing import Any, Iterator

from rtproxy.check.finding import Finding
from rtproxy.check.rules.base import Rule, q

__all__ = ["BadValues", "FIELDS"]

_MS = 86_400_000.0  # a day, in ms
# (event type, path, kind, low, high, required). kind: "num", "int" (whole number), "num|inf",
# "str". Paths: dots, [*] for every list element.
FIELDS: dict[str, list[tuple[str, str, float, float, bool]]] = {
    "conversation.item.truncate": [
        ("audio_end_ms", "int", 0, _MS, True), ("content_index", "int", 0, 1000, False),
        ("item_id", "str", 0, 0, True),
    ],
    "session.update": [
        ("session.audio.input.format.rate", "int", 1000, 384000, False),
        ("session.audio.output.format.rate", "int", 1000, 384000, False),
        ("session.audio.input.turn_detection.threshold", "num", 0, 1, False),
        ("session.audio.input.turn_detection.prefix_padding_ms", "int", 0, 60000, False),
        ("session.audio.input.turn_detection.silence_duration_ms", "int", 0, 60000, False),
        ("session.audio.input.turn_detection.idle_timeout_ms", "int", 0, _MS, False),
        ("session.audio.output.speed", "num", 0.1, 10, False),
        ("session.turn_detection.threshold", "num", 0, 1, False),
        ("session.turn_detection.prefix_padding_ms", "int", 0, 60000, False),
        ("session.turn_detection.silence_duration_ms", "int", 0, 60000, False),
        ("session.speed", "num", 0.1, 10, False),
        ("session.temperature", "num", 0, 2, False),
        ("session.max_output_tokens", "num|inf", 1, 1e9, False),
        ("session.max_response_output_tokens", "num|inf", 1, 1e9, False),
    ],
    "response.create": [
        ("response.max_output_tokens", "num|inf", 1, 1e9, False),
        ("response.temperature", "num", 0, 2, False),
    ],
    "input_audio_buffer.speech_started": [("audio_start_ms", "int", 0, 1e12, False)],
    "input_audio_buffer.speech_stopped": [("audio_end_ms", "int", 0, 1e12, False)],
    "input_audio_buffer.timeout_triggered": [("audio_start_ms", "int", 0, 1e12, False),
                                             ("audio_end_ms", "int", 0, 1e12, False)],
    "conversation.item.truncated": [("audio_end_ms", "int", 0, _MS, False)],
    "rate_limits.updated": [
        ("rate_limits[*].limit", "num", 0, 1e15, False), ("rate_limits[*].remaining", "num", -1e15, 1e15, False),
        ("rate_limits[*].reset_seconds", "num", 0, 1e9, False),
    ],
    "response.done": [
        ("response.usage.total_tokens", "int", 0, 1e12, False), ("response.usage.input_tokens", "int", 0, 1e12, False),
        ("response.usage.output_tokens", "int", 0, 1e12, False),
    ],
    "session.created": [("session.expires_at", "num", 0, 1e11, False)],
    "session.updated": [("session.expires_at", "num", 0, 1e11, False)],
    "response.function_call_arguments.done": [("call_id", "str", 0, 0, False), ("arguments", "str", 0, 0, False)],
}


def _walk(obj: Any, parts: list[str]) -> Iterator[tuple[bool, Any]]:
    """(present, value) for each value at the path (several with [*])."""
    if not parts:
        yield True, obj
        return
    head, rest = parts[0], parts[1:]
    star = head.endswith("[*]")
    key = head[:-3] if star else head
    if not isinstance(obj, dict) or key not in obj:
        yield False, None
        return
    v = obj[key]
    if star:
        if isinstance(v, list):
            for x in v:
                yield from _walk(x, rest)
        return
    yield from _walk(v, rest)


def _problem(v: Any, kind: str, lo: float, hi: float) -> str | None:
    if kind == "str":
        return None if isinstance(v, str) else f"{type(v).__name__} where a string belongs"
    if kind == "num|inf" and v == "inf":
        return None
    if isinstance(v, bool):
        return "a boolean where a number belongs"
    if isinstance(v, str):
        return "a string where a number belongs"
    if not isinstance(v, (int, float)):
        return f"{type(v).__name__} where a number belongs"
    try:
        f = float(v)
    except OverflowError:
        return "a number too large"
    if not math.isfinite(f):
        return "not a finite number"
    if kind == "int" and f != int(f):
        return "not a whole number"
    if not lo <= f <= hi:
        return f"out of range ({lo:g}..{hi:g})"
    return None


class BadValues(Rule):
    code = "RT018"
    name = "bad-value"
    severity = "warning"
    title = "a field with a value the protocol does not allow"
    types = frozenset(FIELDS)
    meaning = """
A known numeric or string field holding something else: a string where a
number belongs (a rate "fast", audio_end_ms "500"), NaN or infinity, 1e308
and other values out of any sane range, a fraction where a whole number
belongs, a missing required field (truncate audio_end_ms). One finding per
event type and field, with the count.
"""
    why = """
The server rejects or, worse, silently ignores such values; clients that
compute with them (durations, offsets) crash or mis-cut audio.
"""
    fix = """
Validate what you send (types and ranges); treat what you receive as
untrusted.
"""
    sources = ("../shared/realtime-bugs.md P8 (invalid_value)", "Azure-Samples/aoai-realtime-audio-sdk #95")

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.found: dict[tuple[str, str], list[Any]] = {}
        self.msgs: dict[tuple[str, str], str] = {}

    def feed(self, ev: Any, ctype: str | None, obj: dict[str, Any] | None, st: Any) -> list[Finding] | None:
        if obj is None or ctype is None:
            return None
        for path, kind, lo, hi, required in FIELDS[ctype]:
            for present, v in _walk(obj, path.split(".")):
                if not present:
                    problem = "missing" if required else None
                elif v is None:
                    problem = "null" if required else None
                else:
                    problem = _problem(v, kind, lo, hi)
                if problem:
                    key = (ctype, path)
                    self.found.setdefault(key, []).append(ev)
                    self.msgs.setdefault(key, f"{ev.type} {path} = {q(v, 40) if present else '(absent)'}: {problem}")
        return None

    def finish(self, st: Any) -> list[Finding] | None:
        out = []
        for key, evs in self.found.items():
            msg = self.msgs[key] + (f" ({len(evs)} events)" if len(evs) > 1 else "")
            out.append(self.on(evs[0], msg, [e.index for e in evs[1:10]]))
        return out
