"""Adversarial review of round 8: cached sort keys and keyset templates, restored sessions.

Keyset pages now build their condition once per sort order with named parameters; a
failed bulk write undoes in the session what it loaded; bulk rows are checked column by
column; ``UTCDateTime`` binds aware UTC values on a short path.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, bindparam, select, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncAttrs, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

import flavours
from reliability.support import own_tables
from sqla_repo import ALL_COLUMNS, BaseRepository, IntegerPKMixin, RepositoryError
from sqla_repo.types import UTCDateTime

pytestmark = pytest.mark.usefixtures("flavour")


class _Base(AsyncAttrs, DeclarativeBase):
    pass


class Shelf(IntegerPKMixin, _Base):
    __tablename__ = "r8_shelves"
    name: Mapped[str] = mapped_column(String(20))


class Tag(IntegerPKMixin, _Base):
    """A unique code, a checked rank, a many-to-one loaded on access."""

    __tablename__ = "r8_tags"
    __table_args__ = (CheckConstraint("rank >= 0", name="r8_tags_rank"),)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    label: Mapped[str] = mapped_column(String(20))
    rank: Mapped[int] = mapped_column(Integer, default=0)
    score: Mapped[int | None] = mapped_column(Integer)
    shelf_id: Mapped[int | None] = mapped_column(ForeignKey("r8_shelves.id"))
    shelf: Mapped[Shelf | None] = relationship()
    note: Mapped[str | None] = mapped_column(String(50), deferred=True)


class Moment(IntegerPKMixin, _Base):
    __tablename__ = "r8_moments"
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class ShelfRepo(BaseRepository[Shelf]):
    pass


class TagRepo(BaseRepository[Tag]):
    sortable_fields = ALL_COLUMNS
    filterable_fields = ALL_COLUMNS


class MomentRepo(BaseRepository[Moment]):
    pass


TAGS = Tag.__table__


@pytest_asyncio.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with own_tables(engine, _Base.metadata) as session:
        yield session


async def _codes(session: AsyncSession) -> list[str]:
    rows = await session.execute(select(TAGS.c.code).order_by(TAGS.c.code))
    return [row[0] for row in rows]


# -- a failed bulk write and what the caller held in the session --------------------------

_FAILING = [{"code": "bad", "label": "x", "rank": -1}]  # the CHECK refuses it


async def test_failed_bulk_upsert_keeps_the_callers_pending_object(db):
    """A pending object added by the caller stays in the session after a failed upsert.

    The write flushes the caller's pending changes first, outside its SAVEPOINT: their
    rows stay in the transaction, and the caller relies on its object staying persistent
    (later changes to it are flushed, ``get()`` returns it).
    """
    repo = flavours.make_repo(TagRepo, db)
    mine = Tag(code="mine", label="kept")
    db.add(mine)
    with pytest.raises(RepositoryError):
        await repo.bulk_upsert(_FAILING, conflict_on=["code"])
    assert mine in db
    assert sa_inspect(mine).persistent
    mine.label = "changed"
    await db.commit()
    row = (await db.execute(select(TAGS.c.code, TAGS.c.label))).one()
    assert tuple(row) == ("mine", "changed")


async def test_failed_bulk_get_or_create_keeps_the_callers_pending_object(db):
    """The same for ``bulk_get_or_create()``: the caller's object is not detached."""
    repo = flavours.make_repo(TagRepo, db)
    mine = Tag(code="mine", label="kept")
    db.add(mine)
    with pytest.raises(RepositoryError):
        await repo.bulk_get_or_create(_FAILING, conflict_on=["code"])
    assert mine in db
    assert await repo.get_by_id(mine.id) is mine


async def test_failed_bulk_upsert_leaves_an_untouched_object_loaded(db):
    """An object the failed write never touched keeps the relationship loaded on it.

    Re-reading it with ``populate_existing`` resets a loaded lazy relationship: in async
    code the next access would need IO (``MissingGreenlet``).
    """
    shelves = flavours.make_repo(ShelfRepo, db)
    repo = flavours.make_repo(TagRepo, db)
    shelf = await shelves.create({"name": "s"})
    kept = await repo.create({"code": "kept", "label": "x", "shelf_id": shelf.id})
    assert await kept.awaitable_attrs.shelf is shelf
    with pytest.raises(RepositoryError):
        await repo.bulk_upsert(_FAILING, conflict_on=["code"])
    assert "shelf" not in sa_inspect(kept).unloaded
    assert kept.shelf is shelf


async def test_failed_bulk_get_or_create_leaves_a_loaded_deferred_column_loaded(db):
    """A deferred column the caller loaded stays loaded on an object the write never touched."""
    repo = flavours.make_repo(TagRepo, db)
    kept = await repo.create({"code": "kept", "label": "x", "note": "n"})
    assert await kept.awaitable_attrs.note == "n"
    with pytest.raises(RepositoryError):
        await repo.bulk_get_or_create(_FAILING, conflict_on=["code"])
    assert "note" not in sa_inspect(kept).unloaded
    assert kept.note == "n"


# -- keyset templates ---------------------------------------------------------------------


async def test_keyset_parameter_name_does_not_capture_a_callers_bindparam(db):
    """A trusted ``where`` with its own named bindparam keeps its value on later pages.

    The keyset condition's parameters must not share a name space with the caller's.
    """
    repo = flavours.make_repo(TagRepo, db)
    await repo.bulk_create([{"code": f"c{i}", "label": "x", "rank": i % 2} for i in range(6)])
    where = Tag.rank == bindparam("sqla_repo_keyset_0", 1)
    first = await repo.paginate(where, limit=2)
    assert [t.rank for t in first.items] == [1, 1]
    second = await repo.paginate(where, limit=2, after=first.next_cursor)
    assert [t.rank for t in second.items] == [1]


async def test_keyset_parameter_name_does_not_capture_a_named_text_parameter(db):
    """The same with ``text()`` holding a named parameter, bound by the caller."""
    repo = flavours.make_repo(TagRepo, db)
    await repo.bulk_create([{"code": f"c{i}", "label": "x", "rank": i % 2} for i in range(6)])
    where = text("rank = :sqla_repo_keyset_0").bindparams(sqla_repo_keyset_0=1)
    first = await repo.paginate(where, limit=2)
    second = await repo.paginate(where, limit=2, after=first.next_cursor)
    assert [t.rank for t in [*first.items, *second.items]] == [1, 1, 1]


async def test_keyset_pages_walk_both_ways_across_null_boundaries(db):
    """Forward and backward pages over NULLs and ties, one row a page, give every row once.

    Each NULL pattern of the boundary has its own cached condition: walking back and forth
    reuses them with other values.
    """
    repo = flavours.make_repo(TagRepo, db)
    scores = [None, 2, None, 1, 2, None, 3]
    await repo.bulk_create(
        [{"code": f"c{i}", "label": "x", "score": s} for i, s in enumerate(scores)]
    )
    for order in ("score", "-score", "-score,-rank", "score,-code"):
        everything = (await repo.paginate(order_by=order, limit=100)).items
        forward, page = [], await repo.paginate(order_by=order, limit=1)
        forward.extend(page.items)
        while page.next_cursor:
            page = await repo.paginate(order_by=order, limit=1, after=page.next_cursor)
            forward.extend(page.items)
        assert forward == everything, order
        backward = list(page.items)
        while page.previous_cursor:
            page = await repo.paginate(order_by=order, limit=1, before=page.previous_cursor)
            backward[:0] = page.items
        assert backward == everything, order


# -- SQLite in pysqlite's default (legacy) transaction control ---------------------------


@pytest_asyncio.fixture
async def legacy_db(backend, tmp_path) -> AsyncIterator[AsyncSession]:
    """A session on a plain aiosqlite engine: no BEGIN recipe, the driver's own control."""
    if backend.family != "sqlite":
        pytest.skip("pysqlite's transaction control is SQLite's")
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'legacy.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(_Base.metadata.create_all)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            yield session
    finally:
        await engine.dispose()


async def test_legacy_sqlite_failed_first_bulk_insert_is_all_or_nothing(legacy_db):
    """A bulk write opening the transaction is undone whole; the session goes on."""
    db = legacy_db
    repo = flavours.make_repo(TagRepo, db)
    assert await repo.list() == []  # a read: pysqlite has begun nothing
    rows = [{"code": "a", "label": "x"}, {"code": "b", "label": "x"}, _FAILING[0]]
    with pytest.raises(RepositoryError):
        await repo.bulk_insert(rows)
    with pytest.raises(RepositoryError):
        await repo.bulk_create(rows)
    await repo.create({"code": "after", "label": "x"})
    await db.commit()
    assert await _codes(db) == ["after"]


async def test_legacy_sqlite_failed_bulk_insert_keeps_earlier_writes(legacy_db):
    """After the caller's own write, a failed bulk write undoes itself only."""
    db = legacy_db
    repo = flavours.make_repo(TagRepo, db)
    await repo.create({"code": "first", "label": "x"})
    rows = [{"code": "a", "label": "x"}, _FAILING[0]]
    with pytest.raises(RepositoryError):
        await repo.bulk_insert(rows)
    with pytest.raises(RepositoryError):
        await repo.bulk_upsert(rows, conflict_on=["code"])
    await db.commit()
    assert await _codes(db) == ["first"]


# -- UTCDateTime's short bind path --------------------------------------------------------


class _Stamp(dt.datetime):
    """A ``datetime`` subclass (as pendulum's or freezegun's are)."""


async def test_utc_datetime_values_round_trip_and_match_in_where(db):
    """Aware values of every shape are stored as their UTC instant and found by ``==``.

    The short path (plain ``datetime`` in ``timezone.utc``) and the general one
    (``ZoneInfo("UTC")``, other offsets, subclasses, ``fold``) must store the same text or
    value: a row written one way is found by a value bound the other way.
    """
    utc = dt.timezone.utc
    instants = [
        dt.datetime(1000, 1, 1, tzinfo=utc),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=utc),
        dt.datetime(2024, 11, 3, 1, 30, 0, 1, fold=1, tzinfo=utc),
        dt.datetime(2024, 5, 1, 7, 0, 0, 500000, tzinfo=utc),
    ]
    shapes = [
        lambda v: v,
        lambda v: v.replace(tzinfo=zoneinfo.ZoneInfo("UTC")),
        lambda v: _Stamp.combine(v.date(), v.time(), utc),
    ]
    repo = flavours.make_repo(MomentRepo, db)
    for index, instant in enumerate(instants):
        written = shapes[index % len(shapes)](instant)
        moment = await repo.create({"at": written})
        await db.commit()
        db.expunge(moment)
        for shape in shapes:
            found = await repo.list(Moment.at == shape(instant))
            assert [m.id for m in found] == [moment.id], (instant, shape(instant))
            assert found[0].at == instant
            assert found[0].at.tzinfo is utc
