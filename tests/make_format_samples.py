"""Write tests/data/format_v<N>.rtrec, the saved sample of the current format version.

Run once per format version and commit the file; never regenerate a released
version's sample (tests/test_format.py reads every saved sample with the
current reader, so a reader change that breaks old files fails there).
``format_v1_unpacked.rtrec`` is a v1 file from before audio packing (flag 8)
existed, kept because readers must still accept audio stored unpacked::

    .venv/bin/python tests/make_format_samples.py
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rtproxy.io.format import FORMAT_VERSION, RecordingWriter  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"

#: Deterministic audio: 100 ms of a PCM16 ramp, and 40 ms of another.
AUDIO_IN = bytes(range(256)) * 18 + bytes(range(192))  # 4800 bytes = 100 ms at 24 kHz
AUDIO_OUT = bytes(reversed(range(256))) * 7 + bytes(128)  # 1920 bytes = 40 ms

HEADER = {
    "rtproxy": "0.1.0",
    "session_id": "a1b2c3",
    "started": 1767225600.25,
    "url": "ws://127.0.0.1:8080/v1/realtime?model=gpt-realtime",
    "model": "gpt-realtime",
    "recorder": "rtproxy-record/reverse",
    "upstream": "http://127.0.0.1:9000",
    "redactions": ["request-header:Authorization"],
}
HANDSHAKE = {
    "method": "GET",
    "url": "ws://127.0.0.1:8080/v1/realtime?model=gpt-realtime",
    "path": "/v1/realtime?model=gpt-realtime",
    "http_version": "HTTP/1.1",
    "request_headers": [
        ["Host", "127.0.0.1:8080"],
        ["Authorization", "Bearer [REDACTED by rtproxy]"],
        ["Sec-WebSocket-Protocol", "realtime"],
    ],
    "status": 101,
    "reason": "Switching Protocols",
    "response_headers": [["Upgrade", "websocket"], ["Sec-WebSocket-Protocol", "realtime"]],
    "response_body": b"",
    "subprotocol": "realtime",
    "extensions": None,
    "t_request": 1767225600.25,
    "t_response": 1767225600.26,
}
#: (t_ns, from_client, is_text, content, redacted)
MESSAGES: list[tuple[int, bool, bool, bytes, bool]] = [
    (1_000_001, False, True, b'{"type":"session.created","event_id":"event_1","session":{"id":"sess_1"}}', False),
    (
        5_000_002,
        True,
        True,
        json.dumps(
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(AUDIO_IN).decode()}
        ).encode(),
        False,
    ),
    (9_000_003, True, True, '{"type":"conversation.item.create","note":"héllo ✓"}'.encode(), False),
    (9_000_003, True, False, b"\x00\x01\xfe\xff", False),
    (12_500_000, True, True, b"", False),
    (13_000_000, True, True, b"{not json", False),
    (
        20_000_000,
        False,
        True,
        json.dumps(
            {"type": "response.output_audio.delta", "delta": base64.b64encode(AUDIO_OUT).decode()}
        ).encode(),
        False,
    ),
    (
        21_000_000,
        True,
        True,
        b'{"type":"session.update","session":{"tools":[{"type":"mcp","authorization":"[REDACTED by rtproxy]"}]}}',
        True,
    ),
]
CLOSE = {"t_ns": 30_000_000, "code": 1000, "reason": "bye ✓", "closed_by": "client", "error": None}


def write_sample(path: Path) -> None:
    """Write the sample recording to ``path`` (which must not exist)."""
    w = RecordingWriter(path)
    w.write_header(**HEADER)
    w.write_handshake(**HANDSHAKE)
    for t_ns, from_client, is_text, content, redacted in MESSAGES:
        w.write_message(t_ns, from_client, is_text, content, redacted=redacted)
    w.write_close(**CLOSE)
    w.close(duration_s=0.03, redactions=HEADER["redactions"])


def main() -> None:
    out = DATA / f"format_v{FORMAT_VERSION}.rtrec"
    if out.exists():
        sys.exit(f"{out} exists; samples of a released format version are never rewritten")
    write_sample(out)
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
