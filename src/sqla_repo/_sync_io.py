"""The synchronous forms of the calls in ``sqla_repo._io``: same names, same meaning.

The generated synchronous modules (``_sync_*.py``, ``sync_repository.py``) call these
where the async sources call ``sqla_repo._io``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from sqla_repo._driver_savepoints import rollback_driver as rollback_driver_sync

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Connection, ScalarResult, Select
    from sqlalchemy.orm import Session

__all__ = ["driver_connection", "rollback_driver", "run_sync", "stream_scalars"]

P = ParamSpec("P")
T = TypeVar("T")


def run_sync(
    session: Session,
    fn: Callable[Concatenate[Session, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Call ``fn(session, *args, **kwargs)``."""
    return fn(session, *args, **kwargs)


def stream_scalars(session: Session, stmt: Select[tuple[T]]) -> ScalarResult[T]:
    """Execute *stmt* and return its first column (unbuffered with ``yield_per``)."""
    return session.scalars(stmt)


def driver_connection(conn: Connection) -> Any:
    """Return the DBAPI driver's own connection object behind *conn*."""
    return conn.connection.driver_connection


def rollback_driver(conn: Connection) -> None:
    """Roll back the driver's transaction under *conn*, leaving *conn*'s own open."""
    rollback_driver_sync(conn)
