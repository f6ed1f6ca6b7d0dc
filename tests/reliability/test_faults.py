"""Server-side faults: a killed connection, a lock timeout, a statement timeout.

A connection killed mid-write surfaces as SQLAlchemy's disconnect error (a ``DBAPIError``
with ``connection_invalidated`` set), not as a library error: the transaction is lost and
nothing of it persists, and the pool hands out working connections afterwards. A lock
timeout is a ``ConcurrencyError``; a statement timeout is a ``StatementTimeoutError``.
Every scenario is bounded in time: a fault must fail fast, never hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Product
from reliability.support import Faults, bounded, count_rows, race
from repositories import ProductRepository
from sqla_repo import ConcurrencyError, RepositoryError, StatementTimeoutError

BATCH_ROWS = 50_000
BATCH_SIZE = 100
KILL_AFTER_STATEMENTS = 5


def insert_counter(engine: Any, *, reached: int) -> tuple[list[int], asyncio.Event]:
    """Count INSERT statements run on *engine*; set the event once *reached* have run."""
    executed = [0]
    event_reached = asyncio.Event()

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            executed[0] += 1
            if executed[0] >= reached:
                event_reached.set()

    return executed, event_reached


def assert_disconnect(error: BaseException | None) -> None:
    """The error is SQLAlchemy's wrapper of the driver's lost-connection error."""
    assert isinstance(error, sa_exc.DBAPIError), repr(error)
    assert not isinstance(error, RepositoryError)
    assert error.connection_invalidated, repr(error)


async def test_killed_connection_mid_bulk_create_persists_nothing(faults: Faults):
    """A connection killed during a 50k-row bulk_create() loses all of it; the pool recovers."""
    engine = faults.engine(pool_size=3, max_overflow=5)
    factory = async_sessionmaker(engine, expire_on_commit=False)

    async def ping(_: int) -> int:
        async with factory() as session:
            return await faults.connection_id(session)

    await race(ping, parties=3)  # the pool now holds connections made before the kill
    executed, reached = insert_counter(engine, reached=KILL_AFTER_STATEMENTS)
    rows = [{"sku": f"victim-{i}", "price": 1} for i in range(BATCH_ROWS)]
    error: BaseException | None = None
    started = time.perf_counter()

    async def killer(ident: int) -> None:
        await reached.wait()
        await faults.kill(ident)

    async with factory() as session:
        try:
            async with session.begin():
                victim = await faults.connection_id(session)
                kill = asyncio.create_task(killer(victim))
                await bounded(ProductRepository(session).bulk_create(rows, batch_size=BATCH_SIZE))
        except Exception as exc:  # noqa: BLE001 - inspected below
            error = exc
        await bounded(kill)
    assert_disconnect(error)
    assert KILL_AFTER_STATEMENTS <= executed[0] < BATCH_ROWS // BATCH_SIZE
    assert time.perf_counter() - started < 30

    async def write(i: int) -> int:
        async with factory() as session, session.begin():
            product = await ProductRepository(session).create({"sku": f"after-{i}"})
            return product.id

    # More concurrent writers than the pool held before the kill: every one succeeds.
    results = await race(write, parties=6)
    assert all(isinstance(r, int) for r in results), results
    async with factory() as session:
        assert await count_rows(session, Product.__table__, Product.sku.like("victim-%")) == 0
        assert await count_rows(session, Product.__table__) == 6


SleepingCall = Callable[[ProductRepository, Faults, int], Awaitable[Any]]


async def _update_where(repo: ProductRepository, faults: Faults, ident: int) -> Any:
    return await repo.update_where(Product.id == ident, faults.sleep(5), values={"price": 9})


async def _delete_where(repo: ProductRepository, faults: Faults, ident: int) -> Any:
    return await repo.delete_where(Product.id == ident, faults.sleep(5))


async def _count(repo: ProductRepository, faults: Faults, ident: int) -> Any:
    return await repo.count(Product.id == ident, faults.sleep(5))


SLEEPING_CALLS: dict[str, SleepingCall] = {
    "update_where": _update_where,
    "delete_where": _delete_where,
    "count": _count,
}


@pytest.mark.parametrize("call", list(SLEEPING_CALLS))
async def test_killed_connection_mid_statement_loses_the_transaction(faults: Faults, call):
    """A connection killed inside a slow statement loses every earlier write of the transaction."""
    factory = faults.sessionmaker()
    sleeping = SLEEPING_CALLS[call]
    error: BaseException | None = None
    kill: asyncio.Task[None] | None = None
    started = time.perf_counter()
    async with factory() as session:
        try:
            async with session.begin():
                victim = await faults.connection_id(session)
                repo = ProductRepository(session)
                created = await repo.bulk_create(
                    [{"sku": f"doomed-{i}"} for i in range(1000)], batch_size=100
                )

                async def killer() -> None:
                    await asyncio.sleep(0.3)  # the slow statement is running by now
                    await faults.kill(victim)

                kill = asyncio.create_task(killer())
                await bounded(sleeping(repo, faults, created[0].id), seconds=10)
        except Exception as exc:  # noqa: BLE001 - inspected below
            error = exc
        assert kill is not None, repr(error)
        await bounded(kill)
    assert_disconnect(error)
    assert time.perf_counter() - started < 4  # well before the 5 s sleep would end
    async with factory() as session, session.begin():
        assert await count_rows(session, Product.__table__) == 0
        await ProductRepository(session).create({"sku": "next"})
    async with factory() as session:
        assert await count_rows(session, Product.__table__) == 1


LockedCall = Callable[[ProductRepository, Product], Awaitable[Any]]


async def _update_by_id(repo: ProductRepository, locked: Product) -> Any:
    return await repo.update(locked.id, price=2)


async def _update_instance(repo: ProductRepository, locked: Product) -> Any:
    return await repo.update(await repo.get_by_id(locked.id), price=3)


async def _bulk_update(repo: ProductRepository, locked: Product) -> Any:
    return await repo.bulk_update([{"id": locked.id, "price": 4}])


async def _delete(repo: ProductRepository, locked: Product) -> Any:
    return await repo.delete(locked.id)


async def _upsert(repo: ProductRepository, locked: Product) -> Any:
    return await repo.upsert({"sku": locked.sku, "price": 5}, conflict_on=["sku"])


LOCKED_CALLS: dict[str, LockedCall] = {
    "update_by_id": _update_by_id,
    "update_instance": _update_instance,
    "bulk_update": _bulk_update,
    "delete": _delete,
    "upsert": _upsert,
}


async def _locked_row(factory: async_sessionmaker[AsyncSession]) -> tuple[AsyncSession, Product]:
    """Commit a product, then lock it in an open transaction of another session."""
    async with factory() as session, session.begin():
        product = await ProductRepository(session).create({"sku": "locked", "price": 1})
    holder = factory()
    await holder.begin()
    await ProductRepository(holder).update(product.id, price=100)
    return holder, product


@pytest.mark.parametrize("call", list(LOCKED_CALLS))
async def test_lock_timeout_is_a_concurrency_error(faults: Faults, call):
    """A write timing out on a row lock raises ConcurrencyError; the transaction lives on."""
    factory = faults.sessionmaker()
    holder, locked = await _locked_row(factory)
    try:
        async with factory() as session, session.begin():
            repo = ProductRepository(session)
            await faults.set_lock_timeout(session, 200)
            started = time.perf_counter()
            with pytest.raises(ConcurrencyError) as caught:
                await bounded(LOCKED_CALLS[call](repo, locked), seconds=10)
            assert time.perf_counter() - started < 5
            assert caught.value.detail.get("reason")
            # The failed write spared the transaction: it can still read and write.
            assert await repo.count() == 1
            await repo.create({"sku": "unrelated"})
    finally:
        await holder.rollback()
        await holder.close()
    async with factory() as session:
        assert await count_rows(session, Product.__table__) == 2


async def test_statement_timeout_on_a_write_is_translated(faults: Faults):
    """A write cancelled by statement timeout raises StatementTimeoutError, fast; the rest lives."""
    factory = faults.sessionmaker()
    holder, locked = await _locked_row(factory)
    try:
        async with factory() as session, session.begin():
            repo = ProductRepository(session)
            await faults.set_statement_timeout(session, 200)
            started = time.perf_counter()
            with pytest.raises(StatementTimeoutError) as caught:
                await bounded(repo.update(locked.id, price=2), seconds=10)
            assert time.perf_counter() - started < 5
            assert faults.is_statement_timeout(caught.value)
            assert not caught.value.__cause__.connection_invalidated
            await faults.set_statement_timeout(session, 0)
            assert await repo.count() == 1
    finally:
        await holder.rollback()
        await holder.close()


async def test_statement_timeout_on_a_read_is_translated(faults: Faults):
    """A read cancelled by statement timeout raises StatementTimeoutError; rollback recovers."""
    factory = faults.sessionmaker()
    async with factory() as session, session.begin():
        session.add(Product(sku="slow"))
    async with factory() as session:
        await session.begin()
        repo = ProductRepository(session)
        await faults.set_statement_timeout(session, 200)
        started = time.perf_counter()
        with pytest.raises(StatementTimeoutError) as caught:
            await bounded(repo.list(faults.sleep(3)), seconds=10)
        assert time.perf_counter() - started < 2.5
        assert faults.is_statement_timeout(caught.value)
        await session.rollback()
        async with session.begin():
            assert await repo.count() == 1


async def test_first_bulk_create_on_a_new_engine_is_like_the_next(backend, sessionmaker):
    """bulk_create() in an engine's very first transaction runs the same statements as later."""
    engine = backend.engine()
    try:
        factory = async_sessionmaker(engine, expire_on_commit=False)
        executed, _ = insert_counter(engine, reached=1)
        statements = []
        for attempt in range(2):
            executed[0] = 0
            async with factory() as session, session.begin():
                rows = [{"sku": f"cold-{attempt}-{i}"} for i in range(10)]
                created = await ProductRepository(session).bulk_create(rows)
            assert [p.sku for p in created] == [row["sku"] for row in rows]
            statements.append(executed[0])
        assert statements[0] == statements[1], statements
    finally:
        await engine.dispose()
