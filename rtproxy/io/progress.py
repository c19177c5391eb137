"""Progress of long reads, reported through a plain callback (pure: no terminal here).

A long command (an export, redact, diff, import, check of a folder, client
replay) takes an optional ``progress`` callback and calls it now and then with
``(what, done, total)``: a short phase name ("reading", "encoding audio"...),
and how far it is in that phase in whatever unit it counts (bytes of the file,
clips, files, messages). The command line turns the calls into a progress bar
on a terminal (:mod:`rtproxy.cli.progress`); library callers pass nothing and
pay nothing.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Protocol, TypeVar

__all__ = ["Progress", "reading", "counting"]

#: ``progress(what, done, total)``; ``total`` 0 when unknown.
Progress = Callable[[str, int, int], None]

T = TypeVar("T")

#: Items between two reports: often enough for a smooth bar, rare enough to cost nothing.
EVERY = 1024


class _Positioned(Protocol):
    @property
    def position(self) -> int: ...

    @property
    def file_size(self) -> int: ...


def reading(
    items: Iterable[T], reader: _Positioned, progress: Progress | None, what: str = "reading", every: int = EVERY
) -> Iterator[T]:
    """``items`` unchanged, reporting how many bytes of ``reader``'s file have been read."""
    if progress is None:
        yield from items
        return
    total = reader.file_size
    progress(what, 0, total)
    for i, item in enumerate(items, 1):
        if i % every == 0:
            progress(what, reader.position, total)
        yield item
    progress(what, total, total)


def counting(items: Iterable[T], total: int, progress: Progress | None, what: str, every: int = 1) -> Iterator[T]:
    """``items`` unchanged, reporting how many have been taken out of ``total``."""
    if progress is None:
        yield from items
        return
    progress(what, 0, total)
    n = 0
    for n, item in enumerate(items, 1):
        yield item
        if n % every == 0:
            progress(what, n, total)
    progress(what, max(n, total), total)
