"""Fault injection for a server replay (``rtproxy replay FILE --fault SPEC``). Pure: no sockets.

Three steps, each a plain function or class:

* :func:`parse_fault` turns one SPEC line into a :class:`Fault` (or raises
  :class:`~rtproxy.errors.FaultSpecError` saying what is wrong);
* :func:`plan_faults` reads the recording's messages once and says where each
  fault fires (:class:`FaultPlan`): the recording index of the server event it
  names, the client event it waits for, or a time; a SPEC that names an event the
  recording does not have (or an ordinal beyond it) is an error here, before any
  client connects;
* :class:`FaultSession` follows one live session: the replay shell tells it what
  it is about to send, what it sent and what the client sent, and it answers with
  :class:`Action` values (send these bytes, skip this message, close, stall, move
  the schedule), building injected events in the recording's dialect. Every fault
  that fired is in :attr:`FaultSession.fired` with the time it fired.

SPEC grammar (one line; ``SEL`` is ``TYPE[#N]`` or ``@TIME``)::

    close CODE[:REASON] after|before SEL     delay DURATION before|after SEL
    drop SEL                                 duplicate SEL
    error CODE[:MESSAGE] after|before SEL    fail response#N CODE[:MESSAGE]
    expire at TIME | expire after|before SEL stall after|before SEL
    refuse STATUS[:MESSAGE] [session#N]

``TYPE`` is an event type or a glob (``response.*.delta``); ``#N`` (default 1)
counts the events of the session that match it, from 1. A beta name matches its GA
counterpart in a GA recording and the other way round. A selector that names client
events fires when the live client sends the N-th one. ``TIME`` and ``DURATION``:
``2.5s`` or ``250ms`` (times since the handshake).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from rtproxy.errors import FaultSpecError
from rtproxy.io.format import Message
from rtproxy.protocol.events import BETA_TO_GA, GA_TO_BETA, dialect, event_type, parse_event

__all__ = [
    "KINDS",
    "KNOWN_ERRORS",
    "Selector",
    "Fault",
    "PlannedFault",
    "FaultPlan",
    "FiredFault",
    "Action",
    "Send",
    "Skip",
    "CloseWith",
    "Stall",
    "Delay",
    "FaultSession",
    "parse_fault",
    "parse_faults",
    "plan_faults",
    "error_event",
    "failed_response_done",
    "refusal",
]

KINDS = ("close", "drop", "delay", "duplicate", "error", "fail", "expire", "stall", "refuse")

#: Error codes whose type and message are the API's own (../shared/realtime-bugs.md), by code:
#: (error.type, message). ``{response_id}`` and ``{minutes}`` are filled in when sent.
KNOWN_ERRORS: dict[str, tuple[str, str]] = {
    "conversation_already_has_active_response": (
        "invalid_request_error",
        "Conversation already has an active response in progress: {response_id}. "
        "Wait until the response is finished before creating a new one.",
    ),
    "session_expired": ("invalid_request_error", "Your session hit the maximum duration of {minutes} minutes."),
    "inference_rate_limit_exceeded": (
        "invalid_request_error",
        "We're currently processing too many requests \u2014 please try again later.",
    ),
    "input_audio_buffer_commit_empty": (
        "invalid_request_error",
        "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
        "but buffer only has 0.00ms of audio.",
    ),
    "response_cancel_not_active": ("invalid_request_error", "Cancellation failed: no active response found"),
    "beta_api_shape_disabled": (
        "invalid_request_error",
        "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API.",
    ),
    "unsupported_content_type": ("invalid_request_error", "Only model output audio messages can be truncated"),
    "cannot_update_voice": (
        "invalid_request_error",
        "Cannot update a conversation's voice if assistant audio is present.",
    ),
}
#: Without a response in progress, the text the API sent for that code in early 2025.
_NO_RESPONSE_TEXT = "Conversation already has an active response"
#: The session maximum when the recording does not say (GA: 60 minutes; the beta's was 30).
DEFAULT_SESSION_MINUTES = {"ga": 60, "beta": 30}
#: Close reason of an expired session (followed by close 1001).
EXPIRE_CLOSE = 1001

_DURATION = r"(\d+(?:\.\d+)?)(ms|s)"
_WHERE = r"(after|before|at)"
_CODE = r"([A-Za-z0-9_]+)"
_GRAMMAR: dict[str, re.Pattern[str]] = {
    "close": re.compile(rf"close\s+(\d+)(?::(.*?))?\s+{_WHERE}\s+(\S+)"),
    "drop": re.compile(r"drop\s+(\S+)"),
    "delay": re.compile(rf"delay\s+(\S+)\s+{_WHERE}\s+(\S+)"),
    "duplicate": re.compile(r"duplicate\s+(\S+)"),
    "error": re.compile(rf"error\s+{_CODE}(?::(.*?))?\s+{_WHERE}\s+(\S+)"),
    "fail": re.compile(rf"fail\s+response#(\d+)\s+{_CODE}(?::(.*))?"),
    "expire": re.compile(rf"expire\s+{_WHERE}\s+(\S+)"),
    "stall": re.compile(rf"stall\s+{_WHERE}\s+(\S+)"),
    "refuse": re.compile(r"refuse\s+(\d+)(?::(.*?))?(?:\s+session#(\d+))?"),
}
_USAGE = {
    "close": "close CODE[:REASON] after|before SEL",
    "drop": "drop TYPE[#N]",
    "delay": "delay DURATION before|after SEL (DURATION like 2.5s or 250ms)",
    "duplicate": "duplicate TYPE[#N]",
    "error": "error CODE[:MESSAGE] after|before SEL",
    "fail": "fail response#N CODE[:MESSAGE]",
    "expire": "expire at TIME, or expire after|before SEL",
    "stall": "stall after|before SEL",
    "refuse": "refuse STATUS[:MESSAGE] [session#N]",
}
_TYPE_GLOB = re.compile(r"[A-Za-z0-9_.*?\[\]-]+")


# ------------------------------------------------------------------ parsing
@dataclass(frozen=True, slots=True)
class Selector:
    """Where a fault fires: the ``ordinal``-th event matching ``glob``, or a time."""

    glob: str | None = None
    ordinal: int = 1
    at_ns: int | None = None
    """Nanoseconds since the handshake, for a time selector (``@2.5s``)."""

    def __str__(self) -> str:
        if self.at_ns is not None:
            return f"@{self.at_ns / 1e9:g}s"
        return f"{self.glob}#{self.ordinal}"


@dataclass(frozen=True, slots=True)
class Fault:
    """One parsed SPEC."""

    spec: str
    kind: str
    where: str = "after"
    """``after`` or ``before`` the selected event (a time selector: at that time)."""
    selector: Selector | None = None
    code: int | None = None
    """The close code (close) or HTTP status (refuse)."""
    reason: str | None = None
    """Close reason (close); the message given after ``:`` (error, fail, refuse)."""
    error: str | None = None
    """The error code (error, fail)."""
    delay_ns: int = 0
    response: int = 0
    """fail: which response (its response.created, counted from 1)."""
    session: int | None = None
    """refuse: only this connection (counted from 1); None: every one."""


def _fail(spec: str, problem: str) -> FaultSpecError:
    err = FaultSpecError(f"--fault {spec!r}: {problem}")
    err.spec, err.problem = spec, problem  # type: ignore[attr-defined]
    return err


def _duration(spec: str, text: str, what: str) -> int:
    m = re.fullmatch(_DURATION, text)
    if not m:
        raise _fail(spec, f"{what} {text!r}: expected a duration like 2.5s or 250ms")
    value = float(m.group(1)) * (1e6 if m.group(2) == "ms" else 1e9)
    return int(round(value))


def _selector(spec: str, text: str, where: str) -> Selector:
    if text.startswith("@") or where == "at":
        return Selector(at_ns=_duration(spec, text.removeprefix("@"), "time"))
    glob, _, n = text.partition("#")
    if not glob or not _TYPE_GLOB.fullmatch(glob):
        raise _fail(spec, f"{text!r} is not an event type (like response.done#1) or a time (like @2.5s)")
    if not n:
        return Selector(glob, 1)
    if not n.isdigit() or int(n) < 1:
        raise _fail(spec, f"{text!r}: #N counts events from 1 (got #{n})")
    return Selector(glob, int(n))


def _error_code(spec: str, code: str, message: str | None) -> None:
    if code not in KNOWN_ERRORS and not message:
        known = ", ".join(sorted(KNOWN_ERRORS))
        raise _fail(
            spec,
            f"unknown error code {code!r}: give the message it comes with as {code}:<message> "
            f"(known codes, sent with the API's own text: {known})",
        )


def parse_fault(spec: str) -> Fault:
    """One SPEC line as a :class:`Fault`. Raises :class:`FaultSpecError` (``--fault 'SPEC': why``)."""
    if not isinstance(spec, str):
        raise _fail(repr(spec), f"a SPEC is a string, not {type(spec).__name__}")
    line = " ".join(spec.split())
    kind = line.split(" ", 1)[0] if line else ""
    if kind not in _GRAMMAR:
        raise _fail(spec, f"unknown fault {kind!r}: expected one of {', '.join(KINDS)}")
    m = _GRAMMAR[kind].fullmatch(line)
    if m is None:
        raise _fail(spec, f"expected {_USAGE[kind]}")
    g = m.groups()
    if kind == "close":
        code = int(g[0])
        if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
            raise _fail(spec, f"close code {code} cannot be sent (1000-1003, 1007-1014 or 3000-4999)")
        reason = g[1] or ""
        if len(reason.encode()) > 123:
            raise _fail(spec, f"the close reason is {len(reason.encode())} bytes; a close frame holds 123")
        return Fault(spec, kind, _where(spec, g[2]), _selector(spec, g[3], g[2]), code=code, reason=reason)
    if kind in ("drop", "duplicate"):
        sel = _selector(spec, g[0], "after")
        if sel.at_ns is not None:
            raise _fail(spec, f"{kind} names an event (like response.done#1), not a time")
        return Fault(spec, kind, "before" if kind == "drop" else "after", sel)
    if kind == "delay":
        ns = _duration(spec, g[0], "delay")
        if ns <= 0:
            raise _fail(spec, "the delay must be longer than 0")
        return Fault(spec, kind, _where(spec, g[1]), _selector(spec, g[2], g[1]), delay_ns=ns)
    if kind == "error":
        _error_code(spec, g[0], g[1])
        return Fault(spec, kind, _where(spec, g[2]), _selector(spec, g[3], g[2]), error=g[0], reason=g[1] or None)
    if kind == "fail":
        n = int(g[0])
        if n < 1:
            raise _fail(spec, "responses are counted from 1 (response#1)")
        _error_code(spec, g[1], g[2])
        return Fault(spec, kind, "after", Selector("response.created", n), error=g[1], reason=g[2] or None, response=n)
    if kind in ("expire", "stall"):
        return Fault(spec, kind, _where(spec, g[0]), _selector(spec, g[1], g[0]))
    # refuse
    status = int(g[0])
    if not 400 <= status <= 599:
        raise _fail(spec, f"refuse takes an HTTP error status (400-599), not {status}")
    if status not in _REFUSALS and not g[1]:
        raise _fail(spec, f"no known body for HTTP {status}: give its message as {status}:<message> (known: 401, 429)")
    session = int(g[2]) if g[2] else None
    if session == 0:
        raise _fail(spec, "sessions are counted from 1 (session#1)")
    return Fault(spec, kind, "", None, code=status, reason=g[1] or None, session=session)


def _where(spec: str, word: str) -> str:
    return "before" if word == "before" else "after"


def parse_faults(specs: Iterable[str | Fault] | str | None) -> list[Fault]:
    """Every SPEC parsed (a single string is one SPEC); the first bad one raises."""
    if specs is None:
        return []
    if isinstance(specs, str):
        specs = [specs]
    return [s if isinstance(s, Fault) else parse_fault(s) for s in specs]


# ------------------------------------------------------------------ planning
@dataclass(frozen=True, slots=True)
class PlannedFault:
    """A fault and where it fires in this recording."""

    fault: Fault
    side: str
    """``server`` (a recorded server event), ``client`` (a live client event), ``time`` or ``handshake``."""
    index: int | None = None
    """server: the recording index (client and server messages counted) of the event."""
    types: frozenset[str] = frozenset()
    """client: the recorded client event types the selector matches (counted live)."""
    skip: frozenset[int] = frozenset()
    """fail: recording indices of the failed response's other server events (never sent)."""
    done_template: dict[str, Any] | None = None
    """fail: the recorded response.done of that response (its usage's shape), if any."""

    @property
    def spec(self) -> str:
        return self.fault.spec


@dataclass
class FaultPlan:
    """Where every fault fires in one recording (the same for each of its sessions)."""

    faults: list[PlannedFault] = field(default_factory=list)
    dialect: str = "ga"
    """``ga`` or ``beta``: which protocol the recording speaks (built events follow it)."""
    session_minutes: int = 60
    """The session maximum an ``expire`` reports (from ``session.created.expires_at`` when it says)."""
    responses: dict[int, tuple[str, str]] = field(default_factory=dict)
    """Recording index -> ("created" | "done", response id), for the response in progress."""

    def refusal(self, session: int) -> PlannedFault | None:
        """The ``refuse`` fault for the ``session``-th connection (from 1), if any."""
        for p in self.faults:
            if p.fault.kind == "refuse" and p.fault.session in (None, session):
                return p
        return None

    def __bool__(self) -> bool:
        return bool(self.faults)


def _variants(typ: str) -> tuple[str, ...]:
    """The type and its name in the other protocol."""
    other = BETA_TO_GA.get(typ) or GA_TO_BETA.get(typ)
    return (typ, other) if other else (typ,)


class _Counter:
    """Counts the recording's events that match a selector, literally and through GA/beta names."""

    __slots__ = ("glob", "n", "literal", "alias", "literal_types", "alias_types")

    def __init__(self, glob: str, n: int) -> None:
        self.glob, self.n = glob, n
        # side -> (count, index of the n-th)
        self.literal: dict[str, list[int]] = {"server": [0, -1], "client": [0, -1]}
        self.alias: dict[str, list[int]] = {"server": [0, -1], "client": [0, -1]}
        self.literal_types: dict[str, set[str]] = {"server": set(), "client": set()}
        self.alias_types: dict[str, set[str]] = {"server": set(), "client": set()}

    def feed(self, index: int, side: str, typ: str) -> None:
        if fnmatch.fnmatchcase(typ, self.glob):
            box, types = self.literal[side], self.literal_types[side]
        elif any(fnmatch.fnmatchcase(v, self.glob) for v in _variants(typ)[1:]):
            box, types = self.alias[side], self.alias_types[side]
        else:
            return
        box[0] += 1
        types.add(typ)
        if box[0] == self.n:
            box[1] = index

    def resolve(self, spec: str) -> tuple[str, int, frozenset[str]]:
        """(side, index of the n-th on the server side or -1, matched types) or a FaultSpecError."""
        lit = self.literal["server"][0] + self.literal["client"][0]
        boxes, types = (self.literal, self.literal_types) if lit else (self.alias, self.alias_types)
        s, c = boxes["server"][0], boxes["client"][0]
        if not s and not c:
            raise _fail(spec, f"the recording has no event {self.glob!r} (server or client, GA or beta name)")
        if s and c:
            raise _fail(
                spec,
                f"{self.glob!r} matches client events ({', '.join(sorted(types['client'])[:3])}) and server "
                f"events ({', '.join(sorted(types['server'])[:3])}): make it name one side",
            )
        side = "server" if s else "client"
        count = s or c
        if count < self.n:
            what = "server" if s else "client"
            raise _fail(
                spec,
                f"the recording has {count} {self.glob} {what} event{'s' if count != 1 else ''}; "
                f"#{self.n} is beyond it",
            )
        return side, boxes[side][1], frozenset(types[side])


def plan_faults(
    faults: Iterable[str | Fault],
    messages: Iterable[Message],
    *,
    header: dict[str, Any] | None = None,
) -> FaultPlan:
    """Where each fault fires in the recording whose messages are given (read once).

    Raises :class:`FaultSpecError` for a SPEC that does not parse, names an event
    the recording does not have, or an ordinal beyond the recording's events.
    """
    parsed = parse_faults(list(faults))
    counters: dict[int, _Counter] = {}
    for i, f in enumerate(parsed):
        if f.selector is not None and f.selector.glob is not None:
            counters[i] = _Counter(f.selector.glob, f.selector.ordinal)
    fails = {i: f for i, f in enumerate(parsed) if f.kind == "fail"}
    # fail: per fault, [response id, item ids, skip indices, done template]
    failing: dict[int, list[Any]] = {}
    created_seen = 0
    want_responses = any(f.kind in ("error", "expire") for f in parsed)
    responses: dict[int, tuple[str, str]] = {}
    found_dialect: str | None = None
    minutes: int | None = None
    started = (header or {}).get("started")
    for index, m in enumerate(messages):
        if not m.is_text:
            continue
        head = m.head
        typ = event_type(head)
        if typ is None:
            continue
        side = "client" if m.from_client else "server"
        for c in counters.values():
            c.feed(index, side, typ)
        if m.from_client:
            continue
        if found_dialect is None:
            found_dialect = dialect(typ)
        if typ == "session.created" and minutes is None:
            minutes = _session_minutes(parse_event(head), started, m.t_ns)
        if typ == "response.created":
            created_seen += 1
            for i, f in fails.items():
                if f.response == created_seen:
                    rid = _response_id(parse_event(head))
                    failing[i] = [rid, set(), set(), None]
        for state in failing.values():
            _collect_failed(state, index, typ, head)
        if want_responses and typ in ("response.created", "response.done"):
            rid = _response_id(parse_event(head))
            if rid:
                responses[index] = ("created" if typ == "response.created" else "done", rid)
    plan = FaultPlan(dialect=found_dialect or "ga", responses=responses)
    plan.session_minutes = minutes or DEFAULT_SESSION_MINUTES[plan.dialect]
    for i, f in enumerate(parsed):
        if f.kind == "refuse":
            plan.faults.append(PlannedFault(f, "handshake"))
            continue
        assert f.selector is not None
        if f.selector.at_ns is not None:
            plan.faults.append(PlannedFault(f, "time"))
            continue
        side, idx, types = counters[i].resolve(f.spec)
        if f.kind == "fail":
            if side != "server":  # response.created is a server event; a crafted file may say otherwise
                raise _fail(f.spec, "the recording's response.created events come from the client")
            rid, _, skip, done = failing[i]
            plan.faults.append(PlannedFault(f, "server", idx, skip=frozenset(skip), done_template=done))
            continue
        if side == "client":
            if f.kind in ("drop", "duplicate"):
                raise _fail(
                    f.spec, f"{f.selector.glob} is a client event: {f.kind} acts on what the server sends"
                )
            if f.where == "before":
                raise _fail(
                    f.spec,
                    f"{f.selector.glob} is a client event: the replay learns of it when it arrives, "
                    f"so a fault can come after it, not before",
                )
            plan.faults.append(PlannedFault(f, "client", types=types))
        else:
            plan.faults.append(PlannedFault(f, "server", idx))
    return plan


def _response_id(obj: dict[str, Any] | None) -> str | None:
    resp = obj.get("response") if obj else None
    rid = resp.get("id") if isinstance(resp, dict) else None
    return rid if isinstance(rid, str) else None


def _session_minutes(obj: dict[str, Any] | None, started: Any, t_ns: int) -> int | None:
    """The session maximum the recording's session.created implies (expires_at), if plausible."""
    session = obj.get("session") if obj else None
    expires = session.get("expires_at") if isinstance(session, dict) else None
    if not isinstance(expires, (int, float)) or not isinstance(started, (int, float)):
        return None
    m = round((expires - started - t_ns / 1e9) / 60)
    return int(m) if 1 <= m <= 240 else None


def _collect_failed(state: list[Any], index: int, typ: str, head: bytes) -> None:
    """Note ``index`` as part of the failing response if it belongs to it."""
    rid, items, skip, _ = state
    if not rid:
        return
    if not any(_may_hold(head, v) for v in (rid, *items)):
        return
    obj = parse_event(head)
    if obj is None:
        return
    raw_item = obj.get("item")
    item: dict[str, Any] = raw_item if isinstance(raw_item, dict) else {}
    mine = obj.get("response_id") == rid or _response_id(obj) == rid
    if typ == "response.created" and _response_id(obj) == rid:
        return  # the one the fault fires after: sent
    if mine and typ == "response.output_item.added" and isinstance(item.get("id"), str):
        items.add(item["id"])
    if not mine and typ.startswith("conversation.item.") and typ in (
        "conversation.item.added", "conversation.item.done", "conversation.item.created",
    ):
        mine = item.get("id") in items
    if not mine:
        return
    skip.add(index)
    if typ == "response.done":
        state[3] = obj


# ------------------------------------------------------------------ building events
def new_event_id() -> str:
    """An id shaped like the API's (``event_`` and 21 letters and digits)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "event_" + "".join(alphabet[b % 62] for b in os.urandom(21))


_PLAIN_ID = re.compile(r"[A-Za-z0-9_.:-]+")


def _may_hold(head: bytes, value: str) -> bool:
    """Whether the JSON text ``head`` may hold the string ``value``: False only when it
    certainly does not (an id of letters, digits and ``_.:-``, which JSON writes as it
    is, is absent); an id that may be written escaped (or holds lone surrogates) is
    looked for by parsing."""
    if _PLAIN_ID.fullmatch(value):
        return value.encode() in head
    return True


_SURROGATE = re.compile("[\ud800-\udfff]")


def _dumps(obj: Any) -> bytes:
    """Compact JSON as UTF-8; a lone surrogate from the recording (a JSON escape there)
    is a ``\\uXXXX`` escape again, meaning the same, where UTF-8 cannot hold it."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    if _SURROGATE.search(text):
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text.encode()


def error_body(code: str, message: str | None = None, **fill: Any) -> tuple[str, str]:
    """(error.type, message) for an error code: the API's own text for known codes."""
    if message:
        etype = KNOWN_ERRORS.get(code, ("server_error" if code == "server_error" else "invalid_request_error", ""))[0]
        return etype, message
    etype, text = KNOWN_ERRORS[code]
    if code == "conversation_already_has_active_response" and not fill.get("response_id"):
        return etype, _NO_RESPONSE_TEXT
    return etype, text.format(**{"response_id": "", "minutes": 60, **fill})


def error_event(
    code: str,
    *,
    dialect: str = "ga",
    event_id: str | None = None,
    client_event_id: str | None = None,
    message: str | None = None,
    param: str | None = None,
    **fill: Any,
) -> bytes:
    """A Realtime ``error`` server event (compact JSON, the API's member order).

    Both protocols define the same event (GA ``RealtimeErrorEvent``, beta ``ErrorEvent``:
    ``type``, ``event_id``, ``error {type, code, message, param, event_id}``); ``dialect``
    is taken for symmetry with the builders whose shape differs.
    """
    etype, text = error_body(code, message, **fill)
    return _dumps(
        {
            "type": "error",
            "event_id": event_id or new_event_id(),
            "error": {"type": etype, "code": code, "message": text, "param": param, "event_id": client_event_id},
        }
    )


def _zeroed(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return 0
    if isinstance(value, dict):
        return {k: _zeroed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_zeroed(v) for v in value]
    return value


_ZERO_USAGE = {
    "ga": {
        "total_tokens": 0, "input_tokens": 0, "output_tokens": 0,
        "input_token_details": {
            "text_tokens": 0, "audio_tokens": 0, "image_tokens": 0, "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": 0, "audio_tokens": 0},
    },
    "beta": {
        "total_tokens": 0, "input_tokens": 0, "output_tokens": 0,
        "input_token_details": {"cached_tokens": 0, "text_tokens": 0, "audio_tokens": 0},
        "output_token_details": {"text_tokens": 0, "audio_tokens": 0},
    },
}


def failed_response_done(
    created: dict[str, Any] | None,
    code: str,
    *,
    dialect: str = "ga",
    message: str | None = None,
    done_template: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> bytes:
    """``response.done`` with status ``failed`` for the response ``created`` announced.

    The response object is the one response.created carried (so it has that protocol's
    members: GA ``output_modalities`` / ``audio``, beta ``modalities`` /
    ``output_audio_format``), with ``status: failed``, ``status_details {type: failed,
    error {type, code, message}}``, no output and zero usage (in the shape of the
    recorded response.done's usage when there is one, else that protocol's).
    """
    resp = dict(created.get("response") or {}) if isinstance(created, dict) else {}
    if not isinstance(resp, dict):
        resp = {}
    etype, text = error_body(code, message)
    resp.setdefault("object", "realtime.response")
    resp["status"] = "failed"
    resp["status_details"] = {"type": "failed", "error": {"type": etype, "code": code, "message": text}}
    resp["output"] = []
    usage = None
    if isinstance(done_template, dict) and isinstance(done_template.get("response"), dict):
        usage = done_template["response"].get("usage")
    resp["usage"] = _zeroed(usage) if isinstance(usage, dict) else _ZERO_USAGE.get(dialect, _ZERO_USAGE["ga"])
    return _dumps({"type": "response.done", "event_id": event_id or new_event_id(), "response": resp})


# The OpenAI API's error bodies for a refused request.
_REFUSALS: dict[int, tuple[str, str | None, str]] = {
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: {key}. You can find your API key at "
          "https://platform.openai.com/account/api-keys."),
    429: ("insufficient_quota", "insufficient_quota", "You exceeded your current quota, please check your plan and "
          "billing details. For more information on this error, read the docs: "
          "https://platform.openai.com/docs/guides/error-codes/api-errors."),
}
_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer "
    "auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're "
    "accessing the API from your browser and are prompted for a username and password. You can obtain an API "
    "key from https://platform.openai.com/account/api-keys."
)


def _masked(key: str) -> str:
    """A key as the API shows it back: its first 3 and last 4 characters."""
    if len(key) <= 8:
        return "*" * len(key)
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


def refusal(fault: Fault, key: str | None = None) -> tuple[int, bytes]:
    """(HTTP status, JSON body ``{"error": {message, type, code, param}}``) of a ``refuse`` fault.

    ``key``: the API key the client sent (401 names it masked, as the API does).
    """
    status = fault.code or 500
    if fault.reason:
        etype = "invalid_request_error" if status < 500 else "server_error"
        code: str | None = None
        text = fault.reason
    else:
        etype, code, text = _REFUSALS[status]
        if status == 401:
            if key:
                text = text.format(key=_masked(key))
            else:
                etype, code, text = "invalid_request_error", None, _NO_KEY
    return status, _dumps({"error": {"message": text, "type": etype, "param": None, "code": code}}) + b"\n"


# ------------------------------------------------------------------ one session
@dataclass(frozen=True, slots=True)
class FiredFault:
    """A fault that fired: when (ms since the handshake) and what it did."""

    spec: str
    t_ms: float
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.spec} at {self.t_ms:.1f} ms" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True, slots=True)
class Send:
    """Send these bytes (a text message) now."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Skip:
    """Do not send the recorded message about to go out."""


@dataclass(frozen=True, slots=True)
class CloseWith:
    """Close the WebSocket with this code and reason; nothing more is sent."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Stall:
    """Send nothing more, but keep the connection open (reading, answering pings)."""


@dataclass(frozen=True, slots=True)
class Delay:
    """Move the rest of the schedule ``ns`` later (:meth:`ReplayScheduler.delay`)."""

    ns: int


Action = Send | Skip | CloseWith | Stall | Delay


class FaultSession:
    """The faults of one live session. Tell it what happens; do what it answers.

    * :meth:`delay_before` once a recorded server message is due (before waiting for
      its time): a :class:`Delay` to apply to the schedule first, or None;
    * :meth:`before` when it is about to be sent, :meth:`after` once it was sent;
    * :meth:`client` for each live client message;
    * :meth:`next_timer` / :meth:`timer` for the time selectors.

    Once a :class:`CloseWith` or :class:`Stall` was answered, :attr:`ended` is set and
    every further call answers nothing.
    """

    def __init__(self, plan: FaultPlan, start_ns: int) -> None:
        self.plan = plan
        self.start_ns = start_ns
        self.fired: list[FiredFault] = []
        self.ended: str | None = None
        """What ended the session (the SPEC), if a fault did."""
        self._done: set[int] = set()
        self._skip: set[int] = set()
        self._client_counts: dict[int, int] = {}
        self._open: list[str] = []  # responses in progress (created sent, done not yet)
        self._last_response: str | None = None
        self._by_index: dict[int, list[tuple[int, PlannedFault]]] = {}
        for k, p in enumerate(plan.faults):
            if p.side == "server" and p.index is not None:
                self._by_index.setdefault(p.index, []).append((k, p))

    # -- state ----------------------------------------------------------------
    @property
    def pending(self) -> list[str]:
        """SPECs that have not fired (yet) in this session (refusals aside)."""
        return [p.spec for k, p in enumerate(self.plan.faults) if k not in self._done and p.side != "handshake"]

    def _fire(self, k: int, p: PlannedFault, now_ns: int, detail: str = "") -> None:
        self._done.add(k)
        self.fired.append(FiredFault(p.spec, (now_ns - self.start_ns) / 1e6, detail))

    # -- hooks ----------------------------------------------------------------
    def delay_before(self, index: int, now_ns: int) -> Delay | None:
        """A ``delay ... before`` the message at recording ``index``, fired now."""
        if self.ended:
            return None
        total = 0
        for k, p in self._by_index.get(index, ()):
            if k not in self._done and p.fault.kind == "delay" and p.fault.where == "before":
                self._fire(k, p, now_ns, f"{p.fault.delay_ns / 1e6:g} ms from here on")
                total += p.fault.delay_ns
        return Delay(total) if total else None

    def before(self, index: int, now_ns: int) -> list[Action]:
        """What to do before the recorded message at ``index`` goes out (at its time)."""
        if self.ended:
            return []
        out: list[Action] = []
        if index in self._skip:
            return [Skip()]
        for k, p in self._by_index.get(index, ()):
            f = p.fault
            if k in self._done:
                continue
            if f.kind == "drop":
                self._fire(k, p, now_ns, "not sent")
                out.append(Skip())
            elif f.where == "before" and f.kind != "delay":
                out += self._act(k, p, now_ns, None)
                if self.ended:
                    break
        return out

    def after(self, index: int, data: bytes, now_ns: int) -> list[Action]:
        """What to do right after the recorded message at ``index`` was sent (as ``data``)."""
        resp = self.plan.responses.get(index)
        if resp is not None:
            what, rid = resp
            if what == "created":
                self._open.append(rid)
                self._last_response = rid
            elif rid in self._open:
                self._open.remove(rid)
        if self.ended:
            return []
        out: list[Action] = []
        for k, p in self._by_index.get(index, ()):
            f = p.fault
            if k in self._done or f.where != "after" or f.kind == "drop":
                continue
            if f.kind == "duplicate":
                self._fire(k, p, now_ns, "sent twice")
                out.append(Send(data))
            elif f.kind == "fail":
                self._fire(k, p, now_ns, f"response.done failed ({f.error}); {len(p.skip)} of its events not sent")
                self._skip |= p.skip
                created = parse_event(data)
                out.append(
                    Send(failed_response_done(created, f.error or "", dialect=self.plan.dialect, message=f.reason,
                                              done_template=p.done_template))
                )
                failed = _response_id(created)
                if failed in self._open:
                    self._open.remove(failed)
            else:
                out += self._act(k, p, now_ns, None)
            if self.ended:
                break
        return out

    def client(self, now_ns: int, typ: str | None, content: bytes | None = None) -> list[Action]:
        """A live client message of type ``typ`` arrived (``content``: its bytes, parsed
        only when a fault fires on it, for its ``event_id``)."""
        if self.ended or typ is None:
            return []
        out: list[Action] = []
        for k, p in enumerate(self.plan.faults):
            if p.side != "client" or k in self._done or typ not in p.types:
                continue
            n = self._client_counts.get(k, 0) + 1
            self._client_counts[k] = n
            assert p.fault.selector is not None
            if n == p.fault.selector.ordinal:
                obj = parse_event(content) if content else None
                eid = obj.get("event_id") if obj else None
                out += self._act(k, p, now_ns, eid if isinstance(eid, str) else None)
                if self.ended:
                    break
        return out

    def next_timer(self) -> int | None:
        """When the next time selector fires (monotonic ns), or None."""
        if self.ended:
            return None
        times = [
            self.start_ns + p.fault.selector.at_ns
            for k, p in enumerate(self.plan.faults)
            if p.side == "time" and k not in self._done and p.fault.selector is not None
            and p.fault.selector.at_ns is not None
        ]
        return min(times) if times else None

    def timer(self, now_ns: int) -> list[Action]:
        """The time selectors due by ``now_ns`` fire."""
        out: list[Action] = []
        for k, p in enumerate(self.plan.faults):
            sel = p.fault.selector
            if self.ended or p.side != "time" or k in self._done or sel is None or sel.at_ns is None:
                continue
            if self.start_ns + sel.at_ns <= now_ns:
                out += self._act(k, p, now_ns, None)
        return out

    # -- what a fault does -----------------------------------------------------
    def _act(self, k: int, p: PlannedFault, now_ns: int, client_event_id: str | None) -> list[Action]:
        f = p.fault
        if f.kind == "close":
            self._fire(k, p, now_ns, f"closed with {f.code}")
            self.ended = f.spec
            return [CloseWith(f.code or 1011, f.reason or "")]
        if f.kind == "stall":
            self._fire(k, p, now_ns, "nothing more sent")
            self.ended = f.spec
            return [Stall()]
        if f.kind == "delay":
            self._fire(k, p, now_ns, f"{f.delay_ns / 1e6:g} ms from here on")
            return [Delay(f.delay_ns)]
        if f.kind == "error":
            rid = self._open[-1] if self._open else None
            self._fire(k, p, now_ns, f"error {f.error}")
            return [Send(self._error(f.error or "", f.reason, client_event_id, rid))]
        if f.kind == "expire":
            minutes = self.plan.session_minutes
            self._fire(k, p, now_ns, f"session_expired, closed with {EXPIRE_CLOSE}")
            self.ended = f.spec
            _, reason = error_body("session_expired", minutes=minutes)
            return [Send(self._error("session_expired", None, None, None)), CloseWith(EXPIRE_CLOSE, reason)]
        if f.kind == "duplicate":  # a time or client selector cannot get here (plan_faults refuses it)
            return []
        raise AssertionError(f"fault kind {f.kind!r} has no action here")

    def _error(self, code: str, message: str | None, client_event_id: str | None, rid: str | None) -> bytes:
        return error_event(
            code, dialect=self.plan.dialect, client_event_id=client_event_id, message=message,
            response_id=rid, minutes=self.plan.session_minutes,
        )


def describe(faults: Sequence[FiredFault]) -> str:
    """``faults: A at 1.0 ms (...), B at ...`` for a report line ('' when none fired)."""
    if not faults:
        return ""
    return "faults: " + ", ".join(str(f) for f in faults)
