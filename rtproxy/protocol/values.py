"""Values from a recording, checked once: the one place untrusted fields are read (pure).

Everything in a recording is untrusted: a header's ``started``, a close's
``t_ns``, an event's ``audio_end_ms`` or ``rate`` can be a string, NaN,
``1e400`` (which JSON reads as infinity), a list, an integer with 5,000 digits,
a msgpack ext type. Readers never use such a value directly; they ask:

* :func:`number` / :func:`integer`: a finite number in range, else None;
* :func:`text_or_none`: a string (bytes decoded, never raising), else None;
* :func:`ident`: an id (a string), else None, so it can be a dict key;
* :func:`header_pairs`: ``[name, value]`` string pairs, the rest skipped;
* :func:`valid_header`: whether a pair can be sent in an HTTP response;
* :func:`jsonable`: any value as something ``json.dumps`` writes as valid JSON.

Nothing here raises on odd input.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from typing import Any

__all__ = [
    "number",
    "integer",
    "text_or_none",
    "ident",
    "short_id",
    "MAX_ID_CHARS",
    "header_pairs",
    "valid_header",
    "sendable_close",
    "jsonable",
]


def number(value: Any, lo: float = -math.inf, hi: float = math.inf) -> float | None:
    """``value`` as a finite number within [lo, hi], else None (strings, NaN, bools...)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:  # an int too large for a float
        return None
    if not math.isfinite(f) or not lo <= f <= hi:
        return None
    return f


def integer(value: Any, lo: int = -(1 << 63), hi: int = (1 << 63) - 1) -> int | None:
    """``value`` as a whole number within [lo, hi], else None."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        return None
    return value


def text_or_none(value: Any) -> str | None:
    """``value`` if it is a string, else None (bytes are decoded, never raised on)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return None


def ident(value: Any) -> str | None:
    """An id (``response_id``, ``item_id``, ``event_id``) if it is a non-empty string, else None.

    Always hashable: an id that is a list or an object in a hostile event is no id.
    """
    return value if isinstance(value, str) and value else None


#: Longest id a reader keeps as it is (the server's ids are under 40 characters;
#: a client's own event_ids are seldom longer than a UUID).
MAX_ID_CHARS = 128


def short_id(value: Any) -> str | None:
    """An id (``item_id``, ``response_id``, ``call_id``, ``event_id``...) as a reader
    keeps it: ``value`` if it is a str of at most :data:`MAX_ID_CHARS`, a longer one as
    its first 100 characters, "…#" and a digest (a crafted session's 300,000 distinct
    ids of 10 KB would be 3 GB kept; what is shown still says how the id starts),
    else None. The same for an id already so kept."""
    if not isinstance(value, str):
        return None
    if len(value) <= MAX_ID_CHARS:
        return value
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    return value[:100] + "\u2026#" + digest


def header_pairs(value: Any) -> list[tuple[str, str]]:
    """Header pairs from a record, skipping entries that are not ``[name, value]`` strings.

    A map (``{name: value}``) is read as its items; triples, strings and numbers are skipped.
    """
    out: list[tuple[str, str]] = []
    if isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, (list, tuple)) and len(item) == 2:
                k, v = text_or_none(item[0]), text_or_none(item[1])
                if k is not None and v is not None:
                    out.append((k, v))
    elif isinstance(value, dict):
        for k, v in value.items():
            ks, vs = text_or_none(k), text_or_none(v)
            if ks is not None and vs is not None:
                out.append((ks, vs))
    return out


# RFC 9110: a field name is a token; a value holds no CR, LF or NUL (and, sent as
# latin-1 by HTTP/1.1 servers, no character past U+00FF).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile("[\x00-\x08\x0a-\x1f\x7f\u0100-\U0010ffff]")


def valid_header(name: str, value: str) -> bool:
    """Whether ``name: value`` can go into an HTTP/1.1 response as it is."""
    return bool(_TOKEN.fullmatch(name)) and _BAD_VALUE.search(value) is None


#: Close codes a WebSocket endpoint may send (RFC 6455 7.4; 3000-4999 registered or private).
_SENDABLE_CLOSE = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})


def sendable_close(code: int | None, reason: str | None) -> tuple[int, str]:
    """A close frame an endpoint can send for a recorded ``code`` and ``reason``: a
    code no endpoint may send (1, 1005, 1006, 70000) becomes 1000; the reason is
    cut to the 123 bytes a close frame holds, a lone surrogate shown as an escape."""
    ok = code is not None and (code in _SENDABLE_CLOSE or 3000 <= code <= 4999)
    data = (reason or "").encode("utf-8", "backslashreplace")
    if len(data) > 123:
        data = data[:123]
    return (code if ok and code is not None else 1000), data.decode("utf-8", "ignore")


#: Deepest nesting :func:`jsonable` copies (deeper values become a note).
_MAX_DEPTH = 64


def jsonable(value: Any, _depth: int = 0) -> Any:
    """``value`` (from msgpack or JSON) as what ``json.dumps`` writes as valid JSON.

    Text stays text; bytes become text when they are UTF-8, else ``{"base64": ...}``;
    NaN and infinities become None; msgpack ext types ``{"ext": code, "base64": ...}``;
    map keys strings; anything else its ``repr``. Nesting is cut at 64 levels.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode()}
    if _depth >= _MAX_DEPTH:
        return "(nested too deep)"
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(jsonable(k, _depth + 1)): jsonable(v, _depth + 1)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, _depth + 1) for v in value]
    code = getattr(value, "code", None)
    data = getattr(value, "data", None)
    if isinstance(code, int) and isinstance(data, bytes):  # msgpack.ExtType
        return {"ext": code, "base64": base64.b64encode(data).decode()}
    to_unix = getattr(value, "to_unix", None)  # msgpack.Timestamp
    if callable(to_unix):
        try:
            return number(to_unix())
        except (OverflowError, ValueError, TypeError):
            return None
    return repr(value)
