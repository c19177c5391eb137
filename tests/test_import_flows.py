"""`rtproxy import` of a flow file written by a real `mitmdump -w` in front of the
Realtime-like server, with a websockets client going through it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import zstandard

from rtproxy.io.format import open_recording
from tests.conftest import ROOT, RTPROXY, free_port, wait_port
from tests.realtime_server import Scenario, ServerThread
from tests.session_helpers import client_conversation

MITMDUMP = str(Path(sys.executable).parent / "mitmdump")


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RTPROXY, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=120)


def capture(flows: Path, scenario: Scenario) -> tuple[Any, str]:
    """One client conversation through a real `mitmdump -w flows`; the server's log and mitmdump's stderr."""
    with ServerThread(scenario) as srv:
        port = free_port()
        proc = subprocess.Popen(
            [MITMDUMP, "--mode", f"reverse:{srv.url}", "--listen-host", "127.0.0.1", "-p", str(port),
             "-w", str(flows), "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            wait_port(port, proc=proc)
            asyncio.run(client_conversation(f"ws://127.0.0.1:{port}/v1"))
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        return srv.logs[0], err


def test_mitmdump_flow_file_imports(tmp_path: Path) -> None:
    flows = tmp_path / "session.mitm"
    log, err = capture(flows, Scenario(error_on_second_response=True, close_code=None))
    assert flows.stat().st_size > 0, err

    p = run("import", flows, "-o", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    assert "ping" in p.stdout  # says what mitmproxy flows do not hold
    [rec] = list((tmp_path / "out").glob("*.rtrec"))
    with open_recording(rec) as r:
        msgs = list(r.messages())
        recording = r.recording
    # the server's log holds the exact messages: all of them arrive, in order, byte for byte
    client = [m.content for m in msgs if m.from_client]
    server = [m.content for m in msgs if not m.from_client]
    enc = lambda x: x.encode() if isinstance(x, str) else x  # noqa: E731
    assert client == [enc(x) for x in log.received]
    assert server == [enc(x) for x in log.sent]
    assert recording.close and recording.close["code"] == 1000 and recording.close["closed_by"] == "client"
    assert recording.header["model"] == "gpt-realtime"
    assert recording.header["imported_from"].startswith("mitmproxy:")
    # the API key the client sent is not in the recording
    assert b"SECRETSECRET" in flows.read_bytes()
    stored = zstandard.ZstdDecompressor().decompressobj().decompress(rec.read_bytes()[10:])
    assert b"SECRETSECRET" not in stored
    auth = dict((k.lower(), v) for k, v in recording.handshake["request_headers"])["authorization"]
    assert "SECRET" not in auth and "REDACTED" in auth
    summary = run("show", rec, "--summary").stdout
    assert "responses    1 completed" in summary and "errors       2" in summary


def test_refused_upgrade_in_flow_file_imports_as_a_session(tmp_path: Path) -> None:
    import websockets

    flows = tmp_path / "refused.mitm"
    with ServerThread(Scenario(refuse_status=401)) as srv:
        port = free_port()
        proc = subprocess.Popen(
            [MITMDUMP, "--mode", f"reverse:{srv.url}", "--listen-host", "127.0.0.1", "-p", str(port),
             "-w", str(flows), "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            wait_port(port, proc=proc)

            async def connect() -> int:
                try:
                    async with websockets.connect(f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime",
                                                  additional_headers={"Authorization": "Bearer sk-refuse-me"}):
                        return 101
                except websockets.InvalidStatus as exc:
                    return exc.response.status_code

            assert asyncio.run(connect()) == 401
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=30)
    p = run("import", flows, "-o", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    [rec] = list((tmp_path / "out").glob("*.rtrec"))
    shown = run("show", rec).stdout
    assert "HTTP 401" in shown and "invalid_api_key" in shown


def test_a_flow_file_cut_short_imports_nothing(tmp_path: Path) -> None:
    """Two sessions, then bytes that are no flow: the import fails, says so, and leaves no
    half of it behind (no recording, no folder)."""
    one = tmp_path / "one.mitm"
    capture(one, Scenario(error_on_second_response=True, close_code=None))
    flows = tmp_path / "two.mitm"
    flows.write_bytes(one.read_bytes() * 2)  # a flow file is a sequence of flows: two sessions
    whole = run("import", flows, "-o", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    assert len(list((tmp_path / "whole").glob("*.rtrec"))) == 2
    with open(flows, "ab") as fh:
        fh.write(b"12:not a flow,")
    p = run("import", flows, "-o", tmp_path / "cut")
    assert p.returncode != 0
    assert "not a readable mitmproxy flow file" in p.stderr and "nothing was imported" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert not (tmp_path / "cut").exists()
