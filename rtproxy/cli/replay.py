"""``rtproxy replay``: argument parsing and printing; the work is in replay_server / replay_client."""

from __future__ import annotations

import math
import os
import sys

import click

from rtproxy.errors import FaultSpecError
from rtproxy.export.textsafe import visible
from rtproxy.io.format import RecordingError
from rtproxy.replay.script import Divergence, parse_speed

__all__ = ["replay"]


def fail(message: str) -> None:
    # Imported here: rtproxy.cli.main imports this module at its end.
    from rtproxy.cli.common import fail as cli_fail

    cli_fail(message)


def _finite(value: float) -> float:
    """--wait-timeout: NaN and infinity are no number of seconds (0 is "wait forever")."""
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds (0: wait forever)")
    return value


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
    callback=lambda ctx, param, value: _finite(value),
    help="Server replay, client pace: seconds to wait for a client message the recording expects, "
    "from when it was due; then report it as a divergence and go on as if it had arrived "
    "(--strict: close with 4900). 0: wait forever.",
)
@click.option("--to", "to_url", default=None, help="Client replay: send the recorded client side to this endpoint.")
@click.option("--out-dir", default="recordings", show_default=True, help="Client replay: folder for the new .rtrec.")
@click.option("--header", "headers", multiple=True, help='Client replay: extra handshake header "Name: value".')
@click.option("--timeout", default=10.0, show_default=True, type=float, help="Client replay: longest wait for a server event.")
@click.option(
    "--exact",
    is_flag=True,
    help="Send the recorded messages byte-exact: no ids, event ids or metadata the live side chose "
    "substituted for the recorded ones.",
)
@click.option("--tls", is_flag=True, help="Server replay: serve wss:// (a self-signed certificate for 127.0.0.1/localhost, or --cert/--key).")
@click.option("--cert-dir", default=None, type=click.Path(file_okay=False), help="Server replay, --tls: keep the generated certificate here (reused while valid) instead of a temporary folder.")
@click.option("--cert", "cert_file", default=None, type=click.Path(dir_okay=False, exists=True), help="Server replay: serve wss:// with this certificate (PEM, chain first); needs --key.")
@click.option("--key", "key_file", default=None, type=click.Path(dir_okay=False, exists=True), help="Server replay: the private key of --cert (PEM).")
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="SPEC",
    help="Server replay: inject a fault, e.g. 'close 1011 after response.output_audio.delta#3', "
    "'drop response.done#1', 'delay 2.5s before response.created#2', 'duplicate TYPE#N', "
    "'error CODE after response.create#2', 'fail response#1 inference_rate_limit_exceeded', "
    "'expire at 30s', 'stall after TYPE#N', 'refuse 429' (README: Fault injection). Repeatable.",
)
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
    exact: bool = False,
    tls: bool = False,
    cert_dir: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    faults: tuple[str, ...] = (),
) -> None:
    """Replay a recording: serve its server side to any client, or (--to URL) send its client side.

    \b
    Server replay: point the client at the printed websocket_base_url; every
    connection gets the recorded server messages, byte-exact but for the values
    the live client chose itself (item ids, event ids, metadata), which replace
    the recorded ones where the server echoes them (--exact: not even those).
    Each session ends with a report line; exit status 1 when a session
    diverged. With client pace, a client message the recording expects that
    does not arrive within --wait-timeout seconds is a divergence too. --tls
    serves wss:// and prints how to trust its certificate.
    \b
    Client replay: connects to URL (credentials: OPENAI_API_KEY or --header),
    sends the recorded client messages (with the ids the live server assigned
    in place of the recorded ones, unless --exact) and records the new session
    to OUT_DIR.
    """
    try:
        factor = parse_speed(speed)
    except ValueError as exc:
        fail(f"--speed {speed!r}: {exc}" if "--speed" not in str(exc) else str(exc))
    if to_url is not None:
        if tls or cert_dir or cert_file or key_file:
            fail("--tls, --cert-dir, --cert and --key are for server replay; --to takes a wss:// URL")
        if faults:
            fail("--fault is for server replay: it changes what the replay sends a client, not what --to sends")
        _client_replay(file, to_url, out_dir, headers, pace or "server", factor, timeout, exact)
        return
    if pace == "server":
        fail("--pace server is for client replay (--to URL); a replay server paces by client or clock")
    if (cert_file is None) != (key_file is None):
        fail("--cert and --key go together")
    if cert_dir and cert_file:
        fail("--cert-dir is where a generated certificate goes; with --cert/--key none is generated")
    tls_files = _tls_files(tls or cert_dir is not None or cert_file is not None, cert_dir, cert_file, key_file)
    _server_replay(
        file, listen_host, listen_port, factor, pace or "client", strict, once, wait_timeout, exact, tls_files,
        faults,
    )


def _tls_files(
    wanted: bool, cert_dir: str | None, cert_file: str | None, key_file: str | None
) -> tuple[str, str, bool] | None:
    """(certificate, key, generated) for --tls, or None for ws://."""
    if not wanted:
        return None
    if cert_file and key_file:
        return cert_file, key_file, False
    from rtproxy.replay.tls import cert_for

    try:
        cert, key, generated = cert_for(cert_dir)
    except OSError as exc:
        fail(f"--cert-dir {cert_dir}: cannot write a certificate there: {exc.strerror or exc}")
    if cert_dir is None:
        import atexit
        import shutil

        atexit.register(shutil.rmtree, cert.parent, True)  # a temporary certificate goes with the replay
    return str(cert), str(key), generated


def _server_replay(
    file: str, host: str, port: int, speed: float, pace: str, strict: bool, once: bool, wait_timeout: float = 10.0,
    exact: bool = False, tls_files: tuple[str, str, bool] | None = None, faults: tuple[str, ...] = (),
) -> None:
    from rtproxy.replay.server import ReplayConfig, SessionReport, load_summary, run_replay_server

    try:
        header, handshake = load_summary(file)
    except RecordingError as exc:
        fail(str(exc))
    cfg = ReplayConfig(file, host, port, speed, pace, strict, once, wait_timeout, exact)
    if faults:
        from rtproxy.replay.faults import parse_faults

        try:
            parse_faults(faults)
        except FaultSpecError as exc:
            fail(str(exc))  # "--fault 'SPEC': what is wrong", exit 2, before listening
        cfg.faults = list(faults)
    scheme = "ws"
    if tls_files is not None:
        import ssl

        from rtproxy.replay.tls import server_context

        try:
            cfg.tls = server_context(tls_files[0], tls_files[1])
        except (OSError, ssl.SSLError) as exc:
            fail(f"--cert {tls_files[0]} / --key {tls_files[1]}: cannot load them: {exc}")
        scheme = "wss"

    def ready(bound: int) -> None:
        h = host if ":" not in host else f"[{host}]"
        status = handshake.get("status")
        what = f"refuses upgrades with HTTP {status}" if status not in (None, 101) else f"pace {pace}, speed {speed or 'max'}"
        if exact:
            what += ", exact (no substitutions)"
        if faults:
            what += f"; {len(faults)} fault{'s' if len(faults) > 1 else ''}: " + "; ".join(faults)
        model = visible(header.get("model") or "unknown model")
        click.echo(f"rtproxy replay: {visible(file)} ({model}) on {scheme}://{h}:{bound}; {visible(what)}")
        click.echo(f"  websocket_base_url={scheme}://{h}:{bound}/v1")
        if tls_files is not None:
            cert, _, generated = tls_files
            made = "generated a self-signed certificate" if generated else "certificate"
            click.echo(f"  TLS: {made} {cert}; to trust it:")
            click.echo(f"    Node:   NODE_EXTRA_CA_CERTS={cert}")
            click.echo(f"    Python: SSL_CERT_FILE={cert}  (or ssl.create_default_context(cafile=...))")
            click.echo(f"    curl:   --cacert {cert}")
        sys.stdout.flush()

    def divergence(n: int, d: Divergence) -> None:
        click.echo(f"replay session #{n}: {d.message()}")
        sys.stdout.flush()

    def report(r: SessionReport) -> None:
        click.echo(visible(r.line()))
        sys.stdout.flush()

    try:
        code = run_replay_server(cfg, handshake, ready, divergence, report)
    except FaultSpecError as exc:
        fail(str(exc))  # names an event the recording does not have: checked before listening
    except RecordingError as exc:
        # Damage met mid-session: the replay stopped there; the error says where.
        fail(f"{exc}; the replay stopped there")
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    from rtproxy.cli.common import Exit

    sys.exit(Exit.DIFFERENT if code else Exit.OK)


def _client_replay(
    file: str, url: str, out_dir: str, headers: tuple[str, ...], pace: str, speed: float, timeout: float,
    exact: bool = False,
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
        from rtproxy.cli.progress import progress_bar

        with progress_bar("replay") as progress:
            result = run_client_replay(file, url, out_dir, extra, pace=pace, speed=speed, timeout=timeout, exact=exact,
                                       progress=progress)
    except RecordingError as exc:
        fail(str(exc))
    except ClientReplayError as exc:
        fail(str(exc))
    click.echo(visible(result.line()))
