"""rtproxy: record, replay, diff and export OpenAI Realtime API WebSocket sessions.

The Python API (docs/API.md)::

    import rtproxy

    rec = rtproxy.open("recordings/sample-voice-turn.rtrec")
    for ev in rec.events():
        print(ev.t, ev.side, ev.type, ev.audio_ms)
    print(rec.close)

    result = rtproxy.diff("old.rtrec", "new.rtrec")
    print(result.equivalent, result.to_dict())

``import rtproxy`` loads nothing heavy: no mitmproxy, websockets or click.
Names are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "open",
    "diff",
    "Recording",
    "Event",
    "Close",
    "Handshake",
    "RtproxyError",
    "RecordingError",
    "NotARecording",
    "CorruptRecording",
    "UnsupportedVersion",
    "UsageError",
]

if TYPE_CHECKING:
    from rtproxy.compare.core import DiffResult
    from rtproxy.errors import (
        CorruptRecording,
        NotARecording,
        RecordingError,
        RtproxyError,
        UnsupportedVersion,
        UsageError,
    )
    from rtproxy.view.events import Close, Event, Handshake, Recording, open

_LAZY = {
    "open": "rtproxy.view.events",
    "Recording": "rtproxy.view.events",
    "Event": "rtproxy.view.events",
    "Close": "rtproxy.view.events",
    "Handshake": "rtproxy.view.events",
    "RtproxyError": "rtproxy.errors",
    "RecordingError": "rtproxy.errors",
    "NotARecording": "rtproxy.errors",
    "CorruptRecording": "rtproxy.errors",
    "UnsupportedVersion": "rtproxy.errors",
    "UsageError": "rtproxy.errors",
}


def diff(a: Any, b: Any, **options: Any) -> DiffResult:
    """Compare two recordings semantically (as ``rtproxy diff``); returns a ``DiffResult``
    with ``.equivalent`` and ``.to_dict()``. Options: ``ignore``, ``keep``, ``tolerance_ms``."""
    from rtproxy.compare.core import diff_files

    return diff_files(a, b, **options)


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'rtproxy' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
