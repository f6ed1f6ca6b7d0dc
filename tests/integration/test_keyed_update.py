"""update(id) on a single-table class: one UPDATE built once, bound by parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Integer, String, event, select
from sqlalchemy.ext.asyncio import AsyncAttrs, AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from reliability.support import own_tables
from sqla_repo import (
    BaseRepository,
    IntegerPKMixin,
    NotFoundError,
    SoftDeleteMixin,
    TimestampMixin,
    VersionMixin,
)


class _Base(AsyncAttrs, DeclarativeBase):
    pass


def _slug(context: Any) -> str:
    # A context-sensitive default: reads the row's other values by column key.
    return f"slug-{context.get_current_parameters().get('title')}"


class Page(IntegerPKMixin, TimestampMixin, SoftDeleteMixin, VersionMixin, _Base):
    __tablename__ = "ku_pages"
    title: Mapped[str] = mapped_column(String(40))
    views: Mapped[int] = mapped_column(Integer, default=0)
    slug: Mapped[str | None] = mapped_column(String(60), onupdate=_slug)


class Plain(IntegerPKMixin, _Base):
    """A column named ``version`` that is not a version counter."""

    __tablename__ = "ku_plain"
    version: Mapped[str] = mapped_column(String(10))


class Pages(BaseRepository[Page]):
    pass


class Plains(BaseRepository[Plain]):
    pass


@pytest_asyncio.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with own_tables(engine, _Base.metadata) as session:
        yield session


async def _row(session: AsyncSession, key: int) -> Any:
    table = Page.__table__
    return (await session.execute(select(table).where(table.c.id == key))).one()


async def test_values_by_parameter_and_context_sensitive_defaults(db) -> None:
    repo = Pages(db)
    page = await repo.create({"title": "a"})
    first_update = page.updated_at
    updated = await repo.update(page.id, {"title": "b"})
    assert updated is page
    assert (page.title, page.slug, page.version) == ("b", "slug-b", 2)
    assert page.updated_at > first_update
    row = await _row(db, page.id)
    assert (row.title, row.slug, row.version, row.views) == ("b", "slug-b", 2, 0)


async def test_each_column_set_gets_its_own_statement(db) -> None:
    """Calls with other columns, in another order, or fewer, write exactly what they name."""
    repo = Pages(db)
    one, two = await repo.create({"title": "one"}), await repo.create({"title": "two"})
    await repo.update(one.id, {"views": 5, "title": "uno"})
    await repo.update(two.id, {"title": "dos", "views": 7})
    await repo.update(one.id, {"views": 6})
    await repo.update(two.id, views=8)
    assert ((await _row(db, one.id)).title, (await _row(db, one.id)).views) == ("uno", 6)
    assert ((await _row(db, two.id)).title, (await _row(db, two.id)).views) == ("dos", 8)
    assert (await _row(db, one.id)).version == 3


async def test_a_sql_expression_value_stays_in_the_statement(db) -> None:
    repo = Pages(db)
    page = await repo.create({"title": "t", "views": 1})
    await repo.update(page.id, {"views": Page.views + 10})
    assert (await _row(db, page.id)).views == 11
    assert page.views == 11


async def test_soft_deleted_row_is_not_found(db) -> None:
    repo = Pages(db)
    page = await repo.create({"title": "gone"})
    await repo.soft_delete(page.id)
    with pytest.raises(NotFoundError):
        await repo.update(page.id, {"title": "back"})
    assert (await _row(db, page.id)).title == "gone"


async def test_the_key_changes(db) -> None:
    repo = Pages(db)
    page = await repo.create({"title": "k"})
    moved = await repo.update(page.id, {"id": page.id + 1000, "title": "moved"})
    assert (moved.id, moved.title) == (page.id + 1000, "moved")
    assert (await _row(db, page.id + 1000)).title == "moved"


async def test_a_column_named_version_is_written(db) -> None:
    """Only a version counter is the statement's own: an ordinary column is a value."""
    repo = Plains(db)
    plain = await repo.create({"version": "v1"})
    await repo.update(plain.id, {"version": "v2"})
    table = Plain.__table__
    assert await db.scalar(select(table.c.version).where(table.c.id == plain.id)) == "v2"


async def test_a_listener_sees_the_values_by_column(db, engine: AsyncEngine) -> None:
    """Statement listeners see the key and values bound as parameters, never inlined."""
    seen: list[Any] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: PLR0917
        if statement.lstrip().upper().startswith("UPDATE"):
            seen.append(parameters)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        repo = Pages(db)
        page = await repo.create({"title": "p"})
        await repo.update(page.id, {"title": "q"})
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert len(seen) == 1
    assert "q" in (seen[0].values() if isinstance(seen[0], dict) else seen[0])
