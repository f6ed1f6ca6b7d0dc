"""The session calls whose async and sync forms differ in more than ``await``.

The repository and its helpers are written once, against ``AsyncSession``; the
synchronous twin in [`sqla_repo._sync`][sqla_repo._sync] is generated from them by
``unasyncd``, which drops ``async``/``await`` and maps each function of this module to
the function of the same name in ``sqla_repo._sync_io``. Every call that differs in
name or shape between ``AsyncSession`` and ``Session`` goes through here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from sqla_repo._driver_savepoints import rollback_driver as rollback_driver_sync

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Select
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncScalarResult, AsyncSession
    from sqlalchemy.orm import Session

__all__ = ["driver_connection", "rollback_driver", "run_sync", "stream_scalars"]

P = ParamSpec("P")
T = TypeVar("T")


async def run_sync(
    session: AsyncSession,
    fn: Callable[Concatenate[Session, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Call ``fn(sync_session, *args, **kwargs)`` with the session's ``Session``."""
    return await session.run_sync(fn, *args, **kwargs)


async def stream_scalars(session: AsyncSession, stmt: Select[tuple[T]]) -> AsyncScalarResult[T]:
    """Execute *stmt* and return its first column as a streamed (unbuffered) result."""
    return await session.stream_scalars(stmt)


async def driver_connection(conn: AsyncConnection) -> Any:
    """Return the DBAPI driver's own connection object behind *conn*."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


async def rollback_driver(conn: AsyncConnection) -> None:
    """Roll back the driver's transaction under *conn*, leaving *conn*'s own open."""
    await conn.run_sync(rollback_driver_sync)
