"""``rtproxy replay``: argument parsing and printing; the work is in replay_server / replay_client."""

from __future__ import annotations

import os
import sys

import click

from rtproxy.io.format import RecordingError
from rtproxy.replay.script import Divergence, parse_speed

__all__ = ["replay"]


def fail(message: str) -> None:
    # Imported here: rtproxy.cli.main imports this module at its end.
    from rtproxy.cli.common import fail as cli_fail

    cli_fail(message)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--listen-host", default="127.0.0.1", show_default=True, help="Address to listen on (server replay).")
@click.option("--listen-port", default=8765, show_default=True, type=int, help="Port to listen on (0: any free port).")
@click.option("--speed", default="1.0", show_default=True, help="Divide recorded gaps by this; 0 or max: no waiting.")
@click.option(
    "--pace",
    type=click.Choice(["client", "clock", "server"]),
    default=None,
    help="Server replay: client (default: answer when the client asks, with the recorded gaps) or clock "
    "(recorded offsets). Client replay (--to): server (default: wait for the server events that came "
    "first) or clock.",
)
@click.option("--strict", is_flag=True, help="Close a diverging client with code 4900 and the reason.")
@click.option("--once", is_flag=True, help="Exit after the first session.")
@click.option(
    "--wait-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Server replay, client pace: seconds to wait for a client message the recording expects, "
    "from when it was due; then report it as a divergence and go on as if it had arrived "
    "(--strict: close with 4900). 0: wait forever.",
)
@click.option("--to", "to_url", default=None, help="Client replay: send the recorded client side to this endpoint.")
@click.option("--out-dir", default="recordings", show_default=True, help="Client replay: folder for the new .rtrec.")
@click.option("--header", "headers", multiple=True, help='Client replay: extra handshake header "Name: value".')
@click.option("--timeout", default=10.0, show_default=True, type=float, help="Client replay: longest wait for a server event.")
def replay(
    file: str,
    listen_host: str,
    listen_port: int,
    speed: str,
    pace: str | None,
    strict: bool,
    once: bool,
    wait_timeout: float,
    to_url: str | None,
    out_dir: str,
    headers: tuple[str, ...],
    timeout: float,
) -> None:
    """Replay a recording: serve its server side to any client, or (--to URL) send its client side.

    \b
    Server replay: point the client at the printed websocket_base_url; every
    connection gets the recorded server messages, byte-exact. Each session ends
    with a report line; exit status 1 when a session diverged. With client
    pace, a client message the recording expects that does not arrive within
    --wait-timeout seconds is a divergence too.
    \b
    Client replay: connects to URL (credentials: OPENAI_API_KEY or --header),
    sends the recorded client messages and records the new session to OUT_DIR.
    """
    try:
        factor = parse_speed(speed)
    except ValueError as exc:
        fail(f"--speed {speed!r}: {exc}" if "--speed" not in str(exc) else str(exc))
    if to_url is not None:
        _client_replay(file, to_url, out_dir, headers, pace or "server", factor, timeout)
        return
    if pace == "server":
        fail("--pace server is for client replay (--to URL); a replay server paces by client or clock")
    _server_replay(file, listen_host, listen_port, factor, pace or "client", strict, once, wait_timeout)


def _server_replay(
    file: str, host: str, port: int, speed: float, pace: str, strict: bool, once: bool, wait_timeout: float = 10.0
) -> None:
    from rtproxy.replay.server import ReplayConfig, SessionReport, load_summary, run_replay_server

    try:
        header, handshake = load_summary(file)
    except RecordingError as exc:
        fail(str(exc))
    cfg = ReplayConfig(file, host, port, speed, pace, strict, once, wait_timeout)

    def ready(bound: int) -> None:
        h = host if ":" not in host else f"[{host}]"
        status = handshake.get("status")
        what = f"refuses upgrades with HTTP {status}" if status not in (None, 101) else f"pace {pace}, speed {speed or 'max'}"
        click.echo(f"rtproxy replay: {file} ({header.get('model') or 'unknown model'}) on ws://{h}:{bound}; {what}")
        click.echo(f"  websocket_base_url=ws://{h}:{bound}/v1")
        sys.stdout.flush()

    def divergence(n: int, d: Divergence) -> None:
        click.echo(f"replay session #{n}: {d.message()}")
        sys.stdout.flush()

    def report(r: SessionReport) -> None:
        click.echo(r.line())
        sys.stdout.flush()

    try:
        code = run_replay_server(cfg, handshake, ready, divergence, report)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    from rtproxy.cli.common import Exit

    sys.exit(Exit.DIFFERENT if code else Exit.OK)


def _client_replay(
    file: str, url: str, out_dir: str, headers: tuple[str, ...], pace: str, speed: float, timeout: float
) -> None:
    if pace not in ("server", "clock"):
        fail(f"--pace {pace} with --to: expected server or clock")
    from rtproxy.replay.client import ClientReplayError, parse_header, run_client_replay

    extra: list[tuple[str, str]] = []
    for h in headers:
        try:
            extra.append(parse_header(h))
        except ValueError as exc:
            fail(str(exc))
    if not any(k.lower() in ("authorization", "api-key") for k, _ in extra) and os.environ.get("OPENAI_API_KEY"):
        extra.append(("Authorization", f"Bearer {os.environ['OPENAI_API_KEY']}"))
    try:
        result = run_client_replay(file, url, out_dir, extra, pace=pace, speed=speed, timeout=timeout)
    except RecordingError as exc:
        fail(str(exc))
    except ClientReplayError as exc:
        fail(str(exc))
    click.echo(result.line())
