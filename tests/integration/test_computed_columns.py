"""Per-row computed values: ``query_expression()`` filled by ``with_expression()`` options.

The repository passes ``options=`` through to every read; sorting uses the expression
itself. A ``query_expression()`` named in a whitelist or an order is refused: outside
``with_expression()`` it is a NULL placeholder, and sorting or filtering on it would
silently order or match nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest
import pytest_asyncio
from sqlalchemy import ColumnElement, ForeignKey, String, exists, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    mapped_column,
    query_expression,
    with_expression,
)
from sqlalchemy.sql.base import ExecutableOption

from sqla_repo import (
    ALL_COLUMNS,
    BaseRepository,
    ConfigurationError,
    InvalidFilterError,
    compile_filters,
    compile_order_by,
)


class ComputedBase(DeclarativeBase):
    pass


class Favourite(ComputedBase):
    __tablename__ = "cc_favourites"

    user_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    article_id: Mapped[int] = mapped_column(ForeignKey("cc_articles.id"), primary_key=True)


class Article(ComputedBase):
    __tablename__ = "cc_articles"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))
    favourites: Mapped[int | None] = query_expression()
    favourited: Mapped[bool | None] = query_expression()


def favourites() -> ColumnElement[int]:
    return select(func.count()).where(Favourite.article_id == Article.id).scalar_subquery()


def computed(viewer: int | None) -> Sequence[ExecutableOption]:
    mine = exists().where(Favourite.article_id == Article.id, Favourite.user_id == viewer)
    return (
        with_expression(Article.favourites, favourites()),
        with_expression(Article.favourited, mine),
    )


class ArticleRepository(BaseRepository[Article]):
    filterable_fields = ("title",)
    sortable_fields = ("title",)


# title -> the users who favourited it
DATA = {"a": {1, 2, 3}, "b": set(), "c": {2}, "d": {1, 3}}


@pytest_asyncio.fixture
async def tables(engine: AsyncEngine) -> AsyncIterator[None]:
    """This module's tables, made before the session and dropped after it."""
    async with engine.begin() as conn:
        await conn.run_sync(ComputedBase.metadata.drop_all)
        await conn.run_sync(ComputedBase.metadata.create_all)
    yield
    async with engine.begin() as conn:
        await conn.run_sync(ComputedBase.metadata.drop_all)


@pytest_asyncio.fixture
async def articles(tables: None, session: AsyncSession) -> ArticleRepository:
    del tables
    for number, (title, users) in enumerate(DATA.items(), start=1):
        session.add(Article(id=number, title=title))
        session.add_all(Favourite(user_id=user, article_id=number) for user in users)
    await session.flush()
    session.expunge_all()  # reads load afresh, as in a new request
    return ArticleRepository(session)


def _rows(items: Sequence[Article]) -> list[tuple[str, int | None, bool | None]]:
    return [(a.title, a.favourites, a.favourited) for a in items]


def _expected(viewer: int, titles: Sequence[str]) -> list[tuple[str, int, bool]]:
    return [(t, len(DATA[t]), viewer in DATA[t]) for t in titles]


async def test_list_search_and_get_carry_the_values(articles: ArticleRepository) -> None:
    """Every read method passes with_expression() options through."""
    listed = await articles.list(options=computed(2), order_by="title")
    assert _rows(listed) == _expected(2, "abcd")
    articles.session.expunge_all()  # a new request: no objects loaded for another viewer
    page = await articles.search(filters={"title__ne": "b"}, options=computed(1))
    assert _rows(page.items) == _expected(1, "acd")
    assert page.total == 3
    articles.session.expunge_all()
    one = await articles.get(4, options=computed(3))
    assert one is not None
    assert _rows([one]) == _expected(3, "d")
    articles.session.expunge_all()
    assert _rows([await articles.get_by_id(3, options=computed(1))]) == _expected(1, "c")


async def test_without_options_the_values_are_none(articles: ArticleRepository) -> None:
    """A read without with_expression() leaves the attributes None."""
    assert {(a.favourites, a.favourited) for a in await articles.list()} == {(None, None)}


async def test_sort_by_the_expression(articles: ArticleRepository) -> None:
    """order_by= takes the expression itself, next to field names."""
    by_count = await articles.list(options=computed(1), order_by=[favourites().desc(), "title"])
    assert [a.title for a in by_count] == ["a", "d", "c", "b"]
    page = await articles.search(options=computed(1), order_by=[favourites().asc()], limit=2)
    assert [a.title for a in page.items] == ["b", "c"]


async def test_populate_existing_recomputes(articles: ArticleRepository) -> None:
    """An object the session holds keeps its values unless populate_existing is asked."""
    first = await articles.get_by_id(2, options=computed(1))
    assert (first.favourites, first.favourited) == (0, False)
    articles.session.add(Favourite(user_id=1, article_id=2))
    await articles.session.flush()
    again = await articles.get_by_id(2, options=computed(1), populate_existing=True)
    assert again is first
    assert (again.favourites, again.favourited) == (1, True)


@pytest.mark.parametrize(
    ("filterable", "sortable"),
    [(("favourites",), None), (None, ("favourites",)), ({"favourited": ("eq",)}, None)],
    ids=["filter", "sort", "filter-mapping"],
)
async def test_whitelisting_it_is_a_configuration_error(
    articles: ArticleRepository,
    filterable: object,
    sortable: object,
) -> None:
    """A whitelist naming a query_expression() fails closed, with a ConfigurationError."""

    class Whitelisted(BaseRepository[Article]):
        filterable_fields = filterable  # type: ignore[assignment]
        sortable_fields = sortable  # type: ignore[assignment]

    repo = Whitelisted(articles.session)
    if filterable is not None:
        name = next(iter(filterable))  # type: ignore[call-overload]
        with pytest.raises(ConfigurationError, match="query_expression"):
            await repo.list(filters={name: "1"})
    else:
        with pytest.raises(ConfigurationError, match="query_expression"):
            await repo.list(order_by="-favourites")


async def test_ordering_by_the_attribute_is_refused(articles: ArticleRepository) -> None:
    """order_by=Article.favourites would sort on the NULL placeholder: refused."""
    for order in (Article.favourites, Article.favourites.desc()):
        with pytest.raises(ConfigurationError, match="query_expression"):
            await articles.list(order_by=[order], options=computed(1))


def test_all_columns_leaves_it_out() -> None:
    """ALL_COLUMNS names the stored columns only; the placeholder is unknown to clients."""
    with pytest.raises(InvalidFilterError) as info:
        compile_filters(Article, {"favourites__gt": 0}, allowed=ALL_COLUMNS)
    assert info.value.detail["reason"] == "unknown_field"
    with pytest.raises(InvalidFilterError) as sort_info:
        compile_order_by(Article, "-favourites", allowed=ALL_COLUMNS)
    assert sort_info.value.detail["reason"] == "not_sortable"
    assert compile_filters(Article, {"title": "a"}, allowed=ALL_COLUMNS)
