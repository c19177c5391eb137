"""Faults the client sees through a real `rtproxy record` process: an upstream that
drops TCP without a close frame, and a recording that fails (a full disk)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import websockets
from websockets.asyncio.server import ServerConnection, serve

from rtproxy.io.format import open_recording
from tests.conftest import Recorder
from tests.fs_helpers import fill, tiny_tmpfs


class Upstream:
    """A WebSocket server on its own thread; ``received`` and ``closes`` say what
    reached it through the proxy."""

    def __init__(self, handler: Callable[[ServerConnection, "Upstream"], Awaitable[None]]) -> None:
        self.handler = handler
        self.received: list[Any] = []
        self.closes: list[tuple[int | None, str | None]] = []
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()

        async def handle(ws: ServerConnection) -> None:
            try:
                await self.handler(ws, self)
            finally:
                with contextlib.suppress(Exception):
                    await ws.wait_closed()
                self.closes.append((ws.close_code, ws.close_reason))

        async with serve(handle, "127.0.0.1", 0, max_size=None, compression=None) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop

    def __enter__(self) -> "Upstream":
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


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
