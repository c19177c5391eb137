"""What happened in a session, response by response (pure, streaming).

Feed a :class:`Summarizer` the entries of :func:`rtproxy.view.timeline.annotate`
one by one, then call :meth:`Summarizer.result`. ``rtproxy show --summary``
prints the result; the HTML export draws it. Also holds the message filters
of ``rtproxy show`` (:class:`EventFilter`).
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from rtproxy.io.format import Message, Recording
from rtproxy.protocol.events import GA_TO_BETA, AudioFormat, audio_format_from_session, canonical_event_type, parse_event
from rtproxy.protocol.values import short_id
from rtproxy.view.events import Close, Handshake, clean_header, number, text_or_none
from rtproxy.view.timeline import Entry

__all__ = [
    "ResponseSummary",
    "ErrorSummary",
    "TruncateSummary",
    "SessionSummary",
    "Summarizer",
    "EventFilter",
    "summarize",
    "summary_lines",
    "event_head",
]

_TRANSCRIPT_DELTA = "response.output_audio_transcript.delta"
_TRANSCRIPT_DONE = "response.output_audio_transcript.done"
_TEXT_DELTA = "response.output_text.delta"
_TEXT_DONE = "response.output_text.done"
_AUDIO_DELTA = "response.output_audio.delta"


@dataclass
class ResponseSummary:
    """One response, from ``response.created`` to ``response.done``."""

    id: str | None
    index: int
    """Index of the first message of this response (usually ``response.created``)."""
    t_start: float
    t_end: float | None = None
    index_done: int | None = None
    status: str | None = None
    status_details: Any = None
    audio_ms: float = 0.0
    t_first_audio: float | None = None
    transcript: str = ""
    text: str = ""
    function_calls: list[tuple[str, str]] = field(default_factory=list)
    trigger_index: int | None = None
    """Index of the client ``response.create`` that asked for it, if any."""
    _transcript_parts: list[str] = field(default_factory=list, repr=False)
    _text_parts: list[str] = field(default_factory=list, repr=False)

    @property
    def duration_s(self) -> float | None:
        return None if self.t_end is None else self.t_end - self.t_start

    def line(self) -> str:
        """One line for ``rtproxy show --summary``."""
        status = self.status or "(no response.done)"
        sd = self.status_details
        if isinstance(sd, dict) and sd:
            bits = [str(sd.get(k)) for k in ("type", "reason") if sd.get(k)]
            err = sd.get("error")
            if isinstance(err, dict):
                bits.append(str(err.get("code") or err.get("type") or err))
            if bits:
                status += f" ({', '.join(bits)})"
        dur = f"{self.duration_s * 1000:.0f} ms" if self.duration_s is not None else "open"
        what = self.transcript or self.text
        if self.function_calls:
            what = "; ".join(f"{n}({a})" for n, a in self.function_calls) + (f" {what}" if what else "")
        return (
            f"{self.t_start * 1000:10.1f} ms  response {self.id or '?'}  {status}  {dur}  "
            f"audio {self.audio_ms:.0f} ms  {_quote(what)}"
        ).rstrip()


@dataclass
class ErrorSummary:
    """An ``error`` event and the client event that caused it."""

    index: int
    t: float
    type: str | None
    code: str | None
    message: str | None
    param: str | None
    event_id: str | None
    cause_index: int | None = None
    cause_type: str | None = None
    cause_t: float | None = None
    matched_by: str | None = None
    """``"event_id"`` (error.event_id named it) or ``"preceding"`` (last client event before)."""

    def line(self) -> str:
        what = " ".join(str(x) for x in (self.type, self.code) if x) or "error"
        if self.param:
            what += f" param={self.param}"
        if self.cause_index is not None:
            how = "named by error.event_id" if self.matched_by == "event_id" else "last client event before"
            cause = f"caused by #{self.cause_index} {self.cause_type} at {self.cause_t * 1000:.1f} ms ({how})"  # type: ignore[operator]
        else:
            cause = "no client event before it"
        msg = f"  {_quote(self.message or '')}" if self.message else ""
        return f"{self.t * 1000:10.1f} ms  error #{self.index} {what}{msg}  <- {cause}"


@dataclass
class TruncateSummary:
    """A client ``conversation.item.truncate`` (a barge-in) against the audio it had received."""

    index: int
    t: float
    item_id: str | None
    audio_end_ms: float | None
    received_ms: float
    """Assistant audio the client had received for that item when it truncated."""

    @property
    def problem(self) -> str | None:
        """What is wrong with this truncate, if anything (the server would refuse or mis-cut)."""
        if self.audio_end_ms is None:
            return "no audio_end_ms"
        if self.audio_end_ms > self.received_ms + 0.5:
            return f"audio_end_ms is {self.audio_end_ms - self.received_ms:.0f} ms past the audio received"
        if self.received_ms == 0:
            return "no audio had been received for this item"
        return None

    def line(self) -> str:
        end = "?" if self.audio_end_ms is None else f"{self.audio_end_ms:.0f}"
        bad = f"  !! {self.problem}" if self.problem else ""
        return (
            f"{self.t * 1000:10.1f} ms  truncate #{self.index} item {self.item_id or '?'} "
            f"at {end} ms of {self.received_ms:.0f} ms received{bad}"
        )


@dataclass
class SessionSummary:
    """Everything ``show --summary`` and the HTML page's header say."""

    model: str | None = None
    url: str | None = None
    status: int | None = None
    duration_s: float = 0.0
    turns: int = 0
    messages_client: int = 0
    messages_server: int = 0
    audio_ms_client: float = 0.0
    audio_ms_server: float = 0.0
    close_code: int | None = None
    close_reason: str | None = None
    closed_by: str | None = None
    truncated: bool = False
    responses: list[ResponseSummary] = field(default_factory=list)
    errors: list[ErrorSummary] = field(default_factory=list)
    truncates: list[TruncateSummary] = field(default_factory=list)
    formats_asked: dict[str, AudioFormat] = field(default_factory=dict)
    """Audio formats the client last asked for in ``session.update`` ("input", "output")."""
    formats_echoed: dict[str, AudioFormat] = field(default_factory=dict)
    """Audio formats the server last reported in ``session.created`` / ``session.updated``."""

    def format_mismatches(self) -> list[str]:
        """Each direction whose format the server reports differently from what was asked."""
        out = []
        for side in ("input", "output"):
            a, e = self.formats_asked.get(side), self.formats_echoed.get(side)
            if a is not None and e is not None and a != e:
                out.append(f"{side} audio: asked {_fmt(a)}, the server reports {_fmt(e)}")
        return out

    def status_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.responses:
            k = r.status or "open"
            out[k] = out.get(k, 0) + 1
        return out


def _fmt(f: AudioFormat) -> str:
    return f"{f.codec} {f.rate} Hz"


def event_head(m: Message) -> dict[str, Any] | None:
    """The event as a dict with each audio value replaced by ``""`` (None if not JSON).

    Cheap for audio deltas: the base64 audio is never re-encoded.
    """
    return parse_event(m.head)


def _quote(s: str, n: int = 120) -> str:
    if not s:
        return ""
    s = " ".join(s.split())
    if len(s) > n:
        s = s[: n - 1] + "…"
    return f'"{s}"'


class Summarizer:
    """Feed entries in order with :meth:`feed`; then read :meth:`result`."""

    def __init__(self) -> None:
        self.summary = SessionSummary()
        self._by_id: dict[str, ResponseSummary] = {}
        self._current: ResponseSummary | None = None
        self._client_by_event_id: dict[str, tuple[int, str | None, float]] = {}
        self._last_client: tuple[int, str | None, float] | None = None
        self._last_create: int | None = None
        self._last_t = 0.0
        self._audio_ms_by_item: dict[str, float] = {}

    def _response(self, rid: str | None, e: Entry, t: float) -> ResponseSummary:
        if rid and rid in self._by_id:
            return self._by_id[rid]
        if rid is None and self._current is not None:
            return self._current
        r = ResponseSummary(id=rid, index=e.index, t_start=t, trigger_index=self._last_create)
        self._last_create = None
        self.summary.responses.append(r)
        if rid:
            self._by_id[rid] = r
        self._current = r
        return r

    def feed(self, e: Entry) -> dict[str, Any] | None:
        """Account for one entry; returns the parsed event head (None if not JSON)."""
        m = e.msg
        t = m.t_ns / 1e9
        self._last_t = t
        s = self.summary
        if m.from_client:
            s.messages_client += 1
            s.audio_ms_client += e.audio_ms
        else:
            s.messages_server += 1
            s.audio_ms_server += e.audio_ms
        if not m.is_text or e.type is None:
            if m.from_client:
                self._last_client = (e.index, e.type, t)
            return None
        obj = e.event.head_json if e.event is not None else event_head(m)
        if obj is None:
            return None
        typ = canonical_event_type(e.type) or ""
        if m.from_client:
            rec = (e.index, e.type, t)
            eid = short_id(obj.get("event_id")) or None
            if eid is not None:
                self._client_by_event_id[eid] = rec
            self._last_client = rec
            if typ == "response.create":
                self._last_create = e.index
            elif typ == "session.update":
                self._note_formats(obj, s.formats_asked)
            elif typ == "conversation.item.truncate":
                iid = short_id(obj.get("item_id")) or None
                # Untrusted: 1e308, NaN, "12", 1e400 (infinity) are no position in the audio.
                end = number(obj.get("audio_end_ms"), 0, 1e10)
                s.truncates.append(
                    TruncateSummary(
                        e.index, t, iid,
                        end,
                        self._audio_ms_by_item.get(iid or "", 0.0),
                    )
                )
            elif typ == "conversation.item.create":
                item = obj.get("item")
                if isinstance(item, dict) and item.get("role") == "user":
                    s.turns += 1
            return obj
        if typ in ("session.created", "session.updated"):
            self._note_formats(obj, s.formats_echoed)
        elif typ == "input_audio_buffer.committed":
            s.turns += 1
        elif typ == "error":
            self._error(e, t, obj)
        elif typ == "response.created":
            resp = obj.get("response") or {}
            rid = resp.get("id") if isinstance(resp, dict) else None
            self._response(short_id(rid), e, t)
        elif typ == "response.done":
            resp = obj.get("response") or {}
            rid = resp.get("id") if isinstance(resp, dict) else None
            r = self._response(short_id(rid), e, t)
            r.t_end = t
            r.index_done = e.index
            if isinstance(resp, dict):
                r.status = text_or_none(resp.get("status"))
                r.status_details = resp.get("status_details")
                if not r.transcript and not r.text:
                    self._fill_from_output(r, resp.get("output"))
            if r.transcript == "" and r._transcript_parts:
                r.transcript = "".join(r._transcript_parts)
            if r.text == "" and r._text_parts:
                r.text = "".join(r._text_parts)
            if self._current is r:
                self._current = None
        elif typ.startswith("response."):
            r = self._response(short_id(obj.get("response_id")), e, t)
            if typ == _AUDIO_DELTA:
                r.audio_ms += e.audio_ms
                iid = short_id(obj.get("item_id"))
                if iid is not None:
                    self._audio_ms_by_item[iid] = self._audio_ms_by_item.get(iid, 0.0) + e.audio_ms
                if r.t_first_audio is None:
                    r.t_first_audio = t
            elif typ == _TRANSCRIPT_DELTA and isinstance(obj.get("delta"), str):
                r._transcript_parts.append(obj["delta"])
            elif typ == _TRANSCRIPT_DONE and isinstance(obj.get("transcript"), str):
                r.transcript = obj["transcript"]
            elif typ == _TEXT_DELTA and isinstance(obj.get("delta"), str):
                r._text_parts.append(obj["delta"])
            elif typ == _TEXT_DONE and isinstance(obj.get("text"), str):
                r.text = obj["text"]
            elif typ == "response.function_call_arguments.done":
                r.function_calls.append((str(obj.get("name") or "?"), str(obj.get("arguments") or "")))
        return obj

    @staticmethod
    def _note_formats(obj: dict[str, Any], into: dict[str, AudioFormat]) -> None:
        session = obj.get("session")
        if isinstance(session, dict):
            inp, out = audio_format_from_session(session)
            if inp is not None:
                into["input"] = inp
            if out is not None:
                into["output"] = out

    @staticmethod
    def _fill_from_output(r: ResponseSummary, output: Any) -> None:
        if not isinstance(output, list):
            return
        for item in output:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "function_call" and not r.function_calls:
                r.function_calls.append((str(item.get("name") or "?"), str(item.get("arguments") or "")))
            content = item.get("content")
            for part in content if isinstance(content, list) else []:
                if isinstance(part, dict):
                    if isinstance(part.get("transcript"), str) and not r.transcript:
                        r.transcript = part["transcript"]
                    if isinstance(part.get("text"), str) and not r.text:
                        r.text = part["text"]

    def _error(self, e: Entry, t: float, obj: dict[str, Any]) -> None:
        err = obj.get("error")
        err = err if isinstance(err, dict) else {}

        def s(k: str) -> str | None:
            v = err.get(k)
            return None if v is None else str(v)

        es = ErrorSummary(e.index, t, s("type"), s("code"), s("message"), s("param"), s("event_id"))
        cause = None
        eid = short_id(es.event_id)
        if eid and eid in self._client_by_event_id:
            cause = self._client_by_event_id[eid]
            es.matched_by = "event_id"
        elif self._last_client is not None:
            cause = self._last_client
            es.matched_by = "preceding"
        if cause:
            es.cause_index, es.cause_type, es.cause_t = cause
        self.summary.errors.append(es)

    def finish(self, rec: Recording) -> SessionSummary:
        """Fill in what the header, handshake and close records say; returns the summary."""
        s = self.summary
        h = clean_header(rec.header)
        s.model = h.get("model")
        s.url = h.get("url")
        hs = Handshake.from_record(rec.handshake)
        s.status = hs.status if hs is not None else None
        close = Close.from_record(rec.close)
        s.close_code = close.code if close else None
        s.close_reason = close.reason if close else None
        s.closed_by = close.by if close else None
        s.truncated = rec.truncated
        end_t = (close.t or 0.0) if close else 0.0
        s.duration_s = max(end_t, self._last_t)
        for r in s.responses:
            if not r.transcript and r._transcript_parts:
                r.transcript = "".join(r._transcript_parts)
            if not r.text and r._text_parts:
                r.text = "".join(r._text_parts)
        return s

    result = finish


def summarize(entries: Iterable[Entry], rec_after: Any) -> SessionSummary:
    """Summarise entries; ``rec_after`` is the reader (its ``.recording`` is read at the end)."""
    sm = Summarizer()
    for e in entries:
        sm.feed(e)
    return sm.finish(rec_after.recording)


def summary_lines(s: SessionSummary) -> list[str]:
    """The ``show --summary`` lines, responses and errors in time order."""
    head = [f"  model        {s.model or '-'}"]
    if s.status not in (None, 101):
        head.append(f"  upgrade      refused: HTTP {s.status} (no session)")
    head += [
        f"  duration     {s.duration_s:.3f} s",
        f"  turns        {s.turns}",
        "  responses    "
        + (", ".join(f"{n} {k}" for k, n in s.status_counts().items()) if s.responses else "0"),
        f"  errors       {len(s.errors)}",
        f"  audio        client {s.audio_ms_client / 1000:.2f} s, server {s.audio_ms_server / 1000:.2f} s",
    ]
    if s.close_code is not None or s.closed_by:
        head.append(f"  close        {s.close_code} {s.close_reason or ''!r} by {s.closed_by}")
    for mismatch in s.format_mismatches():
        head.append(f"  !! format    {mismatch}")
    if s.truncated:
        head.append("  note         recording was cut short (recorder stopped mid-session)")
    rows: list[tuple[float, int, str]] = [(r.t_start, r.index, r.line()) for r in s.responses]
    rows += [(x.t, x.index, x.line()) for x in s.errors]
    rows += [(x.t, x.index, x.line()) for x in s.truncates]
    rows.sort()
    return head + [r[2] for r in rows]


@dataclass
class EventFilter:
    """``show --type/--from/--grep``: which messages to keep."""

    type_glob: str | None = None
    side: str | None = None  # "client" | "server"
    grep: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.type_glob or self.side or self.grep)

    def keep(self, e: Entry) -> bool:
        m = e.msg
        if self.side and m.direction != self.side:
            return False
        if self.type_glob:
            # Match the event under its beta and its GA name alike.
            canon = canonical_event_type(e.type) or ""
            names = (e.type or "", canon, GA_TO_BETA.get(canon, canon))
            if not any(fnmatch.fnmatchcase(n, self.type_glob) for n in names):
                return False
        if self.grep:
            # Search the message without its audio: grepping base64 is never what is meant.
            hay = m.head if m.is_text else m.content
            # (what the command line gave: bytes that are not UTF-8 arrive as surrogate escapes)
            if self.grep.encode("utf-8", "surrogateescape") not in hay:
                text = hay.decode("utf-8", "replace")
                if "\\u" in text:
                    # JSON may escape what the user typed ("\u00e9" for "é")
                    obj = event_head(m) if m.is_text else None
                    if obj is not None:
                        text = json.dumps(obj, ensure_ascii=False)
                if self.grep.lower() not in text.lower():
                    return False
        return True
