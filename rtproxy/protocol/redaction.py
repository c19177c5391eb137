"""Removing secrets before anything reaches a recording file.

Pure code. Each function returns the cleaned value and whether (or what) it
changed, so records can say what was redacted. What counts as a secret is
listed in ``docs/FORMAT.md`` ("Secrets").

Removal is semantic, not textual: a message is walked token by token (no
recursion, so any depth of nesting is fine, and invalid JSON still is walked),
every string is matched *after* JSON decoding (so ``"\\u0073k-..."`` is seen as
``sk-...``), object keys as well as values, every duplicate member. Only the
tokens that hold a secret are rewritten; every other byte stays as it was on
the wire.

A :class:`Redactor` also remembers the credentials it saw in a session's
request (the bearer token, the ``api-key`` header, a key in the query or in the
subprotocol) and removes them wherever they come back: in a response header,
a refusal body, an ``error.message`` that echoes the key.

Streamed text (``response.output_text.delta``, transcript and function-call
argument deltas: a few characters an event) is also read as the stream it is
(:meth:`Redactor.message`): a key the model or a transcription spells out
over many deltas is masked from the delta where it becomes recognisable on.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Iterable
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

__all__ = [
    "MARKER",
    "SECRET_HEADERS",
    "MASKED_HEADERS",
    "SECRET_QUERY",
    "Redactor",
    "redact_headers",
    "redact_url",
    "redact_subprotocols",
    "redact_payload",
    "might_hold_secrets",
]

#: What a removed value is replaced with.
MARKER = "[REDACTED by rtproxy]"

#: Handshake headers whose whole value is a credential (request or response).
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "api-key",
        "cookie",
        "set-cookie",
        "proxy-authorization",
        "proxy-authenticate",
        "www-authenticate",
        "x-api-key",
        "openai-api-key",
        "ocp-apim-subscription-key",
        "x-goog-api-key",
    }
)
#: Account identifiers: not credentials, still worth masking.
MASKED_HEADERS = frozenset({"openai-organization", "openai-project"})
#: Headers whose value keeps its scheme word (``Bearer [REDACTED by rtproxy]``).
_SCHEME_HEADERS = frozenset({"authorization", "proxy-authorization", "www-authenticate", "proxy-authenticate"})

#: Query parameters that carry credentials (compared lower-case, ``-`` and ``_`` alike).
SECRET_QUERY = frozenset(
    {
        "api-key",
        "apikey",
        "authorization",
        "key",
        "token",
        "access-token",
        "refresh-token",
        "id-token",
        "auth-token",
        "subscription-key",
        "client-secret",
        "secret",
        "sig",
        "signature",
        "password",
        "code",
    }
)

#: JSON members whose string value (or everything under them) is a credential.
SECRET_MEMBERS = frozenset(
    {
        "authorization",
        "api-key",
        "apikey",
        "x-api-key",
        "openai-api-key",
        "ocp-apim-subscription-key",
        "subscription-key",
        "client-secret",
        "access-token",
        "refresh-token",
        "id-token",
        "auth-token",
        "password",
        "cookie",
        "set-cookie",
        "proxy-authorization",
        "www-authenticate",
        "headers",  # MCP server headers: every value may be a credential
    }
)

_INSECURE_KEY_PREFIX = "openai-insecure-api-key."
# Key-shaped strings. A letter or digit before the prefix means a word such as
# "ask_question" or "risk-free", not a key.
_KEY_RE = re.compile(r"(?<![A-Za-z0-9])(?:sk-[A-Za-z0-9_\-]{16,}|sk_[A-Za-z0-9_\-]{16,}|ek_[A-Za-z0-9_\-]{6,})")


# A \u escape of a character keys are written with (not one after an escaped backslash).
_KEY_CHAR_ESCAPE_RE = re.compile(r"(?<!\\)((?:\\\\)*)\\u(00[2-7][0-9a-fA-F])")


def _key_char(m: re.Match[str]) -> str:
    c = chr(int(m.group(2), 16))
    return m.group(1) + c if c.isalnum() or c in "-_" else m.group(0)


def _keys_masked(s: str) -> str:
    """``_KEY_RE.sub(MARKER, s)``; the literals a key starts with are looked for first,
    so a 32 MiB image's base64 is scanned at memchr speed, not at the pattern's
    60 ns a character (which held the recorder's event loop for seconds)."""
    if "sk-" in s or "sk_" in s or "ek_" in s:
        return _KEY_RE.sub(MARKER, s)
    return s

_BEARER_RE = re.compile(r"(?i)(\bbearer)(\s+)([A-Za-z0-9._~+/=\-]{6,})")
# A URL is the rest of a run of characters a URL holds, from its first scheme on: the
# runs are found first, so a 40 KB run of letters or of "a://" costs one scan, not one
# per position (a pattern of its own took seconds of the recorder's event loop).
_URL_RUN_RE = re.compile(r"[^\s\"'<>\\]+")
_SCHEME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+.-"
_LETTER_RE = re.compile(r"[A-Za-z]")


def _scheme_start(text: str) -> int:
    """Where the first URL with a query in ``text`` starts (its scheme's first letter,
    as ``[A-Za-z][A-Za-z0-9+.-]*://...?...`` would match it leftmost), or -1. Each
    ``://`` is looked back from once over the scheme characters before it."""
    lo = 0  # scheme characters hold no ":" or "/": a scheme starts after the last "://"
    i = text.find("://")
    while i >= 0:
        j = lo + len(text[lo:i].rstrip(_SCHEME_CHARS))
        letter = _LETTER_RE.search(text, j, i)
        if letter is not None:
            return letter.start() if "?" in text[i + 4 :] else -1
        lo = i + 3
        i = text.find("://", lo)
    return -1
# Bytes whose presence makes a payload worth walking. ``\u`` because an escape
# can spell any of the others; ``://`` for URLs that carry a token.
_TRIGGER_RE = re.compile(
    rb"(?i)sk[-_]|ek_|bearer|uthoriz|authenticat|header|secret|token|api[-_]?key|password|cookie|subscription|\\u|://"
)
_TRIGGER_STR_RE = re.compile(_TRIGGER_RE.pattern.decode("ascii"))
# The same triggers as literals, searched for in lower-cased bytes: a fifth of the
# time of the case-insensitive pattern, which every recorded message goes through.
_TRIGGER_LITERALS = (
    b"sk-", b"sk_", b"ek_", b"bearer", b"uthoriz", b"authenticat", b"header", b"secret", b"token", b"apikey", b"api-key",
    b"api_key", b"password", b"cookie", b"subscription", b"\\u", b"://",
)
_TRIGGER_LOWER_RE = re.compile(b"|".join(re.escape(t) for t in _TRIGGER_LITERALS))


def _has_trigger(data: bytes) -> bool:
    """``_TRIGGER_RE.search(data)``, faster."""
    return _TRIGGER_LOWER_RE.search(data.lower()) is not None


#: Past this many bytes, a message's long base64 runs are not searched for triggers.
_BIG = 1 << 16
#: A run of base64 characters this long (an image, a file, audio under another
#: name): the lookbehind makes each run one scan, whatever its length.
_BASE64_RUN_RE = re.compile(rb"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{4096,}")
_RUN_EDGE = 64


def _edges(m: re.Match[bytes]) -> bytes:
    run = m.group(0)
    return run[:_RUN_EDGE] + b" " + run[-_RUN_EDGE:]


def _without_base64_runs(data: bytes) -> bytes:
    """``data`` with each run of 4,096 or more base64 characters cut to its first and
    last 64, for the trigger search only. Inside such a run no trigger is a secret's:
    the key patterns need ``-``, ``_``, ``\\`` or ``:``, which base64 lacks, a bearer
    token follows a space, and member names are short strings; the words (``token``,
    ``header``...) that a 32 MiB image's random letters spell by chance sent it
    through the pattern at 33 ns a byte (a second of the recorder's event loop).
    The edges stay, for a word that ends or starts there."""
    return _BASE64_RUN_RE.sub(_edges, data)
# A known secret shorter than this is not searched for everywhere (it would
# clobber ordinary text); it is still removed where it stands.
_MIN_KNOWN = 8


def _norm(name: str) -> str:
    return name.lower().replace("_", "-")


class Redactor:
    """Removes secrets, including the credentials this session is known to use."""

    __slots__ = ("known", "_known_bytes", "_streams", "_tail_chars", "_watch")

    def __init__(self, known: Iterable[str] = ()) -> None:
        self.known: set[str] = set()
        self._known_bytes: tuple[bytes, ...] = ()
        self._streams: dict[tuple[object, ...], _Stream] = {}
        self._tail_chars = STREAM_TAIL_CHARS
        self._watch: list[tuple[str, int]] = []  # (known credential, how much of its start is telling)
        for k in known:
            self.learn(k)

    # -- learning ---------------------------------------------------------
    def learn(self, value: str | None) -> None:
        """Remember a credential so that any echo of it is removed too."""
        if not value or not isinstance(value, str):
            return
        value = value.strip()
        m = re.match(r"(?i)(bearer|basic|token)\s+(.+)", value)
        if m:
            value = m.group(2).strip()
        if len(value) < _MIN_KNOWN or value == MARKER or value in self.known:
            return
        self.known.add(value)
        self._tail_chars = max(self._tail_chars, len(value) + 8)
        telling = _telling_prefix(value)
        if telling:
            self._watch.append((value, telling))
        forms = {value.encode("utf-8", "surrogatepass")}
        forms.add(quote(value, safe="").encode("ascii"))
        # as JSON writes it: "a\/b", "\u00e9"
        forms.add(value.replace("/", "\\/").encode("utf-8", "surrogatepass"))
        forms.add(json.dumps(value)[1:-1].encode("ascii"))
        self._known_bytes = tuple(sorted(set(self._known_bytes) | forms, key=len, reverse=True))

    def learn_request(
        self, url: str | None, headers: Iterable[tuple[str, str]], subprotocols: str | None = None
    ) -> None:
        """Learn the credentials of a handshake request (headers, query, subprotocol)."""
        for name, value in headers:
            low = _norm(name)
            if low in SECRET_HEADERS and low not in ("cookie", "set-cookie", "www-authenticate"):
                self.learn(value)
            elif low == "sec-websocket-protocol":
                subprotocols = value if subprotocols is None else f"{subprotocols},{value}"
            elif low == "cookie":
                for part in value.split(";"):
                    self.learn(part.partition("=")[2])
        if url:
            try:
                query = urlsplit(url).query
            except ValueError:
                query = ""
            for k, v in parse_qsl(query, keep_blank_values=True):
                if _norm(k) in SECRET_QUERY:
                    self.learn(v)
        if subprotocols:
            for p in subprotocols.split(","):
                p = p.strip()
                if p.lower().startswith(_INSECURE_KEY_PREFIX):
                    self.learn(p[len(_INSECURE_KEY_PREFIX) :])

    # -- strings ----------------------------------------------------------
    def scrub(self, s: str) -> str:
        """``s`` with key-shaped strings, bearer tokens, known secrets and URL credentials masked."""
        out = self._scrub(s)
        if "\\u" in out:
            # JSON inside a string (a call's arguments) may spell a key with escapes of
            # its own ("sk\\u002dproj..."): read with those of a key's characters as
            # them (the inner JSON stays as valid as it was), only if that shows one.
            plain = _KEY_CHAR_ESCAPE_RE.sub(_key_char, out)
            if plain != out:
                cleaned = self._scrub(plain)
                if cleaned != plain:
                    return cleaned
        return out

    def _scrub(self, s: str) -> str:
        if "://" in s and "?" in s:
            s = self._urls(s)
        for k in sorted(self.known, key=len, reverse=True):
            if k in s:
                s = s.replace(k, MARKER)
            q = quote(k, safe="")
            if q != k and q in s:
                s = s.replace(q, MARKER)
        s = _keys_masked(s)
        if "earer" in s or "EARER" in s:
            s = _BEARER_RE.sub(lambda m: m.group(1) + m.group(2) + MARKER, s)
        return s

    # -- handshake --------------------------------------------------------
    def headers(self, headers: Iterable[tuple[str, str]]) -> tuple[list[list[str]], list[str]]:
        """Headers as ``[[name, value], ...]`` with credentials replaced; and the names redacted."""
        out: list[list[str]] = []
        redacted: list[str] = []
        for name, value in headers:
            low = _norm(name)
            new = value
            if low in SECRET_HEADERS or low in MASKED_HEADERS:
                scheme, sp, _rest = value.strip().partition(" ")
                if low in _SCHEME_HEADERS and sp and scheme.isalpha():
                    new = f"{scheme} {MARKER}"
                else:
                    new = MARKER
            elif low == "sec-websocket-protocol":
                new, _ = self.subprotocols(value)
            else:
                new = self.scrub(value)
            if new != value:
                redacted.append(name)
            out.append([name, new])
        return out, redacted

    def subprotocols(self, value: str) -> tuple[str, bool]:
        """``Sec-WebSocket-Protocol`` with the ``openai-insecure-api-key.*`` element masked."""
        parts = [p.strip() for p in value.split(",")]
        changed = False
        for i, p in enumerate(parts):
            if p.lower().startswith(_INSECURE_KEY_PREFIX):
                parts[i] = _INSECURE_KEY_PREFIX + "REDACTED"
                changed = True
            elif self.scrub(p) != p:
                parts[i] = "REDACTED"
                changed = True
        return (", ".join(parts) if changed else value), changed

    def url(self, url: str) -> tuple[str, list[str]]:
        """The URL with credential query parameters masked; and the parameter names masked."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return (self.scrub(url) if "://" not in url else MARKER), ["url"]
        if not parts.query:
            return url, []
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        redacted = []
        out = []
        for k, v in pairs:
            if _norm(k) in SECRET_QUERY or _norm(unquote(k)) in SECRET_QUERY:
                out.append((k, MARKER))
                redacted.append(k)
            else:
                v2 = self._scrub_plain(v)
                k2 = self._scrub_plain(k)
                if v2 != v or k2 != k:
                    redacted.append(k)
                out.append((k2, v2))
        if not redacted:
            return url, []
        query = urlencode(out, quote_via=quote, safe="/:-._~")
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment)), redacted

    def _urls(self, s: str) -> str:
        """``s`` with the credentials in each URL with a query masked."""
        out: list[str] = []
        pos = 0
        for run in _URL_RUN_RE.finditer(s):
            text = run.group(0)
            if "://" not in text or "?" not in text:
                continue
            start = _scheme_start(text)
            if start < 0:
                continue
            new = text[:start] + self.url(text[start:])[0]
            if new != text:
                out.append(s[pos : run.start()])
                out.append(new)
                pos = run.end()
        if not out:
            return s
        out.append(s[pos:])
        return "".join(out)

    def _scrub_plain(self, s: str) -> str:
        # As scrub(), without the URL pass (a query value is already one URL's part).
        for k in self.known:
            if k in s:
                s = s.replace(k, MARKER)
        s = _keys_masked(s)
        return _BEARER_RE.sub(lambda m: m.group(1) + m.group(2) + MARKER, s)

    # -- messages ---------------------------------------------------------
    def might_hold_secrets(self, data: bytes) -> bool:
        """False when ``data`` certainly holds no secret :meth:`payload` removes.

        A message's text without its base64 audio values may be passed instead of
        the whole message: none of the triggers can hide inside base64 audio
        (``_``, ``-``, ``\\`` and ``:`` are not base64; key names are in the text
        around it).
        """
        if any(k in data for k in self._known_bytes):
            return True
        if not _has_trigger(data):
            return False
        return len(data) <= _BIG or _has_trigger(_without_base64_runs(data))

    def payload(self, content: bytes) -> tuple[bytes, bool]:
        """A message with secrets replaced by :data:`MARKER`; and whether anything was.

        Never raises on any input and never recurses: a message is walked as a
        flat sequence of tokens.
        """
        if not self.might_hold_secrets(content):
            return content, False
        text = content.decode("utf-8", "surrogateescape")
        out = _walk(text, self)
        if out is text or out == text:
            return content, False
        return out.encode("utf-8", "surrogateescape"), True


    # -- streamed text ------------------------------------------------------
    def message(self, content: bytes, from_client: bool = False, is_text: bool = True) -> tuple[bytes, bool]:
        """A recorded message with its secrets replaced: :meth:`payload`, and for a
        text delta, what the deltas of its stream spell together (:meth:`stream`).
        Give a session's messages in the order they travelled."""
        streamed = False
        if is_text:
            content, streamed = self.stream(content, from_client)
        content, changed = self.payload(content)
        return content, streamed or changed

    def stream(self, content: bytes, from_client: bool = False) -> tuple[bytes, bool]:
        """For a text delta event (``*.delta`` with a string ``delta``, not audio):
        the message with the part of its delta that continues or completes a secret
        begun in the deltas before it masked; and whether anything was. Any other
        message comes back as it is.

        A delta stream is the deltas of one event type and item. Each keeps its last characters (as many as the longest known credential, at
        least :data:`STREAM_TAIL_CHARS`) in memory. A key-shaped string counts from
        its prefix and 10 characters (a whole message needs 16); a known credential
        from its first characters that hold a letter and a digit (8 or more). What
        came before that is in the file already: at most that much of a key's start.
        """
        head = _TYPE_RE.search(content, 0, 256)
        if head is not None:
            typ = head.group(1)
            if not typ.endswith(b".delta") or typ in _AUDIO_DELTAS:
                return content, False
        elif b"delta" not in content:
            return content, False
        if (head is not None and b"\\" not in content and content.count(b'"delta"') == 1
                and content.count(b'"item_id"') <= 1):
            # The usual: written plainly, one delta, one item: read from the bytes.
            m = _DELTA_MEMBER_RE.search(content)
            if m is None:
                return content, False
            delta = m.group(1)[1:-1].decode("utf-8", "surrogateescape")
            item_m = _ITEM_ID_RE.search(content)
            item: bytes | str | None = item_m.group(1) if item_m is not None else None
            new = self._stream_step(from_client, typ.decode("utf-8", "surrogateescape"), item, delta)
            if new is None:
                return content, False
            a, b = m.span(1)
            return content[:a] + _encode(new).encode("ascii") + content[b:], True
        # Escapes, a repeated or nested member, a type past the start: what a parser reads.
        if len(content) > _STREAM_PARSE_BYTES:
            return content, False
        try:
            event = json.loads(content)
        except (ValueError, RecursionError):
            return content, False
        if not isinstance(event, dict):
            return content, False
        ptyp, delta = event.get("type"), event.get("delta")
        if (not isinstance(ptyp, str) or not ptyp.endswith(".delta") or not isinstance(delta, str)
                or ptyp.encode("utf-8", "surrogatepass") in _AUDIO_DELTAS):
            return content, False
        pitem = event.get("item_id")
        new = self._stream_step(from_client, ptyp, pitem if isinstance(pitem, str) else None, delta)
        if new is None:
            return content, False
        # Written anew (a repeated member's other values go with it).
        return json.dumps({**event, "delta": new}).encode("ascii"), True

    def _stream_step(self, from_client: bool, typ: str, item: bytes | str | None, delta: str) -> str | None:
        """The delta with what continues a secret of its stream masked, or None if nothing is."""
        if not delta:
            return None
        if item is not None and len(item) > _STREAM_ID_CHARS:
            raw = item if isinstance(item, bytes) else item.encode("utf-8", "surrogatepass")
            item = hashlib.blake2b(raw, digest_size=16).digest()
        elif isinstance(item, str):
            item = item.encode("utf-8", "surrogatepass")
        key = (from_client, typ[:_STREAM_ID_CHARS], item)
        st = self._streams.pop(key, None)
        if st is None:
            st = _Stream()
            if len(self._streams) >= MAX_STREAMS:  # the oldest stream is let go
                del self._streams[next(iter(self._streams))]
        self._streams[key] = st
        new = self._stream_delta(st, delta)
        return None if new == delta else new

    def _stream_delta(self, st: _Stream, d: str) -> str:
        """``d`` with what continues a secret of its stream masked; ``st`` moved on."""
        tail = st.tail
        n = len(tail)
        s = tail + d
        spans: list[tuple[int, int]] = []
        cont: re.Pattern[str] | None = None
        if st.cont is not None:  # the delta before ended inside a key: its leading key characters go
            lead = st.cont.match(d)
            went_on = lead.end() if lead is not None else 0
            if went_on:
                spans.append((n, n + went_on))
                if went_on == len(d):
                    cont = st.cont
        # A secret not yet seen starts at most _STREAM_LOOKBACK characters before this
        # delta (a key's prefix and 9 characters; "Bearer" and its spaces): one seen
        # before is gone on with by ``cont``.
        # (back over the token and the spaces the tail ends with: "Bearer" and 60 spaces)
        since = max(0, len(tail.rstrip(_TOKEN_CHARS).rstrip()) - _STREAM_LOOKBACK)
        w = s[since:]
        for pattern, chars in _STREAM_PATTERNS if "k-" in w or "k_" in w or "earer" in w.lower() else ():
            for m in pattern.finditer(s, since):
                a, b = m.span("secret")
                if b > n:
                    spans.append((max(a, n), b))
                    if b == len(s):
                        cont = chars
        for k in self.known:
            i = s.find(k, max(0, n - len(k) + 1))
            while i >= 0:
                spans.append((max(i, n), i + len(k)))
                i = s.find(k, i + 1)
        # A known credential still coming: the stream ends with enough of its start to
        # tell (a letter and a digit, 8 characters or more: not "accepted", not
        # "sk-proj-"), which the deltas after it go on with.
        matched = st.matched
        for k, telling in self._watch:
            got = matched.pop(k, 0)  # the stream ended with k[:got]
            if got:
                rest = k[got:]
                if rest.startswith(d):
                    spans.append((n, len(s)))
                    if got + len(d) < len(k):
                        matched[k] = got + len(d)
                    continue
                if d.startswith(rest):
                    spans.append((n, n + len(rest)))
            # a start whose telling part ends in this delta (the leftmost: the longest)
            find = k[:telling]
            start = s.find(find, max(0, n - telling + 1, len(s) - len(k) + 1))
            while start >= 0:
                if s.startswith(k[: len(s) - start], start):
                    spans.append((max(start, n), len(s)))
                    matched[k] = len(s) - start
                    break
                start = s.find(find, start + 1)
        st.tail = s[-self._tail_chars :]
        masked_to_end = st.masked_to_end
        st.cont = cont
        st.masked_to_end = False
        if not spans:
            return d
        spans.sort()
        out: list[str] = []
        pos = n
        for a, b in spans:
            if b <= pos:
                continue
            if a < pos and pos > n:  # overlaps the secret just masked: one marker for both
                pos = b
                continue
            a = max(a, pos)
            out.append(s[pos:a])
            # a secret that goes on from the delta before has its marker there already
            out.append("" if a == n and masked_to_end else MARKER)
            pos = b
        out.append(s[pos:])
        st.masked_to_end = pos == len(s)
        return "".join(out)


def _telling_prefix(value: str) -> int:
    """How many of a credential's first characters tell it from ordinary text in a
    stream: the fewest, from 8 to 16, that hold a letter and a digit; 0 if none do
    (a cookie's "accepted-all", a key's public "sk-proj-" is the key pattern's)."""
    letter = digit = False
    for i, c in enumerate(value[:16]):
        letter = letter or c.isalpha()
        digit = digit or c.isdigit()
        if letter and digit and i + 1 >= _MIN_KNOWN:
            return i + 1
    return 0


class _Stream:
    __slots__ = ("tail", "cont", "masked_to_end", "matched")

    def __init__(self) -> None:
        self.matched: dict[str, int] = {}  # known credential -> how much of its start the stream ends with
        self.tail = ""  # the stream's last characters, as they came
        self.cont: re.Pattern[str] | None = None  # characters that go on with the key it ended in
        self.masked_to_end = False  # the last delta ended with a marker


#: Characters of a delta stream kept to see a secret across deltas (more when a
#: known credential is longer).
STREAM_TAIL_CHARS = 256
#: Delta streams remembered per session; the oldest is let go past this.
MAX_STREAMS = 1024
_STREAM_LOOKBACK = 64
_STREAM_ID_CHARS = 128
#: A delta event that is not written plainly is parsed up to this size (a real one is a
#: few hundred bytes); a plain one is read from its bytes at any size.
_STREAM_PARSE_BYTES = 1 << 20
_TYPE_RE = re.compile(rb'"type"\s*:\s*"([^"\\]{0,200})"')
_DELTA_MEMBER_RE = re.compile(rb'"delta"\s*:\s*("[^"\\]*(?:\\.[^"\\]*)*")', re.S)
_ITEM_ID_RE = re.compile(rb'"item_id"\s*:\s*"([^"\\]*)"')
_AUDIO_DELTAS = frozenset({b"response.audio.delta", b"response.output_audio.delta"})
_KEY_CHARS_RE = re.compile(r"[A-Za-z0-9_\-]*")
_TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~+/=-"
_TOKEN_CHARS_RE = re.compile(r"[A-Za-z0-9._~+/=\-]*")
#: (a secret as it shows in a stream, the characters that continue it in the next delta)
_STREAM_PATTERNS = (
    (re.compile(r"(?<![A-Za-z0-9_])(?P<secret>(?:sk-|sk_|ek_)[A-Za-z0-9_\-]{10,})"), _KEY_CHARS_RE),
    (re.compile(r"(?i:\bbearer)\s+(?P<secret>[A-Za-z0-9._~+/=\-]{6,})"), _TOKEN_CHARS_RE),
)


# A JSON string token; the closing quote is optional so an unterminated string
# (a cut-off message) is still one token. Unrolled so a 15 MiB string is one
# C-level scan, not a match per character.
_STRING_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.S)
_STRUCT_RE = re.compile(r"[{}\[\]:,]")
_ESCAPE_RE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|(.))", re.S)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


def _decode(token: str) -> str:
    """The value of a JSON string token (tolerant of bad escapes and a missing quote)."""
    # The pattern consumes escaped quotes, so a final quote is the closing one.
    inner = token[1:-1] if len(token) >= 2 and token.endswith('"') else token[1:]
    if "\\" not in inner:
        return inner
    try:
        value = json.loads('"' + inner + '"')
        if isinstance(value, str):
            return value
    except ValueError:
        pass

    def one(m: re.Match[str]) -> str:
        if m.group(1):
            return chr(int(m.group(1), 16))
        c = m.group(2)
        return _SIMPLE_ESCAPES.get(c, c)

    return _ESCAPE_RE.sub(one, inner)


def _encode(value: str) -> str:
    return json.dumps(value, ensure_ascii=True)


class _Frame:
    __slots__ = ("is_obj", "member", "secret", "expect_key", "key", "client_secret")

    def __init__(self, is_obj: bool, member: str, secret: bool, client_secret: bool) -> None:
        self.is_obj = is_obj
        self.member = member  # the (normalised) key this container is the value of
        self.secret = secret  # every string below is a credential
        self.client_secret = client_secret  # the object under "client_secret"
        self.expect_key = is_obj
        self.key = ""


def _walk(text: str, r: Redactor) -> str:
    structured = text.lstrip()[:1] in ("{", "[")
    stack: list[_Frame] = []
    out: list[str] = []
    pos = 0
    changed = False

    def value_context() -> tuple[str, bool, bool]:
        """(member name, secret subtree?, under client_secret object?) for a value about to start."""
        if not stack:
            return "", False, False
        top = stack[-1]
        if top.is_obj:
            return top.key, top.secret, top.client_secret
        return top.member, top.secret, False

    def gap(segment: str) -> None:
        nonlocal changed
        if not segment:
            return
        if structured:
            for m in _STRUCT_RE.finditer(segment):
                c = m.group(0)
                if c == "{" or c == "[":
                    member, secret, _cs = value_context()
                    secret = secret or member in SECRET_MEMBERS
                    stack.append(_Frame(c == "{", member, secret, member == "client-secret"))
                elif c == "}" or c == "]":
                    if stack:
                        stack.pop()
                elif c == ":":
                    if stack and stack[-1].is_obj:
                        stack[-1].expect_key = False
                elif c == ",":
                    if stack and stack[-1].is_obj:
                        stack[-1].expect_key = True
        if _TRIGGER_STR_RE.search(segment) or any(k in segment for k in r.known):
            cleaned = r.scrub(segment)
            if cleaned != segment:
                out.append(cleaned)
                changed = True
                return
        out.append(segment)

    for m in _STRING_RE.finditer(text):
        start, end = m.span()
        gap(text[pos:start])
        pos = end
        token = m.group(0)
        value = _decode(token)
        new = value
        if structured and stack and stack[-1].is_obj and stack[-1].expect_key:
            top = stack[-1]
            top.key = _norm(value)
            new = r.scrub(value)
        else:
            member, secret, client_secret = value_context()
            if secret or member in SECRET_MEMBERS or (client_secret and member == "value"):
                if value and value != MARKER:
                    new = MARKER
            else:
                new = r.scrub(value)
        if new != value:
            out.append(_encode(new))
            changed = True
        else:
            out.append(token)
    gap(text[pos:])
    return "".join(out) if changed else text


# ---------------------------------------------------------------- functions
# The stateless forms, for callers with no session (a file being redacted, a test).
_PLAIN = Redactor()


def redact_headers(headers: Iterable[tuple[str, str]]) -> tuple[list[list[str]], list[str]]:
    """Headers as ``[[name, value], ...]`` with credentials replaced; and the names redacted."""
    return _PLAIN.headers(headers)


def redact_subprotocols(value: str) -> tuple[str, bool]:
    """``Sec-WebSocket-Protocol`` with the ``openai-insecure-api-key.*`` element masked."""
    return _PLAIN.subprotocols(value)


def redact_url(url: str) -> tuple[str, list[str]]:
    """The URL with credential query parameters masked; and the parameter names masked."""
    return _PLAIN.url(url)


def might_hold_secrets(data: bytes) -> bool:
    """False when ``data`` certainly holds no secret :func:`redact_payload` removes."""
    return _PLAIN.might_hold_secrets(data)


def redact_payload(content: bytes) -> tuple[bytes, bool]:
    """A message with secrets replaced by :data:`MARKER`; and whether anything was."""
    return _PLAIN.payload(content)
