"""Faults the client sees through a real `rtproxy record` process: an upstream that
drops TCP without a close frame, and a recording that fails (a full disk)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import websockets
from websockets.asyncio.server import ServerConnection

from rtproxy.io.format import open_recording
from tests.conftest import Recorder, Upstream
from tests.fs_helpers import fill, tiny_tmpfs


@contextlib.contextmanager
def proxied(upstream: Upstream, out_dir: Path) -> Iterator[Recorder]:
    rec = Recorder(upstream.url, out_dir)
    try:
        yield rec
    finally:
        rec.stop()


async def _drop_after_one_reply(ws: ServerConnection, up: Upstream) -> None:
    up.received.append(await ws.recv())
    await ws.send('{"type":"session.created"}')
    await asyncio.sleep(0.1)
    ws.transport.abort()  # no close frame: a crashed upstream, a dead load balancer


def test_upstream_dropping_tcp_gives_the_client_1011_and_the_recording_says_so(tmp_path: Path) -> None:
    async def client(url: str) -> websockets.ConnectionClosed:
        async with websockets.connect(url, compression=None) as ws:
            await ws.send('{"type":"response.create"}')
            assert await ws.recv() == '{"type":"session.created"}'
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except websockets.ConnectionClosed as exc:
                return exc
        raise AssertionError("the connection stayed open")

    with Upstream(_drop_after_one_reply) as up, proxied(up, tmp_path / "rec") as rec:
        closed = asyncio.run(client(f"ws://127.0.0.1:{rec.port}/v1/realtime?model=m"))
        [path] = rec.wait_files(1)
    # not the "1000 OK" a clean end would give
    assert isinstance(closed, websockets.ConnectionClosedError)
    assert closed.rcvd is not None and closed.rcvd.code == 1011
    assert closed.rcvd.reason == "rtproxy: upstream dropped the connection without a close frame"
    with open_recording(path) as r:
        msgs = list(r.messages())
        close = r.recording.close
    assert len(msgs) == 2 and close is not None
    assert (close["code"], close["closed_by"]) == (1006, "server")
    assert close["error"].startswith("upstream dropped the connection without a close frame; the client was sent 1011")


def test_client_dropping_tcp_gives_the_upstream_1011(tmp_path: Path) -> None:
    async def echo(ws: ServerConnection, up: Upstream) -> None:
        async for m in ws:
            up.received.append(m)
            await ws.send(m)

    async def client(url: str) -> None:
        ws = await websockets.connect(url, compression=None)
        await ws.send("one")
        assert await ws.recv() == "one"
        ws.transport.abort()

    with Upstream(echo) as up, proxied(up, tmp_path / "rec") as rec:
        asyncio.run(client(f"ws://127.0.0.1:{rec.port}/v1/realtime?model=m"))
        [path] = rec.wait_files(1)
        for _ in range(100):
            if up.closes:
                break
            asyncio.run(asyncio.sleep(0.05))
    assert up.closes == [(1011, "rtproxy: client dropped the connection without a close frame")]
    with open_recording(path) as r:
        list(r.messages())
        close = r.recording.close
    assert close is not None and (close["code"], close["closed_by"]) == (1006, "client")
    assert close["error"].startswith("client dropped the connection")


def test_a_recording_that_fails_closes_the_client_with_1011(tmp_path: Path) -> None:
    """A real write failure: the recordings folder is on a tmpfs that fills up."""
    async def echo(ws: ServerConnection, up: Upstream) -> None:
        async for m in ws:
            up.received.append(m)
            await ws.send(m)

    big = '{"type":"conversation.item.create","text":"' + os.urandom(96 * 1024).hex() + '"}'

    async def client(url: str) -> websockets.ConnectionClosed:
        async with websockets.connect(url, compression=None, max_size=None) as ws:
            await ws.send('{"type":"session.update"}')
            assert await ws.recv() == '{"type":"session.update"}'
            await ws.send(big)  # more than the disk has left: cannot be recorded
            try:
                while True:
                    reply = await asyncio.wait_for(ws.recv(), 10)
                    assert reply != big, "an unrecorded message was forwarded"
            except websockets.ConnectionClosed as exc:
                return exc

    with tiny_tmpfs(tmp_path / "fs", 96) as fs:
        with Upstream(echo) as up, proxied(up, fs / "recordings") as rec:
            fill(fs, leave=16 * 1024)
            closed = asyncio.run(client(f"ws://127.0.0.1:{rec.port}/v1/realtime?model=m"))
            for _ in range(100):
                if up.closes:
                    break
                asyncio.run(asyncio.sleep(0.05))
            files = rec.files()
        rec_errors = rec.errors
        assert isinstance(closed, websockets.ConnectionClosedError)
        assert closed.rcvd is not None and closed.rcvd.code == 1011
        assert closed.rcvd.reason == "rtproxy: recording failed: No space left on device"
        # the upstream never got the message that could not be recorded, and was closed too
        assert up.received == ['{"type":"session.update"}']
        assert up.closes == [(1011, "rtproxy: recording failed: No space left on device")]
        assert "recording" in rec_errors and "No space left on device" in rec_errors
        # what was recorded before the failure still reads
        [path] = files
        with open_recording(path) as r:
            msgs = list(r.messages())
        assert [m.content for m in msgs][:2] == [b'{"type":"session.update"}'] * 2


def test_clean_closes_are_forwarded_as_they_were(tmp_path: Path) -> None:
    """Only dropped connections and failed recordings are closed with 1011."""
    async def echo(ws: ServerConnection, up: Upstream) -> None:
        async for m in ws:
            await ws.send(m)

    async def client(url: str) -> None:
        async with websockets.connect(url, compression=None) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"

    with Upstream(echo) as up, proxied(up, tmp_path / "rec") as rec:
        for _ in range(2):
            asyncio.run(client(f"ws://127.0.0.1:{rec.port}/v1/realtime?model=m"))
        files = rec.wait_files(2)
    for f in files:
        with open_recording(f) as r:
            assert len(list(r.messages())) == 2 and r.recording.close["code"] == 1000


async def _echo(ws: ServerConnection, up: Upstream) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):
        async for m in ws:
            up.received.append(len(m))
            await ws.send(m)


def test_a_message_too_big_for_a_recording_is_not_forwarded_and_the_file_reads(tmp_path: Path) -> None:
    """A 65 MiB message was forwarded and written as a record every reader refuses as
    damaged: the file was unreadable from there on. Now it is neither written nor
    forwarded, the session is closed with 1011 saying why, and the file reads."""
    from rtproxy.io.format import MAX_MESSAGE_BYTES

    with Upstream(_echo) as up, proxied(up, tmp_path / "rec") as rec:
        async def go() -> tuple[int, Any]:
            async with websockets.connect(f"{rec.ws_base}/realtime?model=m", max_size=None) as ws:
                await ws.send('{"type":"before"}')
                assert await ws.recv() == '{"type":"before"}'
                try:  # closed while it is still being sent, or once it is
                    await ws.send(b"\0" * (MAX_MESSAGE_BYTES + 1))
                    await asyncio.wait_for(ws.recv(), 30)
                except websockets.ConnectionClosed as exc:
                    return 1, exc.rcvd
            return 0, None

        got, rcvd = asyncio.run(go())
        [path] = rec.wait_files(1)
    assert got == 1 and rcvd is not None and rcvd.code == 1011
    # The relay stops it at the frame's header, before buffering it; mitmproxy's own
    # WebSocket layer (RTPROXY_RELAY=0) at the writer.
    reason = f"rtproxy: recording failed: a message of over {MAX_MESSAGE_BYTES:,} bytes"
    assert rcvd.reason == reason
    assert up.received == [len('{"type":"before"}')]  # the big one never reached the upstream
    with open_recording(path) as r:
        msgs = list(r.messages())
        close = r.recording.close
    assert [m.content for m in msgs] == [b'{"type":"before"}', b'{"type":"before"}']
    assert close["code"] == 1011 and close["reason"] == reason


def test_a_deflate_bomb_is_not_inflated_past_what_a_recording_holds(tmp_path: Path) -> None:
    """A 0.26 MB permessage-deflate frame inflating to 256 MiB took the recorder to 847 MiB
    and its event loop for 22 s, and was then written unreadable."""
    from rtproxy.io.format import MAX_MESSAGE_BYTES

    async def deflating(ws: ServerConnection, up: Upstream) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for m in ws:
                up.received.append(len(m))

    with Upstream(deflating, compression="deflate") as up, proxied(up, tmp_path / "rec") as rec:
        async def go() -> Any:
            async with websockets.connect(f"{rec.ws_base}/realtime?model=m", compression="deflate",
                                          max_size=None) as ws:
                await ws.send('{"type":"before"}')
                try:
                    await ws.send(b"\0" * (80 << 20))  # about 80 kB on the wire
                    await asyncio.wait_for(ws.recv(), 30)
                except websockets.ConnectionClosed as exc:
                    return exc.rcvd
            return None

        rcvd = asyncio.run(go())
        [path] = rec.wait_files(1)
    # (Inflated whole, it would have reached the writer's check, which words it otherwise.)
    assert rcvd is not None and rcvd.code == 1011
    assert rcvd.reason == f"rtproxy: recording failed: a message of over {MAX_MESSAGE_BYTES:,} bytes"
    with open_recording(path) as r:
        assert [m.content for m in r.messages()] == [b'{"type":"before"}']
