"""Comparing two normalised recordings (pure logic, no terminal, no click).

:func:`diff_files` reads two ``.rtrec`` files, :func:`diff_normalized` compares
two :class:`~rtproxy.compare.normalize.Normalized` recordings. Both return a
:class:`DiffResult`: connection differences, inserted / missing / changed
events per direction, and per-turn timing changes beyond a tolerance. Render it
with :mod:`rtproxy.compare.render` or ``result.to_dict()``.

Alignment: per direction, events are matched on their signature (the
normalised body with ids reduced to their kind, so an extra response early on
does not shift every later ``resp#N``). Events that occur once in both runs
anchor the alignment (patience diff); the short stretches between anchors are
aligned with :class:`difflib.SequenceMatcher`; unmatched events of the same
type inside a stretch are paired and compared field by field. Ids are then
checked for consistent links through the pairs (A's ``item#3`` must always
correspond to the same id in B).

Recordings are untrusted, so every :class:`difflib.SequenceMatcher` runs on a
budget of steps (:class:`_Work`): one that would take longer (thousands of
events of one type, a transcript of 20,000 equal words) gives way to the
common prefix and suffix, then to a linear greedy matching. Real recordings
stay far inside the budget and get SequenceMatcher's results unchanged.
"""

from __future__ import annotations

import bisect
import os
import re
from dataclasses import dataclass, field
from difflib import Match, SequenceMatcher
from itertools import accumulate
from typing import Any, Iterable, Iterator, Sequence, cast

from rtproxy.io.format import CorruptRecording, open_recording
from rtproxy.io.progress import Progress, reading
from rtproxy.protocol.events import INVALID, parse_json
from rtproxy.protocol.values import header_pairs
from rtproxy.view.events import Close
from rtproxy.compare import normalize as _normalize
from rtproxy.compare.normalize import (
    GA_ONLY, TEXT_JOIN, CutText, Event, Normalized, PathRules, Ref, Turn, cut_digest, normalize, same_cut,
)

__all__ = [
    "DEFAULT_TOLERANCE_MS",
    "FieldChange",
    "EventChange",
    "TimingChange",
    "MetaChange",
    "DiffResult",
    "align",
    "word_diff",
    "normalize_file",
    "diff_normalized",
    "diff_files",
]

DEFAULT_TOLERANCE_MS = 250.0

_TEXT_KEYS = frozenset({"transcript", "text", "instructions"})
_JSON_KEYS = frozenset({"arguments"})
_JSON_DELTAS = frozenset({"response.function_call_arguments.delta", "response.mcp_call_arguments.delta"})
# Above this many elements in one unanchored stretch, SequenceMatcher's
# popularity heuristic is switched on to keep the alignment near-linear.
_AUTOJUNK_ABOVE = 4000


@dataclass
class FieldChange:
    """One field that differs in a pair of matched events.

    ``kind``: ``value``; ``text`` (``words`` is a word diff: ``[op, words]`` with
    op ``=``, ``-`` (only in A), ``+`` (only in B)); ``json`` (``changes`` compares
    the parsed JSON); ``link`` (both ids exist but point at different things);
    ``only_a`` / ``only_b`` (the field exists in one run only). ``note`` says
    what was not shown in full (a text too long to keep, or to diff word by word).
    """

    path: str
    a: Any
    b: Any
    kind: str = "value"
    words: list[list[str]] | None = None
    changes: list[FieldChange] | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "kind": self.kind, "a": self.a, "b": self.b}
        if self.words is not None:
            d["words"] = self.words
        if self.changes is not None:
            d["changes"] = [c.to_dict() for c in self.changes]
        if self.note is not None:
            d["note"] = self.note
        return d


@dataclass
class EventChange:
    """An event only in A (``missing``), only in B (``inserted``), or in both but different (``changed``)."""

    kind: str
    direction: str
    type: str
    a: Event | None
    b: Event | None
    changes: list[FieldChange] = field(default_factory=list)

    @property
    def turn(self) -> int:
        ev = self.a or self.b
        assert ev is not None
        return ev.turn

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "direction": self.direction, "type": self.type}
        for side, ev in (("a", self.a), ("b", self.b)):
            d[side] = (
                None
                if ev is None
                else {"message": ev.index, "t_ms": round(ev.t_ms, 1), "turn": ev.turn, "messages": ev.messages}
            )
        if self.kind == "changed":
            d["changes"] = [c.to_dict() for c in self.changes]
        else:
            d["event"] = (self.a or self.b).body  # type: ignore[union-attr]
        return d


@dataclass
class TimingChange:
    """A per-turn duration that moved by more than the tolerance."""

    metric: str
    """``first_output_ms`` (end of user input -> first audio/text) or ``response_ms``."""
    turn_a: int
    turn_b: int
    response_a: str
    response_b: str
    a_ms: float
    b_ms: float

    @property
    def delta_ms(self) -> float:
        return self.b_ms - self.a_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "turn": {"a": self.turn_a, "b": self.turn_b},
            "response": {"a": self.response_a, "b": self.response_b},
            "a_ms": round(self.a_ms, 1),
            "b_ms": round(self.b_ms, 1),
            "delta_ms": round(self.delta_ms, 1),
        }


@dataclass
class MetaChange:
    """A connection fact that differs: handshake status, subprotocol, model, close code or reason."""

    field: str
    a: Any
    b: Any

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "a": self.a, "b": self.b}


@dataclass
class DiffResult:
    """Everything :func:`diff_normalized` found; ``equivalent`` when nothing differs."""

    a_path: str
    b_path: str
    meta_a: dict[str, Any]
    meta_b: dict[str, Any]
    meta: list[MetaChange]
    events: list[EventChange]
    timing: list[TimingChange]
    counts: dict[str, dict[str, int]]
    """Per direction: events in a and b, and changed / missing / inserted."""
    turns: dict[str, int]
    notes: list[str]
    ignore: tuple[str, ...]
    keep: tuple[str, ...]
    tolerance_ms: float | None
    """None when timing was not compared."""

    @property
    def equivalent(self) -> bool:
        return not (self.meta or self.events or self.timing)

    @property
    def n_differences(self) -> int:
        return len(self.meta) + len(self.events) + len(self.timing)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": "equivalent" if self.equivalent else "different",
            "a": self.a_path,
            "b": self.b_path,
            "differences": self.n_differences,
            "counts": self.counts,
            "turns": self.turns,
            "connection": {"a": self.meta_a, "b": self.meta_b, "changes": [m.to_dict() for m in self.meta]},
            "events": [e.to_dict() for e in self.events],
            "timing": [t.to_dict() for t in self.timing],
            "tolerance_ms": self.tolerance_ms,
            "ignore": list(self.ignore),
            "keep": list(self.keep),
            "notes": self.notes,
        }


# ------------------------------------------------------- bounded SequenceMatcher
#: SequenceMatcher steps one diff may spend in all, and one call at least / per
#: element compared; past them a linear matching is used. A step is one entry
#: of its index visited (an element of ``a`` costs :data:`_STEPS_PER_ELEMENT`
#: more); 1,000,000 take about 0.15 s on a slow machine. A one-hour session
#: spends a fraction of the total; two 10,000-word texts with 100 edits 3,400,000.
_WORK_TOTAL = 30_000_000
_WORK_FLOOR = 2_000_000
_WORK_PER_ITEM = 500
_STEPS_PER_ELEMENT = 6

Opcode = tuple[str, int, int, int, int]


class _Work:
    """The SequenceMatcher steps left for one diff (see :data:`_WORK_TOTAL`)."""

    __slots__ = ("left",)

    def __init__(self, total: int = _WORK_TOTAL) -> None:
        self.left = total

    def limit(self, n: int) -> int:
        """Steps one SequenceMatcher on ``n`` elements in all may take."""
        return min(self.left, max(_WORK_FLOOR, _WORK_PER_ITEM * n))


class _TooCostly(Exception):
    pass


class _BoundedMatcher(SequenceMatcher):
    """A SequenceMatcher that gives up (:class:`_TooCostly`) before it spends
    more than ``limit`` steps: each ``find_longest_match`` visits at most the
    index entries of the elements of its range of ``a``, known from prefix sums."""

    def __init__(self, a: Sequence[Any], b: Sequence[Any], autojunk: bool, limit: int) -> None:
        super().__init__(None, a, b, autojunk=autojunk)  # type: ignore[arg-type]
        b2j: dict[Any, list[int]] = self.b2j  # type: ignore[attr-defined]
        self._n = len(a)
        self._cost = list(accumulate((len(b2j.get(x, ())) + _STEPS_PER_ELEMENT for x in a), initial=0))
        self.limit = limit
        self.steps = 0

    def find_longest_match(self, alo: int = 0, ahi: int | None = None, blo: int = 0, bhi: int | None = None) -> Match:
        hi = self._n if ahi is None else ahi
        self.steps += self._cost[hi] - self._cost[alo]
        if self.steps > self.limit:
            raise _TooCostly
        return super().find_longest_match(alo, ahi, blo, bhi)


def _matcher_opcodes(a: Sequence[Any], b: Sequence[Any], work: _Work, autojunk: bool) -> list[Opcode] | None:
    sm = _BoundedMatcher(a, b, autojunk, work.limit(len(a) + len(b)))
    ops: list[Opcode] | None
    try:
        ops = cast("list[Opcode]", sm.get_opcodes())
    except _TooCostly:
        ops = None
    work.left -= min(sm.steps, sm.limit)
    return ops


def _opcodes(a: Sequence[Any], b: Sequence[Any], work: _Work, autojunk: bool = False) -> list[Opcode]:
    """``SequenceMatcher(None, a, b, autojunk=autojunk).get_opcodes()`` when that
    fits in ``work``; else the common prefix and suffix, and between them the
    same if it fits now, else :func:`_greedy`. Near-linear however crafted."""
    ops = _matcher_opcodes(a, b, work, autojunk)
    if ops is not None:
        return ops
    n = min(len(a), len(b))
    p = 0
    while p < n and a[p] == b[p]:
        p += 1
    q = 0
    while q < n - p and a[len(a) - 1 - q] == b[len(b) - 1 - q]:
        q += 1
    ma, mb = a[p : len(a) - q], b[p : len(b) - q]
    out: list[Opcode] = [("equal", 0, p, 0, p)] if p else []
    # Again between them, unless nothing was cut off (it would spend as much again).
    mid = _matcher_opcodes(ma, mb, work, autojunk) if ma and mb and (p or q) else None
    if mid is None:
        mid = _pairs_to_opcodes(_greedy(ma, mb), len(ma), len(mb))
    out.extend((op, i1 + p, i2 + p, j1 + p, j2 + p) for op, i1, i2, j1, j2 in mid)
    if q:
        out.append(("equal", len(a) - q, len(a), len(b) - q, len(b)))
    return out


def _greedy(a: Sequence[Any], b: Sequence[Any]) -> list[tuple[int, int]]:
    """Equal elements matched in order, in O(n log n): at a mismatch, skip to
    the nearer next occurrence of either element in the other sequence."""
    where_a: dict[Any, list[int]] = {}
    for i, x in enumerate(a):
        where_a.setdefault(x, []).append(i)
    where_b: dict[Any, list[int]] = {}
    for j, y in enumerate(b):
        where_b.setdefault(y, []).append(j)

    def after(where: dict[Any, list[int]], x: Any, lo: int) -> int | None:
        lst = where.get(x)
        if not lst:
            return None
        k = bisect.bisect_left(lst, lo)
        return lst[k] if k < len(lst) else None

    pairs: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            pairs.append((i, j))
            i += 1
            j += 1
            continue
        jb = after(where_b, a[i], j + 1)
        ia = after(where_a, b[j], i + 1)
        if jb is None and ia is None:
            i += 1
            j += 1
        elif ia is None or (jb is not None and jb - j <= ia - i):
            j = jb  # type: ignore[assignment]
        else:
            i = ia
    return pairs


def _pairs_to_opcodes(pairs: list[tuple[int, int]], la: int, lb: int) -> list[Opcode]:
    """Opcodes as SequenceMatcher writes them, from matched pairs increasing in both."""
    ops: list[Opcode] = []
    i = j = k = 0
    n = len(pairs)
    while True:
        ni, nj = pairs[k] if k < n else (la, lb)
        if i < ni and j < nj:
            ops.append(("replace", i, ni, j, nj))
        elif i < ni:
            ops.append(("delete", i, ni, j, j))
        elif j < nj:
            ops.append(("insert", i, i, j, nj))
        if k == n:
            return ops
        e = k
        while e + 1 < n and pairs[e + 1] == (pairs[e][0] + 1, pairs[e][1] + 1):
            e += 1
        i, j = pairs[e][0] + 1, pairs[e][1] + 1
        ops.append(("equal", ni, i, nj, j))
        k = e + 1


# ------------------------------------------------------------------ alignment
def align(a: Sequence[Any], b: Sequence[Any], work: _Work | None = None) -> list[tuple[int | None, int | None]]:
    """Align two sequences of hashable signatures.

    Returns ``(i, j)`` for matched elements, ``(i, None)`` for elements only in
    ``a`` and ``(None, j)`` for elements only in ``b``, in order.
    """
    out: list[tuple[int | None, int | None]] = []
    _align(a, b, 0, len(a), 0, len(b), out, work or _Work())
    return out


def _align(
    a: Sequence[Any], b: Sequence[Any], alo: int, ahi: int, blo: int, bhi: int, out: list, work: _Work
) -> None:
    while alo < ahi and blo < bhi and a[alo] == b[blo]:
        out.append((alo, blo))
        alo += 1
        blo += 1
    tail = []
    while alo < ahi and blo < bhi and a[ahi - 1] == b[bhi - 1]:
        ahi -= 1
        bhi -= 1
        tail.append((ahi, bhi))
    if alo == ahi or blo == bhi:
        out.extend((i, None) for i in range(alo, ahi))
        out.extend((None, j) for j in range(blo, bhi))
    else:
        anchors = _unique_lcs(a, b, alo, ahi, blo, bhi)
        if anchors:
            pa, pb = alo, blo
            for i, j in anchors:
                _align(a, b, pa, i, pb, j, out, work)
                out.append((i, j))
                pa, pb = i + 1, j + 1
            _align(a, b, pa, ahi, pb, bhi, out, work)
        else:
            _fallback(a, b, alo, ahi, blo, bhi, out, work)
    out.extend(reversed(tail))


def _unique_lcs(a: Sequence[Any], b: Sequence[Any], alo: int, ahi: int, blo: int, bhi: int) -> list[tuple[int, int]]:
    """Elements that occur once in each range, longest increasing run of them (patience)."""
    ca: dict[Any, int] = {}
    for i in range(alo, ahi):
        x = a[i]
        ca[x] = -1 if x in ca else i
    cb: dict[Any, int] = {}
    for j in range(blo, bhi):
        x = b[j]
        cb[x] = -1 if x in cb else j
    pairs = [(i, cb[x]) for x, i in ca.items() if i >= 0 and cb.get(x, -1) >= 0]
    if not pairs:
        return []
    pairs.sort()
    # longest increasing subsequence on j
    tails: list[int] = []
    tails_idx: list[int] = []
    back: list[int] = [-1] * len(pairs)
    for k, (_, j) in enumerate(pairs):
        pos = bisect.bisect_left(tails, j)
        if pos == len(tails):
            tails.append(j)
            tails_idx.append(k)
        else:
            tails[pos] = j
            tails_idx[pos] = k
        back[k] = tails_idx[pos - 1] if pos else -1
    res = []
    k = tails_idx[-1]
    while k >= 0:
        res.append(pairs[k])
        k = back[k]
    res.reverse()
    return res


def _fallback(
    a: Sequence[Any], b: Sequence[Any], alo: int, ahi: int, blo: int, bhi: int, out: list, work: _Work
) -> None:
    big = (ahi - alo) + (bhi - blo) > _AUTOJUNK_ABOVE
    for op, i1, i2, j1, j2 in _opcodes(a[alo:ahi], b[blo:bhi], work, autojunk=big):
        if op == "equal":
            out.extend((alo + i, blo + j) for i, j in zip(range(i1, i2), range(j1, j2)))
        else:
            out.extend((alo + i, None) for i in range(i1, i2))
            out.extend((None, blo + j) for j in range(j1, j2))


# ----------------------------------------------------------------- comparing
_WORD_RE = re.compile(r"\S+")
_SPACES = re.compile(r"\s+")
#: Texts longer than this (characters, either side) are not split into words.
_WORD_DIFF_CHARS = 1 << 20


def word_diff(a: str, b: str) -> list[list[str]]:
    """Word-level diff: ``[[op, words], ...]`` with op ``=``, ``-`` (A only), ``+`` (B only)."""
    return _word_diff(a, b, _Work())[0]


def _word_diff(a: str, b: str, work: _Work) -> tuple[list[list[str]], str | None]:
    """:func:`word_diff` on ``work``'s budget, and a note when it is not word by word."""
    if len(a) > _WORD_DIFF_CHARS or len(b) > _WORD_DIFF_CHARS:
        whole = [[op, _SPACES.sub(" ", t.strip())] for op, t in (("-", a), ("+", b)) if t.strip()]
        return whole, f"text over {_WORD_DIFF_CHARS:,} characters: not compared word by word"
    wa = _WORD_RE.findall(a)
    wb = _WORD_RE.findall(b)
    out: list[list[str]] = []

    def add(op: str, words: list[str]) -> None:
        if not words:
            return
        text = " ".join(words)
        if out and out[-1][0] == op:
            out[-1][1] += " " + text
        else:
            out.append([op, text])

    for op, i1, i2, j1, j2 in _opcodes(wa, wb, work):
        if op == "equal":
            add("=", wa[i1:i2])
        else:
            add("-", wa[i1:i2])
            add("+", wb[j1:j2])
    return out, None


def _join_path(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


class _Links:
    """The id correspondence A -> B built from matched events."""

    def __init__(self) -> None:
        self.a2b: dict[str, str] = {}
        self.b2a: dict[str, str] = {}

    def check(self, ra: str, rb: str) -> bool:
        """Record that ``ra`` (A) corresponds to ``rb`` (B); False if that contradicts earlier pairs."""
        if ra.split("#")[0] != rb.split("#")[0]:
            return False
        ob = self.a2b.get(ra)
        oa = self.b2a.get(rb)
        if ob is None and oa is None:
            self.a2b[ra] = rb
            self.b2a[rb] = ra
            return True
        return ob == rb and oa == ra


def _compare(
    a: Any, b: Any, path: str, key: Any, etype: str, links: _Links, out: list[FieldChange], work: _Work | None = None
) -> None:
    if work is None:
        work = _Work()
    if isinstance(a, dict) and isinstance(b, dict):
        for k, va in a.items():
            p = _join_path(path, k)
            if k in b:
                _compare(va, b[k], p, k, etype, links, out, work)
            else:
                out.append(FieldChange(p, va, None, "only_a"))
        for k, vb in b.items():
            if k not in a:
                out.append(FieldChange(_join_path(path, k), None, vb, "only_b"))
        return
    if isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            p = _join_path(path, i)
            if i >= len(a):
                out.append(FieldChange(p, None, b[i], "only_b"))
            elif i >= len(b):
                out.append(FieldChange(p, a[i], None, "only_a"))
            else:
                _compare(a[i], b[i], p, key, etype, links, out, work)
        return
    if isinstance(a, Ref) and isinstance(b, Ref):
        if not links.check(a, b):
            out.append(FieldChange(path, str(a), str(b), "link"))
        return
    if isinstance(a, CutText) or isinstance(b, CutText):
        # Kept as its start and digest (past the text budget): the same text when the digests are.
        if not same_cut(a, b):
            out.append(FieldChange(path, a, b, "value", note=_cut_note(a, b)))
        return
    if a == b and type(a) is type(b):
        return
    if type(a) is float and type(b) is float and a != a and b != b:
        return  # NaN in both
    if isinstance(a, str) and isinstance(b, str):
        if key in _JSON_KEYS or (key == "delta" and etype in _JSON_DELTAS):
            ja, jb = _loads(a), _loads(b)
            if ja is not _BAD and jb is not _BAD:
                sub: list[FieldChange] = []
                _compare(ja, jb, "", None, "", links, sub, work)
                if sub:
                    out.append(FieldChange(path, a, b, "json", changes=sub))
                return
        if key in _TEXT_KEYS or (key == "delta" and etype in TEXT_JOIN):
            words, note = _word_diff(a, b, work)
            out.append(FieldChange(path, a, b, "text", words=words, note=note))
            return
    out.append(FieldChange(path, a, b, "value"))


def _cut_note(a: Any, b: Any) -> str:
    sides = []
    for side, v in (("A", a), ("B", b)):
        d = cut_digest(v)
        if d is not None:
            chars = v.chars if isinstance(v, CutText) else len(v) if isinstance(v, str) else len(_normalize._dumps(v))
            sides.append(f"{side} {chars:,} characters{' of JSON' if d[0] else ''}, sha256 {d[1][:16]}")
    return "too long to keep, shown cut, compared by SHA-256: " + "; ".join(sides)


_BAD = object()


def _loads(s: str) -> Any:
    # Bounded depth: a function call's arguments nesting 10,000 deep are text, not JSON.
    v = parse_json(s)
    return _BAD if v is INVALID else v


def _check_links(ea: Event, eb: Event, links: _Links) -> bool:
    return all(links.check(ra, rb) for ra, rb in zip(ea.refs, eb.refs))


# -------------------------------------------------------------------- driver
def _type_pairs(
    run_a: list[int], run_b: list[int], ea: list[Event], eb: list[Event], work: _Work
) -> Iterator[tuple[int, int]]:
    ta = [ea[i].type for i in run_a]
    tb = [eb[j].type for j in run_b]
    for op, i1, i2, j1, _ in _opcodes(ta, tb, work):
        if op == "equal":
            for k in range(i2 - i1):
                yield run_a[i1 + k], run_b[j1 + k]


def _by_turn(run: list[int], evs: list[Event]) -> list[list[int]]:
    groups: list[list[int]] = []
    last = None
    for i in run:
        if evs[i].turn != last:
            groups.append([])
            last = evs[i].turn
        groups[-1].append(i)
    return groups


def _pair_by_type(
    run_a: list[int], run_b: list[int], ea: list[Event], eb: list[Event], work: _Work | None = None
) -> Iterator[tuple[int, int]]:
    """Pair unmatched events of the same type, in order.

    A long stretch (two reruns where every audio hash and transcript differs)
    is first cut into turns, turns are aligned on their sequence of event
    types, then events are paired inside each pair of turns: near-linear
    where a flat alignment of thousands of repeated types would not be.
    Each alignment is bounded (:func:`_opcodes`): one turn of 20,000 events
    of one type pairs in linear time too.
    """
    work = work or _Work()
    if len(run_a) + len(run_b) <= _AUTOJUNK_ABOVE:
        yield from _type_pairs(run_a, run_b, ea, eb, work)
        return
    ga, gb = _by_turn(run_a, ea), _by_turn(run_b, eb)
    ka = [tuple(ea[i].type for i in g) for g in ga]
    kb = [tuple(eb[j].type for j in g) for g in gb]
    for op, i1, i2, j1, j2 in _opcodes(ka, kb, work):
        if op in ("equal", "replace"):
            for x, y in zip(range(i1, i2), range(j1, j2)):
                yield from _type_pairs(ga[x], gb[y], ea, eb, work)


def _pair_direction(
    direction: str, ea: list[Event], eb: list[Event], work: _Work | None = None
) -> tuple[list[tuple[Event, Event, bool]], list[EventChange]]:
    """Matched pairs (a, b, same signature) and the unmatched events."""
    work = work or _Work()
    pairs: list[tuple[Event, Event, bool]] = []
    unmatched: list[EventChange] = []
    steps = align([e.sig for e in ea], [e.sig for e in eb], work)
    run_a: list[int] = []
    run_b: list[int] = []

    def flush() -> None:
        if not run_a and not run_b:
            return
        used_a: set[int] = set()
        used_b: set[int] = set()
        for ia, ib in _pair_by_type(run_a, run_b, ea, eb, work):
            used_a.add(ia)
            used_b.add(ib)
            pairs.append((ea[ia], eb[ib], False))
        for i in run_a:
            if i not in used_a:
                unmatched.append(EventChange("missing", direction, ea[i].type, ea[i], None))
        for j in run_b:
            if j not in used_b:
                unmatched.append(EventChange("inserted", direction, eb[j].type, None, eb[j]))
        run_a.clear()
        run_b.clear()

    for i, j in steps:
        if i is not None and j is not None:
            flush()
            pairs.append((ea[i], eb[j], True))
        elif i is not None:
            run_a.append(i)
        else:
            run_b.append(j)  # type: ignore[arg-type]
    flush()
    return pairs, unmatched


def _meta_changes(ma: dict[str, Any], mb: dict[str, Any]) -> list[MetaChange]:
    out = []
    for k in ("status", "subprotocol", "model", "close_code", "close_reason"):
        if ma.get(k) != mb.get(k):
            out.append(MetaChange(k, ma.get(k), mb.get(k)))
    return out


def _timing(
    ta: list[Turn], tb: list[Turn], links: _Links, tolerance_ms: float
) -> list[TimingChange]:
    by_resp = {t.response: t for t in tb}
    out = []
    for x in ta:
        rb = links.a2b.get(x.response)
        y = by_resp.get(rb) if rb else None
        if y is None:
            continue
        for metric in ("first_output_ms", "response_ms"):
            va = getattr(x, metric)()
            vb = getattr(y, metric)()
            if va is None or vb is None:
                continue
            if abs(vb - va) > tolerance_ms:
                out.append(TimingChange(metric, x.number, y.number, x.response, y.response, va, vb))
    return out


def diff_normalized(
    na: Normalized,
    nb: Normalized,
    *,
    a_path: str = "A",
    b_path: str = "B",
    rules: PathRules | None = None,
    tolerance_ms: float | None = DEFAULT_TOLERANCE_MS,
) -> DiffResult:
    """Compare two normalised recordings; ``tolerance_ms=None`` skips timing."""
    rules = rules or PathRules()
    notes: list[str] = []
    client_a, client_b, server_a, server_b = na.client, nb.client, na.server, nb.server
    if {na.flavour, nb.flavour} == {"beta", "ga"}:
        beta_side = "A" if na.flavour == "beta" else "B"
        notes.append(
            f"{beta_side} uses beta event names, the other GA names: compared under GA names; "
            f"GA-only events ({', '.join(sorted(GA_ONLY))}) left out"
        )
        server_a = [e for e in server_a if e.type not in GA_ONLY]
        server_b = [e for e in server_b if e.type not in GA_ONLY]
    for side, n in (("A", na), ("B", nb)):
        if n.meta.get("truncated"):
            notes.append(f"{side} was cut short (recorder stopped mid-session): compared up to the cut")
        if n.cut:
            notes.append(
                f"{side}: {n.cut:,} long text{'s' if n.cut != 1 else ''} kept only as {'their' if n.cut != 1 else 'its'} "
                f"start and SHA-256 (past {_normalize.TEXT_BUDGET:,} characters of text, or a message that is no "
                f"JSON over 2,000 characters): shown cut with \u2026, compared in full by hash"
            )
        if n.cut_values:
            notes.append(
                f"{side}: {n.cut_values:,} list{'s' if n.cut_values != 1 else ''} or object{'s' if n.cut_values != 1 else ''} "
                f"kept only as the start and SHA-256 of {'their' if n.cut_values != 1 else 'its'} JSON (past "
                f"{_normalize.VALUE_BUDGET:,} items of lists and objects): shown cut with \u2026, compared by hash"
            )

    links = _Links()
    work = _Work()
    all_pairs: list[tuple[Event, Event, bool]] = []
    events: list[EventChange] = []
    counts: dict[str, dict[str, int]] = {}
    for direction, ea, eb in (("client", client_a, client_b), ("server", server_a, server_b)):
        pairs, unmatched = _pair_direction(direction, ea, eb, work)
        all_pairs.extend(pairs)
        events.extend(unmatched)
        counts[direction] = {"a": len(ea), "b": len(eb), "changed": 0,
                             "missing": sum(1 for u in unmatched if u.kind == "missing"),
                             "inserted": sum(1 for u in unmatched if u.kind == "inserted")}
    # Links are established in order of appearance in A, across both directions.
    all_pairs.sort(key=lambda p: p[0].index)
    for ea_, eb_, same in all_pairs:
        if same and _check_links(ea_, eb_, links):
            continue
        changes: list[FieldChange] = []
        _compare(ea_.body, eb_.body, "", None, ea_.type, links, changes, work)
        if changes:
            events.append(EventChange("changed", ea_.direction, ea_.type, ea_, eb_, changes))
    for direction, c in counts.items():
        for kind in ("changed", "missing", "inserted"):
            c[kind] = sum(1 for e in events if e.direction == direction and e.kind == kind)
    events.sort(key=_positions(all_pairs))
    meta = _meta_changes(na.meta, nb.meta)
    timing = [] if tolerance_ms is None else _timing(na.turns, nb.turns, links, tolerance_ms)
    return DiffResult(
        a_path, b_path, na.meta, nb.meta, meta, events, timing, counts,
        {"a": len(na.turns), "b": len(nb.turns)}, notes, rules.ignore, rules.keep, tolerance_ms,
    )


def _positions(pairs: list[tuple[Event, Event, bool]]) -> Any:
    """Sort key for changes: by place in A; an event only in B goes after the
    A event matched just before it in B."""
    bpos = sorted((pb.index, pa.index) for pa, pb, _ in pairs)
    bidx = [x[0] for x in bpos]
    prefmax: list[int] = []
    best = 0
    for _, ai in bpos:
        best = max(best, ai)
        prefmax.append(best)

    def key(e: EventChange) -> tuple[int, int, int]:
        if e.a is not None:
            return (e.a.index, 0, e.b.index if e.b else 0)
        assert e.b is not None
        k = bisect.bisect_left(bidx, e.b.index)
        return (prefmax[k - 1] if k else 0, 1, e.b.index)

    return key


def _beta_handshake(hs: dict[str, Any]) -> bool:
    """The client asked for the beta protocol (``OpenAI-Beta: realtime=v1`` or its subprotocol)."""
    for name, value in header_pairs(hs.get("request_headers")):
        low = name.lower()
        if (low == "openai-beta" and "realtime" in value) or (
            low == "sec-websocket-protocol" and "openai-beta.realtime" in value
        ):
            return True
    return False


def normalize_file(
    path: str | os.PathLike[str], rules: PathRules | None = None, progress: Progress | None = None, what: str = "reading"
) -> Normalized:
    """Read and normalise one recording; raises :class:`rtproxy.io.format.RecordingError`.
    ``progress``: see :mod:`rtproxy.io.progress`."""
    with open_recording(path) as reader:
        rec = reader.recording
        try:
            msgs = reading(reader.messages(), reader, progress, what)
            n = normalize(msgs, rules, header=rec.header, handshake=rec.handshake)
        except CorruptRecording as exc:
            if exc.path != "<stream>":
                raise
            raise CorruptRecording(path, exc.problem) from exc  # name the file
    n.path = str(path)
    if n.flavour is None and _beta_handshake(rec.handshake or {}):
        n.flavour = "beta"
    close = Close.from_record(rec.close)
    n.meta["close_code"] = close.code if close else None
    n.meta["close_reason"] = close.reason if close else None
    n.meta["truncated"] = rec.truncated
    return n


def diff_files(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    *,
    ignore: Iterable[str] | None = None,
    keep: Iterable[str] = (),
    tolerance_ms: float | None = DEFAULT_TOLERANCE_MS,
    progress: Progress | None = None,
) -> DiffResult:
    """Diff two recordings. ``ignore=None`` uses the default ignores; extra ones
    are added by passing ``DEFAULT_IGNORES + (...)``. Raises ``RecordingError``
    (unreadable file) or ``PathError`` (bad pattern) for the caller to report.
    ``progress``: "reading A" / "reading B" in bytes (:mod:`rtproxy.io.progress`)."""
    from rtproxy.compare.normalize import DEFAULT_IGNORES

    rules = PathRules(DEFAULT_IGNORES if ignore is None else ignore, keep)
    na = normalize_file(a, rules, progress, "reading A")
    nb = normalize_file(b, rules, progress, "reading B")
    return diff_normalized(na, nb, a_path=str(a), b_path=str(b), rules=rules, tolerance_ms=tolerance_ms)
