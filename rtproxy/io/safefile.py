"""Private files and folders, written atomically (no click, no mitmproxy).

Recordings and exports hold conversations: rtproxy creates them readable by
their owner only (files 0600, the folders it creates 0700, whatever the
umask). An output is written to a fresh temporary file in the target's own
folder (a random name created with ``O_EXCL``, so a planted ``OUT.part`` or
symlink is never opened) and renamed into place once complete; on failure the
temporary file is removed and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = [
    "FILE_MODE",
    "DIR_MODE",
    "make_private_dirs",
    "remove_empty_dirs",
    "temp_path_for",
    "atomic_output",
    "write_atomic",
]

FILE_MODE = 0o600
DIR_MODE = 0o700


def make_private_dirs(path: str | os.PathLike[str]) -> list[Path]:
    """Create ``path`` and its missing parents, each 0700 (``mkdir -p`` would
    give the parents the umask's mode). Returns the folders created, outermost
    first; folders that exist are left as they are. If one cannot be created,
    those created so far are removed again before the error is raised.
    """
    target = Path(path)
    missing: list[Path] = []
    p = target
    while not p.exists():
        if p.is_symlink():  # a dangling symlink: mkdir would fail on it anyway
            break
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    created: list[Path] = []
    try:
        for d in reversed(missing):
            try:
                os.mkdir(d, DIR_MODE)
            except FileExistsError:
                if not d.is_dir():
                    raise
                continue
            created.append(d)
        if not target.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(target))
    except BaseException:
        remove_empty_dirs(created)
        raise
    return created


def remove_empty_dirs(created: list[Path]) -> None:
    """Remove folders :func:`make_private_dirs` created, innermost first, as long
    as they are empty (a folder that holds anything stays)."""
    for d in reversed(created):
        try:
            os.rmdir(d)
        except OSError:
            return


def temp_path_for(out: str | os.PathLike[str]) -> str:
    """A fresh, unpredictable name next to ``out`` (``.<name>.<random>.part``),
    for a writer that creates it with ``O_EXCL`` itself."""
    folder, name = os.path.split(os.fspath(out))
    return os.path.join(folder, f".{name}.{secrets.token_hex(8)}.part")


@contextlib.contextmanager
def atomic_output(out: str | os.PathLike[str], *, text: bool = False) -> Iterator[Any]:
    """A file object to write ``out`` through: a 0600 temporary file in ``out``'s
    folder, renamed to ``out`` when the block ends without an error, removed
    when it raises. ``text`` opens it for UTF-8 text."""
    out = os.fspath(out)
    folder, name = os.path.split(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder or ".")
    try:
        fh: Any = os.fdopen(fd, "w", encoding="utf-8") if text else os.fdopen(fd, "wb")
        with fh:
            yield fh
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomic(out: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``out`` (0600) through a temporary file and a rename."""
    with atomic_output(out) as fh:
        fh.write(data)
