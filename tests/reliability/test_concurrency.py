"""Races between real connections: one row per key, one winner per version, atomic batches.

Each racing task has its own session and connection, opens its transaction, then waits at
a start line so that the statements reach the server together. A task that loses may get
a `ConflictError` or a `ConcurrencyError` (both mean "retry the transaction"); it must
never see a raw driver error.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Product, Ticket, User
from reliability.support import TASKS, StartLine, bounded, count_rows, expect_defect, race
from repositories import ProductRepository, TicketRepository, UserRepository
from sqla_repo import ConcurrencyError, ConflictError, UniqueViolationError

RETRYABLE = (ConflictError, ConcurrencyError)
ATTEMPTS = 10


def untyped(results: list[Any]) -> list[BaseException]:
    """Return the exceptions among *results* that are not retryable library errors."""
    return [r for r in results if isinstance(r, BaseException) and not isinstance(r, RETRYABLE)]


async def with_retries(
    sessionmaker: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Awaitable[Any]],
    start: StartLine,
) -> tuple[Any, list[str]]:
    """Run *work* in a fresh transaction until it commits; return its result and the errors.

    The first attempt waits at *start* once its transaction holds a connection. Only
    retryable library errors are retried: anything else fails the task.
    """
    errors: list[str] = []
    for attempt in range(ATTEMPTS):
        try:
            async with sessionmaker() as session, session.begin():
                if attempt == 0:
                    await session.connection()
                    await start.wait()
                result = await work(session)
        except RETRYABLE as exc:  # noqa: PERF203 - a retry loop
            errors.append(type(exc).__name__)
            await asyncio.sleep(0.01 * attempt)
        else:
            return result, errors
    msg = f"no commit after {ATTEMPTS} attempts: {errors}"
    raise AssertionError(msg)


async def test_get_or_create_race_leaves_one_row(wide_sessionmaker, requires):
    """Concurrent get_or_create() calls for one key leave one row that every caller gets."""
    requires("concurrent_writers")
    start = StartLine(TASKS)

    async def task(i: int) -> tuple[tuple[int, bool, str], list[str]]:
        async def work(session: AsyncSession) -> tuple[int, bool, str]:
            user, created = await UserRepository(session).get_or_create(
                {"name": f"task {i}"}, email="race@example.org"
            )
            return user.id, created, user.name

        return await with_retries(wide_sessionmaker, work, start)

    results = await race(task)
    assert not untyped(results), untyped(results)
    async with wide_sessionmaker() as session:
        rows = (await session.scalars(select(User).where(User.email == "race@example.org"))).all()
    assert len(rows) == 1
    (row,) = rows
    outcomes = [outcome for outcome, _ in results]
    assert {ident for ident, _, _ in outcomes} == {row.id}
    creators = [name for _, created, name in outcomes if created]
    assert creators == [row.name]


async def test_upsert_race_loses_no_write(wide_sessionmaker, requires):
    """Concurrent upsert() calls of one key leave one row and apply every write once."""
    requires("concurrent_writers")
    start = StartLine(TASKS)
    key = uuid.uuid4()

    async def task(i: int) -> tuple[tuple[uuid.UUID, str], list[str]]:
        async def work(session: AsyncSession) -> tuple[uuid.UUID, str]:
            ticket = await TicketRepository(session).upsert(
                {"id": key, "title": f"task {i}"}, conflict_on=["id"]
            )
            assert ticket.title == f"task {i}"  # each writer reads back its own write
            return ticket.id, ticket.title

        return await with_retries(wide_sessionmaker, work, start)

    results = await race(task)
    assert not untyped(results), untyped(results)
    assert {ident for (ident, _), _ in results} == {key}
    async with wide_sessionmaker() as session:
        rows = (await session.scalars(select(Ticket))).all()
    assert len(rows) == 1
    # The insert sets version 1 and every later upsert adds one: no write was lost.
    assert rows[0].version == TASKS
    assert rows[0].title in {f"task {i}" for i in range(TASKS)}


ROUNDS = 3


async def test_version_race_has_one_winner_per_version(wide_sessionmaker, requires):
    """Instance updates from one starting version: one commit wins, the rest are stale."""
    requires("concurrent_writers")
    async with wide_sessionmaker() as session, session.begin():
        ticket = await TicketRepository(session).create({"title": "start"})
    for version in range(1, ROUNDS + 1):
        start = StartLine(TASKS)

        async def task(i: int, version: int = version, start: StartLine = start) -> int:
            async with wide_sessionmaker() as session, session.begin():
                repo = TicketRepository(session)
                mine = await repo.get_by_id(ticket.id)
                assert mine.version == version
                await start.wait()
                await repo.update(mine, title=f"round {version} task {i}")
            return i

        results = await race(task)
        winners = [r for r in results if not isinstance(r, BaseException)]
        losers = [r for r in results if isinstance(r, BaseException)]
        assert len(winners) == 1, results
        assert all(isinstance(r, ConcurrencyError) for r in losers), losers
        async with wide_sessionmaker() as session:
            final = await TicketRepository(session).get_by_id(ticket.id)
        assert (final.title, final.version) == (f"round {version} task {winners[0]}", version + 1)


def _pair_batch(i: int) -> list[dict[str, Any]]:
    """Rows of batch *i*: 40 keys of its own and 3 shared with its partner (``i ^ 1``).

    The shared keys come in the same order in both batches, so neither can deadlock the
    other; odd batches insert their own keys first, so the loser has rows to roll back.
    """
    pair = i // 2
    own = [f"own-{i}-{j:02}" for j in range(40)]
    shared = [f"shared-{pair}-{k}" for k in range(3)]
    skus = (
        [shared[0], *own[:20], shared[1], *own[20:], shared[2]]
        if i % 2 == 0
        else [*own[:30], shared[0], shared[1], *own[30:], shared[2]]
    )
    return [{"sku": sku, "price": i} for sku in skus]


async def test_overlapping_bulk_create_batches_are_all_or_nothing(wide_sessionmaker, requires):
    """Of two concurrent batches sharing keys, one persists whole and the other not at all."""
    requires("concurrent_writers")
    start = StartLine(TASKS)

    async def task(i: int) -> int:
        async with wide_sessionmaker() as session, session.begin():
            await session.connection()
            await start.wait()
            created = await ProductRepository(session).bulk_create(_pair_batch(i), batch_size=7)
        assert [p.sku for p in created] == [row["sku"] for row in _pair_batch(i)]
        return i

    results = await race(task)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(r, UniqueViolationError) for r in failures), failures
    committed = {r for r in results if not isinstance(r, BaseException)}
    async with wide_sessionmaker() as session:
        prices = Counter(int(p) for p in (await session.scalars(select(Product.price))).all())
    for i in range(TASKS):
        expected = len(_pair_batch(i)) if i in committed else 0
        assert prices[i] == expected, (i, prices[i])
    # One batch of each pair wins: the other one saw the winner's keys.
    assert sorted(i // 2 for i in committed) == list(range(TASKS // 2))


async def test_concurrent_creates_all_persist(wide_sessionmaker):
    """Concurrent create() calls of distinct rows all commit, retrying only typed errors."""
    start = StartLine(TASKS)

    async def task(i: int) -> tuple[int, list[str]]:
        async def work(session: AsyncSession) -> int:
            user = await UserRepository(session).create({"email": f"writer-{i}@example.org"})
            return user.id

        return await with_retries(wide_sessionmaker, work, start)

    results = await race(task)
    assert not untyped(results), untyped(results)
    async with wide_sessionmaker() as session:
        assert await count_rows(session, User.__table__) == TASKS
        emails = set((await session.scalars(select(User.email))).all())
    assert emails == {f"writer-{i}@example.org" for i in range(TASKS)}
    assert len({ident for ident, _ in results}) == TASKS


async def _create(repo: ProductRepository, product: Product) -> Any:
    return await repo.create({"sku": f"{product.sku}-copy"})


async def _bulk_create(repo: ProductRepository, product: Product) -> Any:
    return await repo.bulk_create([{"sku": f"{product.sku}-copy"}])


async def _upsert(repo: ProductRepository, product: Product) -> Any:
    return await repo.upsert({"sku": f"{product.sku}-copy", "price": 1}, conflict_on=["sku"])


async def _update_by_id(repo: ProductRepository, product: Product) -> Any:
    return await repo.update(product.id, price=2)


async def _update_instance(repo: ProductRepository, product: Product) -> Any:
    mine = await repo.get_by_id(product.id)
    return await repo.update(mine, price=3)


async def _delete_where(repo: ProductRepository, product: Product) -> Any:
    return await repo.delete_where(Product.id == product.id)


DEADLOCKING_WRITES = {
    "create": _create,
    "bulk_create": _bulk_create,
    "upsert": _upsert,
    "update_by_id": _update_by_id,
    "update_instance": _update_instance,
    "delete_where": _delete_where,
}


# Writes that run in a SAVEPOINT on every backend (an ORM flush, or several statements).
SAVEPOINTED_WRITES = frozenset({"create", "bulk_create", "upsert", "update_instance"})


@pytest.mark.parametrize("write", list(DEADLOCKING_WRITES))
async def test_deadlock_surfaces_as_concurrency_error(
    wide_sessionmaker, requires, request, backend, write
):
    """Two transactions locking two rows in opposite orders: one commits, one is told to retry."""
    requires("concurrent_writers")
    if write in SAVEPOINTED_WRITES:
        expect_defect(request, backend, "deadlock_savepoint")
    operation = DEADLOCKING_WRITES[write]
    x, y = Product(sku="x"), Product(sku="y")
    async with wide_sessionmaker() as session, session.begin():
        session.add_all([x, y])
    both_hold_one = StartLine(2)

    async def side(first: Product, second: Product, delay: float) -> str:
        async with wide_sessionmaker() as session:
            await session.begin()
            repo = ProductRepository(session)
            await operation(repo, first)
            await both_hold_one.wait()
            await asyncio.sleep(delay)
            try:
                await operation(repo, second)
            except BaseException:
                await session.rollback()  # frees the other side at once
                raise
            await session.commit()
        return "committed"

    results = await bounded(asyncio.gather(side(x, y, 0), side(y, x, 0.2), return_exceptions=True))
    assert sorted(type(r).__name__ for r in results) == ["ConcurrencyError", "str"], results
