"""``rtproxy export``: a recording as HTML, WAV, HAR or JSONL (the I/O shell).

The work is done by pure modules: :mod:`rtproxy.report` (HTML),
:mod:`rtproxy.audio` (WAV), :mod:`rtproxy.har` (HAR); JSONL is
:func:`rtproxy.cli.write_jsonl`, the same lines as ``rtproxy show --json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from .audio import RATE, ConversationAudio, render_track, write_wav
from .format import RecordingError, RecordingWriter, open_recording
from .har import har_document, har_entry
from .report import ReportBuilder
from .strip import StripOptions, Stripper
from .summary import event_head
from .timeline import annotate

__all__ = ["export", "redact", "redact_recording", "export_html", "export_wav", "export_har", "default_output"]

_EXT = {"html": ".html", "wav": ".wav", "har": ".har", "jsonl": ".jsonl"}


def default_output(file: str, fmt: str) -> str:
    """FILE with its extension replaced by the format's."""
    return str(Path(file).with_suffix(_EXT[fmt]))


def export_html(file: str, out: str, *, audio: bool = True) -> int:
    """Write the HTML timeline of ``file`` to ``out``; returns its size in bytes."""
    builder = ReportBuilder(Path(file).name, audio=audio)
    with open_recording(file) as reader:
        for e in annotate(reader.messages()):
            builder.feed(e)
        page = builder.html(reader.recording)
    data = page.encode("utf-8")
    _write_atomic(out, data)
    return len(data)


def conversation_audio(file: str) -> ConversationAudio:
    """The recording's audio placed on its timeline (see :class:`ConversationAudio`)."""
    conv = ConversationAudio()
    with open_recording(file) as reader:
        for e in annotate(reader.messages()):
            m = e.msg
            head = event_head(m) if m.is_text and e.type is not None else None
            conv.feed(e.index, m.t_ns, m.from_client, e.type, head, m.audio)
    conv.finish()
    return conv


def export_wav(file: str, out: str, *, split: bool = False) -> list[tuple[str, int]]:
    """Write the conversation as heard: stereo (user left, assistant right) or two
    mono files (``-user.wav`` and ``-assistant.wav``) with ``split``.
    Returns ``[(path, bytes)]``.
    """
    conv = conversation_audio(file)
    n = max([s.end for s in conv.user + conv.assistant] or [0])
    left = render_track(conv.user, n)
    right = render_track(conv.assistant, n)
    written = []
    if split:
        base = out[:-4] if out.lower().endswith(".wav") else out
        for suffix, track in (("-user.wav", left), ("-assistant.wav", right)):
            path = base + suffix
            with open(path, "wb") as fh:
                written.append((path, write_wav(fh, track)))
    else:
        with open(out, "wb") as fh:
            written.append((out, write_wav(fh, left, right)))
    return written


def export_har(file: str, out: str) -> int:
    """Write a HAR 1.2 file with one entry for the session; returns its size."""
    with open_recording(file) as reader:
        rec = reader.recording
        entry = har_entry(rec.header, rec.handshake, reader.messages())
    data = json.dumps(har_document([entry]), ensure_ascii=False, indent=1).encode("utf-8")
    _write_atomic(out, data)
    return len(data)


def _write_atomic(out: str, data: bytes) -> None:
    tmp = out + ".part"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, out)


@click.command("export")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["html", "wav", "har", "jsonl"]), required=True,
              help="html: a timeline page; wav: the conversation as heard; har: for HAR viewers; jsonl: as show --json.")
@click.option("-o", "--output", "out", metavar="OUT", help="Output file (default: FILE with the format's extension; - for stdout with jsonl).")
@click.option("--split", is_flag=True, help="wav: two mono files, OUT-user.wav and OUT-assistant.wav, instead of one stereo file.")
@click.option("--no-audio", is_flag=True, help="html: leave the audio out of the page (smaller file).")
def export(file: str, fmt: str, out: str | None, split: bool, no_audio: bool) -> None:
    """Export a recording to share or inspect it elsewhere.

    \b
    html   one self-contained page: summary, zoomable timeline, playable audio,
           errors next to the client event that caused them, each event's JSON
    wav    24 kHz PCM16, stereo: user left, assistant right (G.711 decoded),
           audio placed on the session's timeline, cut where the client truncated
    har    HAR 1.2, one entry per session with _webSocketMessages (browser dev tools)
    jsonl  the same lines as `rtproxy show --json`
    """
    from .cli import fail, write_jsonl

    out = out or default_output(file, fmt)
    if os.path.abspath(out) == os.path.abspath(file):
        fail(f"{file}: output would overwrite the recording; pass -o OUT")
    try:
        if fmt == "jsonl":
            if out == "-":
                write_jsonl(file, sys.stdout)
                return
            with open(out + ".part", "w", encoding="utf-8") as fh:
                write_jsonl(file, fh)
            os.replace(out + ".part", out)
            click.echo(f"wrote {out} ({os.path.getsize(out):,} B)")
        elif fmt == "html":
            size = export_html(file, out, audio=not no_audio)
            click.echo(f"wrote {out} ({size:,} B)")
        elif fmt == "wav":
            for path, size in export_wav(file, out, split=split):
                secs = (size - 44) / (2 * RATE * (1 if split else 2))
                click.echo(f"wrote {path} ({size:,} B, {secs:.2f} s)")
        elif fmt == "har":
            size = export_har(file, out)
            click.echo(f"wrote {out} ({size:,} B)")
    except RecordingError as exc:
        fail(str(exc))
    except BrokenPipeError:
        sys.stderr.close()  # `export -o - | head`: the reader had enough
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")


def redact_recording(file: str, out: str, options: StripOptions) -> tuple[int, int]:
    """Write a stripped copy of ``file`` to ``out`` (same timestamps, header lists what
    was stripped). Returns (messages, messages changed)."""
    stripper = Stripper(options)
    n = 0
    with open_recording(file) as reader:
        rec = reader.recording
        tmp = out + ".part"
        if os.path.exists(tmp):
            os.unlink(tmp)
        w = RecordingWriter(tmp)
        try:
            header = {k: v for k, v in rec.header.items() if k not in ("k", "format_version")}
            prior = list(header.get("stripped") or [])
            header["stripped"] = sorted(set(prior) | set(options.names()))
            w.write_header(**header)
            if rec.handshake is not None:
                w.write_handshake(**{k: v for k, v in rec.handshake.items() if k != "k"})
            for m in reader.messages():
                w.write_message(m.t_ns, m.from_client, m.is_text, stripper.content(m), redacted=m.redacted)
                n += 1
            if rec.close is not None:
                w.write_close(**{k: v for k, v in rec.close.items() if k != "k"})
            end = {k: v for k, v in (rec.end or {}).items() if k not in ("k", "messages", "bytes")}
            if rec.truncated:
                end["source_truncated"] = True
            w.close(**end)
        except BaseException:
            w.close()
            os.unlink(tmp)
            raise
    os.replace(tmp, out)
    return n, stripper.changed


@click.command("redact")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "out", required=True, metavar="OUT", help="The shareable copy (.rtrec).")
@click.option("--strip-audio", is_flag=True, help="Audio becomes silence of the same length.")
@click.option("--strip-text", is_flag=True, help="Transcripts, text, function arguments and outputs become placeholders.")
@click.option("--strip-instructions", is_flag=True, help="Remove session and response instructions.")
def redact(file: str, out: str, strip_audio: bool, strip_text: bool, strip_instructions: bool) -> None:
    """Write a copy of a recording that is safe to attach to a bug report.

    The copy is a valid recording (it shows, replays and diffs) with the same
    events and timing; its header lists what was stripped. Secrets (API keys)
    were already removed when recording.
    """
    from .cli import fail

    opts = StripOptions(strip_audio, strip_text, strip_instructions)
    if not opts.names():
        fail("nothing to strip: pass --strip-audio, --strip-text and/or --strip-instructions")
    if os.path.abspath(out) == os.path.abspath(file):
        fail(f"{file}: -o must name a new file, not the recording itself")
    if os.path.exists(out):
        fail(f"{out}: already exists; choose another -o or remove it")
    try:
        n, changed = redact_recording(file, out, opts)
    except RecordingError as exc:
        fail(str(exc))
        return
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
        return
    click.echo(f"wrote {out}: {n} messages, {changed} changed; stripped {', '.join(opts.names())}")
