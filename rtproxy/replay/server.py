"""``rtproxy replay FILE``: a WebSocket server that answers like the recorded endpoint.

A thin shell around :class:`rtproxy.replay.script.ReplayScheduler`: it accepts any
path and query, echoes the recorded subprotocol (or replays a refused upgrade
as that refusal), feeds the client's messages to the scheduler and sends each
recorded server message, byte-exact, when the scheduler says it is due. Every
connection gets its own replay, streamed from the file (nothing is loaded
whole), so an hour-long recording starts at once.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable, Sequence

import websockets
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from rtproxy.errors import RecordingError
from rtproxy.io.format import RecordingReader, open_recording
from rtproxy.protocol.values import sendable_close
from rtproxy.view.events import Close, clean_header, served_handshake
from rtproxy.replay.script import Divergence, ReplayScheduler, client_events, lateness_stats, server_steps
from rtproxy.replay.faults import (
    Action, CloseWith, Delay, FaultPlan, FaultSession, FiredFault, Send, Skip, Stall, describe, plan_faults, refusal,
)
from rtproxy.protocol.events import event_type

__all__ = [
    "ReplayConfig",
    "SessionReport",
    "serve_replay",
    "run_replay_server",
    "STRICT_CLOSE_CODE",
    "load_summary",
    "load_fault_plan",
]

log = logging.getLogger(__name__)

#: Close code sent to a client that diverged from the recording under ``--strict``.
STRICT_CLOSE_CODE = 4900
#: Server messages whose bytes are kept for other sessions of the same recording
#: (the most recently decoded; a minute or so of a voice session).
_CACHE_MESSAGES = 4096
#: Largest message kept there (so the cache holds at most 4096 x 64 KiB = 256 MiB; real
#: deltas are a few KiB each; a crafted recording's huge messages are read again).
_CACHE_MAX_MESSAGE = 64 << 10
#: Use a timerfd for send times (Linux); False: the event loop's timers (a baseline).
_PRECISE = True
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "upgrade", "date", "server"})


@dataclass
class ReplayConfig:
    """What ``rtproxy replay FILE`` (server mode) was asked to do."""

    file: str
    listen_host: str = "127.0.0.1"
    listen_port: int = 8765
    speed: float = 1.0
    pace: str = "client"
    strict: bool = False
    once: bool = False
    wait_timeout: float = 10.0
    """Seconds to wait for a client message the recording expects (client pace); 0: forever."""
    exact: bool = False
    """Send every server message byte-exact: no values the live client chose put in (``--exact``)."""
    tls: Any = None
    """An ``ssl.SSLContext`` to serve wss:// with (``--tls``), or None for ws://."""
    faults: Sequence[str] = ()
    """``--fault SPEC`` lines (:mod:`rtproxy.replay.faults`): checked against the recording
    before the server listens (a bad one raises FaultSpecError), then injected in every session."""


@dataclass
class SessionReport:
    """One replayed session, as printed at its end."""

    number: int
    peer: str
    sent: int = 0
    divergences: list[Divergence] = field(default_factory=list)
    lateness_ns: list[int] = field(default_factory=list)
    refused_status: int | None = None
    close: str = ""
    complete: bool = False
    substitutions: int = 0
    """Recorded values replaced by the ones the live client chose (ids, event ids, metadata)."""
    substituted_messages: int = 0
    client_events_reached: int | None = None
    """Recorded client events (appends aside) the live client had reached when the
    session ended: matched, skipped past or given up on. None for a refused upgrade."""
    faults: list[FiredFault] = field(default_factory=list)
    """The faults injected in this session, in the order they fired, with when."""
    faults_pending: list[str] = field(default_factory=list)
    """SPECs that never fired (the session ended before their event or time)."""
    ended_by_fault: str | None = None
    """The SPEC that ended the session (close, expire, stall, refuse), if one did."""

    @property
    def diverged(self) -> bool:
        return bool(self.divergences)

    def line(self) -> str:
        """One line: messages sent, divergences, lateness p50/p99/max against the schedule."""
        head = f"replay session #{self.number} ({self.peer}):"
        if self.refused_status is not None:
            how = f"by the fault {self.ended_by_fault!r}" if self.ended_by_fault else "as recorded"
            return f"{head} refused the upgrade with HTTP {self.refused_status}, {how}"
        p50, p99, mx = lateness_stats(self.lateness_ns)
        done = "" if self.complete else " (client left before the end)"
        n = len(self.divergences)
        subs = ""
        if self.substitutions:
            k = self.substitutions
            subs = (
                f"; {k} value{'' if k == 1 else 's'} the client chose substituted "
                f"in {self.substituted_messages} message{'' if self.substituted_messages == 1 else 's'}"
            )
        faults = f"; {describe(self.faults)}" if self.faults else ""
        if self.faults_pending:
            faults += f"; fault{'s' if len(self.faults_pending) > 1 else ''} not reached: " + ", ".join(
                repr(s) for s in self.faults_pending
            )
        return (
            f"{head} sent {self.sent} server messages{done}; {n} divergence{'' if n == 1 else 's'}; "
            f"lateness p50 {p50:.3f} ms, p99 {p99:.3f} ms, max {mx:.3f} ms; {self.close}{subs}{faults}"
        )


def load_summary(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, handshake) of a recording, read without its messages.

    Raises :class:`rtproxy.io.format.RecordingError` on a bad file.
    """
    with open_recording(path) as reader:
        rec = reader.recording
        return clean_header(rec.header), served_handshake(path, rec.handshake)


def load_fault_plan(path: str, specs: Sequence[str]) -> FaultPlan:
    """Where each ``--fault`` SPEC fires in the recording at ``path`` (read once).

    Raises :class:`rtproxy.errors.FaultSpecError` for a SPEC that does not parse or
    names an event the recording does not have, RecordingError for a bad file."""
    with open_recording(path) as reader:
        return plan_faults(specs, reader.messages(), header=reader.recording.header)


#: The longest a replay waits for one recorded gap (about 36 years): longer times
#: do not fit the timer. The session still ends when the client leaves or the
#: server stops.
_MAX_SLEEP_NS = 1 << 60


class _Clock:
    """Wakes tasks at times on the monotonic clock, to within tens of microseconds.

    asyncio's own timers wake through epoll's millisecond timeout (up to 1 ms
    late). On Linux one timerfd in the event loop, armed for the earliest
    waiter, wakes it at the exact time without spinning; every connection of
    the server shares it, so messages due together go out in one wake-up.
    Elsewhere (or with ``_PRECISE`` off) this falls back to ``asyncio.sleep``.
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.fd: int | None = None
        self.heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self.armed: int | None = None
        self._seq = 0
        if _PRECISE and hasattr(os, "timerfd_create"):
            try:
                self.fd = os.timerfd_create(time.CLOCK_MONOTONIC, flags=os.TFD_NONBLOCK | os.TFD_CLOEXEC)
                self.loop.add_reader(self.fd, self._fired)
            except (OSError, NotImplementedError):
                self.close()

    def _arm(self) -> None:
        assert self.fd is not None
        while self.heap and self.heap[0][2].done():
            heapq.heappop(self.heap)  # cancelled waiters
        t = self.heap[0][0] if self.heap else 0
        if t != self.armed:
            os.timerfd_settime_ns(self.fd, flags=os.TFD_TIMER_ABSTIME, initial=t)
            self.armed = t

    def _fired(self) -> None:
        assert self.fd is not None
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            pass
        self.armed = None
        now = time.monotonic_ns()
        heap = self.heap
        while heap and heap[0][0] <= now:
            _, _, fut = heapq.heappop(heap)
            if not fut.done():
                fut.set_result(None)
        self._arm()

    async def sleep_until(self, t_ns: int) -> None:
        now = time.monotonic_ns()
        rem = t_ns - now
        if rem <= 0:
            return
        if rem > _MAX_SLEEP_NS:  # a crafted gap of 10^15 ms (or 2^64 ns): past what a timer holds
            t_ns, rem = now + _MAX_SLEEP_NS, _MAX_SLEEP_NS
        if self.fd is None:
            await asyncio.sleep(rem / 1e9)
            return
        fut: asyncio.Future[None] = self.loop.create_future()
        self._seq += 1
        heapq.heappush(self.heap, (t_ns, self._seq, fut))
        if self.heap[0][2] is fut:
            self._arm()
        await fut

    def close(self) -> None:
        if self.fd is not None:
            try:
                self.loop.remove_reader(self.fd)
            finally:
                os.close(self.fd)
                self.fd = None


class ReplayServer:
    """The connection handler and handshake hooks for one recording."""

    def __init__(
        self,
        cfg: ReplayConfig,
        handshake: dict[str, Any],
        on_divergence: Callable[[int, Divergence], None],
        on_report: Callable[[SessionReport], None],
    ) -> None:
        self.cfg = cfg
        self.handshake = handshake
        self.on_divergence = on_divergence
        self.on_report = on_report
        self.sessions = 0
        self.diverged = False
        self.finished = asyncio.Event()
        #: A damaged recording met mid-session (the server stops; serve_replay raises it).
        self.failed: RecordingError | None = None
        self.clock: _Clock | None = None
        self.contents: dict[int, bytes] = {}
        #: Where the ``--fault`` SPECs fire (serve_replay plans them before listening).
        self.fault_plan: FaultPlan | None = None

    # -- handshake ------------------------------------------------------------
    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        refuse = self.fault_plan.refusal(self.sessions + 1) if self.fault_plan else None
        if refuse is not None:
            return self._refuse(conn, request, refuse.fault)
        status = self.handshake.get("status")
        if status in (None, 101):
            return None
        self.sessions += 1
        body = self.handshake.get("response_body") or b""
        if isinstance(body, str):
            body = body.encode()
        headers = Headers(
            [(k, v) for k, v in self.handshake.get("response_headers") or [] if k.lower() not in _HOP_HEADERS]
        )
        headers["Content-Length"] = str(len(body))
        try:
            reason = self.handshake.get("reason") or HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        peer = _peer(conn)
        report = SessionReport(self.sessions, peer, refused_status=status)
        self.on_report(report)
        if self.cfg.once:
            asyncio.get_running_loop().call_later(0.2, self.finished.set)
        return Response(status, reason, headers, body)

    def _refuse(self, conn: ServerConnection, request: Request, fault: Any) -> Response:
        """A ``refuse`` fault: the upgrade answered with its status and the API's JSON body."""
        self.sessions += 1
        status, body = refusal(fault, _api_key(request))
        report = SessionReport(self.sessions, _peer(conn), refused_status=status, ended_by_fault=fault.spec)
        report.faults = [FiredFault(fault.spec, 0.0, f"HTTP {status}")]
        self.on_report(report)
        if self.cfg.once:
            asyncio.get_running_loop().call_later(0.2, self.finished.set)
        headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        return Response(status, phrase, headers, body)

    def select_subprotocol(
        self, conn: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        recorded = self.handshake.get("subprotocol")
        return Subprotocol(recorded) if recorded and recorded in offered else None

    # -- one session ----------------------------------------------------------
    async def handler(self, ws: ServerConnection) -> None:
        self.sessions += 1
        report = SessionReport(self.sessions, _peer(ws))
        cfg = self.cfg
        r_server = open_recording(cfg.file)
        r_client = open_recording(cfg.file)
        sched = ReplayScheduler(
            server_steps(r_server.messages()), client_events(r_client.messages()), pace=cfg.pace, speed=cfg.speed,
            wait_timeout_ns=int(cfg.wait_timeout * 1e9), substitute=not cfg.exact,
        )
        sched.start(time.monotonic_ns())
        progress = asyncio.Event()
        strict_close: list[Divergence] = []
        assert sched.start_ns is not None
        faults = FaultSession(self.fault_plan, sched.start_ns) if self.fault_plan else None
        fault_end: list[str] = []  # set once a fault closed or stalled the session

        async def receive() -> None:
            try:
                while True:
                    data = await ws.recv()
                    now = time.monotonic_ns()
                    is_text = isinstance(data, str)
                    # websockets checked the UTF-8, so encoding gives back the frame's bytes
                    content = data.encode() if isinstance(data, str) else data
                    if fault_end:
                        continue  # a fault ended the replay: what the client says now is its reaction
                    found = sched.client_message(now, is_text, content)
                    for d in found:
                        report.divergences.append(d)
                        self.on_divergence(report.number, d)
                    if found and cfg.strict:
                        # Stop the sender (it may be asleep until its next message), then close.
                        strict_close.append(found[0])
                        sender.cancel()
                        await self._close_strict(ws, found[0], report)
                        return
                    if faults is not None:
                        typ = event_type(content) if is_text else None
                        acts = faults.client(now, typ, content)
                        if acts:
                            await self._faulted(ws, acts, sched, report, faults, fault_end, now, sender)
                    progress.set()
            except websockets.ConnectionClosed:
                return

        async def timed(clock: _Clock) -> None:
            assert faults is not None
            while (t := faults.next_timer()) is not None:
                await clock.sleep_until(t)
                now = time.monotonic_ns()
                await self._faulted(ws, faults.timer(now), sched, report, faults, fault_end, now, sender)
                progress.set()

        if self.clock is None:
            self.clock = _Clock()
        receiver = asyncio.create_task(receive())
        sender = asyncio.create_task(
            self._send_all(
                ws, sched, report, progress, strict_close, receiver, r_server, self.clock, self.cfg, faults, fault_end
            )
        )
        timer = asyncio.create_task(timed(self.clock)) if faults is not None and faults.next_timer() else None
        stopping = asyncio.ensure_future(self.finished.wait())
        try:
            # The sender may sleep through a recorded gap: a client that leaves, a damaged
            # client side, or the server stopping ends the session there and then.
            await asyncio.wait({sender, receiver, stopping}, return_when=asyncio.FIRST_COMPLETED)
            got: BaseException | None = None  # what ended the receiver (damage on the client side)
            if not sender.done():
                got = None if not receiver.done() or receiver.cancelled() else receiver.exception()
                if got is None and stopping.done() and not receiver.done():
                    report.close = "the replay server stopped"
                if not strict_close:  # (a --strict close stops the sender itself)
                    sender.cancel()
                await asyncio.wait({sender})
            exc = got or (None if sender.cancelled() else sender.exception())
            if isinstance(exc, RecordingError):
                # The file is damaged mid-stream: every session would stop at the same
                # place. The server stops, and the command exits 2 saying where.
                report.close = f"replay stopped: {exc.problem}"
                self.failed = exc
                self.finished.set()
            elif exc is not None and not isinstance(exc, websockets.ConnectionClosed):
                log.error("rtproxy replay: session #%d failed: %r", report.number, exc)
                report.close = f"replay failed: {exc!r}"
            if strict_close:
                await asyncio.wait({receiver}, timeout=10)  # let the strict close complete
            elif fault_end:
                # A fault closed the session (let the close complete) or stalled it: the
                # connection stays open, reading (pings answered), until the client leaves.
                stalled = report.ended_by_fault is not None and not report.close
                await asyncio.wait({receiver, stopping}, timeout=None if stalled else 10,
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            sender.cancel()
            if timer is not None:
                timer.cancel()
            receiver.cancel()
            try:
                await receiver
            except (asyncio.CancelledError, Exception):
                pass
            r_server.close()
            r_client.close()
            if report.close.startswith(("replay stopped", "replay failed")) and ws.close_code is None:
                # The client learns the replay broke off (1011), not that the session ended.
                try:
                    await ws.close(1011, "rtproxy replay stopped: see the replay's output")
                except Exception:  # noqa: BLE001 - the connection may be gone already
                    pass
            if sched.start_ns is not None:
                for d in sched.end(time.monotonic_ns()):
                    report.divergences.append(d)
                    self.on_divergence(report.number, d)
            report.client_events_reached = sched.cursor
            if not report.close:
                code = ws.close_code
                report.close = f"closed by the client ({code})" if code is not None else "connection lost"
            if report.diverged:
                self.diverged = True
            report.substitutions = sched.subs.count
            report.substituted_messages = sched.subs.messages
            if faults is not None:
                report.faults = list(faults.fired)
                report.faults_pending = faults.pending
            self.on_report(report)
            if cfg.once:
                self.finished.set()

    async def _send_all(
        self,
        ws: ServerConnection,
        sched: ReplayScheduler,
        report: SessionReport,
        progress: asyncio.Event,
        strict_close: list[Divergence],
        receiver: asyncio.Task[None],
        reader: RecordingReader,
        timer: _Clock,
        cfg: ReplayConfig,
        faults: FaultSession | None = None,
        fault_end: list[str] | None = None,
    ) -> None:
        last_t = 0
        ended: list[str] = fault_end if fault_end is not None else []
        while True:
            if strict_close:
                return
            nxt = sched.next_send()
            if nxt is None:
                if sched.finished:
                    break
                progress.clear()
                deadline = sched.next_deadline()
                wait = None if deadline is None else max(0.0, (deadline - time.monotonic_ns()) / 1e9)
                waiter = asyncio.ensure_future(progress.wait())
                done, _ = await asyncio.wait(
                    {waiter, receiver}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                if waiter in done:
                    continue
                waiter.cancel()
                if receiver in done or strict_close:
                    return  # the client left, or was closed under --strict
                # Nothing arrived in time: the scheduler reports it and lets the replay go on.
                found = sched.timeout(time.monotonic_ns())
                for d in found:
                    report.divergences.append(d)
                    self.on_divergence(report.number, d)
                if found and cfg.strict:
                    strict_close.append(found[0])
                    await self._close_strict(ws, found[0], report)
                    return
                continue
            due, step = nxt
            if faults is not None:
                moved = faults.delay_before(step.index, time.monotonic_ns())
                if moved is not None:
                    sched.delay(due + moved.ns, moved.ns)  # this message and the rest go out later
                    continue
            # Sessions of one recording send the same bytes: decode each message once.
            cache = self.contents
            data = cache.get(step.index)
            if data is None:
                data = step.msg.content
                if len(data) <= _CACHE_MAX_MESSAGE:  # a crafted file's 60 MiB messages are not kept
                    cache[step.index] = data
                    if len(cache) > _CACHE_MESSAGES:
                        del cache[next(iter(cache))]
            if time.monotonic_ns() < due:
                await timer.sleep_until(due)
            if strict_close or ended:
                return
            if faults is not None:
                again = sched.next_send()
                if again is not None and again[0] > time.monotonic_ns():
                    continue  # a fault moved the schedule while this waited
                todo = faults.before(step.index, time.monotonic_ns())
                if todo:
                    what = await self._faulted(ws, todo, sched, report, faults, ended, due, None)
                    if what == "end":
                        return
                    if what == "skip":
                        sched.pop()  # never sent; the schedule goes on as if it had been
                        continue
            # The values this client chose in place of the recorded ones (learned up to now:
            # the client message a step answers is in before the step is due).
            live = sched.substitute(step.msg, data)
            if live is not None:
                data = live
            now = time.monotonic_ns()
            await ws.send(data, text=step.msg.is_text)
            report.lateness_ns.append(max(0, now - due))
            report.sent += 1
            last_t = step.t_ns
            sched.pop()
            if faults is not None:
                todo = faults.after(step.index, data, now)
                if todo and await self._faulted(ws, todo, sched, report, faults, ended, due, None) == "end":
                    return
        report.complete = True
        # The close record through the event view (typed, checked: a crafted t_ns or code is None).
        close = Close.from_record(reader.recording.close)
        if close is not None and close.by == "server" and close.code not in (None, 1005, 1006):
            base = sched.last_due() or time.monotonic_ns()
            t_close = int(close.t * 1e9) if close.t is not None else last_t
            await timer.sleep_until(base + sched.scaled(max(0, t_close - last_t)))
            code, reason = sendable_close(close.code, close.reason)
            report.close = f"closed with {code} {reason!r} as recorded"
            await ws.close(code, reason)
            return
        if close is not None and close.by == "server" and close.code == 1006:
            report.close = "connection dropped as recorded (1006)"
            ws.transport.abort()
            return
        # The client closed (or the recording ends open): wait for the client, then report.
        await receiver

    async def _faulted(
        self,
        ws: ServerConnection,
        actions: list[Action],
        sched: ReplayScheduler,
        report: SessionReport,
        faults: FaultSession,
        fault_end: list[str],
        base_ns: int,
        sender: asyncio.Task[None] | None,
    ) -> str:
        """Carry out what the faults asked. Returns "end" (closed or stalled), "skip" (the
        recorded message about to go out is not sent) or "". ``base_ns``: when the schedule
        is moved from (the due time of the message a fault fired at, or now); ``sender``:
        the sending task, stopped when a fault from elsewhere ends the session."""
        what = ""
        for a in actions:
            if isinstance(a, Send):
                await ws.send(a.data, text=True)
            elif isinstance(a, Skip):
                what = "skip"
            elif isinstance(a, Delay):
                sched.delay(base_ns + a.ns, a.ns)
            elif isinstance(a, (CloseWith, Stall)):
                fault_end.append(faults.ended or "")
                report.ended_by_fault = faults.ended
                if sender is not None:
                    sender.cancel()
                if isinstance(a, CloseWith):
                    report.close = f"closed with {a.code} {a.reason!r} by a fault"
                    await ws.close(a.code, a.reason)
                return "end"
        return what

    async def _close_strict(self, ws: ServerConnection, d: Divergence, report: SessionReport) -> None:
        reason = d.message().removeprefix("divergence: ")
        # The recorded values it quotes may hold lone surrogates (from JSON escapes),
        # which a close reason (UTF-8) cannot: shown as escapes.
        enc = reason.encode("utf-8", "backslashreplace")
        reason = enc.decode("utf-8")
        if len(enc) > 123:
            reason = enc[:120].decode("utf-8", "ignore") + "..."
        report.close = f"closed with {STRICT_CLOSE_CODE} (--strict, diverged)"
        await ws.close(STRICT_CLOSE_CODE, reason)


def _api_key(request: Request) -> str | None:
    """The API key a client sent (Authorization: Bearer, api-key, or the browser subprotocol)."""
    auth = request.headers.get("Authorization") or ""
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    if request.headers.get("api-key"):
        return request.headers["api-key"].strip()
    for proto in (request.headers.get("Sec-WebSocket-Protocol") or "").split(","):
        proto = proto.strip()
        if proto.startswith("openai-insecure-api-key."):
            return proto[len("openai-insecure-api-key."):] or None
    return None


def _peer(conn: ServerConnection) -> str:
    addr = conn.remote_address
    return f"{addr[0]}:{addr[1]}" if addr else "?"


async def serve_replay(
    cfg: ReplayConfig,
    handshake: dict[str, Any],
    on_ready: Callable[[int], None],
    on_divergence: Callable[[int, Divergence], None],
    on_report: Callable[[SessionReport], None],
    stop: asyncio.Event | None = None,
    on_server: Callable[[ReplayServer], None] | None = None,
) -> int:
    """Serve in the running loop until ``stop`` is set, SIGINT/SIGTERM (when ``stop`` is
    None), or the first session ends with ``cfg.once``. Returns 1 if a session diverged.

    ``on_server`` is called with the :class:`ReplayServer` before it serves (in-process
    users, such as the pytest plugin, count its sessions or wrap its ``handler``)."""
    app = ReplayServer(cfg, handshake, on_divergence, on_report)
    if cfg.faults:
        app.fault_plan = load_fault_plan(cfg.file, cfg.faults)  # a bad SPEC stops here, before listening
    if on_server is not None:
        on_server(app)
    if stop is not None:
        app.finished = stop
    else:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, app.finished.set)
    async with serve(
        app.handler,
        cfg.listen_host,
        cfg.listen_port,
        process_request=app.process_request,
        select_subprotocol=app.select_subprotocol,
        max_size=None,
        compression=None,
        ping_interval=None,
        ssl=cfg.tls,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        on_ready(port)
        await app.finished.wait()
    if app.clock is not None:
        app.clock.close()
    if app.failed is not None:
        raise app.failed
    return 1 if app.diverged else 0


def run_replay_server(
    cfg: ReplayConfig,
    handshake: dict[str, Any],
    on_ready: Callable[[int], None],
    on_divergence: Callable[[int, Divergence], None],
    on_report: Callable[[SessionReport], None],
) -> int:
    """Serve until SIGINT/SIGTERM (or the first session with ``once``).

    Returns the exit status: 1 when a session diverged, else 0. Raises OSError
    when the port cannot be bound.
    """
    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    # A client that floods pings and leaves: one "socket.send() raised exception." per
    # frame still queued (12,794 lines for 20,000 pings), nothing a user can act on.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    return asyncio.run(serve_replay(cfg, handshake, on_ready, on_divergence, on_report))
