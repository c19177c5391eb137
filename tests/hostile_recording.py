"""A recording of a hostile session, written by hand with RecordingWriter: terminal
escapes, HTML that would end a <script> element, bidi overrides, lone surrogates,
invalid UTF-8, in every place a recording carries text."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from rtproxy.io.format import RecordingWriter

MS = 1_000_000

#: Terminal escapes: clear screen, set the window title (OSC 0), an OSC 8
#: link, an OSC 52 clipboard write, a carriage return and backspaces that
#: overwrite the line, a C1 CSI (U+009B), DEL, bidi override, line separator.
TERM = (
    "\x1b[2J\x1b[H\x1b]0;pwned-title\x07\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\"
    "\x1b]52;c;cHduZWQ=\x07\rOVERWRITE\x08\x08\x9b31m\x7f\u202eevil\u202c\u2028\u0085\x00end"
)
#: HTML that would break out of the page's script block or run script.
HTML = (
    "<!-- </script><script>window.pwned=1</script><script>window.pwned=2</script>"
    "<img src=x onerror=\"window.pwned=3\"><a href=\"javascript:window.pwned=4\">x</a>"
    "<svg onload=window.pwned=5> --> ]]> &amp; &lt;script&gt; \u2028\u2029 <!--"
)
HOSTILE = TERM + " " + HTML


def write_hostile(path: Path, *, transcript: str = HOSTILE, event_suffix: str = "\x1b[31m") -> Path:
    """One turn of a session where every text the recording carries is hostile."""
    with RecordingWriter(path) as w:
        w.write_header(
            url="ws://127.0.0.1/v1/realtime?model=m" + TERM, model="m\x1b]0;model\x07" + HTML, started=1.7e9,
            session_id="x",
        )
        w.write_handshake(
            status=101, reason="Switching Protocols\x1b[2J", subprotocol="realtime\x9b2J",
            request_headers=[["x-h", TERM]], response_headers=[["x-h", HTML]],
        )
        t = 0

        def ev(from_client: bool, obj: object, raw: bytes | None = None, is_text: bool = True) -> None:
            nonlocal t
            t += 20 * MS
            w.write_message(t, from_client, is_text, raw if raw is not None else json.dumps(obj).encode())

        ev(False, {"type": "session.created", "session": {"id": "sess_1", "instructions": HOSTILE}})
        ev(True, {"type": "session.update", "session": {"instructions": HOSTILE}})
        ev(True, {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                                "content": [{"type": "input_text", "text": transcript}]}})
        ev(True, {"type": "response.create"})
        ev(False, {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}})
        ev(False, {"type": "response.output_audio.delta", "response_id": "resp_1", "item_id": "item_1",
                   "delta": base64.b64encode(b"\x10\x27" * 2400).decode()})
        ev(False, {"type": "response.output_audio_transcript.delta", "response_id": "resp_1", "item_id": "item_1",
                   "delta": transcript})
        ev(False, {"type": "response.output_audio_transcript.done", "response_id": "resp_1", "item_id": "item_1",
                   "transcript": transcript})
        ev(False, {"type": "response.done", "response": {"id": "resp_1", "status": "completed",
                                                         "output": [{"id": "item_1", "type": "message", "content": [
                                                             {"type": "audio", "transcript": transcript}]}]}})
        ev(False, {"type": "error", "error": {"type": "invalid_request_error", "code": "x\x1b[5m",
                                              "message": HOSTILE, "param": TERM}})
        # An unknown event type holding escapes, JSON with lone surrogates (as \u
        # escapes), a text message that is not UTF-8, a binary one.
        ev(False, {"type": "response.text.delta" + event_suffix, "delta": TERM})
        ev(False, None, raw=b'{"type":"x.surrogate","text":"\\ud800 \\udfff \\ud83d"}')
        ev(False, None, raw=b'{"type":"x.bytes","text":"\xff\xfe\x1b[2J\xed\xa0\x80"}')
        ev(False, None, raw=TERM.encode() + b"\xff", is_text=False)
        w.write_close(t_ns=t + 10 * MS, code=4000, reason="bye\x1b]0;close\x07" + HTML[:40], closed_by="server")
    return path
