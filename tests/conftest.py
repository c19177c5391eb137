"""Shared fixtures: a Realtime-like server, and `rtproxy record` as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest
from websockets.asyncio.server import ServerConnection, serve

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.realtime_server import Scenario, ServerThread  # noqa: E402

RTPROXY = [sys.executable, "-m", "rtproxy"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


class Recorder:
    """`rtproxy record` running as a subprocess in front of an upstream."""

    def __init__(self, upstream: str, out_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.out_dir = out_dir
        self.proc = subprocess.Popen(
            [*RTPROXY, "record", "--listen-port", str(self.port), "--upstream", upstream,
             "--out-dir", str(out_dir), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, **env} if env else None,
        )
        wait_port(self.port, proc=self.proc)
        self.output = ""
        self.errors = ""

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1"

    def files(self) -> list[Path]:
        return sorted(self.out_dir.glob("*.rtrec"))

    def wait_files(self, n: int, timeout: float = 10.0) -> list[Path]:
        """Wait until n sessions are complete (the recorder printed n lines)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            files = self.files()
            if len(files) >= n and all(_complete(f) for f in files):
                return files
            time.sleep(0.05)
        raise TimeoutError(f"expected {n} complete recordings in {self.out_dir}, have {self.files()}")

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        self.output += out or ""
        self.errors += err or ""
        return self.proc.returncode


def _complete(path: Path) -> bool:
    from rtproxy.io.format import is_complete

    return is_complete(path)


@pytest.fixture
def realtime_server() -> Iterator[ServerThread]:
    with ServerThread(Scenario()) as srv:
        yield srv


@pytest.fixture
def recorder(realtime_server: ServerThread, tmp_path: Path) -> Iterator[Recorder]:
    rec = Recorder(realtime_server.url, tmp_path / "recordings")
    try:
        yield rec
    finally:
        rec.stop()


os.environ.setdefault("OPENAI_API_KEY", "sk-test-not-a-real-key-000000000000")


class Upstream:
    """A WebSocket server on its own thread; ``received`` and ``closes`` say what
    reached it through the proxy."""

    def __init__(self, handler: Callable[[ServerConnection, "Upstream"], Awaitable[None]],
                 compression: str | None = None) -> None:
        self.handler = handler
        self.compression = compression
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

        async with serve(handle, "127.0.0.1", 0, max_size=None, compression=self.compression) as server:
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
