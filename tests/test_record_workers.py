"""`rtproxy record --workers N`: N proxies sharing the port; each session wholly in one.

Which worker carries a connection is read from /proc (the sockets each worker
process holds), so the tests know that the sessions really were spread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import websockets

from rtproxy.io.format import open_recording
from tests.conftest import ROOT, RTPROXY, Recorder, free_port
from tests.realtime_server import Scenario, ServerThread

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, SO_REUSEPORT")]


# ------------------------------------------------------------------ helpers
def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def wait_children(pid: int, n: int, timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = children(pid)
        if len(kids) == n:
            return kids
        time.sleep(0.05)
    raise TimeoutError(f"expected {n} workers under {pid}, have {children(pid)}")


def _established(port: int) -> dict[int, int]:
    """inode -> remote port of the ESTABLISHED TCP sockets whose local port is port."""
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local, remote, state, inode = f[1], f[2], f[3], int(f[9])
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                out[inode] = int(remote.rsplit(":", 1)[1], 16)
    return out


def connections_by_worker(workers: list[int], port: int) -> dict[int, set[int]]:
    """worker pid -> the client ports of the connections it accepted on port."""
    est = _established(port)
    res: dict[int, set[int]] = {}
    for pid in workers:
        ports = set()
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        inode = int(link[8:-1])
                        if inode in est:
                            ports.add(est[inode])
        res[pid] = ports
    return res


def read(path: Path):  # type: ignore[no-untyped-def]
    with open_recording(path) as r:
        return r.read_all()


def check_file(path: Path, log) -> tuple:  # type: ignore[no-untyped-def]
    """The file holds exactly what the server received and sent, in order, byte for byte."""
    rec, msgs = read(path)
    wire = lambda x: (isinstance(x, str), x.encode() if isinstance(x, str) else x)  # noqa: E731
    assert [(m.is_text, m.content) for m in msgs if m.from_client] == [wire(x) for x in log.received]
    assert [(m.is_text, m.content) for m in msgs if not m.from_client] == [wire(x) for x in log.sent]
    return rec, msgs


def file_for(files: list[Path], tag: str) -> Path:
    """The recording whose URL carries ?s=tag."""
    for f in files:
        rec, _ = read(f)
        if rec.header["url"].endswith(f"s={tag}"):
            return f
    raise AssertionError(f"no recording for session {tag}")


def log_for(srv: ServerThread, tag: str):  # type: ignore[no-untyped-def]
    for log in srv.logs:
        if log.received and json.loads(log.received[0])["tag"] == tag:
            return log
    raise AssertionError(f"no server log for session {tag}")


@contextlib.contextmanager
def recorder(tmp_path: Path, *extra: str, new_session: bool = False) -> Iterator[tuple[ServerThread, Recorder]]:
    with ServerThread(Scenario(echo=True)) as srv:
        if new_session:
            rec = Recorder.__new__(Recorder)
            rec.port, rec.out_dir, rec.output, rec.errors = free_port(), tmp_path / "rec", "", ""
            rec.proc = subprocess.Popen(
                [*RTPROXY, "record", "--listen-port", str(rec.port), "--upstream", srv.url,
                 "--out-dir", str(rec.out_dir), *extra],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
            )
            from tests.conftest import wait_port

            wait_port(rec.port, proc=rec.proc)
        else:
            rec = Recorder(srv.url, tmp_path / "rec", *extra)
        try:
            yield srv, rec
        finally:
            if rec.proc.returncode is None:  # not stopped by the test (a second stop repeats the output)
                rec.stop()


async def open_sessions(port: int, tags: list[str]) -> list:  # type: ignore[type-arg]
    conns = []
    for tag in tags:
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime&s={tag}",
                                      compression=None, max_size=None, ping_interval=None)
        await ws.send(json.dumps({"type": "session.update", "tag": tag}))
        await ws.recv()
        conns.append(ws)
    return conns


async def spread_sessions(rec: Recorder, workers: list[int], start: int = 0, most: int = 40) -> tuple[list, dict]:  # type: ignore[type-arg]
    """Open sessions until every worker carries at least two (the kernel hashes
    connections over the workers' sockets: a dozen almost always suffice)."""
    conns: list = []  # type: ignore[type-arg]
    while True:
        conns += await open_sessions(rec.port, [str(start + len(conns) + i) for i in range(4)])
        by = connections_by_worker(workers, rec.port)
        if all(len(v) >= 2 for v in by.values()) or len(conns) >= most:
            return conns, by


async def talk(ws, tag: str, n: int) -> None:  # type: ignore[no-untyped-def]
    for i in range(n):
        await ws.send(json.dumps({"type": "conversation.item.create", "tag": tag, "i": i, "pad": "x" * (i * 31)}))
        assert json.loads(await ws.recv())["i"] == i
    await ws.send(bytes([0, 1, 2, int(tag) % 256]))
    await ws.recv()


# -------------------------------------------------------------------- tests
def test_sessions_spread_over_workers_each_land_in_their_own_complete_file(tmp_path: Path) -> None:
    async def run(rec: Recorder, workers: list[int]) -> tuple[int, dict]:  # type: ignore[type-arg]
        conns, by = await spread_sessions(rec, workers)
        tags = [str(i) for i in range(len(conns))]
        await asyncio.gather(*(talk(ws, t, 20) for ws, t in zip(conns, tags)))
        for ws in conns:
            await ws.close()
        return len(conns), by

    with recorder(tmp_path, "--workers", "2") as (srv, rec):
        workers = wait_children(rec.proc.pid, 2)
        n, by = asyncio.run(run(rec, workers))
        files = rec.wait_files(n)
        assert rec.stop() == 0, rec.errors
    assert all(len(v) >= 2 for v in by.values()), by  # both workers carried sessions
    assert len(files) == n == len(srv.logs)
    for tag in map(str, range(n)):
        r, msgs = check_file(file_for(files, tag), log_for(srv, tag))
        assert len(msgs) == 2 * 22 and not r.truncated
        assert r.close["closed_by"] == "client" and r.close["code"] == 1000
    assert rec.output.count("recorded ") == n and "Traceback" not in rec.errors, rec.output


@pytest.mark.parametrize("how", ["parent", "process-group", "sigterm"])
def test_ctrl_c_closes_the_sessions_open_in_every_worker(tmp_path: Path, how: str) -> None:
    """Ctrl-C in a terminal reaches the parent and its workers (one process group):
    each session is still closed once, with 1001, and recorded as such."""

    async def run(rec: Recorder, workers: list[int]) -> int:
        conns, by = await spread_sessions(rec, workers)
        assert all(len(v) >= 1 for v in by.values()), by
        for ws, tag in zip(conns, map(str, range(len(conns)))):
            await talk(ws, tag, 3)
        if how == "process-group":
            os.killpg(rec.proc.pid, signal.SIGINT)
        else:
            rec.proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
        codes = []
        for ws in conns:
            with contextlib.suppress(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            codes.append(ws.close_code)
        assert codes == [1001] * len(conns)
        return len(conns)

    with recorder(tmp_path, "--workers", "2", new_session=how == "process-group") as (srv, rec):
        workers = wait_children(rec.proc.pid, 2)
        n = asyncio.run(run(rec, workers))
        code = rec.stop()
        files = rec.files()
    assert code == 0, rec.errors
    assert "Traceback" not in rec.errors and "died" not in rec.errors
    assert len(files) == n
    for tag in map(str, range(n)):
        r, msgs = check_file(file_for(files, tag), log_for(srv, tag))
        assert len(msgs) == 2 * 5 and not r.truncated and r.end["stopped"] is True
        assert r.close["closed_by"] == "proxy" and r.close["code"] == 1001
    assert rec.output.count("recorded ") == n
    assert rec.output.count("; close 1001;") == n
    assert all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in workers)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_workers_1_is_one_process_as_before(tmp_path: Path) -> None:
    async def run(rec: Recorder) -> None:
        [ws] = await open_sessions(rec.port, ["0"])
        await talk(ws, "0", 5)
        await ws.close()

    with recorder(tmp_path, "--workers", "1") as (srv, rec):
        time.sleep(0.3)
        assert children(rec.proc.pid) == []  # no worker processes
        asyncio.run(run(rec))
        [path] = rec.wait_files(1)
        assert rec.stop() == 0
    check_file(path, srv.logs[0])
    lines = rec.output.splitlines()
    assert lines[0] == f"rtproxy record: proxying ws://127.0.0.1:{rec.port} -> {srv.url}"
    assert lines[2] == f"  recordings go to {rec.out_dir}/ ; Ctrl-C to stop"
    assert lines[3].startswith(f"recorded {path}: ") and len(lines) == 4


@pytest.mark.parametrize("cores", [1, 2])
def test_the_default_is_one_worker_per_core(tmp_path: Path, cores: int) -> None:
    """No --workers: as many workers as the cores the recorder may run on
    (its CPU affinity, as `taskset` sets it); on one core, one process."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < cores:
        pytest.skip(f"needs {cores} cores")
    with ServerThread(Scenario(echo=True)) as srv:
        port, out_dir = free_port(), tmp_path / "rec"
        proc = subprocess.Popen(
            [*RTPROXY, "record", "--listen-port", str(port), "--upstream", srv.url, "--out-dir", str(out_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            preexec_fn=lambda: os.sched_setaffinity(0, allowed[:cores]),
        )
        try:
            from tests.conftest import wait_port

            wait_port(port, proc=proc)
            if cores == 1:
                time.sleep(0.3)
                assert children(proc.pid) == []
            else:
                assert len(wait_children(proc.pid, cores)) == cores

            async def run() -> None:
                [ws] = await open_sessions(port, ["0"])
                await talk(ws, "0", 3)
                await ws.close()

            asyncio.run(run())
            deadline = time.monotonic() + 10
            while not list(out_dir.glob("*.rtrec")) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    [path] = sorted(out_dir.glob("*.rtrec"))
    check_file(path, srv.logs[0])
    assert f"recorded {path}: " in out


def test_the_start_lines_are_the_same_with_workers(tmp_path: Path) -> None:
    with recorder(tmp_path, "--workers", "3") as (srv, rec):
        wait_children(rec.proc.pid, 3)
        head = ""
        while "Ctrl-C to stop" not in head:  # printed once every worker listens
            line = rec.proc.stdout.readline()  # type: ignore[union-attr]
            assert line, rec.proc.poll()
            head += line
        assert rec.stop() == 0
    assert (head + rec.output).splitlines() == [
        f"rtproxy record: proxying ws://127.0.0.1:{rec.port} -> {srv.url}",
        f'  point the client here: AsyncOpenAI(websocket_base_url="ws://127.0.0.1:{rec.port}/v1")',
        f"  recordings go to {rec.out_dir}/ ; Ctrl-C to stop",
    ]
    assert rec.errors == ""


def test_a_worker_that_dies_is_reported_and_replaced(tmp_path: Path) -> None:
    from rtproxy.record.workers import RESTART_AFTER

    async def run(rec: Recorder, workers: list[int]) -> tuple[int, set[str], int]:
        conns, by = await spread_sessions(rec, workers)
        victim = workers[0]
        tags = [str(i) for i in range(len(conns))]
        port_of = {ws.local_address[1]: t for ws, t in zip(conns, tags)}
        killed = {port_of[p] for p in by[victim]}
        for ws, t in zip(conns, tags):
            await talk(ws, t, 3)
        os.kill(victim, signal.SIGKILL)
        for ws, t in zip(conns, tags):
            if t in killed:
                with contextlib.suppress(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
        deadline = time.monotonic() + 20
        while victim in children(rec.proc.pid) or len(children(rec.proc.pid)) != 2:
            assert time.monotonic() < deadline, children(rec.proc.pid)
            time.sleep(0.05)
        # The survivors go on; new sessions are served (by both workers, old and new).
        for ws, t in zip(conns, tags):
            if t not in killed:
                await talk(ws, t, 2)
                await ws.close()
        more = await open_sessions(rec.port, [str(len(conns) + i) for i in range(6)])
        for ws, t in zip(more, range(len(conns), len(conns) + 6)):
            await talk(ws, str(t), 2)
            await ws.close()
        return len(conns) + 6, killed, victim

    with recorder(tmp_path, "--workers", "2") as (srv, rec):
        workers = wait_children(rec.proc.pid, 2)
        time.sleep(RESTART_AFTER + 0.2)  # a worker dying this late is restarted
        n, killed, victim = asyncio.run(run(rec, workers))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(rec.files()) < n:
            time.sleep(0.05)
        time.sleep(0.5)
        code = rec.stop()
        files = rec.files()
    assert code == 0
    assert killed, "the killed worker carried no session"
    assert f"(pid {victim}) died: killed by SIGKILL" in rec.errors
    assert "restarted (pid " in rec.errors and rec.errors.count("\n") == 1, rec.errors
    assert len(files) == n
    for tag in map(str, range(n)):
        r, msgs = check_file(file_for(files, tag), log_for(srv, tag))
        assert r.truncated == (tag in killed)  # cut short: reads up to the kill
        if tag not in killed:
            assert r.close["closed_by"] == "client"


def test_port_in_use_is_one_line_even_against_another_recorder_with_workers(tmp_path: Path) -> None:
    with recorder(tmp_path, "--workers", "2") as (srv, rec):
        wait_children(rec.proc.pid, 2)
        out = subprocess.run([*RTPROXY, "record", "--listen-port", str(rec.port), "--workers", "2",
                              "--upstream", srv.url, "--out-dir", str(tmp_path / "other")],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2
    assert out.stderr.startswith("rtproxy: error: ") and "address already in use" in out.stderr
    assert out.stderr.count("\n") == 1 and out.stdout == ""
    assert not (tmp_path / "other").exists()
    with socket.socket() as s:  # and against any other listener
        s.bind(("127.0.0.1", 0))
        s.listen()
        out = subprocess.run([*RTPROXY, "record", "--listen-port", str(s.getsockname()[1]), "--workers", "3",
                              "--out-dir", str(tmp_path / "third")], capture_output=True, text=True, cwd=ROOT,
                             timeout=60)
    assert out.returncode == 2 and "address already in use" in out.stderr and out.stderr.count("\n") == 1


def test_a_start_error_in_the_workers_is_one_line_and_leaves_no_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = subprocess.run([*RTPROXY, "record", "--listen-port", str(free_port()), "--workers", "2",
                          "--out-dir", str(blocker / "sub")], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("rtproxy: error: ") and "cannot create" in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
