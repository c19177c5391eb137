"""pytest plugin: recorded Realtime sessions as test cassettes (docs/PYTEST.md).

::

    @pytest.mark.rtproxy                      # cassette: cassettes/test_voice/test_greets.rtrec
    async def test_greets(rtproxy):
        client = AsyncOpenAI(websocket_base_url=rtproxy.websocket_base_url)
        async with client.realtime.connect(model="gpt-realtime") as conn:
            ...

Installed with rtproxy (the ``pytest11`` entry point ``rtproxy``). Importing it
loads only pytest and the standard library: the replay server (websockets) is
started by the fixture, the recorder (mitmproxy, in a ``rtproxy record``
process) only when a test records.

Record modes, as pytest-recording names them (``--rtproxy-record-mode``, ini
``rtproxy_record_mode``): ``none`` (default) replays and fails on a missing
cassette; ``once`` records a missing cassette and replays an existing one;
``all`` records every time.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterable

import pytest

__all__ = ["RtproxyFixture", "RecordedSession", "RECORD_MODES", "DEFAULT_UPSTREAM", "PLACEHOLDER_KEY"]

RECORD_MODES = ("none", "once", "all")
DEFAULT_UPSTREAM = "https://api.openai.com"
#: OPENAI_API_KEY during a replay when none is set (SDKs refuse to start without one).
PLACEHOLDER_KEY = "sk-rtproxy-replay-placeholder"
#: Marker arguments besides the positional cassette name (replay options of a newer
#: rtproxy, the fields of ReplayConfig, are passed through as well).
MARKER_ARGS = (
    "cassette", "pace", "speed", "strict", "allow_unconsumed", "faults", "upstream", "check", "wait_timeout",
)
#: How long after the test body a session that is closing may take to report.
SESSION_GRACE_S = 2.0
#: How long teardown waits for the recorder to close out finished sessions.
RECORD_GRACE_S = 5.0

_FIXTURE = pytest.StashKey["RtproxyFixture"]()
_CALL_PASSED = pytest.StashKey[bool]()


# ---------------------------------------------------------------- options
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rtproxy", "rtproxy cassettes (recorded Realtime sessions)")
    group.addoption(
        "--rtproxy-record-mode",
        choices=RECORD_MODES,
        default=None,
        help="none (default): replay cassettes, fail on a missing one; once: record missing cassettes; "
        "all: re-record every cassette. Recording needs OPENAI_API_KEY for the real API.",
    )
    group.addoption(
        "--rtproxy-upstream",
        default=None,
        metavar="URL",
        help=f"Realtime endpoint to record from (default {DEFAULT_UPSTREAM}, or ini rtproxy_upstream).",
    )
    parser.addini("rtproxy_record_mode", "rtproxy cassettes: default record mode (none, once, all)", default="none")
    parser.addini(
        "rtproxy_cassette_dir",
        "rtproxy cassettes: folder for cassettes, relative to the ini file (default: cassettes/ beside each "
        "test file); each module's cassettes go in a subfolder named after it",
        default="",
    )
    parser.addini("rtproxy_upstream", "rtproxy cassettes: Realtime endpoint to record from", default=DEFAULT_UPSTREAM)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "rtproxy(cassette=None, *, pace='client', speed='max', strict=True, allow_unconsumed=(), faults=None, "
        "upstream=None, check=None, wait_timeout=5.0): replay (or record) this test's Realtime session from "
        "a cassette; see docs/PYTEST.md",
    )
    mode = _record_mode(config)
    if mode not in RECORD_MODES:
        raise pytest.UsageError(f"rtproxy_record_mode = {mode!r}: expected one of {', '.join(RECORD_MODES)}")


def _record_mode(config: pytest.Config) -> str:
    return str(config.getoption("--rtproxy-record-mode") or config.getini("rtproxy_record_mode") or "none").strip()


# ---------------------------------------------------------------- hooks
@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    fx = item.stash.get(_FIXTURE, None)
    if fx is None:
        return (yield)
    try:
        result = yield
    except (pytest.skip.Exception, pytest.xfail.Exception, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        # A divergence explains the app's failure better than the error it caused
        # (often a connection strict mode closed): then the divergence is reported.
        fx._after_call(exc)
        raise
    fx._after_call(None)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    if rep.when == "call" and _FIXTURE in item.stash:
        item.stash[_CALL_PASSED] = bool(rep.passed)
    return rep


# ---------------------------------------------------------------- fixture
@pytest.fixture
def rtproxy(request: pytest.FixtureRequest) -> Any:
    """This test's Realtime endpoint: a replay of its cassette (or, recording, the
    recorder in front of the upstream). ``.url``, ``.websocket_base_url``,
    ``.http_base_url``, ``.cassette``, ``.mode``, ``.sessions``, ``.check()``."""
    fx = RtproxyFixture(request)
    request.node.stash[_FIXTURE] = fx
    fx._setup()
    try:
        yield fx
    finally:
        fx._teardown()


def _sanitize(name: str) -> str:
    """A test name as a file name: characters unsafe on some system become ``_``."""
    safe = re.sub(r'[\x00-\x1f\x7f<>:"/\\|?*\s]', "_", name).strip(". ") or "_"
    if len(safe.encode()) > 200:  # file names are limited to 255 bytes
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        safe = safe.encode()[:180].decode("utf-8", "ignore") + "-" + digest
    return safe


def cassette_path(item: pytest.Item, name: str | os.PathLike[str] | None = None) -> Path:
    """Where a test's cassette lives: ``cassettes/<module>/<test name>.rtrec`` beside the
    test file (``rtproxy_cassette_dir`` moves ``cassettes/``); ``name`` (the marker's)
    relative to the module's folder, or absolute."""
    config = item.config
    test_file = Path(str(item.path))
    base_ini = str(config.getini("rtproxy_cassette_dir") or "").strip()
    if base_ini:
        root = config.inipath.parent if config.inipath is not None else config.rootpath
        base = (root / base_ini).resolve()
    else:
        base = test_file.parent / "cassettes"
    folder = base / _sanitize(test_file.stem)
    if name is not None:
        p = Path(name)
        return p if p.is_absolute() else folder / p
    test_name = item.name
    cls = getattr(item, "cls", None)
    if cls is not None:
        test_name = f"{cls.__name__}.{test_name}"
    return folder / (_sanitize(test_name) + ".rtrec")


class RecordedSession:
    """A session recorded through the recorder (record mode); the same fields as a
    replayed one: no divergences or substitutions, findings from ``rtproxy check``."""

    def __init__(self, number: int, path: Path) -> None:
        self.number = number
        self.path = path
        self.live = path
        self.divergences: list[str] = []
        self.divergence_details: list[Any] = []
        self.substitutions = 0

    def __repr__(self) -> str:
        return f"<RecordedSession #{self.number}: {self.path}>"

    @property
    def findings(self) -> list[Any]:
        return self.check()

    def check(self, select: Any = None, ignore: Any = None) -> list[Any]:
        from rtproxy.testing import run_check

        return run_check(self.path, select=select, ignore=ignore)


class RtproxyFixture:
    """What the ``rtproxy`` fixture gives a test."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        self._item = request.node
        self.mode = "replay"
        self.options = self._marker_options()
        self.cassette = cassette_path(self._item, self.options.pop("cassette", None))
        self.record_mode = _record_mode(request.config)
        self.port = 0
        self._server: Any = None
        self._recorder: subprocess.Popen[str] | None = None
        self._record_dir: Path | None = None
        self._record_lines: list[str] = []
        self._recorded: list[RecordedSession] = []
        self._checked: set[int] = set()
        self._failed_once = False
        self._mp = pytest.MonkeyPatch()

    # -- what tests use -------------------------------------------------------
    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/v1/realtime``."""
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    @property
    def websocket_base_url(self) -> str:
        """``ws://127.0.0.1:PORT/v1``: ``AsyncOpenAI(websocket_base_url=...)``."""
        return f"ws://127.0.0.1:{self.port}/v1"

    @property
    def http_base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: for clients that derive the WebSocket URL from it."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def sessions(self) -> list[Any]:
        """One entry per WebSocket connection of this test that ended (all of them at
        teardown at the latest): ``.divergences``, ``.substitutions``, ``.findings``.

        While a connection is open this waits up to a second for it to end (a client
        that just closed is reported a moment later by the replay's thread)."""
        if self._server is not None:
            if self._server.open_sessions:
                self._server.wait_idle(1.0)
            return list(self._server.sessions)
        if self._recorder is not None and self._record_dir is not None:
            return self._recorded_so_far(1.0)
        return list(self._recorded)

    def _recorded_so_far(self, wait_s: float) -> list[RecordedSession]:
        """Record mode, during the test: the sessions the recorder has closed out, in the
        order they ended (waiting up to ``wait_s`` for those still open)."""
        from rtproxy.io.format import is_complete

        assert self._record_dir is not None
        deadline = time.monotonic() + wait_s
        while True:
            files = list(self._record_dir.glob("*.rtrec"))
            done = [p for p in files if is_complete(p)]
            if len(done) == len(files) or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        done.sort(key=lambda p: p.stat().st_mtime_ns)
        return [RecordedSession(i + 1, p) for i, p in enumerate(done)]

    def check(self, select: Iterable[str] | str | None = None, ignore: Iterable[str] | str | None = None) -> list[Any]:
        """``rtproxy check`` findings on this test's live run (every session that ended),
        each with the fields of ``check --format json`` (``.to_dict()``)."""
        if self._server is not None:
            self._server.wait_idle(SESSION_GRACE_S)
        sel = [select] if isinstance(select, str) else select
        ign = [ignore] if isinstance(ignore, str) else ignore
        out: list[Any] = []
        for s in self.sessions:
            out.extend(s.check(select=sel, ignore=ign))
        return out

    def __repr__(self) -> str:
        return f"<rtproxy {self.mode} {self.cassette} on {self.url}>"

    # -- set-up ---------------------------------------------------------------
    def _marker_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        positional: Any = None
        for mark in reversed(list(self._item.iter_markers("rtproxy"))):  # closest last: it wins
            if mark.args:
                if len(mark.args) > 1:
                    pytest.fail(f"@pytest.mark.rtproxy takes one positional argument (the cassette), got {mark.args!r}", pytrace=False)
                positional = mark.args[0]
            opts.update(mark.kwargs)
        if positional is not None and "cassette" not in opts:
            opts["cassette"] = positional
        return opts

    def _setup(self) -> None:
        o = self.options
        self._allow = list(o.pop("allow_unconsumed", None) or ())
        if isinstance(self._allow, str):
            self._allow = [self._allow]
        check = o.pop("check", None)
        self._check_level = "error" if check is True else (check or None)
        if self._check_level is not None and self._check_level not in ("info", "warning", "error"):
            pytest.fail(f"@pytest.mark.rtproxy(check={check!r}): expected 'error', 'warning' or 'info'", pytrace=False)
        self._upstream = str(
            o.pop("upstream", None)
            or self._request.config.getoption("--rtproxy-upstream")
            or self._request.config.getini("rtproxy_upstream")
            or DEFAULT_UPSTREAM
        )
        mode = self.record_mode
        exists = self.cassette.exists()
        if mode == "all" or (mode == "once" and not exists):
            self.mode = "record"
            self._start_recorder()
            return
        if not exists:
            pytest.fail(
                f"rtproxy: no cassette for {self._item.nodeid}: {self.cassette} does not exist, and record mode "
                f"is {mode!r} (replay only).\n  Record it once against the API (OPENAI_API_KEY set), then commit it:\n"
                f"    pytest --rtproxy-record-mode once {self._item.nodeid!r}",
                pytrace=False,
            )
        self._start_replay()

    def _start_replay(self) -> None:
        from rtproxy.errors import RtproxyError
        from rtproxy.testing import ReplayServer

        o = dict(self.options)
        kw: dict[str, Any] = {
            "pace": o.pop("pace", "client"),
            "speed": o.pop("speed", "max"),
            "strict": bool(o.pop("strict", True)),
            "wait_timeout": o.pop("wait_timeout", 5.0),
        }
        faults = o.pop("faults", None)
        if faults is not None:  # SPECs as for --fault (rtproxy.replay.faults), checked against the cassette
            kw["faults"] = [faults] if isinstance(faults, str) else list(faults)
        from rtproxy.replay.server import ReplayConfig

        passthrough = {f.name for f in fields(ReplayConfig)} - {"file", "listen_host", "listen_port", "once"}
        unknown = sorted(set(o) - passthrough)
        if unknown:
            pytest.fail(
                f"rtproxy: @pytest.mark.rtproxy for {self._item.nodeid}: unknown argument{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(unknown)}; it takes {', '.join(MARKER_ARGS)}",
                pytrace=False,
            )
        self._strict = kw["strict"]
        tmp = self._request.getfixturevalue("tmp_path_factory")
        live = tmp.mktemp("rtproxy-" + _sanitize(self._item.name)[:40], numbered=True)
        try:
            self._server = ReplayServer(self.cassette, live_dir=live, keep_live=True, **kw, **o)
            self._server.start()
        except RtproxyError as exc:
            self._server = None
            spec, problem = getattr(exc, "spec", None), getattr(exc, "problem", None)
            why = f"faults: {spec!r}: {problem}" if spec is not None else str(exc)
            pytest.fail(f"rtproxy: @pytest.mark.rtproxy for {self._item.nodeid}: {why}", pytrace=False)
        self.port = self._server.port
        if not os.environ.get("OPENAI_API_KEY"):
            self._mp.setenv("OPENAI_API_KEY", PLACEHOLDER_KEY)

    def _start_recorder(self) -> None:
        for name in ("pace", "speed", "strict", "wait_timeout", "faults"):
            self.options.pop(name, None)  # replay options: nothing to do while recording
        if not os.environ.get("OPENAI_API_KEY") and "api.openai.com" in self._upstream:
            pytest.fail(
                f"rtproxy: recording {self.cassette} from {self._upstream} needs OPENAI_API_KEY "
                "(the app's key; it is never written to the cassette)",
                pytrace=False,
            )
        tmp = self._request.getfixturevalue("tmp_path_factory")
        self._record_dir = tmp.mktemp("rtproxy-rec-" + _sanitize(self._item.name)[:40], numbered=True)
        last = ""
        for _attempt in range(3):  # the free port may be taken between probing and binding
            self.port = _free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "rtproxy", "record", "--listen-host", "127.0.0.1",
                 "--listen-port", str(self.port), "--upstream", self._upstream, "--out-dir", str(self._record_dir),
                 "--workers", "1"],  # one test's sessions: one process is plenty
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            ready = threading.Event()
            lines = self._record_lines = []

            def read(p: subprocess.Popen[str] = proc, out: list[str] = lines, ev: threading.Event = ready) -> None:
                assert p.stdout is not None
                for line in p.stdout:
                    out.append(line.rstrip("\n"))
                    if line.startswith("rtproxy record: proxying"):
                        ev.set()
                ev.set()

            threading.Thread(target=read, daemon=True, name="rtproxy-record-output").start()
            ready.wait(60)
            if proc.poll() is None and ready.is_set():
                self._recorder = proc
                return
            proc.kill()
            _, err = proc.communicate()
            last = (err or "").strip().splitlines()[-1:] and (err or "").strip().splitlines()[-1] or "no output"
            if "listen" not in last and "address" not in last:
                break
        pytest.fail(f"rtproxy: the recorder did not start ({last})", pytrace=False)

    # -- after the test body --------------------------------------------------
    def _after_call(self, exc: BaseException | None) -> None:
        if self._server is None:
            return
        self._server.wait_idle(SESSION_GRACE_S)
        problem = self._problems(final=False, app_error=exc)
        if problem:
            self._failed_once = True
            raise pytest.fail.Exception(problem, pytrace=False) from None

    def _teardown(self) -> None:
        problem = ""
        try:
            if self._server is not None:
                self._server.stop()
                passed = self._item.stash.get(_CALL_PASSED, False)
                if passed and not self._failed_once:
                    problem = self._problems(final=True, app_error=None)
            elif self._recorder is not None:
                problem = self._finish_recording()
        finally:
            self._mp.undo()
            for key in (_FIXTURE, _CALL_PASSED):
                if key in self._item.stash:
                    del self._item.stash[key]
        if problem:
            pytest.fail(problem, pytrace=False)

    def _problems(self, *, final: bool, app_error: BaseException | None) -> str:
        """The first reason to fail among the sessions not yet judged ('' if none)."""
        assert self._server is not None
        sessions = [s for s in self._server.sessions if s.number not in self._checked]
        for s in sessions:
            self._checked.add(s.number)
        for s in sessions:
            if s.divergences and self._strict:
                return _divergence_message(self, s, app_error)
            if s.divergences:  # lenient: the test decides (rtproxy.sessions[i].divergences)
                self._item.add_report_section(
                    "call", "rtproxy", f"replay session #{s.number}:\n" + "\n".join(s.divergences)
                )
        if app_error is not None:
            return ""  # the test failed on its own: that is its report
        for s in sessions:
            msg = _unconsumed_message(self, s)
            if msg:
                return msg
        if not self._server.sessions and not self._server.open_sessions:
            return (
                f"rtproxy: the test never connected to the replay of {_rel(self.cassette)}: point the app at "
                f"rtproxy.websocket_base_url ({self.websocket_base_url}) or rtproxy.url"
            )
        if self._check_level:
            return _check_message(self, sessions)
        return ""

    def _finish_recording(self) -> str:
        from rtproxy.io.format import is_complete as complete

        proc, out_dir = self._recorder, self._record_dir
        assert proc is not None and out_dir is not None
        self._recorder = None

        deadline = time.monotonic() + RECORD_GRACE_S
        while time.monotonic() < deadline and not all(complete(p) for p in out_dir.glob("*.rtrec")):
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # closes out every open session in its file
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        files = sorted(out_dir.glob("*.rtrec"), key=lambda p: p.stat().st_mtime_ns)
        self._recorded = [RecordedSession(i + 1, p) for i, p in enumerate(files)]
        if not self._item.stash.get(_CALL_PASSED, False):
            sys.stderr.write(
                f"rtproxy: the test failed while recording; {_rel(self.cassette)} was not written "
                f"(this run's recordings: {out_dir})\n"
            )
            return ""
        if not files:
            return (
                f"rtproxy: recording {_rel(self.cassette)}: the test opened no WebSocket through the recorder "
                f"({self.websocket_base_url} -> {self._upstream}); point the app at rtproxy.websocket_base_url"
                + (f"\n  recorder: {err.strip()}" if err and err.strip() else "")
            )
        if len(files) > 1:
            return (
                f"rtproxy: recording {_rel(self.cassette)}: the test opened {len(files)} WebSocket sessions; "
                f"a cassette holds one (split the test, or give each session its own test); "
                f"the recordings are in {out_dir}"
            )
        from rtproxy.io.safefile import make_private_dirs, write_atomic

        # Private like every recording (0600, its new folders 0700), written whole or not at all.
        make_private_dirs(self.cassette.parent)
        write_atomic(self.cassette, files[0].read_bytes())
        self._recorded = [RecordedSession(1, self.cassette)]
        sys.stderr.write(f"rtproxy: recorded {_rel(self.cassette)}\n")
        if self._check_level:
            return _check_message(self, self._recorded)
        return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- messages
def _show_json(raw: bytes | None, limit: int = 240) -> str:
    """A message for a person: audio as its size, long values cut, control characters escaped."""
    from rtproxy.export.textsafe import visible
    from rtproxy.protocol.events import parse_event

    if raw is None:
        return "(nothing)"
    obj = parse_event(raw)
    if obj is None:
        text = raw.decode("utf-8", "replace")
    else:
        import json

        def short(v: Any, key: str = "") -> Any:
            if isinstance(v, dict):
                return {k: short(x, k) for k, x in v.items()}
            if isinstance(v, list):
                return [short(x, key) for x in v]
            if isinstance(v, str) and key in ("audio", "delta") and len(v) > 64:
                return f"<{len(v) * 3 // 4} bytes of audio>"
            return v

        text = json.dumps(short(obj), ensure_ascii=False, separators=(",", ":"))
    text = visible(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _messages(path: Path | None) -> list[tuple[int, bool, float, bytes | None, str | None]]:
    """(index, from_client, t_ms, content, type) of every message of a recording."""
    if path is None or not path.exists():
        return []
    from rtproxy.io.format import open_recording
    from rtproxy.protocol.events import event_type

    out: list[tuple[int, bool, float, bytes | None, str | None]] = []
    with open_recording(path) as r:
        for i, m in enumerate(r.messages()):
            typ = event_type(m.head) if m.is_text else None
            out.append((i, m.from_client, m.t_ns / 1e6, m.content, typ))
    return out


def _closest(
    cassette: list[Any], live_raw: bytes | None, live_type: str | None, near: int | None, show: bool = True
) -> str:
    """The recorded client event most like what the app sent, and how it differs."""
    from rtproxy.protocol.events import canonical_event_type, parse_event

    if live_type is None:
        return "none: the app sent a message that is not a JSON event"
    want = canonical_event_type(live_type)
    cands = [m for m in cassette if m[1] and m[4] is not None and canonical_event_type(m[4]) == want]
    if not cands:
        return f"none: the cassette holds no {live_type} from the client"
    pos = near if near is not None else 0
    best = min(cands, key=lambda m: (abs(m[0] - pos), m[0]))
    where = f"message #{best[0]} {best[4]} at {best[2]:.1f} ms"
    diff = ""
    try:
        from rtproxy.replay.script import significant_fields

        a = dict(significant_fields(best[4], parse_event(best[3] or b"")))
        b = dict(significant_fields(live_type, parse_event(live_raw or b"")))
        paths = [p for p in list(a) + [p for p in b if p not in a] if a.get(p, ...) != b.get(p, ...)]
        if paths:
            more = f" (and {len(paths) - 4} more)" if len(paths) > 4 else ""
            diff = f"; differs from what the app sent in {', '.join(paths[:4])}{more}"
        else:
            diff = "; matches what the app sent, but comes later in the cassette"
            if best[0] < pos:
                diff = "; matches what the app sent, but came earlier in the cassette"
    except Exception:  # noqa: BLE001 - an explanation must not break the report
        pass
    if best[0] == near:
        where += " (the one expected here)"
    return f"{where}{diff}" + (f"\n      {_show_json(best[3])}" if show and best[0] != near else "")


def _divergence_message(fx: RtproxyFixture, s: Any, app_error: BaseException | None) -> str:
    d = s.divergence_details[0] if s.divergence_details else None
    lines = [f"rtproxy: the app diverged from its cassette {_rel(fx.cassette)} (replay session #{s.number})"]
    if d is None:
        lines.append(f"  {s.divergences[0]}")
    else:
        cassette = _messages(fx.cassette)
        live_client = [m for m in _messages(s.live) if m[1]]
        live = live_client[d.live_index] if 0 <= d.live_index < len(live_client) else None
        rec = cassette[d.recorded_index] if d.recorded_index is not None and 0 <= d.recorded_index < len(cassette) else None
        if d.waited_s is not None:
            lines.append(
                f"  where:    client message #{d.live_index}, due by {d.offset_ms:.1f} ms; nothing arrived within "
                f"{d.waited_s:g} s (wait_timeout)"
            )
        else:
            lines.append(f"  where:    client message #{d.live_index} at {d.offset_ms:.1f} ms")
        what = f"field {d.field.split(' ', 1)[-1]} = " if d.field else ""
        exp_where = f" (cassette message #{rec[0]} at {rec[2]:.1f} ms)" if rec is not None else ""
        lines.append(f"  expected: {what}{d.expected}{exp_where}")
        if rec is not None:
            lines.append(f"      {_show_json(rec[3])}")
        if d.waited_s is not None:
            lines.append("  app sent: nothing")
        else:
            lines.append(f"  app sent: {what}{d.got}")
            if live is not None:
                lines.append(f"      {_show_json(live[3])}")
            lines.append(
                "  closest recorded candidate: "
                + _closest(cassette, live[3] if live else None, live[4] if live else d.got, d.recorded_index,
                           show=not d.field)
            )
        if len(s.divergences) > 1:
            lines.append(f"  ({len(s.divergences) - 1} more divergence{'s' if len(s.divergences) > 2 else ''} in this session)")
    if fx._strict:
        lines.append(f"  strict: the replay closed the connection ({s.report.close})")
    if app_error is not None:
        lines.append(f"  the app then failed with {type(app_error).__name__}: {_first_line(app_error)}")
    if s.live is not None:
        lines.append(f"  this run: {s.live}  (rtproxy diff {_rel(fx.cassette)} {s.live})")
    lines.append(
        f"  if the app changed on purpose, re-record: pytest --rtproxy-record-mode all {fx._item.nodeid!r}"
    )
    return "\n".join(lines)


def _first_line(exc: BaseException, limit: int = 120) -> str:
    rcvd = getattr(exc, "rcvd", None)  # websockets.ConnectionClosed: the close frame says enough
    if rcvd is not None and getattr(rcvd, "code", None) is not None:
        return f"the connection closed with {rcvd.code}"
    text = str(exc).strip().splitlines()
    line = text[0] if text else repr(exc)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _unconsumed_message(fx: RtproxyFixture, s: Any) -> str:
    if getattr(s.report, "ended_by_fault", None):
        return ""  # a fault (close, expire, stall, refuse) ended it: the rest was never meant to come
    client, server = s.unconsumed(fx._allow)
    if not client and not server:
        return ""
    lines = [
        f"rtproxy: cassette not fully consumed: {_rel(fx.cassette)} (replay session #{s.number}): the app "
        f"disconnected ({s.report.close}) while the cassette still held events it never reached"
    ]

    def listing(evs: list[Any]) -> str:
        shown = ", ".join(e.label() for e in evs[:6])
        return shown + (f", ... ({len(evs) - 6} more)" if len(evs) > 6 else "")

    if client:
        lines.append(f"  client events never sent ({len(client)}): {listing(client)}")
    if server:
        lines.append(f"  server events never delivered ({len(server)}): {listing(server)}")
        types = sorted({e.type for e in server if e.type})
        if types and not client:
            lines.append(
                f"  if the app stops early on purpose: @pytest.mark.rtproxy(allow_unconsumed={types[:4]!r})"
            )
    if client:
        lines.append(
            f"  if the app no longer sends them on purpose, re-record: pytest --rtproxy-record-mode all "
            f"{fx._item.nodeid!r}"
        )
    return "\n".join(lines)


def _check_message(fx: RtproxyFixture, sessions: list[Any]) -> str:
    from rtproxy.check import severity_rank

    floor = severity_rank(fx._check_level or "error")
    bad = []
    for s in sessions:
        try:
            found = s.check()
        except RuntimeError as exc:
            return f"rtproxy: check={fx._check_level!r}: {exc}"
        bad += [(s, f) for f in found if severity_rank(f.severity) >= floor]
    if not bad:
        return ""
    lines = [f"rtproxy: check found {len(bad)} finding{'s' if len(bad) > 1 else ''} at {fx._check_level} level or above in this run:"]
    for s, f in bad[:10]:
        where = f"#{f.event_index} {f.event_type}" if f.event_index is not None else "session"
        lines.append(f"  session #{s.number}, {f.t:.3f} s, {where}: {f.code} {f.severity}: {f.message}")
    if len(bad) > 10:
        lines.append(f"  ... ({len(bad) - 10} more)")
    return "\n".join(lines)
