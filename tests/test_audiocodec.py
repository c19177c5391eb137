"""rtproxy.io.audiocodec: unpack_many / unpack_stream give exactly what unpack gives, chunk by chunk,
compiled (rtproxy/io/_audiofast.c) and in NumPy alike; the two agree byte for byte and error for error."""

from __future__ import annotations

import hashlib
import os
import random
import shutil

import numpy as np
import pytest

from rtproxy.io import audiocodec
from rtproxy.io.audiocodec import (
    ORDER0,
    ORDER1,
    ORDER2,
    RAW,
    pack,
    pack_numpy,
    unpack,
    unpack_each,
    unpack_each_numpy,
    unpack_many,
    unpack_numpy,
    unpack_stream,
)

SPEECH = (os.path.join(os.path.dirname(__file__), "data", "speech_24k.pcm"))


@pytest.fixture(autouse=True, params=["compiled", "numpy"])
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on both implementations of unpacking."""
    if request.param == "numpy":
        monkeypatch.setattr(audiocodec, "_fast", None)
    elif audiocodec._fast is None:
        if os.environ.get("CI") and (shutil.which("cc") or shutil.which("gcc")):
            pytest.fail("rtproxy/io/_audiofast.c is not built although there is a C compiler: "
                        "`pip install -e .` builds it; run it and read its error")
        pytest.skip("the compiled packing is not built here (no C compiler)")
    return str(request.param)


def _speech() -> bytes:
    with open(SPEECH, "rb") as f:
        return f.read()


def _random_chunk(rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:  # short or odd: stored raw
        return rng.randbytes(rng.choice([0, 1, 7, 63, 65, 129]))
    if kind == 1:  # noise, maybe odd length
        return rng.randbytes(2 * rng.randrange(32, 700) + rng.randrange(2))
    n = rng.randrange(32, 3000)
    steps = np.array([rng.randrange(-600, 600) for _ in range(n)], dtype=np.int64)
    if kind == 2:  # a smooth signal: order 1 or 2
        return np.cumsum(steps).astype(np.int16).tobytes()
    if kind == 3:  # smoother still, wrapping around int16
        return np.cumsum(np.cumsum(steps // 20)).astype(np.int16).tobytes()
    return np.array([rng.randrange(-40, 40) for _ in range(n)], dtype=np.int16).tobytes()  # order 0


def test_unpack_many_is_unpack_of_each_chunk_joined_on_random_data() -> None:
    rng = random.Random(4)
    tags_seen: set[int] = set()
    for _ in range(300):
        audio = [_random_chunk(rng) for _ in range(rng.randrange(1, 30))]
        packed = [pack(a) for a in audio]
        tags_seen |= {p[0] for p in packed}
        assert [unpack(p) for p in packed] == audio
        assert unpack_many(packed) == b"".join(audio)
    assert tags_seen == {RAW, ORDER0, ORDER1, ORDER2}


def test_chunk_boundaries_restart_the_predictor() -> None:
    """One stream cut at every size, equal and unequal, in runs with and without RAW chunks."""
    pcm = _speech()[: 48000 * 2]
    for size in (64, 960, 961 * 2, 4800):
        equal = [pack(pcm[i : i + size]) for i in range(0, len(pcm), size)]
        assert unpack_many(equal) == pcm
    rng = random.Random(7)
    cuts = sorted(rng.sample(range(1, len(pcm)), 300))
    pieces = [pcm[a:b] for a, b in zip([0, *cuts], [*cuts, len(pcm)])]
    packed = [pack(p) for p in pieces]
    assert {p[0] for p in packed} >= {RAW, ORDER1, ORDER2}  # odd and short pieces stay raw
    assert unpack_many(packed) == pcm
    h = hashlib.sha256()
    unpack_stream(packed, h.update)
    assert h.hexdigest() == hashlib.sha256(pcm).hexdigest()


def test_every_tag_alone_and_empty_input() -> None:
    assert unpack_many([]) == b""
    assert unpack_many([bytes((RAW,))]) == b""
    assert unpack_many([bytes((ORDER2,))]) == b""  # a packed chunk with no samples
    assert unpack_many([bytes((RAW,)) + b"\x01\x02\x03"]) == b"\x01\x02\x03"
    x = np.arange(-500, 500, 3, dtype=np.int16)
    for tag in (ORDER0, ORDER1, ORDER2):
        r = x
        for _ in range(tag - ORDER0):
            r = np.diff(r, prepend=np.int16(0))
        z = ((r << 1) ^ (r >> 15)).view(np.uint16).view(np.uint8).reshape(-1, 2)
        chunk = bytes((tag,)) + z[:, 0].tobytes() + z[:, 1].tobytes()
        assert unpack(chunk) == unpack_many([chunk]) == unpack_many([chunk, chunk])[: x.nbytes] == x.tobytes()


def test_bad_chunks_raise_value_error_like_unpack() -> None:
    good = pack(_speech()[:960])
    for bad in (b"", bytes((9,)) + b"\x00\x00", bytes((ORDER1,)) + b"\x00\x00\x00"):
        with pytest.raises(ValueError):
            unpack(bad)
        with pytest.raises(ValueError):
            unpack_many([good, bad, good])


@pytest.mark.parametrize("implementation", ["compiled"], indirect=True)
def test_compiled_and_numpy_agree_on_random_and_damaged_chunks(implementation: str) -> None:
    """Any bytes at all (a crafted file's audio): the same output, or ValueError with the same text."""
    fast = audiocodec._fast
    assert fast is not None
    rng = random.Random(11)
    chunks = [pack(_random_chunk(rng)) for _ in range(400)]
    chunks += [bytes((rng.randrange(6),)) + rng.randbytes(rng.randrange(0, 300)) for _ in range(400)]
    chunks += [b"", bytes((ORDER2,)) + b"\xff" * 200_000, bytes((ORDER1,)) + b"\xff" * 199_999]
    for c in chunks:
        try:
            want: bytes | str = unpack_numpy(c)
        except ValueError as exc:
            want = str(exc)
        try:
            got: bytes | str = fast.unpack(c)
        except ValueError as exc:
            got = str(exc)
        assert got == want, c[:8]
    good = [c for c in chunks if isinstance(_try(c), bytes)]
    assert fast.unpack_each(good) == unpack_each_numpy(good) == [unpack_numpy(c) for c in good]
    assert unpack(memoryview(good[3])) == unpack_numpy(good[3])  # any bytes-like object


@pytest.mark.parametrize("implementation", ["compiled"], indirect=True)
def test_compiled_pack_is_numpy_pack_byte_for_byte(implementation: str) -> None:
    """The same predictor chosen on the same probe (chunks over 4 probes use spread windows)
    and the same bytes: a file recorded with either is the same file."""
    fast = audiocodec._fast
    assert fast is not None
    rng = random.Random(12)
    speech = _speech()
    audio = [_random_chunk(rng) for _ in range(500)]
    for n in (31, 32, 33, 1024, 2047, 2048, 2049, 8192, 8193, 9000, 50_000, 300_000):
        o = rng.randrange(0, len(speech) - 2 * n)
        audio += [speech[o : o + 2 * n], speech[o : o + 2 * n + 1],
                  np.random.default_rng(n).normal(0, 12, n).astype("<i2").tobytes()]
    tags = set()
    for a in audio:
        want = pack_numpy(a)
        assert fast.pack(a) == want, (len(a), want[:1])
        assert fast.pack(bytearray(a)) == fast.pack(memoryview(a)) == want
        tags.add(want[0])
    assert tags == {RAW, ORDER0, ORDER1, ORDER2}


def _try(c: bytes) -> bytes | None:
    try:
        return unpack_numpy(c)
    except ValueError:
        return None


def test_unpack_each_gives_one_piece_per_chunk() -> None:
    rng = random.Random(5)
    audio = [_random_chunk(rng) for _ in range(200)]
    assert unpack_each([pack(a) for a in audio]) == audio


def test_peak_is_the_loudest_sample_whatever_the_bytes() -> None:
    """How loud a chunk is (the page leaves quiet audio out): the largest magnitude of
    its samples, on both implementations, for any bytes a crafted file may hold."""
    from rtproxy.io.audiocodec import peak, peak_numpy

    rng = random.Random(13)
    cases = [b"", b"\x01", b"\x00\x80", b"\xff\x7f", b"\x38\xff", b"\xc8\x00\x05", bytearray(b"\x00\x80"),
             memoryview(b"\x10\x00\xf0\xff")]
    cases += [_random_chunk(rng) for _ in range(300)]
    want = [0, 0, 32768, 32767, 200, 200, 32768, 16]
    for i, c in enumerate(cases):
        a = np.frombuffer(bytes(c), dtype="<i2", count=len(c) // 2).astype(np.int64)
        expected = int(np.abs(a).max()) if a.size else 0
        assert peak(c) == peak_numpy(c) == expected, (i, bytes(c)[:8])
        if i < len(want):
            assert expected == want[i]


def test_interleave_into_is_a_sample_of_each_in_turn() -> None:
    """Two tracks as one stereo track (export --format wav), on both implementations:
    as many samples as the shorter holds, an odd byte no sample, a short output refused."""
    from rtproxy.io.audiocodec import interleave_into, interleave_into_numpy

    rng = random.Random(14)
    for _ in range(200):
        left, right = rng.randbytes(rng.randrange(0, 900)), rng.randbytes(rng.randrange(0, 900))
        n = min(len(left), len(right)) // 2
        want = b"".join(left[2 * i : 2 * i + 2] + right[2 * i : 2 * i + 2] for i in range(n))
        for impl in (interleave_into, interleave_into_numpy):
            out = bytearray(rng.randbytes(4 * n + rng.randrange(3)))
            tail = bytes(out[4 * n :])
            assert impl(out, left, memoryview(right)) == 4 * n
            assert bytes(out[: 4 * n]) == want and bytes(out[4 * n :]) == tail  # nothing past it written
    for impl in (interleave_into, interleave_into_numpy):
        with pytest.raises(ValueError, match="too small"):
            impl(bytearray(7), b"\x01\x00\x02\x00", b"\x03\x00\x04\x00")
