"""Helpers of the reliability suite: time bounds, a start line for races, fault injection.

Backend-specific SQL (connection ids, kills, timeouts) lives in ``Faults``, so that tests
never branch on the dialect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from sqlalchemy import MetaData, Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import NullPool

import backends
from sqla_repo import RepositoryError, all_tenants, tenant

T = TypeVar("T")

TASKS = 24
"""Concurrent tasks per race, each with its own session and connection."""

TIME_LIMIT = 60.0
"""Seconds any race or fault scenario may take before the test fails as hung."""


async def bounded(awaitable: Awaitable[T], seconds: float = TIME_LIMIT) -> T:
    """Await *awaitable*, failing the test instead of hanging past *seconds*."""
    return await asyncio.wait_for(awaitable, seconds)


class StartLine:
    """Hold tasks until *parties* of them are ready, then release them all at once.

    Tasks first take their connection and open their transaction, then wait here, so the
    statements that race really reach the server together.
    """

    def __init__(self, parties: int) -> None:
        self._waiting = parties
        self._go = asyncio.Event()

    async def wait(self) -> None:
        self._waiting -= 1
        if self._waiting <= 0:
            self._go.set()
        await self._go.wait()


async def dump(session: AsyncSession, tables: list[Table]) -> dict[str, list[tuple[Any, ...]]]:
    """Return every row of *tables*, in primary-key order, read through Core (no ORM hooks)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with all_tenants():
        for table in tables:
            rows = await session.execute(select(table).order_by(*table.primary_key.columns))
            out[table.name] = [tuple(row) for row in rows]
    return out


async def count_rows(session: AsyncSession, table: Table, *where: Any) -> int:
    """Count the rows of *table* matching *where*, through Core (no ORM hooks)."""
    with all_tenants():
        counter = select(func.count()).select_from(table).where(*where)
        return int(await session.scalar(counter) or 0)


@dataclass(frozen=True)
class _FaultSQL:
    connection_id: str
    kill: str
    lock_timeout: str
    statement_timeout: str
    sleep: str
    statement_timeout_code: str | int  # SQLSTATE or server errno of a cancelled statement


FAULT_SQL: dict[str, _FaultSQL] = {
    "postgresql": _FaultSQL(
        connection_id="SELECT pg_backend_pid()",
        kill="SELECT pg_terminate_backend({ident})",
        lock_timeout="SET LOCAL lock_timeout = '{ms}ms'",
        statement_timeout="SET LOCAL statement_timeout = '{ms}ms'",
        sleep="pg_sleep({seconds}) IS NOT NULL",
        statement_timeout_code="57014",  # query_canceled
    ),
    # MariaDB has no transaction-local timeouts: these are session settings.
    "mariadb": _FaultSQL(
        connection_id="SELECT CONNECTION_ID()",
        kill="KILL {ident}",
        lock_timeout="SET SESSION innodb_lock_wait_timeout = {seconds}",
        statement_timeout="SET SESSION max_statement_time = {seconds}",
        sleep="SLEEP({seconds}) = 0",
        statement_timeout_code=1969,  # ER_STATEMENT_TIMEOUT
    ),
}


class Faults:
    """Inject server-side faults: kill a connection, time out its locks or statements.

    Sessions from ``sessionmaker()`` never share a connection through a pool, because
    MariaDB's timeouts are session settings that would outlive the test.
    """

    def __init__(self, backend: backends.Backend, sql: _FaultSQL) -> None:
        self.backend = backend
        self.sql = sql
        self.admin = backend.engine(poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self._engines: list[AsyncEngine] = [self.admin]

    def engine(self, **kwargs: Any) -> AsyncEngine:
        """Return a new engine on the test database, disposed of by ``aclose()``."""
        engine = self.backend.engine(**kwargs)
        self._engines.append(engine)
        return engine

    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        """Return committing sessions, each on its own unpooled connection."""
        return async_sessionmaker(self.engine(poolclass=NullPool), expire_on_commit=False)

    async def aclose(self) -> None:
        """Dispose of every engine made here."""
        for engine in self._engines:
            await engine.dispose()

    async def connection_id(self, session: AsyncSession) -> int:
        """Return the server's id of the connection *session* uses."""
        return int(await session.scalar(text(self.sql.connection_id)) or 0)

    async def kill(self, ident: int) -> None:
        """Terminate the server connection *ident* from a separate admin connection."""
        async with self.admin.connect() as conn:
            await conn.execute(text(self.sql.kill.format(ident=int(ident))))

    async def set_lock_timeout(self, session: AsyncSession, ms: int) -> None:
        """Make lock waits of *session* fail after about *ms* milliseconds (1 s on InnoDB)."""
        seconds = max(1, round(ms / 1000))  # InnoDB counts whole seconds
        await session.execute(text(self.sql.lock_timeout.format(ms=int(ms), seconds=seconds)))

    async def set_statement_timeout(self, session: AsyncSession, ms: int) -> None:
        """Cancel statements of *session* that run longer than *ms* milliseconds."""
        statement = self.sql.statement_timeout.format(ms=int(ms), seconds=ms / 1000)
        await session.execute(text(statement))

    def sleep(self, seconds: float) -> Any:
        """Return a true condition that takes *seconds* to evaluate on the server."""
        return text(self.sql.sleep.format(seconds=float(seconds)))

    def is_statement_timeout(self, error: BaseException) -> bool:
        """Whether the driver error chained under *error* is a cancelled statement."""
        return self.sql.statement_timeout_code in driver_codes(error)


def driver_codes(error: BaseException | None) -> set[str | int]:
    """Return the SQLSTATEs and server error numbers found along *error*'s chain."""
    codes: set[str | int] = set()
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        state = getattr(error, "sqlstate", None)
        if isinstance(state, str):
            codes.add(state)
        args = getattr(error, "args", ())
        if len(args) == 2 and isinstance(args[0], int):  # MySQL drivers: (errno, message)
            codes.add(args[0])
        error = error.__cause__ or error.__context__
    return codes


RaceResult = list[Any]
Race = Callable[[int], Awaitable[Any]]


async def race(task: Race, parties: int = TASKS) -> RaceResult:
    """Run ``task(i)`` for ``i < parties`` concurrently; return results or exceptions."""
    return await bounded(asyncio.gather(*(task(i) for i in range(parties)), return_exceptions=True))


KNOWN_DEFECTS: dict[str, dict[str, str]] = {}
"""Library defects a test exposes, per backend: ``{defect: {backend: reason}}``.

A test naming a defect here is expected to fail (strictly) on the listed backends only;
remove the entry once the library is fixed.
"""


def expect_defect(request: pytest.FixtureRequest, backend: backends.Backend, defect: str) -> None:
    """Mark the running test as a strict expected failure where *defect* is known."""
    reason = KNOWN_DEFECTS.get(defect, {}).get(backend.name)
    if reason is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


@contextlib.asynccontextmanager
async def own_tables(engine: AsyncEngine, metadata: MetaData) -> AsyncIterator[AsyncSession]:
    """A committing session over *metadata*'s tables, created fresh and dropped afterwards."""
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            yield session
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)


# -- adversarial reviews: writing one value by every path, and attacking as tenant A ------------

WRITE_OPS = (
    "create",
    "create-instance",
    "update",
    "update_where",
    "bulk_create",
    "bulk_insert",
    "upsert",
    "bulk_update",
)
"""Every repository path that writes a column value."""


async def write_value(repo: Any, op: str, row_id: int, column: str, value: Any) -> int:
    """Write *value* to *column* by *op* (one of ``WRITE_OPS``); return the row's id."""
    model = repo.model
    if op == "create":
        return (await repo.create({column: value})).id  # type: ignore[no-any-return]
    if op == "create-instance":
        return (await repo.create(model(**{column: value}))).id  # type: ignore[no-any-return]
    if op == "bulk_create":
        return (await repo.bulk_create([{column: value}]))[0].id  # type: ignore[no-any-return]
    if op == "bulk_insert":
        await repo.bulk_insert([{"id": 999, column: value}])
        return 999
    if op == "update":
        await repo.update(row_id, {column: value})
    elif op == "update_where":
        await repo.update_where(model.id == row_id, values={column: value})
    elif op == "upsert":
        await repo.upsert({"id": row_id, column: value}, conflict_on=["id"])
    else:
        await repo.bulk_update([{"id": row_id, column: value}])
    return row_id


async def write_outcomes(
    session: AsyncSession,
    repo: Any,
    column: str,
    value: Any,
    *,
    ops: tuple[str, ...] = WRITE_OPS,
    start: Any = None,
) -> dict[str, Any]:
    """Per write path: the typed error, ``("stored", value read back)`` or ``("raw", name)``.

    Each path writes to a fresh committed row (holding *start* in *column* when given)
    and is rolled back afterwards.
    """
    model = repo.model
    out: dict[str, Any] = {}
    for op in ops:
        base = await repo.create({column: start} if start is not None else {})
        await session.commit()
        try:
            written = await write_value(repo, op, base.id, column, value)
            stored = (
                await session.execute(select(model.__table__.c[column]).where(model.id == written))
            ).scalar_one()
        except RepositoryError as exc:
            out[op] = exc
        except Exception as exc:  # noqa: BLE001 - anything else is the finding
            out[op] = ("raw", type(exc).__name__)
        else:
            out[op] = ("stored", stored)
        await session.rollback()
    return out


async def attack(session: AsyncSession, statement: Any, **options: Any) -> Any:
    """Run *statement* inside tenant A; return its rows (or row count), or the refusal.

    The session forgets what it holds first, so rows come from SQL.
    """
    session.expunge_all()
    with tenant("A"):
        try:
            async with session.begin_nested():
                result = await session.execute(statement, execution_options=options)
                return result.unique().all() if statement.is_select else result.rowcount
        except RepositoryError as exc:
            return exc


def refused(outcome: Any) -> bool:
    """Whether *outcome* is the refusal of a statement the library cannot prove scoped."""
    return isinstance(outcome, RepositoryError) and outcome.detail["reason"] == (
        "unscoped_statement"
    )
