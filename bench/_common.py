"""Shared pieces of the benchmarks: start the echo server, plain ``mitmdump``
and ``rtproxy record`` as real processes on 127.0.0.1, and small statistics.

Every process is started by a context manager that stops it on exit, so a
benchmark that fails half-way leaves nothing running.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PYTHON = sys.executable
MITMDUMP = str(BIN / "mitmdump")
RTPROXY = str(BIN / "rtproxy")
SPEECH = ROOT / "tests" / "data" / "speech_24k.pcm"

__all__ = [
    "Target",
    "echo_server",
    "mitmdump",
    "rtproxy_record",
    "targets",
    "connect",
    "rss_kib",
    "pct",
    "median",
    "machine_line",
    "free_port",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


@dataclass
class Target:
    """Something a client can connect to: ``ws://127.0.0.1:port``; ``pid`` is
    the process to watch (None for the direct connection's server)."""

    name: str
    port: int
    pid: int | None = None

    def url(self, path: str = "/echo") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


@contextlib.contextmanager
def _process(args: list[str], port: int, log: Path, *, cwd: Path = ROOT, env: dict[str, str] | None = None,
             stop_timeout: float = 15) -> Iterator[subprocess.Popen]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
    try:
        wait_port(port, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def echo_server(workdir: Path) -> Iterator[Target]:
    """bench/echo_server.py in its own process (its own GIL)."""
    port = free_port()
    args = [PYTHON, str(ROOT / "bench" / "echo_server.py"), "--port", str(port)]
    with _process(args, port, workdir / "echo.log") as proc:
        yield Target("direct", port, proc.pid)


@contextlib.contextmanager
def mitmdump(upstream: int, workdir: Path, *extra: str) -> Iterator[Target]:
    """Stock ``mitmdump`` (all default addons) as a reverse proxy, quiet."""
    port = free_port()
    confdir = workdir / "mitmconf"
    args = [MITMDUMP, "--mode", f"reverse:http://127.0.0.1:{upstream}", "--listen-host", "127.0.0.1",
            "--listen-port", str(port), "-q", "--set", f"confdir={_confdir(confdir)}", *extra]
    with _process(args, port, workdir / f"mitmdump-{port}.log") as proc:
        yield Target("mitmdump", port, proc.pid)


@contextlib.contextmanager
def rtproxy_record(upstream: int, workdir: Path, out_dir: Path | None = None) -> Iterator[Target]:
    """``rtproxy record`` in front of the upstream, files under ``out_dir``."""
    port = free_port()
    out_dir = out_dir or workdir / "recordings"
    args = [RTPROXY, "record", "--listen-port", str(port), "--upstream", f"http://127.0.0.1:{upstream}",
            "--out-dir", str(out_dir)]
    with _process(args, port, workdir / f"rtproxy-{port}.log") as proc:
        yield Target("rtproxy record", port, proc.pid)


def _confdir(path: Path) -> str:
    """A copy of the user's mitmproxy CA dir so mitmdump does not generate one each run."""
    home = Path.home() / ".mitmproxy"
    if home.is_dir() and not path.exists():
        path.mkdir(parents=True)
        for f in home.iterdir():
            if f.is_file():
                (path / f.name).write_bytes(f.read_bytes())
    return str(path if path.exists() else home)


@contextlib.contextmanager
def targets(workdir: Path) -> Iterator[list[Target]]:
    """The three set-ups of one run: direct, plain mitmdump, rtproxy record."""
    with echo_server(workdir) as direct, mitmdump(direct.port, workdir) as md, \
            rtproxy_record(direct.port, workdir) as rec:
        yield [direct, md, rec]


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="rtproxy-bench-") as d:
        yield Path(d)


def connect(url: str):  # type: ignore[no-untyped-def]
    """A plain websockets client: no compression, no size limit, no pings."""
    from websockets.asyncio.client import connect as ws_connect

    return ws_connect(url, compression=None, max_size=None, ping_interval=None, open_timeout=30)


def rss_kib(pid: int) -> int:
    """Resident set size in KiB (Linux /proc) of a process with its child
    processes (``rtproxy record`` with several workers is a parent and one
    process per worker)."""
    total, found = 0, False
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total, found = int(line.split()[1]), True
    if not found:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    try:
        kids = [int(k) for task in Path(f"/proc/{pid}/task").iterdir()
                for k in (task / "children").read_text().split()]
    except OSError:
        kids = []
    for kid in kids:
        try:
            total += rss_kib(kid)
        except (OSError, RuntimeError):  # ended meanwhile
            pass
    return total


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of values."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
    return s[k]


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine_line() -> str:
    load = os.getloadavg()
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}; "
            f"load average at start {load[0]:.2f} (machine shared with other work)")
