"""Removing secrets before anything reaches a recording file.

Pure functions. Each returns the cleaned value and whether it changed, so
records can say what was redacted. What counts as a secret is listed in
``docs/FORMAT.md`` ("Secrets").
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

__all__ = [
    "MARKER",
    "SECRET_HEADERS",
    "MASKED_HEADERS",
    "redact_headers",
    "redact_url",
    "redact_subprotocols",
    "redact_payload",
    "might_hold_secrets",
]

#: What a removed value is replaced with.
MARKER = "[REDACTED by rtproxy]"

#: Handshake headers whose whole value is a credential.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "api-key",
        "cookie",
        "set-cookie",
        "proxy-authorization",
        "x-api-key",
        "openai-api-key",
    }
)
#: Account identifiers: not credentials, still worth masking.
MASKED_HEADERS = frozenset({"openai-organization", "openai-project"})

#: Query parameters that carry credentials (compared lower-case).
SECRET_QUERY = frozenset(
    {
        "api-key",
        "api_key",
        "apikey",
        "authorization",
        "key",
        "token",
        "access_token",
        "client_secret",
        "secret",
        "sig",
        "signature",
        "password",
    }
)

_INSECURE_KEY_PREFIX = "openai-insecure-api-key."
_EK_RE = re.compile(r"ek_[A-Za-z0-9_\-]{6,}")
_SK_RE = re.compile(r"sk-[A-Za-z0-9_\-]{16,}")
# Bytes whose presence makes a payload worth parsing for secrets.
_PAYLOAD_TRIGGERS = (b"ek_", b"sk-", b"uthorization", b"headers", b"client_secret")


def redact_headers(headers: Iterable[tuple[str, str]]) -> tuple[list[list[str]], list[str]]:
    """Headers as ``[[name, value], ...]`` with credentials replaced; and the names redacted."""
    out: list[list[str]] = []
    redacted: list[str] = []
    for name, value in headers:
        low = name.lower()
        if low in SECRET_HEADERS or low in MASKED_HEADERS:
            if low == "authorization" and " " in value:
                scheme = value.split(" ", 1)[0]
                value = f"{scheme} {MARKER}"
            else:
                value = MARKER
            redacted.append(name)
        elif low == "sec-websocket-protocol":
            value, changed = redact_subprotocols(value)
            if changed:
                redacted.append(name)
        else:
            value2 = _scrub_string(value)
            if value2 != value:
                redacted.append(name)
                value = value2
        out.append([name, value])
    return out, redacted


def redact_subprotocols(value: str) -> tuple[str, bool]:
    """``Sec-WebSocket-Protocol`` with the ``openai-insecure-api-key.*`` element masked."""
    parts = [p.strip() for p in value.split(",")]
    changed = False
    for i, p in enumerate(parts):
        if p.lower().startswith(_INSECURE_KEY_PREFIX):
            parts[i] = _INSECURE_KEY_PREFIX + "REDACTED"
            changed = True
        elif _EK_RE.search(p) or _SK_RE.search(p):
            parts[i] = "REDACTED"
            changed = True
    return (", ".join(parts) if changed else value), changed


def redact_url(url: str) -> tuple[str, list[str]]:
    """The URL with credential query parameters masked; and the parameter names masked."""
    parts = urlsplit(url)
    if not parts.query:
        return url, []
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    redacted = []
    out = []
    for k, v in pairs:
        if k.lower() in SECRET_QUERY or _EK_RE.search(v) or _SK_RE.search(v):
            out.append((k, MARKER))
            redacted.append(k)
        else:
            out.append((k, v))
    if not redacted:
        return url, []
    query = urlencode(out, quote_via=quote, safe="/:-._~")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment)), redacted


def _scrub_string(s: str) -> str:
    if "ek_" in s:
        s = _EK_RE.sub(MARKER, s)
    if "sk-" in s:
        s = _SK_RE.sub(MARKER, s)
    return s


def _collect(obj: Any, whole: list[tuple[str, str]], parts: list[str], parent_key: str = "") -> None:
    """Gather the secrets in a parsed event.

    ``whole``: ``(member name, value)`` pairs whose string value is a secret as
    a whole; they are replaced only where that member stands, so a short header
    value such as ``"1"`` does not clobber every other ``"1"`` in the message.
    ``parts``: key-shaped substrings (``ek_...``, ``sk-...``) found in any string.
    """
    if isinstance(obj, dict):
        for k, v in obj.items():
            lk = k.lower() if isinstance(k, str) else ""
            if lk == "authorization" and isinstance(v, str):
                whole.append((k, v))
            elif lk == "headers" and isinstance(v, dict):
                # MCP server headers: every value may be a credential
                for hk, hv in v.items():
                    if isinstance(hv, str) and isinstance(hk, str):
                        whole.append((hk, hv))
                    else:
                        _collect(hv, whole, parts, lk)
            elif lk == "value" and parent_key == "client_secret" and isinstance(v, str):
                whole.append((k, v))
            elif lk == "client_secret" and isinstance(v, str):
                whole.append((k, v))
            else:
                _collect(v, whole, parts, lk)
    elif isinstance(obj, list):
        for v in obj:
            _collect(v, whole, parts, parent_key)
    elif isinstance(obj, str):
        for m in _EK_RE.finditer(obj):
            parts.append(m.group(0))
        for m in _SK_RE.finditer(obj):
            parts.append(m.group(0))


def _json_forms(s: str) -> set[bytes]:
    """The ways a string can appear inside JSON text (escaped or not)."""
    inner = json.dumps(s)[1:-1]
    inner_ascii = json.dumps(s, ensure_ascii=True)[1:-1]
    forms = {inner.encode("utf-8"), inner_ascii.encode("utf-8")}
    forms.add(json.dumps(s, ensure_ascii=False)[1:-1].encode("utf-8"))
    forms.add(inner.replace("/", "\\/").encode("utf-8"))
    return forms


def might_hold_secrets(data: bytes) -> bool:
    """False when ``data`` certainly holds no secret :func:`redact_payload` removes.

    A message's text without its base64 audio values may be passed instead of
    the whole message: none of the triggers can hide inside base64 audio
    (``_`` and ``-`` are not base64; key names are in the text around it).
    """
    return any(t in data for t in _PAYLOAD_TRIGGERS)


def redact_payload(content: bytes) -> tuple[bytes, bool]:
    """A message with secrets replaced by :data:`MARKER`; and whether anything was.

    Only the secret values change; every other byte of the message stays as it
    was on the wire. Messages with no trigger substring are returned at once,
    so audio appends cost one scan.
    """
    if not might_hold_secrets(content):
        return content, False
    try:
        obj = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        # Not JSON: scrub key-shaped strings from the raw bytes.
        text = content.decode("utf-8", "surrogateescape")
        scrubbed = _scrub_string(text)
        if scrubbed == text:
            return content, False
        return scrubbed.encode("utf-8", "surrogateescape"), True
    whole: list[tuple[str, str]] = []
    parts: list[str] = []
    _collect(obj, whole, parts)
    whole = [(k, v) for k, v in whole if v and v != MARKER]
    parts = [s for s in parts if s]
    if not whole and not parts:
        return content, False
    out = content
    marker = MARKER.encode()
    # Longest first, so a secret that contains another is replaced whole.
    for k, v in sorted(set(whole), key=lambda kv: len(kv[1]), reverse=True):
        for kform in _json_forms(k):
            for vform in _json_forms(v):
                member = re.compile(b'("' + re.escape(kform) + rb'"\s*:\s*")' + re.escape(vform) + b'"')
                out = member.sub(lambda m: m.group(1) + marker + b'"', out)
    for s in sorted(set(parts), key=len, reverse=True):
        for form in sorted(_json_forms(s), key=len, reverse=True):
            if form:
                out = out.replace(form, marker)
    return out, out != content
