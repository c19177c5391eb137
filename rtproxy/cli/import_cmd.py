"""``rtproxy import``."""

from __future__ import annotations

from pathlib import Path

import click

from rtproxy.cli.common import fail
from rtproxy.cli.progress import progress_bar
from rtproxy.io.importer import ImportError_, import_file

__all__ = ["import_cmd"]


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-o", "--out-dir", "out_dir", required=True, metavar="OUT_DIR", help="Folder for the .rtrec files.")
def import_cmd(file: str, out_dir: str) -> None:
    """Make recordings from a mitmproxy flow file (mitmdump -w) or a HAR file.

    One .rtrec per WebSocket session, with secrets removed as when recording.
    Prints what the source did not hold.
    """
    try:
        with progress_bar("import") as progress:
            kind, sessions = import_file(file, Path(out_dir), progress)
    except ImportError_ as exc:
        fail(str(exc))
        return
    except OSError as exc:
        fail(f"{file}: {exc.strerror or exc}")
        return
    if not sessions:
        fail(f"{file}: no WebSocket session found in this {kind} file")
    for s in sessions:
        red = f"; secrets removed: {', '.join(s.redactions)}" if s.redactions else ""
        click.echo(f"imported {s.path}: {s.messages} messages{red}")
    lacks = sessions[0].lacks
    if lacks:
        click.echo(f"note: the {kind} source lacks: " + "; ".join(lacks))
