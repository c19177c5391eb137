"""The mitmproxy addon that records Realtime WebSocket sessions to .rtrec files.

Load it in any mitmproxy set-up (``mitmdump -s addons/realtime_recorder.py``)
or let ``rtproxy record`` run it in a lean proxy. One file per WebSocket
session; every message is written (and handed to the OS) in the
``websocket_message`` hook, i.e. before mitmproxy forwards it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mitmproxy import ctx, exceptions, http

from rtproxy.errors import RecordingError
from rtproxy.io.audiocodec import load_packer
from rtproxy.io.format import RecordingWriter, recording_filename, split_base64_audio, start_recording
from rtproxy.io.safefile import make_private_dirs, remove_empty_dirs
from rtproxy.record import wsclose, wsclosing
from rtproxy.protocol.events import model_from_url, ws_url
from rtproxy.protocol.redaction import Redactor, redact_url

__all__ = ["RealtimeRecorder", "SessionSummary"]

log = logging.getLogger(__name__)

DEFAULT_OUT_DIR = "recordings"


@dataclass
class SessionSummary:
    """What the recorder says when a session's file is complete."""

    path: str
    duration_s: float
    messages_client: int
    messages_server: int
    bytes_client: int
    bytes_server: int
    file_bytes: int
    status: int | None = None
    close_code: int | None = None

    def line(self) -> str:
        status = ""
        if self.status is not None and self.status != 101:
            status = f" refused upgrade: HTTP {self.status};"
        close = f" close {self.close_code};" if self.close_code is not None else ""
        return (
            f"recorded {self.path}:{status} {self.duration_s:.1f} s;{close} "
            f"client {self.messages_client} msgs / {self.bytes_client:,} B, "
            f"server {self.messages_server} msgs / {self.bytes_server:,} B; "
            f"file {self.file_bytes:,} B"
        )


@dataclass
class _Session:
    writer: RecordingWriter
    t0_ns: int
    started: float
    redactions: list[str] = field(default_factory=list)
    redactor: Redactor = field(default_factory=Redactor)


def _is_upgrade(flow: http.HTTPFlow) -> bool:
    req = flow.request
    return (
        req.headers.get("upgrade", "").lower() == "websocket"
        and "upgrade" in req.headers.get("connection", "").lower()
    )


def _masked_subprotocol(red: Redactor, value: str | None) -> str | None:
    # A server that selects the openai-insecure-api-key.* element would echo the key.
    return None if value is None else red.subprotocols(value)[0]


class RealtimeRecorder:
    """Records each WebSocket flow into ``<out dir>/<UTC time>-<model>-<id>.rtrec``."""

    def __init__(self, on_session_end: Callable[[SessionSummary], None] | None = None) -> None:
        self.sessions: dict[str, _Session] = {}
        self.on_session_end = on_session_end
        self.out_dir = Path(DEFAULT_OUT_DIR)
        self.keep_messages = False
        self.mode = "mitmproxy"
        self.upstream: str | None = None
        # Flows whose file stopped taking writes: their messages are no longer forwarded.
        self._failed: set[str] = set()
        # Folders configure() created for rtrec_dir, until a recording is made in them.
        self._created_dirs: list[Path] = []
        # The closing handshake kept (what the other side sends after one side's
        # Close is recorded), pings seen, proxy-made closes (rtproxy.record.wsclosing);
        # installed first: wsclose wraps it.
        wsclosing.install()
        # Closes that tell the client the truth: 1011 when the upstream dropped, or
        # when this session's recording failed (see rtproxy.record.wsclose).
        wsclose.install()
        # Open flows by id, to close them with 1001 when rtproxy stops (going_away).
        self._flows: dict[str, http.HTTPFlow] = {}
        self._stopping = False
        # Audio packing's NumPy, imported now rather than on a session's first audio message.
        load_packer()

    def remove_unused_dirs(self) -> None:
        """Remove the folders made for ``rtrec_dir`` if they are still empty: a
        proxy that could not start leaves no empty recordings/ folder behind."""
        remove_empty_dirs(self._created_dirs)
        self._created_dirs = []

    # -- options ---------------------------------------------------------
    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option(
            "rtrec_dir", str, DEFAULT_OUT_DIR, "Folder where rtproxy writes .rtrec recordings."
        )
        loader.add_option(
            "rtrec_keep_messages",
            bool,
            False,
            "Keep WebSocket messages in mitmproxy's flows (for mitmweb's view). "
            "Off by default: rtproxy trims them so memory stays flat in long sessions.",
        )

    def configure(self, updated: set[str]) -> None:
        if "rtrec_dir" in updated:
            out = Path(ctx.options.rtrec_dir).expanduser()
            try:
                # Folders it creates are 0700 (recordings hold conversations); a
                # folder that cannot be made leaves none of its parents behind.
                created = make_private_dirs(out)
            except OSError as exc:
                raise exceptions.OptionsError(
                    f"rtrec_dir: cannot create {out}: {exc.strerror or exc}"
                ) from exc
            if not os.access(out, os.W_OK):
                remove_empty_dirs(created)
                raise exceptions.OptionsError(f"rtrec_dir: {out} is not writable")
            self.remove_unused_dirs()
            self.out_dir = out
            self._created_dirs = created
        if "rtrec_keep_messages" in updated:
            self.keep_messages = ctx.options.rtrec_keep_messages

    # -- file set-up -----------------------------------------------------
    def _open(self, flow: http.HTTPFlow, status: int) -> _Session:
        started = flow.request.timestamp_start or time.time()
        # Learn the session's credentials first: whatever echoes them later is removed too.
        red = Redactor()
        red.learn_request(flow.request.url, flow.request.headers.items(multi=True))
        url, q_redacted = red.url(ws_url(flow.request.url))
        name, short = recording_filename(started, model_from_url(flow.request.url))
        req_headers, h_redacted = red.headers(flow.request.headers.items(multi=True))
        resp = flow.response
        assert resp is not None
        resp_headers, rh_redacted = red.headers(resp.headers.items(multi=True))
        redactions = [f"query:{k}" for k in q_redacted]
        redactions += [f"request-header:{k}" for k in h_redacted]
        redactions += [f"response-header:{k}" for k in rh_redacted]
        body = b""
        if status != 101:
            body = resp.raw_content or b""
            if resp.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity"):
                # A gzip (br, zstd...) body is redacted as what it says: decoded. Stored
                # as it came when nothing is removed; else decoded, without the encoding.
                try:
                    plain = resp.get_content(strict=True) or b""
                except ValueError:
                    plain = None
                if plain is None:
                    body, changed = b"", bool(body)  # unreadable here: not stored
                else:
                    redacted, changed = red.payload(plain)
                    if changed:
                        body = redacted
                        resp_headers = [[k, v] for k, v in resp_headers
                                        if k.lower() not in ("content-encoding", "content-length")]
            else:
                body, changed = red.payload(body)
            if changed:
                redactions.append("response-body")
        reason = red.scrub(resp.reason or "")
        if reason != (resp.reason or ""):
            redactions.append("response-reason")
        client_addr = flow.client_conn.peername
        writer = start_recording(
            self.out_dir / name,
            session_id=short,
            started=started,
            url=url,
            model=model_from_url(flow.request.url),
            recorder=self.mode,
            upstream=self.upstream,
            # the header lists what the handshake lost; the body's redaction is in the end record
            redactions=[r for r in redactions if r != "response-body"],
            method=flow.request.method,
            request_path=red.url(flow.request.path)[0],
            http_version=flow.request.http_version,
            request_headers=req_headers,
            status=resp.status_code,
            reason=reason,
            response_headers=resp_headers,
            response_body=body,
            subprotocol=_masked_subprotocol(red, resp.headers.get("sec-websocket-protocol")),
            extensions=resp.headers.get("sec-websocket-extensions"),
            t_request=flow.request.timestamp_start,
            t_response=resp.timestamp_end or resp.timestamp_start,
            client=f"{client_addr[0]}:{client_addr[1]}" if client_addr else None,
        )
        return _Session(writer, time.monotonic_ns(), time.time(), redactions, red)

    def _finish(self, flow_id: str, sess: _Session, status: int | None, **end: object) -> None:
        w = sess.writer
        duration = (time.monotonic_ns() - sess.t0_ns) / 1e9
        try:
            w.close(duration_s=duration, redactions=sess.redactions, **end)
        except OSError as exc:
            log.error("rtproxy: could not finish %s: %s", w.path, exc)
        summary = SessionSummary(
            path=w.path,
            duration_s=duration,
            messages_client=w.messages[1],
            messages_server=w.messages[0],
            bytes_client=w.bytes[1],
            bytes_server=w.bytes[0],
            file_bytes=w.bytes_written,
            status=status,
            close_code=end.get("close_code"),  # type: ignore[arg-type]
        )
        if self.on_session_end:
            self.on_session_end(summary)
        else:
            log.info(summary.line())

    # -- hooks -----------------------------------------------------------
    def response(self, flow: http.HTTPFlow) -> None:
        """A refused upgrade (401, 403, ...) is a recording with no messages."""
        if flow.response is None or not _is_upgrade(flow):
            return
        if flow.response.status_code == 101:
            if flow.websocket is not None:
                # Open the file before the 101 reaches the client: if that fails, killing
                # the flow here refuses the session (mitmproxy ignores kills once the
                # WebSocket has started), so no traffic passes unrecorded.
                try:
                    self.sessions[flow.id] = self._open(flow, 101)
                except OSError as exc:
                    log.error("rtproxy: cannot create a recording in %s: %s; refusing the session", self.out_dir, exc)
                    flow.kill()
            return
        try:
            sess = self._open(flow, flow.response.status_code)
        except OSError as exc:
            log.error("rtproxy: cannot write a recording for %s: %s", redact_url(flow.request.url)[0], exc)
            return
        self._finish(flow.id, sess, flow.response.status_code, refused=True)

    def error(self, flow: http.HTTPFlow) -> None:
        """An upgrade that never reached the upstream is a recording too: the status the
        client got from the proxy (502), the error text, no messages."""
        if flow.response is None and flow.websocket is None and _is_upgrade(flow):
            msg = flow.error.msg if flow.error else "no response"
            url = redact_url(flow.request.url)[0]
            try:
                path = self._record_unreached(flow, msg)
            except OSError as exc:
                log.warning("rtproxy: %s: upstream not reached (%s); cannot record it: %s", url, msg, exc)
                return
            log.warning("rtproxy: %s: upstream not reached (%s); recorded as HTTP 502 in %s", url, msg, path)

    def _record_unreached(self, flow: http.HTTPFlow, msg: str) -> str:
        red = Redactor()
        red.learn_request(flow.request.url, flow.request.headers.items(multi=True))
        text, _ = red.payload(msg.encode("utf-8", "replace"))
        error = text.decode("utf-8", "replace")
        try:
            # The very response mitmproxy sends the client (its HTTP/1 layer's error page).
            from mitmproxy.proxy.layers.http._http1 import make_error_response

            raw = make_error_response(502, error)
        except ImportError:  # another mitmproxy: the status and the text are what matter
            raw = b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\n\r\n" + error.encode()
        head, _, body = raw.partition(b"\r\n\r\n")
        fields = [line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line]
        flow.response = http.Response.make(502, body, http.Headers([(k, v) for k, v in fields]))
        try:
            sess = self._open(flow, 502)
        finally:
            flow.response = None
        self._finish(flow.id, sess, 502, refused=True, error=error)
        return sess.writer.path

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        self._flows[flow.id] = flow
        if flow.id in self.sessions:
            return  # opened in response()
        try:
            self.sessions[flow.id] = self._open(flow, 101)
        except OSError as exc:
            # Better no session than an unrecorded one (too late to kill the flow
            # here): the client and the upstream are closed with 1011.
            log.error(
                "rtproxy: cannot create a recording in %s: %s; closing the session",
                self.out_dir,
                exc,
            )
            self._failed.add(flow.id)
            wsclose.request_close(flow, f"rtproxy: recording failed: {exc.strerror or exc}")

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        sess = self.sessions.get(flow.id)
        ws = flow.websocket
        assert ws is not None
        msg = ws.messages[-1]
        if flow.id in self._failed:
            msg.drop()
        elif sess is not None:
            try:
                content = msg.content
                parts = split_base64_audio(content) if msg.is_text else None
                red = sess.redactor
                # A text delta is also read with the deltas of its stream before it
                # (any text message: one whose text looks like base64 is split too).
                streamed = False
                if msg.is_text:
                    content, streamed = red.stream(content, msg.from_client)
                    if streamed:
                        parts = None
                changed = False
                # Look for secrets in the text around the audio: a 15 MiB append is
                # not scanned five times over.
                if red.might_hold_secrets(b"".join(parts[0::2]) if parts else content):
                    content, changed = red.payload(content)
                    if changed:
                        parts = None  # split again by the writer
                changed = changed or streamed
                sess.writer.write_message(
                    time.monotonic_ns() - sess.t0_ns,
                    msg.from_client,
                    msg.is_text,
                    content,
                    redacted=changed,
                    parts=parts,
                )
            except Exception as exc:  # noqa: BLE001 - any failure must stop the session, loudly
                what = self._record_failed(flow.id, sess, exc)
                msg.drop()
                # The client is told, not starved: close 1011 on both sides once
                # mitmproxy is done with this message.
                wsclose.request_close(flow, f"rtproxy: recording failed: {what}")
        if not self.keep_messages and len(ws.messages) > 1:
            # mitmproxy keeps every message of a live flow; the file has them now.
            del ws.messages[:-1]

    def _record_failed(self, flow_id: str, sess: _Session, exc: BaseException) -> str:
        """A message could not be recorded: stop forwarding this session and say why
        (returned, for the close reason).

        mitmproxy cannot kill a flow once its WebSocket has started: its messages
        are dropped from now on, so nothing passes unrecorded, and the caller
        closes it (:func:`rtproxy.record.wsclose.request_close`).
        """
        if isinstance(exc, OSError):
            what = f"{exc.strerror or exc}"
        elif isinstance(exc, RecordingError):
            what = exc.problem  # (the path is in the log line; a close reason holds 123 bytes)
        else:
            what = f"{type(exc).__name__}: {exc}"
        log.error(
            "rtproxy: recording %s failed: %s; this session's messages are no longer forwarded, and it is closed (1011)",
            sess.writer.path,
            what,
        )
        self.sessions.pop(flow_id, None)
        self._failed.add(flow_id)
        try:
            sess.writer.close(error=f"recording failed: {what}")
        except Exception:  # noqa: BLE001 - the descriptor is closed all the same
            pass
        return what

    def websocket_control(self, data: wsclosing.ControlFrame) -> None:
        """A Ping or Pong (rtproxy.record.wsclosing): a ``ping``/``pong`` record in the file."""
        sess = self.sessions.get(data.flow.id)
        if sess is None:
            return
        try:
            # A ping may carry anything, a key too: it is redacted like a message.
            payload, _ = sess.redactor.payload(bytes(data.payload or b""))
            payload = payload[:125]  # what a ping can carry (the marker is longer than some keys)
            sess.writer.write_control(
                data.kind, t_ns=time.monotonic_ns() - sess.t0_ns,
                **{"from": "client" if data.from_client else "server"}, payload=payload,
            )
        except OSError as exc:
            log.error("rtproxy: writing %s failed: %s", sess.writer.path, exc)

    async def going_away(self, proxyserver: object, timeout: float = wsclosing.CLOSE_TIMEOUT + 1.0) -> int:
        """rtproxy is stopping: close every open session on both sides with 1001 and wait
        (up to ``timeout`` s) until their files are complete. Returns how many were open."""
        import asyncio

        self._stopping = True
        flows = [f for fid, f in self._flows.items() if fid in self.sessions]
        for f in flows:
            wsclosing.close_flow(proxyserver, f, wsclosing.GOING_AWAY, "rtproxy stopped")
        deadline = time.monotonic() + timeout
        while any(f.id in self.sessions for f in flows) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return len(flows)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._failed.discard(flow.id)
        self._flows.pop(flow.id, None)
        sess = self.sessions.pop(flow.id, None)
        if sess is None:
            return
        ws = flow.websocket
        assert ws is not None
        t_ns = time.monotonic_ns() - sess.t0_ns
        closed_by = None if ws.closed_by_client is None else ("client" if ws.closed_by_client else "server")
        if closed_by is None and ws.close_code is not None:
            closed_by = "proxy"  # a close the proxy made (1001 when stopping, 1011...) always has its code
        error = flow.error.msg if flow.error else None
        if ws.close_code == 1006 and closed_by is not None:
            # No close frame: the TCP connection was dropped. The other side was
            # sent 1011 with this reason (rtproxy.record.wsclose), not a clean 1000.
            who, other = ("upstream", "client") if closed_by == "server" else ("client", "upstream")
            dropped = f"{who} dropped the connection without a close frame; the {other} was sent 1011"
            error = f"{dropped} ({error})" if error else dropped
        try:
            # A close reason may quote the key ("invalid api key sk-..."), as may the error.
            red = sess.redactor
            sess.writer.write_close(
                t_ns=t_ns,
                code=ws.close_code,
                reason=red.scrub(ws.close_reason) if ws.close_reason else ws.close_reason,
                closed_by=closed_by,
                error=red.scrub(error) if error else error,
            )
        except OSError as exc:
            log.error("rtproxy: writing %s failed: %s", sess.writer.path, exc)
        if not self.keep_messages:
            ws.messages.clear()
        if self._stopping and closed_by == "proxy":
            self._finish(flow.id, sess, 101, close_code=ws.close_code, stopped=True)
            return
        self._finish(flow.id, sess, 101, close_code=ws.close_code)

    def done(self) -> None:
        """Proxy shutting down: close out every open session in its file."""
        for flow_id, sess in list(self.sessions.items()):
            try:
                # The proxy closes these connections as it exits: that close is 1001
                # (going away), the code going_away() sends when it can.
                sess.writer.write_close(
                    t_ns=time.monotonic_ns() - sess.t0_ns,
                    code=wsclosing.GOING_AWAY,
                    reason="rtproxy stopped",
                    closed_by="proxy",
                    error="rtproxy stopped while the session was open",
                )
            except OSError:
                pass
            self._finish(flow_id, sess, 101, close_code=wsclosing.GOING_AWAY, stopped=True)
        self.sessions.clear()
        self._flows.clear()
