"""``rtproxy replay FILE --to URL``: send a recording's client side to a live endpoint.

The recorded client messages go out with the recorded timing (``pace="server"``:
each waits for the server event that came before it in the original run, within
a timeout, then keeps the recorded gap; ``pace="clock"``: recorded offsets only),
and the new session is written to a new .rtrec by :class:`RecordingWriter`, with
the same records and redactions the recorder writes, ready for ``rtproxy diff``.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import connect

from rtproxy import __version__
from rtproxy.errors import ClientReplayError
from rtproxy.io.format import RecordingWriter, open_recording, recording_filename, start_recording
from rtproxy.io.progress import Progress, reading
from rtproxy.io.safefile import make_private_dirs, remove_empty_dirs
from rtproxy.protocol.events import canonical_event_type, event_type, model_from_url
from rtproxy.protocol.redaction import MARKER, Redactor
from rtproxy.replay.substitute import IdAligner

__all__ = ["ClientReplayError", "ClientReplayResult", "parse_header", "target_url", "run_client_replay"]

_SKIP_HEADERS = frozenset(
    {
        "host",
        "connection",
        "upgrade",
        "content-length",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "authorization",
        "api-key",
    }
)


@dataclass
class ClientReplayResult:
    """What a client replay did; :meth:`line` is what the command prints."""

    path: str
    url: str
    sent: int = 0
    received: int = 0
    timeouts: int = 0
    status: int | None = None
    close_code: int | None = None
    close_reason: str | None = None
    closed_by: str | None = None
    substitutions: int = 0
    """Recorded server ids replaced by the live server's in the client messages sent."""
    substituted_messages: int = 0

    def line(self) -> str:
        if self.status is not None and self.status != 101:
            return f"client replay to {self.url}: upgrade refused with HTTP {self.status}; recorded to {self.path}"
        waits = f" ({self.timeouts} waits for a server event timed out)" if self.timeouts else ""
        subs = ""
        if self.substitutions:
            k, n = self.substitutions, self.substituted_messages
            subs = f"; {k} server id{'' if k == 1 else 's'} substituted in {n} message{'' if n == 1 else 's'}"
        return (
            f"client replay to {self.url}: sent {self.sent} client messages, received {self.received} "
            f"server messages{waits}; close {self.close_code} by {self.closed_by}; recorded to {self.path}{subs}"
        )


def parse_header(text: str) -> tuple[str, str]:
    """``"Name: value"`` -> (name, value); ValueError with a one-line message otherwise."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
        raise ValueError(f'--header {text!r}: expected "Name: value"')
    return name.strip(), value.strip()


def target_url(recorded: str | None, given: str) -> str:
    """The URL to connect to: ``given``, with the recorded path and query where it has none.

    ``http(s)://`` becomes ``ws(s)://``; a base URL ending in ``/v1`` gets ``/realtime``.
    """
    parts = urlsplit(given)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ClientReplayError(f"--to {given!r}: expected a URL like wss://api.openai.com/v1/realtime")
    rec = urlsplit(recorded or "")
    path = parts.path
    if path in ("", "/"):
        path = rec.path or "/v1/realtime"
    elif path.rstrip("/").endswith("/v1"):
        path = path.rstrip("/") + "/realtime"
    query = parts.query or rec.query
    return urlunsplit((scheme, parts.netloc, path, query, ""))


class _Live:
    """Server events received so far: when the k-th event of each type arrived."""

    def __init__(self) -> None:
        self.times: dict[str, list[int]] = defaultdict(list)
        self.changed = asyncio.Event()
        self.closed = False

    def add(self, typ: str | None, now: int) -> None:
        if typ and not typ.endswith(".delta"):
            self.times[typ].append(now)
        self.changed.set()

    async def wait(self, typ: str, k: int, deadline_ns: int) -> int | None:
        """Live time of the k-th ``typ`` event, or None at the deadline or close."""
        while True:
            got = self.times.get(typ)
            if got and len(got) >= k:
                return got[k - 1]
            rem = deadline_ns - time.monotonic_ns()
            if rem <= 0 or self.closed:
                return None
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), rem / 1e9)
            except TimeoutError:
                return None


    async def wait_closed(self, deadline_ns: int) -> None:
        """Until the server closes the connection, or the deadline."""
        while not self.closed:
            rem = deadline_ns - time.monotonic_ns()
            if rem <= 0:
                return
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), rem / 1e9)
            except TimeoutError:
                return


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def _sleep_until(t_ns: int) -> None:
    rem = t_ns - time.monotonic_ns()
    if rem > 0:
        await asyncio.sleep(rem / 1e9)


def _replay_headers(recorded: list[list[str]] | None, extra: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[str]]:
    """Recorded request headers worth sending again (not secrets), ``extra`` winning; and subprotocols."""
    names = {k.lower() for k, _ in extra}
    out: list[tuple[str, str]] = []
    subprotocols: list[str] = []
    for name, value in recorded or []:
        low = name.lower()
        if low == "sec-websocket-protocol":
            subprotocols += [p.strip() for p in value.split(",") if p.strip() and "REDACTED" not in p]
            continue
        if low in _SKIP_HEADERS or low in names or MARKER in value or low == "user-agent":
            continue
        out.append((name, value))
    return out + list(extra), subprotocols


async def _client_replay(
    file: str,
    url: str,
    out_dir: str,
    extra_headers: list[tuple[str, str]],
    pace: str,
    speed: float,
    timeout: float,
    exact: bool = False,
    progress: Progress | None = None,
) -> ClientReplayResult:
    reader = open_recording(file)
    header = reader.recording.header
    handshake = reader.recording.handshake or {}
    url = target_url(header.get("url") or handshake.get("url"), url)
    headers, subprotocols = _replay_headers(handshake.get("request_headers"), extra_headers)
    user_agent = next(
        (v for k, v in handshake.get("request_headers") or [] if k.lower() == "user-agent" and MARKER not in v),
        None,
    )
    out = Path(out_dir).expanduser()
    try:
        # 0700 whatever the umask, as the recorder's: the new run holds a conversation.
        created = make_private_dirs(out)
    except OSError as exc:
        raise ClientReplayError(f"--out-dir {out_dir}: cannot create it: {exc.strerror}") from None
    started = time.time()
    model = model_from_url(url)
    name, short = recording_filename(started, model)
    path = out / name
    # As the recorder: the credentials this run sends (--header, the URL's query) are
    # learned first, and removed wherever the live endpoint echoes them.
    red = Redactor()
    red.learn_request(url, headers)
    red_url, q_red = red.url(url)
    result = ClientReplayResult(str(path), red_url)

    t_request = time.time()
    try:
        ws = await connect(
            url,
            additional_headers=headers,
            subprotocols=subprotocols or None,  # type: ignore[arg-type]
            user_agent_header=user_agent or f"rtproxy/{__version__}",
            max_size=None,
            compression=None,
            open_timeout=timeout,
            ping_interval=None,
        )
    except websockets.InvalidStatus as exc:
        refusal = exc.response
        req_headers, _ = red.headers(headers)
        body, _ = red.payload(bytes(refusal.body or b""))
        writer = _start(
            path, header, red_url, model, q_red, file,
            request_path=_path_of(red_url), request_headers=req_headers, status=refusal.status_code,
            reason=red.scrub(refusal.reason_phrase or ""), response_headers=red.headers(refusal.headers.raw_items())[0],
            response_body=body, subprotocol=None, extensions=None, t_request=t_request, t_response=time.time(),
        )
        writer.close(duration_s=0.0, refused=True, replay_of=file)
        reader.close()
        result.status = refusal.status_code
        return result
    except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
        reader.close()
        remove_empty_dirs(created)  # no run: no empty folder left behind
        raise ClientReplayError(f"cannot connect to {red_url}: {exc}") from None

    t0 = time.monotonic_ns()
    req_headers, _ = red.headers(ws.request.headers.raw_items()) if ws.request else ([], [])
    resp = ws.response
    writer = _start(
        path, header, red_url, model, q_red, file,
        request_path=red.url(ws.request.path if ws.request else "")[0],
        request_headers=req_headers,
        status=resp.status_code if resp else 101,
        reason=resp.reason_phrase if resp else "Switching Protocols",
        response_headers=red.headers(resp.headers.raw_items())[0] if resp else [],
        response_body=b"",
        subprotocol=ws.subprotocol,
        extensions=resp.headers.get("Sec-WebSocket-Extensions") if resp else None,
        t_request=t_request,
        t_response=time.time(),
    )
    result.status = 101
    live = _Live()
    ids = None if exact else IdAligner()

    async def receive() -> None:
        try:
            async for data in ws:
                now = time.monotonic_ns()
                content = data.encode() if isinstance(data, str) else data
                typ = canonical_event_type(event_type(content)) if isinstance(data, str) else None
                if ids is not None and typ is not None:
                    ids.live(content)
                content, changed = red.message(content, False, isinstance(data, str))
                writer.write_message(now - t0, False, isinstance(data, str), content, redacted=changed)
                result.received += 1
                live.add(typ, now)
        except websockets.ConnectionClosed:
            pass
        finally:
            live.closed = True
            live.changed.set()

    receiver = asyncio.create_task(receive())
    scaled = (lambda ns: 0) if speed == 0 else (lambda ns: int(ns / speed))
    counts: dict[str, int] = defaultdict(int)
    anchor: tuple[str, int, int] | None = None  # (type, k-th, recorded t) of the last server milestone
    prev: tuple[int, int] | None = None  # (recorded t, live send time) of the previous client message
    closed_early = False
    try:
        for m in reading(reader.messages(), reader, progress, "replaying", every=64):
            if not m.from_client:
                typ = canonical_event_type(event_type(m.head)) if m.is_text else None
                if ids is not None and typ and not typ.endswith(".delta"):
                    ids.recorded(m.head)
                if typ and not typ.endswith(".delta"):
                    counts[typ] += 1
                    anchor = (typ, counts[typ], m.t_ns)
                continue
            if pace == "clock":
                due = t0 + scaled(m.t_ns)
            else:
                due = t0 + scaled(m.t_ns) if prev is None and anchor is None else 0
                if anchor is not None and (prev is None or anchor[2] >= prev[0]):
                    got = await live.wait(anchor[0], anchor[1], time.monotonic_ns() + int(timeout * 1e9))
                    if got is None:
                        result.timeouts += 1
                        got = time.monotonic_ns()
                    due = got + scaled(m.t_ns - anchor[2])
                if prev is not None:
                    due = max(due, prev[1] + scaled(m.t_ns - prev[0]))
            await _sleep_until(due)
            if live.closed:
                closed_early = True
                break
            content = m.content
            if ids is not None:
                # The ids the live server assigned, where the recording names the recorded ones.
                live_content = ids.apply(m)
                if live_content is not None:
                    content = live_content
            sent_at = time.monotonic_ns()
            try:
                await ws.send(content, text=m.is_text)
            except websockets.ConnectionClosed:
                closed_early = True
                break
            writer.write_message(sent_at - t0, True, m.is_text, content, redacted=m.redacted)
            if ids is not None:
                result.substitutions, result.substituted_messages = ids.subs.count, ids.subs.messages
            result.sent += 1
            prev = (m.t_ns, sent_at)
        close = reader.recording.close or {}
        if not closed_early:
            last_server_t = anchor[2] if anchor else 0
            if close.get("closed_by") == "server":
                await live.wait_closed(time.monotonic_ns() + int(timeout * 1e9))
            else:
                if anchor is not None:
                    got = await live.wait(anchor[0], anchor[1], time.monotonic_ns() + int(timeout * 1e9))
                    if got is None:
                        result.timeouts += 1
                    else:
                        await _sleep_until(got + scaled(max(0, int(close.get("t_ns") or 0) - last_server_t)))
                code = close.get("code")
                if not isinstance(code, int) or code in (1005, 1006):
                    code = 1000
                await ws.close(code, str(close.get("reason") or ""))
        await asyncio.wait_for(receiver, timeout)
    except TimeoutError:
        pass
    finally:
        receiver.cancel()
        await ws.close()
        reader.close()
        closed_by = None
        if ws.protocol.close_rcvd_then_sent is not None:
            closed_by = "server" if ws.protocol.close_rcvd_then_sent else "client"
        rcvd, sent = ws.protocol.close_rcvd, ws.protocol.close_sent
        frame = rcvd if closed_by == "server" else sent
        result.close_code = frame.code if frame else None
        result.close_reason = red.scrub(frame.reason) if frame else None
        result.closed_by = closed_by
        writer.write_close(
            t_ns=time.monotonic_ns() - t0, code=result.close_code, reason=result.close_reason, closed_by=closed_by
        )
        writer.close(duration_s=(time.monotonic_ns() - t0) / 1e9, replay_of=file, timeouts=result.timeouts)
    return result


def _start(
    path: Path, header: dict[str, Any], url: str, model: str | None, q_red: list[str], file: str,
    **handshake: Any,
) -> RecordingWriter:
    """The new run's file, its header and handshake written (``handshake``: start_recording's fields)."""
    return start_recording(
        path,
        session_id=path.stem.rsplit("-", 1)[-1],
        started=time.time(),
        url=url,
        model=model,
        recorder="rtproxy-replay/client",
        upstream=url,
        redactions=[f"query:{k}" for k in q_red],
        header_extra={"replay_of": file, "replay_of_session": header.get("session_id")},
        **handshake,
    )


def run_client_replay(
    file: str,
    url: str,
    out_dir: str,
    headers: list[tuple[str, str]],
    *,
    pace: str = "server",
    speed: float = 1.0,
    timeout: float = 10.0,
    exact: bool = False,
    progress: Progress | None = None,
) -> ClientReplayResult:
    """Run one client replay; the new recording's path is in the result
    (``progress``: how far through the recording, :mod:`rtproxy.io.progress`).

    Raises :class:`rtproxy.io.format.RecordingError` for a bad file and
    :class:`ClientReplayError` when the endpoint cannot be reached.
    """
    return asyncio.run(_client_replay(file, url, out_dir, headers, pace, speed, timeout, exact, progress))
