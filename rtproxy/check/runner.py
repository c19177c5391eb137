"""Check many files: find ``*.rtrec`` under folders, run in parallel processes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

from rtproxy.check.engine import check_file
from rtproxy.check.options import DEFAULT_MIN_SEVERITY, Options, load_config
from rtproxy.check.render import FileResult
from rtproxy.errors import RtproxyError

__all__ = ["collect_files", "check_one", "check_many", "check_as_configured"]


def collect_files(paths: Iterable[str]) -> list[str]:
    """Files as given; folders searched for ``*.rtrec`` recursively (sorted). A path that
    does not exist is kept, so it is reported as unreadable."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            out += sorted(str(f) for f in Path(p).rglob("*.rtrec") if f.is_file())
        else:
            out.append(p)
    return out


def check_one(
    path: str, select: tuple[str, ...] | None, ignore: tuple[str, ...], options: Options, min_severity: str
) -> FileResult:
    """One file's result; an unreadable file gives a result with ``error`` (never raises)."""
    try:
        return FileResult(path, check_file(path, select=select, ignore=ignore, options=options,
                                           min_severity=min_severity))
    except RtproxyError as exc:
        msg = str(exc)
        return FileResult(path, error=msg[len(path) + 2:] if msg.startswith(path + ": ") else msg)
    except OSError as exc:
        return FileResult(path, error=exc.strerror or str(exc))


def check_as_configured(path: str, start: str | os.PathLike[str] | None = None) -> FileResult:
    """What ``rtproxy check PATH`` reports with no options: the ``[tool.rtproxy.check]``
    settings of the nearest pyproject.toml (from ``start``, default the current folder),
    findings at or above its min-severity (default warning), in time order. For the
    views that show findings beside other things (``show --summary``, the html export),
    so it never raises: a bad setting, an unreadable file or a failure of the check
    itself is the result's ``error``, one line."""
    try:
        cfg = load_config(start)
        return FileResult(path, check_file(path, select=cfg.select, ignore=cfg.ignore, options=cfg.options,
                                           min_severity=cfg.min_severity or DEFAULT_MIN_SEVERITY))
    except RtproxyError as exc:
        msg = str(exc)
        return FileResult(path, error=msg[len(path) + 2:] if msg.startswith(path + ": ") else msg)
    except OSError as exc:
        return FileResult(path, error=exc.strerror or str(exc))
    except Exception as exc:  # noqa: BLE001 - what shows the findings must still work without them
        detail = " ".join(str(exc).split())
        if len(detail) > 300:
            detail = detail[:297] + "..."
        return FileResult(path, error=f"internal error: {type(exc).__name__}: {detail}")


def _star(args: tuple[str, tuple[str, ...] | None, tuple[str, ...], Options, str]) -> FileResult:
    return check_one(*args)


def check_many(
    files: list[str],
    select: tuple[str, ...] | None = None,
    ignore: tuple[str, ...] = (),
    options: Options | None = None,
    min_severity: str = "info",
    workers: int | None = None,
    on_result: Callable[[FileResult], None] | None = None,
) -> Iterator[FileResult]:
    """Results in the order of ``files``: sequential for one file (or ``workers=1``),
    else a process pool of ``workers`` (default: the number of cores)."""
    opts = options or Options()
    n = workers or os.cpu_count() or 1
    jobs = [(f, select, ignore, opts, min_severity) for f in files]
    if len(files) <= 1 or n <= 1:
        for j in jobs:
            yield _star(j)
        return
    from concurrent.futures import ProcessPoolExecutor  # here: show --summary and export use only check_as_configured

    with ProcessPoolExecutor(max_workers=min(n, len(files))) as pool:
        yield from pool.map(_star, jobs, chunksize=max(1, min(8, len(files) // (4 * n))))
