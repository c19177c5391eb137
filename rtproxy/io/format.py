"""The ``.rtrec`` recording format: reading and writing, nothing else.

This module imports no asyncio and no mitmproxy. It turns records into bytes
and back; ``docs/FORMAT.md`` describes the same layout for readers in other
languages.

File layout::

    MAGIC (8 bytes: 89 52 54 52 45 43 0d 0a, i.e. "\\x89RTREC\\r\\n")
    format version (2 bytes, unsigned big-endian)
    one zstandard stream holding a sequence of msgpack records

The writer flushes a zstandard block after every record and hands it to the
operating system in one ``write()`` call, so a recorder killed at any point
leaves a file that decodes cleanly up to its last complete record.

Records:

* a msgpack *array* is a message: ``[dt_ns, flags, payload]``

  - ``dt_ns``: nanoseconds since the previous message (the first one: since
    the handshake), so timestamps are monotonic by construction;
  - ``flags``: bit 0 from client, bit 1 binary opcode, bit 2 redacted;
  - ``payload``: ``bin`` (the message bytes), or an *array* of ``bin`` that
    alternates text and audio: ``[text0, audio0, text1, audio1, ..., textN]``
    where the original message is ``text0 + b64(audio0) + text1 + ...``.
    Base64 audio is stored as bytes and re-encoded exactly on read (the writer
    only splits where re-encoding gives back the very same text).

* a msgpack *map* is a control record; its ``"k"`` key says which:
  ``"header"`` (always first), ``"handshake"``, ``"close"``, ``"end"``
  (always last in a complete file). Readers skip kinds they do not know.
"""

from __future__ import annotations

import base64
import binascii
import errno
import os
import re
import secrets
import struct
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Iterator, cast

import msgpack
import zstandard
from pybase64 import b64encode  # the same text as base64.b64encode, several times faster

from rtproxy.errors import CorruptRecording, NotARecording, RecordingError, RecordTooLarge, UnsupportedVersion
from rtproxy.io.audiocodec import load_packer
from rtproxy.io.audiocodec import pack as pack_audio
from rtproxy.io.audiocodec import unpack as unpack_audio

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "RecordingError",
    "NotARecording",
    "CorruptRecording",
    "UnsupportedVersion",
    "Message",
    "Recording",
    "RecordingWriter",
    "RecordingReader",
    "open_recording",
    "is_complete",
    "start_recording",
    "recording_filename",
    "split_base64_audio",
    "join_payload",
]

MAGIC = b"\x89RTREC\r\n"
FORMAT_VERSION = 1
_PREFIX = struct.Struct(">8sH")

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)

FLAG_CLIENT = 1
FLAG_BINARY = 2
FLAG_REDACTED = 4
FLAG_PACKED = 8

#: Most ping/pong records a reader keeps (one every 20 s is 180 an hour).
MAX_PINGS = 100_000
#: A ping's or pong's payload is at most 125 bytes (RFC 6455, 5.5); a reader keeps no more.
MAX_PING_PAYLOAD = 125
#: Smallest base64 run worth storing as bytes; shorter ones stay text.
MIN_AUDIO_B64 = 64
# A JSON member whose value may be base64 audio: "audio": "..." or "delta": "...".
# Base64 holds no quote or backslash, so the value ends at the next quote.
_AUDIO_MEMBER = re.compile(rb'"(?:audio|delta)"\s*:\s*"')


def split_base64_audio(content: bytes) -> list[bytes] | None:
    """Split a JSON text message around its base64 audio values.

    Returns ``[text0, audio0, text1, ..., textN]`` (audio decoded), or None when
    the message holds no such value. Only values that re-encode to the very same
    text are split, so :func:`join_payload` always gives back the input.
    """
    # Cheap pre-check: most messages hold no audio member at all.
    if len(content) < MIN_AUDIO_B64 or (b'"audio"' not in content and b'"delta"' not in content):
        return None
    parts: list[bytes] = []
    last = 0
    find = content.find
    # The regex only finds the member's opening; the value's end is the next
    # quote (base64 holds none), found by bytes.find: a 15 MiB value costs a scan,
    # not a character-class match per byte.
    for m in _AUDIO_MEMBER.finditer(content):
        start = m.end()
        if start < last:
            continue
        end = find(b'"', start)
        if end - start < MIN_AUDIO_B64:
            continue
        b64 = content[start:end]
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            continue  # not base64 (text, escapes...): stays text
        # Only the last 4 characters can be non-canonical (padding bits set).
        tail = b64[-4:]
        if base64.b64encode(base64.b64decode(tail)) != tail:
            continue
        parts.append(content[last:start])
        parts.append(raw)
        last = end
    if not parts:
        return None
    parts.append(content[last:])
    return parts


def join_payload(payload: bytes | list[bytes]) -> bytes:
    """Inverse of :func:`split_base64_audio`: the exact message bytes."""
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload)
    out = []
    for i, part in enumerate(payload):
        out.append(b64encode(part) if i % 2 else part)
    return b"".join(out)


def wire_size(p: bytes | bytearray | list[bytes], packed: bool) -> int:
    """The size on the wire of a payload (:attr:`Message.size`), its audio values
    packed or not, without re-encoding or unpacking them."""
    if isinstance(p, (bytes, bytearray)):
        return len(p)
    extra = 1 if packed else 0  # packed audio carries a one-byte tag
    if len(p) == 3:  # the usual: one audio value
        return len(p[0]) + len(p[2]) + 4 * ((len(p[1]) - extra + 2) // 3)
    return sum(len(x) if i % 2 == 0 else 4 * ((len(x) - extra + 2) // 3) for i, x in enumerate(p))


class Message:
    """One WebSocket message as it crossed the proxy.

    ``payload`` is the message bytes, or ``[text0, audio0, text1, ...]`` with
    base64 audio decoded (see :func:`split_base64_audio`). Audio read from a
    file is unpacked (:mod:`rtproxy.io.audiocodec`) only when first asked for.
    """

    __slots__ = ("t_ns", "from_client", "is_text", "_payload", "redacted", "_packed")

    def __init__(
        self,
        t_ns: int,
        from_client: bool,
        is_text: bool,
        payload: bytes | list[bytes],
        redacted: bool = False,
        *,
        packed: bool = False,
    ) -> None:
        self.t_ns = t_ns
        """Nanoseconds since the handshake completed."""
        self.from_client = from_client
        self.is_text = is_text
        self._payload = payload
        self.redacted = redacted
        self._packed = packed and not isinstance(payload, (bytes, bytearray))

    @property
    def payload(self) -> bytes | list[bytes]:
        if self._packed:
            p = list(cast("list[bytes]", self._payload))
            try:
                p[1::2] = [unpack_audio(a) for a in p[1::2]]
            except ValueError as exc:
                raise CorruptRecording(None, f"damaged audio in the message at {self.t_ns} ns ({exc})") from exc
            self._payload = p
            self._packed = False
        return self._payload

    @payload.setter
    def payload(self, value: bytes | list[bytes]) -> None:
        self._payload = value
        self._packed = False

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.t_ns, self.from_client, self.is_text, self.redacted, self.payload) == (
            other.t_ns, other.from_client, other.is_text, other.redacted, other.payload
        )

    def __repr__(self) -> str:
        return (
            f"Message(t_ns={self.t_ns}, from_client={self.from_client}, is_text={self.is_text}, "
            f"size={self.size}, redacted={self.redacted})"
        )

    @property
    def content(self) -> bytes:
        """The exact message bytes (UTF-8 for text messages)."""
        return join_payload(self.payload)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "surrogateescape")

    @property
    def size(self) -> int:
        """Size on the wire in bytes, computed without re-encoding (or unpacking) audio."""
        return wire_size(self._payload, self._packed)

    @property
    def audio_bytes(self) -> int:
        """Total decoded audio bytes, without unpacking."""
        p = self._payload
        if isinstance(p, (bytes, bytearray)):
            return 0
        extra = 1 if self._packed else 0
        if len(p) == 3:
            return len(p[1]) - extra
        return sum(len(a) - extra for a in p[1::2])

    def stored(self) -> tuple[bytes | list[bytes], bool]:
        """The payload as the file holds it, and whether its audio values are still packed
        (:mod:`rtproxy.io.audiocodec`): what :meth:`RecordingWriter.write_stored` takes to
        copy the message without unpacking or packing its audio again."""
        return self._payload, self._packed

    @property
    def packed_audio(self) -> list[bytes] | None:
        """The audio values as stored (tag byte + packed, :mod:`rtproxy.io.audiocodec`)
        while not unpacked yet, else None: lets a reader fingerprint audio cheaply."""
        if not self._packed:
            return None
        return cast("list[bytes]", self._payload)[1::2]

    @property
    def text_parts(self) -> list[bytes]:
        """The text around the audio values (``[text0, text1, ...]``), without unpacking audio;
        ``[content]`` for a message that holds none."""
        p = self._payload
        if isinstance(p, (bytes, bytearray)):
            return [bytes(p)]
        return list(p[0::2])

    @property
    def audio_sizes(self) -> list[int]:
        """The decoded size of each audio value, without unpacking."""
        p = self._payload
        if isinstance(p, (bytes, bytearray)):
            return []
        extra = 1 if self._packed else 0
        return [len(a) - extra for a in p[1::2]]

    @property
    def audio(self) -> list[bytes]:
        """Decoded base64 audio values found in this message (often empty)."""
        p = self.payload
        return [] if isinstance(p, (bytes, bytearray)) else list(p[1::2])

    @property
    def head(self) -> bytes:
        """The message without its audio bytes: enough to read the event type cheaply."""
        p = self._payload
        if isinstance(p, (bytes, bytearray)):
            return bytes(p)
        return b"".join(p[0::2])  # each audio value becomes ""

    def text_piece_lengths(self) -> list[int]:
        """Lengths of the text pieces around the audio values (one piece when none was split
        out): where :attr:`head` offsets fall in the full message, without unpacking audio."""
        p = self._payload
        if isinstance(p, (bytes, bytearray)):
            return [len(p)]
        return [len(x) for x in p[0::2]]

    @property
    def direction(self) -> str:
        return "client" if self.from_client else "server"


@dataclass
class Recording:
    """Control records of a recording; messages are streamed by the reader."""

    path: str
    version: int = FORMAT_VERSION
    header: dict[str, Any] = field(default_factory=dict)
    handshake: dict[str, Any] | None = None
    close: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    truncated: bool = False
    pings: list[dict[str, Any]] = field(default_factory=list)
    """``ping`` / ``pong`` records read so far (``k``, ``t_ns``, ``from``, ``payload``), up to :data:`MAX_PINGS`."""
    """True when the file ends without its ``end`` record (recorder killed)."""
    truncation_detail: str = ""


class RecordingWriter:
    """Append-only writer. Every ``write_*`` call reaches the OS before it returns.

    Usage: create, :meth:`write_header`, then :meth:`write_handshake`, any number
    of :meth:`write_message`, :meth:`write_close`, and finally :meth:`close`
    (which writes the ``end`` record and ends the zstandard frame).
    """

    def __init__(self, path: str | os.PathLike[str], *, level: int = 3, flush_each: bool = True) -> None:
        """``flush_each=False``: records reach the OS in large writes instead of one each
        (for a copy written to a temporary name and renamed when complete, as redact does)."""
        self.path = str(path)
        self._flush_each = flush_each
        load_packer()  # what packing needs, imported before the first message rather than on it
        # A new file (never one planted there, nor a symlink's target), readable
        # by its owner only: recordings hold conversations.
        self._fd = os.open(self.path, _CREATE_FLAGS, 0o600)
        self._cobj = zstandard.ZstdCompressor(level=level).compressobj()
        self._packer = msgpack.Packer(use_bin_type=True)
        self._last_ns = 0
        self.closed = False
        self.messages = [0, 0]  # server, client
        self.bytes = [0, 0]
        self.bytes_written = _PREFIX.size
        try:
            if os.write(self._fd, _PREFIX.pack(MAGIC, FORMAT_VERSION)) != _PREFIX.size:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
        except BaseException:
            self.discard()  # no empty or headless file is left behind
            raise

    def _emit(self, obj: Any) -> None:
        data = self._cobj.compress(self._packer.pack(obj))
        if self._flush_each:
            data += self._cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.bytes_written += len(data)

    def write_header(self, **fields: Any) -> None:
        self._emit({"k": "header", "format_version": FORMAT_VERSION, **fields})

    def write_handshake(self, **fields: Any) -> None:
        self._emit({"k": "handshake", **fields})

    def write_message(
        self,
        t_ns: int,
        from_client: bool,
        is_text: bool,
        content: bytes,
        *,
        redacted: bool = False,
        parts: list[bytes] | None = None,
    ) -> None:
        """Store one message; ``t_ns`` is nanoseconds since the handshake (clamped monotonic).

        ``parts``: ``split_base64_audio(content)`` when the caller already has it
        (the list is consumed); saves splitting twice.
        """
        t_ns = max(t_ns, self._last_ns)
        payload: bytes | list[bytes] = content
        if parts is not None:
            payload = parts
        elif is_text:
            payload = split_base64_audio(content) or content
        flags = (FLAG_CLIENT if from_client else 0) | (0 if is_text else FLAG_BINARY)
        if redacted:
            flags |= FLAG_REDACTED
        if not isinstance(payload, bytes):
            # Audio values: packed losslessly so zstandard can compress them.
            payload[1::2] = [pack_audio(a) for a in payload[1::2]]
            flags |= FLAG_PACKED
        self._record(t_ns, from_client, flags, payload, len(content))

    def write_stored(
        self,
        t_ns: int,
        from_client: bool,
        is_text: bool,
        payload: bytes | list[bytes],
        packed: bool,
        *,
        redacted: bool = False,
    ) -> None:
        """Store a payload in the form a reader gives it (:meth:`Message.stored`): the
        message bytes, or ``[text0, audio0, text1, ...]`` whose audio values are packed
        (``packed``) or not. Nothing is split again, nor packed twice."""
        t_ns = max(t_ns, self._last_ns)
        flags = (FLAG_CLIENT if from_client else 0) | (0 if is_text else FLAG_BINARY)
        if redacted:
            flags |= FLAG_REDACTED
        if not isinstance(payload, (bytes, bytearray)):
            if not packed:
                payload = list(payload)
                payload[1::2] = [pack_audio(a) for a in payload[1::2]]
            flags |= FLAG_PACKED
        self._record(t_ns, from_client, flags, payload, wire_size(payload, True))

    def _record(self, t_ns: int, from_client: bool, flags: int, payload: bytes | list[bytes], size: int) -> None:
        stored = len(payload) if isinstance(payload, (bytes, bytearray)) else sum(map(len, payload))
        if stored > MAX_MESSAGE_BYTES:
            # What a reader would refuse (and everything after it) is not written: the
            # recorder stops the session instead (nothing forwarded goes unrecorded).
            raise RecordTooLarge(
                self.path,
                f"a message of {size:,} bytes is more than the {MAX_MESSAGE_BYTES:,} a recording holds",
            )
        self._emit([t_ns - self._last_ns, flags, payload])
        self._last_ns = t_ns
        self.messages[from_client] += 1
        self.bytes[from_client] += size

    def write_close(self, **fields: Any) -> None:
        self._emit({"k": "close", **fields})

    def write_control(self, kind: str, **fields: Any) -> None:
        """A control record of another kind, e.g. ``ping`` / ``pong`` (``t_ns``, ``from``,
        ``payload``); readers that do not know a kind skip it."""
        self._emit({"k": kind, **fields})

    def close(self, **end_fields: Any) -> None:
        """Write the ``end`` record and close the file. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        try:
            self._emit(
                {
                    "k": "end",
                    "messages": {"client": self.messages[1], "server": self.messages[0]},
                    "bytes": {"client": self.bytes[1], "server": self.bytes[0]},
                    **end_fields,
                }
            )
            tail = self._cobj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
            os.write(self._fd, tail)
            self.bytes_written += len(tail)
        finally:
            os.close(self._fd)

    def abandon(self) -> None:
        """Close the file without its ``end`` record: it reads as cut short, as after a crash."""
        if not self.closed:
            self.closed = True
            os.close(self._fd)

    def discard(self) -> None:
        """Close and remove the file: for one whose start could not be written."""
        self.abandon()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_recording(
    path: str | os.PathLike[str],
    *,
    url: str | None,
    started: float | None,
    recorder: str,
    model: str | None = None,
    session_id: str | None = None,
    upstream: str | None = None,
    redactions: list[str] | None = None,
    status: int = 101,
    method: str = "GET",
    request_path: str | None = None,
    http_version: str = "HTTP/1.1",
    request_headers: list[list[str]] | None = None,
    reason: str | None = None,
    response_headers: list[list[str]] | None = None,
    response_body: bytes = b"",
    subprotocol: str | None = None,
    extensions: str | None = None,
    t_request: float | None = None,
    t_response: float | None = None,
    client: str | None = None,
    header_extra: dict[str, Any] | None = None,
    handshake_extra: dict[str, Any] | None = None,
) -> RecordingWriter:
    """Create a recording and write its header and handshake records: the one way
    every writer (the recorder, client replay, import, tests) starts a file.

    Values must already be redacted (:mod:`rtproxy.protocol.redaction`).
    """
    from rtproxy import __version__

    if session_id is None:
        session_id = secrets.token_hex(4)
    if request_path is None and url is not None:
        rest = url.split("://", 1)[-1]
        request_path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    w = RecordingWriter(path)
    try:
        w.write_header(
            rtproxy=__version__,
            session_id=session_id,
            started=started,
            url=url,
            model=model,
            recorder=recorder,
            upstream=upstream,
            redactions=list(redactions or []),
            **(header_extra or {}),
        )
        w.write_handshake(
            method=method,
            url=url,
            path=request_path,
            http_version=http_version,
            request_headers=list(request_headers or []),
            status=status,
            reason=reason if reason is not None else ("Switching Protocols" if status == 101 else ""),
            response_headers=list(response_headers or []),
            response_body=response_body if status != 101 else b"",
            subprotocol=subprotocol,
            extensions=extensions,
            t_request=t_request if t_request is not None else started,
            t_response=t_response if t_response is not None else started,
            **({"client": client} if client is not None else {}),
            **(handshake_extra or {}),
        )
    except BaseException:
        w.discard()  # a file without its header is no recording: nothing is left behind
        raise
    return w


_READ_CHUNK = 1 << 16
# Compressed bytes handed to the decompressor at once. Recordings of silence or
# repeated audio compress several hundredfold, so a small fixed step keeps what
# one step decompresses to (and the msgpack buffer) small however long the
# session is (reading costs about 7% more than with 64 KiB steps).
_STEP = 4096
#: The most one record may decompress to. The largest real message (a 15 MiB
#: append, 11 MiB once its audio is bytes) is far below it; a zstd bomb stops
#: here instead of taking all memory. A reader holds about this much twice (the
#: msgpack buffer and the record), so every command stays well under 1 GiB.
#: One ``decompress`` of ``_STEP`` input bytes yields at most ~128 MiB, which is
#: fed to msgpack a slice at a time.
MAX_RECORD_BYTES = 64 << 20
#: The largest message (as stored: audio packed) a writer records, so that its
#: record stays under :data:`MAX_RECORD_BYTES` for every reader.
MAX_MESSAGE_BYTES = MAX_RECORD_BYTES - (1 << 16)
_FEED = 1 << 20


class RecordingReader:
    """Streaming reader: control records are read eagerly up to the first
    message; messages are yielded one at a time by :meth:`messages`.

    ``reader.recording`` holds the header and handshake at once; ``close``,
    ``end`` and ``truncated`` are filled in once :meth:`messages` has been
    iterated to the end (or by :meth:`read_all`).
    """

    def __init__(self, path: str | os.PathLike[str] | BinaryIO) -> None:
        if isinstance(path, (str, os.PathLike)):
            self.path = str(path)
            try:
                self._fh: BinaryIO = open(path, "rb")
            except IsADirectoryError:
                raise NotARecording(path, "is a directory, not an .rtrec file") from None
            except FileNotFoundError:
                raise RecordingError(path, "no such file") from None
            except PermissionError:
                raise RecordingError(path, "permission denied") from None
            self._owns = True
        else:
            self.path = getattr(path, "name", "<stream>")
            self._fh = path
            self._owns = False
        prefix = self._fh.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size or prefix[:8] != MAGIC:
            self.close()
            if not prefix:
                raise NotARecording(self.path, "empty file, not an .rtrec recording")
            raise NotARecording(self.path, "not an .rtrec recording (wrong magic bytes)")
        _, version = _PREFIX.unpack(prefix)
        if version > FORMAT_VERSION:
            self.close()
            raise UnsupportedVersion(
                self.path,
                f"format version {version} is newer than this rtproxy reads "
                f"(up to {FORMAT_VERSION}); upgrade rtproxy",
            )
        if version < 1:
            self.close()
            raise CorruptRecording(self.path, f"invalid format version {version}")
        self.recording = Recording(path=self.path, version=version)
        self._dobj = zstandard.ZstdDecompressor().decompressobj()
        self._unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_RECORD_BYTES, strict_map_key=False)
        self._eof = False
        self._pending: Any = None
        self._started = False
        self._records = self._iter_records()
        # Read control records up to the first message so header/handshake are known.
        for rec in self._records:
            if isinstance(rec, (list, tuple)):
                self._pending = rec
                break
            self._control(rec)
        if not self.recording.header:
            if not self.recording.truncated:
                raise CorruptRecording(self.path, "first record is not a header")

    def _iter_records(self) -> Iterator[Any]:
        unpacker = self._unpacker
        empty = memoryview(b"")
        buf = empty
        pending = empty  # decompressed, not yet fed to msgpack
        while True:
            try:
                for rec in unpacker:
                    yield rec
            except (
                ValueError,
                TypeError,  # a damaged map whose key decodes as a map or array
                msgpack.ExtraData,
                msgpack.FormatError,
                msgpack.StackError,
            ) as exc:
                raise CorruptRecording(self.path, f"damaged record ({exc})") from exc
            if pending:
                # A slice at a time, records taken out in between: the buffer holds one
                # record at most, however much one step decompressed to.
                piece, pending = pending[:_FEED], pending[_FEED:]
                if not pending:
                    # (an empty slice still holds all that one step decompressed to, up to
                    # 128 MiB: let it go before the next step makes as much again)
                    pending = empty
                try:
                    unpacker.feed(piece)
                    piece = empty
                except msgpack.BufferFull:
                    raise RecordTooLarge(
                        self.path,
                        f"a record decompresses to more than {MAX_RECORD_BYTES >> 20} MiB "
                        "(the file is damaged or was crafted); nothing after it can be read",
                    ) from None
                continue
            if self._eof:
                break
            if not buf:
                buf = memoryview(self._fh.read(_READ_CHUNK))
            chunk, buf = buf[:_STEP], buf[_STEP:]
            if not chunk:
                self._eof = True
                if self.recording.end is None:
                    self.recording.truncated = True
                    self.recording.truncation_detail = "file ends without its end record (recording cut short)"
                elif not self._dobj.eof:
                    # Every record is there; only the compressed stream's epilogue is missing.
                    self.recording.truncated = True
                    self.recording.truncation_detail = "file ends before its compressed stream does (cut short)"
                continue
            try:
                data = self._dobj.decompress(chunk)
            except zstandard.ZstdError as exc:
                raise CorruptRecording(self.path, f"damaged compressed data ({exc})") from exc
            if data:
                pending = memoryview(data)
            del data

    def _control(self, rec: Any) -> None:
        if not isinstance(rec, dict):
            raise CorruptRecording(self.path, f"unexpected record of type {type(rec).__name__}")
        kind = rec.get("k")
        if kind == "header":
            self.recording.header = rec
        elif kind == "handshake":
            self.recording.handshake = rec
        elif kind == "close":
            self.recording.close = rec
        elif kind == "end":
            self.recording.end = rec
        elif kind in ("ping", "pong"):
            if len(self.recording.pings) < MAX_PINGS:
                # Only its fields, its payload cut to what a ping can carry: a crafted file's
                # 5,000 pings of 1 MiB each (265 KB compressed) once took every reader 4 GB.
                payload = rec.get("payload")
                if isinstance(payload, (bytes, str)):
                    payload = payload[:MAX_PING_PAYLOAD]
                elif payload is not None:
                    payload = None
                self.recording.pings.append(
                    {"k": kind, "t_ns": rec.get("t_ns"), "from": rec.get("from"), "payload": payload})
        # unknown kinds: written by a newer minor revision, skipped on purpose

    def messages(self) -> Iterator[Message]:
        """Yield every message in order. Can be iterated once."""
        if self._started:
            raise RuntimeError("messages() can be iterated only once per reader")
        self._started = True
        t = 0
        n = 0
        rec = self._pending
        self._pending = None
        records = self._records
        while True:
            if rec is None:
                try:
                    rec = next(records, None)
                except RecordTooLarge as exc:
                    raise RecordTooLarge(self.path, f"{exc.problem}; {_where(n, t)}") from exc
                except CorruptRecording as exc:
                    raise CorruptRecording(self.path, f"{exc.problem}; {_where(n, t)}") from exc
                if rec is None:
                    break
            if isinstance(rec, (list, tuple)):
                if len(rec) != 3:
                    raise CorruptRecording(self.path, f"message record with {len(rec)} fields; {_where(n, t)}")
                dt, flags, payload = rec
                if not _valid_message(dt, flags, payload):
                    raise CorruptRecording(
                        self.path, f"damaged message record (unexpected field types); {_where(n, t)}"
                    )
                n += 1
                t += dt
                yield Message(
                    t,
                    bool(flags & FLAG_CLIENT),
                    not flags & FLAG_BINARY,
                    payload,
                    bool(flags & FLAG_REDACTED),
                    packed=bool(flags & FLAG_PACKED),
                )
            else:
                self._control(rec)
            rec = None
        self.close()

    @property
    def position(self) -> int:
        """Bytes of the file read so far (a progress display's numerator)."""
        try:
            return self._fh.tell()
        except (OSError, ValueError):
            return 0

    @property
    def file_size(self) -> int:
        """The file's size in bytes (0 for a stream whose size is unknown)."""
        try:
            return os.fstat(self._fh.fileno()).st_size
        except (OSError, ValueError, AttributeError):
            return 0

    def read_all(self) -> tuple[Recording, list[Message]]:
        msgs = list(self.messages())
        return self.recording, msgs

    def close(self) -> None:
        # The record generator refers to the reader (a cycle): closed and dropped here, a
        # partly read reader and its buffers (up to a record's 128 MiB decompressed) go
        # at once, not whenever the cycle collector runs.
        records = getattr(self, "_records", None)
        if records is not None:
            records.close()
        self._pending = None
        self._unpacker = self._dobj = None  # type: ignore[assignment]
        if getattr(self, "_owns", False):
            self._fh.close()

    def __enter__(self) -> RecordingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _where(n: int, t_ns: int) -> str:
    """Where in a recording damage was met, for the error line."""
    if n == 0:
        return "before the first message"
    return f"after message #{n - 1} at {t_ns / 1e6:.1f} ms ({n} messages read before it)"


def _valid_message(dt: Any, flags: Any, payload: Any) -> bool:
    if type(dt) is not int or dt < 0 or type(flags) is not int:
        return False
    if isinstance(payload, bytes):
        return True
    if not (
        isinstance(payload, list)
        and len(payload) % 2 == 1
        and all(isinstance(x, bytes) for x in payload)
    ):
        return False
    if flags & FLAG_PACKED:
        # What audiocodec.unpack needs: a known tag, and whole samples after it.
        return all(a and a[0] <= 3 and (a[0] == 0 or len(a) % 2 == 1) for a in payload[1::2])
    return True


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def recording_filename(started: float, model: str | None) -> tuple[str, str]:
    """The file name every writer of rtproxy uses, and its short random id:
    ``<UTC time>-<model>-<short id>.rtrec``, e.g. ``20261122T035613Z-gpt-realtime-28199e.rtrec``."""
    short = secrets.token_hex(3)
    stamp = datetime.fromtimestamp(started or 0, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    safe = _UNSAFE_NAME.sub("_", model or "session")[:60]
    return f"{stamp}-{safe}-{short}.rtrec", short


def is_complete(path: str | os.PathLike[str]) -> bool:
    """Whether the file reads to its end record (a finished session), without raising."""
    try:
        with open_recording(path) as r:
            for _ in r.messages():
                pass
            return not r.recording.truncated
    except RecordingError:
        return False


def open_recording(path: str | os.PathLike[str]) -> RecordingReader:
    """Open an .rtrec file for streaming; raises :class:`RecordingError` subclasses."""
    return RecordingReader(Path(path))
