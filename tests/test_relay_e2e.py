"""`rtproxy record`'s relay (rtproxy.record.relay) against bare-socket peers.

Both ends are plain TCP sockets speaking WebSocket by hand, so the test sees the
bytes on the wire: with the relay, the upstream gets the client's frames exactly
as sent (same fragments, masking keys and compression) and the client gets the
upstream's; the recording holds every message decoded, pings included. The same
sessions with ``RTPROXY_RELAY=0`` (mitmproxy's own WebSocket layer) give the same
recording and the same messages at each end: the relay changes nothing but cost.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

import pytest

from rtproxy.io.format import join_payload, open_recording
from tests.conftest import Recorder

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(op: int, payload: bytes, *, fin: bool = True, key: bytes | None = None, rsv1: bool = False) -> bytes:
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | op
    n = len(payload)
    mask = 0x80 if key else 0
    if n < 126:
        head = struct.pack("!BB", b0, mask | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mask | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mask | 127, n)
    if not key:
        return head + payload
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def parse_frames(data: bytes) -> list[tuple[int, bool, bool, bytes]]:
    """(opcode, fin, rsv1, unmasked payload) of each whole frame in data."""
    out, pos = [], 0
    while pos + 2 <= len(data):
        b0, b1 = data[pos], data[pos + 1]
        n, head = b1 & 0x7F, pos + 2
        if n == 126:
            n, head = struct.unpack("!H", data[pos + 2:pos + 4])[0], pos + 4
        elif n == 127:
            n, head = struct.unpack("!Q", data[pos + 2:pos + 10])[0], pos + 10
        key = b""
        if b1 & 0x80:
            key, head = data[head:head + 4], head + 4
        if head + n > len(data):
            break
        p = data[head:head + n]
        if key:
            p = bytes(b ^ key[i % 4] for i, b in enumerate(p))
        out.append((b0 & 0x0F, bool(b0 & 0x80), bool(b0 & 0x40), p))
        pos = head + n
    return out


def messages(frames: list[tuple[int, bool, bool, bytes]], inflate: zlib._Decompress | None) -> list[tuple[str, bytes]]:
    """Whole messages (kind, content) out of frames, inflated where compressed."""
    out, parts, op, rsv1 = [], [], 0, False
    for fop, fin, frsv1, p in frames:
        if fop >= 8:
            out.append(({8: "close", 9: "ping", 10: "pong"}[fop], p))
            continue
        if fop:
            op, rsv1, parts = fop, frsv1, []
        parts.append(p)
        if fin:
            content = b"".join(parts)
            if rsv1:
                assert inflate is not None
                content = inflate.decompress(content + b"\x00\x00\xff\xff")
            out.append(("text" if op == 1 else "binary", content))
    return out


def read_until(sock: socket.socket, buf: bytearray, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"got {len(buf)} of {n} bytes: {bytes(buf)[:200]!r}") from None
        if not data:
            raise AssertionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += data


def read_frames(sock: socket.socket, buf: bytearray, done, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Read until ``done(frames in buf)``."""
    deadline = time.monotonic() + timeout
    while not done(parse_frames(bytes(buf))):
        assert time.monotonic() < deadline, f"timed out with {parse_frames(bytes(buf))!r}"
        read_until(sock, buf, len(buf) + 1, max(0.1, deadline - time.monotonic()))


def read_head(sock: socket.socket) -> tuple[bytes, bytearray]:
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, bytes(buf)
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    return head, bytearray(rest)


class BareUpstream:
    """One WebSocket session on a bare socket: the handshake, then raw bytes."""

    def __init__(self, deflate: bool) -> None:
        self.deflate = deflate
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None
        self.buf = bytearray()
        self.ready = threading.Event()
        self.request = b""
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        head, rest = read_head(conn)
        self.request = head
        key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key:"))
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        ext = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if self.deflate else b""
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: " + accept + b"\r\n" + ext + b"\r\n")
        self.buf = rest
        self.conn = conn
        self.ready.set()

    def close(self) -> None:
        if self.conn:
            self.conn.close()
        self.listener.close()


def handshake(port: int, deflate: bool) -> tuple[socket.socket, bytearray, bytes]:
    sock = socket.create_connection(("127.0.0.1", port))
    ext = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else b""
    sock.sendall(b"GET /v1/realtime?model=gpt-realtime HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n" + ext + b"\r\n")
    head, rest = read_head(sock)
    return sock, rest, head


def deflate_messages(texts: list[bytes]) -> list[bytes]:
    """permessage-deflate payloads, one compressor kept over the messages (context takeover)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = []
    for t in texts:
        data = c.compress(t) + c.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        out.append(data[:-4])
    return out


def session(tmp_path: Path, relay: bool, deflate: bool, close: bytes) -> dict:
    up = BareUpstream(deflate)
    rec = Recorder(f"http://127.0.0.1:{up.port}", tmp_path / f"rec-{relay}-{deflate}",
                   env={"RTPROXY_RELAY": "1" if relay else "0"})
    try:
        client, cbuf, head = handshake(rec.port, deflate)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert up.ready.wait(10)
        assert up.conn is not None
        # The client's side: a text message, one fragmented into three, a binary one,
        # a ping, and (with deflate) the same long text twice, compressed over one context.
        long_text = b'{"type":"conversation.item.create","item":{"content":[{"text":"' + b"la " * 300 + b'"}]}}'
        c_frames = [
            frame(1, b'{"type":"session.update","session":{"type":"realtime"}}', key=b"\x01\x02\x03\x04"),
            frame(1, b'{"type":"response.', fin=False, key=b"\x11\x12\x13\x14"),
            frame(0, b'create","event_id":', fin=False, key=b"\x21\x22\x23\x24"),
            frame(0, b'"evt_1"}', key=b"\x31\x32\x33\x34"),
            frame(2, bytes(range(256)) * 3, key=b"\xa1\xa2\xa3\xa4"),
            frame(9, b"are-you-there", key=b"\x41\x42\x43\x44"),
        ]
        s_frames = [
            frame(1, b'{"type":"session.created","event_id":"event_1"}'),
            frame(2, b"\x00\x01" * 100, fin=False),
            frame(0, b"\x02\x03" * 100),
            frame(10, b"unsolicited"),
        ]
        if deflate:
            for i, p in enumerate(deflate_messages([long_text, long_text])):
                c_frames.append(frame(1, p, key=bytes([i + 1] * 4), rsv1=True))
            for p in deflate_messages([long_text, long_text]):
                s_frames.append(frame(1, p, rsv1=True))
        sent_c = b"".join(c_frames)
        client.sendall(sent_c)
        got_c = up.buf
        # mitmproxy's layer keeps the fragments' sizes: as many frames arrive either way.
        read_frames(up.conn, got_c, lambda f: len(f) >= len(c_frames))
        sent_s = b"".join(s_frames)
        up.conn.sendall(sent_s)
        read_frames(client, cbuf, lambda f: len(f) >= len(s_frames))
        # The client closes; the upstream answers with its own Close.
        client.sendall(frame(8, close, key=b"\x51\x52\x53\x54"))
        read_frames(up.conn, got_c, lambda f: any(x[0] == 8 for x in f))
        up.conn.sendall(frame(8, close))
        read_frames(client, cbuf, lambda f: any(x[0] == 8 for x in f))
        time.sleep(0.2)
        client.close()
        up.conn.close()
        [path] = rec.wait_files(1)
    finally:
        rec.stop()
        up.close()
    reader = open_recording(path)
    msgs = [(("client" if m.from_client else "server"), m.is_text, join_payload(m.payload))
            for m in reader.messages()]
    recording = reader.recording
    return {
        "sent_c": sent_c, "got_c": bytes(got_c), "sent_s": sent_s, "got_s": bytes(cbuf),
        "recorded": msgs, "pings": [(p["k"], p["from"], p["payload"]) for p in recording.pings],
        "close": {k: recording.close.get(k) for k in ("code", "reason", "closed_by")},
        "extensions": recording.handshake.get("extensions"),
        "long_text": long_text, "deflate": deflate,
    }


def decoded(data: bytes, deflate: bool) -> list[tuple[str, bytes]]:
    return messages(parse_frames(data), zlib.decompressobj(-15) if deflate else None)


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "permessage-deflate"])
def test_the_relay_forwards_frames_as_they_came_and_records_every_message(tmp_path: Path, deflate: bool) -> None:
    r = session(tmp_path, relay=True, deflate=deflate, close=struct.pack("!H", 1000) + b"bye")
    # Every byte the client sent reaches the upstream unchanged (masks, fragments,
    # compression), then its Close; and the other way round.
    assert r["got_c"].startswith(r["sent_c"])
    assert r["got_s"].startswith(r["sent_s"])
    assert decoded(r["got_c"][len(r["sent_c"]):], False) == [("close", b"\x03\xe8bye")]
    assert decoded(r["got_s"][len(r["sent_s"]):], False) == [("close", b"\x03\xe8bye")]
    expected = [
        ("client", True, b'{"type":"session.update","session":{"type":"realtime"}}'),
        ("client", True, b'{"type":"response.create","event_id":"evt_1"}'),
        ("client", False, bytes(range(256)) * 3),
    ]
    if deflate:
        expected += [("client", True, r["long_text"])] * 2
    expected += [
        ("server", True, b'{"type":"session.created","event_id":"event_1"}'),
        ("server", False, b"\x00\x01" * 100 + b"\x02\x03" * 100),
    ]
    if deflate:
        expected += [("server", True, r["long_text"])] * 2
    assert r["recorded"] == expected
    assert r["pings"] == [("ping", "client", b"are-you-there"), ("pong", "server", b"unsolicited")]
    assert r["close"] == {"code": 1000, "reason": "bye", "closed_by": "client"}
    assert (r["extensions"] == "permessage-deflate") is deflate


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "permessage-deflate"])
def test_the_relay_and_mitmproxys_layer_give_the_same_session(tmp_path: Path, deflate: bool) -> None:
    close = struct.pack("!H", 4000) + "fin ✓".encode()
    a = session(tmp_path, relay=True, deflate=deflate, close=close)
    b = session(tmp_path, relay=False, deflate=deflate, close=close)
    assert a["recorded"] == b["recorded"]
    assert a["pings"] == b["pings"]
    assert a["close"] == b["close"] == {"code": 4000, "reason": "fin ✓", "closed_by": "client"}
    # What each end got, as messages (mitmproxy re-frames and re-compresses them).
    for key in ("got_c", "got_s"):
        assert decoded(a[key], deflate) == decoded(b[key], deflate)


def test_a_close_without_a_code_is_passed_on_without_one(tmp_path: Path) -> None:
    """An empty Close (1005, no status) reaches the upstream empty, not as 1000."""
    r = session(tmp_path, relay=True, deflate=False, close=b"")
    assert decoded(r["got_c"][len(r["sent_c"]):], False) == [("close", b"")]
    assert r["close"]["code"] == 1005 and r["close"]["closed_by"] == "client"


@pytest.mark.parametrize("bad, what", [
    (frame(0, b"tail"), "continuation frame without a message"),
    (frame(3, b"?"), "unknown opcode 3"),
    (frame(11, b""), "unknown control opcode 11"),
    (frame(8, b"\x03"), "close frame of one byte"),
    (frame(1, b"\xff\xff\xff\xff", rsv1=True), "bad compressed message"),
], ids=["orphan-continuation", "opcode-3", "control-11", "close-1-byte", "bad-deflate"])
def test_a_frame_no_peer_may_send_closes_both_sides_with_1002(tmp_path: Path, bad: bytes, what: str) -> None:
    """What came before is recorded and forwarded; then both sides get 1002 naming the fault,
    and the recording says who sent it."""
    up = BareUpstream(deflate=True)
    rec = Recorder(f"http://127.0.0.1:{up.port}", tmp_path / "rec")
    try:
        client, cbuf, head = handshake(rec.port, deflate=True)
        assert head.startswith(b"HTTP/1.1 101"), head
        assert up.ready.wait(10) and up.conn is not None
        good = frame(1, b'{"type":"session.update"}', key=b"\x01\x02\x03\x04")
        client.sendall(good + bad)
        read_frames(up.conn, up.buf, lambda f: any(x[0] == 8 for x in f))
        read_frames(client, cbuf, lambda f: any(x[0] == 8 for x in f))
        [path] = rec.wait_files(1)
    finally:
        rec.stop()
        up.close()
    to_upstream = decoded(bytes(up.buf), False)
    assert to_upstream[0] == ("text", b'{"type":"session.update"}')
    for got in (to_upstream[-1], decoded(bytes(cbuf), False)[-1]):
        assert got[0] == "close" and got[1][:2] == struct.pack("!H", 1002), got
        assert what in got[1][2:].decode(), got
    reader = open_recording(path)
    assert [join_payload(m.payload) for m in reader.messages()] == [b'{"type":"session.update"}']
    close = reader.recording.close
    assert close["code"] == 1002 and close["closed_by"] == "client" and what in close["reason"]
