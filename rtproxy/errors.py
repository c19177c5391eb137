"""Every error rtproxy raises on purpose, in one tree.

::

    RtproxyError                    str() is a one-line message for a person
    ├── RecordingError              a recording could not be read (.path, .problem)
    │   ├── NotARecording           no .rtrec magic bytes
    │   ├── CorruptRecording        damaged compressed stream or record
    │   ├── UnsupportedVersion      written by a newer rtproxy
    │   └── RecordTooLarge          a record would decompress past the memory bound
    ├── UsageError                  a bad option or argument (also a ValueError)
    │   ├── PathError               a bad --ignore path in diff
    │   └── FaultSpecError          a --fault SPEC that does not parse or names nothing
    ├── ImportFailed                a HAR / flow file that cannot be imported
    │   └── HarError                a HAR that is not one
    ├── ProxyStartError             the recorder could not start (port, options)
    └── ReplayError                 a replay could not run to its end
        └── ClientReplayError       re-sending to a live endpoint failed

The command line catches :class:`RtproxyError` once and prints
``rtproxy: error: <message>`` with exit status 2. Any other exception there
is a bug: it is printed as one line too, ``rtproxy: error: internal error:
<type>: <message> (please report with the recording)``, exit status 2
(``RTPROXY_DEBUG=1`` shows the traceback instead).
"""

from __future__ import annotations

import os

__all__ = [
    "RtproxyError",
    "RecordingError",
    "NotARecording",
    "CorruptRecording",
    "UnsupportedVersion",
    "RecordTooLarge",
    "UsageError",
    "PathError",
    "FaultSpecError",
    "ImportFailed",
    "HarError",
    "ProxyStartError",
    "ReplayError",
    "ClientReplayError",
]


class RtproxyError(Exception):
    """Root of every error rtproxy raises on purpose; ``str()`` is one line."""


class RecordingError(RtproxyError):
    """A recording could not be read. ``str()`` is ``"<path>: <problem>"``."""

    def __init__(self, path: str | os.PathLike[str] | None, problem: str) -> None:
        self.path = str(path) if path is not None else "<stream>"
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class NotARecording(RecordingError):
    """The file does not start with the .rtrec magic bytes."""


class CorruptRecording(RecordingError):
    """The file is an .rtrec but its compressed stream or a record is damaged."""


class UnsupportedVersion(RecordingError):
    """The file was written by a newer rtproxy with a format this one cannot read."""


class RecordTooLarge(CorruptRecording):
    """A record decompresses to more than the reader's bound (a zstd bomb, or damage)."""


class UsageError(RtproxyError, ValueError):
    """A bad option or argument."""


class PathError(UsageError):
    """A bad field path (``diff --ignore``)."""


class FaultSpecError(UsageError):
    """A ``--fault`` SPEC that does not parse, or names an event the recording lacks."""


class ImportFailed(RtproxyError):
    """A capture (HAR, mitmproxy flows) that cannot be imported."""


class HarError(ImportFailed, ValueError):
    """A file that is not a usable HAR."""


class ProxyStartError(RtproxyError):
    """The recorder could not start (a port in use, a bad option)."""


class ReplayError(RtproxyError):
    """A replay could not run to its end."""


class ClientReplayError(ReplayError):
    """Re-sending a recording's client side to a live endpoint failed."""
