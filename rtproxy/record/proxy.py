"""``rtproxy record``: a lean mitmproxy with only the addons recording needs.

Stock mitmdump loads some thirty addons that run on every event (and a
dumper that formats each message); recording Realtime sessions needs the
proxy core, TLS, layer selection and the recorder.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from typing import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from mitmproxy import exceptions, master, options
from mitmproxy.addons import (
    core,
    disable_h2c,
    dns_resolver,
    errorcheck,
    next_layer,
    proxyserver,
    tlsconfig,
)

from rtproxy.errors import ProxyStartError
from rtproxy.record import fastpath, relay
from rtproxy.record.addon import RealtimeRecorder, SessionSummary

__all__ = ["RecordConfig", "run_recorder", "mode_spec", "ProxyStartError"]


def mode_spec(mode: str, upstream: str) -> str:
    """mitmproxy's ``mode`` string for our two modes."""
    if mode == "regular":
        return "regular"
    parts = urlsplit(upstream)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise ProxyStartError(
            f"--upstream {upstream!r}: expected a URL like https://api.openai.com or http://127.0.0.1:9000"
        )
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    netloc = parts.netloc
    return f"reverse:{scheme}://{netloc}"


class RecordConfig:
    def __init__(
        self,
        listen_host: str = "127.0.0.1",
        listen_port: int = 8080,
        upstream: str = "https://api.openai.com",
        out_dir: str = "recordings",
        mode: str = "reverse",
        ssl_insecure: bool = False,
        confdir: str | None = None,
        *,
        sockets: Sequence[socket.socket] | None = None,
        stop_signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM),
        before_listen: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.upstream = upstream
        self.out_dir = out_dir
        self.mode = mode
        self.ssl_insecure = ssl_insecure
        self.confdir = confdir
        #: Listening sockets made by the caller (``--workers``: one SO_REUSEPORT socket
        #: per address for each worker); None: mitmproxy binds listen_host:listen_port.
        self.sockets = list(sockets) if sockets is not None else None
        #: Signals that close every open session and stop (a worker: SIGTERM only,
        #: its parent turns Ctrl-C into one SIGTERM per worker).
        self.stop_signals = tuple(stop_signals)
        #: With ``sockets``: awaited once the proxy is configured, before its servers
        #: listen (the workers start listening together, see rtproxy.record.workers).
        self.before_listen = before_listen


def _listen_on(sockets: Sequence[socket.socket], before_listen: Callable[[], Awaitable[None]] | None) -> None:
    """Make mitmproxy's TCP servers accept on these already-bound sockets instead of
    binding listen_host:listen_port themselves (mitmproxy has no option for SO_REUSEPORT
    or for a socket it is handed; its servers all bind in ``AsyncioServerInstance.listen``).
    ``before_listen`` is awaited first: the proxy is configured then (--out-dir made)."""
    from mitmproxy.proxy import mode_servers

    cls = mode_servers.AsyncioServerInstance
    orig = cls.__dict__["listen"]

    async def listen(self, host: str, port: int):  # type: ignore[no-untyped-def]
        if self.mode.transport_protocol not in ("tcp", "both"):
            return await orig(self, host, port)
        # "both" (reverse to https://: TCP, and UDP for HTTP/3): only TCP. WebSockets
        # do not run over HTTP/3, and the workers could not share mitmproxy's UDP socket.
        if before_listen is not None:
            await before_listen()
        return [await asyncio.start_server(self.handle_stream, sock=s, backlog=1024) for s in sockets]

    cls.listen = listen  # type: ignore[method-assign]


class _StartupErrors(errorcheck.ErrorCheck):
    """mitmproxy's start-up error check, reporting through :class:`ProxyStartError`.

    The stock one prints "Error logged during startup, exiting..." and exits 1
    without saying what the error was (rtproxy runs without a log printer).
    """

    name = "errorcheck"

    async def shutdown_if_errored(self) -> None:
        await asyncio.sleep(0)  # let pending log records arrive
        if self.logger.has_errored:
            msgs = [" ".join(r.getMessage().split()) for r in self.logger.has_errored]
            # mitmproxy's hint names its own --mode syntax; rtproxy's option is --listen-port.
            msgs = [m.split(" Try specifying a different port")[0] for m in msgs]
            text = "; ".join(msgs)
            if "address already in use" in text:
                text += "; choose another --listen-port"
            raise ProxyStartError(text)


class _Ready:
    """Calls back once the proxy server is listening."""

    def __init__(self, cb: Callable[[], None]) -> None:
        self.cb = cb

    def running(self) -> None:
        self.cb()


async def _run(cfg: RecordConfig, on_ready: Callable[[], None], on_end: Callable[[SessionSummary], None]) -> int:
    # Per-message hooks called in place, not as tasks (rtproxy.record.fastpath).
    lean_handler = fastpath.install()
    if cfg.sockets is not None:
        _listen_on(cfg.sockets, cfg.before_listen)
    opts = options.Options()
    m = master.Master(opts, with_termlog=False)
    recorder = RealtimeRecorder(on_session_end=on_end)
    recorder.mode = f"rtproxy-record/{cfg.mode}"
    recorder.upstream = cfg.upstream if cfg.mode == "reverse" else None
    if lean_handler:
        # Sessions past their handshake carried without mitmproxy's layers (rtproxy.record.relay).
        relay.install()
    m.addons.add(
        core.Core(),
        disable_h2c.DisableH2C(),
        proxyserver.Proxyserver(),
        dns_resolver.DnsResolver(),
        next_layer.NextLayer(),
        tlsconfig.TlsConfig(),
        relay.TlsConnections(),
        recorder,
        _StartupErrors(),
        _Ready(on_ready),
    )
    updates: dict[str, object] = dict(
        mode=[mode_spec(cfg.mode, cfg.upstream)],
        listen_host=cfg.listen_host,
        listen_port=cfg.listen_port,
        rtrec_dir=cfg.out_dir,
        ssl_insecure=cfg.ssl_insecure,
        # Realtime sessions are long-lived WebSockets: no HTTP/2 to the client,
        # no body buffering limits to trip over with 15 MiB appends.
        http2=False,
        websocket=True,
        # Connect upstream when the client's request arrives, not on accept:
        # port probes and health checks then cost the upstream nothing.
        connection_strategy="lazy",
    )
    if cfg.confdir:
        updates["confdir"] = cfg.confdir
    try:
        try:
            opts.update(**updates)
        except exceptions.OptionsError as exc:
            raise ProxyStartError(str(exc)) from None

        loop = asyncio.get_running_loop()
        stopping: list[asyncio.Task[None]] = []

        async def stop() -> None:
            # Close every open session with 1001 on both sides (recorded as such), then exit.
            try:
                ps = m.addons.get("proxyserver")
                if ps is not None:
                    await recorder.going_away(ps)
            finally:
                m.shutdown()

        def on_signal() -> None:
            if stopping:  # a second Ctrl-C: stop now
                m.shutdown()
                return
            stopping.append(asyncio.ensure_future(stop()))

        for sig in cfg.stop_signals:
            loop.add_signal_handler(sig, on_signal)
        try:
            await m.run()
        finally:
            # Take the handlers off before the loop closes its wakeup pipe: a late
            # SIGTERM would otherwise print "Bad file descriptor" from the signal module.
            # Late ones are ignored: every session is being closed out already.
            for sig in cfg.stop_signals:
                loop.remove_signal_handler(sig)
                signal.signal(sig, signal.SIG_IGN)
    except BaseException:
        # Could not start (a port in use, a bad option): no empty --out-dir is left behind.
        recorder.remove_unused_dirs()
        raise
    return 0


def run_recorder(
    cfg: RecordConfig,
    on_ready: Callable[[], None],
    on_end: Callable[[SessionSummary], None],
) -> int:
    """Run until SIGINT/SIGTERM; every open session is closed out in its file."""
    logging.getLogger("mitmproxy").setLevel(logging.WARNING)
    # The recorder's own warnings and errors (a file that cannot be written, an
    # upstream that cannot be reached) go to stderr: this master has no log printer.
    rtlog = logging.getLogger("rtproxy")
    if not rtlog.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        rtlog.addHandler(handler)
        rtlog.setLevel(logging.WARNING)
    # asyncio's loop, or uvloop with RTPROXY_UVLOOP=1 (rtproxy.record.fastpath.loop_factory).
    return asyncio.run(_run(cfg, on_ready, on_end), loop_factory=fastpath.loop_factory())
