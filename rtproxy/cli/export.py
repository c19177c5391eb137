"""``rtproxy export`` and ``rtproxy redact``."""

from __future__ import annotations

import os
import sys

import click

from rtproxy.cli.common import fail
from rtproxy.export.files import default_output, export_har, export_html, export_wav, redact_recording
from rtproxy.export.jsonl import write_jsonl
from rtproxy.io.format import RecordingError
from rtproxy.io.safefile import atomic_output
from rtproxy.view.audio import RATE
from rtproxy.view.strip import StripOptions

__all__ = ["export", "redact"]


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
    out = out or default_output(file, fmt)
    if os.path.abspath(out) == os.path.abspath(file):
        fail(f"{file}: output would overwrite the recording; pass -o OUT")
    try:
        if fmt == "jsonl":
            if out == "-":
                write_jsonl(file, sys.stdout)
                return
            with atomic_output(out, text=True) as fh:  # 0600, renamed into place when complete
                write_jsonl(file, fh)
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
