"""A TCP proxy in front of PostgreSQL that a test can take down, freeze and bring back up.

The real server is shared and must never be stopped or signalled; this stands in for it:

- `down()`: every connection through the proxy is reset and new ones are refused (nothing
  listens on the port), as when PostgreSQL has stopped or its host is gone;
- `freeze()`: connections stay open, and new ones are accepted by the kernel, but nothing is
  forwarded either way, as when PostgreSQL is SIGSTOPped: the kernel still ACKs what is sent,
  so neither keepalives nor `tcp_user_timeout` notice, and nothing ever answers;
- `lose_answers()`: what the client sends reaches the server, but no answer comes back, as
  when a connection dies just after a COMMIT went out: the write is stored, and the client
  cannot know it;
- `up()`: back to forwarding (a frozen connection goes on where it stopped, as after
  SIGCONT; a connection reset while down stays gone).
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

UPSTREAM = ("127.0.0.1", 5432)
CHUNK = 64 * 1024
TICK = 0.05  # how often an idle pump looks at the proxy's state


class StoreProxy:
    """Forwards 127.0.0.1:`port` to `upstream`, one pair of threads per connection."""

    def __init__(self, upstream: tuple[str, int] = UPSTREAM) -> None:
        self.upstream = upstream
        self.state = "up"
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listener: socket.socket | None = None
        self._closed = False
        self.port = self._listen(0)

    def _listen(self, port: int) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True,
                         name=f"proxy-accept-{port}").start()
        bound: int = listener.getsockname()[1]
        return bound

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # the listener was closed: down, or the proxy closed
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._pairs.append((client, server))
            for source, sink, held in ((client, server, ("frozen",)),
                                       (server, client, ("frozen", "deaf"))):
                threading.Thread(target=self._pump, args=(source, sink, held), daemon=True,
                                 name="proxy-pump").start()

    def _pump(self, source: socket.socket, sink: socket.socket, held: tuple[str, ...]) -> None:
        """Copy `source` to `sink`, except in the states `held`: then read nothing (the
        kernel buffers and ACKs what arrives, up to its window, as a stopped server's kernel
        does)."""
        try:
            while True:
                if self.state in held:
                    threading.Event().wait(TICK)
                    continue
                readable, _, _ = select.select([source], [], [], TICK)
                if not readable or self.state in held:
                    continue
                data = source.recv(CHUNK)
                if not data:
                    break
                sink.sendall(data)
        except (OSError, ValueError):  # reset or closed meanwhile (down, or the peer)
            pass
        finally:
            self._drop(source, sink)

    def _drop(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._pairs = [p for p in self._pairs if p[0] not in sockets]
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def down(self) -> None:
        """Reset every connection and refuse new ones."""
        self.state = "down"
        if self._listener is not None:
            # shutdown first: close alone leaves a thread blocked in accept() holding the
            # socket, which then takes one more connection
            with suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            _reset(client)
            _reset(server)

    def freeze(self) -> None:
        """Keep every socket open and forward nothing."""
        self.state = "frozen"

    def lose_answers(self) -> None:
        """Forward what clients send; hold back every answer."""
        self.state = "deaf"

    def up(self) -> None:
        """Forward again (listening again on the same port after `down`)."""
        if self._listener is None and not self._closed:
            self._listen(self.port)
        self.state = "up"

    def url(self, database_url: str) -> str:
        """`database_url` (a PostgreSQL URL of the test's schema) through the proxy."""
        host_port = f"{self.upstream[0]}:{self.upstream[1]}"
        assert host_port in database_url, database_url
        return database_url.replace(host_port, f"127.0.0.1:{self.port}")

    def close(self) -> None:
        self._closed = True
        self.down()


def _reset(sock: socket.socket) -> None:
    """End a connection now, and close it with a RST: the peer's next read or write fails.
    Shut down first: a pump thread in select() on the socket holds it open past close(), and
    the peer could still take the connection for alive for that long (up to TICK)."""
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        sock.close()


@contextmanager
def store_proxy() -> Iterator[StoreProxy]:
    """A proxy to the test server, closed afterwards."""
    proxy = StoreProxy()
    try:
        yield proxy
    finally:
        proxy.close()
