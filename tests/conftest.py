"""Shared fixtures: a Realtime-like server, and `rtproxy record` as a real process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

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
