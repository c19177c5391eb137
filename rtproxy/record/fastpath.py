"""Per-message shortcuts for the lean proxy of ``rtproxy record`` (never for ``mitmdump -s``).

mitmproxy (12.x, ``mitmproxy/proxy/server.py``) runs every hook as an asyncio
task: a WebSocket message is read, handed through the layers, its
``websocket_message`` hook becomes a task (started eagerly), that task then
waits for the connection's event lock, which the read still holds, so it only
resumes on a later turn of the event loop to hand ``HookCompleted`` back to the
layers, and the message is forwarded then. Each message costs a task, a lock
wait, an extra loop turn and the addon manager's walk over every addon, twice
(the hook, then ``update``).

:func:`install` replaces the connection handler mitmproxy creates for each
client connection with :class:`LeanConnectionHandler`, which differs in one
place: a per-message hook (:data:`SYNC_HOOKS`) whose handlers are all plain
functions is called right where the layer asks for it, and its
``HookCompleted`` is handed to the layers as soon as the commands of the
current event are done: the order mitmproxy gives them, without the task.
Anything else (a coroutine handler, a flow an addon intercepted, any other
hook) goes mitmproxy's way.

Once a WebSocket session's handshake is done, its layer hands it to a
:class:`rtproxy.record.relay.Relay`, which this handler binds to the session's
two connections: their reads then go to the relay directly, not through the
layers (see that module).

:func:`loop_factory` gives uvloop's event loop when asked for (``RTPROXY_UVLOOP=1``) and
installed, made to accept the eager task factory mitmproxy sets (Python 3.13's factory does not
take the ``eager_start`` argument uvloop passes).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from typing import Any, Callable

from mitmproxy import exceptions, flow, hooks
from mitmproxy.addonmanager import safecall, traverse
from mitmproxy.proxy import commands, events, mode_servers
from mitmproxy.proxy import server as proxy_server
from mitmproxy.utils import asyncio_utils

from rtproxy.record import relay

__all__ = ["install", "LeanConnectionHandler", "SYNC_HOOKS", "loop_factory", "sync_handlers", "call_sync"]

#: Hooks that run once per message: worth calling in place.
SYNC_HOOKS = frozenset({"websocket_message", "websocket_control"})

_ORIGINAL = mode_servers.ProxyConnectionHandler


def sync_handlers(master: Any, name: str) -> list[list[Callable[..., Any]]] | None:
    """The hook functions of every addon in the chain, grouped by top-level addon
    (mitmproxy's error boundary), or None when one of them is a coroutine function."""
    groups = []
    for top in master.addons.chain:
        funcs = []
        for a in traverse([top]):
            func = getattr(a, name, None)
            if func is None or not callable(func):
                continue
            if inspect.iscoroutinefunction(func):
                return None
            funcs.append(func)
        if funcs:
            groups.append(funcs)
    return groups


def call_sync(groups: list[list[Callable[..., Any]]], *args: Any) -> None:
    """Call a hook's functions as ``AddonManager.trigger_event`` does, without the awaits:
    an error in one addon is logged and ends that addon's turn, ``AddonHalt`` stops it."""
    for funcs in groups:
        try:
            with safecall():
                for func in funcs:
                    func(*args)
        except exceptions.AddonHalt:
            break


class LeanConnectionHandler(_ORIGINAL):  # type: ignore[misc, valid-type]
    """mitmproxy's ProxyConnectionHandler with per-message hooks called in place."""

    _cache: dict[tuple[int, str], Any] = {}

    def _sync_hook(self, command: commands.StartHook) -> bool:
        """Run a per-message hook now if it can be; True when it was run."""
        name = command.name
        if name not in SYNC_HOOKS:
            return False
        key = (id(self.master), name)
        try:
            plan = self._cache[key]
        except KeyError:
            plan = self._cache[key] = (sync_handlers(self.master, name), sync_handlers(self.master, "update"))
        groups, update = plan
        if groups is None or update is None:
            return False
        args = command.args()
        call_sync(groups, *args)
        data = args[0]
        if isinstance(data, flow.Flow):
            if update:
                call_sync(update, *hooks.UpdateHook([data]).args())
            if data.intercepted:  # pragma: no cover - no rtproxy addon intercepts
                asyncio_utils.create_task(
                    self._resume_then_complete(command, data),
                    name=f"resume({name})", keep_ref=True, client=self.client.peername,
                )
                return True
        if command.blocking:
            self._completed.append(events.HookCompleted(command))
        return True

    async def _resume_then_complete(self, command: commands.StartHook, data: flow.Flow) -> None:  # pragma: no cover
        await data.wait_for_resume()
        if command.blocking:
            await self.server_event(events.HookCompleted(command))

    _relays: dict[Any, Any] | None = None

    async def server_event(self, event: events.Event) -> None:
        relays = self._relays
        if relays is not None and isinstance(event, (events.DataReceived, events.ConnectionClosed)):
            r = relays.get(event.connection)
            if r is not None:
                # A WebSocket session past its handshake: straight to its relay
                # (rtproxy.record.relay), the layers are not involved any more.
                self.timeout_watchdog.register_activity()
                if isinstance(event, events.DataReceived):
                    r.data_received(event.connection, event.data)
                else:
                    r.connection_closed(event.connection)
                return
        # A copy of mitmproxy's ConnectionHandler.server_event (12.2) but for the
        # StartHook branch and the queue of completions it fills, and the relays.
        async with self._server_event_lock:
            self.timeout_watchdog.register_activity()
            self._completed: list[events.Event] = [event]
            try:
                while self._completed:
                    ev = self._completed.pop(0)
                    for command in self.layer.handle_event(ev):
                        if isinstance(command, commands.StartHook):
                            if not self._sync_hook(command):
                                asyncio_utils.create_task(
                                    self.hook_task(command),
                                    name=f"handle_hook({command.name})",
                                    keep_ref=True,
                                    client=self.client.peername,
                                )
                        elif isinstance(command, commands.SendData):
                            io = self.transports.get(command.connection)
                            if io is not None:
                                writer = io.writer
                                assert writer
                                if not writer.is_closing():
                                    writer.write(command.data)
                        else:
                            self._other_command(command)
            except Exception:
                self.log("mitmproxy has crashed!", logging.ERROR, exc_info=True)
            for r in relay.take_unbound():
                # Made by a WebSocket layer while it handled this event: its
                # connections' reads go to it from now on.
                if self._relays is None:
                    self._relays = {}
                self._relays[r.client.conn] = self._relays[r.server.conn] = r
                r.bind(self)

    def _other_command(self, command: commands.Command) -> None:
        if isinstance(command, commands.OpenConnection):
            assert command.connection not in self.transports
            handler = asyncio_utils.create_task(
                self.open_connection(command),
                name=f"server connection handler {command.connection.address}",
                keep_ref=False,
                client=self.client.peername,
            )
            self.transports[command.connection] = proxy_server.ConnectionIO(handler=handler)
        elif isinstance(command, commands.RequestWakeup):
            task = asyncio_utils.create_task(
                self.wakeup(command),
                name=f"wakeup timer ({command.delay:.1f}s)",
                keep_ref=False,
                client=self.client.peername,
            )
            assert task is not None
            self.wakeup_timer.add(task)
        elif isinstance(command, commands.ConnectionCommand) and command.connection not in self.transports:
            pass  # The connection has already been closed.
        elif isinstance(command, commands.CloseTcpConnection):
            self.close_connection(command.connection, command.half_close)
        elif isinstance(command, commands.CloseConnection):
            self.close_connection(command.connection, False)
        elif isinstance(command, commands.Log):
            self.log(command.message, command.level)
        else:
            raise RuntimeError(f"Unexpected command: {command}")


def install() -> bool:
    """Use :class:`LeanConnectionHandler` for the connections of this process's proxy
    servers. Only the lean master of ``rtproxy record`` calls this. ``RTPROXY_FASTPATH=0``
    keeps mitmproxy's own handler (for comparisons). True if installed."""
    if os.environ.get("RTPROXY_FASTPATH", "1") == "0":
        return False
    if not hasattr(proxy_server, "ConnectionIO") or mode_servers.ProxyConnectionHandler not in (
        _ORIGINAL, LeanConnectionHandler
    ):
        raise RuntimeError("rtproxy: mitmproxy's proxy server changed; rtproxy.record.fastpath needs updating")
    mode_servers.ProxyConnectionHandler = LeanConnectionHandler  # type: ignore[misc]
    return True


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop (accepting asyncio's eager task factory) with ``RTPROXY_UVLOOP=1``
    and uvloop installed; otherwise None, asyncio's own loop.

    Off by default: under the capacity load it saved ~8% of the proxy's CPU per
    message (bench/README.md), and its errors read differently (an unreachable
    upstream is "Connection refused", not asyncio's "Connect call failed (host, port)",
    and that text is what the recording and the log say)."""
    if os.environ.get("RTPROXY_UVLOOP", "0") != "1":
        return None
    try:
        import uvloop
    except ImportError:
        return None

    class _Loop(uvloop.Loop):  # type: ignore[misc, name-defined]
        def set_task_factory(self, factory: Any) -> None:
            if factory is asyncio.eager_task_factory:
                factory = _eager_factory
            super().set_task_factory(factory)

    return _Loop


def _eager_factory(loop: asyncio.AbstractEventLoop, coro: Any, *, eager_start: bool | None = None,
                   **kwargs: Any) -> asyncio.Task[Any]:
    return asyncio.Task(coro, loop=loop, eager_start=True, **kwargs)
