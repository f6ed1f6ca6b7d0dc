"""How the async repository runs its writes: SAVEPOINTs, error translation, flushes.

[`atomic()`][sqla_repo.repository.BaseRepository.atomic] and
[`savepoints()`][sqla_repo.repository.BaseRepository.savepoints] are public; the rest is
what the write methods build on. The synchronous twin is generated from this module.
"""

from __future__ import annotations

from contextlib import asynccontextmanager, contextmanager, suppress
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession

from sqla_repo import _bulk, _io
from sqla_repo._driver_savepoints import guarded, transaction_started
from sqla_repo._references import check_rows, tenant_references
from sqla_repo._repo_core import ModelT, RepositoryCore
from sqla_repo._translate import translate_errors
from sqla_repo.routing import use_primary

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence

__all__ = ["Transactions"]

T = TypeVar("T")

_SAVEPOINT_DEPTH: ContextVar[int] = ContextVar("sqla_repo_savepoint_depth", default=0)
"""How many of the repositories' own SAVEPOINTs are open: names them per nesting depth."""


class Transactions(RepositoryCore[ModelT, AsyncSession]):
    """Write guards of the async repository: SAVEPOINTs, error translation, flushes."""

    async def _reload(self, obj: Any) -> None:
        state = sa_inspect(obj)
        if state.persistent and state.expired_attributes:
            # The row may be gone (deleted concurrently): then it stays expired.
            with suppress(sa_exc.InvalidRequestError):
                await self.session.refresh(obj)

    async def _inserts_returning(self) -> bool:
        if self._insert_returning is None:
            dialect = await _bulk.connected_dialect(self.session, self._info)
            self._insert_returning = bool(dialect.insert_returning)
        return self._insert_returning

    async def _update_returning(self) -> bool:
        if self._can_update_returning is None:
            dialect = await _bulk.connected_dialect(self.session, self._info)
            self._can_update_returning = bool(dialect.update_returning)
        return self._can_update_returning

    @asynccontextmanager
    async def atomic(self, *, flush: bool = False) -> AsyncIterator[None]:
        """Guard a write: database errors become typed errors and spare the transaction.

        Every write method runs inside it; custom write methods should too:

        ```python
        async def rename_all(self, old: str, new: str) -> None:
            async with self.atomic():
                await self.session.execute(update(User).where(User.name == old).values(name=new))
        ```

        Args:
            flush: The block flushes the unit of work. A failed flush rolls the session's
                transaction back unless it ran inside a SAVEPOINT, so ``flush=True``
                always opens one; single statements get one only where an error aborts
                the whole transaction (PostgreSQL). ``use_savepoints = False`` turns the
                SAVEPOINTs off. Changes already pending in the session are flushed
                first, before the SAVEPOINT opens (SQLAlchemy would flush them as it
                opens one, outside its protection): a failure there is raised naming no
                model, since it is not this write's, and like any failed flush it leaves
                the session needing a rollback.

        Raises:
            ConflictError: An integrity constraint refused the write.
            ConcurrencyError: A stale version or a lock conflict.
            InvalidValueError: The database refused a value.
        """
        # Every statement of a write goes to the primary under a routed session, its
        # reads (foreign-key checks, re-reads) included.
        with use_primary(), translate_errors(self.model):
            if self._protect() and (flush or self._aborts_on_error()):
                await self._flush_pending()
                if self.dialect_name == "sqlite":
                    await self._begin_sqlite()
                async with self.session.begin_nested():
                    yield
            else:
                yield

    @contextmanager
    def savepoints(self, enabled: bool) -> Iterator[None]:  # noqa: FBT001
        """Turn this repository's SAVEPOINTs on or off for the calls made inside the block.

        Overrides the class-wide ``use_savepoints`` for this instance, for writes and
        ``atomic()`` alike; blocks nest, and the previous setting comes back on exit.

        ```python
        with repo.savepoints(False):  # a failure here ends the transaction anyway
            for row in rows:
                await repo.create(row)
        ```

        With SAVEPOINTs off, a [`ConflictError`][sqla_repo.exceptions.ConflictError] on
        PostgreSQL, or from a unit-of-work flush on any backend, leaves the transaction
        needing a rollback; single-statement writes on SQLite and MySQL/MariaDB stay
        safe, since those roll back only the failed statement.
        """
        previous = self._savepoints
        self._savepoints = bool(enabled)
        try:
            yield
        finally:
            self._savepoints = previous

    @asynccontextmanager
    async def _guard(self, *, several: bool = False, flushes: bool = False) -> AsyncIterator[None]:
        """Guard a write made of statements (and, with *flushes*, a unit-of-work flush).

        SQLite and MySQL/MariaDB roll back only a failed statement, so one writing
        statement needs no SAVEPOINT there; PostgreSQL aborts the whole transaction, so
        the block runs inside a plain ``SAVEPOINT`` sent on the connection, which costs
        far less than ``begin_nested()`` and is safe because a failed statement changes
        no ORM state (objects it loaded are the write's to forget). *several* writing
        statements (all or nothing) get the plain SAVEPOINT on every backend. A
        transaction that has run nothing yet needs none: on error its driver transaction
        is rolled back instead (:func:`~sqla_repo._driver_savepoints.transaction_started`
        says which drivers tell). A block that *flushes* gets ``atomic()``'s
        ``begin_nested()``: a failed flush outside one ends the session's transaction.
        Pending changes are flushed first, outside it.
        """
        protect = self._protect()
        if protect and flushes:
            async with self.atomic(flush=True):
                yield
            return
        if not (protect and (several or self._aborts_on_error())):
            with use_primary(), translate_errors(self.model):
                if protect:
                    await self._flush_pending()
                yield
            return
        with use_primary(), translate_errors(self.model):
            await self._flush_pending()
            conn = await self.session.connection(bind_arguments={"mapper": self._info.mapper})
            if not transaction_started(await _io.driver_connection(conn)):
                # The write is the transaction's first statement: nothing to protect.
                try:
                    yield
                except BaseException:
                    if not conn.invalidated:
                        await _io.rollback_driver(conn)
                    raise
                return
            if self.dialect_name == "sqlite":
                await self._begin_sqlite()
            async with self._plain_savepoint(conn):
                yield

    @asynccontextmanager
    async def _plain_savepoint(self, conn: Any) -> AsyncIterator[None]:
        depth = _SAVEPOINT_DEPTH.get() + 1
        name = f"sqla_repo_sp{depth}"
        token = _SAVEPOINT_DEPTH.set(depth)
        try:
            await conn.exec_driver_sql(f"SAVEPOINT {name}")
            try:
                yield
            except BaseException:
                # A lost connection took the transaction with it: its error is the one
                # to see. On cancellation the ROLLBACK TO may fail too: its error then
                # propagates and the driver discards the connection.
                if not conn.invalidated:
                    await conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {name}")
                raise
            await conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")
        finally:
            _SAVEPOINT_DEPTH.reset(token)

    async def _run_statement(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run the sync ``work(session, *args, **kwargs)``: a write made of statements only.

        The whole write (SAVEPOINT, statements, result handling) runs in one
        ``run_sync()`` call, which costs one greenlet switch instead of one per
        statement. The SAVEPOINT rules are ``_guard()``'s: a plain one on PostgreSQL,
        none on SQLite and MySQL/MariaDB, pending changes flushed first.
        """
        protect = self._protect()
        with use_primary(), translate_errors(self.model):
            if protect:
                await self._flush_pending()
            if not (protect and self._aborts_on_error()):
                out: T = await _io.run_sync(
                    self.session, guarded, self._info, None, work, *args, **kwargs
                )
                return out
            depth = _SAVEPOINT_DEPTH.get() + 1
            token = _SAVEPOINT_DEPTH.set(depth)
            try:
                out = await _io.run_sync(
                    self.session,
                    guarded,
                    self._info,
                    f"sqla_repo_sp{depth}",
                    work,
                    *args,
                    **kwargs,
                )
            finally:
                _SAVEPOINT_DEPTH.reset(token)
            return out

    async def _flush_pending(self) -> None:
        session = self.session
        if session.new or session.dirty or session.deleted:
            with translate_errors(None):
                await session.flush()

    async def _begin_sqlite(self) -> None:
        # In its default mode Python's sqlite3 opens a transaction only before DML, so a
        # SAVEPOINT issued first would open the transaction itself and its RELEASE would
        # commit the caller's work. Start the transaction explicitly in that case.
        conn = await self.session.connection(bind_arguments={"mapper": self._info.mapper})
        driver = await _io.driver_connection(conn)
        if getattr(driver, "in_transaction", True) is False:
            await conn.exec_driver_sql("BEGIN")

    async def _check_references(self, rows: Sequence[Mapping[str, Any]]) -> None:
        # Statements that bypass the unit of work get the before_flush check by hand.
        if tenant_references(self._info.mapper):
            await _io.run_sync(self.session, check_rows, self._info.mapper, rows)
