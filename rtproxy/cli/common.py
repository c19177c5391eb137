"""What every command shares: exit codes and the one-line error.

Exit codes (see :class:`Exit`): 0 ok, 1 a difference, divergence or finding,
2 bad input or usage (an unreadable file, a bad option).
"""

from __future__ import annotations

import enum
import sys

import click

from rtproxy.export.textsafe import visible

__all__ = ["Exit", "fail"]


class Exit(enum.IntEnum):
    OK = 0
    DIFFERENT = 1
    ERROR = 2


def fail(message: str) -> None:
    """Print a one-line error and exit with :data:`Exit.ERROR`.

    The message often quotes a recording (an event type, a path): control
    characters in it are shown as escapes (:func:`rtproxy.export.textsafe.visible`).
    """
    click.echo(f"rtproxy: error: {visible(message)}", err=True)
    sys.exit(Exit.ERROR)
