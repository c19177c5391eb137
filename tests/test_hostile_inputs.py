"""Every command over hostile inputs, as real processes: no traceback, no hang,
exit code 0/1/2, bounded memory, and a one-line ``rtproxy: error:`` when it fails.

The inputs come from :mod:`tests.corpus` (client mistakes, crafted records,
damaged files, zstd bombs), plus a few client-mistake sessions recorded for
real through ``rtproxy record``. By default a sample runs (every input class
with every command, inputs rotated over commands); ``RTPROXY_CORPUS_FULL=1``
runs every command over every input, with every few-byte truncation and a
bit flip per byte of a recording, and prints the table of runs per command
and input class.

The full sweep is some 55,000 runs (hours on two cores); it can be run in
slices. Only the commands of the selected tests run (``pytest
'tests/test_hostile_inputs.py::test_command_survives_hostile_inputs[show-json]'``
runs ``show --json`` alone), ``RTPROXY_CORPUS_CLASSES=damaged,bomb`` keeps
those input classes, and ``RTPROXY_CORPUS_SHARD=2/4`` the second quarter of
the inputs of each class; ``RTPROXY_CORPUS_DUMP=FILE`` appends every run to
FILE as a JSON line.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import websockets

from tests import corpus
from tests.conftest import Recorder
from tests.realtime_server import Scenario, ServerThread

# The module's runs happen once, in the first test's fixture: a generous limit for
# them (each run has its own TIMEOUT; a hang fails that run, not the module).
FULL = os.environ.get("RTPROXY_CORPUS_FULL") == "1"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(12 * 3600 if FULL else 1800)]
#: The input classes to build and run (all by default).
CLASSES = [c for c in os.environ.get("RTPROXY_CORPUS_CLASSES", ",".join(corpus.CLASSES)).split(",") if c]
#: ``i/n``: the i-th of n slices of each class's inputs.
SHARD = os.environ.get("RTPROXY_CORPUS_SHARD", "1/1")
#: Longest a single run may take: longer is a hang. The heaviest bomb (export html of
#: bomb-ulaw-audio: 90 minutes of audio to Opus) takes about 20 s alone and up to a minute
#: beside the other runs on a busy 2-core CI machine, where it once passed 60 s.
TIMEOUT = 180.0
#: Max RSS of any run.
RSS_LIMIT_KIB = 1 << 20  # 1 GiB

#: What a client sends through the recorder (echoed back by the server): raw texts.
RECORDED = [
    corpus.RATES[0], corpus.RATES[1], corpus.RATES[2],
    corpus.TRUNCATES[0], corpus.TRUNCATES[1], corpus.TRUNCATES[2],
    corpus.DEEP[0], corpus.SURROGATES[0], corpus.WRONG_TYPES[2], corpus.WRONG_TYPES[6],
    corpus.HOSTILE_TEXT[0],
]


def _record(out: Path) -> list[corpus.Case]:
    """Client-mistake sessions sent through `rtproxy record` by a plain websockets client."""

    async def client(url: str) -> None:
        async with websockets.connect(url, max_size=None, compression=None) as ws:
            for text in RECORDED:
                await ws.send(text)
                await asyncio.wait_for(ws.recv(), 20)
            await ws.send(b"\x00\xffbinary")
            await asyncio.wait_for(ws.recv(), 20)

    with ServerThread(Scenario(echo=True)) as srv:
        rec = Recorder(srv.url, out / "recorded")
        try:
            asyncio.run(client(f"ws://127.0.0.1:{rec.port}/v1/realtime?model=gpt-realtime"))
            [path] = rec.wait_files(1)
        finally:
            rec.stop()
    return [corpus.Case("client-recorded", "client", path, "recorded through rtproxy record")]


#: (input, command) pairs the sample always runs: what the full sweep found broken once.
REGRESSIONS = {
    ("bomb-many-records", "check"),  # every binary frame held by RT010: 3.6 GiB
    ("bomb-ulaw-audio", "export-html"),  # a 90-minute clip encoded as one frame: 4.2 GiB
    ("bomb-big-audio", "replay"),  # two readers each holding two decompressed steps: 1.02 GiB
}


def _pick(cases: list[corpus.Case]):  # type: ignore[no-untyped-def]
    """The sample: inputs of a class rotated over the commands, so every class meets
    every command; client-mistake sessions meet them all."""
    by_cls: dict[str, list[str]] = {}
    for c in cases:
        by_cls.setdefault(c.cls, []).append(c.name)
    every = {"client": 1, "crafted": 6, "damaged": 9, "bomb": len(corpus.COMMANDS)}
    cmds = list(corpus.COMMANDS)

    def pick(case: corpus.Case, cmd: str) -> bool:
        if FULL or (case.name, cmd) in REGRESSIONS:
            return True
        names = by_cls[case.cls]
        k = every[case.cls]
        i = names.index(case.name)
        j = cmds.index(cmd)
        if case.cls == "bomb":
            return i == j % len(names)
        return (i + j) % k == 0

    return pick


def _selected_commands(request: pytest.FixtureRequest) -> list[str]:
    """The commands whose test was selected; all of them if a test over every run was."""
    chosen: set[str] = set()
    for item in request.session.items:
        if getattr(item, "module", None) is not request.module or "runs" not in getattr(item, "fixturenames", ()):
            continue
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "command" not in params:
            return list(corpus.COMMANDS)
        chosen.add(params["command"])
    return [c for c in corpus.COMMANDS if c in chosen]


def _shard(cases: list[corpus.Case]) -> list[corpus.Case]:
    i, n = (int(x) for x in SHARD.split("/"))
    by_cls: dict[str, list[corpus.Case]] = {}
    for c in cases:
        by_cls.setdefault(c.cls, []).append(c)
    return [c for group in by_cls.values() for k, c in enumerate(group) if k * n // len(group) == i - 1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> list[corpus.Run]:
    out = tmp_path_factory.mktemp("corpus")
    cases = corpus.build(out, full=FULL, classes=CLASSES) + (_record(out) if "client" in CLASSES else [])
    cases = _shard(cases)
    ref = corpus.base_recording(out / "ref.rtrec")
    result = corpus.run_all(cases, out, ref, commands=_selected_commands(request),
                            workers=max(2, os.cpu_count() or 2) + 1, timeout=TIMEOUT, pick=_pick(cases))
    if os.environ.get("RTPROXY_CORPUS_DUMP"):
        import dataclasses
        import json

        with open(os.environ["RTPROXY_CORPUS_DUMP"], "a") as fh:
            for r in result:
                fh.write(json.dumps({**dataclasses.asdict(r), "stdout": r.stdout[:2000],
                                     "problems": r.problems(rss_limit_kib=RSS_LIMIT_KIB)}) + "\n")
    if FULL:
        tr = request.config.pluginmanager.getplugin("terminalreporter")
        text = "\n" + corpus.table(result) + "\n"
        if tr is not None:
            tr.write_line(text)
        else:
            print(text)
    return result


def test_every_class_meets_every_command(runs: list[corpus.Run]) -> None:
    met = {(r.command.split("@")[0], r.cls) for r in runs}
    missing = [(c, k) for c in corpus.COMMANDS for k in corpus.CLASSES if (c, k) not in met]
    assert not missing
    assert any(r.case == "client-recorded" for r in runs)


@pytest.mark.parametrize("command", list(corpus.COMMANDS))
def test_command_survives_hostile_inputs(runs: list[corpus.Run], command: str) -> None:
    mine = [r for r in runs if r.command.split("@")[0] == command]
    assert mine or CLASSES != list(corpus.CLASSES) or SHARD != "1/1"
    bad = [r for r in mine if r.problems(rss_limit_kib=RSS_LIMIT_KIB)]
    assert not bad, f"{len(bad)} of {len(mine)} runs failed:\n" + "\n".join(r.describe() for r in bad[:12])


def test_errors_name_the_file(runs: list[corpus.Run]) -> None:
    """A run that fails on a bad file says which file (the one-line error holds its name)."""
    bad = [r for r in runs if r.returncode == 2 and r.cls in ("damaged", "crafted")
           and not r.command.startswith("diff") and f"{r.case}.rtrec" not in r.stderr]
    assert not bad, "\n".join(r.describe() for r in bad[:10])


def test_replay_of_damaged_file_says_where(runs: list[corpus.Run]) -> None:
    """A replay that meets damage mid-stream exits 2 with a one-line error that says
    where (after which message), never 0 with a log line."""
    damaged = [r for r in runs if r.command.startswith("replay") and r.cls == "damaged"]
    for r in damaged:
        if "damaged" in r.stderr or "CorruptRecording" in r.stderr:
            assert r.returncode == 2, r.describe()
            assert "rtproxy: error:" in r.stderr, r.describe()


_BOOM = """
import sys

import click
import rtproxy.cli
from rtproxy.errors import CorruptRecording

cm = sys.modules["rtproxy.cli.main"]  # (rtproxy.cli.main the attribute is the function)

@cm.cli.command("boom")
@click.argument("what")
def boom(what):
    if what == "rtproxy":
        raise CorruptRecording("x.rtrec", "damaged record; after message #3 at 1.0 ms")
    raise ValueError("bad\\nthing")

cm.main()
"""


@pytest.mark.parametrize("what,line", [
    ("rtproxy", "rtproxy: error: x.rtrec: damaged record; after message #3 at 1.0 ms\n"),
    ("other", "rtproxy: error: internal error: ValueError: bad thing (please report with the recording)\n"),
])
def test_cli_safety_nets_print_one_line(what: str, line: str) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RTPROXY_DEBUG"}
    r = subprocess.run([sys.executable, "-c", _BOOM, "boom", what], capture_output=True, text=True, env=env,
                       timeout=60)
    assert (r.returncode, r.stderr) == (2, line)
    if what == "other":
        r = subprocess.run([sys.executable, "-c", _BOOM, "boom", what], capture_output=True, text=True,
                           env={**env, "RTPROXY_DEBUG": "1"}, timeout=60)
        assert "Traceback" in r.stderr and "ValueError: bad" in r.stderr
