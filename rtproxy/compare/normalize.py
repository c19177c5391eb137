"""Turning a recording into comparable events (pure, streaming).

Two recordings of "the same" conversation differ in ids, timestamps, quota,
token counts and in how streaming deltas were chunked. :func:`normalize` reads
the messages once and returns, per direction, a list of :class:`Event` where

* ids (event, item, response, call, conversation, session) are replaced by
  symbolic ordinals in order of appearance (``item#1``, ``resp#2``: :class:`Ref`),
  so links between events survive while the random part is gone;
* noise named by :class:`PathRules` is dropped (by default :data:`DEFAULT_IGNORES`);
* streaming deltas are joined per item and content part (text, transcripts,
  function call arguments; audio becomes a duration and a hash), and consecutive
  ``input_audio_buffer.append`` become one event, so chunking is not a difference;
* beta event names are replaced by their GA names;
* input-audio transcription events are placed right after the event that
  introduced their item, wherever they arrived.

It also measures, per response, the timings :mod:`rtproxy.compare.core` compares. The
caller hands the result to :func:`rtproxy.compare.core_normalized`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, cast

from rtproxy.errors import PathError
from rtproxy.io.audiocodec import unpack_stream
from rtproxy.protocol.formats import SESSION_CONFIG_EVENTS, SessionFormats
from rtproxy.io.format import CorruptRecording, Message
from rtproxy.protocol.values import MAX_ID_CHARS, ident, integer, short_id
from rtproxy.protocol.events import (
    BETA_TO_GA,
    GA_TO_BETA,
    AudioFormat,
    canonical_event_type,
    model_from_url,
    too_deep,
)
from rtproxy.view.events import Handshake, clean_header

__all__ = [
    "DEFAULT_IGNORES",
    "PathRules",
    "PathError",
    "Ref",
    "Event",
    "Turn",
    "Normalized",
    "normalize",
    "REF_RE",
    "CutText",
    "TEXT_BUDGET",
    "text_digest",
    "digest_of",
    "same_cut",
    "cut_digest",
    "VALUE_BUDGET",
]

#: What is not compared unless ``--keep`` says otherwise. A pattern is a field
#: path inside an event (``**`` = any depth, ``*`` = any key, ``[*]`` = any
#: index) or an event type, which drops the whole event.
DEFAULT_IGNORES: tuple[str, ...] = (
    "event_id",
    "rate_limits.updated",
    "**.usage",
    "**.expires_at",
)

#: Matches a symbolic id in dumped JSON (used to blank ordinals for alignment).
REF_RE = re.compile(r'"((?:item|resp|call|conv|sess|event|id)#\d+)"')

_ID_KEYS = {
    "item_id": "item",
    "previous_item_id": "item",
    "response_id": "resp",
    "call_id": "call",
    "event_id": "event",
    "conversation_id": "conv",
    "session_id": "sess",
}
# Kind of an ``id`` member from the key of the object holding it.
_ID_PARENTS = {
    "item": "item",
    "output": "item",
    "input": "item",
    "response": "resp",
    "session": "sess",
    "conversation": "conv",
}
_ID_PREFIXES = {
    "item": "item",
    "msg": "item",
    "resp": "resp",
    "call": "call",
    "sess": "sess",
    "conv": "conv",
    "event": "event",
    "evt": "event",
}

TEXT_JOIN = frozenset(
    {
        "response.output_text.delta",
        "response.output_audio_transcript.delta",
        "conversation.item.input_audio_transcription.delta",
        "response.function_call_arguments.delta",
        "response.mcp_call_arguments.delta",
    }
)
AUDIO_JOIN = frozenset({"response.output_audio.delta"})
APPEND = "input_audio_buffer.append"
_JOINABLE = TEXT_JOIN | AUDIO_JOIN | {APPEND}
#: Deltas that mark the first output of a response (audio or text).
OUTPUT_DELTAS = frozenset(
    {
        "response.output_audio.delta",
        "response.output_text.delta",
        "response.output_audio_transcript.delta",
        "response.function_call_arguments.delta",
    }
)
_INPUT_END_CLIENT = frozenset({"input_audio_buffer.commit"})
_INPUT_END_SERVER = frozenset({"input_audio_buffer.speech_stopped", "input_audio_buffer.committed"})
_INPUT_TRANSCRIPTION = "conversation.item.input_audio_transcription."
#: GA events that the beta protocol never sends (beta sends only ``conversation.item.created``).
GA_ONLY = frozenset({"conversation.item.done"})


class Ref(str):
    """A symbolic id such as ``item#3``: equal to its text, marked as an id."""

    __slots__ = ()


#: Characters of text one recording keeps in full, over all its events: the
#: strings longer than :data:`LONG_TEXT` and the joined deltas. A real session
#: holds a few MB at most; a crafted one (100,000 events of 20 kB each from a
#: 1 MB file) would need gigabytes. Beyond it a long text is a :class:`CutText`.
TEXT_BUDGET = 16 << 20
#: Strings longer than this are charged to :data:`TEXT_BUDGET` and compared
#: (in signatures) by their digest.
LONG_TEXT = 256
#: Characters of a :class:`CutText` shown.
CUT_SHOW = 200
#: Items of lists and objects one recording keeps as such, over all its events.
#: A one-hour session holds about 60,000; a crafted 36 kB file of 3,000 events
#: each listing 10,000 strings holds 30 million (gigabytes once compared). Beyond
#: it a list or object whose JSON is over :data:`LONG_TEXT` characters is kept as
#: a :class:`CutText` of that JSON.
VALUE_BUDGET = 4_000_000


def text_digest(text: str) -> str:
    """SHA-256 of ``text`` as UTF-8 (a lone surrogate too), hex."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class CutText(str):
    """A long text kept only as its start (its value, ending in ``…``) with the
    length and SHA-256 of the whole: two are the same text when their digests are.
    """

    chars: int
    sha256: str
    json: bool
    """It is the JSON of a list or object (past :data:`VALUE_BUDGET`), not a text."""

    def __new__(cls, shown: str, chars: int, sha256: str, json: bool = False) -> CutText:
        self = super().__new__(cls, shown)
        self.chars = chars
        self.sha256 = sha256
        self.json = json
        return self

    @classmethod
    def of(cls, text: str, show: int = CUT_SHOW, json: bool = False) -> CutText:
        return cls(text[:show] + "…", len(text), text_digest(text), json)


def digest_of(text: str) -> str:
    """The digest a text is compared by: that of the whole text, cut or not."""
    return text.sha256 if isinstance(text, CutText) else text_digest(text)


def _marker(digest: str) -> str:
    return "\u0000sha256:" + digest


def _canon(value: Any) -> Any:
    """``value`` with each long text, and each list or object whose JSON (so
    reduced) is long, replaced by a digest marker: the same value gives the same
    result wherever the budgets cut it."""
    if isinstance(value, CutText):
        return _marker(value.sha256)
    if isinstance(value, str):
        return _marker(text_digest(value)) if len(value) > LONG_TEXT else value
    if isinstance(value, (dict, list)):
        items = _canon_items(value)
        dumped = _dumps(items)
        return _marker(text_digest(dumped)) if len(dumped) > LONG_TEXT else items
    return value


def _canon_items(value: dict[str, Any] | list[Any]) -> Any:
    if isinstance(value, dict):
        return {k: _canon(v) for k, v in value.items()}
    return [_canon(v) for v in value]


def cut_digest(value: Any) -> tuple[bool, str] | None:
    """What a value is compared by against a :class:`CutText`: (is JSON, SHA-256)
    of a text, or of a list or object's JSON with its long parts digested."""
    if isinstance(value, CutText):
        return value.json, value.sha256
    if isinstance(value, str):
        return False, text_digest(value)
    if isinstance(value, (dict, list)):
        return True, text_digest(_dumps(_canon_items(value)))
    return None


def same_cut(a: Any, b: Any) -> bool:
    """Whether two values, at least one a :class:`CutText`, are the same (:func:`cut_digest`)."""
    da = cut_digest(a)
    return da is not None and da == cut_digest(b)


def _idkey(value: Any) -> Any:
    """An id as a dict key: a crafted id of 20 kB is kept as its digest."""
    if type(value) is str and len(value) > LONG_TEXT:
        return ("sha256", text_digest(value))
    return value


def _long_key(key: str) -> str:
    """A dict key longer than :data:`LONG_TEXT` (no real event has one): its start and digest."""
    return f"{key[:CUT_SHOW]}…(sha256 {text_digest(key)[:16]})"


_SEG_RE = re.compile(r"\[(\*|\d+)\]|(?:^|\.)([^.\[\]]+)")


def _parse_path(pattern: str) -> tuple[Any, ...]:
    segs: list[Any] = []
    pos = 0
    for m in _SEG_RE.finditer(pattern):
        if m.start() != pos:
            break
        pos = m.end()
        if m.group(1) is not None:
            segs.append("[*]" if m.group(1) == "*" else int(m.group(1)))
        else:
            segs.append(m.group(2))
    if pos != len(pattern) or not segs:
        raise PathError(
            f"bad path {pattern!r}: use dotted keys with [N] or [*] for list items, "
            f"e.g. response.usage or session.tools[*].description"
        )
    return tuple(segs)


class PathRules:
    """Which fields and events are compared: ignore patterns, overridden by keep patterns.

    The most specific match wins (a longer path beats a shorter one; keep beats
    ignore at the same depth), so ``--keep response.usage.total_tokens`` keeps
    that one count while the rest of ``usage`` stays ignored.
    """

    def __init__(self, ignore: Iterable[str] = DEFAULT_IGNORES, keep: Iterable[str] = ()) -> None:
        self.ignore = tuple(ignore)
        self.keep = tuple(keep)
        self._patterns = [_parse_path(p) for p in self.ignore] + [_parse_path(p) for p in self.keep]
        self._is_keep = [False] * len(self.ignore) + [True] * len(self.keep)
        self.ignored_types = {canonical_event_type(p) for p in self.ignore} - {
            canonical_event_type(p) for p in self.keep
        }
        self._cache: dict[tuple[Any, Any], tuple[tuple[tuple[int, int], ...], bool | None, bool]] = {}
        self._cache_max = 1 << 16
        #: No pattern names a list index: each item of a list takes the same step.
        self.index_free = not any(type(s) is int for pat in self._patterns for s in pat)
        self.start = self._closure(tuple((i, 0) for i in range(len(self._patterns))))

    def _closure(self, states: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
        out: list[tuple[int, int]] = []
        for p, pos in states:
            out.append((p, pos))
            pat = self._patterns[p]
            while pos < len(pat) and pat[pos] == "**":
                pos += 1
                out.append((p, pos))
        return tuple(sorted(set(out)))

    def step(self, states: tuple[tuple[int, int], ...], seg: Any) -> tuple[tuple[tuple[int, int], ...], bool | None, bool]:
        """Advance by one path segment: (new states, verdict here, keep still possible).

        The verdict is True (ignore), False (keep) or None (no pattern ends here).
        """
        key = (states, seg)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        nxt: list[tuple[int, int]] = []
        for p, pos in states:
            pat = self._patterns[p]
            if pos >= len(pat):
                continue
            s = pat[pos]
            if s == "**":
                nxt.append((p, pos))
                continue
            if s == "*":
                ok = isinstance(seg, str)
            elif s == "[*]":
                ok = isinstance(seg, int)
            else:
                ok = s == seg
            if ok:
                nxt.append((p, pos + 1))
        new = self._closure(tuple(nxt))
        verdict: bool | None = None
        keep_alive = False
        for p, pos in new:
            done = pos >= len(self._patterns[p])
            if self._is_keep[p]:
                if done:
                    verdict = False
                else:
                    keep_alive = True
            elif done and verdict is None:
                verdict = True
        res = (new, verdict, keep_alive)
        if len(self._cache) < self._cache_max:  # a crafted file has millions of keys
            self._cache[key] = res
        return res


@dataclass(slots=True)
class Event:
    """One normalised event: what the diff aligns and compares."""

    direction: str
    type: str
    body: dict[str, Any]
    index: int
    """Message number in the file (1 = first message) of the event's first message."""
    t_ns: int
    turn: int
    """1 + the number of ``response.done`` seen before this event."""
    key: tuple[int, int] = (0, 0)
    sig: str = ""
    """The body as JSON with ids reduced to their kind and long texts to their
    digest (a digest of that when long): equal for equivalent events."""
    refs: tuple[str, ...] = ()
    """The symbolic ids in the body, in document order."""
    messages: int = 1
    _join: Any = None
    _long: bool = False

    @property
    def t_ms(self) -> float:
        return self.t_ns / 1e6


@dataclass(slots=True)
class Turn:
    """Timings of one response, in nanoseconds since the handshake."""

    number: int
    response: str
    input_end_ns: int | None
    created_ns: int
    first_output_ns: int | None = None
    done_ns: int | None = None

    def first_output_ms(self) -> float | None:
        """End of user input (or ``response.created``) to the first audio/text delta."""
        if self.first_output_ns is None:
            return None
        start = self.input_end_ns if self.input_end_ns is not None else self.created_ns
        return (self.first_output_ns - start) / 1e6

    def response_ms(self) -> float | None:
        """``response.created`` to ``response.done``."""
        return None if self.done_ns is None else (self.done_ns - self.created_ns) / 1e6


@dataclass
class Normalized:
    """A recording ready to compare: events per direction, turns, connection facts."""

    client: list[Event]
    server: list[Event]
    turns: list[Turn]
    meta: dict[str, Any]
    flavour: str | None
    """``"beta"`` or ``"ga"`` when event names tell, else None."""
    messages: int = 0
    path: str | None = None
    """The file, when read from one."""
    cut: int = 0
    """Texts kept only as a :class:`CutText` (beyond :data:`TEXT_BUDGET`, or a
    message that is no JSON longer than 2000 characters)."""
    cut_values: int = 0
    """Lists and objects kept only as a :class:`CutText` of their JSON (beyond :data:`VALUE_BUDGET`)."""


#: Packed audio gathered, over all joins, before it is unpacked and hashed:
#: large enough that :func:`rtproxy.io.audiocodec.unpack_stream` runs at full speed,
#: small enough to stay in the CPU cache and keep memory flat.
_AUDIO_BATCH = 1 << 19


def _hash_audio(jobs: list[tuple[Any, list[bytes], bool]]) -> None:
    for hasher, chunks, packed in jobs:
        if not packed:
            for c in chunks:
                hasher.update(c)
            continue
        try:
            unpack_stream(chunks, hasher.update)
        except ValueError as exc:
            raise CorruptRecording(None, f"damaged packed audio ({exc})") from exc


class _AudioHasher:
    """Unpacks and hashes the joined audio, many chunks at a time.

    Joins hold their packed chunks until :data:`_AUDIO_BATCH` bytes are
    waiting over all joins; then each join's chunks are unpacked in one
    :func:`rtproxy.io.audiocodec.unpack_stream` call into its hash. Call
    :meth:`flush` before reading a hash.
    """

    __slots__ = ("joins", "nbytes")

    def __init__(self) -> None:
        self.joins: list[_Join] = []
        self.nbytes = 0

    def flush(self) -> None:
        """Unpack and hash the packed chunks gathered so far."""
        if not self.joins:
            return
        jobs = []
        for j in self.joins:
            jobs.append((j.hasher, j.pending, True))
            j.pending = []
        self.joins.clear()
        self.nbytes = 0
        _hash_audio(jobs)

    def add_unpacked(self, join: _Join, chunks: list[bytes]) -> None:
        """Audio that was not packed (older files, text left as base64): after what came before."""
        self.flush()
        _hash_audio([(join.hasher, chunks, False)])


class _Join:
    """A streaming join in progress: text pieces, or audio length and hash.

    Audio read from a file comes packed (:mod:`rtproxy.io.audiocodec`). Unpacking
    it chunk by chunk would cost more than everything else together, so the
    packed chunks are gathered and unpacked many at once by an
    :class:`_AudioHasher`; the hash is that of the joined audio however it
    was chunked.
    """

    __slots__ = ("texts", "nbytes", "hasher", "fmt", "field", "pending", "audio", "text_hash", "shown")

    def __init__(self, field_: str, fmt: AudioFormat | None, audio: _AudioHasher | None = None) -> None:
        self.field = field_
        self.texts: list[str] | None = None if fmt else []
        self.nbytes = 0
        self.hasher = hashlib.sha256() if fmt else None
        self.fmt = fmt
        self.pending: list[bytes] = []
        self.audio = audio
        # Joined text beyond the budget: its hash, length (nbytes, in characters) and start.
        self.text_hash: Any = None
        self.shown = ""

    def add_text(self, value: str, nz: _Normalizer) -> None:
        """One more piece of joined text, kept while ``nz``'s text budget lasts, then hashed."""
        texts = self.texts
        assert texts is not None
        if self.text_hash is None:
            if len(value) <= nz.left:
                nz.left -= len(value)
                texts.append(value)
                return
            whole = "".join(texts)
            nz.left += len(whole)  # given back: from now on only the hash and start are kept
            nz.cut += 1
            self.text_hash = hashlib.sha256(whole.encode("utf-8", "surrogatepass"))
            self.nbytes = len(whole)
            self.shown = whole[:CUT_SHOW]
            texts.clear()
        self.text_hash.update(value.encode("utf-8", "surrogatepass"))
        self.nbytes += len(value)
        if len(self.shown) < CUT_SHOW:
            self.shown += value[: CUT_SHOW - len(self.shown)]

    def add_audio(self, chunks: list[bytes], packed: bool) -> None:
        audio = self.audio
        assert audio is not None
        size = 0
        for c in chunks:
            size += len(c)
        if not packed:
            self.nbytes += size
            audio.add_unpacked(self, chunks)
            return
        if not self.pending:
            audio.joins.append(self)
        self.pending += chunks
        self.nbytes += size - len(chunks)  # one tag byte each
        audio.nbytes += size
        if audio.nbytes >= _AUDIO_BATCH:
            audio.flush()

    def value(self) -> Any:
        """The joined text, or duration + hash (after :meth:`_AudioHasher.flush`)."""
        if self.texts is not None:
            if self.text_hash is not None:
                return CutText(self.shown + "…", self.nbytes, self.text_hash.hexdigest())
            return "".join(self.texts)
        assert self.fmt is not None and self.hasher is not None
        return {"ms": round(self.fmt.duration_ms(self.nbytes), 1), "sha256": self.hasher.hexdigest()[:16]}


_DROP = object()


def _b64(value: str) -> list[bytes]:
    """Audio left as text by the writer (short or unusual base64): decode it here;
    text that is no base64 is hashed as it is (a lone surrogate from a JSON escape too)."""
    try:
        return [base64.b64decode(value, validate=True)]
    except (binascii.Error, ValueError):
        return [value.encode("utf-8", "surrogatepass")]


_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # CPython's JSON scanner
_KEY_FIELDS = re.compile(rb'"(?:type|response_id|item_id|content_index)"\s*:\s*(?:"[^"\\]*"|\d+)')


#: Heads whose key fields :func:`_fast_key` remembers (appends repeat one head).
_HEAD_CACHE = 256


def _fast_key(head: bytes, from_client: bool, append_run: int, cache: dict[bytes, Any]) -> tuple[Any, ...] | None:
    """What tells chunks of one join apart, read from the raw text of a flat delta event.

    Only a lookup key: a join is first found by parsing, and this key is then
    mapped to it, so later chunks of the same join find it without parsing.
    ``cache`` (one per recording) maps recent heads to their key fields.
    """
    fields = cache.get(head)
    if fields is None:
        if len(head) > 1024:
            return None  # not cached: a crafted head may be megabytes
        fields = _DROP if b"\\" in head else tuple(_KEY_FIELDS.findall(head))
        if len(cache) < _HEAD_CACHE:
            cache[head] = fields
    if fields is _DROP:
        return None
    return (from_client, append_run if from_client else 0, *cast("tuple[bytes, ...]", fields))


def _parse(head: bytes) -> dict[str, Any] | None:
    """The message as a dict, or None if it is not one JSON object (fast path of json.loads)."""
    if too_deep(head):
        return None  # a hostile event nesting 10,000 deep: not JSON, as parse_event reads it
    try:
        text = head.decode("utf-8")
        start = 0
        if text[:1].isspace():
            start = len(text) - len(text.lstrip())
        obj, end = _scan(text, start)
    except (UnicodeDecodeError, StopIteration, ValueError, RecursionError):
        return None
    if end != len(text) and text[end:].strip():
        return None
    return obj if type(obj) is dict else None


class _Normalizer:
    def __init__(self, rules: PathRules, budget: int | None = None) -> None:
        self.rules = rules
        self.ids: dict[Any, Ref] = {}
        self.counts: dict[str, int] = {}
        self.left = TEXT_BUDGET if budget is None else budget
        """Characters of long text still kept in full (:data:`TEXT_BUDGET`)."""
        self.cut = 0
        """Texts kept as a :class:`CutText`."""
        self.longs = 0
        """Long texts met so far: an event whose walk raised it gets a digest signature."""
        self.values_left = VALUE_BUDGET
        """Items of lists and objects still kept as such (:data:`VALUE_BUDGET`)."""
        self.cut_values = 0
        """Lists and objects kept as a :class:`CutText` of their JSON."""

    def ref(self, value: str, kind: str) -> Ref:
        key = _idkey(value)
        r = self.ids.get(key)
        if r is None:
            n = self.counts.get(kind, 0) + 1
            self.counts[kind] = n
            r = self.ids[key] = Ref(f"{kind}#{n}")
        return r

    def keep(self, text: str, show: int = CUT_SHOW) -> str:
        """A text longer than :data:`LONG_TEXT`: itself while the budget lasts, else cut."""
        self.longs += 1
        if isinstance(text, CutText):
            return text
        if len(text) <= self.left:
            self.left -= len(text)
            return text
        self.cut += 1
        return CutText.of(text, show)

    def walk(self, value: Any, states: Any, ignored: bool, key: Any, parent: Any) -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            step = self.rules.step
            for k, v in value.items():
                if len(k) > LONG_TEXT:
                    k = _long_key(k)
                st, verdict, keep_alive = step(states, k)
                ig = ignored if verdict is None else verdict
                if ig and not keep_alive:
                    continue
                r = self.walk(v, st, ig, k, key)
                if r is not _DROP:
                    out[k] = r
            if ignored and not out:
                return _DROP
            return self._budget(out) if key is not None else out
        if isinstance(value, list):
            outl: list[Any] = []
            step = self.rules.step
            if self.rules.index_free and value:
                # No pattern names an index: every item takes the same step.
                st, verdict, keep_alive = step(states, 0)
                ig = ignored if verdict is None else verdict
                if not ig:
                    self._walk_items(value, st, key, parent, outl)
                    return self._budget(outl)
            for i, v in enumerate(value):
                st, verdict, keep_alive = step(states, i)
                ig = ignored if verdict is None else verdict
                if ig and not keep_alive:
                    continue
                r = self.walk(v, st, ig, key, parent)
                if r is not _DROP:
                    outl.append(r)
            if ignored and not outl:
                return _DROP
            return self._budget(outl)
        if ignored:
            return _DROP
        if isinstance(value, str) and value:
            return self._text(value, key, parent)
        return value

    def _text(self, value: str, key: Any, parent: Any) -> Any:
        kind = _ID_KEYS.get(key) if isinstance(key, str) else None
        if kind is None and key == "id":
            kind = _ID_PARENTS.get(parent) or _ID_PREFIXES.get(value.split("_", 1)[0], "id")
        if kind is not None:
            return self.ref(value, kind)
        if len(value) > LONG_TEXT or type(value) is CutText:
            return self.keep(value)
        return value

    def _walk_items(self, items: list[Any], states: Any, key: Any, parent: Any, out: list[Any]) -> None:
        """The items of a list none of which is ignored (what :meth:`walk` does, without a step each)."""
        add = out.append
        for v in items:
            t = type(v)
            if t is dict or t is list:
                add(self.walk(v, states, False, key, parent))
            elif v and isinstance(v, str):
                add(self._text(v, key, parent))
            else:
                add(v)

    def _budget(self, value: Any) -> Any:
        """A list or object below an event's top level, charged to :data:`VALUE_BUDGET`:
        itself while the budget lasts, else, when its JSON is long, a :class:`CutText` of it."""
        self.values_left -= len(value)
        if self.values_left >= 0 or not value:
            return value
        canon = _dumps(_canon_items(value))
        if len(canon) <= LONG_TEXT:
            return value
        self.cut_values += 1
        self.longs += 1
        shown = _dumps(value)
        return CutText(shown[:CUT_SHOW] + "…", len(shown), text_digest(canon), json=True)

    def walk_field(self, body: dict[str, Any], key: str, value: Any) -> None:
        """Add ``key: value`` to a top-level ``body`` as :meth:`body` would have walked it."""
        st, verdict, keep_alive = self.rules.step(self.rules.start, key)
        ig = False if verdict is None else verdict
        if ig and not keep_alive:
            return
        r = self.walk(value, st, ig, key, None)
        if r is not _DROP:
            body[key] = r

    def body(self, obj: dict[str, Any]) -> dict[str, Any]:
        r = self.walk(obj, self.rules.start, False, None, None)
        return r if isinstance(r, dict) else {}


def _fill_audio(obj: Any, audio: list[bytes], fmt: AudioFormat) -> None:
    """Replace the emptied base64 members of a message head by duration + hash, in order."""
    it = iter(audio)

    # Document order is a depth-first walk over dict insertion order.
    def visit(o: Any) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                if k in ("audio", "delta") and v == "":
                    data = next(it, None)
                    if data is not None:
                        o[k] = {
                            "ms": round(fmt.duration_ms(len(data)), 1),
                            "sha256": hashlib.sha256(data).hexdigest()[:16],
                        }
                else:
                    visit(v)
        elif isinstance(o, list):
            for v in o:
                visit(v)

    visit(obj)


def _dumps(body: Any) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def normalize(
    messages: Iterable[Message],
    rules: PathRules | None = None,
    *,
    header: dict[str, Any] | None = None,
    handshake: dict[str, Any] | None = None,
) -> Normalized:
    """Read ``messages`` once and return them normalised.

    Pass ``header`` / ``handshake`` (from ``RecordingReader.recording``) to have
    the connection facts in ``meta``; the caller adds the close record after
    the messages have been iterated (see :func:`rtproxy.compare.normalize_file`).
    """
    rules = rules or PathRules()
    nz = _Normalizer(rules)
    ignored_types = rules.ignored_types
    events: dict[str, list[Event]] = {"client": [], "server": []}
    joins: dict[Any, Event] = {}
    fast_joins: dict[Any, Event] = {}
    audio = _AudioHasher()
    head_keys: dict[bytes, Any] = {}
    anchors: dict[Any, int] = {}
    anchor_sub: dict[int, int] = {}
    turns: list[Turn] = []
    turn_by_resp: dict[Any, Turn] = {}
    current: Turn | None = None
    pending_input: int | None = None
    pending_create: int | None = None
    formats = SessionFormats()
    beta = ga = False
    done_count = 0
    append_run = 0
    seq = 0
    n = 0
    for n, m in enumerate(messages, 1):
        from_client = m.from_client
        direction = "client" if from_client else "server"
        seq += 1
        if not m.is_text:
            data = m.content
            body = {"type": "(binary)", "binary": {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()[:16]}}
            events[direction].append(Event(direction, "(binary)", body, n, m.t_ns, done_count + 1, (seq, 0)))
            continue
        packed = m.packed_audio
        if packed is not None:
            chunks: list[bytes] = packed
        else:
            payload = m.payload
            chunks = payload[1::2] if type(payload) is list else []
        is_packed = packed is not None
        head = m.head
        fkey = None
        if chunks:
            # Audio deltas and appends are most of a session: once a join is
            # known, later chunks of it are recognised without parsing JSON.
            fkey = _fast_key(head, from_client, append_run, head_keys)
            ev = fast_joins.get(fkey) if fkey is not None else None
            if ev is not None:
                ev.messages += 1
                ev._join.add_audio(chunks, is_packed)
                continue
        obj = _parse(head)
        if obj is None:
            text = m.text
            long_ = len(text) > LONG_TEXT
            if len(text) > _NOT_JSON_SHOW:
                nz.cut += 1
                text = CutText.of(text, _NOT_JSON_SHOW)
            elif long_:
                text = nz.keep(text)
            body = {"type": "(not json)", "text": text}
            events[direction].append(
                Event(direction, "(not json)", body, n, m.t_ns, done_count + 1, (seq, 0), _long=long_)
            )
            continue
        raw_type = obj.get("type")
        t = m.t_ns
        if type(raw_type) is str:
            typ = BETA_TO_GA.get(raw_type)
            if typ is None:
                typ = raw_type
                if not ga and raw_type in GA_TO_BETA:
                    ga = True
                elif len(typ) > MAX_ID_CHARS:  # a crafted 10 KB name: its start and digest
                    typ = obj["type"] = short_id(typ) or typ
            else:
                beta = True
                obj["type"] = typ
        else:
            typ = "(no type)"

        # --- hot path: streaming deltas, one event per item and content part
        if typ in _JOINABLE and (typ != APPEND or from_client):
            if not from_client and typ in OUTPUT_DELTAS:
                rid = obj.get("response_id")
                tr = turn_by_resp.get(_idkey(rid), current) if type(rid) is str else current
                if tr is not None and tr.first_output_ns is None:
                    tr.first_output_ns = t
            if typ in ignored_types:
                continue
            if typ == APPEND:
                jkey: Any = (APPEND, append_run)
                fld = "audio"
            else:
                # Ids as the view checks them: a list or an object is no id (and no dict key).
                jkey = (direction, typ, _idkey(ident(obj.get("response_id"))), _idkey(ident(obj.get("item_id"))),
                        integer(obj.get("content_index")))
                fld = "delta"
            ev = joins.get(jkey)
            if ev is None:
                value = obj.pop(fld, None)
                if typ in TEXT_JOIN:
                    join = _Join(fld, None)
                else:
                    join = _Join(fld, formats.for_side(from_client), audio)
                # Walk now so ids get their ordinals in order of appearance.
                longs = nz.longs
                ev = Event(direction, typ, nz.body(obj), n, t, done_count + 1, (seq, 0))
                ev._long = nz.longs != longs
                ev._join = join
                joins[jkey] = ev
                events[direction].append(ev)
                if typ.startswith(_INPUT_TRANSCRIPTION):
                    _place_transcription(ev, obj, anchors, anchor_sub)
            else:
                ev.messages += 1
                join = ev._join
                value = obj.get(fld)
            if fkey is not None and join.texts is None:
                fast_joins[fkey] = ev
            if join.texts is not None:
                if type(value) is str:
                    join.add_text(value, nz)
            elif chunks:
                join.add_audio(chunks, is_packed)
            elif type(value) is str and value:
                join.add_audio(_b64(value), False)
            continue

        turn_no = done_count + 1
        # --- timings and audio formats: tracked whatever is ignored
        if typ in SESSION_CONFIG_EVENTS:
            formats.feed(typ, obj)
        if from_client:
            append_run += 1
            if typ in _INPUT_END_CLIENT and pending_input is None:
                pending_input = t
            elif typ == "response.create" and pending_create is None:
                pending_create = t
        else:
            if typ in _INPUT_END_SERVER and pending_input is None:
                pending_input = t
            elif typ == "response.created":
                resp = obj.get("response")
                rid = resp.get("id") if isinstance(resp, dict) else None
                current = Turn(
                    turn_no,
                    str(nz.ref(rid, "resp")) if isinstance(rid, str) and rid else f"response {len(turns) + 1}",
                    pending_input if pending_input is not None else pending_create,
                    t,
                )
                turns.append(current)
                if isinstance(rid, str):
                    turn_by_resp[_idkey(rid)] = current
                pending_input = pending_create = None
            elif typ == "response.done":
                resp = obj.get("response")
                rid = resp.get("id") if isinstance(resp, dict) else None
                tr = turn_by_resp.get(_idkey(rid), current) if isinstance(rid, str) else current
                if tr is not None:
                    tr.done_ns = t
                done_count += 1

        if typ in ignored_types:
            continue

        if chunks:
            _fill_audio(obj, m.audio if is_packed else chunks, formats.for_side(from_client))
        if from_client and isinstance(obj.get("event_id"), str) and obj["event_id"]:
            nz.ref(obj["event_id"], "event")  # so error.event_id can point at it
        longs = nz.longs
        body = nz.body(obj)
        ev = Event(direction, typ, body, n, t, turn_no, (seq, 0), _long=nz.longs != longs)
        events[direction].append(ev)
        if not from_client:
            if typ.startswith(_INPUT_TRANSCRIPTION):
                _place_transcription(ev, obj, anchors, anchor_sub)
            else:
                item = obj.get("item")
                for iid in (obj.get("item_id"), item.get("id") if isinstance(item, dict) else None):
                    if isinstance(iid, str) and _idkey(iid) not in anchors:
                        anchors[_idkey(iid)] = seq

    audio.flush()
    for ev in joins.values():
        join = ev._join
        value = join.value()
        if type(value) is str:
            nz.left += len(value)  # charged piece by piece: the walk charges it again if long
        longs = nz.longs
        nz.walk_field(ev.body, join.field, value)
        ev._long = ev._long or nz.longs != longs
        ev._join = None
    out: dict[str, list[Event]] = {}
    for direction, evs in events.items():
        evs.sort(key=lambda e: e.key)
        for ev in evs:
            dumped = _dumps(ev.body)
            ev.refs = tuple(REF_RE.findall(dumped))
            if ev._long:
                # A long text is its digest: a text cut in one run equals the whole one in the other.
                dumped = _dumps(_canon_items(ev.body))
            sig = REF_RE.sub(_blank_ordinal, dumped) if ev.refs else dumped
            if len(sig) > _SIG_MAX:
                sig = "#" + hashlib.blake2b(sig.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
            ev.sig = sig
        out[direction] = evs
    meta = _meta(header or {}, handshake)
    flavour = "beta" if beta else ("ga" if ga else None)
    return Normalized(out["client"], out["server"], turns, meta, flavour, n, cut=nz.cut, cut_values=nz.cut_values)


#: Signatures longer than this are kept as a digest (they are only compared).
_SIG_MAX = 64
#: Characters of a message that is no JSON shown and kept (the rest: a digest).
_NOT_JSON_SHOW = 2000


def _blank_ordinal(m: re.Match[str]) -> str:
    return '"' + m.group(1).split("#")[0] + '#"'


def _place_transcription(ev: Event, obj: dict[str, Any], anchors: dict[Any, int], subs: dict[int, int]) -> None:
    iid = obj.get("item_id")
    a = anchors.get(_idkey(iid)) if isinstance(iid, str) else None
    if a is None:
        return
    k = subs.get(a, 0) + 1
    subs[a] = k
    ev.key = (a, k)


def _meta(header: dict[str, Any], handshake: dict[str, Any] | None) -> dict[str, Any]:
    h = clean_header(header)
    hs = Handshake.from_record(handshake)
    url = h.get("url") or (hs.url if hs else None) or ""
    return {
        "status": hs.status if hs else None,
        "subprotocol": hs.subprotocol if hs else None,
        "model": h.get("model") or (model_from_url(url) if url else None),
    }
