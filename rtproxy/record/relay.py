"""The WebSocket relay of ``rtproxy record``: messages past the handshake without mitmproxy's layers.

mitmproxy does the handshake (the upgrade request, TLS, the 101, the
``websocket_start`` hook that opens the recording); from then on, in the lean
proxy of ``rtproxy record`` only, a :class:`Relay` carries the session. Each
read from either side is handed to it straight from the connection handler
(:class:`rtproxy.record.fastpath.LeanConnectionHandler`), past the layer stack,
wsproto and the per-message ``Fragmentizer``, which cost most of the proxy's
time per message (bench/README.md, "Capacity").

What it does with a read:

* decrypts it when the connection is TLS (the very OpenSSL object mitmproxy's
  TLS layer set up, see :class:`TlsConnections`), cuts it into frames and
  unmasks them, joins a message's fragments and inflates them
  (``permessage-deflate``, one zlib stream per direction, as the sender keeps it);
* runs the ``websocket_message`` hook (the recorder writes the message to its
  file then) with the message in ``flow.websocket.messages``, as mitmproxy does;
* forwards **the frames as they came** (same fragments, same compression, same
  masking key), unless an addon dropped or changed the message (then it is sent
  as one new frame, uncompressed). Nothing is forwarded before it was recorded.

Pings and pongs go through the ``websocket_control`` hook and are relayed at
once. The closing handshake, proxy closes (1001 when rtproxy stops,
:func:`rtproxy.record.wsclosing.close_flow`), closes an addon asks for
(:func:`rtproxy.record.wsclose.request_close`, 1011) and dropped connections
(1006 recorded, 1011 sent to the other side) behave exactly as in
:mod:`rtproxy.record.wsclosing` and :mod:`rtproxy.record.wsclose`, which the
``mitmdump -s`` path keeps using; the flow's close fields and ``websocket_end``
are the same.

A flow stays on mitmproxy's own path when anything here is not as expected: an
extension other than ``permessage-deflate``, a TLS connection whose OpenSSL
object is unknown, a hook handler that is a coroutine, ``RTPROXY_RELAY=0``.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
import zlib
from typing import Any, Callable, Iterator

from mitmproxy import connection, ctx, http, websocket
from mitmproxy.proxy import events
from mitmproxy.proxy.layers import websocket as ws_layer
from OpenSSL import SSL
from websockets import frames
from wsproto.frame_protocol import Opcode

from rtproxy.io.format import MAX_MESSAGE_BYTES
from rtproxy.record import fastpath, wsclose, wsclosing

try:  # websockets' C helper (shipped in its wheels); the pure-Python one otherwise
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

__all__ = ["install", "Relay", "TlsConnections", "enabled"]

_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0, 1, 2, 8, 9, 10
_DEFLATE_TAIL = b"\x00\x00\xff\xff"
_SSL_ATTR = "_rtproxy_ssl"
_PATCHED = "_rtproxy_relay"
#: Relays made while a layer handled an event, until their connection handler binds them.
_unbound: list["Relay"] = []
_enabled = False


def enabled() -> bool:
    return _enabled


class TlsConnections:
    """Addon for the lean proxy: remembers the OpenSSL object of each TLS connection
    (mitmproxy's ``tlsconfig`` makes it in the ``tls_start_*`` hooks; this one runs after)."""

    def tls_start_client(self, data: Any) -> None:
        self._keep(data)

    def tls_start_server(self, data: Any) -> None:
        self._keep(data)

    @staticmethod
    def _keep(data: Any) -> None:
        if data.ssl_conn is not None:
            setattr(data.conn, _SSL_ATTR, data.ssl_conn)


def _deflate_only(flow: http.HTTPFlow) -> bool | None:
    """True: permessage-deflate was agreed; False: no extension; None: another one."""
    assert flow.response is not None
    header = flow.response.headers.get("sec-websocket-extensions", "").strip()
    if not header:
        return False
    names = {part.split(";", 1)[0].strip().lower() for part in header.split(",") if part.strip()}
    return True if names == {"permessage-deflate"} else None


def _frame(opcode: int, payload: bytes, masked: bool) -> bytes:
    """One final, uncompressed frame (websockets' serializer)."""
    return frames.Frame(frames.Opcode(opcode), payload).serialize(mask=masked)


def _close_payload(code: int | None, reason: str) -> bytes:
    if code is None or code == 1005:
        return b""
    return struct.pack("!H", code) + wsclose.clip_reason(reason).encode("utf-8")


class _Side:
    """One end of the session: its connection, what it still may send or be sent."""

    __slots__ = ("conn", "is_client", "ssl", "writer", "buf", "frames", "parts", "opcode", "compressed",
                 "inflate", "got_close", "sent_close", "gone", "other", "out", "size")

    def __init__(self, conn: connection.Connection, is_client: bool, ssl: SSL.Connection | None,
                 deflate: bool) -> None:
        self.conn = conn
        self.is_client = is_client
        self.ssl = ssl
        self.writer: Any = None
        self.buf = bytearray()
        self.frames: list[bytes] = []  # the raw frames of the message being received
        self.parts: list[bytes] = []  # their unmasked payloads
        self.size = 0  # bytes in parts
        self.opcode = 0
        self.compressed = False
        self.inflate = zlib.decompressobj(-zlib.MAX_WBITS) if deflate else None
        self.got_close = False  # it sent its Close (or dropped its connection)
        self.sent_close = False  # it was sent a Close: nothing more goes to it
        self.gone = False  # its connection is closed
        self.other: _Side = self
        self.out: list[bytes] = []  # bytes for it from the read being handled, written at its end


class Relay:
    """Carries one WebSocket flow from the end of its handshake to ``websocket_end``."""

    def __init__(self, layer: ws_layer.WebsocketLayer, deflate: bool, hooks: dict[str, Any]) -> None:
        self.layer = layer
        self.flow: http.HTTPFlow = layer.flow
        ctx_ = layer.context
        assert ctx_.server is not None
        self.client = _Side(ctx_.client, True, getattr(ctx_.client, _SSL_ATTR, None), deflate)
        self.server = _Side(ctx_.server, False, getattr(ctx_.server, _SSL_ATTR, None), deflate)
        self.client.other, self.server.other = self.server, self.client
        self._hooks = hooks
        self._handler: Any = None
        # Until bound: (side, data, encrypted already?) to write, data None to close.
        self._pending: list[tuple[_Side, bytes | None, bool]] = []
        self._closing: set[bool] | None = None  # while closing: the sides whose Close is awaited
        self._reply: tuple[int | None, str] | None = None  # the Close the first closer gets back
        self._timer: asyncio.TimerHandle | None = None
        self._batch = False
        self.done = False

    # -- making one ---------------------------------------------------------
    @classmethod
    def create(cls, layer: ws_layer.WebsocketLayer) -> "Relay | None":
        flow = layer.flow
        if flow.websocket is None or flow.response is None or not flow.live:
            return None
        if flow.metadata.get(wsclose.CLOSE_KEY):
            return None  # closing already: mitmproxy's path does it
        deflate = _deflate_only(flow)
        if deflate is None:
            return None
        context = layer.context
        for conn in (context.client, context.server):
            if conn is None or (conn.tls and getattr(conn, _SSL_ATTR, None) is None):
                return None
        master = ctx.master
        hooks = {}
        for name in ("websocket_message", "websocket_control", "websocket_end", "update"):
            groups = fastpath.sync_handlers(master, name)
            if groups is None:
                return None
            hooks[name] = groups
        return cls(layer, deflate, hooks)

    def bind(self, handler: Any) -> None:
        """Writes go through ``handler``'s transports from now on (and what waited, now)."""
        self._handler = handler
        for side in (self.client, self.server):
            io = handler.transports.get(side.conn)
            side.writer = io.writer if io is not None else None
        pending, self._pending = self._pending, []
        for side, data, wire in pending:
            if data is None:
                self._close_conn(side)
            elif wire:
                self._write_wire(side, data)
            else:
                self._write(side, data)

    def side(self, conn: connection.Connection) -> _Side:
        return self.client if conn is self.client.conn else self.server

    # -- input ---------------------------------------------------------------
    def layer_event(self, event: events.Event) -> Iterator[Any]:
        """The WebSocket layer's event handler while this relay runs (events that
        reached the layer before the handler bound the relay; proxy closes)."""
        if isinstance(event, events.DataReceived):
            self._receive(self.side(event.connection), event.data)
        elif isinstance(event, events.ConnectionClosed):
            self.connection_closed(self.side(event.connection))
        elif isinstance(event, wsclosing.GoingAway):
            self.close_by_proxy(event.code, event.reason)
        elif isinstance(event, ws_layer.WebSocketMessageInjected):
            m = event.message
            self._message(self.client if m.from_client else self.server, m.is_text, m.content, None, True)
        return
        yield  # a generator, as the layer expects

    def data_received(self, conn: connection.Connection, data: bytes) -> None:
        """Bytes as read from the socket (still encrypted on a TLS connection)."""
        side = self.side(conn)
        if side.ssl is None:
            self._receive(side, data)
            return
        ssl = side.ssl
        plain = bytearray()
        ended = False
        try:
            ssl.bio_write(data)
            while True:
                try:
                    plain += ssl.recv(65535)
                except SSL.WantReadError:
                    break
        except (SSL.ZeroReturnError, SSL.Error):
            ended = True  # close_notify, or a TLS error: the connection is over for us
        self._flush_tls(side)
        if plain:
            self._receive(side, bytes(plain))
        if ended:
            self.connection_closed(side)

    def _receive(self, side: _Side, data: bytes) -> None:
        """Handle the frames of one read. What they make the other side get is written
        once at the end (each message recorded before that): one send for all the
        messages of a read, which under load holds several."""
        self._batch = True
        try:
            self._frames_of(side, data)
        finally:
            self._batch = False
            self._flush(side.other)
            self._flush(side)

    def _frames_of(self, side: _Side, data: bytes) -> None:
        if self.done or side.gone:
            return
        buf = side.buf
        buf += data
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            head = pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2:pos + 10], "big")
                head = pos + 10
            if b1 & 0x80:
                head += 4
            if not b0 & 0x08 and side.size + length > MAX_MESSAGE_BYTES:
                # More than a recording holds (or a header claiming 2^62 bytes): not
                # buffered to the end, not forwarded; the session is closed saying why.
                self._too_big(side)
                return
            end = head + length
            if n < end:
                break
            raw = bytes(buf[pos:end])
            payload = raw[head - pos:]
            if b1 & 0x80:
                payload = apply_mask(payload, raw[head - pos - 4:head - pos])
            pos = end
            self._frame_in(side, b0, raw, payload)
            if self.done or side.gone:
                return
        if pos:
            del buf[:pos]

    def _frame_in(self, side: _Side, b0: int, raw: bytes, payload: bytes) -> None:
        op = b0 & 0x0F
        if op >= _OP_CLOSE:
            if op == _OP_CLOSE:
                self._close_frame(side, raw, payload)
            elif op in (_OP_PING, _OP_PONG) and not side.got_close:
                kind = "ping" if op == _OP_PING else "pong"
                self._hook("websocket_control", wsclosing.ControlFrame(self.flow, side.is_client, kind, payload))
                self._forward(side.other, raw)
            elif not side.got_close:
                self._protocol_error(side, f"unknown control opcode {op}")
            return
        if side.got_close:
            return  # nothing counts after its Close
        if op == _OP_CONT:
            if not side.frames:
                self._protocol_error(side, "continuation frame without a message")
                return
        else:
            if side.frames:
                self._protocol_error(side, "new message before the last one ended")
                return
            if op not in (_OP_TEXT, _OP_BINARY):
                self._protocol_error(side, f"unknown opcode {op}")
                return
            side.opcode = op
            side.compressed = bool(b0 & 0x40) and side.inflate is not None
        side.frames.append(raw)
        side.parts.append(payload)
        side.size += len(payload)
        if not b0 & 0x80:
            return
        content = side.parts[0] if len(side.parts) == 1 else b"".join(side.parts)
        frames = side.frames[0] if len(side.frames) == 1 else b"".join(side.frames)
        side.frames, side.parts, side.size = [], [], 0
        if side.compressed:
            assert side.inflate is not None
            try:
                # Bounded: a 0.26 MB frame can inflate to 256 MiB (a deflate bomb).
                content = side.inflate.decompress(content + _DEFLATE_TAIL, MAX_MESSAGE_BYTES + 1)
            except zlib.error as exc:
                self._protocol_error(side, f"bad compressed message: {exc}")
                return
            if len(content) > MAX_MESSAGE_BYTES:
                self._too_big(side)
                return
        self._message(side, side.opcode == _OP_TEXT, content, frames, False)

    # -- messages ------------------------------------------------------------
    def _message(self, side: _Side, is_text: bool, content: bytes, frames: bytes | None, injected: bool) -> None:
        ws = self.flow.websocket
        assert ws is not None
        msg = websocket.WebSocketMessage(Opcode.TEXT if is_text else Opcode.BINARY, side.is_client, content,
                                         injected=injected)
        ws.messages.append(msg)
        self._hook("websocket_message", self.flow)
        if not msg.dropped:
            dst = side.other
            if frames is None or msg.content is not content and msg.content != content:
                frames = _frame(_OP_TEXT if is_text else _OP_BINARY, msg.content, masked=not dst.is_client)
            self._forward(dst, frames)
        reason = self.flow.metadata.get(wsclose.CLOSE_KEY)
        if reason and not self.done:
            self._close_requested(reason)

    def _hook(self, name: str, data: Any) -> None:
        fastpath.call_sync(self._hooks[name], data)
        if name != "websocket_control" and self._hooks["update"]:
            fastpath.call_sync(self._hooks["update"], [data])

    # -- closes ----------------------------------------------------------------
    def _close_frame(self, side: _Side, raw: bytes, payload: bytes) -> None:
        if side.got_close:
            return
        if len(payload) >= 2:
            code = (payload[0] << 8) | payload[1]
            reason = payload[2:].decode("utf-8", "replace")
        elif not payload:
            code, reason = 1005, ""
        else:
            self._protocol_error(side, "close frame of one byte")
            return
        side.got_close = True
        if self._closing is not None:
            # The Close we waited for (a reply, or the other side closing too).
            self._closing.discard(side.is_client)
            if not self._closing:
                self._finish()
            return
        # The first Close: record it, relay it, and wait for the other side's.
        self._set_close(side.is_client, code, reason)
        dst = side.other
        self._reply = (code, reason)
        if not dst.sent_close and not dst.gone:
            if not dst.is_client or not raw[1] & 0x80:
                self._forward(dst, raw)
            else:  # a masked client Close goes to the client unmasked
                self._forward(dst, _frame(_OP_CLOSE, payload, masked=False))
            dst.sent_close = True
            self._wait_for({dst.is_client})
            return
        self._finish()  # the other side is gone already: end as mitmproxy does

    def connection_closed(self, conn_or_side: connection.Connection | _Side) -> None:
        side = conn_or_side if isinstance(conn_or_side, _Side) else self.side(conn_or_side)
        if side.gone:
            return
        side.gone = True
        if self.done:
            return
        if self._closing is not None:
            self._closing.discard(side.is_client)
            if not self._closing:
                self._finish()
            return
        # Dropped without a Close frame: 1006 recorded; the other side is told 1011.
        side.got_close = True
        self._set_close(side.is_client, 1006, "")
        self._reply = None
        dst = side.other
        if not dst.sent_close and not dst.gone:
            self._send_close(dst, 1006, "")
            self._wait_for({dst.is_client})
            return
        self._finish()

    def close_by_proxy(self, code: int, reason: str) -> None:
        """Close both sides with ``code`` (1001 when rtproxy stops), wait for their replies."""
        if self.done or self._closing is not None:
            return  # already closing: it ends within CLOSE_TIMEOUT anyway
        self._set_close(None, code, reason)
        self._reply = None
        waiting = set()
        for side in (self.server, self.client):
            if not side.sent_close and not side.gone:
                self._send_close(side, code, reason)
                if not side.got_close:
                    waiting.add(side.is_client)
        if waiting:
            self._wait_for(waiting)
        else:
            self._finish()

    def _close_requested(self, reason: str) -> None:
        # An addon asked for it (the recording failed): 1011 to both, end now.
        self._set_close(None, wsclose.INTERNAL_ERROR, reason)
        for side in (self.server, self.client):
            if not side.sent_close and not side.gone:
                self._send_close(side, wsclose.INTERNAL_ERROR, reason)
        self._end()

    def _too_big(self, side: _Side) -> None:
        side.frames, side.parts, side.size = [], [], 0
        self._close_requested(f"rtproxy: recording failed: a message of over {MAX_MESSAGE_BYTES:,} bytes")

    def _protocol_error(self, side: _Side, what: str) -> None:
        """A frame no WebSocket peer may send: both sides get 1002, as wsproto would do."""
        side.frames, side.parts, side.size = [], [], 0
        self._set_close(side.is_client, 1002, f"rtproxy: {what}")
        for s in (self.server, self.client):
            if not s.sent_close and not s.gone:
                self._send_close(s, 1002, f"rtproxy: {what}")
        self._end()

    def _set_close(self, by_client: bool | None, code: int, reason: str) -> None:
        ws = self.flow.websocket
        assert ws is not None
        ws.timestamp_end = time.time()
        ws.closed_by_client = by_client
        ws.close_code = code
        ws.close_reason = reason

    def _wait_for(self, sides: set[bool]) -> None:
        self._closing = sides
        self.flow.metadata[wsclosing.CLOSING_KEY] = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - the proxy always runs in its loop
            return
        self._timer = loop.call_later(wsclosing.CLOSE_TIMEOUT, self._finish)

    def _finish(self) -> None:
        """Both Closes are in (or the wait is over): answer whoever waits, end the flow."""
        if self.done:
            return
        ws = self.flow.websocket
        assert ws is not None
        for side in (self.server, self.client):
            if side.sent_close or side.gone:
                continue
            if side.got_close and self._reply is not None:
                self._send_close(side, *self._reply)
            else:
                self._send_close(side, ws.close_code or wsclosing.GOING_AWAY, ws.close_reason or "")
        self._end()

    def _end(self) -> None:
        self.done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for side in (self.server, self.client):
            self._close_conn(side)
        self.flow.metadata.pop(wsclosing.CLOSING_KEY, None)
        self._hook("websocket_end", self.flow)
        self.flow.live = False
        self.layer._handle_event = self.layer.done  # type: ignore[method-assign]

    # -- output ----------------------------------------------------------------
    def _send_close(self, side: _Side, code: int | None, reason: str) -> None:
        if code == 1006:  # never sent on the wire: say what happened (rtproxy.record.wsclose)
            code = wsclose.INTERNAL_ERROR
            reason = wsclose.dropped_reason("upstream" if side.is_client else "client")
        self._forward(side, _frame(_OP_CLOSE, _close_payload(code, reason), masked=not side.is_client))
        side.sent_close = True

    def _forward(self, side: _Side, data: bytes) -> None:
        if side.sent_close or side.gone:
            return
        if self._handler is None:
            self._pending.append((side, data, False))
        else:
            self._write(side, data)

    def _write(self, side: _Side, data: bytes) -> None:
        if side.ssl is not None:
            try:
                side.ssl.sendall(data)
            except (SSL.ZeroReturnError, SSL.SysCallError, SSL.Error):
                return
            self._flush_tls(side)
            return
        self._write_wire(side, data)

    def _write_wire(self, side: _Side, data: bytes) -> None:
        if self._handler is None:
            self._pending.append((side, data, True))
        elif self._batch:
            side.out.append(data)
        else:
            side.out.append(data)
            self._flush(side)

    def _flush(self, side: _Side) -> None:
        if not side.out:
            return
        data = side.out[0] if len(side.out) == 1 else b"".join(side.out)
        side.out.clear()
        w = side.writer
        if w is not None and not w.is_closing():
            w.write(data)

    def _flush_tls(self, side: _Side) -> None:
        ssl = side.ssl
        assert ssl is not None
        while True:
            try:
                data = ssl.bio_read(65535)
            except SSL.WantReadError:
                return
            self._write_wire(side, data)

    def _close_conn(self, side: _Side) -> None:
        if self._handler is None:
            self._pending.append((side, None, False))
            return
        self._flush(side)
        if side.conn in self._handler.transports:
            self._handler.close_connection(side.conn)


def take_unbound() -> list[Relay]:
    """The relays made since the last call (for the connection handler to bind)."""
    if not _unbound:
        return []
    out = list(_unbound)
    _unbound.clear()
    return out


def install() -> bool:
    """Let WebSocket flows of this process's lean proxy run on a :class:`Relay` once their
    handshake is done. ``RTPROXY_RELAY=0`` keeps mitmproxy's layers. Must come after
    :func:`rtproxy.record.wsclose.install`. True if relays are on."""
    global _enabled
    if os.environ.get("RTPROXY_RELAY", "1") == "0":
        return False
    cls = ws_layer.WebsocketLayer
    if not getattr(cls, _PATCHED, False):
        if not getattr(cls, "_rtproxy_patched", False):
            raise RuntimeError("rtproxy: install rtproxy.record.wsclose before rtproxy.record.relay")
        after_start: Callable[..., Any] = cls.__dict__["_handle_event"]

        def start(self: Any, event: events.Event) -> Any:
            yield from after_start(self, event)
            if not _enabled or getattr(self._handle_event, "__func__", None) is not cls.relay_messages:
                return
            relay = Relay.create(self)
            if relay is not None:
                self._handle_event = relay.layer_event
                _unbound.append(relay)

        cls._handle_event = start  # type: ignore[method-assign]
        setattr(cls, _PATCHED, True)
    _enabled = True
    return True
