"""Review tests of the bulk write-time stamping, rollback records and UTC binding.

``bulk_create()``/``bulk_insert()`` stamp ``created_at``/``updated_at`` once per call;
the objects an ``INSERT … RETURNING`` loaded are recorded as one entry of weak
references per write, which a rollback moves into SQLAlchemy's own bookkeeping; an
aware UTC ``datetime`` is bound as it is on PyMySQL/aiomysql/asyncmy. The first two
tests reproduce defects found in review (records that grew with every row of a long
transaction; objects of a SAVEPOINT still open when an enclosing one rolled back left
behind); the others pin behaviour that was probed and holds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import weakref
import zoneinfo
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.event import registry
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

import flavours
from backends import Backend
from flavours import make_repo
from models import Post
from repositories import PostRepository
from sqla_repo import ConflictError, _new_objects

UTC = dt.timezone.utc
MINUS_08 = dt.timezone(dt.timedelta(hours=-8))
PAST = dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
EARLIER = dt.datetime(2023, 6, 7, 8, 9, 10, 654321, tzinfo=UTC)

BATCH = 64
"""The size from which writes were once recorded differently: both sides are tested."""
SIZES = pytest.mark.parametrize("size", [3, BATCH], ids=["few", "batch"])
both_flavours = pytest.mark.usefixtures("flavour")


class Stamp(dt.datetime):
    """A ``datetime`` subclass (as pendulum's or arrow's are)."""


def _rows(prefix: str, size: int) -> list[dict[str, Any]]:
    return [{"title": f"{prefix}{i}"} for i in range(size)]


def _persistent(objs: list[Post]) -> list[bool]:
    return [sa_inspect(obj).persistent for obj in objs]


def _dead_weakrefs() -> int:
    gc.collect()
    return sum(
        1 for obj in gc.get_objects() if type(obj) is weakref.ReferenceType and obj() is None
    )


# -- batch rollback records ----------------------------------------------------------------


@pytest.mark.parametrize("size", [BATCH - 1, BATCH], ids=["few", "batch"])
@both_flavours
async def test_records_of_freed_objects_stay_bounded_in_a_long_transaction(
    session: AsyncSession, size: int
) -> None:
    """Objects a long transaction wrote and dropped leave bounded bookkeeping behind.

    An import that calls ``bulk_create()`` chunk after chunk in one transaction, and
    drops each chunk's objects, keeps memory bounded by what is alive: dead weak
    references are dropped as they pile up, so twice as many chunks leave no more.
    """
    repo = make_repo(PostRepository, session)
    await repo.bulk_create(_rows("warm", size))
    before = _dead_weakrefs()
    for chunk in range(60):
        await repo.bulk_create(_rows(f"c{chunk}-", size))
    grown = _dead_weakrefs() - before
    bound = 2 * _new_objects._COMPACT_FROM
    assert grown <= bound, f"{grown} dead weak references kept for 60 x {size} freed objects"


@SIZES
@both_flavours
async def test_outer_savepoint_rolled_back_while_inner_one_is_open(
    session: AsyncSession, size: int
) -> None:
    """Rolling back an outer SAVEPOINT takes the objects of the SAVEPOINT inside it.

    ``outer.rollback()`` while ``inner`` is still open undoes the rows of both, and the
    objects leave the session whatever the number of rows (SQLAlchemy drops ``inner``'s
    own weak mapping when it closes ``inner``: recording there left them behind).
    """
    repo = make_repo(PostRepository, session)
    outer = await session.begin_nested()
    await session.begin_nested()
    ghosts = await repo.bulk_create(_rows("g", size))
    await outer.rollback()
    assert await session.scalar(select(Post.id).where(Post.title == "g0")) is None
    assert not any(_persistent(ghosts))


@SIZES
@both_flavours
async def test_probe_savepoints_released_and_rolled_back_in_every_order(
    session: AsyncSession, size: int
) -> None:
    repo = make_repo(PostRepository, session)
    root = await repo.bulk_create(_rows("r", size))
    async with session.begin_nested():
        released = await repo.bulk_create(_rows("a", size))
        with contextlib.suppress(LookupError):
            async with session.begin_nested():
                inner = await repo.bulk_create(_rows("b", size))
                async with session.begin_nested():
                    deepest = await repo.bulk_create(_rows("c", size))
                raise LookupError
        async with session.begin_nested():
            sibling = await repo.bulk_create(_rows("d", size))
    assert not any(_persistent(inner + deepest))
    assert all(_persistent(root + released + sibling))
    with contextlib.suppress(LookupError):
        async with session.begin_nested():
            later = await repo.bulk_create(_rows("e", size))
            raise LookupError
    assert not any(_persistent(later))
    assert all(_persistent(root + released + sibling))
    assert await repo.count() == 3 * size
    await session.rollback()
    assert not any(_persistent(root + released + sibling))


@SIZES
@both_flavours
async def test_probe_objects_deleted_or_expunged_before_the_rollback(
    session: AsyncSession, size: int
) -> None:
    repo = make_repo(PostRepository, session)
    objs = await repo.bulk_create(_rows("x", size))
    await session.delete(objs[0])
    await session.flush()
    session.expunge(objs[1])
    async with session.begin_nested():
        await session.delete(objs[2])
        await session.flush()
    await session.rollback()  # must not raise on the deleted or expunged ones
    assert not any(_persistent(objs))
    assert all(sa_inspect(obj).transient for obj in objs)


@SIZES
@both_flavours
async def test_probe_failed_flush_then_rollback(session: AsyncSession, size: int) -> None:
    repo = make_repo(PostRepository, session)
    objs = await repo.bulk_create(_rows("f", size))
    session.add(Post(title="bad", author_id=10**9))
    with pytest.raises(Exception):  # noqa: B017, PT011 - each driver's own IntegrityError
        await session.flush()
    assert not any(_persistent(objs))
    await session.rollback()
    again = await repo.bulk_create(_rows("f", size))
    assert all(_persistent(again))
    assert await repo.count() == size


@SIZES
@both_flavours
async def test_probe_batch_objects_behave_as_flushed_ones_when_readded_elsewhere(
    sessionmaker: async_sessionmaker[AsyncSession], size: int
) -> None:
    """A moved object meets the first session's rollback as a flushed one does.

    That is SQLAlchemy's own rule (the first session's rollback detaches it), whatever the
    size of the write.
    """
    async with sessionmaker() as first, sessionmaker() as second:
        repo = make_repo(PostRepository, first)
        objs = await repo.bulk_create(_rows("m", size))
        flushed = Post(title="flushed")
        first.add(flushed)
        await first.flush()
        for obj in (objs[0], flushed):
            first.expunge(obj)
            second.add(obj)
        await first.rollback()
        mine, theirs = sa_inspect(objs[0]), sa_inspect(flushed)
        assert (mine.session, mine.key is None) == (theirs.session, theirs.key is None)


@pytest.mark.parametrize("end", ["reset", "close", "commit"])
async def test_probe_session_reused_after_every_kind_of_end(
    sessionmaker: async_sessionmaker[AsyncSession], end: str
) -> None:
    async with sessionmaker() as session:
        repo = PostRepository(session)
        for round_ in range(3):
            kept = await repo.bulk_create(_rows(f"k{round_}-", BATCH))
            await getattr(session, end)()
            ghosts = await repo.bulk_create(_rows(f"g{round_}-", BATCH))
            await session.rollback()
            assert not any(_persistent(ghosts))
            if end == "commit":
                assert all(_persistent(kept))
        assert len(session.sync_session.dispatch.after_rollback) == 1
        assert len(session.sync_session.dispatch.after_transaction_end) == 1
        assert session.sync_session not in _new_objects._ENTRIES


async def test_probe_no_listener_or_record_outlives_its_session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async def one() -> None:
        async with sessionmaker() as session:
            await PostRepository(session).bulk_create(_rows("s", BATCH))
            await session.rollback()

    await one()
    gc.collect()
    listeners, batches = len(registry._key_to_collection), len(_new_objects._ENTRIES)
    for _ in range(30):
        await one()
    gc.collect()
    assert len(registry._key_to_collection) == listeners
    assert len(_new_objects._ENTRIES) == batches


async def test_probe_two_sessions_interleaved(
    sessionmaker: async_sessionmaker[AsyncSession], requires: Any
) -> None:
    requires("concurrent_writers")
    async with sessionmaker() as first, sessionmaker() as second:
        a = await PostRepository(first).bulk_create(_rows("a", BATCH))
        b = await PostRepository(second).bulk_create(_rows("b", BATCH))
        await first.rollback()
        assert not any(_persistent(a))
        assert all(_persistent(b))
        await second.commit()
        assert all(_persistent(b))
        assert await PostRepository(first).count() == BATCH


# -- write-time stamping -------------------------------------------------------------------


@both_flavours
@pytest.mark.parametrize("method", ["bulk_create", "bulk_insert"])
async def test_probe_stamping_with_instances_and_mixed_groups(
    session: AsyncSession, method: str
) -> None:
    repo = make_repo(PostRepository, session)
    before = dt.datetime.now(UTC)
    await getattr(repo, method)(
        [
            Post(title="i1"),
            Post(title="i2", created_at=PAST),
            {"title": "d1"},
            {"title": "d2", "updated_at": EARLIER},
            {"title": "d3", "created_at": Stamp(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)},
            {"title": "d4", "created_at": PAST.astimezone(zoneinfo.ZoneInfo("Asia/Tokyo"))},
        ]
    )
    rows = await session.execute(select(Post.title, Post.created_at, Post.updated_at))
    stored = {title: (created, updated) for title, created, updated in rows}
    now = stored["i1"][0]
    assert before <= now <= dt.datetime.now(UTC)
    assert stored["i1"] == (now, now)
    assert stored["d1"] == (now, now)
    assert stored["d2"] == (now, EARLIER)
    assert stored["i2"] == (PAST, PAST)
    assert stored["d3"] == (PAST, PAST)
    assert stored["d4"] == (PAST, PAST)


@both_flavours
async def test_probe_failed_bulk_insert_stamps_nothing_and_retry_works(
    session: AsyncSession,
) -> None:
    repo = make_repo(PostRepository, session)
    rows = [*_rows("n", 3), {"title": "x", "author_id": 10**9}]
    with pytest.raises(ConflictError):
        await repo.bulk_insert(rows)
    assert rows[0] == {"title": "n0"}  # the caller's mappings are left alone
    assert await repo.bulk_insert(rows[:3]) == 3


# -- UTC binding ---------------------------------------------------------------------------


def _raw_utc(raw: object, expected: dt.datetime) -> bool:
    if isinstance(raw, str):  # SQLite: ISO text
        return raw == expected.replace(tzinfo=None).isoformat(" ", "microseconds")
    assert isinstance(raw, dt.datetime)
    if raw.tzinfo is None:  # MySQL/MariaDB DATETIME: naive UTC wall time
        return raw == expected.replace(tzinfo=None)
    return raw == expected  # PostgreSQL timestamptz


VALUES = pytest.mark.parametrize(
    "value",
    [
        PAST,
        PAST.astimezone(MINUS_08),
        PAST.astimezone(zoneinfo.ZoneInfo("UTC")),
        Stamp(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        Stamp(2024, 1, 1, 19, 4, 5, 123456, tzinfo=MINUS_08),
    ],
    ids=["utc", "minus08", "zoneinfo-utc", "subclass-utc", "subclass-minus08"],
)


async def _raw_created(session: AsyncSession) -> list[object]:
    rows = await session.execute(text("SELECT created_at, updated_at FROM posts ORDER BY id"))
    return [value for row in rows for value in row]


@VALUES
@both_flavours
async def test_probe_every_bulk_write_binds_the_utc_wall_time(
    session: AsyncSession, value: dt.datetime
) -> None:
    repo = make_repo(PostRepository, session)
    await repo.bulk_insert([{"title": f"i{i}", "created_at": value} for i in range(3)])
    await repo.bulk_create([{"title": f"c{i}", "created_at": value} for i in range(3)])
    post = await repo.create({"title": "u"})
    await repo.upsert(
        {"id": post.id, "title": "u2", "updated_at": value},
        conflict_on=["id"],
        update=["title", "updated_at"],
    )
    other = await repo.create({"title": "v"})
    await repo.update(other, {"created_at": value, "updated_at": value})
    rows = await session.execute(
        text("SELECT title, created_at, updated_at FROM posts ORDER BY id")
    )
    raws = [raw for title, *row in rows for raw in (row if title != "u2" else row[1:])]
    assert len(raws) == 15
    assert all(_raw_utc(raw, PAST) for raw in raws), raws


@VALUES
@both_flavours
async def test_probe_comparisons_bind_the_utc_wall_time(
    session: AsyncSession, value: dt.datetime
) -> None:
    repo = make_repo(PostRepository, session)
    await repo.bulk_insert(
        [{"title": "at", "created_at": PAST}, {"title": "later", "created_at": PAST.replace(day=3)}]
    )
    assert await repo.count(Post.created_at == value) == 1
    assert await repo.count(Post.created_at.in_([value, EARLIER])) == 1
    assert await repo.count(Post.created_at > value) == 1
    assert await repo.count(Post.created_at.between(value, value)) == 1
    assert [post.title async for post in repo.stream(Post.created_at <= value)] == ["at"]


@both_flavours
async def test_probe_keyset_pages_on_a_datetime_sort_key(session: AsyncSession) -> None:
    repo = make_repo(PostRepository, session)
    await repo.bulk_insert(
        [{"title": f"p{i}", "created_at": PAST + dt.timedelta(microseconds=i)} for i in range(5)]
    )
    seen: list[str] = []
    cursor = None
    while True:
        page = await repo.paginate(order_by="created_at", limit=2, after=cursor)
        seen += [post.title for post in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"p{i}" for i in range(5)]
    back = await repo.paginate(order_by="-created_at", limit=2)
    assert [post.title for post in back.items] == ["p4", "p3"]


_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg", "mariadb": "mysql+pymysql"}


@VALUES
async def test_probe_sync_driver_bulk_writes_and_filters(
    backend: Backend, engine: AsyncEngine, value: dt.datetime
) -> None:
    """The same through each backend's synchronous driver (sqlite3, psycopg, PyMySQL)."""
    assert engine is not None  # the schema is the async engine fixture's
    sync = create_engine(backend.url.set(drivername=_SYNC_DRIVERS[backend.family]))
    try:
        with sync.connect() as conn, Session(conn) as session:
            repo = flavours.sync_twin(PostRepository)(session)
            repo.bulk_insert([{"title": f"i{i}", "created_at": value} for i in range(3)])
            repo.bulk_create([{"title": f"c{i}", "created_at": value} for i in range(3)])
            raws = [
                raw
                for row in session.execute(text("SELECT created_at, updated_at FROM posts"))
                for raw in row
            ]
            assert len(raws) == 12
            assert all(_raw_utc(raw, PAST) for raw in raws), raws
            assert repo.count(Post.created_at == value) == 6
            assert repo.count(Post.created_at.in_([value])) == 6
            assert len(list(repo.stream(Post.created_at >= value))) == 6
            session.rollback()
    finally:
        sync.dispose()
