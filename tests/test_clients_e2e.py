"""Real client libraries against real `rtproxy record` and `rtproxy replay` processes.

Each client runs as its own process (a driver in tests/clients/) doing a realistic flow:
the official openai SDKs (Python and Node), openai-agents (Python) and
@openai/agents-realtime (Node), pipecat, livekit-plugins-openai and azure-ai-voicelive.
A driver exits 0 when its own flow completed (its SDK parsed every event, its agent loop
finished) and prints a last line ``RESULT {json}``.

Recording: the driver talks to `rtproxy record` in front of the Realtime-like server
(with the Scenario switches that make it behave like the API where these clients depend
on it); the file must hold exactly what the server received and sent, byte for byte.
Replay: the same driver against `rtproxy replay FILE --listen-port P --once`; the flow
must complete and the replay report no divergence (clients that pick their own item ids,
LiveKit and pipecat, rely on replay putting those ids into the server messages). A client
whose replay cannot pass yet gets ``replay_xfail``, naming the failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from rtproxy.io.format import Message, Recording, open_recording
from tests.conftest import ROOT, RTPROXY, Recorder, free_port, wait_port
from tests.realtime_server import Log, Scenario, ServerThread

pytestmark = pytest.mark.e2e

CLIENTS_DIR = ROOT / "tests" / "clients"
MITM_CA = Path.home() / ".mitmproxy" / "mitmproxy-ca-cert.pem"  # rtproxy record's CA (mitmproxy's confdir)

#: The server as close to the API as these clients need it.
API_LIKE = dict(strict_ids=True, echo_metadata=True, tool_followup=True, output_content=True, item_events=True)


@dataclass
class Client:
    name: str
    argv: list[str]  # the driver and its arguments; the URL is appended
    record_url: Callable[[int], str]  # how the client is pointed at `rtproxy record` on this port
    replay_url: Callable[[int], str]  # and at `rtproxy replay`
    scenario: dict = field(default_factory=dict)
    needs: str = ""  # a Python module, or "node": skipped when missing
    replay_xfail: str = ""  # why the replay cannot pass yet


PY = [sys.executable]
NODE = ["node"]

CLIENTS = [
    Client(
        "openai-python", PY + ["openai_sdk.py"],
        record_url=lambda p: f"ws://127.0.0.1:{p}/v1", replay_url=lambda p: f"ws://127.0.0.1:{p}/v1",
        scenario=dict(tool_name="get_weather"), needs="openai",
    ),
    Client(
        "openai-agents", PY + ["openai_agents.py"],
        record_url=lambda p: f"ws://127.0.0.1:{p}/v1/realtime?model=gpt-realtime",
        replay_url=lambda p: f"ws://127.0.0.1:{p}/v1/realtime?model=gpt-realtime",
        scenario=dict(tool_name="get_weather"), needs="agents",
    ),
    Client(
        # The SDK forces wss://: the recorder's port takes TLS (mitmproxy's CA); replay has
        # no TLS, so the driver hands `ws` a plain-TCP createConnection for http:// bases.
        "openai-node", NODE + ["openai_ws.mjs"],
        record_url=lambda p: f"https://127.0.0.1:{p}/v1", replay_url=lambda p: f"http://127.0.0.1:{p}/v1",
        needs="node",
    ),
    Client(
        "agents-realtime-node", NODE + ["agents_realtime.mjs"],
        record_url=lambda p: f"ws://127.0.0.1:{p}/v1/realtime?model=gpt-realtime",
        replay_url=lambda p: f"ws://127.0.0.1:{p}/v1/realtime?model=gpt-realtime",
        scenario=dict(tool_name="get_weather"), needs="node",
        # Its tracing-only session.update (sent when session.created arrives) and its full one
        # (sent when the socket opens) come in either order, by timing: replay takes a swapped
        # pair of client events as no divergence.
    ),
    Client(
        "pipecat", PY + ["pipecat_openai.py"],
        record_url=lambda p: f"ws://127.0.0.1:{p}/v1/realtime", replay_url=lambda p: f"ws://127.0.0.1:{p}/v1/realtime",
        scenario=dict(tool_name="get_weather"), needs="pipecat",
        # pipecat picks its own item ids (uuid4) too, but waits on none of them
    ),
    Client(
        "livekit", PY + ["livekit_openai.py"],
        record_url=lambda p: f"http://127.0.0.1:{p}/v1", replay_url=lambda p: f"http://127.0.0.1:{p}/v1",
        needs="livekit.plugins.openai",
        # LiveKit picks its own item ids and response.metadata client_event_id and waits for the
        # server to echo them (update_chat_ctx, generate_reply time out otherwise): replay puts
        # the values the live client chose into the server messages that name them.
    ),
    Client(
        # Voice Live speaks the beta event names and sends no rate_limits.updated.
        "azure-voicelive", PY + ["azure_voicelive.py"],
        record_url=lambda p: f"http://127.0.0.1:{p}", replay_url=lambda p: f"http://127.0.0.1:{p}",
        scenario=dict(beta=True, rate_limits=False), needs="azure.ai.voicelive",
    ),
]


def available(c: Client) -> str | None:
    """Why this client cannot run here (None: it can)."""
    if c.needs == "node":
        if not shutil.which("node"):
            return "node is not installed"
        if not (CLIENTS_DIR / "node_modules" / "openai").is_dir():
            return "Node clients not installed: run `npm ci` in tests/clients (scripts/setup.sh does)"
        return None
    try:
        found = importlib.util.find_spec(c.needs) is not None
    except ModuleNotFoundError:
        found = False
    return None if found else f"{c.needs} is not installed (pip install -e '.[test]')"


@dataclass
class Run:
    code: int
    result: dict
    stdout: str
    stderr: str


def run_driver(c: Client, url: str, timeout: float = 45) -> Run:
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(MITM_CA), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([*c.argv, url], cwd=CLIENTS_DIR, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    result = json.loads(lines[-1][len("RESULT "):]) if lines else {}
    return Run(proc.returncode, result, proc.stdout, proc.stderr)


def wire(x: str | bytes) -> tuple[bool, bytes]:
    return (True, x.encode()) if isinstance(x, str) else (False, x)


def read(path: Path) -> tuple[Recording, list[Message]]:
    with open_recording(path) as r:
        return r.read_all()


@dataclass
class Recorded:
    path: Path
    log: Log
    run: Run
    recorder_output: str


_recorded: dict[str, Recorded] = {}


def record(c: Client, tmp: Path) -> Recorded:
    """The client's flow through `rtproxy record` in front of the server (once per client)."""
    if c.name in _recorded:
        return _recorded[c.name]
    with ServerThread(Scenario(**{**API_LIKE, **c.scenario})) as srv:
        rec = Recorder(srv.url, tmp / c.name)
        try:
            run = run_driver(c, c.record_url(rec.port))
            assert run.code == 0 and run.result.get("ok"), f"{c.name} flow failed: {run.stdout}\n{run.stderr[-3000:]}"
            (path,) = rec.wait_files(1)
        finally:
            rec.stop()
        assert len(srv.logs) == 1
        _recorded[c.name] = Recorded(path, srv.logs[0], run, rec.output)
    return _recorded[c.name]


@pytest.fixture(scope="module")
def rec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clients")


def client_params(replay: bool = False) -> list:
    out = []
    for c in CLIENTS:
        marks = []
        why = available(c)
        if why:
            marks.append(pytest.mark.skip(reason=why))
        if replay and c.replay_xfail:
            marks.append(pytest.mark.xfail(strict=False, reason=c.replay_xfail))
        out.append(pytest.param(c, id=c.name, marks=marks))
    return out


# ------------------------------------------------------------------ recording
@pytest.mark.parametrize("client", client_params())
def test_client_session_is_recorded_byte_exact(client: Client, rec_dir: Path) -> None:
    r = record(client, rec_dir)
    recording, msgs = read(r.path)
    # each direction of the file is exactly what the server received / sent, frame type too
    assert [(m.is_text, m.content) for m in msgs if m.from_client] == [wire(x) for x in r.log.received]
    assert [(m.is_text, m.content) for m in msgs if not m.from_client] == [wire(x) for x in r.log.sent]
    assert [m.t_ns for m in msgs] == sorted(m.t_ns for m in msgs)
    assert recording.handshake["status"] == 101
    assert recording.handshake["path"] == r.log.path
    # the client ends the session (agents-realtime's ws.close() sends no code: 1005)
    assert recording.close["closed_by"] == "client" and recording.close["code"] in (1000, 1005)
    assert not recording.truncated
    assert f"recorded {r.path}" in r.recorder_output
    assert r.run.result["ok"] is True  # the client's own flow completed


# ------------------------------------------------------------------ replay
class Replay:
    """`rtproxy replay FILE --listen-port P --once` as a subprocess."""

    def __init__(self, path: Path, *args: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [*RTPROXY, "replay", str(path), "--listen-port", str(self.port), "--once", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        wait_port(self.port, proc=self.proc)

    def finish(self, timeout: float = 20) -> tuple[int, str, str]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            out, err = self.proc.communicate()
        return self.proc.returncode, out, err


def divergences(out: str) -> int:
    m = re.search(r"; (\d+) divergences?;", out)
    assert m, out
    return int(m.group(1))


@pytest.mark.parametrize("client", client_params(replay=True))
def test_client_flow_completes_against_the_replay(client: Client, rec_dir: Path) -> None:
    r = record(client, rec_dir)
    rp = Replay(r.path, "--wait-timeout", "3")
    try:
        run = run_driver(client, client.replay_url(rp.port))
    finally:
        code, out, err = rp.finish()
    lines = [ln for ln in out.splitlines() if "divergence:" in ln]
    n = divergences(out)
    print(f"{client.name}: flow {'completed' if run.result.get('ok') else 'FAILED'}, {n} divergences")
    for ln in lines:
        print("  " + ln)
    assert run.code == 0 and run.result.get("ok"), f"flow failed on replay: {run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    assert n == 0, "\n".join(lines)
    assert code == 0, out + err


# ------------------------------------------------------------------ the server's API-like switches
def test_api_like_server_checks_ids_echoes_metadata_and_follows_up_a_tool_call() -> None:
    import asyncio

    import websockets

    async def talk(url: str) -> list[dict]:
        got: list[dict] = []
        async with websockets.connect(url + "/v1/realtime?model=gpt-realtime") as ws:
            async def send(ev: dict, until: str) -> dict:
                await ws.send(json.dumps(ev))
                while True:
                    msg = json.loads(await ws.recv())
                    got.append(msg)
                    if msg["type"] in (until, "error"):
                        return msg

            await ws.recv()  # session.created
            for typ in ("conversation.item.truncate", "conversation.item.retrieve", "conversation.item.delete"):
                err = await send({"type": typ, "event_id": f"e_{typ}", "item_id": "item_nope",
                                  "content_index": 0, "audio_end_ms": 10}, "?")
                assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
                assert err["error"]["code"] == ("item_truncate_invalid_item_id" if typ.endswith("truncate") else "item_not_found")
                assert err["error"]["message"] == "Item with item_id not found: item_nope"
                assert err["error"]["param"] == "item_id" and err["error"]["event_id"] == f"e_{typ}"
            err = await send({"type": "conversation.item.create", "item": {"type": "function_call_output",
                              "call_id": "call_nope", "output": "{}"}}, "?")
            assert err["error"]["code"] == "invalid_value" and "call_nope" in err["error"]["message"]
            added = await send({"type": "conversation.item.create", "item": {"id": "item_mine", "type": "message",
                                "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]}},
                               "conversation.item.added")
            assert added["item"]["id"] == "item_mine"
            assert (await send({"type": "conversation.item.retrieve", "item_id": "item_mine"},
                               "conversation.item.retrieved"))["item"]["id"] == "item_mine"
            done = await send({"type": "response.create", "response": {"metadata": {"client_event_id": "x1"}}},
                              "response.done")
            created = next(m for m in got if m["type"] == "response.created")
            assert created["response"]["metadata"] == done["response"]["metadata"] == {"client_event_id": "x1"}
            call = done["response"]["output"][0]
            assert call["type"] == "function_call"
            assert any(m["type"] == "conversation.item.added" and m["item"]["id"] == call["id"] for m in got)
            await send({"type": "conversation.item.create", "item": {"type": "function_call_output",
                        "call_id": call["call_id"], "output": "{}"}}, "conversation.item.added")
            follow = await send({"type": "response.create"}, "response.done")
            assert follow["response"]["output"][0]["type"] == "message"
            assert follow["response"]["output"][0]["content"][0]["type"] == "output_audio"
            assert (await send({"type": "conversation.item.truncate", "item_id": follow["response"]["output"][0]["id"],
                                "content_index": 0, "audio_end_ms": 100}, "conversation.item.truncated"))["audio_end_ms"] == 100
        return got

    with ServerThread(Scenario(**API_LIKE, tool_name="get_weather")) as srv:
        asyncio.run(talk(f"ws://127.0.0.1:{srv.port}"))

    async def default(url: str) -> dict:  # the defaults are as lenient as before
        async with websockets.connect(url + "/v1/realtime") as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "conversation.item.truncate", "item_id": "item_nope", "audio_end_ms": 5}))
            return json.loads(await ws.recv())

    with ServerThread(Scenario()) as srv:
        assert asyncio.run(default(f"ws://127.0.0.1:{srv.port}"))["type"] == "conversation.item.truncated"
