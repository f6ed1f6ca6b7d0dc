"""Adversarial tests of ``update(id)`` through the table's own UPDATE, and of its SAVEPOINTs.

``update(id, values)`` on a single-table class runs a Core ``UPDATE … RETURNING`` and puts
the row into the session by hand; the object it returns (and the one the identity map
held) must be what the ORM's ``populate_existing`` load gives. On PostgreSQL the
SAVEPOINT around a write may go straight to the driver: whoever watches the connection
must still see it. Bulk rows are checked at a glance first: edge values are still refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import ForeignKey, Integer, SmallInteger, String, event, select, text
from sqlalchemy.ext.asyncio import AsyncAttrs, AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column, relationship

import flavours
from reliability.support import own_tables
from sqla_repo import (
    BaseRepository,
    IntegerPKMixin,
    InvalidValueError,
    NotFoundError,
    SoftDeleteMixin,
    TenantMixin,
    VersionMixin,
    all_tenants,
    tenant,
)

pytestmark = pytest.mark.usefixtures("flavour")


class _Base(AsyncAttrs, DeclarativeBase):
    pass


class Shelf(IntegerPKMixin, _Base):
    __tablename__ = "r7_shelves"
    name: Mapped[str] = mapped_column(String(20))


class Book(IntegerPKMixin, TenantMixin, SoftDeleteMixin, _Base):
    """A many-to-one loaded eagerly, a column under another name."""

    __tablename__ = "r7_books"
    title: Mapped[str] = mapped_column("title_col", String(20))
    pages: Mapped[int] = mapped_column(Integer, default=0)
    shelf_id: Mapped[int | None] = mapped_column(ForeignKey("r7_shelves.id"))
    shelf: Mapped[Shelf | None] = relationship(lazy="selectin")


class Counter(IntegerPKMixin, _Base):
    """A ``column_property()`` computed from the row's own columns."""

    __tablename__ = "r7_counters"
    n: Mapped[int] = mapped_column(Integer)


Counter.doubled = column_property(Counter.__table__.c.n * 2)


class Page(IntegerPKMixin, VersionMixin, _Base):
    __tablename__ = "r7_pages"
    body: Mapped[str] = mapped_column(String(20))
    hits: Mapped[int] = mapped_column(SmallInteger, default=0)


class ShelfRepo(BaseRepository[Shelf]):
    pass


class BookRepo(BaseRepository[Book]):
    pass


class CounterRepo(BaseRepository[Counter]):
    pass


class PageRepo(BaseRepository[Page]):
    pass


@pytest_asyncio.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with own_tables(engine, _Base.metadata) as session:
        yield session


BOOKS = Book.__table__


async def _titles(session: AsyncSession) -> list[tuple[Any, ...]]:
    with all_tenants():
        stmt = select(BOOKS.c.id, BOOKS.c.title_col, BOOKS.c.tenant_id).order_by(BOOKS.c.id)
        return [tuple(row) for row in await session.execute(stmt)]


# -- scoping of the table's own UPDATE ------------------------------------------------------


async def test_update_by_id_of_another_tenants_row_is_not_found(db):
    repo = flavours.make_repo(BookRepo, db)
    with tenant("B"):
        theirs = await repo.create({"title": "theirs"})
    with tenant("A"), pytest.raises(NotFoundError):
        await repo.update(theirs.id, title="mine")
    await db.commit()
    assert await _titles(db) == [(theirs.id, "theirs", "B")]


async def test_update_by_id_of_a_soft_deleted_row_is_not_found(db):
    repo = flavours.make_repo(BookRepo, db)
    with tenant("A"):
        book = await repo.create({"title": "gone"})
        await repo.soft_delete(book.id)
        with pytest.raises(NotFoundError):
            await repo.update(book.id, title="back")
    await db.commit()
    assert [row[1] for row in await _titles(db)] == ["gone"]


async def test_update_by_id_cannot_move_a_row_to_another_tenant(db):
    repo = flavours.make_repo(BookRepo, db)
    with tenant("A"):
        book = await repo.create({"title": "t"})
        with pytest.raises(Exception):  # noqa: B017, PT011 - any refusal will do
            await repo.update(book.id, tenant_id="B")
    await db.rollback()


async def test_update_by_id_under_a_renamed_column(db):
    repo = flavours.make_repo(BookRepo, db)
    with tenant("A"):
        book = await repo.create({"title": "old"})
        updated = await repo.update(book.id, title="new")
        assert updated is book
        assert book.title == "new"
    await db.commit()
    assert [row[1] for row in await _titles(db)] == ["new"]


async def test_update_by_id_bumps_the_version_of_the_loaded_object(db):
    repo = flavours.make_repo(PageRepo, db)
    page = await repo.create({"body": "a"})
    version = page.version
    updated = await repo.update(page.id, body="b")
    assert updated is page
    assert page.version == version + 1
    page.body = "c"
    await db.flush()  # the object's version is the row's: no ConcurrencyError
    await db.commit()


# -- the object put into the session by hand ----------------------------------------------


async def test_update_of_a_foreign_key_refreshes_the_loaded_relationship(db):
    shelves = flavours.make_repo(ShelfRepo, db)
    repo = flavours.make_repo(BookRepo, db)
    first = await shelves.create({"name": "first"})
    second = await shelves.create({"name": "second"})
    with tenant("A"):
        book = await repo.create({"title": "t", "shelf_id": first.id})
        book = await repo.get_by_id(book.id)
        assert book.shelf is first
        updated = await repo.update(book.id, shelf_id=second.id)
        assert updated.shelf_id == second.id
        assert updated.shelf is second


async def test_update_refreshes_a_column_property(db):
    repo = flavours.make_repo(CounterRepo, db)
    counter = await repo.create({"n": 2})
    assert await counter.awaitable_attrs.doubled == 4
    updated = await repo.update(counter.id, n=5)
    assert updated is counter
    assert await updated.awaitable_attrs.doubled == 10


async def test_update_loads_a_column_property_of_a_new_object(db):
    repo = flavours.make_repo(CounterRepo, db)
    counter = await repo.create({"n": 2})
    db.expunge_all()
    updated = await repo.update(counter.id, n=3)
    assert await updated.awaitable_attrs.doubled == 6


async def test_update_without_savepoints_keeps_a_pending_change(db):
    repo = flavours.make_repo(PageRepo, db)
    page = await repo.create({"body": "a"})
    await db.commit()
    page.body = "pending"
    with repo.savepoints(False):  # noqa: FBT003
        await repo.update(page.id, hits=3)
    await db.commit()
    table = Page.__table__
    row = (await db.execute(select(table.c.body, table.c.hits))).one()
    assert tuple(row) == ("pending", 3)


async def test_update_with_savepoints_keeps_a_pending_change(db):
    repo = flavours.make_repo(PageRepo, db)
    page = await repo.create({"body": "a"})
    await db.commit()
    page.body = "pending"
    await repo.update(page.id, hits=3)
    assert (page.body, page.hits) == ("pending", 3)
    await db.commit()
    table = Page.__table__
    row = (await db.execute(select(table.c.body, table.c.hits))).one()
    assert tuple(row) == ("pending", 3)


async def test_update_fills_expired_attributes(db):
    repo = flavours.make_repo(PageRepo, db)
    page = await repo.create({"body": "a"})
    key = page.id
    db.expire(page)
    updated = await repo.update(key, hits=2)
    assert updated is page
    assert (page.body, page.hits) == ("a", 2)


async def test_update_changing_the_key(db):
    repo = flavours.make_repo(PageRepo, db)
    page = await repo.create({"body": "a"})
    moved = await repo.update(page.id, id=page.id + 100, body="b")
    assert (moved.id, moved.body) == (page.id + 100, "b")
    await db.commit()
    assert await repo.get_by_id(page.id + 100) is moved


# -- SAVEPOINTs sent straight to the driver -----------------------------------------------


async def test_cursor_listener_added_later_sees_the_savepoints(db, backend):
    repo = flavours.make_repo(PageRepo, db)
    await repo.create({"body": "first"})  # the transaction has run a statement
    seen: list[str] = []
    sync_engine = db.bind.sync_engine

    def record(_conn, _cursor, statement, *_args):
        seen.append(statement)

    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        await repo.create({"body": "second"})
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)
    if backend.family == "postgresql":
        assert any(s.startswith("SAVEPOINT") for s in seen)
        assert any(s.startswith("RELEASE SAVEPOINT") for s in seen)


async def test_a_failed_write_in_an_aborted_transaction_raises_cleanly(db, backend):
    if backend.family != "postgresql":
        pytest.skip("only PostgreSQL aborts a transaction on an error")
    repo = flavours.make_repo(PageRepo, db)
    await repo.create({"body": "first"})
    with pytest.raises(Exception):  # noqa: B017, PT011
        await db.execute(text("SELECT 1/0"))
    with pytest.raises(Exception) as info:  # noqa: PT011
        await repo.create({"body": "second"})
    assert "aborted" in str(info.value).lower() or "rollback" in str(info.value).lower()
    await db.rollback()
    assert (await repo.create({"body": "third"})).body == "third"


# -- values checked at a glance -----------------------------------------------------------


class _Text(str):
    __slots__ = ()


class _Int(int):
    pass


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("hits", 1 << 15),
        ("hits", -(1 << 15) - 1),
        ("body", "x" * 21),
        ("body", "nul\x00"),
        ("body", "é" * 21),
        ("body", _Text("x" * 21)),
        ("hits", _Int(1 << 15)),
        ("body", 5),
        ("hits", "3"),
    ],
)
async def test_bulk_insert_refuses_values_past_the_glance(db, key, value):
    repo = flavours.make_repo(PageRepo, db)
    rows = [{"body": "ok", "hits": 1}, {"body": "ok", "hits": 1, key: value}]
    with pytest.raises(InvalidValueError):
        await repo.bulk_insert(rows)
    assert await repo.count() == 0


async def test_bulk_insert_takes_none_and_bool_as_the_full_check_does(db):
    repo = flavours.make_repo(PageRepo, db)
    rows: list[dict[str, Any]] = [{"body": "a", "hits": None}, {"body": "b", "hits": 2}]
    assert await repo.bulk_insert(rows) == 2
    outcome: list[Any] = []
    try:
        await repo.create({"body": "c", "hits": True})
        outcome.append("create")
    except InvalidValueError:
        outcome.append("refused")
    try:
        await repo.bulk_insert([{"body": "d", "hits": True}])
        outcome.append("create")
    except InvalidValueError:
        outcome.append("refused")
    assert outcome[0] == outcome[1]
