"""Keyset pages visit every row once, in order, forward and backward; cursors stay bound."""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Select, delete, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from models import Folder, Status, User
from sqla_repo import _cursors
from sqla_repo.context import all_tenants, tenant
from sqla_repo.exceptions import InvalidFilterError, InvalidValueError
from sqla_repo.filters import ALL_COLUMNS, SortKey, compile_order_by
from sqla_repo.pagination import (
    cursor_spec,
    decode_cursor,
    encode_cursor,
    keyset_predicate,
    row_values,
)
from sqla_repo.repository import BaseRepository

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
        keys = compile_order_by(User, order_by, allowed=ALL_COLUMNS)
        expected = list((await session.scalars(ordered(select(User.id), keys))).all())
        assert len(expected) == len(rows)
        assert await traverse(session, keys, limit, forward=True) == expected
        assert await traverse(session, keys, limit, forward=False) == expected
        await savepoint.rollback()


async def test_pages_are_stable_under_inserts_before_the_cursor(session):
    """Rows inserted before a cursor do not shift the next page."""
    session.add_all([User(email=f"s{i}@example.org", age=i) for i in range(6)])
    await session.flush()
    keys = compile_order_by(User, "age", allowed=ALL_COLUMNS)
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
    keys = compile_order_by(User, "age", allowed=ALL_COLUMNS)
    (user,) = (await session.scalars(select(User))).all()
    cursor = encode_cursor(row_values(user, keys), spec=cursor_spec(User, keys))
    other = compile_order_by(User, "-age", allowed=ALL_COLUMNS)
    with pytest.raises(InvalidFilterError) as info:
        await page(session, other, cursor_spec(User, other), cursor, 2, forward=True)
    assert info.value.detail["reason"] == "cursor_mismatch"


# -- Through the repository: cursors bound to filters, repository, tenant and age ---------


class Users(BaseRepository[User]):
    filterable_fields = ("name", "age", "is_active", "status", "score")
    sortable_fields = tuple(SORTABLE)


class OtherUsers(BaseRepository[User]):
    filterable_fields = ("name", "age", "is_active", "status", "score")
    sortable_fields = tuple(SORTABLE)


class Folders(BaseRepository[Folder]):
    sortable_fields = ("name",)


FILTERS: list[dict[str, Any] | list[tuple[str, str, Any]]] = [
    {},
    {"is_active": True},
    {"age__ge": "0", "name__ne": "Z"},
    [("status", "in", ["active"]), ("age", "is_null", False)],
]


async def walk(repo: BaseRepository[Any], limit: int, **kwargs: Any) -> tuple[list[int], list[int]]:
    """Page to the end through next_cursor, then back to the start through previous_cursor."""
    forward: list[int] = []
    page = await repo.paginate(limit=limit, **kwargs)
    pages = [page]
    for _ in range(100):
        forward += [row.id for row in page.items]
        if page.next_cursor is None:
            break
        page = await repo.paginate(limit=limit, after=page.next_cursor, **kwargs)
        pages.append(page)
    backward = [row.id for row in page.items]
    for _ in range(100):
        if page.previous_cursor is None:
            break
        page = await repo.paginate(limit=limit, before=page.previous_cursor, **kwargs)
        backward = [row.id for row in page.items] + backward
    assert not pages[0].has_previous
    return forward, backward


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=rows_strategy,
    order_by=order_strategy,
    filters=st.sampled_from(FILTERS),
    limit=st.integers(1, 5),
)
async def test_paginate_with_filters_visits_every_row(session, rows, order_by, filters, limit):
    """next_cursor reaches the end and previous_cursor the start, with the filters applied."""
    order_by = order_by or None
    async with session.begin_nested() as savepoint:
        session.add_all([User(email=f"u{i}@example.org", **row) for i, row in enumerate(rows)])
        await session.flush()
        session.expunge_all()
        repo = Users(session)
        expected = [user.id for user in await repo.list(filters=filters or None, order_by=order_by)]
        forward, backward = await walk(repo, limit, filters=filters, order_by=order_by)
        assert forward == expected
        assert backward == expected
        await savepoint.rollback()


async def seed_users(session: AsyncSession, count: int = 6) -> None:
    session.add_all(
        [User(email=f"k{i}@example.org", name=f"n{i}", age=i % 3) for i in range(count)]
    )
    await session.flush()


@pytest.mark.parametrize(
    ("made", "replayed"),
    [
        pytest.param({"filters": {"age__ge": 0}}, {"filters": {"age__ge": 1}}, id="value"),
        pytest.param({"filters": {"age__ge": 0}}, {"filters": None}, id="removed"),
        pytest.param({}, {"filters": {"name__ne": "x"}}, id="added"),
        pytest.param({}, {"include_deleted": True}, id="include-deleted"),
        pytest.param({}, {"order_by": ["-name"]}, id="sort"),
    ],
)
async def test_cursor_replayed_elsewhere_is_refused(session, made, replayed):
    """A cursor replayed with other filters, include_deleted or sort is refused."""
    await seed_users(session)
    repo = Users(session)
    first = await repo.paginate(limit=2, **made)
    assert first.next_cursor is not None
    with pytest.raises(InvalidFilterError) as info:
        await repo.paginate(limit=2, after=first.next_cursor, **replayed)
    assert info.value.detail == {"field": "cursor", "reason": "cursor_mismatch"}
    assert "n1" not in str(info.value)
    second = await repo.paginate(limit=2, after=first.next_cursor, **made)
    assert second.items


async def test_filters_in_another_order_are_the_same_filters(session):
    """A cursor stays valid when the same filters come in another order."""
    await seed_users(session)
    repo = Users(session)
    first = await repo.paginate(limit=2, filters={"age__ge": 0, "name__ne": "x"})
    second = await repo.paginate(
        limit=2, after=first.next_cursor, filters={"name__ne": "x", "age__ge": 0}
    )
    assert [u.name for u in first.items + second.items] == ["n0", "n1", "n2", "n3"]


async def test_cursor_of_another_repository_is_refused(session):
    """A repository class refuses the cursors of another over the same model."""
    await seed_users(session)
    first = await Users(session).paginate(limit=2)
    with pytest.raises(InvalidFilterError) as info:
        await OtherUsers(session).paginate(limit=2, after=first.next_cursor)
    assert info.value.detail["reason"] == "cursor_mismatch"
    with pytest.raises(InvalidFilterError) as info:
        await OtherUsers(session).paginate(limit=2, before=first.next_cursor)
    assert info.value.detail["reason"] == "cursor_mismatch"


async def test_trusted_where_is_not_bound(session):
    """The trusted where expressions are not part of the binding: the caller owns them."""
    await seed_users(session)
    repo = Users(session)
    first = await repo.paginate(User.age == 0, limit=1)
    second = await repo.paginate(limit=2, after=first.next_cursor)
    assert [u.name for u in second.items] == ["n1", "n2"]


async def test_cursor_of_another_tenant_is_refused(session):
    """A cursor made under one tenant is refused under another and under all_tenants()."""
    for name in ("a", "b"):
        with tenant(name):
            session.add_all([Folder(name=f"{name}{i}") for i in range(3)])
            await session.flush()
    repo = Folders(session)
    with tenant("a"):
        first = await repo.paginate(limit=2, order_by=["name"])
        assert [f.name for f in first.items] == ["a0", "a1"]
    for scope in (tenant("b"), all_tenants()):
        with scope, pytest.raises(InvalidFilterError) as info:
            await repo.paginate(limit=2, order_by=["name"], after=first.next_cursor)
        assert info.value.detail["reason"] == "cursor_mismatch"
    with tenant("a"):
        second = await repo.paginate(limit=2, order_by=["name"], after=first.next_cursor)
    assert [f.name for f in second.items] == ["a2"]


async def test_cursor_max_age(session, monkeypatch):
    """A repository with cursor_max_age refuses cursors older than that."""

    class Expiring(Users):
        cursor_max_age = 30

    await seed_users(session)
    clock = [1_780_000_000.0]
    monkeypatch.setattr(_cursors, "_clock", lambda: clock[0])
    repo = Expiring(session)
    first = await repo.paginate(limit=2)
    clock[0] += 30
    assert (await repo.paginate(limit=2, after=first.next_cursor)).items
    clock[0] += 0.01
    with pytest.raises(InvalidFilterError) as info:
        await repo.paginate(limit=2, after=first.next_cursor)
    assert info.value.detail["reason"] == "cursor_expired"


NON_FINITE = [float("-inf"), float("inf"), float("nan")]


async def test_non_finite_boundaries(session):
    """Pages follow on past a NaN or infinite boundary, where the backend stores those."""
    stored = []
    for value in NON_FINITE:
        try:
            async with session.begin_nested():
                session.add(User(email=f"probe{len(stored)}@example.org", score=value))
                await session.flush()
        except (DBAPIError, InvalidValueError):
            continue
        finally:
            session.expunge_all()
        back = await session.scalar(select(User.score).where(User.email.like("probe%")))
        await session.execute(delete(User).where(User.email.like("probe%")))
        if back is not None and struct.pack(">d", back) == struct.pack(">d", value):
            stored.append(value)
    if not stored:
        pytest.skip("the backend stores no non-finite float")
    values = [*stored, *stored, None, -1.5, 0.0, 2.0]
    session.add_all([User(email=f"f{i}@example.org", score=v) for i, v in enumerate(values)])
    await session.flush()
    session.expunge_all()
    repo = Users(session)
    for order_by in (["score"], ["-score"]):
        expected = [user.id for user in await repo.list(order_by=order_by)]
        forward, backward = await walk(repo, 1, order_by=order_by)
        assert forward == backward == expected
