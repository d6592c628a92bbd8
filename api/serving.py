"""Running the API under uvicorn: listening sockets that keep Nagle off, one per worker.

uvicorn (0.54) binds the socket for `--workers N` itself with `proto` 0; accepted connections
inherit it, and asyncio turns on TCP_NODELAY only for sockets that say IPPROTO_TCP. Without it
every keep-alive response after the first waited ~40 ms for the client's delayed ACK: a 6 ms
write answered in 48 ms (uvicorn issue #3149). The single-process path is not affected. Our
sockets say IPPROTO_TCP, and where SO_REUSEPORT exists each worker gets its own
(`BalancedMultiprocess`); elsewhere the shared socket is fixed up (`TcpConfig.bind_socket`).
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

APP = "api.app:app_from_env"
# Read by prometheus_client when it is imported: set, every metric's value lives in a file
# there (api/metrics.py). This module imports the library only inside functions, after it.
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# A server process makes many short-lived objects per request and keeps its start-up objects
# for ever. The collector's default young-generation threshold (700 allocations) ran full
# collections often enough to set the p99 of a 50-connection read load (93 ms against a
# p50 of 14 ms); see tune_collector.
YOUNG_THRESHOLD = 50_000
# httptools parses a URL's parts with 16-bit offsets: a longer target cannot be read.
MAX_TARGET_BYTES = 65_535
_REASONS = {400: b"Bad Request", 414: b"URI Too Long"}


def tune_collector() -> None:
    """For a server process: freeze what start-up made, collect the young generation less often.

    Not for tests or the CLI: frozen objects are never collected, and a test run builds
    hundreds of apps.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 20)


class HeldHeaders:
    """A transport that holds a response's status line and headers until its body is written.

    uvicorn writes the head of a response when the app sends `http.response.start` and the body
    on `http.response.body`: two `send()` calls and two TCP segments for every small answer,
    since Nagle is off. Held, the head leaves with the first body bytes in one segment (as
    aiohttp does since 3.12). Nothing is reordered: every write, `close()` and the end of a
    response flush what is held first; an interim `1xx` head is never held.
    """

    __slots__ = ("_held", "_raw")

    def __init__(self, raw: asyncio.BaseTransport) -> None:
        self._raw = raw
        self._held = b""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held:
            data, self._held = self._held + data, b""
        elif (data[:9] == b"HTTP/1.1 " and data[9:10] != b"1"
              and bytes(data[-4:]) == b"\r\n\r\n"):
            self._held = bytes(data)
            return
        self._raw.write(data)  # type: ignore[attr-defined]

    def flush(self) -> None:
        if self._held:
            data, self._held = self._held, b""
            self._raw.write(data)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.flush()
        self._raw.close()

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's own
        return getattr(self._raw, name)


class OneSegmentProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing a small response's head and body in one `send()`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, but behave as one.
        super().connection_made(HeldHeaders(transport))  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        # A HEAD answer, or a body-less one, writes no body: its head leaves here.
        self.transport.flush()  # type: ignore[attr-defined]
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        """A request the HTTP parser refused, answered as problem details like every other
        error, not uvicorn's plain text (bb34 F6). A target longer than 65,535 bytes is the
        one refusal a client meets by accident (httptools counts URL parts in 16 bits): a
        414 that says so."""
        from api.errors import problem_bytes

        if len(self.url) > MAX_TARGET_BYTES:
            status, detail = 414, (f"the request target is {len(self.url):,} bytes long; at "
                                   f"most {MAX_TARGET_BYTES:,} are read (a cursor is a few "
                                   "hundred)")
        else:
            status, detail = 400, f"the request is not well-formed HTTP/1.1 ({msg})"
        body = problem_bytes(status, detail)
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: application/problem+json\r\ncontent-length: %d\r\n"
                    b"connection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def _family(host: str | None) -> socket.AddressFamily:
    """IPv6 for an address with colons, else IPv4."""
    return socket.AF_INET6 if host and ":" in host else socket.AF_INET


class TcpConfig(uvicorn.Config):
    """uvicorn's settings, with a TCP listening socket that says it is TCP."""

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
            sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, sock.detach())
            sock.set_inheritable(True)
        return sock

    def reuse_port_socket(self) -> socket.socket:
        """A TCP socket bound to the port with SO_REUSEPORT, not yet listening (the worker that
        serves it listens): each worker gets its own, and the kernel spreads connections."""
        sock = socket.socket(_family(self.host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self.host, self.port))
        sock.set_inheritable(True)
        return sock


class MetricsMultiprocess(Multiprocess):
    """uvicorn's supervisor, telling prometheus_client when a worker has gone.

    In multiprocess mode (see api/metrics.py) a `live*` gauge is merged over the workers that
    have not been marked dead (`mark_process_dead`, what gunicorn's `child_exit` hook is for).
    uvicorn replaces workers on several paths (a worker that died or hung, SIGHUP, SIGTTOU, a
    replacement that never became ready) and has no hook for any: every half second, between
    its own checks, the files of a process that is no longer one of its workers are marked
    dead. A worker's counters and histograms are kept, so no total goes back.
    """

    metrics_dir: str | None = None

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        if self.metrics_dir is not None:
            forget_dead_workers(self.metrics_dir, {p.pid for p in self.processes})


def forget_dead_workers(directory: str, workers: set[int | None]) -> list[int]:
    """Mark dead every process with live-gauge files in `directory` that is not one of
    `workers`; answers their ids."""
    # Imported here, not with this module: prometheus_client picks its kind of values on
    # import, from the environment `serve` sets (or clears) first.
    from prometheus_client.multiprocess import mark_process_dead

    gone = set()
    for name in os.listdir(directory):
        # gauge_<mode>_<pid>.db; counters and histograms are kept whoever wrote them
        parts = name[:-3].split("_") if name.endswith(".db") else []
        if len(parts) == 3 and parts[0] == "gauge" and parts[1].startswith("live"):
            pid = int(parts[2]) if parts[2].isdigit() else None
            if pid is not None and pid not in workers:
                gone.add(pid)
    for pid in sorted(gone):
        mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
    return sorted(gone)


class BalancedMultiprocess(MetricsMultiprocess):
    """uvicorn's supervisor, giving each worker (and each restarted one) a socket of its own.

    With one shared listening socket, the worker that wakes first accepts every pending
    connection in one go (asyncio and uvloop accept until the queue is empty): 50 clients
    connecting at once could land 45 on one worker. That worker then did the work of two,
    and volunteer-hours reads ran at 1,500 req/s instead of 4,000, depending on the run.
    """

    config: TcpConfig

    @property
    def sockets(self) -> list[socket.socket]:
        return [self.config.reuse_port_socket()]

    @sockets.setter
    def sockets(self, value: list[socket.socket]) -> None:
        """uvicorn's constructor sets the shared list; every worker binds its own instead."""


def ensure_port_free(host: str, port: int) -> None:
    """Raise OSError (address in use) if another process listens on the port.

    Workers bind with SO_REUSEPORT, which lets any process of the same user bind the same
    port too: a second server would silently share the first one's connections (half the
    requests answered from another ledger). A plain bind first fails as uvicorn's own does.
    """
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


# How long a stopping server (SIGTERM) waits for the requests in flight before it closes the
# connections left: a client that sent half a request and stalled held a stop for 120 s.
GRACEFUL_SECONDS = 10
# How long the supervisor waits for a worker's sign of life before it kills and replaces it.
# uvicorn's 5 s killed workers still importing the app on a busy machine, over and over
# ("Child process [...] died", bb16); a hung worker is found a little later instead.
WORKER_HEALTHCHECK_SECONDS = 30


def serve(host: str, port: int, workers: int, log_level: str) -> None:
    """Serve the app from the environment's settings in `workers` processes."""
    # The app logs one JSON line per request with its request id; uvicorn's own access log
    # would say the same thing again, less usefully.
    config = TcpConfig(APP, factory=True, host=host, port=port, workers=workers,
                       log_level=log_level, access_log=False, http=OneSegmentProtocol,
                       timeout_graceful_shutdown=GRACEFUL_SECONDS,
                       timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS)
    if workers == 1:
        # One process: the plain in-memory registry (a directory inherited from the
        # environment would only make every request write to its files).
        os.environ.pop(MULTIPROC_DIR, None)
        uvicorn.Server(config).run()
        return
    with metrics_directory() as directory:
        supervisor = (BalancedMultiprocess(config, sockets=[])
                      if hasattr(socket, "SO_REUSEPORT")
                      else MetricsMultiprocess(config, sockets=[config.bind_socket()]))
        supervisor.metrics_dir = directory
        supervisor.run()


METRICS_PREFIX = "vledger-metrics-"


def _sweep_abandoned_metrics() -> None:
    """Remove the metrics directories of servers that died without cleaning up (SIGKILL, a
    power cut): each is named after its server's pid, and one whose pid no longer runs is
    nobody's. Only this user's; a pid reused by another process keeps its directory."""
    root = Path(tempfile.gettempdir())
    for path in root.glob(f"{METRICS_PREFIX}*-*"):
        pid = path.name.removeprefix(METRICS_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or not path.is_dir() or path.stat().st_uid != os.getuid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            continue  # alive, someone else's


@contextmanager
def metrics_directory() -> Iterator[str]:
    """A fresh directory of this server's own for the workers' metrics (api/metrics.py),
    named in the environment the workers start with; removed when the server stops.

    Fresh: files left by an earlier run would be merged into this one's figures. Private
    (mode 0700, `mkdtemp`): a directory inherited from the environment could be another
    server's. Set here, before any worker starts, since prometheus_client reads it on import;
    the workers are started afresh (uvicorn's spawn), not forked from this process.
    """
    _sweep_abandoned_metrics()
    directory = tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-")
    before = os.environ.get(MULTIPROC_DIR)
    os.environ[MULTIPROC_DIR] = directory
    try:
        yield directory
    finally:
        if before is None:
            os.environ.pop(MULTIPROC_DIR, None)
        else:
            os.environ[MULTIPROC_DIR] = before
        shutil.rmtree(directory, ignore_errors=True)
