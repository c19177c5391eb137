"""HAR 1.2 for WebSocket sessions, as Chrome's dev tools write it (pure).

:func:`har_entry` turns a recording's control records and messages into one
HAR entry (the upgrade request and response, and ``_webSocketMessages``);
:func:`har_document` wraps entries in a ``log``. :func:`har_sessions` reads
entries back for ``rtproxy import``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable
from urllib.parse import parse_qsl, urlsplit

from rtproxy import __version__
from rtproxy.errors import HarError
from rtproxy.io.format import Message
from rtproxy.protocol.values import header_pairs, integer, number, text_or_none

__all__ = ["har_entry", "har_document", "write_har", "HarSession", "HarError", "har_sessions", "iso_time"]


def iso_time(ts: float) -> str:
    """Unix seconds -> the ISO 8601 form HAR uses (``2024-01-01T00:00:00.000Z``)."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _parse_iso(s: str) -> float:
    s = s.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _headers(pairs: Iterable[Any]) -> list[dict[str, str]]:
    return [{"name": str(n), "value": str(v)} for n, v in pairs]


def _ws_to_http(url: str) -> str:
    # Chrome records the WebSocket URL as is (wss://...).
    return url


def har_entry(header: dict[str, Any], handshake: dict[str, Any] | None, messages: Iterable[Message]) -> dict[str, Any]:
    """One HAR entry for a session: upgrade request/response and every message.

    Message ``time`` is Unix seconds (the 101's arrival + the message's offset);
    text messages have opcode 1 and their text as ``data``, binary ones opcode 2
    and base64 ``data``.
    """
    # Untrusted fields (a recording may be crafted): checked, with a fallback each.
    hs = handshake if isinstance(handshake, dict) else {}
    url = text_or_none(hs.get("url")) or text_or_none(header.get("url")) or ""
    t_req = number(hs.get("t_request"), 0, 1e11) or number(header.get("started"), 0, 1e11) or 0.0
    t_resp = number(hs.get("t_response"), 0, 1e11) or t_req
    ws_msgs = []
    for m in messages:
        t = t_resp + m.t_ns / 1e9
        if m.is_text:
            data = m.content.decode("utf-8", "replace")
            opcode = 1
        else:
            data = base64.b64encode(m.content).decode()
            opcode = 2
        ws_msgs.append({"type": "send" if m.from_client else "receive", "time": t, "opcode": opcode, "data": data})
    body = hs.get("response_body") or b""
    if isinstance(body, (bytes, bytearray)):
        body_text = bytes(body).decode("utf-8", "replace")
    else:
        body_text = text_or_none(body) or ""
    status = integer(hs.get("status"), 0, 999) or 0
    http_version = text_or_none(hs.get("http_version")) or "HTTP/1.1"
    # startedDateTime holds milliseconds only: measure "time" from that rounded
    # instant so startedDateTime + time is the 101's arrival, exactly.
    started = iso_time(t_req)
    wait_ms = max(0.0, (t_resp - _parse_iso(started)) * 1000)
    return {
        "_resourceType": "websocket",
        "_webSocketMessages": ws_msgs,
        "cache": {},
        "connection": "",
        "request": {
            "method": text_or_none(hs.get("method")) or "GET",
            "url": _ws_to_http(url),
            "httpVersion": http_version,
            "headers": _headers(header_pairs(hs.get("request_headers"))),
            "queryString": [{"name": k, "value": v} for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True)],
            "cookies": [],
            "headersSize": -1,
            "bodySize": 0,
        },
        "response": {
            "status": status,
            "statusText": text_or_none(hs.get("reason")) or "",
            "httpVersion": http_version,
            "headers": _headers(header_pairs(hs.get("response_headers"))),
            "cookies": [],
            "content": {"size": len(body_text), "mimeType": "x-unknown", **({"text": body_text} if body_text else {})},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": len(body_text),
            "_transferSize": 0,
            "_error": None,
        },
        "serverIPAddress": "",
        "startedDateTime": started,
        "time": wait_ms,
        "timings": {
            "blocked": -1, "dns": -1, "ssl": -1, "connect": -1,
            "send": 0, "wait": wait_ms, "receive": 0,
            "_blocked_queueing": -1,
        },
    }


#: Characters of a message's data encoded at once by :func:`write_har` (a crafted
#: recording's 200 MiB message of control characters is 1.2 GB as JSON escapes).
_DATA_STEP = 1 << 20
_PLACEHOLDER = "\x00rtproxy-messages\x00"


def write_har(fh: Any, header: dict[str, Any], handshake: dict[str, Any] | None, messages: Iterable[Message]) -> int:
    """Write the HAR document of one session to the binary file ``fh``, streaming:
    the messages are encoded one by one (their data a slice at a time), so memory
    stays near one message whatever the session's length. Returns bytes written.

    The document is the one ``har_document([har_entry(...)])`` describes.
    """
    from json import dumps
    from json.encoder import encode_basestring

    entry = har_entry(header, handshake, ())
    entry["_webSocketMessages"] = _PLACEHOLDER
    text = dumps(har_document([entry]), ensure_ascii=False, indent=1)
    marker = encode_basestring(_PLACEHOLDER)
    head, tail = text.split(marker, 1)
    t_resp = _t_response(header, handshake)
    n = 0

    def put(s: str) -> None:
        nonlocal n
        data = s.encode("utf-8", "surrogatepass")
        fh.write(data)
        n += len(data)

    put(head + "[")
    first = True
    for m in messages:
        put(("\n" if first else ",\n") + '    {"type": ' + ('"send"' if m.from_client else '"receive"')
            + ', "time": ' + dumps(t_resp + m.t_ns / 1e9) + ', "opcode": ' + ("1" if m.is_text else "2")
            + ', "data": "')
        first = False
        if m.is_text:
            data = m.content.decode("utf-8", "replace")
            for i in range(0, len(data), _DATA_STEP):
                put(encode_basestring(data[i : i + _DATA_STEP])[1:-1])
        else:
            content = m.content
            step = _DATA_STEP // 4 * 3
            for i in range(0, len(content), step):
                put(base64.b64encode(content[i : i + step]).decode())
        put('"}')
    put(("\n   " if not first else "") + "]" + tail)
    return n


def _t_response(header: dict[str, Any], handshake: dict[str, Any] | None) -> float:
    hs = handshake if isinstance(handshake, dict) else {}
    t_req = number(hs.get("t_request"), 0, 1e11) or number(header.get("started"), 0, 1e11) or 0.0
    return number(hs.get("t_response"), 0, 1e11) or t_req


def har_document(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A HAR 1.2 ``{"log": ...}`` holding ``entries``."""
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "rtproxy", "version": __version__},
            "pages": [],
            "entries": entries,
        }
    }


@dataclass
class HarSession:
    """A WebSocket session read from a HAR entry."""

    url: str
    method: str
    http_version: str
    request_headers: list[tuple[str, str]]
    status: int
    reason: str
    response_headers: list[tuple[str, str]]
    response_body: bytes
    t_request: float
    t_response: float
    messages: list[tuple[int, bool, bool, bytes]] = field(default_factory=list)
    """(t_ns since the 101, from_client, is_text, content)."""
    creator: str = ""


def har_sessions(doc: Any, source: str = "HAR") -> list[HarSession]:
    """The WebSocket sessions in a parsed HAR document, in file order.

    An entry is a session when it carries ``_webSocketMessages`` (Chrome,
    Edge, Playwright) or when its response is a 101. Raises :class:`HarError`.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("log"), dict):
        raise HarError(f"{source}: not a HAR file (no top-level \"log\" object)")
    log = doc["log"]
    entries = log.get("entries")
    if not isinstance(entries, list):
        raise HarError(f"{source}: HAR log has no \"entries\" list")
    creator = log.get("creator") or {}
    creator_s = f"{creator.get('name', '?')} {creator.get('version', '')}".strip() if isinstance(creator, dict) else ""
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            continue
        req = e.get("request") or {}
        resp = e.get("response") or {}
        msgs = e.get("_webSocketMessages")
        if msgs is None and resp.get("status") != 101 and e.get("_resourceType") != "websocket":
            continue
        try:
            t_req = _parse_iso(str(e.get("startedDateTime")))
        except ValueError:
            raise HarError(f"{source}: entry {i}: bad startedDateTime {e.get('startedDateTime')!r}") from None
        wait = e.get("time")
        t_resp = t_req + (float(wait) / 1000 if isinstance(wait, (int, float)) and wait > 0 else 0.0)
        content = resp.get("content") or {}
        body_text = content.get("text") or ""
        if content.get("encoding") == "base64":
            body = base64.b64decode(body_text)
        else:
            body = str(body_text).encode("utf-8")
        s = HarSession(
            url=str(req.get("url") or ""),
            method=str(req.get("method") or "GET"),
            http_version=str(req.get("httpVersion") or "HTTP/1.1"),
            request_headers=[(str(h.get("name")), str(h.get("value"))) for h in req.get("headers") or []],
            status=int(resp.get("status") or 0),
            reason=str(resp.get("statusText") or ""),
            response_headers=[(str(h.get("name")), str(h.get("value"))) for h in resp.get("headers") or []],
            response_body=body,
            t_request=t_req,
            t_response=t_resp,
            creator=creator_s,
        )
        for j, m in enumerate(msgs or []):
            if not isinstance(m, dict) or m.get("type") not in ("send", "receive"):
                raise HarError(f"{source}: entry {i}, message {j}: \"type\" must be send or receive")
            opcode = m.get("opcode", 1)
            data = m.get("data") or ""
            try:
                t = float(m.get("time"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise HarError(f"{source}: entry {i}, message {j}: no numeric \"time\"") from None
            if opcode == 2:
                try:
                    content_b = base64.b64decode(data, validate=True)
                except ValueError:
                    raise HarError(f"{source}: entry {i}, message {j}: binary data is not base64") from None
            else:
                content_b = str(data).encode("utf-8")
            t_ns = max(0, round((t - t_resp) * 1e9))
            s.messages.append((t_ns, m["type"] == "send", opcode != 2, content_b))
        out.append(s)
    return out
