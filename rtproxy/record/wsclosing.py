"""The closing handshake in mitmproxy's WebSocket layer, and pings, for the recorder.

mitmproxy 12 (``mitmproxy/proxy/layers/websocket.py``, ``relay_messages``)
ends a WebSocket flow the moment either side's Close frame arrives: it sends
that Close to both sides, closes both connections and ignores everything that
comes after. RFC 6455 section 7 lets the other side go on sending until its own
Close ("an endpoint MAY delay sending a Close frame until its current message
is sent"), and a Realtime server usually does: a client that closes while a
response streams loses the deltas that were on the wire, and the recording
never sees them. Pings and pongs are relayed but no addon hook sees them.

:func:`install` replaces that one method (and lets ``done`` accept a timer
event) with a version that differs only there:

* after one side's Close, the Close is relayed to the other side, and what the
  other side still sends is recorded (the ``websocket_message`` hook) and
  relayed, until its own Close, its connection ends, or :data:`CLOSE_TIMEOUT`
  seconds pass; then the first side gets its Close reply and the flow ends, as
  before (``websocket_end``, close code and reason of the first Close);
* a Ping or Pong is announced to addons as ``websocket_control(data)``
  (a :class:`ControlFrame`: flow, from_client, kind, payload) before it is relayed;
* :class:`GoingAway` (injected with :func:`close_flow`) closes both sides with a
  code the proxy chose (1001 when rtproxy stops), waits for their Close replies
  the same way, and records the code, with ``closed_by_client = None``.

There is no hook or option for any of this in mitmproxy, so this is a patch of
one method, installed once per process by the recorder, checked at start-up
(it refuses to install over a WebSocket layer it does not recognise). It must
be installed before :mod:`rtproxy.record.wsclose`, which wraps the result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import wsproto.events
from mitmproxy import http, websocket
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.commands import StartHook
from mitmproxy.proxy.layers import websocket as ws_layer
from mitmproxy.proxy.utils import expect
from wsproto import ConnectionState
from wsproto.frame_protocol import Opcode

__all__ = [
    "install", "close_flow", "GoingAway", "ControlFrame", "WebsocketControlHook", "CLOSE_TIMEOUT", "GOING_AWAY",
]

#: Seconds the other side has to answer a Close with its own before the flow ends anyway.
CLOSE_TIMEOUT = 2.0
GOING_AWAY = 1001
#: ``flow.metadata`` key set while a flow is in its closing handshake (for tests and addons).
CLOSING_KEY = "rtproxy.closing"

_PATCHED = "_rtproxy_closing_handshake"
_STATE = "_rtproxy_closing"


@dataclass
class ControlFrame:
    """A WebSocket Ping or Pong, as the ``websocket_control`` hook gets it."""

    flow: http.HTTPFlow
    from_client: bool
    kind: str
    """``"ping"`` or ``"pong"``."""
    payload: bytes


@dataclass
class WebsocketControlHook(StartHook):
    """A WebSocket Ping or Pong arrived from the client or the server; it is relayed
    after this hook. (mitmproxy hooks take one argument.)"""

    data: ControlFrame


class GoingAway(ws_layer.WebSocketMessageInjected):
    """Close a live WebSocket flow on both sides with the message's code and reason
    (see :func:`close_flow`)."""

    code: int = GOING_AWAY
    reason: str = ""


def close_flow(proxyserver: Any, flow: http.HTTPFlow, code: int = GOING_AWAY, reason: str = "") -> bool:
    """Ask the live WebSocket ``flow`` to close both sides with ``code`` and ``reason``
    (through mitmproxy's Proxyserver addon, as ``inject.websocket`` does). False if
    the flow is no longer live."""
    event = GoingAway(flow, websocket.WebSocketMessage(Opcode.TEXT, False, b""))
    event.code = code
    event.reason = reason.encode("utf-8")[:123].decode("utf-8", "ignore")
    try:
        proxyserver.inject_event(event)
    except ValueError:
        return False
    return True


class _Closing:
    """One flow's closing handshake: who must still send a Close."""

    __slots__ = ("waiting", "reply", "wakeup")

    def __init__(self, waiting: set[bool], reply: wsproto.events.CloseConnection | None) -> None:
        self.waiting = waiting  # from_client values of the sides whose Close is awaited
        self.reply = reply  # the Close to send the side that closed first, once the other answered
        self.wakeup = commands.RequestWakeup(CLOSE_TIMEOUT)


def _send_raw(ws: ws_layer.WebsocketConnection, event: wsproto.events.Event) -> commands.SendData | None:
    """Relay to a side that has sent its Close but waits for ours: wsproto refuses
    to send data in that state, the frame layer does not (RFC 6455 5.5.1)."""
    proto = ws._proto  # noqa: SLF001 - wsproto keeps its frame protocol there
    if proto is None:
        return None
    if isinstance(event, wsproto.events.Message):
        data = proto.send_data(event.data, event.message_finished)
    elif isinstance(event, wsproto.events.Ping):
        data = proto.ping(event.payload)
    elif isinstance(event, wsproto.events.Pong):
        data = proto.pong(event.payload)
    else:
        return None
    return commands.SendData(ws.conn, bytes(data))


def _relay(layer: Any, dst_ws: ws_layer.WebsocketConnection, event: wsproto.events.Event) -> Any:
    if dst_ws.state is ConnectionState.OPEN:
        yield dst_ws.send2(event)
    elif dst_ws.state is ConnectionState.REMOTE_CLOSING and dst_ws.conn.connected:
        cmd = _send_raw(dst_ws, event)
        if cmd is not None:
            yield cmd
    # LOCAL_CLOSING / CLOSED: this side was sent a Close by us; nothing more goes to it.


def _finish(layer: Any) -> Any:
    """Both Closes are in (or the wait is over): answer whoever waits, end the flow."""
    st: _Closing | None = getattr(layer, _STATE, None)
    flow: http.HTTPFlow = layer.flow
    for ws in (layer.server_ws, layer.client_ws):
        if ws.state is ConnectionState.REMOTE_CLOSING and st is not None and st.reply is not None:
            yield ws.send2(st.reply)
        elif ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            assert flow.websocket is not None
            yield ws.send2(
                wsproto.events.CloseConnection(code=flow.websocket.close_code or GOING_AWAY,
                                               reason=flow.websocket.close_reason or "")
            )
        yield commands.CloseConnection(ws.conn)
    flow.metadata.pop(CLOSING_KEY, None)
    setattr(layer, _STATE, None)
    yield ws_layer.WebsocketEndHook(flow)
    flow.live = False
    layer._handle_event = layer.done


def _begin_proxy_close(layer: Any, event: GoingAway) -> Any:
    flow: http.HTTPFlow = layer.flow
    ws = flow.websocket
    assert ws is not None
    if getattr(layer, _STATE, None) is not None:
        return  # already closing: it ends within CLOSE_TIMEOUT anyway
    ws.timestamp_end = time.time()
    ws.closed_by_client = None  # neither side: the proxy closed it
    ws.close_code = event.code
    ws.close_reason = event.reason
    close = wsproto.events.CloseConnection(code=event.code, reason=event.reason)
    waiting = set()
    for side, from_client in ((layer.server_ws, False), (layer.client_ws, True)):
        if side.state is ConnectionState.OPEN:
            yield side.send2(close)
            if side.conn.connected:
                waiting.add(from_client)
        elif side.state is ConnectionState.REMOTE_CLOSING:
            yield side.send2(close)
    if not waiting:
        yield from _finish(layer)
        return
    st = _Closing(waiting, None)
    setattr(layer, _STATE, st)
    flow.metadata[CLOSING_KEY] = True
    yield st.wakeup


@expect(events.DataReceived, events.ConnectionClosed, ws_layer.WebSocketMessageInjected, events.Wakeup)
def relay_messages(self: Any, event: events.Event) -> Any:
    """mitmproxy's ``WebsocketLayer.relay_messages``, keeping the closing handshake (see the module)."""
    assert self.flow.websocket  # satisfy type checker
    st: _Closing | None = getattr(self, _STATE, None)

    if isinstance(event, events.Wakeup):
        if st is not None and event.command is st.wakeup:
            yield from _finish(self)
        return
    if isinstance(event, GoingAway):
        yield from _begin_proxy_close(self, event)
        return

    if isinstance(event, events.ConnectionEvent):
        from_client = event.connection == self.context.client
        injected = False
    elif isinstance(event, ws_layer.WebSocketMessageInjected):
        from_client = event.message.from_client
        injected = True
    else:  # pragma: no cover
        raise AssertionError(f"Unexpected event: {event}")

    from_str = "client" if from_client else "server"
    if from_client:
        src_ws = self.client_ws
        dst_ws = self.server_ws
    else:
        src_ws = self.server_ws
        dst_ws = self.client_ws

    if isinstance(event, events.DataReceived):
        if src_ws.state is ConnectionState.CLOSED:
            return  # after its Close: nothing more is read from this side
        src_ws.receive_data(event.data)
    elif isinstance(event, events.ConnectionClosed):
        if src_ws.state is ConnectionState.CLOSED:
            if st is not None and from_client in st.waiting:
                st.waiting.discard(from_client)
                if not st.waiting:
                    yield from _finish(self)
            return
        src_ws.receive_data(None)
    elif isinstance(event, ws_layer.WebSocketMessageInjected):
        fragmentizer = ws_layer.Fragmentizer([], event.message.type == Opcode.TEXT)
        src_ws._events.extend(fragmentizer(event.message.content))
    else:  # pragma: no cover
        raise AssertionError(f"Unexpected event: {event}")

    for ws_event in src_ws.events():
        if isinstance(ws_event, wsproto.events.Message):
            is_text = isinstance(ws_event.data, str)
            if is_text:
                typ = Opcode.TEXT
                src_ws.frame_buf[-1] += ws_event.data.encode()
            else:
                typ = Opcode.BINARY
                src_ws.frame_buf[-1] += ws_event.data

            if ws_event.message_finished:
                content = b"".join(src_ws.frame_buf)

                fragmentizer = ws_layer.Fragmentizer(src_ws.frame_buf, is_text)
                src_ws.frame_buf = [b""]

                message = websocket.WebSocketMessage(typ, from_client, content, injected=injected)
                self.flow.websocket.messages.append(message)
                yield ws_layer.WebsocketMessageHook(self.flow)

                if not message.dropped:
                    for msg in fragmentizer(message.content):
                        yield from _relay(self, dst_ws, msg)

            elif ws_event.frame_finished:
                src_ws.frame_buf.append(b"")

        elif isinstance(ws_event, (wsproto.events.Ping, wsproto.events.Pong)):
            kind = ws_event.__class__.__name__.lower()
            yield commands.Log(
                f"Received WebSocket {kind} from {from_str} (payload: {bytes(ws_event.payload)!r})"
            )
            yield WebsocketControlHook(ControlFrame(self.flow, from_client, kind, bytes(ws_event.payload)))
            yield from _relay(self, dst_ws, ws_event)
        elif isinstance(ws_event, wsproto.events.CloseConnection):
            if st is not None:
                # The Close we waited for (a reply, or the other side closing too).
                st.waiting.discard(from_client)
                if not st.waiting:
                    yield from _finish(self)
                    return
                continue
            # The first Close: record it, relay it, and wait for the other side's.
            ws = self.flow.websocket
            ws.timestamp_end = time.time()
            ws.closed_by_client = from_client
            ws.close_code = ws_event.code
            ws.close_reason = ws_event.reason
            if dst_ws.state is ConnectionState.OPEN and dst_ws.conn.connected:
                yield dst_ws.send2(ws_event)
                st = _Closing({not from_client}, ws_event)
                setattr(self, _STATE, st)
                self.flow.metadata[CLOSING_KEY] = True
                yield st.wakeup
                if src_ws.state is ConnectionState.CLOSED:
                    # Dropped without a Close frame (1006): there is no one to answer.
                    st.reply = None
                continue
            # The other side is gone already: end as mitmproxy does.
            setattr(self, _STATE, _Closing(set(), ws_event))
            yield from _finish(self)
            return
        else:  # pragma: no cover
            raise AssertionError(f"Unexpected WebSocket event: {ws_event}")


@expect(events.DataReceived, events.ConnectionClosed, ws_layer.WebSocketMessageInjected, events.Wakeup)
def done(self: Any, _: events.Event) -> Any:
    yield from ()


def install() -> None:
    """Patch mitmproxy's WebSocket layer once per process (see the module docstring)."""
    layer_cls = ws_layer.WebsocketLayer
    if getattr(layer_cls, _PATCHED, False):
        return
    if getattr(layer_cls, "_rtproxy_patched", False):
        raise RuntimeError("rtproxy: install rtproxy.record.wsclosing before rtproxy.record.wsclose")
    relay = layer_cls.__dict__.get("relay_messages")
    if relay is None or getattr(relay, "__name__", "") != "relay_messages" or "done" not in layer_cls.__dict__:
        raise RuntimeError("rtproxy: mitmproxy's WebsocketLayer changed; rtproxy.record.wsclosing needs updating")
    layer_cls.relay_messages = relay_messages  # type: ignore[method-assign]
    layer_cls.done = done  # type: ignore[method-assign]
    setattr(layer_cls, _STATE, None)
    setattr(layer_cls, _PATCHED, True)
