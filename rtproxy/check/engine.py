"""Run every rule over a recording's events in one pass. Pure except :func:`check_file`.

:class:`Checker` is sans-I/O: feed it events (anything shaped like
:class:`rtproxy.view.events.Event`) one by one, then :meth:`Checker.finish`
with the handshake and close. :func:`check_events` and :func:`check_file`
wrap it.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from rtproxy.check.finding import Finding, severity_rank
from rtproxy.check.options import Options, select_codes
from rtproxy.check.rules import RULES, RUN_ORDER, Rule
from rtproxy.check.state import SessionState
from rtproxy.check.vocab import KNOWN_TYPES
from rtproxy.protocol.events import canonical_event_type, parse_event
from rtproxy.view.events import Event, audio_event_head
from rtproxy.view.events import open as open_recording

__all__ = ["Checker", "check_events", "check_file", "filter_findings"]

_APPEND, _DELTA, _PARSE, _NONE = 0, 1, 2, 3


def _obj(ev: Any) -> dict[str, Any] | None:
    """The event's JSON without its audio."""
    head = getattr(ev, "head", None)
    if head:
        return parse_event(head)
    return ev.json


class _Fed:
    """An event as the rules see it: what a finding needs to point at it (index, time,
    type, side, format, sizes) and, only while it is being fed, its head and JSON.

    Rules keep events for their findings (the first of each type, every binary
    frame, every event with a bad value...). What they keep is this, never the
    message: a recording of 60 binary frames of 60 MiB each once made
    ``rtproxy check`` hold all 3.6 GiB of them.
    """

    __slots__ = ("index", "t", "type", "side", "from_client", "is_text", "format", "size", "audio_bytes", "_ev")

    def __init__(self, ev: Any) -> None:
        self.index = ev.index
        self.type = ev.type
        self.format = ev.format
        self._ev = ev
        if type(ev) is Event:  # the usual: its message's fields read directly
            m = ev.message
            self.t = m.t_ns / 1e9
        else:  # anything shaped like an Event (a live run's events)
            m = ev
            self.t = ev.t
        self.from_client = client = m.from_client
        self.side = "client" if client else "server"
        self.is_text = m.is_text
        self.size = m.size
        self.audio_bytes = m.audio_bytes

    @property
    def head(self) -> bytes | None:
        ev = self._ev
        return None if ev is None else getattr(ev, "head", None)

    @property
    def json(self) -> dict[str, Any] | None:
        ev = self._ev
        return None if ev is None else ev.json

    def __repr__(self) -> str:
        return f"Event(index={self.index}, t={self.t:.3f}, side={self.side!r}, type={self.type!r}, size={self.size})"


#: Findings kept per code and severity in one recording; the rest are counted in one
#: more finding. A real session makes a few of each; a crafted one (200,000 calls
#: never answered, one event type each...) would make one per event, and hold them.
MAX_FINDINGS_PER_CODE = 1000

#: Event types outside the protocol whose route (and first event) a check remembers; the
#: protocol's own are always remembered. Others, and names longer than
#: :data:`MAX_TYPE_CHARS`, are routed afresh at each event: a crafted file of 300,000
#: distinct 10 KB type names once made a check hold all 3 GB of them.
MAX_OTHER_TYPES = 256
MAX_TYPE_CHARS = 200


class Checker:
    """Feed events in order with :meth:`feed`; :meth:`finish` returns every finding
    (all rules, time order; filter with :func:`filter_findings`), at most
    :data:`MAX_FINDINGS_PER_CODE` of each code and severity (then one that counts
    the others)."""

    def __init__(self, options: Options | None = None) -> None:
        self.options = options or Options()
        self.rules: list[Rule] = [cls(self.options) for cls in RUN_ORDER]
        self.state = SessionState()
        self.findings: list[Finding] = []
        self._counts: dict[tuple[str, str], int] = {}
        self._left_out: dict[tuple[str, str], tuple[int, Finding]] = {}  # -> (how many, the first)
        self._dispatch: dict[tuple[str | None, bool], tuple[str | None, list[Rule], int]] = {}
        self._other_types = 0

    def _route(self, ev: Any) -> tuple[str | None, list[Rule], int]:
        typ, client = ev.type, ev.from_client
        ctype = canonical_event_type(typ)
        rules = [r for r in self.rules if r.wants(typ, ctype, client)]
        mode = (_NONE if typ is None else _APPEND if ctype == "input_audio_buffer.append"
                else _DELTA if ctype == "response.output_audio.delta" else _PARSE)
        route = (ctype, rules, mode)
        if typ is None or typ in KNOWN_TYPES:
            pass
        elif self._other_types < MAX_OTHER_TYPES and len(typ) <= MAX_TYPE_CHARS:
            self._other_types += 1
        else:
            return route  # not remembered
        self._dispatch[(typ, client)] = route
        self.state.first_of[("client" if client else "server", typ)] = ev
        return route

    def set_handshake(self, handshake: Any) -> None:
        self.state.handshake = handshake

    def feed(self, event: Any) -> None:
        ev = _Fed(event)
        try:
            self._feed(ev)
        finally:
            ev._ev = None  # what a rule keeps of it holds no payload

    def _feed(self, ev: _Fed) -> None:
        route = self._dispatch.get((ev.type, ev.from_client)) or self._route(ev)
        ctype, rules, mode = route
        st = self.state
        if mode == _APPEND:
            obj = None
            st.nbytes = ev.audio_bytes
        elif mode == _DELTA:
            src = ev._ev
            # An Event's head is parsed once for every reader of the pass (summary, page, check).
            obj = src.head_json if type(src) is Event else (audio_event_head(ev.head) if ev.head else _obj(ev))
            st.nbytes = ev.audio_bytes
        elif mode == _PARSE:
            src = ev._ev
            obj = src.head_json if type(src) is Event else _obj(ev)
            st.nbytes = 0
        else:
            obj = None
            st.nbytes = 0
        for r in rules:
            try:
                res = r.feed(ev, ctype, obj, st)
            except Exception as exc:  # noqa: BLE001 - a rule must never stop a check
                res = [_internal(r, exc, ev.index, ev.t, ev.type)]
            if res:
                self._add(res)
        st.apply(ev, ctype, obj)

    def finish(self, handshake: Any = None, close: Any = None, cut_short: bool = False) -> list[Finding]:
        st = self.state
        if handshake is not None:
            st.handshake = handshake
        st.close, st.cut_short = close, cut_short
        if close is not None and getattr(close, "t", None) is not None:
            st.end_t = max(st.end_t, close.t)
        for r in self.rules:
            try:
                res = r.finish(st)
            except Exception as exc:  # noqa: BLE001
                res = [_internal(r, exc, None, st.end_t)]
            if res:
                self._add(res)
        for (code, severity), (n, first) in self._left_out.items():
            self.findings.append(Finding(
                code, severity, first.title,
                f"{n} more {severity} finding(s) of {code} left out, the first at #{first.event_index} "
                f"({first.message[:120]}): a check lists {MAX_FINDINGS_PER_CODE} of each code and severity",
                first.t, first.event_index, first.event_type))
        self._left_out.clear()
        self.findings.sort(key=lambda f: f.sort_key)
        return self.findings

    def _add(self, found: list[Finding]) -> None:
        counts = self._counts
        for f in found:
            key = (f.code, f.severity)
            n = counts.get(key, 0) + 1
            counts[key] = n
            if n <= MAX_FINDINGS_PER_CODE:
                self.findings.append(f)
            else:
                held = self._left_out.get(key)
                self._left_out[key] = (1, f) if held is None else (held[0] + 1, held[1])


def _internal(rule: Rule, exc: Exception, index: int | None, t: float, etype: str | None = None) -> Finding:
    return Finding("RT000", "warning", "internal error in a rule",
                   f"{rule.code} failed on this event ({type(exc).__name__}: {exc}); please report it",
                   t, index, etype)


def filter_findings(
    findings: Iterable[Finding],
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    min_severity: str = "info",
) -> list[Finding]:
    """Findings of the selected codes (prefixes allowed; RT000 always) at or above ``min_severity``."""
    codes = select_codes(RULES, select, ignore)
    floor = severity_rank(min_severity)
    return [f for f in findings if (f.code in codes or f.code == "RT000") and severity_rank(f.severity) >= floor]


def check_events(
    events: Iterable[Any],
    *,
    handshake: Any = None,
    close: Any = None,
    cut_short: bool = False,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    options: Options | None = None,
    min_severity: str = "info",
) -> list[Finding]:
    """Check a stream of events (e.g. what an app sent in a live replay)."""
    select_codes(RULES, select, ignore)  # bad codes fail before the work
    c = Checker(options)
    c.set_handshake(handshake)
    for ev in events:
        c.feed(ev)
    return filter_findings(c.finish(handshake, close, cut_short), select, ignore, min_severity)


def check_file(
    path: str | os.PathLike[str],
    *,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] | None = None,
    options: Options | None = None,
    min_severity: str = "info",
) -> list[Finding]:
    """Check one recording; raises :class:`~rtproxy.errors.RecordingError` if it cannot be read."""
    select_codes(RULES, select, ignore)
    rec = open_recording(path)
    c = Checker(options)
    c.set_handshake(rec.handshake)
    for ev in rec.events():
        c.feed(ev)
    return filter_findings(c.finish(rec.handshake, rec.close, rec.cut_short), select, ignore, min_severity)
