"""``rtproxy export``: a recording as HTML, WAV, HAR or JSONL (the I/O shell).

The work is done by pure modules: :mod:`rtproxy.export.html` (HTML),
:mod:`rtproxy.view.audio` (WAV), :mod:`rtproxy.io.har` (HAR); JSONL is
:func:`rtproxy.cli.main.write_jsonl`, the same lines as ``rtproxy show --json``.

Every output is private (0600) and written atomically through a fresh
temporary file next to it (:mod:`rtproxy.io.safefile`): a failed export leaves
nothing behind, and a planted ``OUT.part`` (or symlink) is never written to.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


from rtproxy.view.audio import ConversationAudio, render_track, write_wav
from rtproxy.io.batch import unpack_ahead
from rtproxy.io.format import RecordingWriter, open_recording
from rtproxy.io.progress import Progress, reading
from rtproxy.io.har import har_document, har_entry
from rtproxy.io.safefile import atomic_output, temp_path_for, write_atomic
from rtproxy.export.html import ReportBuilder
from rtproxy.view.strip import StripOptions, Stripper
from rtproxy.view.summary import event_head
from rtproxy.view.timeline import annotate

__all__ = ["redact_recording", "export_html", "export_wav", "export_har", "default_output"]

_EXT = {"html": ".html", "wav": ".wav", "har": ".har", "jsonl": ".jsonl"}


def default_output(file: str, fmt: str) -> str:
    """FILE with its extension replaced by the format's."""
    return str(Path(file).with_suffix(_EXT[fmt]))


def export_html(file: str, out: str, *, audio: bool | str = True, progress: Progress | None = None) -> int:
    """Write the HTML timeline of ``file`` to ``out``; returns its size in bytes.

    ``audio``: ``"speech"`` (Opus at speech quality, the default; True means it too),
    ``"full"`` (PCM WAV as recorded) or ``"none"`` (False). ``progress``: see
    :mod:`rtproxy.io.progress`.
    """
    builder = ReportBuilder(Path(file).name, audio=audio)
    with open_recording(file) as reader:
        messages = reading(reader.messages(), reader, progress)
        if builder.with_audio:
            messages = unpack_ahead(messages)  # every message's audio is used: unpacked in batches
        for e in annotate(messages, details=False):
            builder.feed(e)
        page = builder.html(reader.recording, progress)
    data = page.encode("utf-8")
    _write_atomic(out, data)
    return len(data)


def conversation_audio(file: str, progress: Progress | None = None) -> ConversationAudio:
    """The recording's audio placed on its timeline (see :class:`ConversationAudio`)."""
    conv = ConversationAudio()
    with open_recording(file) as reader:
        for e in annotate(unpack_ahead(reading(reader.messages(), reader, progress)), details=False):
            m = e.msg
            head = event_head(m) if m.is_text and e.type is not None else None
            conv.feed(e.index, m.t_ns, m.from_client, e.type, head, m.audio)
    conv.finish()
    return conv


def export_wav(file: str, out: str, *, split: bool = False, progress: Progress | None = None) -> list[tuple[str, int]]:
    """Write the conversation as heard: stereo (user left, assistant right) or two
    mono files (``-user.wav`` and ``-assistant.wav``) with ``split``.
    Returns ``[(path, bytes)]``.
    """
    conv = conversation_audio(file, progress)
    n = max([s.end for s in conv.user + conv.assistant] or [0])
    left = render_track(conv.user, n)
    right = render_track(conv.assistant, n)
    written = []
    if split:
        base = out[:-4] if out.lower().endswith(".wav") else out
        for suffix, track in (("-user.wav", left), ("-assistant.wav", right)):
            path = base + suffix
            with atomic_output(path) as fh:
                size = write_wav(fh, track)
            written.append((path, size))
    else:
        with atomic_output(out) as fh:
            size = write_wav(fh, left, right)
        written.append((out, size))
    return written


def export_har(file: str, out: str, *, progress: Progress | None = None) -> int:
    """Write a HAR 1.2 file with one entry for the session; returns its size."""
    with open_recording(file) as reader:
        rec = reader.recording
        entry = har_entry(rec.header, rec.handshake, reading(reader.messages(), reader, progress))
    data = json.dumps(har_document([entry]), ensure_ascii=False, indent=1).encode("utf-8")
    _write_atomic(out, data)
    return len(data)


def _write_atomic(out: str, data: bytes) -> None:
    write_atomic(out, data)


def redact_recording(file: str, out: str, options: StripOptions, progress: Progress | None = None) -> tuple[int, int]:
    """Write a stripped copy of ``file`` to ``out`` (same timestamps, header lists what
    was stripped). Returns (messages, messages changed)."""
    stripper = Stripper(options)
    n = 0
    with open_recording(file) as reader:
        rec = reader.recording
        # A fresh name, created with O_EXCL: a planted OUT.part is never written to.
        tmp = temp_path_for(out)
        w = RecordingWriter(tmp)
        try:
            header = {k: v for k, v in rec.header.items() if k not in ("k", "format_version")}
            prior = list(header.get("stripped") or [])
            header["stripped"] = sorted(set(prior) | set(options.names()))
            w.write_header(**header)
            if rec.handshake is not None:
                w.write_handshake(**{k: v for k, v in rec.handshake.items() if k != "k"})
            for m in reading(reader.messages(), reader, progress):
                w.write_message(m.t_ns, m.from_client, m.is_text, stripper.content(m), redacted=m.redacted)
                n += 1
            if rec.close is not None:
                w.write_close(**{k: v for k, v in rec.close.items() if k != "k"})
            end = {k: v for k, v in (rec.end or {}).items() if k not in ("k", "messages", "bytes")}
            if rec.truncated:
                end["source_truncated"] = True
            w.close(**end)
            os.replace(tmp, out)
        except BaseException:
            w.discard()
            raise
    return n, stripper.changed


