"""Recordings, exports and their folders are private (0600 / 0700 under umask 022),
written through fresh temporary files (a planted OUT.part symlink is never
followed), and a failure leaves no empty file or folder behind."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import websockets

from rtproxy.io.format import RecordingWriter, open_recording
from rtproxy.io.safefile import atomic_output, make_private_dirs, remove_empty_dirs
from tests.conftest import ROOT, RTPROXY, Recorder, free_port
from tests.fs_helpers import fill, leftovers, tiny_tmpfs, umask
from tests.hostile_recording import write_hostile
from tests.realtime_server import Scenario, ServerThread

DATA = Path(__file__).parent / "data"


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RTPROXY, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=60)


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


@pytest.fixture(autouse=True)
def _umask_022():  # type: ignore[no-untyped-def]
    with umask(0o022):  # what most systems use: files would be 0644 without care
        yield


# ---------------------------------------------------------------- the writer
def test_recording_writer_creates_0600_and_never_follows_a_planted_file(tmp_path: Path) -> None:
    p = tmp_path / "a.rtrec"
    with RecordingWriter(p) as w:
        w.write_header(url="ws://x/")
    assert mode(p) == 0o600
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "b.rtrec"
    link.symlink_to(victim)
    with pytest.raises(FileExistsError):
        RecordingWriter(link)
    assert victim.read_text() == "keep"


def test_a_recording_that_cannot_be_started_leaves_no_file(tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "fs", 64) as fs:
        fill(fs)
        with pytest.raises(OSError):
            RecordingWriter(fs / "full.rtrec")
        assert leftovers(fs) == []


def test_private_dirs_are_0700_at_every_level_and_removed_when_unused(tmp_path: Path) -> None:
    created = make_private_dirs(tmp_path / "a" / "b" / "c")
    assert [p.name for p in created] == ["a", "b", "c"]
    assert {mode(p) for p in created} == {0o700}
    assert make_private_dirs(tmp_path / "a" / "b" / "c") == []  # existing folders are left alone
    remove_empty_dirs(created)
    assert not (tmp_path / "a").exists()
    with pytest.raises(OSError):
        make_private_dirs(tmp_path / "x" / ("y" * 300))  # the last level cannot be made
    assert not (tmp_path / "x").exists()


def test_atomic_output_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_output(out) as fh:
            fh.write(b"half")
            raise RuntimeError("boom")
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------- exports
@pytest.mark.parametrize(
    "fmt, ext, extra",
    [("html", ".html", ()), ("har", ".har", ()), ("jsonl", ".jsonl", ()), ("wav", ".wav", ()),
     ("redact", ".rtrec", ("--strip-text",))],
)
def test_outputs_are_0600_and_a_planted_part_symlink_is_not_followed(
    tmp_path: Path, fmt: str, ext: str, extra: tuple[str, ...]
) -> None:
    src = write_hostile(tmp_path / "session.rtrec")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / f"copy{ext}"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out_dir / f"copy{ext}.part").symlink_to(victim)
    args = ("redact", src, "-o", out, *extra) if fmt == "redact" else ("export", src, "--format", fmt, "-o", out, *extra)
    p = run(*args)
    assert p.returncode == 0, p.stderr
    assert victim.read_text() == "precious"
    assert (out_dir / f"copy{ext}.part").is_symlink()  # untouched
    assert out.is_file() and not out.is_symlink() and out.stat().st_size > 0
    assert mode(out) == 0o600
    assert leftovers(out_dir) == sorted([f"copy{ext}", f"copy{ext}.part"])


def test_wav_split_files_are_0600(tmp_path: Path) -> None:
    src = write_hostile(tmp_path / "session.rtrec")
    p = run("export", src, "--format", "wav", "--split", "-o", tmp_path / "conv.wav")
    assert p.returncode == 0, p.stderr
    assert {mode(tmp_path / n) for n in ("conv-user.wav", "conv-assistant.wav")} == {0o600}


def test_an_export_that_fails_midway_leaves_nothing(tmp_path: Path) -> None:
    src = write_hostile(tmp_path / "session.rtrec")
    data = bytearray(src.read_bytes())
    mid = len(data) * 2 // 3
    data[mid : mid + 40] = b"\xa5" * 40  # damaged after the first records
    bad = tmp_path / "damaged.rtrec"
    bad.write_bytes(bytes(data))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for fmt in ("jsonl", "html", "har", "wav"):
        p = run("export", bad, "--format", fmt, "-o", out_dir / f"x.{fmt}")
        assert p.returncode == 2, (fmt, p.stdout, p.stderr)
        assert leftovers(out_dir) == [], fmt
    p = run("redact", bad, "-o", out_dir / "x.rtrec", "--strip-text")
    assert p.returncode == 2
    assert leftovers(out_dir) == []


def test_an_export_to_a_full_disk_leaves_nothing(tmp_path: Path) -> None:
    src = write_hostile(tmp_path / "session.rtrec")
    with tiny_tmpfs(tmp_path / "fs", 64) as fs:
        fill(fs, leave=2048)
        for fmt in ("html", "jsonl", "har", "wav"):
            p = run("export", src, "--format", fmt, "-o", fs / f"x.{fmt}")
            assert p.returncode == 2 and "No space left on device" in p.stderr, (fmt, p.stderr)
            assert leftovers(fs) == [], fmt
        p = run("redact", src, "-o", fs / "x.rtrec", "--strip-text")
        assert p.returncode == 2 and "No space left on device" in p.stderr, p.stderr
        assert leftovers(fs) == []


# -------------------------------------------------------------------- import
def test_import_makes_a_0700_folder_of_0600_files(tmp_path: Path) -> None:
    out = tmp_path / "imported" / "har"
    p = run("import", DATA / "chrome_realtime.har", "-o", out)
    assert p.returncode == 0, p.stderr
    files = sorted(out.glob("*.rtrec"))
    assert files and {mode(f) for f in files} == {0o600}
    assert mode(out) == mode(out.parent) == 0o700
    assert not [x for x in leftovers(out) if not x.endswith(".rtrec")]


def test_a_failed_import_leaves_no_folder_and_no_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.har"
    bad.write_text('{"log": {"entries": [')
    p = run("import", bad, "-o", tmp_path / "new" / "out")
    assert p.returncode == 2
    assert not (tmp_path / "new").exists()
    empty = tmp_path / "empty.har"
    empty.write_text(json.dumps({"log": {"version": "1.2", "entries": []}}))
    p = run("import", empty, "-o", tmp_path / "new2")
    assert p.returncode == 2 and not (tmp_path / "new2").exists()
    with tiny_tmpfs(tmp_path / "fs", 64) as fs:
        fill(fs, leave=1024)
        p = run("import", DATA / "chrome_realtime.har", "-o", fs / "out")
        assert p.returncode == 2 and "No space left on device" in p.stderr, p.stderr
        assert leftovers(fs) == []


# -------------------------------------------------------------------- record
def test_recorder_folder_0700_and_recordings_0600(tmp_path: Path) -> None:
    async def client(url: str) -> None:
        async with websockets.connect(url, compression=None) as ws:
            await ws.send('{"type":"response.create"}')
            await ws.recv()

    out = tmp_path / "deep" / "recordings"
    with ServerThread(Scenario(echo=True)) as srv:
        rec = Recorder(srv.url, out)
        try:
            assert mode(out) == mode(out.parent) == 0o700
            asyncio.run(client(f"ws://127.0.0.1:{rec.port}/v1/realtime?model=m"))
            [path] = rec.wait_files(1)
        finally:
            rec.stop()
    assert mode(path) == 0o600
    with open_recording(path) as r:
        assert len(list(r.messages())) == 2


def test_recorder_that_cannot_start_leaves_no_folder(tmp_path: Path) -> None:
    # a folder name too long for the file system: its parent was made first
    p = run("record", "--listen-port", free_port(), "--upstream", "http://127.0.0.1:9",
            "--out-dir", tmp_path / "a" / ("x" * 300))
    assert p.returncode == 2 and "rtrec_dir: cannot create" in p.stderr
    assert not (tmp_path / "a").exists()
    # a port already in use: the folder was made, then the proxy could not listen
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = run("record", "--listen-port", port, "--upstream", "http://127.0.0.1:9",
                "--out-dir", tmp_path / "b" / "recordings")
    assert p.returncode == 2 and "address already in use" in p.stderr
    assert not (tmp_path / "b").exists()
