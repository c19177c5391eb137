"""Helpers for tests and bug reports: build a valid recording from a list of events.

::

    from rtproxy.testing import make_recording

    make_recording("bug.rtrec", [
        (0, "server", {"type": "session.created", "session": {}}),
        (120, "client", {"type": "response.create"}),
        (150, "server", {"type": "error", "error": {"code": "conversation_already_has_active_response"}}),
    ])

``make_recording`` is pure: no sockets; importing this module loads nothing heavy.

:class:`ReplayServer` runs ``rtproxy replay FILE`` in a thread of this process on a
free port (websockets is imported when one starts), for tests outside pytest; the
pytest plugin (``rtproxy.pytest_plugin``, docs/PYTEST.md) is built on it.
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
                data, changed = red.message(data, side == "client", is_text)
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


# ----------------------------------------------------------------- replay server
# A replay server running in a thread of its own, for tests (the pytest plugin uses
# it; so can unittest or a script). Imports websockets only when one is started.

import contextvars  # noqa: E402
import dataclasses  # noqa: E402
import fnmatch  # noqa: E402
import threading  # noqa: E402
from functools import cached_property  # noqa: E402
from urllib.parse import parse_qs, urlsplit  # noqa: E402

__all__ += ["ReplayServer", "ReplaySession", "RecordedEvent"]

_LIVE_TAP: contextvars.ContextVar[Any] = contextvars.ContextVar("rtproxy_live_tap", default=None)


@dataclasses.dataclass(frozen=True, slots=True)
class RecordedEvent:
    """A message of a cassette: its index (as ``rtproxy show`` counts them), time, side, type."""

    index: int
    t_ms: float
    side: str
    type: str | None

    def label(self) -> str:
        return f"#{self.index} {self.type or '(not a JSON event)'} at {self.t_ms:.1f} ms"


class ReplaySession:
    """One WebSocket connection served by a :class:`ReplayServer`, once it ended.

    ``divergences`` are one-line texts (``divergence_details`` the
    :class:`~rtproxy.replay.script.Divergence` values), ``substitutions`` how many
    ids the replay substituted (0 until the replay reports them), ``findings`` what
    ``rtproxy check`` finds in the live run, ``live`` that run as an ``.rtrec``
    (the app's messages and what the replay sent; None for a refused upgrade).
    """

    def __init__(self, report: Any, cassette: Path, live: Path | None) -> None:
        self.report = report
        self.cassette = cassette
        self.live = live
        self.number: int = report.number
        self.divergence_details: list[Any] = list(report.divergences)
        self.divergences: list[str] = [d.message() for d in self.divergence_details]
        subs = getattr(report, "substitutions", 0)
        self.substitutions: int = len(subs) if isinstance(subs, (list, tuple, dict)) else int(subs or 0)
        #: The faults injected (``faults=``): ``.spec``, ``.t_ms`` (since the handshake), ``.detail``.
        self.faults: list[Any] = list(getattr(report, "faults", None) or [])

    def __repr__(self) -> str:
        return f"<ReplaySession #{self.number}: {len(self.divergences)} divergences; {self.report.close}>"

    @property
    def diverged(self) -> bool:
        return bool(self.divergences)

    @property
    def refused(self) -> bool:
        return self.report.refused_status is not None

    @property
    def complete(self) -> bool:
        """Every recorded server message was sent."""
        return bool(self.report.complete)

    @cached_property
    def findings(self) -> list[Any]:
        """``rtproxy check`` findings on the live run (all rules, default settings)."""
        return self.check()

    def check(self, select: Any = None, ignore: Any = None) -> list[Any]:
        """``rtproxy check`` on the live run: Finding objects (``.to_dict()`` gives the
        fields of ``check --format json``)."""
        if self.live is None:
            return []
        return run_check(self.live, select=select, ignore=ignore)

    def unconsumed(self, allow: Iterable[str] = ()) -> tuple[list[RecordedEvent], list[RecordedEvent]]:
        """(client events never sent, server events never delivered) of the cassette,
        leaving out server events whose type matches a glob in ``allow``."""
        if self.refused:
            return [], []
        from rtproxy.io.format import open_recording
        from rtproxy.protocol.events import event_type
        from rtproxy.replay.script import client_events

        reached = self.report.client_events_reached
        client: list[RecordedEvent] = []
        if reached is not None:
            with open_recording(self.cassette) as r:
                for ev in client_events(r.messages()):
                    if ev.type is not None and ev.index >= 0 and ev.ordinal >= reached:
                        client.append(RecordedEvent(ev.index, ev.t_ns / 1e6, "client", ev.type))
        server: list[RecordedEvent] = []
        if not self.complete:
            globs = list(allow)
            n = 0
            with open_recording(self.cassette) as r:
                for i, m in enumerate(r.messages()):
                    if m.from_client:
                        continue
                    n += 1
                    if n <= self.report.sent:
                        continue
                    typ = event_type(m.head) if m.is_text else None
                    if typ is not None and any(fnmatch.fnmatchcase(typ, g) for g in globs):
                        continue
                    server.append(RecordedEvent(i, m.t_ns / 1e6, "server", typ))
        return client, server


def run_check(path: str | os.PathLike[str], select: Any = None, ignore: Any = None) -> list[Any]:
    """``rtproxy check`` on one recording (``rtproxy.check.check_file``)."""
    try:
        from rtproxy.check import check_file  # type: ignore[attr-defined]
    except ImportError as exc:
        raise RuntimeError(
            f"rtproxy check is not available in this rtproxy ({exc}); findings need rtproxy.check.check_file"
        ) from None
    kw: dict[str, Any] = {}
    if select is not None:
        kw["select"] = select
    if ignore is not None:
        kw["ignore"] = ignore
    return list(check_file(str(path), **kw))


class _Tap:
    """A server connection that writes what passes through it to a live ``.rtrec``."""

    def __init__(self, ws: Any, path: Path, cassette: Path, port: int) -> None:
        from rtproxy.io.format import start_recording

        self._ws = ws
        self.path = path
        self.report: Any = None
        self._red = Redactor()
        self._t0 = time.monotonic_ns()
        req_path = ws.request.path if ws.request is not None else "/"
        query = parse_qs(urlsplit(req_path).query)
        red_path, _ = self._red.url(f"ws://127.0.0.1:{port}{req_path}")
        self._w = start_recording(
            path, url=red_path, started=time.time(), recorder="rtproxy.testing (live run of a replay)",
            model=next(iter(query.get("model") or []), None), subprotocol=ws.subprotocol,
            header_extra={"replay_of": str(cassette)},
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)

    def _write(self, from_client: bool, data: str | bytes, is_text: bool) -> None:
        if self._w.closed:
            return
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
        raw, changed = self._red.message(raw, from_client, is_text)
        self._w.write_message(time.monotonic_ns() - self._t0, from_client, is_text, raw, redacted=changed)

    async def recv(self, *args: Any, **kwargs: Any) -> Any:
        data = await self._ws.recv(*args, **kwargs)
        self._write(True, data, isinstance(data, str))
        return data

    async def send(self, message: Any, text: bool | None = None) -> None:
        await self._ws.send(message, text=text)
        is_text = isinstance(message, str) if text is None else text
        self._write(False, message, is_text)

    async def __aiter__(self) -> Any:
        import websockets

        try:
            while True:
                yield await self.recv()
        except websockets.ConnectionClosedOK:
            return

    def finish(self) -> None:
        if self._w.closed:
            return
        t = time.monotonic_ns() - self._t0
        proto = getattr(self._ws, "protocol", None)
        by = None
        if proto is not None and proto.close_rcvd_then_sent is not None:
            by = "client" if proto.close_rcvd_then_sent else "server"
        self._w.write_close(t_ns=t, code=self._ws.close_code, reason=self._ws.close_reason or "",
                            closed_by=by, error=None)
        self._w.close(duration_s=t / 1e9)


class ReplayServer:
    """``rtproxy replay FILE`` in a thread of this process, on a free port::

        with ReplayServer("tests/cassettes/greeting.rtrec", strict=True) as srv:
            client = AsyncOpenAI(websocket_base_url=srv.websocket_base_url)
            ...
        for s in srv.sessions:
            assert not s.divergences, s.divergences

    Options are those of ``rtproxy replay``: ``pace`` ("client" or "clock"),
    ``speed`` (a factor; 0 or "max": no waiting), ``strict``, ``wait_timeout``;
    any other :class:`~rtproxy.replay.server.ReplayConfig` field by name. Each
    connection gets its own replay; :attr:`sessions` holds one
    :class:`ReplaySession` per connection that ended (in the order they ended).
    With ``live_dir``, every session's live run is written there as
    ``session-N.rtrec`` (for ``rtproxy check`` and ``rtproxy diff``; a temporary
    folder otherwise, removed at :meth:`stop` unless ``keep_live``).
    """

    def __init__(
        self,
        cassette: str | os.PathLike[str],
        *,
        pace: str = "client",
        speed: float | str = 1.0,
        strict: bool = False,
        wait_timeout: float = 10.0,
        host: str = "127.0.0.1",
        port: int = 0,
        live_dir: str | os.PathLike[str] | None = None,
        keep_live: bool = False,
        **options: Any,
    ) -> None:
        from rtproxy.errors import UsageError
        from rtproxy.replay.script import parse_speed
        from rtproxy.replay.server import ReplayConfig

        self.cassette = Path(cassette)
        if pace not in ("client", "clock"):
            raise UsageError(f"pace {pace!r}: expected 'client' or 'clock'")
        try:
            factor = parse_speed(speed)
        except ValueError as exc:
            raise UsageError(f"speed {speed!r}: {exc}") from None
        known = {f.name for f in dataclasses.fields(ReplayConfig)}
        for name in options:
            if name not in known:
                if name == "faults":
                    raise UsageError(
                        "faults=...: this rtproxy's replay does not inject faults "
                        "(its ReplayConfig has no 'faults' option)"
                    )
                raise UsageError(f"unknown replay option {name!r} (known: {', '.join(sorted(known - {'file'}))})")
        self.config = ReplayConfig(
            file=str(self.cassette), listen_host=host, listen_port=port, speed=factor, pace=pace,
            strict=strict, once=False, wait_timeout=float(wait_timeout),
        )
        for name, value in options.items():
            setattr(self.config, name, value)
        self.host = host
        self.port = 0
        self._live_dir = Path(live_dir) if live_dir is not None else None
        self._tmp_live: Any = None
        self._keep_live = keep_live
        self.sessions: list[ReplaySession] = []
        self._open = 0
        self._live_n = 0
        self._cond = threading.Condition()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._loop: Any = None
        self._stop: Any = None
        self._thread: threading.Thread | None = None

    # -- addresses ------------------------------------------------------------
    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/v1/realtime`` (pipecat's ``base_url``; add ``?model=`` for openai-agents)."""
        return f"ws://{self._host()}:{self.port}/v1/realtime"

    @property
    def websocket_base_url(self) -> str:
        """``ws://127.0.0.1:PORT/v1``: ``AsyncOpenAI(websocket_base_url=...)``."""
        return f"ws://{self._host()}:{self.port}/v1"

    @property
    def http_base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: for clients that derive the WebSocket URL (LiveKit's ``base_url``)."""
        return f"http://{self._host()}:{self.port}/v1"

    def _host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    # -- life -----------------------------------------------------------------
    def start(self) -> ReplayServer:
        """Read the cassette's handshake, start serving; returns once listening.
        Raises RecordingError for a bad cassette, OSError if the port cannot be bound."""
        from rtproxy.replay.server import load_summary

        _, self._handshake = load_summary(str(self.cassette))
        if self._live_dir is None:
            import tempfile

            self._tmp_live = tempfile.TemporaryDirectory(prefix="rtproxy-live-")
            self._live_dir = Path(self._tmp_live.name)
        self._live_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name=f"rtproxy-replay:{self.cassette.name}", daemon=True)
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise self._error
        if not self._started.is_set():
            raise RuntimeError("the replay server did not start within 30 s")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving: open connections are closed (1001) and their sessions reported."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass  # the loop already ended
        self._thread.join(timeout)
        self._thread = None
        if self._tmp_live is not None and not self._keep_live:
            self._tmp_live.cleanup()
            self._tmp_live = None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def open_sessions(self) -> int:
        """Connections being served now."""
        with self._cond:
            return self._open

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no connection is open (every session reported); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._open == 0, timeout)

    # -- the thread -----------------------------------------------------------
    def _run(self) -> None:
        import asyncio

        try:
            asyncio.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - handed to start()
            self._error = exc
        finally:
            self._started.set()
            with self._cond:
                self._cond.notify_all()

    async def _main(self) -> None:
        import asyncio

        from rtproxy.replay.server import serve_replay

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()

        def ready(port: int) -> None:
            self.port = port
            self._started.set()

        await serve_replay(
            self.config, self._handshake, ready, lambda n, d: None, self._on_report,
            stop=self._stop, on_server=self._wrap,
        )

    def _wrap(self, app: Any) -> None:
        inner = app.handler

        async def handler(ws: Any) -> None:
            with self._cond:
                self._open += 1
                self._live_n += 1
                n = self._live_n
            tap: _Tap | None = None
            try:
                assert self._live_dir is not None
                tap = _Tap(ws, self._live_dir / f"session-{n}.rtrec", self.cassette, self.port)
                _LIVE_TAP.set(tap)
                await inner(tap)
            finally:
                report = tap.report if tap is not None else None
                if tap is not None:
                    try:
                        tap.finish()
                    except OSError:
                        pass
                with self._cond:
                    self._open -= 1
                    if report is not None:
                        self.sessions.append(ReplaySession(report, self.cassette, tap.path if tap else None))
                    self._cond.notify_all()

        app.handler = handler

    def _on_report(self, report: Any) -> None:
        tap = _LIVE_TAP.get()
        if tap is not None and tap.report is None:
            tap.report = report  # the session is added when its handler returns
            return
        with self._cond:  # a refused upgrade: reported from the handshake
            self.sessions.append(ReplaySession(report, self.cassette, None))
            self._cond.notify_all()
