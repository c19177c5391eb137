"""When to send what: the replay schedule of a recording (pure, no sockets).

A recording is a dialogue. :func:`server_steps` turns its messages into the
server side of it, each step saying what it waited for in the original run
(the handshake, the previous server message, a client event, or a point in the
client's input audio) and how long after. :func:`client_events` lists the
client side (every event but ``input_audio_buffer.append``, whose audio is
counted by duration instead).

:class:`ReplayScheduler` is then fed the live client's messages
(:meth:`~ReplayScheduler.client_message`) and asked what to send next
(:meth:`~ReplayScheduler.next_send`, then :meth:`~ReplayScheduler.pop` once
sent). A shell on top (``replay_server``) owns the sockets and the clock.

Divergences (a client event that does not fit the recording) are
:class:`Divergence` values whose :meth:`~Divergence.message` says what the
recording expected, what arrived, and where.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from rtproxy.export.textsafe import visible
from rtproxy.io.format import Message
from rtproxy.protocol.formats import SESSION_CONFIG_EVENTS, SessionFormats
from rtproxy.protocol.events import (
    canonical_event_type,
    event_type,
    parse_event,
)
from rtproxy.protocol.redaction import redact_payload
from rtproxy.replay.substitute import Substitutions, client_ids, metadata_of, server_rule
from rtproxy.view.events import iter_events

__all__ = [
    "APPEND",
    "ServerStep",
    "ClientEvent",
    "Divergence",
    "ReplayScheduler",
    "server_steps",
    "client_events",
    "client_messages",
    "lateness_stats",
    "parse_speed",
]

APPEND = "input_audio_buffer.append"
#: How far ahead a client event of an unexpected type is looked for before
#: giving up and leaving the cursor where it is.
LOOKAHEAD = 32
#: How far ahead of the awaited client event a live one may match out of order
#: (clients that send from several tasks race): one such leap at a time, or, while
#: the awaited one is a :data:`LATE_OK` event, each of the next ones in turn.
WINDOW = 4
#: Client events SDKs send from a task of their own (on open, on ``session.created``):
#: one may come after up to :data:`WINDOW` of the events recorded after it.
LATE_OK = frozenset({"session.update", "transcription_session.update"})
#: How long after the first event taken ahead of a late :data:`LATE_OK` event the replay
#: waits for it (or ``--wait-timeout``, if shorter): SDKs' tasks race by milliseconds.
LATE_GRACE_NS = 1_000_000_000
#: Client events a client sends from another task than its microphone's: input
#: audio may overtake them, or follow them, by a few appends.
RACES_AUDIO = frozenset(
    {
        "conversation.item.create",
        "conversation.item.truncate",
        "conversation.item.delete",
        "conversation.item.retrieve",
        "response.cancel",
    }
)
#: Audio positions closer than this (ms) count as reached: float sums differ.
AUDIO_TOLERANCE_MS = 0.5

# What follows a server step in the original run:
START = "start"  # the handshake
SERVER = "server"  # the previous server message
EVENT = "event"  # client event number `ordinal`
AUDIO = "audio"  # `audio_ms` of input audio into the segment before client event `ordinal`


@dataclass(frozen=True, slots=True)
class ServerStep:
    """One recorded server message and what it followed in the original run."""

    index: int
    """Index of the message in the recording (client and server messages counted)."""
    t_ns: int
    msg: Message
    after: str
    """:data:`START`, :data:`SERVER`, :data:`EVENT` or :data:`AUDIO`."""
    ordinal: int = 0
    """For EVENT: the client event it followed; for AUDIO: the segment (appends
    before client event ``ordinal``)."""
    audio_ms: float = 0.0
    gap_ns: int = 0
    """Recorded time since the message it followed."""
    after_index: int = -1
    """Index in the recording of the client message it followed (EVENT, AUDIO), else -1."""

    @property
    def type(self) -> str | None:
        """The event type (read on demand: a replay only needs it for session events)."""
        return event_type(self.msg.head) if self.msg.is_text else None


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """A recorded client event other than an audio append (or the end marker, type None)."""

    ordinal: int
    index: int
    t_ns: int
    type: str | None
    fields: tuple[tuple[str, Any], ...]
    """The parts of the event that must match: (field path, value)."""
    segment_audio_ms: float
    """Input audio the client appended since the previous client event."""
    redacted: bool = False
    ids: tuple[tuple[str, str], ...] = ()
    """Values the client chose (event_id, item.id, previous_item_id...): wildcards when
    matching, learned recorded -> live (:func:`rtproxy.replay.substitute.client_ids`)."""
    metadata: Any = None
    """``response.metadata`` of a response.create (a wildcard, learned too)."""


#: Characters of what was expected or got that a divergence quotes.
DIVERGENCE_QUOTE_CHARS = 240


@dataclass(frozen=True, slots=True)
class Divergence:
    """A live client message that does not fit the recording."""

    live_index: int
    """Index of the live client message (0-based, appends included)."""
    offset_ms: float
    """When it arrived, ms after the handshake."""
    expected: str
    got: str
    recorded_index: int | None = None
    recorded_offset_ms: float | None = None
    field: str | None = None
    waited_s: float | None = None
    """Set when nothing arrived: how long the replay waited (``--wait-timeout``)."""

    def __post_init__(self) -> None:
        # What a client sent is quoted: a 5 MiB event type is cut, in the line and in memory.
        for name in ("expected", "got", "field"):
            v = getattr(self, name)
            if isinstance(v, str) and len(v) > DIVERGENCE_QUOTE_CHARS:
                object.__setattr__(self, name, v[: DIVERGENCE_QUOTE_CHARS - 1] + "\u2026")

    def message(self) -> str:
        """One line: where, what the recording expected, what arrived (the recording's and
        the client's text with control characters shown as escapes: it goes to terminals)."""
        return visible(self._message())

    def _message(self) -> str:
        rec = ""
        if self.recorded_index is not None:
            rec = f" (recorded message #{self.recorded_index} at {self.recorded_offset_ms:.1f} ms)"
        if self.waited_s is not None:
            # What is missing first: a --strict close reason keeps only 123 bytes.
            return (
                f"divergence: nothing arrived within {self.waited_s:g} s: recording expected "
                f"{self.expected}{rec}, due as client message #{self.live_index} by {self.offset_ms:.1f} ms"
            )
        where = f"client message #{self.live_index} at {self.offset_ms:.1f} ms"
        if self.field:
            return (
                f"divergence: {where}, field {self.field}: recording expected {self.expected}{rec}, "
                f"got {self.got}"
            )
        return f"divergence: {where}: recording expected {self.expected}{rec}, got {self.got}"

    def __str__(self) -> str:
        return self.message()


#: Input audio arrivals remembered in one segment (about 45 minutes of 20 ms
#: appends) while no recorded message waits on them; the older half goes past it.
_MAX_CROSSINGS = 1 << 17

#: The slowest ``--speed`` (a recorded second takes 1,000).
MIN_SPEED = 0.001


def parse_speed(value: str | float) -> float:
    """``--speed``: a positive factor, or 0 / ``max`` for as fast as possible (returns 0.0)."""
    if isinstance(value, str) and value.strip().lower() in ("max", "inf", "0"):
        return 0.0
    speed = float(value)
    if not MIN_SPEED <= speed < math.inf:
        if speed == 0 or speed == math.inf:
            return 0.0
        raise ValueError(f"--speed {value}: expected a factor from {MIN_SPEED:g} up, or 0 / max")
    return speed


# ------------------------------------------------------------------ the script
def _walk(messages: Iterable[Message]) -> Iterator[tuple[int, Message, str | None, float]]:
    """(index, message, client event type, input audio ms of an append) for each message.

    Through the event view (:func:`rtproxy.view.events.iter_events`): the input
    format in force follows every session event of either side, and nothing
    else is parsed (the replay reads the recording once per connection while
    sending, and unpacks no audio: an append's duration is its audio's size).
    """
    for ev in iter_events(messages):
        m = ev.message
        if not m.from_client:
            yield ev.index, m, None, 0.0
        elif ev.type == APPEND:
            yield ev.index, m, APPEND, ev.format.duration_ms(m.audio_bytes)
        else:
            yield ev.index, m, ev.type, 0.0


def server_steps(messages: Iterable[Message]) -> Iterator[ServerStep]:
    """The server messages of a recording, each with what it followed. Streams."""
    after, ordinal, audio_ms, last_t = START, 0, 0.0, 0
    segment_ms = 0.0
    last_client = -1
    for index, m, typ, ms in _walk(messages):
        if m.from_client:
            if typ == APPEND:
                segment_ms += ms
                after, audio_ms = AUDIO, segment_ms
            else:
                after, audio_ms = EVENT, 0.0
                ordinal += 1
                segment_ms = 0.0
            last_t, last_client = m.t_ns, index
            continue
        if after == EVENT:
            yield ServerStep(index, m.t_ns, m, EVENT, ordinal - 1, 0.0, m.t_ns - last_t, last_client)
        elif after == AUDIO:
            yield ServerStep(index, m.t_ns, m, AUDIO, ordinal, audio_ms, m.t_ns - last_t, last_client)
        else:
            yield ServerStep(index, m.t_ns, m, after, 0, 0.0, m.t_ns - last_t)
        after, last_t = SERVER, m.t_ns


def client_events(messages: Iterable[Message]) -> Iterator[ClientEvent]:
    """The client events of a recording (appends folded into durations), then an end marker."""
    ordinal = 0
    segment_ms = 0.0
    for index, m, typ, ms in _walk(messages):
        if not m.from_client:
            continue
        if typ == APPEND:
            segment_ms += ms
            continue
        obj = parse_event(m.head) if m.is_text else None
        yield ClientEvent(
            ordinal, index, m.t_ns, _label(typ, m), significant_fields(typ, obj), segment_ms, m.redacted,
            client_ids(typ, obj), metadata_of(typ, obj),
        )
        ordinal += 1
        segment_ms = 0.0
    yield ClientEvent(ordinal, -1, 0, None, (), segment_ms)


def client_messages(messages: Iterable[Message]) -> Iterator[Message]:
    """Only the client messages of a recording (what a client replay sends)."""
    return (m for m in messages if m.from_client)


def _label(typ: str | None, m: Message) -> str:
    if typ:
        return typ
    if not m.is_text:
        return "(binary message)"
    return "(text that is not a JSON event)"


_ITEM_FIELDS = ("type", "role", "call_id", "name", "arguments", "output", "content")


def significant_fields(typ: str | None, obj: dict[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """The parts of a client event a replay compares: session config, items, response options.

    Ids, event ids, ``response.metadata`` and audio bytes are left out (they
    differ between runs, are learned as substitutions, or are compared by
    duration elsewhere); so is the ``call_id`` of a ``function_call`` item the
    client made up. A function output's ``call_id`` stays: it names the call.
    """
    if obj is None or typ is None:
        return ()
    out: list[tuple[str, Any]] = []
    if typ in ("session.update", "transcription_session.update"):
        _flatten("session", obj.get("session"), out)
    elif typ == "response.create":
        resp = obj.get("response")
        if isinstance(resp, dict):
            resp = {k: v for k, v in resp.items() if k != "metadata"}
            if isinstance(resp.get("input"), list):
                resp["input"] = [
                    {k: v for k, v in it.items() if k != "id"} if isinstance(it, dict) else it for it in resp["input"]
                ]
        if resp:  # {} and {"metadata": ...} ask for nothing more than no "response" does
            _flatten("response", resp, out)
    elif typ == "conversation.item.create":
        item = obj.get("item")
        if isinstance(item, dict):
            for k in _ITEM_FIELDS:
                if k == "call_id" and item.get("type") == "function_call":
                    continue
                if k in item:
                    _flatten(f"item.{k}", item[k], out)
    return tuple(out)


def _flatten(path: str, value: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(value, dict):
        if not value:
            out.append((path, "{}"))
        for k in sorted(value):
            _flatten(f"{path}.{k}", value[k], out)
    elif isinstance(value, list):
        out.append((f"{path}.length", len(value)))
        for i, v in enumerate(value):
            _flatten(f"{path}[{i}]", v, out)
    elif isinstance(value, str) and path.endswith((".audio", ".delta")) and len(value) > 64:
        out.append((path, f"<{len(value) * 3 // 4} bytes of audio>"))
    else:
        out.append((path, value))


def _short(v: Any, n: int = 80) -> str:
    s = v if isinstance(v, str) and v.startswith("<") and v.endswith("audio>") else json.dumps(v, ensure_ascii=False)
    return s if len(s) <= n else s[: n - 1] + "…"


def _compare(expected: tuple[tuple[str, Any], ...], got: tuple[tuple[str, Any], ...]) -> tuple[str, str, str] | None:
    """(field, expected, got) for the first field that differs (naming how many more do), or None."""
    if expected == got:
        return None
    e, g = dict(expected), dict(got)
    diffs: list[tuple[str, str, str]] = []
    for path in list(e) + [p for p in g if p not in e]:
        if path not in g:
            diffs.append((path, _short(e[path]), "nothing (field missing)"))
        elif path not in e:
            diffs.append((path, "nothing (field absent in the recording)", _short(g[path])))
        elif e[path] != g[path]:
            diffs.append((path, _short(e[path]), _short(g[path])))
    if not diffs:
        return None
    path, exp, got_s = diffs[0]
    if len(diffs) > 1:
        more = ", ".join(p for p, _, _ in diffs[1:4]) + (", ..." if len(diffs) > 4 else "")
        verb = "fields differ" if len(diffs) > 2 else "field differs"
        got_s += f" (and {len(diffs) - 1} more {verb}: {more})"
    return path, exp, got_s


def _b64_len(s: str) -> int:
    n = len(s)
    return n * 3 // 4 - (2 if s.endswith("==") else 1 if s.endswith("=") else 0)


# --------------------------------------------------------------- the scheduler
class ReplayScheduler:
    """Decides when each recorded server message is due for one live client.

    Feed it with :meth:`client_message` as the client's messages arrive (and
    :meth:`start` at the handshake). Ask :meth:`next_send`: ``(due_ns, step)``
    for the next server message once it is released, or None while it waits for
    the client (or when all were sent: see :attr:`finished`). After sending it,
    call :meth:`pop`. Times are nanoseconds on any monotonic clock.

    ``pace="client"``: a step that followed a client event waits for the live
    client's corresponding event, then keeps the recorded gap; steps that
    followed a server message keep their spacing. ``pace="clock"``: each step
    at its recorded offset. Gaps are divided by ``speed``; speed 0: no gaps.

    Values the live client chose itself (its item ids, event ids, ``response.metadata``,
    see :class:`~rtproxy.replay.substitute.Substitutions`) are wildcards when matching
    and are learned recorded -> live; :meth:`substitute` puts them into the server
    messages that refer to them (``substitute=False``: the byte-exact tape).

    A live event that matches one of the next :data:`WINDOW` recorded events exactly
    while the awaited one has not come is taken out of order (one such leap at a
    time; while the awaited one is a :data:`LATE_OK` event, the recorded events after
    it may all come first, in their order, up to :data:`WINDOW` of them), and input
    audio racing a :data:`RACES_AUDIO` event is counted for the segment it belongs
    to: a swapped pair is no divergence.

    ``wait_timeout_ns`` (client pace; 0: wait forever): while a step waits for
    the client, :meth:`next_deadline` says when to give up on it; the shell
    arms a timer and, if nothing released the step by then, calls
    :meth:`timeout`, which reports the missing message and releases the step
    as if it had arrived.
    """

    def __init__(
        self,
        steps: Iterable[ServerStep],
        events: Iterable[ClientEvent],
        *,
        pace: str = "client",
        speed: float = 1.0,
        wait_timeout_ns: int = 0,
        substitute: bool = True,
    ) -> None:
        if pace not in ("client", "clock"):
            raise ValueError(f"pace {pace!r}: expected client or clock")
        self.pace = pace
        self.speed = speed
        self.wait_timeout_ns = max(0, int(wait_timeout_ns))
        self._prev_t = 0  # recorded time of the last step handed out
        self._steps = iter(steps)
        self._events = iter(events)
        self._event_buf: deque[ClientEvent] = deque()
        self._head: ServerStep | None = None
        self._head_loaded = False
        self.start_ns: int | None = None
        self._prev_due: int | None = None
        # live client state
        self.cursor = 0  # next recorded client event expected
        self._matched_at: dict[int, int] = {}  # event ordinal -> live time it was matched/skipped
        self._segment_ms = 0.0  # live audio appended in the current segment
        self._crossings: list[tuple[float, int]] = []  # (cumulative ms, live time) this segment
        self._crossing_pos = 0
        self._warned_audio_segment = -1
        self._carry_ms = 0.0  # audio still owed to the segment before the cursor (RACES_AUDIO)
        self._early_ms = 0.0  # audio that came before the awaited event (RACES_AUDIO), for the next segment
        self._early: list[tuple[float, int]] = []
        self._leapt = False  # a live event matched one after the awaited one (WINDOW)
        self._leap_ns: int | None = None  # when the first of them came
        self.substitute_enabled = substitute
        self.subs = Substitutions(server_rule, metadata=True)
        self.live_count = 0
        self.formats = SessionFormats()
        self.divergences: list[Divergence] = []
        self.sent = 0
        self._warps: list[tuple[int, int]] = []  # (until_ns, shift_ns): delays a fault injected

    # -- inputs ------------------------------------------------------------
    def start(self, now_ns: int) -> None:
        """The handshake completed at ``now_ns``: the schedule starts."""
        self.start_ns = now_ns

    def client_message(self, now_ns: int, is_text: bool, content: bytes) -> list[Divergence]:
        """A live client message arrived; returns the divergences it caused (often none)."""
        assert self.start_ns is not None, "call start() first"
        index = self.live_count
        self.live_count += 1
        typ = event_type(content) if is_text else None
        offset_ms = (now_ns - self.start_ns) / 1e6
        found: list[Divergence] = []
        if typ == APPEND:
            obj = parse_event(content)
            audio = obj.get("audio") if obj else None
            nbytes = _b64_len(audio) if isinstance(audio, str) else 0
            ms = self.formats.input.duration_ms(nbytes)
            ev = self._peek_event(self.cursor)
            if ev is not None and ev.segment_audio_ms == 0:
                nxt = self._peek_event(self.cursor + 1) if ev.type is not None else None
                if self._carry_ms > AUDIO_TOLERANCE_MS:
                    # The rest of the previous segment's audio, sent after the event that
                    # closed it (an item.create racing the appends): it belongs there.
                    self._carry_ms -= ms
                    self.divergences += found
                    return found
                if nxt is not None and nxt.segment_audio_ms > 0 and ev.type in RACES_AUDIO:
                    # Audio of the next segment that overtook the awaited event: counted there.
                    self._early_ms += ms
                    early = self._early
                    early.append((self._early_ms, now_ns))
                    if len(early) > _MAX_CROSSINGS:  # --wait-timeout 0 and hours of audio
                        del early[: len(early) // 2]
                    return found
                if self._warned_audio_segment != self.cursor:
                    self._warned_audio_segment = self.cursor
                    found.append(
                        Divergence(
                            index, offset_ms, ev.type or "the end of the session (no more client events)",
                            f"{APPEND} (the recording has no input audio here)",
                            ev.index if ev.index >= 0 else None,
                            ev.t_ns / 1e6 if ev.index >= 0 else None,
                        )
                    )
            self._segment_ms += ms
            cr = self._crossings
            cr.append((self._segment_ms, now_ns))
            if len(cr) > _MAX_CROSSINGS:  # hours of appends that no message waits on yet
                cut = len(cr) // 2
                del cr[:cut]
                self._crossing_pos = max(0, self._crossing_pos - cut)
            self.divergences += found
            return found
        obj = parse_event(content) if is_text else None
        if typ in SESSION_CONFIG_EVENTS:
            self.formats.feed(typ, obj)
        label = typ or ("(binary message)" if not is_text else "(text that is not a JSON event)")
        ev = self._peek_event(self.cursor)
        if ev is None or ev.type is None:
            n = self.cursor
            found.append(
                Divergence(index, offset_ms, f"no more client events (the recording has {n})", label)
            )
            self.divergences += found
            return found
        live_fields: dict[bool, tuple[tuple[str, Any], ...]] = {}

        def fields_for(rec: ClientEvent) -> tuple[tuple[str, Any], ...]:
            # Redaction changes the fields only where the recording was redacted.
            key = rec.redacted
            if key not in live_fields:
                f = significant_fields(typ, obj)
                if key and f:
                    f = significant_fields(typ, parse_event(redact_payload(content)[0]))
                live_fields[key] = f
            return live_fields[key]

        def diff_with(rec: ClientEvent) -> tuple[str, str, str] | None:
            return _compare(self._expected_fields(rec), fields_for(rec))

        same = typ is not None and canonical_event_type(ev.type) == canonical_event_type(typ)
        diff = diff_with(ev) if same else None
        if same and diff is None:
            self._matched(ev, obj, now_ns)
            self._advance_to(ev.ordinal + 1, now_ns)
        elif (later := self._next_unmatched(typ)) is not None and (not same or diff_with(later) is None):
            # Sent before the awaited one (the client's tasks raced): matched out of order;
            # the awaited one stays awaited.
            later_diff = diff_with(later)
            if later_diff:
                path, exp, got = later_diff
                found.append(
                    Divergence(index, offset_ms, exp, got, later.index, later.t_ns / 1e6, f"{typ} {path}")
                )
            self._matched(later, obj, now_ns)
            if not self._leapt:
                self._leap_ns = now_ns
            self._leapt = True
            self._matched_at[later.ordinal] = now_ns
        elif same:
            assert diff is not None
            path, exp, got = diff
            found.append(Divergence(index, offset_ms, exp, got, ev.index, ev.t_ns / 1e6, f"{typ} {path}"))
            self._matched(ev, obj, now_ns)
            self._advance_to(ev.ordinal + 1, now_ns)
        else:
            found.append(Divergence(index, offset_ms, ev.type, label, ev.index, ev.t_ns / 1e6))
            # Resynchronise on the next recorded event of this type, if close.
            for k in range(self.cursor + 1, self.cursor + 1 + LOOKAHEAD):
                later = self._peek_event(k)
                if later is None or later.type is None:
                    break
                if typ is not None and canonical_event_type(later.type) == canonical_event_type(typ):
                    if k not in self._matched_at:
                        self._matched(later, obj, now_ns)
                    self._advance_to(k + 1, now_ns)
                    break
        self.divergences += found
        return found

    def delay(self, until_ns: int, ns: int) -> None:
        """Move the rest of the schedule ``ns`` later (a ``delay`` fault): whatever the
        schedule counts from (the handshake, the last send, a client message) that
        happened before ``until_ns`` counts as ``ns`` later. ``until_ns`` is when the
        delayed message now goes out; a client message after it is an answer to what
        came late, so its replies are not moved again."""
        self._warps.append((until_ns, max(0, int(ns))))

    def _warp(self, t: int) -> int:
        if not self._warps:
            return t
        return t + sum(ns for until, ns in self._warps if t < until)

    def substitute(self, msg: Message, content: bytes | None = None) -> bytes | None:
        """A recorded server message with the values the live client chose in place of the
        recorded ones (its item ids, event ids, metadata), or None when it goes out as
        recorded. ``content``: the message's bytes, if the caller has them."""
        if not self.subs:
            return None
        return self.subs.apply(msg, content)

    @property
    def substitutions(self) -> int:
        """How many recorded values were replaced by live ones in the messages handed out."""
        return self.subs.count

    # -- outputs -----------------------------------------------------------
    def next_send(self) -> tuple[int, ServerStep] | None:
        """``(due_ns, step)`` of the next server message, or None (waiting, or finished)."""
        step = self._peek_step()
        if step is None:
            return None
        due = self._due(step)
        if due is None:
            return None
        return due, step

    def pop(self) -> ServerStep:
        """Mark the step returned by :meth:`next_send` as sent; returns it."""
        nxt = self.next_send()
        assert nxt is not None, "pop() without a due step"
        due, step = nxt
        self._prev_due = due
        self._prev_t = step.t_ns
        self._head = None
        self._head_loaded = False
        self.sent += 1
        if step.msg.is_text and step.type in SESSION_CONFIG_EVENTS:
            self.formats.feed(step.type, parse_event(step.msg.head))
        return step

    def next_deadline(self) -> int | None:
        """When to call :meth:`timeout` if the client sends nothing, or None.

        None unless the next step waits for the client (client pace) and a
        wait timeout is set. The deadline is ``wait_timeout_ns`` after the
        client message was due: the last sent step's due time plus the
        recorded gap from it to that client message.
        """
        waiting = self._waiting()
        return None if waiting is None else waiting[0]

    def _waiting(self) -> tuple[int, int] | None:
        """(deadline, ns waited by then) for :meth:`next_deadline`: ``wait_timeout_ns``
        after the message was due, or :data:`LATE_GRACE_NS` after the events recorded
        after a late ``session.update`` began to come, if that is sooner."""
        if self.wait_timeout_ns <= 0 or self.pace != "client":
            return None
        step = self._peek_step()
        if step is None or step.after not in (EVENT, AUDIO) or self._release(step) is not None:
            return None
        deadline = self._expected_at(step) + self.wait_timeout_ns
        waited = self.wait_timeout_ns
        if self._leap_ns is not None and step.after == EVENT and step.ordinal == self.cursor:
            awaited = self._peek_event(self.cursor)
            late = self._leap_ns + min(LATE_GRACE_NS, self.wait_timeout_ns)
            if awaited is not None and canonical_event_type(awaited.type) in LATE_OK and late < deadline:
                deadline, waited = late, min(LATE_GRACE_NS, self.wait_timeout_ns)
        return deadline, waited

    def timeout(self, now_ns: int) -> list[Divergence]:
        """The shell's timer fired at ``now_ns``: if the deadline passed, report the
        missing client message and release the waiting step as if it had arrived
        (so the held server messages go on). Returns the divergence (or nothing)."""
        waiting = self._waiting()
        if waiting is None or now_ns < waiting[0]:
            return []
        deadline, waited_ns = waiting
        step = self._peek_step()
        assert step is not None and self.start_ns is not None
        ev = self._peek_event(step.ordinal)
        if step.after == EVENT:
            expected = ev.type if ev is not None and ev.type else "a client event"
        else:
            name = ev.type if ev is not None and ev.type else "the end of the session"
            expected = f"{APPEND} ({step.audio_ms:.0f} ms of input audio before {name})"
        rec_index = step.after_index if step.after_index >= 0 else None
        rec_ms = (step.t_ns - step.gap_ns) / 1e6 if rec_index is not None else None
        d = Divergence(
            self.live_count, (deadline - self.start_ns) / 1e6, expected, "nothing",
            rec_index, rec_ms, waited_s=waited_ns / 1e9,
        )
        if step.after == EVENT:
            self._advance_to(step.ordinal + 1, now_ns)
        else:
            if step.ordinal > self.cursor:
                self._advance_to(step.ordinal, now_ns)
            if step.ordinal == self.cursor:
                self._segment_ms = max(self._segment_ms, step.audio_ms)
                self._crossings.append((step.audio_ms, now_ns))
        self.divergences.append(d)
        return [d]

    def end(self, now_ns: int) -> list[Divergence]:
        """The client left at ``now_ns``: an awaited event it never sent although it sent
        events recorded after it (taken out of order) is reported; returns it (or nothing).
        A client that stops before the recording's end is no divergence by itself."""
        if not self._leapt or self.start_ns is None:
            return []
        ev = self._peek_event(self.cursor)
        if ev is None or ev.type is None or ev.ordinal in self._matched_at:
            return []
        self._leapt = False  # reported once
        d = Divergence(
            self.live_count, (now_ns - self.start_ns) / 1e6, ev.type,
            "the end of the session (it never came; events recorded after it did)",
            ev.index if ev.index >= 0 else None, ev.t_ns / 1e6 if ev.index >= 0 else None,
        )
        self.divergences.append(d)
        return [d]

    @property
    def finished(self) -> bool:
        """All recorded server messages were handed out."""
        return self._peek_step() is None

    def waiting_for(self) -> str:
        """What the next server message waits for (for logs and reports)."""
        step = self._peek_step()
        if step is None:
            return "nothing (all server messages sent)"
        if self.pace == "clock" or step.after in (START, SERVER):
            return "its time"
        ev = self._peek_event(step.ordinal)
        name = ev.type if ev is not None and ev.type else "end"
        if step.after == EVENT:
            return f"client event #{step.ordinal} ({name})"
        return f"{step.audio_ms:.0f} ms of input audio before client event #{step.ordinal} ({name})"

    def last_due(self) -> int | None:
        """When the last sent message was due (for a recorded close that follows it)."""
        return self._prev_due

    def scaled(self, ns: int) -> int:
        """A recorded duration on the live clock (``speed`` applied)."""
        return 0 if self.speed == 0 else int(ns / self.speed)

    # -- internals ---------------------------------------------------------
    def _peek_step(self) -> ServerStep | None:
        if not self._head_loaded:
            self._head = next(self._steps, None)
            self._head_loaded = True
        return self._head

    def _peek_event(self, k: int) -> ClientEvent | None:
        buf = self._event_buf
        # The buffer holds events from ordinal buf[0].ordinal on.
        if buf and k < buf[0].ordinal:
            return None  # long consumed
        while True:
            if buf and buf[0].ordinal <= k <= buf[-1].ordinal:
                return buf[k - buf[0].ordinal]
            if buf and buf[-1].type is None and k > buf[-1].ordinal:
                return buf[-1]
            ev = next(self._events, None)
            if ev is None:
                return buf[-1] if buf else None
            buf.append(ev)
            while len(buf) > 1 and buf[0].ordinal < self.cursor - 1:
                buf.popleft()

    def _expected_fields(self, rec: ClientEvent) -> tuple[tuple[str, Any], ...]:
        """The recorded fields, with what the live client renamed (a call it made up) in place."""
        if not self.subs.ids:
            return rec.fields
        return tuple((p, self.subs.value(v)) if p == "item.call_id" else (p, v) for p, v in rec.fields)

    def _next_unmatched(self, typ: str | None) -> ClientEvent | None:
        """The first recorded event after the awaited one not matched yet, if it is of type
        ``typ``, within :data:`WINDOW`, and no other leap is outstanding (unless the awaited
        one is a :data:`LATE_OK` event, sent from the client's other task): the other half of
        a swapped pair, or the next event before a late ``session.update``."""
        if typ is None:
            return None
        if self._leapt:
            awaited = self._peek_event(self.cursor)
            if awaited is None or canonical_event_type(awaited.type) not in LATE_OK:
                return None
        for k in range(self.cursor + 1, self.cursor + 1 + WINDOW):
            if k in self._matched_at:
                continue
            later = self._peek_event(k)
            if later is None or later.type is None:
                return None
            return later if canonical_event_type(later.type) == canonical_event_type(typ) else None
        return None

    def _matched(self, rec: ClientEvent, obj: dict[str, Any] | None, now_ns: int) -> None:
        """A live event matched ``rec``: learn the values the live client chose instead."""
        if not self.substitute_enabled or obj is None:
            return
        if rec.ids:
            live = dict(client_ids(rec.type, obj))
            for name, value in rec.ids:
                if name in live:
                    self.subs.learn(value, live[name])
        if rec.metadata is not None:
            self.subs.learn_metadata(rec.metadata, metadata_of(rec.type, obj))

    def _advance_to(self, ordinal: int, now_ns: int) -> None:
        for k in range(self.cursor, ordinal):
            self._matched_at.setdefault(k, now_ns)
        while ordinal in self._matched_at:
            ordinal += 1
        if ordinal > self.cursor:
            closing = self._peek_event(self.cursor)
            self._carry_ms = 0.0
            if closing is not None and closing.type in RACES_AUDIO and ordinal == self.cursor + 1:
                # Audio of this segment may still come after the event that closed it.
                self._carry_ms = max(0.0, closing.segment_audio_ms - self._segment_ms)
            self.cursor = ordinal
            self._segment_ms = 0.0
            self._crossings.clear()
            self._crossing_pos = 0
            self._leapt = False
            self._leap_ns = None
            if self._early:
                # Audio that overtook the event counts for the segment it came early for.
                self._segment_ms = self._early_ms
                self._crossings.extend(self._early)
                self._early.clear()
            self._early_ms = 0.0

    def _release(self, step: ServerStep) -> int | None:
        """When the live client reached what ``step`` waited for, or None if not yet."""
        if step.after == EVENT:
            return self._matched_at.get(step.ordinal)
        # AUDIO: the segment is over, or enough audio arrived in it.
        if step.ordinal < self.cursor:
            return self._matched_at.get(step.ordinal)
        if step.ordinal > self.cursor:
            return None
        target = step.audio_ms - AUDIO_TOLERANCE_MS
        cr = self._crossings
        i = self._crossing_pos
        while i < len(cr) and cr[i][0] < target:
            i += 1
        if i >= len(cr):
            self._crossing_pos = i
            return None
        self._crossing_pos = i
        if i > 4096:  # keep memory flat in hour-long audio segments
            del cr[: i - 1]
            self._crossing_pos = 1
        return cr[self._crossing_pos][1]

    def _expected_at(self, step: ServerStep) -> int:
        """When the client message ``step`` waits for was due on the live clock."""
        assert self.start_ns is not None
        base = self._prev_due if self._prev_due is not None else self.start_ns
        return self._warp(base) + self.scaled(max(0, step.t_ns - step.gap_ns - self._prev_t))

    def _due(self, step: ServerStep) -> int | None:
        start = self.start_ns
        assert start is not None, "call start() first"
        if self.pace == "clock":
            return self._warp(start) + self.scaled(step.t_ns)
        if step.after == START:
            due = self._warp(start) + self.scaled(step.t_ns)
        elif step.after == SERVER:
            base = self._prev_due if self._prev_due is not None else start
            due = self._warp(base) + self.scaled(step.gap_ns)
        else:
            released = self._release(step)
            if released is None:
                return None
            due = self._warp(released) + self.scaled(step.gap_ns)
        if self._prev_due is not None and due < self._prev_due:
            due = self._prev_due
        return due


def lateness_stats(late_ns: list[int]) -> tuple[float, float, float]:
    """(p50, p99, max) in milliseconds of how late messages went out."""
    if not late_ns:
        return 0.0, 0.0, 0.0
    s = sorted(late_ns)
    n = len(s)

    def pct(p: float) -> float:
        return s[min(n - 1, int(round(p * (n - 1))))] / 1e6

    return pct(0.5), pct(0.99), s[-1] / 1e6
