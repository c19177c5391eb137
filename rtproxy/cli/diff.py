"""``rtproxy diff``: parse the options, call :func:`rtproxy.compare.core_files`, print."""

from __future__ import annotations

import sys

import click

from rtproxy.compare.core import DEFAULT_TOLERANCE_MS, diff_files
from rtproxy.compare.render import render_json, render_markdown, render_text
from rtproxy.io.format import RecordingError
from rtproxy.compare.normalize import DEFAULT_IGNORES, PathError

__all__ = ["diff"]

_HELP = f"""Compare two recordings of the same conversation: what changed.

Ids become symbolic ordinals (item#1, resp#2) so links still count; streaming
deltas are joined per item and content part (audio: duration + hash), so
chunking is no difference; beta and GA event names compare as the same;
input transcription before or after the response is no difference. Timing is
compared per response: end of user input -> first audio/text, and response
duration. Handshake status, subprotocol, model, close code and reason too.

\b
Ignored by default (--keep PATH to compare one again):
  {chr(10).join('  ' + p for p in DEFAULT_IGNORES).strip()}

\b
PATH: a field path inside an event, or an event type (drops the whole event):
  response.usage   session.tools[*].description   **.sha256   *.expires_at
  (** = any depth, * = any key, [*] = any list item, [N] = item N)

\b
Exit status: 0 equivalent; 1 different; 2 error (unreadable file, bad option).
"""


@click.command(help=_HELP)
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True,
    help="text for people (colour on a terminal), json for tools, markdown for bug reports.",
)
@click.option("--ignore", "ignore", multiple=True, metavar="PATH", help="Also ignore this field or event type (repeatable).")
@click.option("--keep", "keep", multiple=True, metavar="PATH", help="Compare this field or event type even if ignored by default (repeatable).")
@click.option(
    "--timing-tolerance", type=click.FloatRange(min=0), default=DEFAULT_TOLERANCE_MS, show_default=True,
    metavar="MS", help="Report per-turn timing changes larger than this many milliseconds.",
)
@click.option("--no-timing", is_flag=True, help="Do not compare timing.")
def diff(a: str, b: str, fmt: str, ignore: tuple[str, ...], keep: tuple[str, ...], timing_tolerance: float, no_timing: bool) -> None:
    from rtproxy.cli.common import Exit, fail

    from rtproxy.cli.progress import progress_bar

    try:
        with progress_bar("diff") as progress:
            result = diff_files(
                a, b,
                ignore=DEFAULT_IGNORES + ignore,
                keep=keep,
                tolerance_ms=None if no_timing else timing_tolerance,
                progress=progress,
            )
    except RecordingError as exc:
        fail(f"{exc}; diff needs two .rtrec files written by rtproxy record")
    except PathError as exc:
        fail(str(exc))
    if fmt == "json":
        click.echo(render_json(result), nl=False)
    elif fmt == "markdown":
        click.echo(render_markdown(result), nl=False)
    else:
        color = sys.stdout.isatty()
        click.echo(render_text(result, click.style), nl=False, color=color)
    sys.exit(Exit.OK if result.equivalent else Exit.DIFFERENT)
