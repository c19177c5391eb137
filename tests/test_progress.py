"""Progress bars: drawn on stderr when stdout and stderr are terminals (pseudo-terminals
here), and nothing extra when they are piped or CI is set."""

from __future__ import annotations

import base64
import json
import os
import pty
import subprocess
import threading
from pathlib import Path

import pytest

from rtproxy.io.format import start_recording
from rtproxy.io.progress import counting, reading
from tests.conftest import ROOT, RTPROXY


def _recording(path: Path, n: int = 3000) -> Path:
    w = start_recording(path, url="ws://127.0.0.1/v1/realtime?model=gpt-realtime", started=1.7e9,
                        recorder="test", model="gpt-realtime")
    pcm = bytes(range(256)) * 10
    for i in range(n):
        ev = {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}
        w.write_message(i * 20_000_000, True, True, json.dumps(ev).encode())
    w.close()
    return path


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _recording(tmp_path_factory.mktemp("progress") / "a.rtrec")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update({"RTPROXY_PROGRESS_DELAY": "0", "COLUMNS": "100", "TERM": "xterm"}, **extra)
    return env


def _on_terminals(args: list[str], env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """Run with stdout and stderr on pseudo-terminals of their own: (status, stdout, stderr)."""
    out_m, out_s = pty.openpty()
    err_m, err_s = pty.openpty()
    got: dict[int, bytearray] = {out_m: bytearray(), err_m: bytearray()}

    def drain(fd: int) -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the other end is closed
                return
            if not chunk:
                return
            got[fd] += chunk

    threads = [threading.Thread(target=drain, args=(fd,), daemon=True) for fd in (out_m, err_m)]
    for t in threads:
        t.start()
    p = subprocess.Popen([*RTPROXY, *args], stdin=subprocess.DEVNULL, stdout=out_s, stderr=err_s, cwd=ROOT, env=env)
    os.close(out_s)
    os.close(err_s)
    code = p.wait(timeout=120)
    for t in threads:
        t.join(10)
    os.close(out_m)
    os.close(err_m)
    return code, bytes(got[out_m]), bytes(got[err_m])


COMMANDS = [
    (["export", "{rec}", "--format", "jsonl", "-o", "{tmp}/x.jsonl"], "export: reading"),
    (["export", "{rec}", "--format", "html", "-o", "{tmp}/x.html"], "export: reading"),
    (["export", "{rec}", "--format", "wav", "-o", "{tmp}/x.wav"], "export: reading"),
    (["export", "{rec}", "--format", "har", "-o", "{tmp}/x.har"], "export: reading"),
    (["redact", "{rec}", "--strip-text", "-o", "{tmp}/x.rtrec"], "redact: reading"),
    (["diff", "{rec}", "{rec}"], "diff: reading"),  # A, then B: a quick diff may draw only B
]


@pytest.mark.parametrize("args,label", COMMANDS, ids=[c[0][0] + "-" + c[0][3 if c[0][0] == "export" else 1] for c in COMMANDS])
def test_progress_on_a_terminal_and_none_when_piped(rec: Path, tmp_path: Path, args: list[str], label: str) -> None:
    argv = [a.format(rec=rec, tmp=tmp_path) for a in args]
    code, out, err = _on_terminals(argv, _env())
    assert code == 0, (out, err)
    assert label.encode() in err, err[-2000:]
    assert label.encode() not in out  # the bar is on stderr only
    for f in tmp_path.iterdir():
        f.unlink()

    # Piped: stderr is empty, stdout what it always was.
    p = subprocess.run([*RTPROXY, *argv], capture_output=True, cwd=ROOT, env=_env(), timeout=120)
    assert p.returncode == 0 and p.stderr == b""
    assert b"\x1b" not in p.stdout and label.encode() not in p.stdout
    for f in tmp_path.iterdir():
        f.unlink()

    # On terminals with CI set: no bar either.
    code, out, err = _on_terminals(argv, _env(CI="1"))
    assert code == 0 and label.encode() not in err and b"\x1b[" not in err


def test_no_bar_when_only_stderr_is_a_terminal(rec: Path, tmp_path: Path) -> None:
    err_m, err_s = pty.openpty()
    p = subprocess.Popen([*RTPROXY, "export", str(rec), "--format", "jsonl", "-o", "-"], stdout=subprocess.PIPE,
                         stderr=err_s, cwd=ROOT, env=_env())
    os.close(err_s)
    out, _ = p.communicate(timeout=120)
    os.set_blocking(err_m, False)
    try:
        err = os.read(err_m, 65536)
    except OSError:
        err = b""
    os.close(err_m)
    assert p.returncode == 0 and err == b"" and out.count(b"\n") == 3000 + 2


def test_reading_and_counting_report_and_pass_items_through(rec: Path) -> None:
    from rtproxy.io.format import open_recording

    calls: list[tuple[str, int, int]] = []
    with open_recording(rec) as reader:
        size = reader.file_size
        n = sum(1 for _ in reading(reader.messages(), reader, lambda *a: calls.append(a), every=500))
    assert n == 3000 and size == rec.stat().st_size
    assert calls[0] == ("reading", 0, size) and calls[-1] == ("reading", size, size)
    assert len(calls) == 2 + 3000 // 500
    assert all(a[1] <= b[1] for a, b in zip(calls, calls[1:]))
    got: list[tuple[str, int, int]] = []
    assert list(counting("abc", 3, lambda *a: got.append(a), "x")) == ["a", "b", "c"]
    assert got == [("x", 0, 3), ("x", 1, 3), ("x", 2, 3), ("x", 3, 3), ("x", 3, 3)]
    assert list(reading([1, 2], reader, None)) == [1, 2]
