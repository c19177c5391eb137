"""Helpers for tests and bug reports: build a valid recording from a list of events.

::

    from rtproxy.testing import make_recording

    make_recording("bug.rtrec", [
        (0, "server", {"type": "session.created", "session": {}}),
        (120, "client", {"type": "response.create"}),
        (150, "server", {"type": "error", "error": {"code": "conversation_already_has_active_response"}}),
    ])

Pure: no sockets; imports nothing heavy.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterable

from rtproxy.io.format import start_recording
from rtproxy.protocol.redaction import Redactor

__all__ = ["make_recording"]

EventSpec = tuple[float, str, "dict[str, Any] | str | bytes"]


def _wire(event: dict[str, Any] | str | bytes) -> tuple[bool, bytes]:
    """(is_text, bytes): dicts as compact JSON text, str as text, bytes as a binary message."""
    if isinstance(event, dict):
        return True, json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    if isinstance(event, str):
        return True, event.encode("utf-8", "surrogatepass")
    if isinstance(event, (bytes, bytearray)):
        return False, bytes(event)
    raise TypeError(f"an event is a dict, str or bytes, not {type(event).__name__}")


def make_recording(
    path: str | os.PathLike[str],
    events: Iterable[EventSpec],
    *,
    url: str = "wss://api.openai.com/v1/realtime?model=gpt-realtime",
    model: str | None = None,
    status: int = 101,
    close: tuple[int | None, str, str] | None = (1000, "", "client"),
    started: float | None = None,
    redact: bool = True,
) -> Path:
    """Write a valid ``.rtrec`` at ``path`` from ``(t_ms, side, event)`` triples.

    ``side`` is ``"client"`` or ``"server"``; ``event`` a dict (sent as compact
    JSON), a str (a text message, sent as is: invalid JSON allowed) or bytes (a
    binary message). ``close`` is ``(code, reason, closed_by)`` or None for a
    recording cut short before its close. Secrets are removed as when recording
    (``redact=False`` keeps the messages exactly as given). Returns the path.
    """
    red = Redactor()
    t_last = 0
    with start_recording(
        path, url=url, model=model, started=started if started is not None else time.time(),
        status=status, recorder="rtproxy.testing",
    ) as w:
        for t_ms, side, event in events:
            if side not in ("client", "server"):
                raise ValueError(f"side is 'client' or 'server', not {side!r}")
            is_text, data = _wire(event)
            changed = False
            if redact:
                data, changed = red.payload(data)
            t_ns = max(t_last, int(round(float(t_ms) * 1e6)))
            t_last = t_ns
            w.write_message(t_ns, side == "client", is_text, data, redacted=changed)
        if close is not None:
            code, reason, by = close
            w.write_close(t_ns=t_last, code=code, reason=reason, closed_by=by, error=None)
            w.close(duration_s=t_last / 1e9)
        else:
            w.abandon()
    return Path(path)
