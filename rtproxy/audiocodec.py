"""Lossless packing of PCM16 audio for storage (pure; NumPy only).

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
"""

from __future__ import annotations

import numpy as np

__all__ = ["pack", "unpack", "RAW", "MIN_PACK_BYTES"]

RAW = 0
"""Tag: the bytes follow unchanged (odd length, too short, or not worth it)."""
ORDER0, ORDER1, ORDER2 = 1, 2, 3
"""Tags: zigzag + byte planes of the residual of a fixed predictor of order 0, 1, 2."""

#: Chunks shorter than this are stored raw (the tag byte is the only overhead).
MIN_PACK_BYTES = 64

_I16 = np.dtype("<i2")
_U16 = np.dtype("<u2")


def _residual(x: np.ndarray, order: int) -> np.ndarray:
    for _ in range(order):
        x = np.diff(x, prepend=np.int16(0))  # wraps in int16, on purpose
    return x


#: Samples looked at to choose the predictor: enough to judge, cheap for 15 MiB.
_PROBE = 4096


def _choose_order(x: np.ndarray) -> int:
    if x.size > _PROBE:
        step = x.size // _PROBE
        # a few contiguous windows spread over the chunk
        x = np.concatenate([x[i : i + 256] for i in range(0, x.size - 256, max(256, step * 256))][:16])
    x32 = x.astype(np.int32)
    e1 = np.diff(x32)
    e2 = np.diff(e1)
    costs = (np.abs(x32).sum(), np.abs(e1).sum(), np.abs(e2).sum())
    return costs.index(min(costs))


def pack(audio: bytes) -> bytes:
    """``audio`` (PCM16 little-endian, but any bytes are safe) -> tag byte + packed bytes."""
    n = len(audio)
    if n < MIN_PACK_BYTES or n % 2:
        return bytes((RAW,)) + audio
    x = np.frombuffer(audio, dtype=_I16)
    order = _choose_order(x)
    r = _residual(x, order)
    z = ((r << 1) ^ (r >> 15)).view(_U16)  # zigzag: 0,-1,1,-2... -> 0,1,2,3...
    planes = z.view(np.uint8).reshape(-1, 2)
    return b"".join((bytes((ORDER0 + order,)), planes[:, 0].tobytes(), planes[:, 1].tobytes()))


def unpack(packed: bytes) -> bytes:
    """Inverse of :func:`pack`. Raises ValueError on an unknown tag or bad length."""
    if not packed:
        raise ValueError("empty packed audio")
    tag = packed[0]
    if tag == RAW:
        return bytes(packed[1:])
    if tag not in (ORDER0, ORDER1, ORDER2):
        raise ValueError(f"unknown audio packing tag {tag}")
    body = np.frombuffer(packed, dtype=np.uint8, offset=1)
    if body.size % 2:
        raise ValueError("packed PCM16 audio of odd length")
    half = body.size // 2
    z = body[:half].astype(_U16) | (body[half:].astype(_U16) << 8)
    r = ((z >> 1).view(_I16)) ^ -(z & 1).view(_I16)
    for _ in range(tag - ORDER0):
        r = np.cumsum(r, dtype=_I16)  # wraps in int16: exact inverse of diff
    return r.astype(_I16, copy=False).tobytes()
