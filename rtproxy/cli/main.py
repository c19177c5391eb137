"""The ``rtproxy`` command line: parse, call the library, print.

Exit codes (see :class:`Exit`): 0 ok, 1 a difference or divergence was found,
2 bad input or usage (an unreadable file, a bad option).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from typing import Any

import click

from rtproxy import __version__
from rtproxy.cli.common import Exit, fail
from rtproxy.errors import RtproxyError
from rtproxy.export.jsonl import write_jsonl
from rtproxy.export.textsafe import visible
from rtproxy.io.format import RecordingError, open_recording
from rtproxy.protocol.events import shown_type
from rtproxy.view.events import Close, End, Handshake, clean_header, jsonable
from rtproxy.view.timeline import AudioTotals, annotate

__all__ = ["main", "cli", "Exit"]


class _LazyGroup(click.Group):
    """Commands defined in other modules are imported when they are run (or listed by
    ``--help``): ``rtproxy show`` does not load what ``diff``, ``check`` or ``replay`` need."""

    #: command name -> (module, attribute)
    LAZY = {
        "replay": ("rtproxy.cli.replay", "replay"),
        "diff": ("rtproxy.cli.diff", "diff"),
        "export": ("rtproxy.cli.export", "export"),
        "redact": ("rtproxy.cli.export", "redact"),
        "import": ("rtproxy.cli.import_cmd", "import_cmd"),
        "check": ("rtproxy.cli.check", "check"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.LAZY:
            import importlib

            module, attr = self.LAZY[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rtproxy")
def cli() -> None:
    """Record, replay, diff and export OpenAI Realtime API WebSocket sessions.

    \b
    Exit status: 0 ok; 1 a difference or divergence found; 2 error (bad file or option).
    """


# --------------------------------------------------------------------- record
@cli.command()
@click.option("--listen-host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--listen-port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--upstream",
    default="https://api.openai.com",
    show_default=True,
    help="Realtime endpoint behind the proxy (reverse mode). https:// -> wss, http:// -> ws.",
)
@click.option("--out-dir", default="recordings", show_default=True, help="Folder for .rtrec files.")
@click.option(
    "--mode",
    type=click.Choice(["reverse", "regular"]),
    default="reverse",
    show_default=True,
    help="reverse: clients connect to ws://HOST:PORT; regular: an HTTP(S) proxy with mitmproxy's CA.",
)
@click.option("--ssl-insecure", is_flag=True, help="Do not verify the upstream's TLS certificate.")
@click.option(
    "--workers",
    type=click.IntRange(1, 512),
    default=None,
    help="Proxy processes sharing the port (SO_REUSEPORT); each session is carried and recorded "
    "by one of them. Default on Linux: the number of cores this process may run on (elsewhere 1); "
    "1 is a single process.",
)
def record(
    listen_host: str, listen_port: int, upstream: str, out_dir: str, mode: str, ssl_insecure: bool,
    workers: int | None,
) -> None:
    """Record every Realtime WebSocket session passing through a proxy.

    Each session becomes OUT_DIR/<UTC time>-<model>-<id>.rtrec. Ctrl-C (or
    SIGTERM) closes out every open session in its file and exits 0.
    """
    from rtproxy.record.proxy import ProxyStartError, RecordConfig, mode_spec, run_recorder

    cfg = RecordConfig(listen_host, listen_port, upstream, out_dir, mode, ssl_insecure)
    try:
        mode_spec(mode, upstream)
    except ProxyStartError as exc:
        fail(str(exc))

    def ready() -> None:
        host = listen_host if ":" not in listen_host else f"[{listen_host}]"
        if mode == "reverse":
            click.echo(f"rtproxy record: proxying ws://{host}:{listen_port} -> {upstream}")
            click.echo(f'  point the client here: AsyncOpenAI(websocket_base_url="ws://{host}:{listen_port}/v1")')
        else:
            click.echo(f"rtproxy record: HTTP(S) proxy on {host}:{listen_port} (trust ~/.mitmproxy/mitmproxy-ca-cert.pem)")
            click.echo(f"  point the client here: HTTPS_PROXY=http://{host}:{listen_port}")
        click.echo(f"  recordings go to {out_dir}/ ; Ctrl-C to stop")
        sys.stdout.flush()

    def ended(summary: Any) -> None:
        click.echo(summary.line())
        sys.stdout.flush()

    from rtproxy.record.workers import default_workers, run_workers

    n = workers or default_workers()
    try:
        code = run_recorder(cfg, ready, ended) if n == 1 else run_workers(cfg, n, ready, ended)
    except ProxyStartError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot listen on {listen_host}:{listen_port}: {exc.strerror or exc}")
    sys.exit(code)


# ----------------------------------------------------------------------- show
def _fmt_time(ts: float | None) -> str:
    if not ts:
        return "?"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: header, messages, end.")
@click.option("--type", "type_glob", metavar="GLOB", help="Only events whose type matches, e.g. 'response.*' (beta or GA name).")
@click.option("--from", "side", type=click.Choice(["client", "server"]), help="Only messages from this side.")
@click.option("--grep", metavar="TEXT", help="Only messages containing TEXT (audio not searched).")
@click.option("--summary", is_flag=True, help="One line per response (status, duration, audio, transcript), per error with its cause, then the findings of `rtproxy check`.")
def show(file: str, as_json: bool, type_glob: str | None, side: str | None, grep: str | None, summary: bool) -> None:
    """Print a recording: a header, then one line per message.

    \b
    Filters (--type, --from, --grep) combine, and apply to --json too.
    --summary prints responses, errors and the findings of `rtproxy check`
    instead of messages.
    """
    from rtproxy.view.summary import EventFilter

    flt = EventFilter(type_glob, side, grep)
    try:
        if summary:
            _show_summary(file, as_json)
            return
        if as_json:
            truncated = write_jsonl(file, sys.stdout, flt if flt.active else None)
            if truncated:
                click.echo(f"rtproxy: {file}: recording was cut short (recorder stopped mid-session)", err=True)
            return
        _show_text(file, flt if flt.active else None)
    except RecordingError as exc:
        fail(str(exc))
    except BrokenPipeError:
        sys.stderr.close()


def _show_summary(file: str, as_json: bool) -> None:
    from dataclasses import asdict

    from rtproxy.view.summary import summarize, summary_lines

    from rtproxy.check.render import summary_findings_lines
    from rtproxy.check.runner import check_as_configured

    with open_recording(file) as reader:
        s = summarize(annotate(reader.messages()), reader)
    # The findings `rtproxy check FILE` reports (a second pass); a check that
    # cannot run is one line, never the end of the summary.
    checked = check_as_configured(file)
    if as_json:
        for r in s.responses:
            d = {k: v for k, v in asdict(r).items() if not k.startswith("_")}
            # jsonable: values quoted from the recording (status_details) may hold NaN, ext types...
            sys.stdout.write(json.dumps(jsonable({"kind": "response", **d, "duration_s": r.duration_s})) + "\n")
        for x in s.errors:
            sys.stdout.write(json.dumps(jsonable({"kind": "error", **asdict(x)})) + "\n")
        for tr in s.truncates:
            d = {"kind": "truncate", **asdict(tr), "problem": tr.problem}
            sys.stdout.write(json.dumps(jsonable(d)) + "\n")
        found: dict[str, Any] = {"kind": "findings", "findings": [f.to_dict() for f in checked.findings]}
        if checked.error is not None:
            found["error"] = checked.error
        sys.stdout.write(json.dumps(jsonable(found)) + "\n")
        return
    # Lines quote the recording (transcripts, error messages): escapes shown, not obeyed.
    sys.stdout.write(f"{visible(file)}\n")
    for line in summary_lines(s):
        sys.stdout.write(visible(line) + "\n")
    for line in summary_findings_lines(checked.findings, checked.error):
        sys.stdout.write(line + "\n")


#: Characters of show's timeline held in memory; past them it goes to a temporary file.
SPOOL_CHARS = 32 << 20


class _Spool:
    """Lines kept while a recording is read: in memory, then past
    :data:`SPOOL_CHARS` characters in a temporary file. Lines go to :attr:`lines`
    (a list's append, not a method call a line); :meth:`spill` every so often
    counts them."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._chunks: list[str] = []
        self._chars = 0
        self._limit = SPOOL_CHARS
        self._file: Any = None

    def spill(self) -> None:
        chunk = "".join(self.lines)
        self.lines.clear()
        if self._file is None:
            self._chunks.append(chunk)
            self._chars += len(chunk)
            if self._chars <= self._limit:
                return
            self._file = tempfile.TemporaryFile(mode="w+", encoding="utf-8", newline="")
            chunk = "".join(self._chunks)
            self._chunks = []
        self._file.write(chunk)

    def copy_to(self, out: Any) -> None:
        self.spill()
        if self._file is None:
            for chunk in self._chunks:
                out.write(chunk)
            return
        with self._file:
            self._file.seek(0)
            shutil.copyfileobj(self._file, out, 1 << 20)


def _show_text(file: str, flt: Any = None) -> None:
    out = sys.stdout
    # One pass: the timeline is spooled (to a temporary file past 32 MiB) while
    # the header's totals are counted, then the header and the timeline are written.
    totals = AudioTotals()
    counts = {"client": 0, "server": 0}
    last_ns = 0
    timeline = _Spool()
    with open_recording(file) as reader:
        lines = timeline.lines
        put = lines.append
        for e in annotate(reader.messages(), totals):
            if len(lines) >= 4096:
                timeline.spill()
            m = e.msg
            counts[m.direction] += 1
            last_ns = m.t_ns
            if flt is not None and not flt.keep(e):
                continue
            arrow = "->" if m.from_client else "<-"
            typ = visible(shown_type(e.type)) if e.type else ("(binary)" if not m.is_text else "(no type)")
            put(
                f"{m.t_ns / 1e6:10.1f} ms  {m.direction:6} {arrow} {typ:56} {m.size:>10,} B  {visible(e.detail)}".rstrip()
                + "\n"
            )
        rec = reader.recording
    # The control records through the event view: every field checked for type and range.
    h = clean_header(rec.header)
    hs = Handshake.from_record(rec.handshake)
    close = Close.from_record(rec.close)
    end = End.from_record(rec.end)
    status = hs.status if hs is not None else None
    if close is not None:
        duration = close.t if close.t is not None else last_ns / 1e9
    else:
        duration = end.duration_s if end is not None and end.duration_s is not None else last_ns / 1e9
    # Every value from the recording is passed through visible(): a hostile
    # session's terminal escapes are shown as \x1b..., never sent to the terminal.
    out.write(f"{visible(file)}\n")
    out.write(f"  url          {visible(h.get('url'))}\n")
    out.write(f"  model        {visible(h.get('model') or '-')}\n")
    out.write(f"  started      {_fmt_time(h.get('started'))}\n")
    if hs is None:
        out.write("  handshake    (not recorded)\n")
    else:
        out.write(f"  handshake    HTTP {visible(status if status is not None else '?')} {visible(hs.reason or '')}".rstrip() + "\n")
    out.write(f"  subprotocol  {visible((hs.subprotocol if hs else None) or '-')}\n")
    if hs is not None and hs.refused:
        text = hs.response_body[:4096].decode("utf-8", "replace")
        out.write(f"  refused      {visible(' '.join(text.split())[:300])}\n")
    out.write(f"  duration     {duration:.3f} s\n")
    out.write(f"  messages     client {counts['client']}, server {counts['server']}\n")
    out.write(
        f"  audio        client {totals.client_ms / 1000:.2f} s, server {totals.server_ms / 1000:.2f} s\n"
    )
    if close is not None:
        out.write(
            f"  close        {visible(close.code if close.code is not None else '-')} {visible(repr(close.reason or ''))}"
            f" by {visible(close.by or '?')}"
            + (f" ({visible(close.error)})" if close.error else "")
            + "\n"
        )
    if rec.truncated:
        out.write("  note         recording was cut short (recorder stopped mid-session); shown up to the cut\n")
    timeline.copy_to(out)


def _tolerant_streams() -> None:
    """Text the stream cannot encode (a lone surrogate, anything but ASCII under
    ``PYTHONIOENCODING=ascii``) is written as a backslash escape, never raised on."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass


def main(args: list[str] | None = None) -> None:
    """The console entry point. Every command reports its own errors; behind them, any
    :class:`~rtproxy.errors.RtproxyError` becomes the one-line error with exit status 2,
    and any other exception a one-line internal error (``RTPROXY_DEBUG=1``: the traceback)."""
    _tolerant_streams()
    try:
        cli(args=args, prog_name="rtproxy")
    except RtproxyError as exc:
        fail(str(exc))
    except BrokenPipeError:
        # `rtproxy show ... | head`: the reader had enough. Nothing more reaches stdout.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        sys.exit(Exit.OK)
    except MemoryError:
        if os.environ.get("RTPROXY_DEBUG") == "1":
            raise
        fail("out of memory (the input is larger than this machine can hold, or was crafted)")
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, not a traceback
        if os.environ.get("RTPROXY_DEBUG") == "1":
            raise
        detail = " ".join(str(exc).split())
        if len(detail) > 300:
            detail = detail[:297] + "..."
        fail(f"internal error: {type(exc).__name__}: {detail} (please report with the recording)")


if __name__ == "__main__":
    main()
