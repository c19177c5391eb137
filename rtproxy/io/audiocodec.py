"""Lossless packing of PCM16 audio for storage (pure; NumPy, and a compiled unpack).

zstandard compresses raw 16-bit audio poorly: neighbouring samples are
close in value, but their bytes are not alike. Packing each chunk as

1. a fixed linear predictor's residual (order 0, 1 or 2, whichever gives
   the smallest residuals for this chunk, as in FLAC's fixed predictors),
   computed in wrapping 16-bit arithmetic so it is exactly invertible;
2. zigzag-mapped, so small negative residuals become small numbers;
3. split into a plane of low bytes followed by a plane of high bytes

turns speech into long runs of small, similar bytes that zstandard squeezes
well. A packed chunk starts with one tag byte naming the predictor;
:func:`unpack` gives back the exact input. ``docs/FORMAT.md`` specifies it.

Packing is what a recorder pays for each audio message, unpacking what every
reader of a whole recording pays for (show --json, the exports, diff's audio
hashes), so both run in ``rtproxy/io/_audiofast.c`` when that is built (``pip
install`` builds it where a C compiler is found): one pass per chunk, 5 to 12
times faster than the NumPy code (``rtproxy/io/_audio_numpy.py``), which stays
the reference the compiled code is tested against, and the fallback.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any, Callable, Iterable

def _compiled() -> ModuleType | None:
    if os.environ.get("RTPROXY_AUDIO_NUMPY") == "1":
        return None
    try:
        from rtproxy.io import _audiofast
    except ImportError:  # not built (no C compiler where it was installed): NumPy gives the same bytes
        return None
    return _audiofast


#: ``rtproxy/io/_audiofast.c``: :func:`pack` and :func:`unpack` in one pass per
#: chunk, 5-12x faster than NumPy's several; None where it is not built, or with
#: ``RTPROXY_AUDIO_NUMPY=1``.
_fast = _compiled()
#: True when unpacking runs compiled.
COMPILED = _fast is not None

__all__ = ["pack", "unpack", "unpack_many", "unpack_each", "unpack_stream", "pack_numpy", "unpack_numpy",
           "unpack_each_numpy", "load_packer", "peak", "peak_numpy",
           "interleave_into", "interleave_into_numpy", "RAW", "MIN_PACK_BYTES", "COMPILED"]

RAW = 0
"""Tag: the bytes follow unchanged (odd length, too short, or not worth it)."""
ORDER0, ORDER1, ORDER2 = 1, 2, 3
"""Tags: zigzag + byte planes of the residual of a fixed predictor of order 0, 1, 2."""

#: Chunks shorter than this are stored raw (the tag byte is the only overhead).
MIN_PACK_BYTES = 64

_numpy: ModuleType | None = None


def _np() -> ModuleType:
    """The NumPy implementation (:mod:`rtproxy.io._audio_numpy`), imported on first use:
    with the compiled module built, a command that only unpacks starts without NumPy."""
    global _numpy
    if _numpy is None:
        from rtproxy.io import _audio_numpy

        _numpy = _audio_numpy
    return _numpy


def load_packer() -> None:
    """Import what :func:`pack` needs now: a recorder calls this at start, so that
    the first audio message of a session is not held up by importing NumPy."""
    if _fast is None:
        _np()


def pack(audio: bytes) -> bytes:
    """``audio`` (PCM16 little-endian, but any bytes are safe) -> tag byte + packed bytes."""
    if _fast is not None:
        return _fast.pack(audio)  # type: ignore[no-any-return]
    if len(audio) < MIN_PACK_BYTES or len(audio) % 2:
        return bytes((RAW,)) + audio
    return _np().pack(audio)  # type: ignore[no-any-return]


def pack_numpy(audio: bytes) -> bytes:
    """:func:`pack` in NumPy, whether or not the compiled module is built (the reference)."""
    if len(audio) < MIN_PACK_BYTES or len(audio) % 2:
        return bytes((RAW,)) + audio
    return _np().pack(audio)  # type: ignore[no-any-return]


def unpack(packed: bytes) -> bytes:
    """Inverse of :func:`pack`. Raises ValueError on an unknown tag or bad length."""
    if _fast is not None:
        return _fast.unpack(packed)  # type: ignore[no-any-return]
    return _np().unpack(packed)  # type: ignore[no-any-return]


def unpack_stream(chunks: Iterable[bytes], write: Callable[[memoryview], Any]) -> None:
    """Decode ``chunks`` (packed audio, in order) into ``write``.

    Calls ``write`` with pieces whose concatenation is
    ``b"".join(unpack(c) for c in chunks)``; a piece is only valid during the
    call (pass ``hashlib`` ``update`` or a file's ``write``). Without the
    compiled module, many short chunks (a stream of 20-100 ms deltas) are
    decoded at once, an order of magnitude faster than one :func:`unpack` call
    each; the caller bounds the batch (up to about a MiB stays in the CPU
    cache). Raises ValueError like :func:`unpack`.
    """
    if _fast is None:
        _np().unpack_stream(chunks, write)
        return
    one = _fast.unpack
    for c in chunks:
        piece = one(c)
        if piece:
            write(memoryview(piece))


def unpack_many(chunks: Iterable[bytes]) -> bytes:
    """``b"".join(unpack(c) for c in chunks)`` (see :func:`unpack_stream`, which
    avoids building the joined bytes)."""
    out: list[bytes] = []
    unpack_stream(chunks, lambda piece: out.append(bytes(piece)))
    return b"".join(out)


def unpack_each(chunks: list[bytes]) -> list[bytes]:
    """``[unpack(c) for c in chunks]``, in one call. Raises ValueError like :func:`unpack`."""
    if _fast is not None:
        return _fast.unpack_each(chunks)  # type: ignore[no-any-return]
    return _np().unpack_each(chunks)  # type: ignore[no-any-return]


def peak(pcm: bytes | bytearray | memoryview) -> int:
    """The largest magnitude of the PCM16 (little-endian) samples of ``pcm``: 32768
    for -32768, 0 for none; a trailing odd byte is no sample. How loud a chunk is,
    in one pass (the page leaves quiet stretches out, thousands of chunks an hour)."""
    fast = getattr(_fast, "peak", None)
    if fast is not None:
        return fast(pcm)  # type: ignore[no-any-return]
    return peak_numpy(pcm)


def peak_numpy(pcm: bytes | bytearray | memoryview) -> int:
    """:func:`peak` in NumPy (the reference, and the fallback)."""
    import numpy as np

    a = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2)
    return max(int(a.max()), -int(a.min())) if a.size else 0


def interleave_into(out: bytearray | memoryview, left: bytes | bytearray | memoryview,
                    right: bytes | bytearray | memoryview) -> int:
    """Two mono PCM16 tracks as one stereo track (a sample of each in turn), as many
    samples as the shorter holds, written into ``out``; returns the bytes written.
    ValueError when ``out`` cannot hold them."""
    fast = getattr(_fast, "interleave_into", None)
    if fast is not None:
        return fast(out, left, right)  # type: ignore[no-any-return]
    return interleave_into_numpy(out, left, right)


def interleave_into_numpy(out: bytearray | memoryview, left: bytes | bytearray | memoryview,
                          right: bytes | bytearray | memoryview) -> int:
    """:func:`interleave_into` in NumPy (the reference, and the fallback)."""
    import numpy as np

    n = min(len(left), len(right)) // 2
    if len(out) < 4 * n:
        raise ValueError("interleave_into: the output buffer is too small")
    st = np.frombuffer(out, dtype="<i2", count=2 * n).reshape(n, 2)
    st[:, 0] = np.frombuffer(left, dtype="<i2", count=n)
    st[:, 1] = np.frombuffer(right, dtype="<i2", count=n)
    return 4 * n


def unpack_numpy(packed: bytes) -> bytes:
    """:func:`unpack` in NumPy, whether or not the compiled module is built (the reference)."""
    return _np().unpack(packed)  # type: ignore[no-any-return]


def unpack_each_numpy(chunks: list[bytes]) -> list[bytes]:
    """:func:`unpack_each` in NumPy, whether or not the compiled module is built (the reference)."""
    return _np().unpack_each(chunks)  # type: ignore[no-any-return]
