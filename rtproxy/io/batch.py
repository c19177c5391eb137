"""Reading ahead: the audio of many messages unpacked at once (pure).

A message's audio is unpacked on first use (:attr:`rtproxy.io.format.Message.payload`),
one chunk at a time. A reader that will use every message's audio (show
--json, the exports) gets it several times faster by passing the messages
through :func:`unpack_ahead`, which reads a bounded window ahead and unpacks
the window's audio in one :func:`rtproxy.io.audiocodec.unpack_each` call.

What the caller sees is unchanged: the same messages in the same order, and a
damaged file fails at the same message as without reading ahead (a window
whose audio does not unpack is left to unpack, and fail, message by message;
an error of the reader is raised after the messages read before it).
"""

from __future__ import annotations

from typing import Iterable, Iterator, cast

from rtproxy.io.audiocodec import unpack_each
from rtproxy.io.format import Message

__all__ = ["unpack_ahead", "WINDOW_BYTES", "WINDOW_MESSAGES"]

#: Packed audio bytes read ahead at most (one larger message is a window of its own).
WINDOW_BYTES = 1 << 19
#: Messages read ahead at most.
WINDOW_MESSAGES = 512


def _unpack_window(window: list[Message]) -> None:
    chunks: list[bytes] = []
    owners: list[Message] = []
    for m in window:
        packed = m.packed_audio
        if packed:
            chunks.extend(packed)
            owners.append(m)
    if not chunks:
        return
    try:
        audio = unpack_each(chunks)
    except ValueError:
        return  # damaged audio: each message unpacks (and raises) when it is used
    k = 0
    for m in owners:
        p = list(cast("list[bytes]", m._payload))  # text parts as stored, audio still packed
        n = len(p) // 2
        p[1::2] = audio[k : k + n]
        k += n
        m.payload = p


def unpack_ahead(
    messages: Iterable[Message], *, max_bytes: int = WINDOW_BYTES, max_messages: int = WINDOW_MESSAGES
) -> Iterator[Message]:
    """``messages``, each with its audio already unpacked, read ahead in bounded windows."""
    it = iter(messages)
    while True:
        window: list[Message] = []
        size = 0
        error: Exception | None = None
        done = True
        try:
            for m in it:
                window.append(m)
                packed = m.packed_audio
                # Every message's bytes count (a crafted file's 60 MiB binary messages
                # too): the window is bounded in memory, not only in audio.
                size += sum(map(len, packed)) if packed else m.size
                if size >= max_bytes or len(window) >= max_messages:
                    done = False
                    break
        except Exception as exc:  # the reader's own error: after the messages before it
            error = exc
        _unpack_window(window)
        yield from window
        if error is not None:
            raise error
        if done:
            return
