"""Deadlines on PostgreSQL: a store that does not answer is a prompt error, never a hang.

A store can fail to answer in two ways, and each needs its own bound:

- **Down** (refused, reset): a pooled connection fails at once, but a pool then waits for a
  new one; each pool here waits `wait` seconds at most (psycopg_pool's `timeout`), and an
  attempt to connect gives up after libpq's `connect_timeout` (whole seconds, at least 2).
  A refused attempt makes the server *silent* (below) at once.
- **Frozen** (a SIGSTOPped server, a host that hangs while its kernel still ACKs): a statement
  waits for its answer for ever. The server's `statement_timeout` cannot fire in a server that
  does not run, TCP keepalives and `tcp_user_timeout` do not fire while the peer ACKs, and
  psycopg has no deadline for a statement (its `Connection.wait` takes one, but nothing that
  runs a statement passes it). So each wait of a connection for the server goes through a
  `Watchdog` (ledger/watchdog.py): one unanswered after `silence` seconds makes it try the
  server on a new connection, and if that fails too (within `wait`), the socket of every overdue
  wait is shut down. The blocked read then fails (OperationalError: the request is a 503) and
  the pool discards the broken connection. A server that accepts the new connection is only slow
  (a lock wait, a large insert, a rebuild's long statement): those waits go on. From then until
  a new connection answers again (tried every second), the server is *silent*: no statement is
  sent and no pool waits for a connection (StoreSilent, at once), so requests queued behind one
  another do not each wait out the deadlines in turn.

A write whose connection broke after it was sent is OutcomeUnknown (ledger/pgrecorder.py):
never sent again by the ledger, and answered so.
"""

from __future__ import annotations

import math
import select
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing.persistence import OperationalError


class StoreSilent(psycopg.OperationalError):
    """A statement not sent: the server did not answer a new connection when last tried
    (`Watchdog.silent`). A write refused so is known not to be stored."""


class OutcomeUnknown(OperationalError):
    """A write's connection broke after the write was sent: it may or may not be stored.
    Never sent again by the ledger (a registration without a key would be stored twice); the
    client may send it again, and one sent with its `source_record_id` or `Idempotency-Key`
    is recognised if it was stored."""


# A read whose connection broke at once (a pooled connection the server had closed) is asked
# again on another, within this many seconds of its first try; not one that failed later (cut
# by the watchdog: the server does not answer), which is a 503 at once.
RETRY_WITHIN_SECONDS = 1.0


@dataclass(frozen=True)
class StoreDeadlines:
    """How long a process waits for PostgreSQL (VLEDGER_STORE_WAIT_SECONDS and
    VLEDGER_STORE_SILENCE_SECONDS)."""

    wait: float = 2.0  # for a connection from a pool, and to open one
    silence: float = 2.0  # for an answer, before the server is tried on a new connection

    @property
    def connect_timeout(self) -> int:
        """libpq's connect_timeout: whole seconds, and libpq takes less than 2 as 2."""
        return max(2, math.ceil(self.wait))


def check_dropped(conn: Any) -> None:
    """A pool's `check`: raise if the server dropped a pooled connection. It writes to an idle
    connection only to end it (a restart, pg_terminate_backend, a reset: an error message,
    then the end of the stream), so one poll of the socket tells, and only then is a statement
    sent: the pool's own check sends one on every checkout, a round trip that doubled a
    one-row query's time."""
    from psycopg_pool import ConnectionPool

    if not hasattr(select, "poll"):
        ConnectionPool.check_connection(conn)
        return
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    if poller.poll(0):
        ConnectionPool.check_connection(conn)


def pool_timeout(error: BaseException) -> bool:
    """Whether a store error is a pool's wait for a connection running out: nothing of the
    request reached the server (not a write whose outcome is unknown)."""
    from psycopg_pool import PoolTimeout

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, PoolTimeout):
            return True
        seen = seen.__cause__
    return False
