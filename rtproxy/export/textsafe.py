"""Text from a recording made safe to print on a terminal (pure, no I/O).

Recordings are of buggy or hostile sessions: a transcript, an event type, a
close reason or a header can hold terminal escapes (``ESC [ 2 J``, an OSC 8
link, an OSC 52 clipboard write), a BEL, a carriage return or backspaces that
overwrite what was printed before, C1 controls (``U+009B`` is a one-character
CSI), bidi overrides that reorder what is shown, and lone surrogates that
cannot even be encoded. :func:`visible` shows each of them as an escape
(``\\x1b``, ``\\u009b``, ``\\ud800``) and leaves every other character as it is.

Everything rtproxy prints for a person goes through it: ``rtproxy show``,
``show --summary``, ``rtproxy diff`` (text and Markdown) and the one-line
``rtproxy: error:`` message.
"""

from __future__ import annotations

import re

__all__ = ["visible", "UNSAFE"]

#: What a terminal (or a bidi-aware viewer) would act on instead of showing:
#: C0 controls, DEL, C1 controls, the line and paragraph separators, bidi
#: marks, embeddings, overrides and isolates, and surrogates (never valid alone).
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
_UNSAFE_OR_NEWLINE_OK = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x80 else f"\\u{c:04x}"


def visible(text: object, *, newlines: bool = False) -> str:
    """``text`` (``str()`` of it) with every control character shown as an escape.

    ``\\x1b`` for C0 controls and DEL, ``\\u009b`` for C1 controls and the other
    unsafe code points. A newline is escaped too (one value stays one line)
    unless ``newlines`` is true. The result is a printable string that any
    UTF-8 stream can encode.
    """
    s = text if isinstance(text, str) else str(text)
    pattern = _UNSAFE_OR_NEWLINE_OK if newlines else UNSAFE
    if pattern.search(s) is None:
        return s
    return pattern.sub(_escape, s)
