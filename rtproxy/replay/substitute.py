"""Values one side of a replay chose itself, learned and put in place of the recorded ones.

A live run never has the ids of the recorded one. A client that names its own
items (LiveKit's ``item_36d2eba71704``), sends its own ``event_id`` values or
``response.metadata``, expects the server to echo them; a client replay
(``--to``) must refer to the ids the *live* server assigned, not the recorded
ones. :class:`Substitutions` maps recorded values to live ones and rewrites a
message's JSON string tokens in the members that refer to them, leaving every
other byte as recorded. Audio messages are rewritten on their head (the text
around the base64 audio, :attr:`rtproxy.io.format.Message.head`), so their
audio is never decoded.

:class:`IdAligner` learns a live server's ids by aligning its events with the
recorded ones (by event type and order) for a client replay.

Pure functions and plain objects; no sockets.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any, Callable, Iterator

from rtproxy.io.format import Message
from rtproxy.protocol.events import canonical_event_type, event_type

__all__ = [
    "Path",
    "walk_json",
    "Substitutions",
    "IdAligner",
    "server_rule",
    "client_rule",
    "client_ids",
    "metadata_of",
    "canonical_json",
]

Path = tuple[str, ...]
"""Member names from the top of a JSON document to a value; ``"[]"`` for an array element."""

_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\]:,]')
#: A member that may hold a value to substitute: (name, raw string value) or a metadata object.
_CANDIDATE = re.compile(
    rb'"(item_id|previous_item_id|call_id|id|event_id|response_id)"\s*:\s*"((?:[^"\\]|\\.)*)"|"metadata"\s*:\s*\{'
)
METADATA_PATH: Path = ("response", "metadata")


def walk_json(data: bytes, objects_at: frozenset[Path] = frozenset()) -> Iterator[tuple[Path, int, int, bool]]:
    """``(path, start, end, is_object)`` for every string value of a JSON text, and for every
    object whose path is in ``objects_at`` (its span, braces included), in document order of
    their ends. Tolerant: text that is not JSON yields what it can; never raises."""
    # One frame per open container: [is_object, key of the current member or "[]", start or -1, path].
    stack: list[list[Any]] = []
    expect_key = False
    for m in _TOKEN.finditer(data):
        tok = m.group()
        c = tok[0]
        if c == 0x22:  # a string
            if stack and stack[-1][0] and expect_key:
                try:
                    key = json.loads(tok)
                except ValueError:
                    key = ""
                stack[-1][1] = key if isinstance(key, str) else ""
                expect_key = False
            else:
                yield tuple(f[1] for f in stack), m.start(), m.end(), False
        elif c == 0x7B:  # {
            path = tuple(f[1] for f in stack)
            stack.append([True, "", m.start() if path in objects_at else -1, path])
            expect_key = True
        elif c == 0x5B:  # [
            stack.append([False, "[]", -1, ()])
            expect_key = False
        elif c in (0x7D, 0x5D):  # } ]
            if not stack:
                return
            frame = stack.pop()
            if frame[2] >= 0:
                yield frame[3], frame[2], m.end(), True
            expect_key = False
        elif c == 0x2C:  # ,
            expect_key = bool(stack and stack[-1][0])
        else:  # :
            expect_key = False


def server_rule(path: Path) -> bool:
    """Members of a server event that name something the client chose (server replay)."""
    if not path:
        return False
    last = path[-1]
    if last in ("item_id", "previous_item_id", "call_id"):
        return True
    if last == "id":
        return len(path) >= 2 and path[-2] == "item"
    if last == "event_id":
        return path == ("error", "event_id")
    return False


def client_rule(path: Path) -> bool:
    """Members of a client event that name something the server assigned (client replay)."""
    if not path:
        return False
    last = path[-1]
    if last in ("item_id", "previous_item_id", "call_id", "response_id"):
        return True
    # response.create input items by reference: {"type": "item_reference", "id": ...}
    return last == "id" and len(path) >= 3 and path[-2] == "[]" and path[-3] == "input"


#: Members of a server event whose value is an id the server assigned (learned for a client replay).
_SERVER_ID_KEYS = frozenset({"id", "item_id", "previous_item_id", "call_id", "response_id"})


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _raw(value: str) -> bytes:
    """The bytes between the quotes of ``value`` as a JSON string token (plain ids: the id)."""
    return json.dumps(value, ensure_ascii=False)[1:-1].encode("utf-8", "surrogatepass")


#: Longest id a replay learns to substitute (real ids are under 40 characters; an
#: event_id a client chose may be a UUID or a little more).
MAX_LEARNED_CHARS = 512
#: Longest ``response.metadata`` (as JSON) learned; the API allows 16 pairs of 64 + 512.
MAX_LEARNED_METADATA = 16 << 10
#: Values learned per session and kind; past it the oldest is forgotten.
MAX_LEARNED = 100_000


class Substitutions:
    """Recorded value -> live value, applied to the members ``rule`` accepts.

    ``count`` is how many values were replaced in the messages rewritten so far
    (a ``response.metadata`` object counts once).
    """

    def __init__(self, rule: Callable[[Path], bool], *, metadata: bool = False) -> None:
        self.rule = rule
        self.metadata = metadata
        self.ids: dict[bytes, str] = {}  # raw recorded token content -> live value
        self.meta: dict[str, bytes] = {}  # canonical recorded metadata -> live metadata (JSON)
        self.count = 0
        self.messages = 0

    def __bool__(self) -> bool:
        return bool(self.ids or self.meta)

    def learn(self, recorded: Any, live: Any) -> bool:
        """Remember that the live side says ``live`` where the recording says ``recorded``."""
        if not isinstance(recorded, str) or not isinstance(live, str) or not recorded or recorded == live:
            return False
        if len(recorded) > MAX_LEARNED_CHARS or len(live) > MAX_LEARNED_CHARS:
            return False  # no id: a client's 5 MiB event_ids stay as sent, not remembered
        key = _raw(recorded)
        if self.ids.get(key) == live:
            return False
        if len(self.ids) >= MAX_LEARNED and key not in self.ids:
            del self.ids[next(iter(self.ids))]  # the oldest: a session refers to recent ids
        self.ids[key] = live
        return True

    def learn_metadata(self, recorded: Any, live: Any) -> bool:
        if not self.metadata or recorded is None or live is None or recorded == live:
            return False
        key = canonical_json(recorded)
        value = json.dumps(live, ensure_ascii=False).encode("utf-8", "surrogatepass")
        if len(key) > MAX_LEARNED_METADATA or len(value) > MAX_LEARNED_METADATA:
            return False
        if len(self.meta) >= MAX_LEARNED and key not in self.meta:
            del self.meta[next(iter(self.meta))]
        self.meta[key] = value
        return True

    def value(self, recorded: Any) -> Any:
        """The live value for a recorded one (itself when nothing was learned)."""
        if isinstance(recorded, str) and self.ids:
            return self.ids.get(_raw(recorded), recorded)
        return recorded

    # -- rewriting ------------------------------------------------------------
    def _might_apply(self, head: bytes) -> bool:
        ids, meta = self.ids, self.meta
        for m in _CANDIDATE.finditer(head):
            if m.group(2) is None:
                if meta:
                    return True
            elif m.group(2) in ids:
                return True
        return False

    def edits(self, head: bytes) -> list[tuple[int, int, bytes]]:
        """``(start, end, replacement)`` spans of ``head`` (ascending, disjoint); often none."""
        if not self or not self._might_apply(head):
            return []
        out: list[tuple[int, int, bytes]] = []
        objects = frozenset({METADATA_PATH}) if self.meta else frozenset()
        for path, start, end, is_object in walk_json(head, objects):
            if is_object:
                try:
                    rec = json.loads(head[start:end])
                except ValueError:
                    continue
                live = self.meta.get(canonical_json(rec))
                if live is not None:
                    out = [e for e in out if e[1] <= start or e[0] >= end]  # the object wins
                    out.append((start, end, live))
            elif self.rule(path):
                live_s = self.ids.get(head[start + 1 : end - 1])
                if live_s is not None:
                    out.append((start, end, json.dumps(live_s, ensure_ascii=False).encode("utf-8", "surrogatepass")))
        out.sort()
        return out

    def apply(self, msg: Message, content: bytes | None = None) -> bytes | None:
        """``msg``'s bytes with the learned values in place, or None when nothing changes.

        ``content`` is the message's exact bytes if the caller has them (a cache);
        the edits are found on the head and moved past the audio by length, so
        audio is neither decoded nor re-encoded.
        """
        if not self or not msg.is_text:
            return None
        head = msg.head
        edits = self.edits(head)
        if not edits:
            return None
        layout = _layout(msg)
        if layout:
            # An edit never spans an audio value (ids and metadata are not audio); drop any that would.
            edits = [e for e in edits if _shift(layout, e[0]) == _shift(layout, e[1] - 1)]
            if not edits:
                return None
        if content is None:
            content = msg.content
        self.count += len(edits)
        self.messages += 1
        return _splice(content, edits, layout)

    def apply_bytes(self, content: bytes) -> bytes | None:
        """Same as :meth:`apply` for plain message bytes (a live message, no audio split)."""
        edits = self.edits(content)
        if not edits:
            return None
        self.count += len(edits)
        self.messages += 1
        return _splice(content, edits, None)


def _layout(msg: Message) -> list[tuple[int, int]] | None:
    """For a message stored with its audio split out: (head offset where a text piece
    ends, base64 length of the audio that follows it) per audio value; None otherwise."""
    p = msg.packed_audio
    if p is not None:
        raw_lens = [len(a) - 1 for a in p]  # a packed piece has one tag byte more than its audio
    else:
        payload = msg.payload
        if isinstance(payload, (bytes, bytearray)):
            return None
        raw_lens = [len(a) for a in payload[1::2]]
    texts = msg.text_piece_lengths()
    out = []
    pos = 0
    for t_len, a_len in zip(texts, raw_lens):
        pos += t_len
        out.append((pos, 4 * ((a_len + 2) // 3)))
    return out


def _shift(layout: list[tuple[int, int]], pos: int) -> int:
    """How far head offset ``pos`` lies from the same byte of the full message."""
    shift = 0
    for head_pos, b64_len in layout:
        if head_pos <= pos:
            shift += b64_len
        else:
            break
    return shift


def _splice(content: bytes, edits: list[tuple[int, int, bytes]], layout: list[tuple[int, int]] | None) -> bytes:
    out = []
    last = 0
    for start, end, new in edits:
        shift = _shift(layout, start) if layout else 0
        out.append(content[last : start + shift])
        out.append(new)
        last = end + shift
    out.append(content[last:])
    return b"".join(out)


# ------------------------------------------------------------------ server replay
def client_ids(typ: str | None, obj: dict[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """The values a client chose in one of its events: ``(field, value)`` (server replay learns
    these recorded -> live when the event matches)."""
    if obj is None or typ is None:
        return ()
    out: list[tuple[str, str]] = []

    def add(name: str, v: Any) -> None:
        if isinstance(v, str) and v:
            out.append((name, v))

    add("event_id", obj.get("event_id"))
    if typ == "conversation.item.create":
        add("previous_item_id", obj.get("previous_item_id"))
        item = obj.get("item")
        if isinstance(item, dict):
            add("item.id", item.get("id"))
            if item.get("type") == "function_call":  # a call the client made up (history it replays)
                add("item.call_id", item.get("call_id"))
    elif typ in ("conversation.item.truncate", "conversation.item.delete", "conversation.item.retrieve"):
        add("item_id", obj.get("item_id"))
    elif typ == "response.create":
        resp = obj.get("response")
        if isinstance(resp, dict) and isinstance(resp.get("input"), list):
            for i, it in enumerate(resp["input"]):
                if isinstance(it, dict):
                    add(f"response.input[{i}].id", it.get("id"))
    return tuple(out)


def metadata_of(typ: str | None, obj: dict[str, Any] | None) -> Any:
    """``response.metadata`` of a response.create, else None."""
    if typ != "response.create" or obj is None:
        return None
    resp = obj.get("response")
    return resp.get("metadata") if isinstance(resp, dict) else None


# ------------------------------------------------------------------ client replay
def _server_ids(head: bytes) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    if b'id"' not in head:
        return out
    for path, start, end, _ in walk_json(head):
        if path and path[-1] in _SERVER_ID_KEYS:
            try:
                v = json.loads(head[start:end])
            except ValueError:
                continue
            if isinstance(v, str):
                out.append((path, v))
    return out


class IdAligner:
    """Learns the live server's ids for a client replay.

    Feed it the recorded server messages (:meth:`recorded`) as the replay reads
    them and the live server's messages (:meth:`live`) as they arrive; the k-th
    recorded event of a type is paired with the k-th live one of that type, and
    ids at the same place in both (``item.id``, ``response.id``, ``call_id``...)
    are learned recorded -> live. :meth:`apply` then rewrites a recorded client
    message (``item_id``, ``previous_item_id``, ``call_id``, ``response_id``).
    Streaming deltas are skipped (they only repeat ids the ``.added`` events gave).
    """

    def __init__(self) -> None:
        self.subs = Substitutions(client_rule)
        self._counts: dict[bool, dict[str, int]] = {True: defaultdict(int), False: defaultdict(int)}
        self._pending: dict[bool, dict[tuple[str, int], list[tuple[Path, str]]]] = {True: {}, False: {}}
        self.learned = 0

    def _add(self, recorded: bool, head: bytes) -> None:
        typ = canonical_event_type(event_type(head))
        if not typ or typ.endswith(".delta"):
            return
        counts = self._counts[recorded]
        counts[typ] += 1
        key = (typ, counts[typ])
        ids = _server_ids(head)
        if not ids:
            return
        other = self._pending[not recorded].pop(key, None)
        if other is None:
            self._pending[recorded][key] = ids
            return
        rec, live = (ids, other) if recorded else (other, ids)
        live_at = dict(live)
        for path, value in rec:
            if path in live_at and self.subs.learn(value, live_at[path]):
                self.learned += 1

    def recorded(self, head: bytes) -> None:
        """A recorded server message (its head), in recording order."""
        self._add(True, head)

    def live(self, content: bytes) -> None:
        """A live server message, in arrival order."""
        self._add(False, content)

    def apply(self, msg: Message) -> bytes | None:
        """The recorded client message with live ids in place, or None if unchanged."""
        return self.subs.apply(msg)
