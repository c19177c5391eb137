"""The fast reading paths give exactly what the plain ones give: show --json lines
built directly, audio unpacked in batches (unpack_each, unpack_ahead)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from rtproxy.errors import CorruptRecording
from rtproxy.export.jsonl import _message_json, _message_line
from rtproxy.io.audiocodec import pack, unpack, unpack_each
from rtproxy.io.batch import unpack_ahead
from rtproxy.io.format import Message, RecordingWriter, open_recording

DATA = Path(__file__).parent / "data"


def _messages() -> list[Message]:
    """Odd messages: not UTF-8 (whole, or only across an empty audio value), control
    characters, lone surrogate escapes, non-ASCII, binary, redacted, empty, audio."""
    b64 = "QUJD" * 40
    texts = [
        b'{"type":"x","delta":"' + b64.encode() + b'"}',
        b'{"type":"\xff\xfe","audio":"' + b64.encode() + b'"}',
        '{"type":"t\u00e9\u2028\x1b[31m","text":"\U0001f600 <\\/script>"}'.encode(),
        b'{"type":"x","text":"\\ud800"}',
        b"\xe2\x82",  # cut in the middle of a character
        b"",
        b"not json",
    ]
    out = [Message(i * 1_234_567, i % 2 == 0, True, t, i % 3 == 0) for i, t in enumerate(texts)]
    # a split whose text parts are invalid UTF-8 one by one but valid joined (an empty audio value between)
    out.append(Message(99, True, True, [b'{"type":"x","a":"\xe2\x82', b"", b'\xac"}']))
    out.append(Message(100, False, True, [b'{"type":"y","audio":"', bytes(range(256)) * 3, b'"}']))
    out.append(Message(101, False, False, b"\x00\x01binary\xff"))
    out.append(Message(10**15 + 1, True, False, b""))
    return out


@pytest.mark.parametrize("m", _messages(), ids=lambda m: repr(m)[:60])
def test_message_line_is_json_dumps_byte_for_byte(m: Message) -> None:
    from rtproxy.protocol.events import event_type

    typ = event_type(m.head) if m.is_text else None
    assert _message_line(typ, m) == (json.dumps(_message_json(typ, m)) + "\n").encode()
    assert _message_line("t\u00e9\x1b\ud800", m) == (json.dumps(_message_json("t\u00e9\x1b\ud800", m)) + "\n").encode()


def test_unpack_each_is_unpack_chunk_by_chunk() -> None:
    rng = np.random.default_rng(3)
    r = random.Random(4)
    for _ in range(20):
        chunks = []
        for _ in range(r.randint(0, 200)):
            n = r.choice([0, 1, 31, 64, 100, 2400, 4801, r.randint(0, 9000)])
            kind = r.randint(0, 2)
            x = rng.normal(0, 10, n) if kind == 0 else np.cumsum(rng.normal(0, 300 if kind == 1 else 30, n))
            if kind == 2:
                x = np.cumsum(x)
            chunks.append(pack((np.clip(x, -32768, 32767).astype("<i2").tobytes() + b"x")[:n]))
        assert unpack_each(chunks) == [unpack(c) for c in chunks]
    with pytest.raises(ValueError):
        unpack_each([pack(b"\0" * 100), b"\x07ab"])


def _write(path: Path, n: int) -> None:
    w = RecordingWriter(path)
    w.write_header(model="m")
    rng = np.random.default_rng(5)
    for i in range(n):
        pcm = np.cumsum(rng.normal(0, 200, 480 + i % 7)).astype("<i2").tobytes()
        import base64

        text = json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()})
        w.write_message(i, i % 2 == 0, True, text.encode())
    w.close()


def test_unpack_ahead_gives_the_same_messages(tmp_path: Path) -> None:
    path = tmp_path / "a.rtrec"
    _write(path, 1500)
    with open_recording(path) as r:
        plain = [(m.t_ns, m.from_client, m.content) for m in r.messages()]
    with open_recording(path) as r:
        ahead = [(m.t_ns, m.from_client, m.content) for m in unpack_ahead(r.messages(), max_messages=100)]
    assert ahead == plain and len(plain) == 1500


def test_unpack_ahead_fails_at_the_same_message(tmp_path: Path) -> None:
    good = Message(1, True, True, [b'{"audio":"', pack(b"\1\0" * 100), b'"}'], packed=True)
    bad = Message(2, True, True, [b'{"audio":"', b"\x09zz", b'"}'], packed=True)  # an unknown tag

    def gen():  # type: ignore[no-untyped-def]
        yield good
        yield bad
        raise CorruptRecording("x", "damaged record")

    seen = []
    with pytest.raises(CorruptRecording, match="damaged audio"):
        for m in unpack_ahead(gen()):
            m.content  # noqa: B018 - what a reader does with each
            seen.append(m.t_ns)
    assert seen == [1]

    seen = []
    with pytest.raises(CorruptRecording, match="damaged record"):
        for m in unpack_ahead(gen()):
            seen.append(m.t_ns)
    assert seen == [1, 2]


def test_show_json_of_the_format_samples_is_unchanged() -> None:
    """The sample files' show --json lines, from the plain per-message path."""
    from rtproxy.view.timeline import annotate

    for name in ("format_v1.rtrec", "format_v1_unpacked.rtrec"):
        with open_recording(DATA / name) as r:
            want = [json.dumps(_message_json(e.type, e.msg)) + "\n" for e in annotate(r.messages())]
        import io

        from rtproxy.export.jsonl import write_jsonl

        buf = io.StringIO()
        write_jsonl(str(DATA / name), buf)
        assert buf.getvalue().splitlines(keepends=True)[1:-1] == want


def test_message_lines_past_the_escape_caches_are_json_dumps() -> None:
    """Thousands of distinct event types and texts around audio (more than the caches of
    escaped text hold): every line still json.dumps' own, and the caches stay bounded."""
    from rtproxy.export import jsonl

    audio = bytes(range(256))
    for i in range(3 * jsonl._CACHE_ENTRIES):
        typ = f"t\u00e9{i}\x1b"
        m = Message(i, i % 2 == 0, True, [f'{{"type":"{typ}","audio":"'.encode(), audio, f'", "n":"\u2028{i}"}}'.encode()])
        assert _message_line(typ, m) == (json.dumps(_message_json(typ, m)) + "\n").encode()
    assert len(jsonl._pieces) <= jsonl._CACHE_ENTRIES and len(jsonl._types) <= jsonl._CACHE_ENTRIES


def test_write_jsonl_writes_every_line_before_damage(tmp_path: Path) -> None:
    """Lines are written in batches: a damaged record still finds every line read before it
    written, then its one error."""
    import io

    from rtproxy.export.jsonl import write_jsonl

    path = tmp_path / "a.rtrec"
    _write(path, 3000)
    data = bytearray(path.read_bytes())
    data[len(data) * 2 // 3 :] = b"\xff" * (len(data) - len(data) * 2 // 3)  # damage the last third
    path.write_bytes(bytes(data))
    readable = 0
    with pytest.raises(CorruptRecording):
        with open_recording(path) as r:
            for _ in r.messages():
                readable += 1
    assert 0 < readable < 3000
    buf = io.StringIO()
    with pytest.raises(CorruptRecording) as exc:
        write_jsonl(str(path), buf)
    assert "\n" not in str(exc.value)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1 + readable and all(json.loads(x)["kind"] == "message" for x in lines[1:])
