"""Real file-system failures for tests: a tiny tmpfs that fills up (needs root and
mount; tests skip where that is not possible), and a umask set for a block."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


@contextlib.contextmanager
def tiny_tmpfs(path: Path, size_kb: int = 64) -> Iterator[Path]:
    """``path`` as a tmpfs of ``size_kb`` KiB, unmounted afterwards; skips the test
    when mounting is not allowed here."""
    path.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0755", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip() or p.returncode}); needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path, leave: int = 0) -> None:
    """Fill the file system holding ``folder`` until at most ``leave`` bytes are free."""
    filler = folder / ".filler"
    with open(filler, "ab") as fh:
        chunk = b"\0" * 4096
        try:
            while True:
                st = os.statvfs(folder)
                free = st.f_bavail * st.f_frsize
                if free <= leave:
                    break
                fh.write(chunk if free - leave >= 4096 else b"\0" * (free - leave))
                fh.flush()
        except OSError:
            pass


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def leftovers(folder: Path) -> list[str]:
    """Everything in ``folder`` but the filler, recursively."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name != ".filler")
