"""A progress bar on stderr for long commands, fed by the library's ``progress`` callbacks.

Shown only when both stdout and stderr are terminals and ``CI`` is not set: a
piped or redirected command writes exactly what it wrote before, and nothing
extra reaches stderr. The bar appears once a command has run for
:data:`DELAY` seconds (quick commands never flash one) and is erased when it
ends. Drawn with ``rich``, imported only when a bar is shown.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any, Iterator

from rtproxy.io.progress import Progress

__all__ = ["progress_bar", "enabled", "DELAY"]

#: Seconds before the bar appears.
DELAY = float(os.environ.get("RTPROXY_PROGRESS_DELAY", "0.5"))


def enabled() -> bool:
    """Whether a progress bar may be drawn: stdout and stderr are terminals, not in CI."""
    if os.environ.get("CI"):
        return False
    try:
        return sys.stderr.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


class _Bar:
    def __init__(self, label: str) -> None:
        self.label = label
        self.t0 = time.monotonic()
        self.progress: Any = None
        self.task: Any = None
        self.what: str | None = None

    def __call__(self, what: str, done: int, total: int) -> None:
        if self.progress is None:
            if time.monotonic() - self.t0 < DELAY:
                return
            self._start(f"{self.label}: {what}" if self.label else what)
        desc = f"{self.label}: {what}" if self.label else what
        if what != self.what:
            self.what = what
            self.progress.update(self.task, description=desc, total=total or None, completed=done)
        else:
            self.progress.update(self.task, total=total or None, completed=done)

    def _start(self, desc: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress as RichProgress, TaskProgressColumn, TextColumn, TimeRemainingColumn

        self.progress = RichProgress(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
            console=Console(file=sys.stderr), transient=True,
        )
        self.progress.start()
        self.task = self.progress.add_task(desc, total=None)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


@contextlib.contextmanager
def progress_bar(label: str = "") -> Iterator[Progress | None]:
    """A ``progress`` callback drawing a bar on stderr, or None where no bar is shown."""
    if not enabled():
        yield None
        return
    bar = _Bar(label)
    try:
        yield bar
    finally:
        bar.close()
