"""Honest WebSocket closes in mitmproxy's WebSocket layer: the one patch point.

mitmproxy (12.x, ``mitmproxy/proxy/layers/websocket.py``) has two gaps that a
recording proxy cannot live with:

* When one side drops its TCP connection without a close frame, wsproto
  reports close code 1006, which may never be sent on the wire; wsproto then
  turns it into **1000 (normal closure)** when the layer forwards the close to
  the other side. A client whose upstream crashed would be told all went well.
* There is no public way to close a live WebSocket flow: ``flow.kill()`` is
  ignored once the WebSocket has started, and ``inject.websocket`` can only add
  messages. A session whose recording failed could only be starved.

:func:`install` patches :class:`WebsocketLayer` and :class:`WebsocketConnection`
once per process, in two small, documented places:

1. ``WebsocketConnection.send2``: a close with the local-only code 1006 is sent
   as **1011** with the reason ``rtproxy: upstream dropped the connection
   without a close frame`` (to the client; ``client dropped ...`` to the upstream).
2. ``WebsocketLayer.start`` / ``relay_messages``: after the layer has handled an
   event (every hook of it done), if an addon asked for it with
   :func:`request_close` (``flow.metadata[CLOSE_KEY] = reason``), both sides are
   sent close 1011 with that reason, their connections are closed and
   ``websocket_end`` runs, exactly as the layer itself does for a close frame.

Both wrap mitmproxy's own generators with ``yield from``, so whatever the layer
does is unchanged for every other flow. If a mitmproxy upgrade renames what is
patched, :func:`install` fails loudly at start-up rather than silently.
"""

from __future__ import annotations

import time
from typing import Any

import wsproto.events
from mitmproxy import connection, http
from mitmproxy.proxy import commands, events
from mitmproxy.proxy.layers import websocket as ws_layer
from wsproto import ConnectionState
from wsproto.frame_protocol import CloseReason

__all__ = ["install", "request_close", "CLOSE_KEY", "INTERNAL_ERROR", "dropped_reason"]

#: ``flow.metadata`` key: a close reason asks the layer to close both sides with 1011.
CLOSE_KEY = "rtproxy.close"
INTERNAL_ERROR = 1011
#: The most a close reason may hold (RFC 6455: 125-byte payload, 2 of them the code).
MAX_REASON_BYTES = 123

_PATCHED = "_rtproxy_patched"


def dropped_reason(who: str) -> str:
    """The close reason sent when ``who`` ("upstream" or "client") dropped its connection."""
    return f"rtproxy: {who} dropped the connection without a close frame"


def clip_reason(reason: str) -> str:
    """``reason`` cut to what a close frame holds, at a character boundary."""
    data = reason.encode("utf-8")[:MAX_REASON_BYTES]
    return data.decode("utf-8", "ignore")


def request_close(flow: http.HTTPFlow, reason: str) -> None:
    """Close this live WebSocket flow on both sides with 1011 and ``reason``, as soon
    as the layer has finished the event being handled (call it from a hook)."""
    flow.metadata[CLOSE_KEY] = clip_reason(reason)


def _close_if_requested(layer: Any) -> Any:
    flow: http.HTTPFlow = layer.flow
    reason = flow.metadata.get(CLOSE_KEY)
    if not reason or layer._handle_event == layer.done or flow.websocket is None:
        return
    ws = flow.websocket
    ws.timestamp_end = time.time()
    ws.closed_by_client = None  # neither side: the proxy closed it
    ws.close_code = INTERNAL_ERROR
    ws.close_reason = reason
    close = wsproto.events.CloseConnection(code=INTERNAL_ERROR, reason=reason)
    for side in (layer.server_ws, layer.client_ws):
        if side.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            yield side.send2(close)
        yield commands.CloseConnection(side.conn)
    yield ws_layer.WebsocketEndHook(flow)
    flow.live = False
    layer._handle_event = layer.done


def install() -> None:
    """Patch mitmproxy's WebSocket layer (idempotent); see the module docstring."""
    layer_cls = ws_layer.WebsocketLayer
    conn_cls = ws_layer.WebsocketConnection
    if getattr(layer_cls, _PATCHED, False):
        return
    orig_start = layer_cls.__dict__["_handle_event"]  # the layer's first state: start()
    orig_relay = layer_cls.__dict__["relay_messages"]
    orig_send2 = conn_cls.__dict__["send2"]
    if orig_start is not layer_cls.__dict__["start"]:
        raise RuntimeError("rtproxy: mitmproxy's WebsocketLayer changed; rtproxy.record.wsclose needs updating")

    def start(self: Any, event: events.Event) -> Any:
        yield from orig_start(self, event)
        yield from _close_if_requested(self)

    def relay_messages(self: Any, event: events.Event) -> Any:
        yield from orig_relay(self, event)
        yield from _close_if_requested(self)

    def send2(self: Any, event: wsproto.events.Event) -> commands.SendData:
        if isinstance(event, wsproto.events.CloseConnection) and event.code == CloseReason.ABNORMAL_CLOSURE:
            # 1006 means "dropped without a close frame" and is never sent; wsproto
            # would send 1000 instead. Tell the other side what happened.
            who = "upstream" if isinstance(self.conn, connection.Client) else "client"
            event = wsproto.events.CloseConnection(code=INTERNAL_ERROR, reason=dropped_reason(who))
        return orig_send2(self, event)

    layer_cls._handle_event = start  # type: ignore[method-assign]
    layer_cls.relay_messages = relay_messages  # type: ignore[method-assign]
    conn_cls.send2 = send2  # type: ignore[method-assign]
    setattr(layer_cls, _PATCHED, True)
