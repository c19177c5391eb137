"""Building blocks for the rtproxy check tests: a GA session, responses with audio."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from rtproxy.check import check_file
from rtproxy.io.format import start_recording
from rtproxy.testing import make_recording

GA_SESSION = {
    "type": "realtime", "object": "realtime.session", "id": "sess_1", "model": "gpt-realtime",
    "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "transcription": None},
              "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}},
}


def b64(n: int) -> str:
    return base64.b64encode(bytes(n)).decode()


def start(t: float = 0.0) -> list[tuple[float, str, Any]]:
    """session.created at t."""
    return [(t, "server", {"type": "session.created", "event_id": "ev_created", "session": GA_SESSION})]


def response(
    t: float, rid: str = "resp_1", iid: str = "item_a", *, audio_ms: int = 1000, chunk_ms: int = 100,
    status: str = "completed", done: bool = True, details: Any = None, step: float = 1.0,
) -> list[tuple[float, str, Any]]:
    """A response with audio_ms of 24 kHz PCM16 audio in chunks; events step ms apart."""
    ev: list[tuple[float, str, Any]] = []

    def add(obj: dict[str, Any]) -> None:
        ev.append((t + step * len(ev), "server", obj))

    add({"type": "response.created", "event_id": f"ev_{rid}_c", "response": {"id": rid, "status": "in_progress"}})
    add({"type": "response.output_item.added", "event_id": f"ev_{rid}_ia", "response_id": rid, "output_index": 0,
         "item": {"id": iid, "type": "message", "role": "assistant", "status": "in_progress", "content": []}})
    add({"type": "response.content_part.added", "event_id": f"ev_{rid}_pa", "response_id": rid, "item_id": iid,
         "output_index": 0, "content_index": 0, "part": {"type": "audio"}})
    for k in range(audio_ms // chunk_ms):
        add({"type": "response.output_audio.delta", "event_id": f"ev_{rid}_d{k}", "response_id": rid,
             "item_id": iid, "output_index": 0, "content_index": 0, "delta": b64(48 * chunk_ms)})
    add({"type": "response.output_audio.done", "event_id": f"ev_{rid}_ad", "response_id": rid, "item_id": iid,
         "output_index": 0, "content_index": 0})
    if done:
        add({"type": "response.done", "event_id": f"ev_{rid}_done",
             "response": {"id": rid, "status": status, "status_details": details,
                          "output": [{"id": iid, "type": "message", "role": "assistant",
                                      "content": [{"type": "output_audio", "transcript": "Hello there."}]}],
                          "usage": {"total_tokens": 10, "input_tokens": 4, "output_tokens": 6}}})
    return ev


def appends(t0: float, n: int, ms: int = 100, every: float | None = None, rate_bytes: int = 48) -> list:
    """n appends of ms of audio (rate_bytes per ms), one every `every` ms (default: real time)."""
    every = ms if every is None else every
    return [(t0 + k * every, "client", {"type": "input_audio_buffer.append", "audio": b64(rate_bytes * ms)})
            for k in range(n)]


def error(t: float, code: str | None, message: str = "", param: str | None = None,
          event_id: str | None = None) -> tuple[float, str, Any]:
    err: dict[str, Any] = {"type": "invalid_request_error", "code": code, "message": message}
    if param is not None:
        err["param"] = param
    if event_id is not None:
        err["event_id"] = event_id
    return (t, "server", {"type": "error", "event_id": f"ev_err_{t}", "error": err})


def write(tmp_path: Path, events: list, name: str = "x.rtrec", *, headers: list[list[str]] | None = None,
          status: int = 101, body: bytes = b"", close: tuple | None = (1000, "", "client")) -> Path:
    """A recording; with headers/body through start_recording (make_recording has neither)."""
    path = tmp_path / name
    path.unlink(missing_ok=True)
    if headers is None and not body:
        return make_recording(path, events, status=status, close=close)
    import json as _json
    w = start_recording(path, url="wss://api.openai.com/v1/realtime?model=gpt-realtime", started=1.7e9,
                        recorder="tests", status=status, request_headers=headers, response_body=body)
    t_last = 0
    for t_ms, side, obj in events:
        t_last = int(t_ms * 1e6)
        w.write_message(t_last, side == "client", True, _json.dumps(obj).encode())
    if close is not None:
        w.write_close(t_ns=t_last, code=close[0], reason=close[1], closed_by=close[2], error=None)
        w.close(duration_s=t_last / 1e9)
    else:
        w.abandon()
    return path


def found(path: Path, **kw: Any) -> list[tuple[str, str]]:
    """(code, severity) of every finding (all severities)."""
    return [(f.code, f.severity) for f in check_file(path, **kw)]


def codes(path: Path, **kw: Any) -> set[str]:
    return {c for c, _ in found(path, **kw)}
