"""HAR 1.2 for WebSocket sessions, as Chrome's dev tools write it (pure).

:func:`har_entry` turns a recording's control records and messages into one
HAR entry (the upgrade request and response, and ``_webSocketMessages``);
:func:`har_document` wraps entries in a ``log``. :func:`har_sessions` reads
entries back for ``rtproxy import``.
"""

from __future__ import annotations

import base64
import math
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
    Edge, Playwright) or when its response is a 101. A HAR is untrusted: a
    header that is not a ``{name, value}`` object is skipped; a member of the
    wrong type, a status or time out of range, text no UTF-8 can hold (a lone
    surrogate) raise :class:`HarError` naming the entry (and message).
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
        where = f"{source}: entry {i}"
        req = _member(e, "request", where)
        resp = _member(e, "response", where)
        msgs = e.get("_webSocketMessages")
        if msgs is None and resp.get("status") != 101 and e.get("_resourceType") != "websocket":
            continue
        if msgs is not None and not isinstance(msgs, list):
            raise HarError(f"{where}: \"_webSocketMessages\" is not a list")
        try:
            t_req = _parse_iso(str(e.get("startedDateTime")))
        except (ValueError, OverflowError):
            raise HarError(f"{where}: bad startedDateTime {e.get('startedDateTime')!r}") from None
        wait = number(e.get("time"), 0, 1e9)  # ms; NaN, 1e308, a string: no wait
        t_resp = t_req + (wait / 1000 if wait else 0.0)
        content = resp.get("content")
        content = content if isinstance(content, dict) else {}
        body_text = _text(content.get("text"), f"{where}: response content")
        if content.get("encoding") == "base64":
            try:
                body = base64.b64decode("".join(body_text.split()), validate=True)
            except ValueError:
                raise HarError(f"{where}: response content is not base64") from None
        else:
            body = body_text.encode("utf-8")
        status = resp.get("status") or 0
        if isinstance(status, str) and status.strip().isdigit():
            status = int(status)
        status_n = integer(status, 0, 999)
        if status_n is None:
            raise HarError(f"{where}: bad response status {status!r}")
        s = HarSession(
            url=_text(req.get("url"), f"{where}: request url"),
            method=_text(req.get("method"), f"{where}: request method") or "GET",
            http_version=_text(req.get("httpVersion"), f"{where}: request httpVersion") or "HTTP/1.1",
            request_headers=_har_headers(req.get("headers"), f"{where}: request header"),
            status=status_n,
            reason=_text(resp.get("statusText"), f"{where}: statusText"),
            response_headers=_har_headers(resp.get("headers"), f"{where}: response header"),
            response_body=body,
            t_request=t_req,
            t_response=t_resp,
            creator=creator_s,
        )
        for j, m in enumerate(msgs or []):
            if not isinstance(m, dict) or m.get("type") not in ("send", "receive"):
                raise HarError(f"{where}, message {j}: \"type\" must be send or receive")
            opcode = m.get("opcode", 1)
            data = m.get("data") or ""
            try:
                t = float(m.get("time"))  # type: ignore[arg-type]
            except (TypeError, ValueError, OverflowError):
                t = math.nan
            if not math.isfinite(t):
                raise HarError(f"{where}, message {j}: no numeric \"time\"")
            if opcode == 2:
                try:
                    content_b = base64.b64decode(data, validate=True)
                except (ValueError, TypeError):
                    raise HarError(f"{where}, message {j}: binary data is not base64") from None
            else:
                content_b = _text(data, f"{where}, message {j}: data").encode("utf-8")
            dt_ns = (t - t_resp) * 1e9
            if not dt_ns < _MAX_T_NS:
                raise HarError(f"{where}, message {j}: time {t!r} is no time of this session (Unix seconds)")
            t_ns = max(0, round(dt_ns))
            s.messages.append((t_ns, m["type"] == "send", opcode != 2, content_b))
        out.append(s)
    return out


#: Latest a message may be after the upgrade (about 292 years: what fits the recording's
#: nanosecond offsets).
_MAX_T_NS = float(1 << 63)


def _member(entry: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = entry.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HarError(f"{where}: \"{key}\" is not an object")
    return value


def _text(value: Any, what: str) -> str:
    """A HAR string member as text ("" for null; numbers and others as ``str()``);
    text that UTF-8 cannot hold (a lone surrogate from a JSON escape) is an error."""
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise HarError(f"{what} holds {s[exc.start]!r}, a lone surrogate no HTTP or WebSocket text can hold "
                       "(the HAR was edited or crafted)") from None
    return s


def _har_headers(value: Any, what: str) -> list[tuple[str, str]]:
    """``[{name, value}]`` as pairs; items that are not such objects are skipped."""
    if not isinstance(value, list):
        return []
    return [(_text(h.get("name"), what), _text(h.get("value"), what)) for h in value
            if isinstance(h, dict) and h.get("name") is not None]
