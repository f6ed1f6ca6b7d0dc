"""SQLite's single writer: "database is locked" is a retryable error and corrupts nothing.

SQLite lets one connection write at a time. A writer that cannot take the lock within the
connection's ``busy_timeout`` fails with ``SQLITE_BUSY``; inside a repository call that is
a `ConcurrencyError`. These tests run where the backend lacks concurrent writers.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.pool import NullPool

from models import Product, User
from reliability.support import TASKS, StartLine, count_rows, race
from repositories import ProductRepository, UserRepository
from sqla_repo import ConcurrencyError

SQLITE_BUSY = 5
BUSY_TIMEOUT_MS = 100


@pytest.fixture
async def two_writers(backend, sessionmaker, lacks):
    """Two sessions on separate connections that give up waiting for a lock after 100 ms."""
    lacks("concurrent_writers")
    engine = backend.engine(poolclass=NullPool)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    first, second = factory(), factory()
    try:
        for session in (first, second):
            await session.begin()
            await session.execute(text(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}"))
        yield first, second
    finally:
        for session in (first, second):
            await session.rollback()
            await session.close()
        await engine.dispose()


async def integrity(session: AsyncSession) -> list[str]:
    return list((await session.scalars(text("PRAGMA integrity_check"))).all())


def busy_code(error: BaseException) -> int | None:
    """Return SQLite's result code from the driver error chained under *error*."""
    while error is not None:
        code = getattr(error, "sqlite_errorcode", None)
        if code is not None:
            return int(code) & 0xFF  # the primary code of an extended one
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return None


async def test_locked_write_raises_concurrency_error(two_writers, sessionmaker):
    """A write while another transaction writes fails fast with ConcurrencyError, then succeeds."""
    first, second = two_writers
    await ProductRepository(first).create({"sku": "first"})
    started = time.perf_counter()
    with pytest.raises(ConcurrencyError) as caught:
        await ProductRepository(second).create({"sku": "second"})
    assert time.perf_counter() - started < 2
    assert caught.value.detail.get("reason")
    assert busy_code(caught.value) == SQLITE_BUSY
    assert "INSERT" not in str(caught.value)
    # The failed write left the second transaction usable; retried, it succeeds.
    assert await ProductRepository(second).count() == 0
    await second.rollback()
    await first.commit()
    async with second.begin():
        await ProductRepository(second).create({"sku": "second"})
    async with sessionmaker() as session:
        assert await integrity(session) == ["ok"]
        skus = (await session.scalars(select(Product.sku).order_by(Product.sku))).all()
    assert skus == ["first", "second"]


async def test_locked_commit_is_not_translated(two_writers, sessionmaker):
    """A COMMIT that cannot take the lock raises SQLAlchemy's OperationalError, not ours."""
    reader, writer = two_writers
    assert await ProductRepository(reader).count() == 0  # holds a read lock until it ends
    await ProductRepository(writer).create({"sku": "never"})
    # The caller owns the transaction: its COMMIT does not pass through the repository.
    with pytest.raises(sa_exc.OperationalError) as caught:
        await writer.commit()
    assert busy_code(caught.value) == SQLITE_BUSY
    await writer.rollback()
    await reader.rollback()
    async with sessionmaker() as session:
        assert await integrity(session) == ["ok"]
        assert await count_rows(session, Product.__table__) == 0


async def test_concurrent_writers_retry_to_one_row(wide_sessionmaker, lacks):
    """Concurrent get_or_create() calls that retry on "database is locked" leave one row.

    Inside the repository the lock conflict is a ConcurrencyError; the caller's own COMMIT
    can also wait past the busy timeout on a loaded machine and then raises SQLAlchemy's
    OperationalError (documented), which a retry loop must catch as well.
    """
    lacks("concurrent_writers")
    start = StartLine(TASKS)

    async def task(i: int) -> int:
        for attempt in range(20):
            try:
                async with wide_sessionmaker() as session, session.begin():
                    if attempt == 0:
                        await session.connection()
                        await start.wait()
                    user, _ = await UserRepository(session).get_or_create(
                        {"name": f"task {i}"}, email="single@example.org"
                    )
                    return user.id
            except (ConcurrencyError, sa_exc.OperationalError) as exc:  # noqa: PERF203 - retry
                if isinstance(exc, sa_exc.OperationalError) and busy_code(exc) != SQLITE_BUSY:
                    raise
                await asyncio.sleep(0.005 * attempt)
        msg = "no commit after 20 attempts"
        raise AssertionError(msg)

    ids = await race(task)
    assert len(set(ids)) == 1, ids
    async with wide_sessionmaker() as session:
        assert await integrity(session) == ["ok"]
        assert await count_rows(session, User.__table__) == 1
