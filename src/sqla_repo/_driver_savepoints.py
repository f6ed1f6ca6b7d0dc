"""The SAVEPOINT around a write made of statements, sent straight to the driver.

A write of :mod:`sqla_repo._statement_writes` runs inside a plain ``SAVEPOINT`` on the
session's connection (:func:`guarded`), left out where the transaction has run nothing
yet (:func:`transaction_started`; on error the driver's transaction is then rolled back,
:func:`rollback_driver`). On asyncpg and psycopg, with no one watching the connection's
statements, the transaction-control SQL goes to the driver without an execution context
(:func:`transaction_control`).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.util import await_only

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Connection
    from sqlalchemy.orm import Session

    from sqla_repo._statements import ModelInfo

__all__ = ["guarded", "rollback_driver", "transaction_control", "transaction_started"]

T = TypeVar("T")


def transaction_started(driver: Any) -> bool:
    """Whether the database transaction of *driver* (a driver connection) ran anything yet.

    PostgreSQL aborts its whole transaction on an error, which is why its writes run
    inside a SAVEPOINT. A write that is the first statement of its transaction has
    nothing before it to lose: it needs no SAVEPOINT, and on error the driver's
    transaction is rolled back (:func:`rollback_driver`); the next statement begins a
    new one, unseen by the ``Session`` and its caller. Writes of several statements
    use the same rule on every backend, all or nothing. Only the driver knows whether a
    statement ran (an ``after_begin`` listener's ``SET LOCAL`` included); asyncpg and
    psycopg (3 and 2) tell, and so do sqlite3 and aiosqlite in their default (legacy)
    transaction control, which begins a transaction before the first ``INSERT``,
    ``UPDATE`` or ``DELETE``: reads before it ran outside any transaction. Any other
    driver or mode counts as started.
    """
    is_in_transaction = getattr(driver, "is_in_transaction", None)
    if callable(is_in_transaction):  # asyncpg
        return bool(is_in_transaction())
    if type(driver).__module__.partition(".")[0] in _SQLITE_DRIVERS:
        implicit = (
            getattr(driver, "autocommit", _LEGACY_TRANSACTION_CONTROL)
            == _LEGACY_TRANSACTION_CONTROL
            and driver.isolation_level is not None
        )
        return not implicit or bool(driver.in_transaction)
    status = getattr(getattr(driver, "info", None), "transaction_status", None)
    return status != 0  # psycopg 3 and psycopg2: 0 is IDLE, nothing sent since BEGIN


_SQLITE_DRIVERS = frozenset({"sqlite3", "aiosqlite"})
_LEGACY_TRANSACTION_CONTROL = -1  # sqlite3.LEGACY_TRANSACTION_CONTROL (Python 3.12+)


def rollback_driver(conn: Connection) -> None:
    """Roll back the driver's transaction under *conn*, leaving *conn*'s own open.

    Used where :func:`transaction_started` said the failed write was all the
    transaction held: the ``Connection`` and ``Session`` go on in the same logical
    transaction, which the driver begins anew at the next statement.
    """
    conn.connection.dbapi_connection.rollback()  # type: ignore[union-attr]


def transaction_control(conn: Connection, sql: str) -> None:
    """Send ``SAVEPOINT``, ``RELEASE`` or ``ROLLBACK TO`` on *conn*, by the shortest path.

    Through ``exec_driver_sql()`` a statement costs an execution context, a cursor and a
    result: on asyncpg and psycopg that is more than the round trip itself. Where no one
    watches the connection (no SQL echo, no ``before_cursor_execute`` or
    ``after_cursor_execute`` listener) the statement goes straight to the driver, as
    ``BEGIN`` and ``COMMIT`` do; otherwise, and for any other driver, through
    ``exec_driver_sql()``, where listeners and the log see it. A driver error sends it
    again that way, so the error raised is SQLAlchemy's, with its handling of lost
    connections.
    """
    dispatch = conn.dispatch
    if (
        getattr(conn, "_echo", True)
        or dispatch.before_cursor_execute
        or dispatch.after_cursor_execute
    ):
        conn.exec_driver_sql(sql)
        return
    driver = conn.connection.driver_connection
    execute = getattr(driver, "execute", None)
    if not callable(execute) or type(driver).__module__.split(".")[0] not in _DIRECT_DRIVERS:
        conn.exec_driver_sql(sql)
        return
    try:
        sent = execute(sql)
        if inspect.isawaitable(sent):
            await_only(sent)
    except Exception:  # noqa: BLE001 - sent again below, raising SQLAlchemy's error
        conn.exec_driver_sql(sql)


_DIRECT_DRIVERS = frozenset({"asyncpg", "psycopg"})
"""Drivers whose connection's ``execute(sql)`` runs a statement without parameters."""


def guarded(
    session: Session,
    info: ModelInfo,
    savepoint: str | None,
    work: Callable[..., T],
    *args: Any,
    **kwargs: Any,
) -> T:
    """Run ``work(session, *args, **kwargs)``, inside ``SAVEPOINT savepoint`` if named.

    The SAVEPOINT is plain SQL on the session's connection, unknown to the ``Session``:
    only statements may run inside it, never a unit-of-work flush (a ``ROLLBACK TO``
    would undo rows the ``Session`` believes written). A failed statement changes no
    ORM state, so rolling back to the SAVEPOINT restores everything. In a transaction
    that has run nothing yet, the SAVEPOINT is left out (:func:`transaction_started`).
    Meant to run in one ``run_sync()`` call: the whole write then costs one greenlet
    switch.
    """
    if savepoint is None:
        return work(session, *args, **kwargs)
    conn = session.connection(bind_arguments={"mapper": info.mapper})
    started = transaction_started(conn.connection.driver_connection)
    if started:
        transaction_control(conn, f"SAVEPOINT {savepoint}")
    try:
        out = work(session, *args, **kwargs)
    except BaseException:
        # A lost connection took the transaction with it: its error is the one to see.
        # On cancellation the rollback may fail too: its error then propagates and
        # the driver discards the connection.
        if not conn.invalidated:
            if started:
                transaction_control(conn, f"ROLLBACK TO SAVEPOINT {savepoint}")
            else:
                rollback_driver(conn)
        raise
    if started:
        transaction_control(conn, f"RELEASE SAVEPOINT {savepoint}")
    return out
