"""The .rtrec format: round trips, audio storage, control records, truncation, bad files."""

from __future__ import annotations

import base64
import json
import os
import struct
from pathlib import Path

import msgpack
import pytest
import zstandard

from rtproxy.io.format import (
    FORMAT_VERSION,
    MAGIC,
    CorruptRecording,
    NotARecording,
    RecordingError,
    RecordingWriter,
    UnsupportedVersion,
    open_recording,
)
from tests import make_format_samples as samples

DATA = Path(__file__).resolve().parent / "data"


def _append(audio: bytes, **extra: object) -> bytes:
    return json.dumps(
        {"type": "input_audio_buffer.append", "event_id": "evt_1", **extra, "audio": base64.b64encode(audio).decode()}
    ).encode()


def _noncanonical_b64() -> bytes:
    """Base64 text whose last character has padding bits set: decodes, but re-encodes differently."""
    canonical = base64.b64encode(os.urandom(301))  # 301 % 3 == 1: ends in "=="
    assert canonical.endswith(b"=")
    last = canonical.rstrip(b"=")[-1:]
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    bumped = bytes([alphabet[alphabet.index(last) + 1]])
    text = canonical.rstrip(b"=")[:-1] + bumped + b"=" * canonical.count(b"=")
    assert base64.b64decode(text) == base64.b64decode(canonical)
    assert base64.b64encode(base64.b64decode(text)) != text
    return text


AUDIO_15M = os.urandom(15 * 1024 * 1024 * 3 // 4)  # base64: 15 MiB of text
TWO_AUDIO = json.dumps(
    {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_audio", "audio": base64.b64encode(b"\x01\x02" * 500).decode()},
                {"type": "input_text", "text": "between"},
                {"type": "input_audio", "audio": base64.b64encode(b"\x03\x04" * 700).decode()},
            ],
        },
    }
).encode()

#: (name, from_client, is_text, content)
KINDS: list[tuple[str, bool, bool, bytes]] = [
    ("event", False, True, b'{"type":"session.created","event_id":"event_1","session":{"id":"sess_1"}}'),
    ("unknown type", True, True, b'{"type":"made.up.event","x":[1,2,{"y":null}]}'),
    ("invalid json", True, True, b'{"type": "response.create", oops'),
    ("non-ascii", True, True, '{"type":"conversation.item.create","text":"héllo 世界 🎙️ \\u00e9"}'.encode()),
    ("invalid utf-8 in text", False, True, b'{"type":"x","v":"\xff\xfe\xc0"}'),
    ("empty text", True, True, b""),
    ("empty binary", False, False, b""),
    ("binary", True, False, bytes(range(256)) * 3),
    ("spaced audio member", True, True, b'{"type":"input_audio_buffer.append", "audio" :  "' + base64.b64encode(os.urandom(900)) + b'" }'),
    ("audio delta", False, True, json.dumps({"type": "response.output_audio.delta", "delta": base64.b64encode(os.urandom(1920)).decode()}).encode()),
    ("non-canonical base64", True, True, b'{"type":"input_audio_buffer.append","audio":"' + _noncanonical_b64() + b'"}'),
    ("escaped slash in base64", True, True, b'{"type":"input_audio_buffer.append","audio":"' + base64.b64encode(b"\xff" * 300).replace(b"/", b"\\/") + b'"}'),
    ("short base64 stays text", True, True, b'{"type":"input_audio_buffer.append","audio":"AAAA"}'),
    ("audio-looking text that is not base64", False, True, b'{"type":"response.output_text.delta","delta":"' + b"ab" * 50 + b'!"}'),
    ("two audio values", True, True, TWO_AUDIO),
    ("15 MiB append", True, True, _append(AUDIO_15M)),
]


def _write(path: Path, messages: list[tuple[int, bool, bool, bytes]], **close: object) -> None:
    with RecordingWriter(path) as w:
        w.write_header(url="ws://127.0.0.1/v1/realtime?model=m", model="m", session_id="abc")
        w.write_handshake(status=101, request_headers=[["Host", "h"]], response_body=b"")
        for t, fc, it, c in messages:
            w.write_message(t, fc, it, c)
        w.write_close(t_ns=10**10, code=1000, reason="done", closed_by="client", **close)


def test_every_kind_of_message_round_trips_byte_exact(tmp_path: Path) -> None:
    path = tmp_path / "kinds.rtrec"
    _write(path, [(i * 1000 + 7, fc, it, c) for i, (_, fc, it, c) in enumerate(KINDS)])
    with open_recording(path) as r:
        rec, msgs = r.read_all()
    assert [m.content for m in msgs] == [c for *_, c in KINDS]
    for (name, fc, it, c), m, i in zip(KINDS, msgs, range(len(KINDS))):
        assert (m.from_client, m.is_text, m.size, m.t_ns) == (fc, it, len(c), i * 1000 + 7), name
        assert m.direction == ("client" if fc else "server"), name
        if it:
            assert m.text.encode("utf-8", "surrogateescape") == c, name
    assert not rec.truncated


def test_base64_audio_is_stored_as_bytes_and_given_back(tmp_path: Path) -> None:
    path = tmp_path / "audio.rtrec"
    by_name = {name: (fc, it, c) for name, fc, it, c in KINDS}
    names = ["15 MiB append", "two audio values", "audio delta", "non-canonical base64", "escaped slash in base64",
             "short base64 stays text", "spaced audio member"]
    _write(path, [(0, *by_name[n]) for n in names])
    with open_recording(path) as r:
        _, msgs = r.read_all()
    got = dict(zip(names, msgs))
    assert got["15 MiB append"].audio == [AUDIO_15M]
    assert got["two audio values"].audio == [b"\x01\x02" * 500, b"\x03\x04" * 700]
    assert len(got["audio delta"].audio) == 1 and len(got["spaced audio member"].audio) == 1
    # Values that would not re-encode to the same text stay text.
    for n in ("non-canonical base64", "escaped slash in base64", "short base64 stays text"):
        assert got[n].audio == [], n
    # The head (message without its audio) is small and names the event.
    head = got["15 MiB append"].head
    assert len(head) < 200 and json.loads(head)["type"] == "input_audio_buffer.append"
    # On disk: random audio is incompressible, so only storing it as bytes
    # (not as base64 text) gets the file under 3/4 of the message size.
    assert path.stat().st_size < 0.76 * len(by_name["15 MiB append"][2])


def _unpack_as_documented(packed: bytes) -> bytes:
    """docs/FORMAT.md's audio packing, decoded sample by sample without NumPy."""
    tag, body = packed[0], packed[1:]
    if tag == 0:
        return body
    half = len(body) // 2
    samples = []
    for lo, hi in zip(body[:half], body[half:]):
        z = lo | hi << 8
        samples.append((z >> 1) ^ -(z & 1))
    for _ in range(tag - 1):  # undo the fixed predictor: running sums, wrapping at 16 bits
        acc, out = 0, []
        for r in samples:
            acc = (acc + r + 32768) % 65536 - 32768
            out.append(acc)
        samples = out
    return b"".join((v & 0xFFFF).to_bytes(2, "little") for v in samples)


def test_raw_records_follow_the_documented_layout(tmp_path: Path) -> None:
    """A reader written from docs/FORMAT.md (zstd stream of msgpack records) sees the same data."""
    path = tmp_path / "raw.rtrec"
    _write(path, [(5, True, True, TWO_AUDIO), (9, False, False, b"\x00bin")])
    raw = path.read_bytes()
    assert raw[:8] == MAGIC and struct.unpack(">H", raw[8:10]) == (FORMAT_VERSION,)
    data = zstandard.ZstdDecompressor().decompressobj().decompress(raw[10:])
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    records = list(unpacker)
    assert [r["k"] if isinstance(r, dict) else "msg" for r in records] == ["header", "handshake", "msg", "msg", "close", "end"]
    dt, flags, payload = records[2]
    assert (dt, flags) == (5, 1 | 8)  # from client, audio packed
    assert isinstance(payload, list) and len(payload) == 5
    # Packed audio: one tag byte, then the zigzag residual's low-byte and high-byte planes.
    assert all(p[0] in (0, 1, 2, 3) for p in payload[1::2])
    audio = [_unpack_as_documented(p) for p in payload[1::2]]
    payload[1::2] = audio
    assert b"".join(base64.b64encode(p) if i % 2 else p for i, p in enumerate(payload)) == TWO_AUDIO
    assert records[3] == [4, 2, b"\x00bin"]


def test_timestamps_have_ns_resolution_and_are_monotonic(tmp_path: Path) -> None:
    path = tmp_path / "t.rtrec"
    times = [123_456_789, 123_456_790, 100, 123_456_790, 3_600_000_000_001]
    _write(path, [(t, True, True, b"{}") for t in times])
    with open_recording(path) as r:
        _, msgs = r.read_all()
    got = [m.t_ns for m in msgs]
    # A clock that steps back is clamped: never earlier than the previous message.
    assert got == [123_456_789, 123_456_790, 123_456_790, 123_456_790, 3_600_000_000_001]
    assert got == sorted(got)


def test_header_handshake_close_and_end_records(tmp_path: Path) -> None:
    path = tmp_path / "c.rtrec"
    with RecordingWriter(path) as w:
        w.write_header(url="ws://h/v1/realtime?model=gpt-realtime", model="gpt-realtime", session_id="s1", started=1.5)
        w.write_handshake(
            method="GET", path="/v1/realtime?model=gpt-realtime", status=101, reason="Switching Protocols",
            request_headers=[["Sec-WebSocket-Protocol", "realtime"], ["X-Dup", "1"], ["X-Dup", "2"]],
            response_headers=[["Upgrade", "websocket"]], response_body=b"", subprotocol="realtime",
            extensions="permessage-deflate", t_request=1.5, t_response=1.6,
        )
        w.write_message(1, True, True, b"abc")
        w.write_message(2, False, True, "é".encode())
        w.write_message(3, False, False, b"\x00\x00")
        w.write_close(t_ns=4, code=4000, reason="beta_api_shape_disabled", closed_by="server", error=None)
        w.close(duration_s=0.5)
    with open_recording(path) as r:
        rec = r.recording
        assert rec.header["format_version"] == FORMAT_VERSION
        assert (rec.header["model"], rec.header["session_id"], rec.header["started"]) == ("gpt-realtime", "s1", 1.5)
        hs = rec.handshake
        assert hs["request_headers"] == [["Sec-WebSocket-Protocol", "realtime"], ["X-Dup", "1"], ["X-Dup", "2"]]
        assert (hs["status"], hs["subprotocol"], hs["extensions"], hs["response_body"]) == (101, "realtime", "permessage-deflate", b"")
        assert rec.close is None and rec.end is None  # known once the messages are read
        assert len(list(r.messages())) == 3
    assert rec.close == {"k": "close", "t_ns": 4, "code": 4000, "reason": "beta_api_shape_disabled", "closed_by": "server", "error": None}
    assert rec.end["messages"] == {"client": 1, "server": 2}
    assert rec.end["bytes"] == {"client": 3, "server": 4}
    assert rec.end["duration_s"] == 0.5
    assert not rec.truncated


def test_unknown_control_records_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "u.rtrec"
    with RecordingWriter(path) as w:
        w.write_header(url="u")
        w._emit({"k": "from-the-future", "x": 1})
        w.write_message(1, True, True, b"a")
        w._emit({"k": "another-one"})
        w.write_message(2, True, True, b"b")
    with open_recording(path) as r:
        assert [m.content for m in r.messages()] == [b"a", b"b"]
        assert r.recording.end is not None


def _small_file(path: Path) -> list[bytes]:
    contents = [
        b'{"type":"session.created"}',
        _append(bytes(range(200)) * 3),
        b"\x00\x01",
        b"",
        '{"type":"x","t":"ü"}'.encode(),
    ]
    _write(path, [(i, i % 2 == 1, i != 2, c) for i, c in enumerate(contents)])
    return contents


def test_truncation_at_every_byte_offset_reads_cleanly_up_to_the_cut(tmp_path: Path) -> None:
    full = tmp_path / "full.rtrec"
    contents = _small_file(full)
    data = full.read_bytes()
    cut_path = tmp_path / "cut.rtrec"
    seen_counts = set()
    for cut in range(len(data)):
        cut_path.write_bytes(data[:cut])
        try:
            r = open_recording(cut_path)
        except RecordingError as exc:
            # Only a cut inside the 10-byte prefix makes the file unrecognisable.
            assert cut < 10, (cut, exc)
            assert str(cut_path) in str(exc) and "\n" not in str(exc)
            continue
        with r:
            got = [m.content for m in r.messages()]
        assert r.recording.truncated, cut
        assert r.recording.truncation_detail, cut
        assert got == contents[: len(got)], cut
        seen_counts.add(len(got))
    assert seen_counts == set(range(len(contents) + 1))
    # The uncut file is complete.
    with open_recording(full) as r:
        assert [m.content for m in r.messages()] == contents
        assert not r.recording.truncated


def test_truncated_file_keeps_header_and_handshake(tmp_path: Path) -> None:
    full = tmp_path / "full.rtrec"
    _small_file(full)
    cut = tmp_path / "cut.rtrec"
    cut.write_bytes(full.read_bytes()[:-40])
    with open_recording(cut) as r:
        assert r.recording.header["session_id"] == "abc"
        assert r.recording.handshake["status"] == 101
        list(r.messages())
        assert r.recording.truncated and r.recording.end is None


def _error_for(path: Path) -> RecordingError:
    with pytest.raises(RecordingError) as info:
        with open_recording(path) as r:
            list(r.messages())
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    return info.value


def test_not_an_rtrec_file(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("hello, this is text\n")
    err = _error_for(p)
    assert isinstance(err, NotARecording) and "not an .rtrec" in str(err)


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.rtrec"
    p.write_bytes(b"")
    err = _error_for(p)
    assert isinstance(err, NotARecording) and "empty" in str(err)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert "no such file" in str(_error_for(tmp_path / "nope.rtrec"))
    assert "directory" in str(_error_for(tmp_path))


def test_newer_version(tmp_path: Path) -> None:
    full = tmp_path / "full.rtrec"
    _small_file(full)
    p = tmp_path / "v99.rtrec"
    p.write_bytes(MAGIC + struct.pack(">H", FORMAT_VERSION + 1) + full.read_bytes()[10:])
    err = _error_for(p)
    assert isinstance(err, UnsupportedVersion)
    assert f"version {FORMAT_VERSION + 1}" in str(err) and "upgrade rtproxy" in str(err)


def test_corrupt_compressed_stream(tmp_path: Path) -> None:
    p = tmp_path / "corrupt.rtrec"
    p.write_bytes(MAGIC + struct.pack(">H", FORMAT_VERSION) + b"\x00garbage, not zstandard" * 10)
    assert isinstance(_error_for(p), CorruptRecording)


def test_first_record_not_a_header(tmp_path: Path) -> None:
    p = tmp_path / "nohdr.rtrec"
    cobj = zstandard.ZstdCompressor().compressobj()
    body = cobj.compress(msgpack.packb([1, 1, b"x"])) + cobj.flush()
    p.write_bytes(MAGIC + struct.pack(">H", FORMAT_VERSION) + body)
    assert "header" in str(_error_for(p))


def test_flipped_bits_never_raise_anything_but_recording_error(tmp_path: Path) -> None:
    """Damage anywhere: either a clean read or a one-line CorruptRecording, never a traceback."""
    full = tmp_path / "full.rtrec"
    _small_file(full)
    data = full.read_bytes()
    p = tmp_path / "flip.rtrec"
    for pos in range(10, len(data)):
        for bit in (0, 3, 7):
            b = bytearray(data)
            b[pos] ^= 1 << bit
            p.write_bytes(b)
            try:
                with open_recording(p) as r:
                    for m in r.messages():
                        m.content, m.head, m.audio, m.size  # noqa: B018
            except RecordingError as exc:
                assert str(p) in str(exc) and "\n" not in str(exc)


def _raw_flags(path: Path) -> list[int]:
    raw = path.read_bytes()
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(zstandard.ZstdDecompressor().decompressobj().decompress(raw[10:]))
    return [r[1] for r in unpacker if isinstance(r, list)]


@pytest.mark.parametrize(
    "name, version, packed",
    [
        ("format_v1.rtrec", 1, True),  # as rtproxy 0.1.0 writes it: audio packed (flag 8)
        ("format_v1_unpacked.rtrec", 1, False),  # v1 without packed audio (it is optional per message)
    ],
)
def test_saved_sample_of_each_format_version_still_reads(name: str, version: int, packed: bool) -> None:
    path = DATA / name
    assert path.read_bytes()[:10] == MAGIC + struct.pack(">H", version)
    audio_flags = [f for f, m in zip(_raw_flags(path), samples.MESSAGES) if b'"audio"' in m[3] or b'"delta"' in m[3]]
    assert audio_flags and all(bool(f & 8) == packed for f in audio_flags)
    with open_recording(path) as r:
        rec, msgs = r.read_all()
    assert rec.version == version and not rec.truncated
    assert {k: v for k, v in rec.header.items() if k not in ("k", "format_version")} == samples.HEADER
    assert {k: v for k, v in rec.handshake.items() if k != "k"} == samples.HANDSHAKE
    assert [(m.t_ns, m.from_client, m.is_text, m.content, m.redacted) for m in msgs] == samples.MESSAGES
    assert msgs[1].audio == [samples.AUDIO_IN] and msgs[6].audio == [samples.AUDIO_OUT]
    assert {k: v for k, v in rec.close.items() if k != "k"} == samples.CLOSE
    assert rec.end["messages"] == {"client": 6, "server": 2}


def test_reading_streams_a_long_session_in_small_memory(tmp_path: Path) -> None:
    """10,000 appends of near-silence (64 MB of JSON text, compressing several hundredfold)
    are read one at a time: peak memory stays a fraction of the session, however long."""
    import tracemalloc

    path = tmp_path / "long.rtrec"
    quiet = bytes(4790) + os.urandom(10)  # 100 ms of PCM16 at 24 kHz, almost silent
    total = 0
    with RecordingWriter(path) as w:
        w.write_header(url="u")
        for i in range(10_000):
            content = _append(quiet[i % 7 :] + quiet[: i % 7])
            total += len(content)
            w.write_message(i * 100_000_000, True, True, content)
    assert total > 64_000_000 and path.stat().st_size < total / 100
    tracemalloc.start()
    try:
        seen = 0
        with open_recording(path) as r:
            for m in r.messages():
                seen += len(m.content)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == total
    assert peak < 12_000_000, peak


def test_a_partly_read_reader_is_freed_when_closed_without_the_cycle_collector(tmp_path: Path) -> None:
    """Its record generator referred to it: each partly read reader (and up to a record's
    128 MiB decompressed) stayed until the cycle collector ran. A replay server reading a
    3 KB file of two 40 MiB messages grew by 247 MiB a session."""
    import gc
    import weakref

    from rtproxy.io.format import open_recording
    from rtproxy.testing import make_recording

    path = make_recording(tmp_path / "r.rtrec", [(float(k), "server", {"type": "x", "k": k}) for k in range(50)])
    gc.collect()
    gc.disable()
    try:
        reader = open_recording(path)
        msgs = reader.messages()
        assert next(msgs).t_ns == 0
        reader.close()
        ref = weakref.ref(reader)
        del reader, msgs
        assert ref() is None
    finally:
        gc.enable()
