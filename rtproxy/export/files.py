"""``rtproxy export``: a recording as HTML, WAV, HAR or JSONL (the I/O shell).

The work is done by pure modules: :mod:`rtproxy.export.html` (HTML),
:mod:`rtproxy.view.audio` (WAV), :mod:`rtproxy.io.har` (HAR); JSONL is
:func:`rtproxy.cli.main.write_jsonl`, the same lines as ``rtproxy show --json``.

Every output is private (0600) and written atomically through a fresh
temporary file next to it (:mod:`rtproxy.io.safefile`): a failed export leaves
nothing behind, and a planted ``OUT.part`` (or symlink) is never written to.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


from rtproxy.view.audio import ConversationAudio, write_wav_tracks
from rtproxy.io.batch import unpack_ahead
from rtproxy.io.format import RecordingWriter, open_recording
from rtproxy.io.progress import Progress, reading
from rtproxy.io.har import write_har
from rtproxy.io.safefile import atomic_output, temp_path_for, write_atomic
from rtproxy.export.html import ReportBuilder
from rtproxy.view.events import Close, Handshake, clean_header
from rtproxy.view.strip import StripOptions, Stripper
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
    :mod:`rtproxy.io.progress`. The page lists the findings ``rtproxy check FILE``
    reports, checked in the same read of the file.
    """
    from rtproxy.check.runner import ConfiguredCheck

    builder = ReportBuilder(Path(file).name, audio=audio)
    with open_recording(file) as reader:
        rec = reader.recording
        # The findings `rtproxy check FILE` reports; a check that fails is a note in the page.
        check = ConfiguredCheck(file, handshake=Handshake.from_record(rec.handshake))
        messages = reading(reader.messages(), reader, progress)
        if builder.with_audio:
            messages = unpack_ahead(messages)  # every message's audio is used: unpacked in batches
        try:
            for e in annotate(messages, details=False):
                builder.feed(e)
                check.feed(e.event)
            checked = check.result(Handshake.from_record(rec.handshake), Close.from_record(rec.close), rec.truncated)
            builder.set_findings([f.to_dict() for f in checked.findings], checked.error)
            page = builder.html(reader.recording, progress)
        finally:
            builder.close()  # a failed read stops the clips still being encoded
    data = page.encode("utf-8")
    _write_atomic(out, data)
    return len(data)


def conversation_audio(file: str, progress: Progress | None = None) -> ConversationAudio:
    """The recording's audio placed on its timeline (see :class:`ConversationAudio`)."""
    conv = ConversationAudio()
    with open_recording(file) as reader:
        # Messages, not events: most of them (audio) need neither their type nor their head.
        feed = conv.feed_message
        for i, m in enumerate(unpack_ahead(reading(reader.messages(), reader, progress))):
            feed(i, m)
    conv.finish()
    return conv


def export_wav(file: str, out: str, *, split: bool = False, progress: Progress | None = None) -> list[tuple[str, int]]:
    """Write the conversation as heard: stereo (user left, assistant right) or two
    mono files (``-user.wav`` and ``-assistant.wav``) with ``split``.
    Returns ``[(path, bytes)]``.
    """
    conv = conversation_audio(file, progress)
    n = max([s.end for s in conv.user + conv.assistant] or [0])
    # Rendered a minute at a time from the placed segments: the tracks are never held whole.
    written = []
    if split:
        base = out[:-4] if out.lower().endswith(".wav") else out
        for suffix, segs in (("-user.wav", conv.user), ("-assistant.wav", conv.assistant)):
            path = base + suffix
            with atomic_output(path) as fh:
                size = write_wav_tracks(fh, segs, None, n)
            written.append((path, size))
    else:
        with atomic_output(out) as fh:
            size = write_wav_tracks(fh, conv.user, conv.assistant, n)
        written.append((out, size))
    return written


def export_har(file: str, out: str, *, progress: Progress | None = None) -> int:
    """Write a HAR 1.2 file with one entry for the session; returns its size."""
    # Streamed, a message at a time: a long (or crafted) session is never held whole.
    with open_recording(file) as reader, atomic_output(out) as fh:
        rec = reader.recording
        return write_har(fh, rec.header, rec.handshake, reading(reader.messages(), reader, progress))


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
        w = RecordingWriter(tmp, flush_each=False)  # renamed into place when complete
        try:
            # The control records are copied as they are (odd values and all), but for
            # keys that are not strings; "stripped" is the checked list plus this run's.
            header = _fields(rec.header, ("k", "format_version"))
            prior = clean_header(rec.header).get("stripped") or []
            header["stripped"] = sorted(set(prior) | set(options.names()))
            w.write_header(**header)
            if rec.handshake is not None:
                w.write_handshake(**_fields(rec.handshake, ("k",)))
            for m in reading(reader.messages(), reader, progress):
                payload, packed = stripper.stored(m)  # audio copied or replaced packed, never unpacked
                if isinstance(payload, bytes) and m.is_text and payload is not m.stored()[0]:
                    # new text: its audio (if any) split out and packed as the recorder does
                    w.write_message(m.t_ns, m.from_client, True, payload, redacted=m.redacted)
                else:
                    w.write_stored(m.t_ns, m.from_client, m.is_text, payload, packed, redacted=m.redacted)
                n += 1
            if rec.close is not None:
                w.write_close(**_fields(rec.close, ("k",)))
            end = _fields(rec.end or {}, ("k", "messages", "bytes"))
            if rec.truncated:
                end["source_truncated"] = True
            w.close(**end)
            os.replace(tmp, out)
        except BaseException:
            w.discard()
            raise
    return n, stripper.changed


def _fields(rec: dict[Any, Any], skip: tuple[str, ...]) -> dict[str, Any]:
    """A control record's members to write again: string keys only (a crafted map's
    integer keys cannot be keyword arguments), ``skip`` left out."""
    return {k: v for k, v in rec.items() if isinstance(k, str) and k not in skip}


