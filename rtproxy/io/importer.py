"""``rtproxy import``: .rtrec files from a mitmproxy flow file or a HAR file.

One recording per WebSocket session, secrets removed on the way in with the
same functions the recorder uses (:mod:`rtproxy.protocol.redaction`). What the source
did not hold (a HAR has no close code and no pings, and its times are
milliseconds) is written to the header's ``source_lacks`` and printed.

Each recording is written under a temporary name and renamed into place when
complete (files 0600, the output folder 0700 when created); a failed import
leaves no partial file, and no folder it created that stayed empty.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable


from rtproxy.errors import ImportFailed
from rtproxy.io.format import MAGIC, RecordingWriter, recording_filename, start_recording
from rtproxy.io.har import HarError, har_sessions
from rtproxy.io.progress import Progress, counting
from rtproxy.io.safefile import make_private_dirs, remove_empty_dirs, temp_path_for
from rtproxy.protocol.events import model_from_url, ws_url
from rtproxy.protocol.redaction import Redactor

__all__ = ["ImportedSession", "import_file", "import_har", "import_flows", "ImportError_"]

HAR_LACKS = [
    "close code and reason (HAR does not record them)",
    "ping/pong frames (HAR does not record them)",
    "sub-millisecond timing (browsers write message times in milliseconds)",
]
FLOW_LACKS = [
    "ping/pong frames (mitmproxy does not keep them in flows)",
]


#: Kept under its old name: what ``rtproxy import`` raises for a source it cannot read.
ImportError_ = ImportFailed


@dataclass
class ImportedSession:
    path: str
    messages: int
    lacks: list[str] = field(default_factory=list)
    redactions: list[str] = field(default_factory=list)


def _write(
    out_dir: Path,
    *,
    source: str,
    recorder: str,
    url: str,
    method: str,
    http_version: str,
    request_headers: Iterable[tuple[str, str]],
    status: int,
    reason: str,
    response_headers: Iterable[tuple[str, str]],
    response_body: bytes,
    t_request: float,
    t_response: float,
    messages: Iterable[tuple[int, bool, bool, bytes]],
    close: dict[str, Any] | None,
    lacks: list[str],
    path: str | None = None,
) -> ImportedSession:
    url = ws_url(url)
    request_headers = list(request_headers)
    red = Redactor()
    red.learn_request(url, request_headers)
    clean_url, q_red = red.url(url)
    req_h, h_red = red.headers(request_headers)
    resp_h, rh_red = red.headers(response_headers)
    redactions = [f"query:{k}" for k in q_red] + [f"request-header:{k}" for k in h_red]
    redactions += [f"response-header:{k}" for k in rh_red]
    body, changed = red.payload(response_body or b"")
    if changed:
        redactions.append("response-body")
    model = model_from_url(url)
    name, short = recording_filename(t_request or 0, model)
    make_private_dirs(out_dir)
    final = out_dir / name
    resp_map = {k.lower(): v for k, v in resp_h}
    w = start_recording(
        temp_path_for(final), session_id=short, started=t_request, url=clean_url, model=model,
        recorder=recorder, upstream=None, redactions=redactions,
        header_extra={"imported_from": source, "source_lacks": lacks},
        method=method, request_path=red.url(path or "")[0] or None, http_version=http_version,
        request_headers=req_h, status=status, reason=reason, response_headers=resp_h, response_body=body,
        subprotocol=red.subprotocols(resp_map["sec-websocket-protocol"])[0] if "sec-websocket-protocol" in resp_map
        else None,
        extensions=resp_map.get("sec-websocket-extensions"), t_request=t_request, t_response=t_response,
    )
    try:
        return _write_session(w, final, red, redactions, lacks=lacks, messages=messages, close=close)
    except BaseException:
        w.discard()
        raise


def _write_session(
    w: RecordingWriter, final: Path, red: Redactor, redactions: list[str], *,
    messages: Iterable[tuple[int, bool, bool, bytes]], close: dict[str, Any] | None, lacks: list[str],
) -> ImportedSession:
    n = 0
    last = 0
    payload_redacted = 0
    for t_ns, from_client, is_text, content in messages:
        content2, changed = red.message(content, from_client, is_text)
        payload_redacted += changed
        w.write_message(t_ns, from_client, is_text, content2, redacted=changed)
        last = max(last, t_ns)
        n += 1
    if payload_redacted:
        redactions.append(f"payload:{payload_redacted} messages")
    if close is not None:
        w.write_close(**close)
    w.close(duration_s=max(last, (close or {}).get("t_ns") or 0) / 1e9, redactions=redactions, imported=True)
    os.replace(w.path, final)
    return ImportedSession(str(final), n, lacks, redactions)


def import_har(path: str, out_dir: Path, progress: Progress | None = None,
               out: list[ImportedSession] | None = None) -> list[ImportedSession]:
    """One recording per WebSocket entry of a HAR file (appended to ``out`` as each is written)."""
    try:
        with open(path, "rb") as fh:
            doc = json.load(fh)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImportError_(f"{path}: not a HAR file (invalid JSON: {exc})") from None
    except RecursionError:
        raise ImportError_(f"{path}: not a HAR file (JSON nested deeper than Python can read)") from None
    try:
        sessions = har_sessions(doc, path)
    except HarError as exc:
        raise ImportError_(str(exc)) from None
    out = [] if out is None else out
    for s in counting(sessions, len(sessions), progress, "writing sessions"):
        out.append(
            _write(
                out_dir, source=f"har:{Path(path).name} ({s.creator})", recorder="import-har", url=s.url,
                method=s.method, http_version=s.http_version, request_headers=s.request_headers,
                status=s.status, reason=s.reason, response_headers=s.response_headers,
                response_body=s.response_body, t_request=s.t_request, t_response=s.t_response,
                messages=s.messages, close=None, lacks=list(HAR_LACKS),
            )
        )
    return out


def import_flows(path: str, out_dir: Path, progress: Progress | None = None,
                 out: list[ImportedSession] | None = None) -> list[ImportedSession]:
    """One recording per WebSocket flow of a mitmproxy flow file (``mitmdump -w``; appended
    to ``out`` as each is written)."""
    from mitmproxy import http
    from mitmproxy.exceptions import FlowReadException
    from mitmproxy.io import FlowReader

    out = [] if out is None else out
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            for flow in FlowReader(fh).stream():
                if progress is not None:
                    progress("reading flows", fh.tell(), size)
                if not isinstance(flow, http.HTTPFlow) or flow.response is None:
                    continue
                if flow.websocket is None:
                    if flow.request.headers.get("upgrade", "").lower() == "websocket" and flow.response.status_code != 101:
                        out.append(_refused(path, out_dir, flow))  # a refused upgrade is a session too
                    continue
                ws = flow.websocket
                t_resp = flow.response.timestamp_end or flow.response.timestamp_start or flow.request.timestamp_start
                msgs = [
                    (max(0, round((m.timestamp - t_resp) * 1e9)), m.from_client, m.is_text, m.content)
                    for m in ws.messages
                ]
                lacks = list(FLOW_LACKS)
                close = None
                if ws.close_code is not None or ws.timestamp_end:
                    t_end = ws.timestamp_end or (ws.messages[-1].timestamp if ws.messages else t_resp)
                    closed_by = None if ws.closed_by_client is None else ("client" if ws.closed_by_client else "server")
                    close = {
                        "t_ns": max(0, round((t_end - t_resp) * 1e9)), "code": ws.close_code,
                        "reason": ws.close_reason, "closed_by": closed_by,
                        "error": flow.error.msg if flow.error else None,
                    }
                else:
                    lacks.append("the end of the session (the flow was saved while still open)")
                if not ws.messages:
                    lacks.append("messages (the flow holds none: saved with rtrec_keep_messages off?)")
                out.append(
                    _write(
                        out_dir, source=f"mitmproxy:{Path(path).name}", recorder="import-mitmproxy",
                        url=flow.request.url, method=flow.request.method,
                        http_version=flow.request.http_version,
                        request_headers=flow.request.headers.items(multi=True),
                        status=flow.response.status_code, reason=flow.response.reason,
                        response_headers=flow.response.headers.items(multi=True),
                        response_body=flow.response.raw_content or b"",
                        t_request=flow.request.timestamp_start, t_response=t_resp,
                        messages=msgs, close=close, lacks=lacks, path=flow.request.path,
                    )
                )
    except FlowReadException as exc:
        raise ImportError_(f"{path}: not a readable mitmproxy flow file ({exc})") from None
    return out


def _refused(path: str, out_dir: Path, flow: Any) -> ImportedSession:
    t = flow.response.timestamp_end or flow.request.timestamp_start
    return _write(
        out_dir, source=f"mitmproxy:{Path(path).name}", recorder="import-mitmproxy", url=flow.request.url,
        method=flow.request.method, http_version=flow.request.http_version,
        request_headers=flow.request.headers.items(multi=True), status=flow.response.status_code,
        reason=flow.response.reason, response_headers=flow.response.headers.items(multi=True),
        response_body=flow.response.raw_content or b"", t_request=flow.request.timestamp_start,
        t_response=t, messages=[], close=None, lacks=[], path=flow.request.path,
    )


def import_file(path: str, out_dir: Path, progress: Progress | None = None) -> tuple[str, list[ImportedSession]]:
    """Detect the source kind and import it; returns (kind, sessions).
    ``progress``: see :mod:`rtproxy.io.progress`."""
    try:
        with open(path, "rb") as fh:
            start = fh.read(64)
    except FileNotFoundError:
        raise ImportError_(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImportError_(f"{path}: is a directory; give a .har or mitmproxy flow file") from None
    if start.startswith(MAGIC):
        raise ImportError_(f"{path}: already an .rtrec recording; nothing to import")
    if not start:
        raise ImportError_(f"{path}: empty file; give a .har or mitmproxy flow file")
    is_har = start.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")
    # All or nothing: if the import fails part-way (a flow file cut short, a full disk),
    # the sessions it wrote are removed, and so are the folders it made.
    created = make_private_dirs(out_dir)
    sessions: list[ImportedSession] = []
    try:
        (import_har if is_har else import_flows)(path, out_dir, progress, sessions)
    except BaseException as exc:
        for s in sessions:
            try:
                os.unlink(s.path)
            except OSError:
                pass
        remove_empty_dirs(created)
        if sessions and isinstance(exc, ImportError_):
            raise ImportError_(f"{exc}; nothing was imported") from None
        raise
    if not sessions:
        remove_empty_dirs(created)
    return ("har" if is_har else "mitmproxy"), sessions
