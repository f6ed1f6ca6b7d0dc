"""Keyset pages visit every row once, in order, forward and backward, on every backend."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Status, User
from sqla_repo.exceptions import InvalidFilterError
from sqla_repo.filters import SortKey, compile_order_by
from sqla_repo.pagination import (
    cursor_spec,
    decode_cursor,
    encode_cursor,
    keyset_predicate,
    row_values,
)

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)

# Few distinct values per column, so sort keys tie often; NULL wherever the column allows.
# Names include what collations disagree on: case, trailing spaces, accents.
COLUMNS: dict[str, st.SearchStrategy[Any]] = {
    "name": st.sampled_from(["a", "A", "b", "a ", "é", "e", "", "Z"]),
    "age": st.sampled_from([None, -1, 0, 7, 2**31 - 1]),
    "score": st.sampled_from([None, -1.5, 0.0, 2.25, 1e300]),
    "balance": st.sampled_from([None, Decimal("-2.50"), Decimal("0.00"), Decimal("1.05")]),
    "is_active": st.booleans(),
    "status": st.sampled_from(list(Status)),
    "birthday": st.sampled_from([None, dt.date(1999, 12, 31), dt.date(2000, 1, 1)]),
    "external_id": st.sampled_from([None, uuid.UUID(int=1), uuid.UUID(int=2**127)]),
    "created_at": st.sampled_from([T0, T0 + dt.timedelta(microseconds=1), T0.replace(year=2030)]),
}
SORTABLE = sorted(COLUMNS)

rows_strategy = st.lists(st.fixed_dictionaries(COLUMNS), max_size=20)
order_strategy = st.lists(
    st.tuples(st.sampled_from(SORTABLE), st.booleans()), max_size=3, unique_by=lambda t: t[0]
).map(lambda items: [("-" if desc else "") + name for name, desc in items])


def ordered(stmt: Select[Any], keys: list[SortKey]) -> Select[Any]:
    return stmt.order_by(*[key.clause() for key in keys])


async def page(
    session: AsyncSession,
    keys: list[SortKey],
    spec: str,
    cursor: str | None,
    limit: int,
    *,
    forward: bool,
) -> list[User]:
    """Fetch one keyset page after (or before) a cursor, in the keys' order."""
    order = keys if forward else [key.reversed() for key in keys]
    stmt = ordered(select(User), order).limit(limit)
    if cursor is not None:
        values = decode_cursor(cursor, spec=spec)
        stmt = stmt.where(keyset_predicate(keys, values, forward=forward))
    rows = list((await session.scalars(stmt)).all())
    return rows if forward else rows[::-1]


async def traverse(
    session: AsyncSession, keys: list[SortKey], limit: int, *, forward: bool
) -> list[int]:
    """Walk all pages from one end to the other, following cursors."""
    spec = cursor_spec(User, keys)
    seen: list[int] = []
    cursor = None
    for _ in range(100):
        rows = await page(session, keys, spec, cursor, limit, forward=forward)
        if not rows:
            return seen
        ids = [row.id for row in rows]
        seen = seen + ids if forward else ids + seen
        boundary = rows[-1] if forward else rows[0]
        cursor = encode_cursor(row_values(boundary, keys), spec=spec)
    pytest.fail("keyset traversal does not end")


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=rows_strategy, order_by=order_strategy, limit=st.integers(1, 4))
async def test_keyset_traversal_matches_one_ordered_query(session, rows, order_by, limit):
    """Forward and backward keyset pages give every row once, in the query's order."""
    async with session.begin_nested() as savepoint:
        session.add_all([User(email=f"u{i}@example.org", **row) for i, row in enumerate(rows)])
        await session.flush()
        session.expunge_all()  # cursors are made from values read back from the database
        keys = compile_order_by(User, order_by)
        expected = list((await session.scalars(ordered(select(User.id), keys))).all())
        assert len(expected) == len(rows)
        assert await traverse(session, keys, limit, forward=True) == expected
        assert await traverse(session, keys, limit, forward=False) == expected
        await savepoint.rollback()


async def test_pages_are_stable_under_inserts_before_the_cursor(session):
    """Rows inserted before a cursor do not shift the next page."""
    session.add_all([User(email=f"s{i}@example.org", age=i) for i in range(6)])
    await session.flush()
    keys = compile_order_by(User, "age")
    spec = cursor_spec(User, keys)
    first = await page(session, keys, spec, None, 3, forward=True)
    cursor = encode_cursor(row_values(first[-1], keys), spec=spec)
    session.add(User(email="early@example.org", age=-5))
    await session.flush()
    second = await page(session, keys, spec, cursor, 3, forward=True)
    assert [u.age for u in first] == [0, 1, 2]
    assert [u.age for u in second] == [3, 4, 5]


async def test_cursor_for_another_order_is_refused(session):
    """A cursor made for one sort order cannot be used with another."""
    session.add(User(email="x@example.org", age=1))
    await session.flush()
    keys = compile_order_by(User, "age")
    (user,) = (await session.scalars(select(User))).all()
    cursor = encode_cursor(row_values(user, keys), spec=cursor_spec(User, keys))
    other = compile_order_by(User, "-age")
    with pytest.raises(InvalidFilterError) as info:
        await page(session, other, cursor_spec(User, other), cursor, 2, forward=True)
    assert info.value.detail["reason"] == "cursor_mismatch"
