"""Writes of many rows stamp created_at/updated_at once; UTC values stored as UTC wall time."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from backends import Backend
from flavours import make_repo
from models import Post
from repositories import PostRepository

UTC = dt.timezone.utc
MINUS_08 = dt.timezone(dt.timedelta(hours=-8))
PAST = dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
EARLIER = dt.datetime(2023, 6, 7, 8, 9, 10, 654321, tzinfo=UTC)

both_flavours = pytest.mark.usefixtures("flavour")


async def _stored(session: AsyncSession) -> list[tuple[str, dt.datetime, dt.datetime]]:
    rows = await session.execute(select(Post.title, Post.created_at, Post.updated_at))
    return sorted((title, created, updated) for title, created, updated in rows)


@both_flavours
@pytest.mark.parametrize("method", ["bulk_create", "bulk_insert"])
async def test_rows_of_one_call_share_one_instant(session: AsyncSession, method: str) -> None:
    repo = make_repo(PostRepository, session)
    before = dt.datetime.now(UTC)
    await getattr(repo, method)([{"title": f"p{i}"} for i in range(5)])
    after = dt.datetime.now(UTC)
    stored = await _stored(session)
    assert len(stored) == 5
    assert len({(created, updated) for _, created, updated in stored}) == 1
    _, created, updated = stored[0]
    assert created == updated
    assert before <= created <= after


@both_flavours
@pytest.mark.parametrize("method", ["bulk_create", "bulk_insert"])
async def test_given_values_win_and_updated_at_follows_created_at(
    session: AsyncSession, method: str
) -> None:
    """As the column defaults do: updated_at repeats the row's own created_at."""
    repo = make_repo(PostRepository, session)
    before = dt.datetime.now(UTC)
    await getattr(repo, method)(
        [
            {"title": "a", "created_at": PAST},
            {"title": "b", "created_at": PAST, "updated_at": EARLIER},
            {"title": "c"},
            {"title": "d", "created_at": None, "updated_at": EARLIER},
            {"title": "e", "created_at": EARLIER.astimezone(MINUS_08)},
        ]
    )
    stored = {title: (created, updated) for title, created, updated in await _stored(session)}
    assert stored["a"] == (PAST, PAST)
    assert stored["b"] == (PAST, EARLIER)
    assert stored["c"][0] == stored["c"][1] >= before
    assert stored["d"][0] >= before
    assert stored["d"][1] == EARLIER
    assert stored["e"] == (EARLIER, EARLIER)


@both_flavours
async def test_bulk_created_objects_carry_the_stamp(session: AsyncSession) -> None:
    repo = make_repo(PostRepository, session)
    posts = await repo.bulk_create([{"title": "x"}, {"title": "y", "created_at": PAST}])
    assert posts[0].created_at == posts[0].updated_at
    assert posts[0].created_at.tzinfo is not None
    assert (posts[1].created_at, posts[1].updated_at) == (PAST, PAST)


@both_flavours
@pytest.mark.parametrize("value", [PAST, PAST.astimezone(MINUS_08)], ids=["utc", "minus08"])
async def test_stored_as_the_utc_wall_time(session: AsyncSession, value: dt.datetime) -> None:
    """What reaches the column is the UTC instant, whichever zone the value was given in.

    An aware UTC value goes to the driver as it is where the driver handles it (asyncpg,
    psycopg; PyMySQL, aiomysql and asyncmy, which write its wall time): read back
    without the column's type, the stored value must still be the UTC wall time.
    """
    repo = make_repo(PostRepository, session)
    post = await repo.create({"title": "t", "created_at": value})
    raw = (
        await session.execute(text("SELECT created_at FROM posts WHERE id = :id"), {"id": post.id})
    ).scalar_one()
    _assert_raw_utc(raw)


def _assert_raw_utc(raw: object) -> None:
    if isinstance(raw, str):  # SQLite: ISO text
        assert raw == "2024-01-02 03:04:05.123456"
    else:
        assert isinstance(raw, dt.datetime)
        if raw.tzinfo is None:  # MySQL/MariaDB DATETIME: naive UTC wall time
            assert raw == PAST.replace(tzinfo=None)
        else:  # PostgreSQL timestamptz
            assert raw == PAST


_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg", "mariadb": "mysql+pymysql"}


@pytest.mark.parametrize("value", [PAST, PAST.astimezone(MINUS_08)], ids=["utc", "minus08"])
async def test_stored_as_the_utc_wall_time_by_the_sync_driver(
    backend: Backend, engine: AsyncEngine, value: dt.datetime
) -> None:
    """The same through each backend's synchronous driver (sqlite3, psycopg, PyMySQL)."""
    assert engine is not None  # the schema is the async engine fixture's
    sync = create_engine(backend.url.set(drivername=_SYNC_DRIVERS[backend.family]))
    try:
        with sync.connect() as conn, Session(conn) as session:
            post = Post(title="t", created_at=value)
            session.add(post)
            session.flush()
            raw = session.execute(
                text("SELECT created_at FROM posts WHERE id = :id"), {"id": post.id}
            ).scalar_one()
            _assert_raw_utc(raw)
            session.rollback()
    finally:
        sync.dispose()
