"""Keyset pages over 4-byte floats: every row once, in both directions, on every backend.

MariaDB reads a ``FLOAT`` column as its shortest text (``0.1``) but compares the stored
single-precision value (``0.100000001…``): a boundary taken as read would match the
boundary row itself and the pages would repeat it forever.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Float, MetaData, delete, insert
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_repo.repository import BaseRepository


class _Base(DeclarativeBase):
    metadata = MetaData()


class Reading(_Base):
    __tablename__ = "float_readings"

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[float] = mapped_column(Float(precision=24))
    plain: Mapped[float | None] = mapped_column(Float(), default=None)


class Readings(BaseRepository[Reading]):
    sortable_fields = ("value", "plain")
    max_page_size = 50


@pytest_asyncio.fixture
async def tables(engine) -> AsyncIterator[None]:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        await conn.run_sync(_Base.metadata.create_all)
    yield
    async with engine.begin() as conn:
        await conn.run_sync(_Base.metadata.drop_all)


async def _walk(repo: Readings, order: list[str], limit: int) -> list[int]:
    seen: list[int] = []
    cursor = None
    for _ in range(200):  # a bound: the walk must end
        page = await repo.paginate(order_by=order, limit=limit, after=cursor)
        seen += [r.id for r in page.items]
        if not page.has_next:
            return seen
        cursor = page.next_cursor
    msg = "the pages never ended"
    raise AssertionError(msg)


async def _walk_back(repo: Readings, order: list[str], limit: int) -> list[int]:
    last = await repo.paginate(order_by=order, limit=limit)
    while last.has_next:
        last = await repo.paginate(order_by=order, limit=limit, after=last.next_cursor)
    seen = [r.id for r in last.items]
    page = last
    for _ in range(200):
        if not page.has_previous:
            return seen
        page = await repo.paginate(order_by=order, limit=limit, before=page.previous_cursor)
        seen = [r.id for r in page.items] + seen
    msg = "the pages never ended"
    raise AssertionError(msg)


async def test_tenths_page_to_the_end_both_ways(tables, session) -> None:
    del tables
    values = [0.1, 0.1, 0.2, 0.3, 0.7, 1.1, None]
    await session.execute(
        insert(Reading),
        [{"id": i + 1, "value": 0.1 * (i + 1), "plain": v} for i, v in enumerate(values)],
    )
    repo = Readings(session)
    for order in (["value"], ["-value"], ["plain"], ["-plain"]):
        expected = [r.id for r in await repo.list(order_by=order)]
        assert await _walk(repo, order, 1) == expected
        assert await _walk(repo, order, 2) == expected
        assert await _walk_back(repo, order, 1) == expected


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    values=st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32), max_size=12
    ),
    limit=st.integers(1, 4),
)
async def test_any_floats_page_every_row_once(tables, session, values, limit) -> None:
    del tables
    await session.execute(delete(Reading))
    if values:
        await session.execute(
            insert(Reading), [{"id": i + 1, "value": v} for i, v in enumerate(values)]
        )
    repo = Readings(session)
    expected = [r.id for r in await repo.list(order_by=["value"])]
    assert await _walk(repo, ["value"], limit) == expected
