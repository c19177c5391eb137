"""Check many files: find ``*.rtrec`` under folders, run in parallel processes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from rtproxy.check.engine import Checker, check_file, filter_findings
from rtproxy.check.options import DEFAULT_MIN_SEVERITY, Options, load_config, select_codes
from rtproxy.check.rules import RULES
from rtproxy.check.render import FileResult
from rtproxy.errors import RtproxyError
from rtproxy.view.events import open as open_recording

__all__ = ["collect_files", "check_one", "check_many", "check_as_configured", "ConfiguredCheck"]


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


class ConfiguredCheck:
    """What ``rtproxy check PATH`` reports with no options, fed the events of a pass
    another view makes anyway (the html export): one read of the file for both.

    ``[tool.rtproxy.check]`` settings of the nearest pyproject.toml (from ``start``,
    default the current folder), findings at or above its min-severity (default
    warning), in time order. Never raises: a bad setting or a failure of the check
    itself is the result's ``error``, one line.
    """

    def __init__(self, path: str, start: str | os.PathLike[str] | None = None, handshake: Any = None) -> None:
        self.path = path
        self.error: str | None = None
        self._checker: Checker | None = None
        try:
            self._cfg = load_config(start)
            select_codes(RULES, self._cfg.select, self._cfg.ignore)  # bad codes: the error, before the work
            self._checker = Checker(self._cfg.options)
            self._checker.set_handshake(handshake)
        except RtproxyError as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self._checker = None
        self.error = _error_line(self.path, exc)

    def feed(self, ev: Any) -> None:
        if self._checker is None:
            return
        try:
            self._checker.feed(ev)
        except Exception as exc:  # noqa: BLE001 - what shows the findings must still work without them
            self._fail(exc)

    def result(self, handshake: Any = None, close: Any = None, cut_short: bool = False) -> FileResult:
        """The findings, once every event was fed (``close``, ``cut_short``: known at the end)."""
        if self._checker is not None:
            try:
                cfg = self._cfg
                found = self._checker.finish(handshake, close, cut_short)
                return FileResult(self.path, filter_findings(found, cfg.select, cfg.ignore,
                                                             cfg.min_severity or DEFAULT_MIN_SEVERITY))
            except Exception as exc:  # noqa: BLE001
                self._fail(exc)
        return FileResult(self.path, error=self.error)


def check_as_configured(path: str, start: str | os.PathLike[str] | None = None) -> FileResult:
    """:class:`ConfiguredCheck` over the file (for ``show --summary``): never raises; an
    unreadable file is the result's ``error``."""
    try:
        rec = open_recording(path)
        check = ConfiguredCheck(path, start, rec.handshake)
        for ev in rec.events():
            check.feed(ev)
        return check.result(rec.handshake, rec.close, rec.cut_short)
    except Exception as exc:  # noqa: BLE001 - what shows the findings must still work without them
        return FileResult(path, error=_error_line(path, exc))


def _error_line(path: str, exc: BaseException) -> str:
    """Why a file was not checked, in one line without the path."""
    if isinstance(exc, RtproxyError):
        msg = str(exc)
        return msg[len(path) + 2:] if msg.startswith(path + ": ") else msg
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    detail = " ".join(str(exc).split())
    if len(detail) > 300:
        detail = detail[:297] + "..."
    return f"internal error: {type(exc).__name__}: {detail}"


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
