"""``rtproxy record --workers N``: N lean proxies sharing the listening port.

One Python process carries as many sessions as one core allows. With N
workers, the parent binds N listening sockets to the same address with
``SO_REUSEPORT`` (one per address for each worker) and forks one worker per
socket set; the kernel spreads incoming connections over the sockets, so each
session (one TCP connection) is wholly carried, and recorded in its own file,
by one worker. mitmproxy binds its own servers and has no option for
``SO_REUSEPORT`` nor for a socket it is handed, so each worker's proxy is
given its sockets (:class:`~rtproxy.record.proxy.RecordConfig` ``sockets``).

The parent:

* creates mitmproxy's CA on a first start (:func:`make_ca`), so that every
  worker signs with the one on disk;
* checks that the address is free before binding the shared sockets (a bind
  without ``SO_REUSEPORT`` fails while anything else, another rtproxy
  included, listens there), so a port in use is the same one-line error as
  with one worker;
* prints the start-up lines once every worker is listening, or reports the
  first worker's start-up error and stops the others (exit 2);
* turns Ctrl-C or SIGTERM into one SIGTERM per worker (workers ignore SIGINT,
  so a terminal's Ctrl-C, which reaches the whole process group, is not counted
  twice): each worker closes its open sessions with 1001, prints their lines
  and exits; the parent waits for all of them and exits 0. A second Ctrl-C is
  passed on too: the workers then stop at once, as a lone recorder does;
* reports a worker that dies (stderr: which, its pid, its exit status or
  signal; the sessions it carried are cut short, their files read up to the
  cut), and starts a new one on the same sockets, so connections the kernel
  queued there are served. A worker that dies within
  :data:`RESTART_AFTER` seconds of its start is not restarted: its sockets
  are closed and the others take its share;
* takes its workers with it if it is killed outright (``PR_SET_PDEATHSIG``:
  SIGKILL, the same as killing a lone recorder).
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Callable

from rtproxy.errors import ProxyStartError
from rtproxy.record.proxy import RecordConfig, run_recorder

__all__ = ["run_workers", "default_workers", "listening_sockets", "make_ca", "RESTART_AFTER"]

#: A worker that dies sooner than this after its start is not restarted.
RESTART_AFTER = 2.0
_PR_SET_PDEATHSIG = 1


def default_workers() -> int:
    """``--workers`` when not given: the number of cores this process may run on
    (its CPU affinity). 1 where the kernel does not spread a ``SO_REUSEPORT``
    port's connections over its sockets, as Linux does (macOS, the BSDs)."""
    if not sys.platform.startswith("linux"):  # pragma: no cover - not Linux
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except OSError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


def _addresses(host: str, port: int) -> list[tuple[int, tuple]]:
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ProxyStartError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    seen: list[tuple[int, tuple]] = []
    for family, _, _, _, addr in infos:
        if (family, addr) not in seen:
            seen.append((family, addr))
    return seen


def _bind(family: int, addr: tuple, reuse_port: bool) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does on Unix
        if reuse_port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind(addr)
    except BaseException:
        s.close()
        raise
    return s


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listening_sockets(host: str, port: int, n: int) -> list[list[socket.socket]]:
    """n sets of listening sockets on host:port (all its addresses), SO_REUSEPORT.

    Port 0 picks one free port for all of them. Raises :class:`ProxyStartError`
    when the address cannot be had (in use, not local, not permitted)."""
    addrs = _addresses(host, port)
    made: list[list[socket.socket]] = []
    try:
        # A plain bind first: it fails if anything listens there, even another
        # rtproxy whose sockets allow SO_REUSEPORT (the kernel would share the port).
        probes: list[socket.socket] = []
        try:
            for family, addr in addrs:
                if port == 0 and probes:
                    addr = (addr[0], probes[0].getsockname()[1], *addr[2:])
                probes.append(_bind(family, addr, reuse_port=False))
            chosen = probes[0].getsockname()[1]
        finally:
            for p in probes:
                p.close()
        for _ in range(n):
            row: list[socket.socket] = []
            made.append(row)
            for family, addr in addrs:
                # Bound, not listening: the kernel hands connections only to listening
                # sockets, so the port answers once a worker's proxy is up (and its
                # --out-dir made), as with one worker. The worker's server listens.
                row.append(_bind(family, (addr[0], chosen, *addr[2:]), reuse_port=True))
    except OSError as exc:
        for row in made:
            for s in row:
                s.close()
        what = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            what = "address already in use; choose another --listen-port"
        raise ProxyStartError(f"cannot listen on {_where(host, port)}: {what}") from None
    return made


def make_ca(confdir: str | None) -> None:
    """Create mitmproxy's certificate authority in ``confdir`` (``~/.mitmproxy``)
    if it is not there yet, before any worker starts. On a first start each
    worker's mitmproxy would create its own, the workers racing to write the
    same files: the CA on disk, which clients are told to trust, would be one
    of them, and the other workers would sign with theirs (``--mode regular``
    clients then fail the TLS handshake on the connections those workers take)."""
    from mitmproxy.certs import CertStore
    from mitmproxy.options import CONF_BASENAME, CONF_DIR, KEY_SIZE

    path = Path(os.path.expanduser(confdir or CONF_DIR))
    try:
        if not (path / f"{CONF_BASENAME}-ca.pem").exists():
            CertStore.create_store(path, CONF_BASENAME, KEY_SIZE)
        dhparam = path / f"{CONF_BASENAME}-dhparam.pem"
        if not dhparam.exists():
            CertStore.load_dhparam(dhparam)  # writes mitmproxy's default parameters
    except OSError as exc:
        raise ProxyStartError(f"cannot create mitmproxy's CA in {path}: {exc.strerror or exc}") from None


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:  # pragma: no cover
            name = str(sig)
        return f"killed by {name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


class _Worker:
    def __init__(self, slot: int, pid: int, pipe: int, go: int) -> None:
        self.slot = slot
        self.pid = pid
        self.pipe = pipe  # read end: "configured\n", "ready\n" or "error <text>\n"
        self.go = go  # write end: b"g" lets the worker listen
        self.started = time.monotonic()
        self.configured = False
        self.ready = False
        self.buf = b""

    def close(self) -> None:
        for fd in (self.pipe, self.go):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.pipe = self.go = -1


def _child(cfg: RecordConfig, socks: list[socket.socket], all_socks: list[list[socket.socket]], pipe: int,
           go: int, parent: int, on_end: Callable[..., None]) -> int:
    """In a forked worker: run one recorder on socks; report on pipe, listen once go says so."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent passes Ctrl-C on as SIGTERM
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        return 1
    for row in all_socks:
        for s in row:
            if s not in socks:
                s.close()

    async def before_listen() -> None:
        # Configured (--out-dir made): wait until every worker is, so that the port
        # answers only once all of them are (a client may rely on that).
        import asyncio

        os.write(pipe, b"configured\n")
        loop = asyncio.get_running_loop()
        got: asyncio.Future[bytes] = loop.create_future()

        def readable() -> None:
            if not got.done():
                got.set_result(os.read(go, 1))

        loop.add_reader(go, readable)
        try:
            if await got != b"g":
                raise ProxyStartError("stopped while starting")
        finally:
            loop.remove_reader(go)
            os.close(go)

    wcfg = RecordConfig(cfg.listen_host, cfg.listen_port, cfg.upstream, cfg.out_dir, cfg.mode,
                        cfg.ssl_insecure, cfg.confdir, sockets=socks, stop_signals=(signal.SIGTERM,),
                        before_listen=before_listen)

    def ready() -> None:
        os.write(pipe, b"ready\n")

    try:
        return run_recorder(wcfg, ready, on_end)
    except ProxyStartError as exc:
        os.write(pipe, b"error " + " ".join(str(exc).split()).encode("utf-8", "replace")[:3000] + b"\n")
        return 2
    except OSError as exc:
        os.write(pipe, b"error " + f"cannot listen: {exc.strerror or exc}".encode("utf-8", "replace") + b"\n")
        return 2


def _missing_dirs(path: str) -> list[Path]:
    """The folders of path that do not exist yet, outermost first."""
    out = []
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return out[::-1]


def run_workers(
    cfg: RecordConfig,
    n: int,
    on_ready: Callable[[], None],
    on_end: Callable[..., None],
    log: Callable[[str], None] | None = None,
) -> int:
    """Run n workers until SIGINT/SIGTERM (see the module docstring). Returns the
    exit status: 0 once every worker has closed its sessions and exited."""
    say = log or (lambda text: (sys.stderr.write(text + "\n"), sys.stderr.flush()))
    missing = _missing_dirs(cfg.out_dir)
    make_ca(cfg.confdir)
    socks = listening_sockets(cfg.listen_host, cfg.listen_port, n)
    parent = os.getpid()
    workers: dict[int, _Worker] = {}
    stopping = [0]
    closed_slots: set[int] = set()

    def spawn(slot: int, go_now: bool = False) -> _Worker:
        r, w = os.pipe()
        gr, gw = os.pipe()
        if go_now:  # a replacement: it listens as soon as it is configured
            os.write(gw, b"g")
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(r)
                os.close(gw)
                for other in workers.values():
                    other.close()
                code = _child(cfg, socks[slot], socks, w, gr, parent, on_end)
            except BaseException as exc:  # noqa: BLE001 - reported by the parent
                try:
                    os.write(w, b"error " + f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")[:3000] + b"\n")
                except OSError:
                    pass
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        os.close(w)
        os.close(gr)
        wk = _Worker(slot, pid, r, gw)
        if go_now:
            wk.configured = wk.ready = True  # not waited for: the parent is serving
        workers[pid] = wk
        return wk

    def forward(signum: int, _frame: object) -> None:
        if os.getpid() != parent:  # a worker, before it reset its handlers
            return
        stopping[0] += 1
        if stopping[0] == 1:
            # No new connections: they would only be cut as the workers stop.
            for row in socks:
                for s in row:
                    s.close()
        for pid in list(workers):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for slot in range(n):
            spawn(slot)
        error = _wait_ready(workers, stopping)
        if error is not None or stopping[0]:
            forward(signal.SIGTERM, None)
            _reap_all(workers)
            for d in reversed(missing):  # a failed start leaves no empty --out-dir
                try:
                    d.rmdir()
                except OSError:
                    break
            if error is not None:
                raise ProxyStartError(error)
            return 0
        on_ready()
        while workers:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:  # pragma: no cover
                break
            wk = workers.pop(pid, None)
            if wk is None:
                continue
            wk.close()
            if stopping[0]:
                if status != 0:
                    say(f"rtproxy record: worker {wk.slot + 1} of {n} (pid {pid}) ended with {_status(status)} while stopping")
                continue
            lived = time.monotonic() - wk.started
            what = f"rtproxy record: worker {wk.slot + 1} of {n} (pid {pid}) died: {_status(status)}"
            what += "; the sessions it carried were cut short (their files read up to the cut)"
            if lived < RESTART_AFTER:
                for s in socks[wk.slot]:
                    s.close()
                closed_slots.add(wk.slot)
                left = n - len(closed_slots)
                say(f"{what}; it lived {lived:.1f} s, so it is not restarted"
                    + (f" ({left} worker{'s' if left != 1 else ''} left)" if left else "; no worker left"))
                if not left:
                    return 2
                continue
            new = spawn(wk.slot, go_now=True)
            say(f"{what}; worker {wk.slot + 1} restarted (pid {new.pid})")
        return 0
    finally:
        for sig, h in old.items():
            # Stopping: every worker has closed out its sessions; a late Ctrl-C while this
            # process exits is ignored (as a lone recorder does), not a KeyboardInterrupt
            # traceback from the interpreter's exit handlers.
            signal.signal(sig, signal.SIG_IGN if stopping[0] else h)
        for row in socks:
            for s in row:
                s.close()


def _wait_ready(workers: dict[int, _Worker], stopping: list[int]) -> str | None:
    """Until every worker said ready: None, or the first start-up error. Once all of
    them are configured, each is told to listen."""
    told = False
    while not stopping[0]:
        if not told and all(w.configured for w in workers.values()):
            for w in workers.values():
                os.write(w.go, b"g")
            told = True
        pending = [w for w in workers.values() if not w.ready]
        if not pending:
            return None
        try:
            r, _, _ = select.select([w.pipe for w in pending], [], [], 0.5)
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        if stopping[0]:
            return None  # stopped while starting: the workers are told, nothing is wrong
        for w in pending:
            if w.pipe not in r:
                continue
            data = os.read(w.pipe, 4096)
            if not data:
                pid, status = os.waitpid(w.pid, 0)
                workers.pop(w.pid, None)
                w.close()
                return f"a worker exited while starting ({_status(status)})"
            w.buf += data
            while b"\n" in w.buf:
                line, w.buf = w.buf.split(b"\n", 1)
                if line == b"configured":
                    w.configured = True
                elif line == b"ready":
                    w.ready = True
                else:
                    return line.removeprefix(b"error ").decode("utf-8", "replace")
    return None


def _reap_all(workers: dict[int, _Worker]) -> None:
    for pid, w in list(workers.items()):
        w.close()  # a worker waiting for its go reads EOF and stops
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # pragma: no cover
            pass
        workers.pop(pid, None)
