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


#: Samples looked at to choose the predictor: enough to judge, cheap for 15 MiB.
_PROBE = 2048


def _choose_order(x32: np.ndarray) -> int:
    if x32.size > 4 * _PROBE:
        # contiguous windows spread over the chunk
        stride = x32.size // 8
        x32 = np.concatenate([x32[i : i + 256] for i in range(0, x32.size - 256, stride)])
    elif x32.size > _PROBE:
        x32 = x32[:_PROBE]
    e1 = np.diff(x32)
    costs = (np.abs(x32).sum(), np.abs(e1).sum(), np.abs(np.diff(e1)).sum())
    return costs.index(min(costs))


def pack(audio: bytes) -> bytes:
    """``audio`` (PCM16 little-endian, but any bytes are safe) -> tag byte + packed bytes."""
    n = len(audio)
    if n < MIN_PACK_BYTES or n % 2:
        return bytes((RAW,)) + audio
    x = np.frombuffer(audio, dtype=_I16)
    # In int32 the differences are exact; casting back to int16 wraps them
    # modulo 2**16, which is what the 16-bit running sums of unpack() undo.
    r32 = x.astype(np.int32)
    order = _choose_order(r32)
    for _ in range(order):
        d = np.empty_like(r32)  # the difference with 0 before the first sample
        d[0] = r32[0]
        np.subtract(r32[1:], r32[:-1], out=d[1:])
        r32 = d
    r = r32.astype(_I16)
    z = ((r << 1) ^ (r >> 15)).view(np.uint8)  # zigzag: 0,-1,1,-2... -> 0,1,2,3...
    return b"".join((bytes((ORDER0 + order,)), z[0::2].tobytes(), z[1::2].tobytes()))


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
