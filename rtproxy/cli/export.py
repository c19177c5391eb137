"""``rtproxy export`` and ``rtproxy redact``."""

from __future__ import annotations

import os
import sys

import click

from rtproxy.cli.common import fail
from rtproxy.cli.progress import progress_bar
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
@click.option("--audio", "audio", type=click.Choice(["none", "speech", "full"]), default=None,
              help="html: the page's audio: speech (default; Opus at 16 kbit/s, about 10 MB an hour of audio), "
                   "full (24 kHz PCM WAV as recorded, about 230 MB an hour of audio) or none.")
@click.option("--no-audio", is_flag=True, help="html: the same as --audio none.")
def export(file: str, fmt: str, out: str | None, split: bool, audio: str | None, no_audio: bool) -> None:
    """Export a recording to share or inspect it elsewhere.

    \b
    html   one self-contained page: summary, zoomable timeline, playable audio,
           errors next to the client event that caused them, each event's JSON
           (audio at speech quality; the .rtrec keeps it lossless)
    wav    24 kHz PCM16, stereo: user left, assistant right (G.711 decoded),
           audio placed on the session's timeline, cut where the client truncated
    har    HAR 1.2, one entry per session with _webSocketMessages (browser dev tools)
    jsonl  the same lines as `rtproxy show --json`
    """
    if no_audio and audio not in (None, "none"):
        fail(f"--no-audio and --audio {audio} contradict each other")
    mode = "none" if no_audio else (audio or "speech")
    if mode == "speech" and fmt == "html":
        from rtproxy.export.speech import unavailable

        why = unavailable()
        if why:
            fail(f"--audio speech needs Opus: {why}; use --audio full or --audio none")
    out = out or default_output(file, fmt)
    if os.path.abspath(out) == os.path.abspath(file):
        fail(f"{file}: output would overwrite the recording; pass -o OUT")
    try:
        if fmt == "jsonl":
            if out == "-":
                write_jsonl(file, sys.stdout)
                return
            with progress_bar("export") as progress, atomic_output(out, text=True) as fh:  # 0600, renamed into place when complete
                write_jsonl(file, fh, progress=progress)
            click.echo(f"wrote {out} ({os.path.getsize(out):,} B)")
        elif fmt == "html":
            with progress_bar("export") as progress:
                size = export_html(file, out, audio=mode, progress=progress)
            click.echo(f"wrote {out} ({size:,} B)")
        elif fmt == "wav":
            with progress_bar("export") as progress:
                written = export_wav(file, out, split=split, progress=progress)
            for path, size in written:
                secs = (size - 44) / (2 * RATE * (1 if split else 2))
                click.echo(f"wrote {path} ({size:,} B, {secs:.2f} s)")
        elif fmt == "har":
            with progress_bar("export") as progress:
                size = export_har(file, out, progress=progress)
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
@click.option("--strip-instructions", is_flag=True, help="Remove session and response instructions, and prompts (a stored "
              "prompt's variables, the transcription prompt).")
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
        with progress_bar("redact") as progress:
            n, changed = redact_recording(file, out, opts, progress)
    except RecordingError as exc:
        fail(str(exc))
        return
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
        return
    click.echo(f"wrote {out}: {n} messages, {changed} changed; stripped {', '.join(opts.names())}")
