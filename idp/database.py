"""How long idp waits for its database: never longer than ``IDP_DATABASE_TIMEOUT``.

A database that stops answering must cost a request a 503 within seconds
(idp.web.errors), not the length of the stall. Each wait has its own bound:

* connecting: libpq's ``connect_timeout`` (at least 2 s, libpq's own floor);
* a connection from the pool: ``pool_timeout``;
* an answer from PostgreSQL: :class:`BoundedConnection`, on the client's clock;
* SQLite's lock of another writer: its busy timeout.

PostgreSQL's ``statement_timeout`` is no help for the answer: a server whose processes
are stopped (a fail-over, a storage stall) runs no timer, and its kernel still
acknowledges every packet and keepalive probe, so neither TCP keepalives nor
``tcp_user_timeout`` notice it either. Only the client can count.
"""

from __future__ import annotations

from collections.abc import Generator
from time import monotonic
from typing import Any, TypeVar

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import Engine

# What the CLI keeps: a command (a migration, a purge) takes as long as its work does,
# and an operator at a terminal can interrupt it.
CLI_SQLITE_BUSY_SECONDS = 30
CLI_CONNECT_SECONDS = 5
# libpq refuses to wait less for a connection (connectDBComplete in fe-connect.c).
LIBPQ_MIN_CONNECT_SECONDS = 2

T = TypeVar("T")


class DatabaseStalled(psycopg.OperationalError):
    """PostgreSQL sent no answer within the connection's wait limit."""


def engine_options(url: str, wait_limit: int | None) -> dict[str, Any]:
    """SQLAlchemy engine options; ``wait_limit`` None is the CLI's, without the bounds."""
    # hide_parameters keeps bound values (hashes, emails) out of error messages and logs.
    if url.startswith("sqlite"):
        # A gevent worker waiting for SQLite's lock holds up all its requests, and at
        # gunicorn's 30 s timeout it is killed; the busy timeout is the wait for that lock.
        busy = CLI_SQLITE_BUSY_SECONDS if wait_limit is None else wait_limit
        return {"hide_parameters": True, "connect_args": {"timeout": busy}}
    # No pre-ping: it costs a round trip on every checkout. A connection found dead fails
    # its request with a 503 (idp.web.errors), and SQLAlchemy then discards every pooled
    # connection opened before it, so the next requests connect afresh; pool_recycle
    # retires idle connections before a server or proxy timeout closes them.
    options: dict[str, Any] = {"hide_parameters": True, "pool_recycle": 300}
    if wait_limit is None:
        options["connect_args"] = {"connect_timeout": CLI_CONNECT_SECONDS}
        return options
    connect = max(LIBPQ_MIN_CONNECT_SECONDS, wait_limit)
    return options | {"pool_timeout": wait_limit, "connect_args": {"connect_timeout": connect}}


def bound_postgres_waits(engine: Engine, wait_limit: int) -> None:
    """Open the engine's PostgreSQL connections as :class:`BoundedConnection`."""

    def connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> BoundedConnection:
        connection = BoundedConnection.connect(*cargs, **cparams)
        connection.wait_limit = wait_limit
        return connection

    event.listen(engine, "do_connect", connect)


class BoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection that waits at most ``wait_limit`` seconds for each answer.

    Every exchange with the server (a statement, a commit, a rollback) goes through
    ``wait``. Past the limit the connection is closed, since it is in the middle of a
    message and no further one could be read from it: SQLAlchemy then sees a closed
    connection, takes the error for a disconnect and drops the pool's older connections.
    """

    wait_limit: float | None = None

    def wait(self, gen: Generator[Any, Any, T], *args: Any, **kwargs: Any) -> T:
        if self.wait_limit is None:
            return super().wait(gen, *args, **kwargs)
        try:
            return super().wait(_until(gen, self.wait_limit), *args, **kwargs)
        except DatabaseStalled:
            self.close()
            raise


def _until(gen: Generator[Any, Any, T], limit: float) -> Generator[Any, Any, T]:
    """``gen``, which raises DatabaseStalled once ``limit`` seconds have passed.

    psycopg's wait functions resume the generator whenever the socket is ready and,
    while it is not, every fraction of a second with nothing ready, so the clock is
    read often enough.
    """
    deadline = monotonic() + limit
    try:
        state = next(gen)
        while True:
            ready = yield state
            # Only while the socket has nothing: an answer that has arrived is read however
            # late this greenlet gets to run (its gevent worker may be busy signing).
            if not ready and monotonic() >= deadline:
                raise DatabaseStalled(f"no answer from the database within {limit:g} s")
            state = gen.send(ready)
    except StopIteration as done:
        return done.value
