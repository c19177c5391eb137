"""The NumPy implementation of :mod:`rtproxy.io.audiocodec`, imported on first use.

Packing always runs here. Unpacking runs here when ``rtproxy/io/_audiofast.c``
is not built; this code is also the reference the compiled code is tested
against (``tests/test_audiocodec.py``).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable

import numpy as np

from rtproxy.io.audiocodec import MIN_PACK_BYTES, ORDER0, ORDER1, ORDER2, RAW

_I16 = np.dtype("<i2")
_U16 = np.dtype("<u2")


#: Samples looked at to choose the predictor: enough to judge, cheap for 15 MiB.
_PROBE = 2048


_sum = np.add.reduce  # ndarray.sum without its Python wrapper: this runs for every chunk recorded


def _choose_order(x: np.ndarray) -> int:
    """The predictor order (0, 1, 2) whose residual has the smallest sum of magnitudes
    on a probe of the chunk; the lowest order on a tie."""
    if x.size > 4 * _PROBE:
        # contiguous windows spread over the chunk
        stride = x.size // 8
        x = np.concatenate([x[i : i + 256] for i in range(0, x.size - 256, stride)])
    elif x.size > _PROBE:
        x = x[:_PROBE]
    x32 = x.astype(np.int32)
    e1 = x32[1:] - x32[:-1]
    e2 = e1[1:] - e1[:-1]
    c0, c1, c2 = _sum(np.abs(x32)), _sum(np.abs(e1)), _sum(np.abs(e2))
    order, best = (1, c1) if c1 < c0 else (0, c0)
    return 2 if c2 < best else order


def pack(audio: bytes) -> bytes:
    """``audio`` (PCM16 little-endian, but any bytes are safe) -> tag byte + packed bytes."""
    n = len(audio)
    if n < MIN_PACK_BYTES or n % 2:
        return bytes((RAW,)) + audio
    r = np.frombuffer(audio, dtype=_I16)
    order = _choose_order(r)
    for _ in range(order):
        # The difference with 0 before the first sample, in wrapping 16-bit
        # arithmetic: what the 16-bit running sums of unpack() undo.
        d = np.empty_like(r)
        d[0] = r[0]
        np.subtract(r[1:], r[:-1], out=d[1:])
        r = d
    z = (r << 1) ^ (r >> 15)  # zigzag: 0,-1,1,-2... -> 0,1,2,3...
    # (low byte, high byte) pairs, transposed: the plane of low bytes, then the high ones.
    return bytes((ORDER0 + order,)) + z.view(np.uint8).reshape(-1, 2).T.tobytes()


def unpack(packed: bytes) -> bytes:
    """:func:`rtproxy.io.audiocodec.unpack`."""
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


_PLANES = np.array([0, 1, 2], dtype=np.uint8)  # tag byte, low plane, high plane

#: Largest batch (samples) whose work arrays are kept for the next call.
_KEEP_SAMPLES = 1 << 20


class _Scratch(threading.local):
    """Work arrays kept between :func:`_unpack_run` calls (one set per thread).

    Fresh arrays for every batch cost more in page faults than the arithmetic
    itself: the C library hands freed memory back and faults it in again.
    """

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, dtype: np.dtype | type, n: int) -> np.ndarray:
        a = self.arrays.get(name)
        if a is None or a.size < n:
            a = np.empty(max(n, 1 << 15), dtype=dtype)
            if n <= _KEEP_SAMPLES:
                self.arrays[name] = a
        return a[:n]


_SCRATCH = _Scratch()


def _unpack_run(run: list[bytes]) -> np.ndarray:
    """Decode consecutive packed (non-RAW) chunks with a non-empty body at once.

    Returns the PCM16 samples in a work array that the next call reuses.
    """
    n = len(run)
    lens = np.fromiter(map(len, run), dtype=np.int64, count=n)
    if ((lens - 1) & 1).any():
        raise ValueError("packed PCM16 audio of odd length")
    half = (lens - 1) >> 1
    total = int(half.sum())
    scratch = _SCRATCH
    buf = np.frombuffer(b"".join(run), dtype=np.uint8)
    z = scratch.get("z", _U16, total)
    zb = z.view(np.uint8).reshape(total, 2)
    cuts = np.flatnonzero(lens[1:] != lens[:-1]) + 1
    if len(cuts) <= n // 8:
        # Mostly equal chunk sizes (the usual stream): each stretch of equal
        # chunks is a 2-D array whose planes are plain column slices.
        bounds = [0, *cuts.tolist(), n]
        o = s = 0
        for i, j in zip(bounds, bounds[1:]):
            size, k = int(lens[i]), j - i
            h = (size - 1) >> 1
            seg = buf[o : o + k * size].reshape(k, size)
            dst = zb[s : s + k * h].reshape(k, h, 2)
            dst[:, :, 0] = seg[:, 1 : 1 + h]
            dst[:, :, 1] = seg[:, 1 + h :]
            o += k * size
            s += k * h
    else:
        # Sizes vary (chunks of 20-100 ms at random): two slice copies per chunk
        # cost less than marking every byte of the run as tag, low or high.
        o = s = 0
        for size in lens.tolist():
            h = (size - 1) >> 1
            zb[s : s + h, 0] = buf[o + 1 : o + 1 + h]
            zb[s : s + h, 1] = buf[o + 1 + h : o + size]
            o += size
            s += h
    # zigzag back, in place
    t = scratch.get("t", _U16, total)
    np.bitwise_and(z, 1, out=t)
    np.negative(t, out=t)
    np.right_shift(z, 1, out=z)
    np.bitwise_xor(z, t, out=z)
    x = z.view(_I16)
    orders = buf[np.cumsum(lens) - lens] - ORDER0
    top = int(orders.max())
    if top == 0:
        return x
    if not (orders == top).all():
        # Mixed predictors (a noise floor at order 0 between speech at 1 or 2):
        # each chunk's own running sums, so no sample is summed for nothing.
        # np.add.accumulate is np.cumsum without its Python wrapper, which costs as
        # much as the sums themselves on a chunk of 20-100 ms.
        y = scratch.get("y1", np.int32, int(half.max()))
        accumulate = np.add.accumulate
        s = 0
        for order, h in zip(orders.tolist(), half.tolist()):
            if order and h:
                piece = x[s : s + h]
                w = y[:h]
                accumulate(piece, dtype=np.int32, out=w)
                if order == 2:
                    accumulate(w, out=w)
                np.copyto(piece, w, casting="unsafe")  # int32 -> int16 wraps: the low 16 bits, as unpack's sums
            s += h
        return x
    # Undo the predictor: running sums that restart with every chunk. One
    # cumsum over the run does it while the first sample of each chunk has the
    # previous chunk's sum taken off (put back afterwards). Sums run in int32
    # (int16 sums are several times slower); both wrap, so the low 16 bits are
    # unpack's exactly.
    starts = np.cumsum(half) - half
    later = starts[1:]
    levels: list[np.ndarray] = [x]
    for level in range(1, top + 1):
        prev = levels[-1]
        y = scratch.get(f"y{level}", np.int32, total)
        if n > 1:
            kept = prev[later].copy()
            prev[later] = kept - np.add.reduceat(prev, starts, dtype=np.int32)[:-1]
            np.cumsum(prev, dtype=np.int32, out=y)
            prev[later] = kept
        else:
            np.cumsum(prev, dtype=np.int32, out=y)
        levels.append(y)
    if not (orders == top).all():
        order_of = np.repeat(orders, half)
        mask = scratch.get("m", np.bool_, total)
        for k in range(top - 1, -1, -1):
            np.equal(order_of, k, out=mask)
            np.copyto(y, levels[k], where=mask)
    out = scratch.get("o", _I16, total)
    np.copyto(out, y, casting="unsafe")
    return out


def unpack_stream(chunks: Iterable[bytes], write: Callable[[memoryview], Any]) -> None:
    """Decode ``chunks`` (packed audio, in order) into ``write``, many at once.

    Calls ``write`` with pieces whose concatenation is
    ``b"".join(unpack(c) for c in chunks)``; a piece is only valid during the
    call (pass ``hashlib`` ``update`` or a file's ``write``). Many short chunks
    (a stream of 20-100 ms deltas) decode an order of magnitude faster this way
    than with one :func:`unpack` call each; the caller bounds the batch (up to
    about a MiB stays in the CPU cache). Raises ValueError like :func:`unpack`.
    """
    run: list[bytes] = []
    for c in chunks:
        if not c:
            raise ValueError("empty packed audio")
        tag = c[0]
        if tag == RAW or tag > ORDER2:
            if tag != RAW:
                raise ValueError(f"unknown audio packing tag {tag}")
            if run:
                write(memoryview(_unpack_run(run)).cast("B"))
                run = []
            if len(c) > 1:
                write(memoryview(c)[1:])
        elif len(c) > 1:
            run.append(c)
    if run:
        write(memoryview(_unpack_run(run)).cast("B"))


def unpack_each(chunks: list[bytes]) -> list[bytes]:
    """:func:`rtproxy.io.audiocodec.unpack_each`."""
    out: list[bytes] = []
    run: list[bytes] = []
    at: list[int] = []  # where each chunk of the run goes in ``out``

    def flush() -> None:
        mv = memoryview(_unpack_run(run)).cast("B")
        o = 0
        for i, c in zip(at, run):
            n = len(c) - 1
            out[i] = bytes(mv[o : o + n])
            o += n
        run.clear()
        at.clear()

    for c in chunks:
        if not c:
            raise ValueError("empty packed audio")
        tag = c[0]
        if tag == RAW:
            out.append(bytes(c[1:]))
        elif tag > ORDER2:
            raise ValueError(f"unknown audio packing tag {tag}")
        elif len(c) == 1:
            out.append(b"")
        else:
            at.append(len(out))
            out.append(b"")
            run.append(c)
    if run:
        flush()
    return out
