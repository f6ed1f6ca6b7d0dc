"""Per-row computed values: a favourites count and "favourited by me"."""

import asyncio
from collections.abc import Sequence

from sqlalchemy import ColumnElement, ForeignKey, String, exists, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column, query_expression, with_expression
from sqlalchemy.sql.base import ExecutableOption

from sqla_repo import Base, ConfigurationError, IntegerPKMixin
from sqla_repo.repository import BaseRepository


# --8<-- [start:models]
class Favorite(Base):
    __tablename__ = "favorites"

    user_id: Mapped[int] = mapped_column(primary_key=True)
    article_id: Mapped[int] = mapped_column(
        ForeignKey("articles.id"), primary_key=True
    )


class Article(IntegerPKMixin, Base):
    __tablename__ = "articles"

    title: Mapped[str] = mapped_column(String(200))
    # No SQL of their own: each query that wants them says how to compute them.
    favorites_count: Mapped[int | None] = query_expression()
    favorited: Mapped[bool | None] = query_expression()


# --8<-- [end:models]
# --8<-- [start:repository]
def favorites_count() -> ColumnElement[int]:
    """How many users favourited the article: a correlated scalar subquery."""
    return (
        select(func.count())
        .where(Favorite.article_id == Article.id)
        .scalar_subquery()
    )


def favorited_by(user_id: int | None) -> ColumnElement[bool]:
    """Whether *user_id* favourited the article (always false for a visitor)."""
    return exists().where(
        Favorite.article_id == Article.id, Favorite.user_id == user_id
    )


class ArticleRepository(BaseRepository[Article]):
    filterable_fields = ("title",)
    sortable_fields = ("title",)

    @staticmethod
    def computed(viewer: int | None) -> Sequence[ExecutableOption]:
        return (
            with_expression(Article.favorites_count, favorites_count()),
            with_expression(Article.favorited, favorited_by(viewer)),
        )

    async def most_favorited(
        self, viewer: int | None, limit: int = 2
    ) -> list[Article]:
        return await self.list(
            options=self.computed(viewer),
            order_by=[favorites_count().desc()],
            limit=limit,
        )

    async def feed(self, viewer: int | None, sort: str = "") -> list[Article]:
        """*sort* from the client: ``-favorites``, ``favorites`` or a field."""
        order: list[str | ColumnElement[int]] = []
        for part in filter(None, sort.split(",")):
            if part.lstrip("-") == "favorites":
                count = favorites_count()
                order.append(count.desc() if part.startswith("-") else count.asc())
            else:
                order.append(part)  # checked against sortable_fields
        return await self.list(options=self.computed(viewer), order_by=order)


# --8<-- [end:repository]
class SortsByName(BaseRepository[Article]):
    sortable_fields = ("favorites_count",)  # refused: no SQL of its own


def show(articles: Sequence[Article]) -> list[tuple[str, int | None, bool | None]]:
    return [(a.title, a.favorites_count, a.favorited) for a in articles]


async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    new_session = async_sessionmaker(engine, expire_on_commit=False)

    async with new_session() as session, session.begin():
        articles = ArticleRepository(session)
        await articles.bulk_create(
            [{"title": "Engines"}, {"title": "Compilers"}, {"title": "Notes"}]
        )
        session.add_all(
            [
                Favorite(user_id=7, article_id=2),
                Favorite(user_id=8, article_id=2),
                Favorite(user_id=8, article_id=1),
            ]
        )

    async with new_session() as session:
        articles = ArticleRepository(session)
        # --8<-- [start:use]
        options = articles.computed(viewer=7)
        print("list:", show(await articles.list(options=options, order_by="title")))
        page = await articles.search(
            filters={"title__ne": "Notes"}, options=options
        )
        print("search:", show(page.items))
        print("most favorited:", show(await articles.most_favorited(viewer=8)))
        # --8<-- [end:use]

    async with new_session() as session:
        articles = ArticleRepository(session)
        # --8<-- [start:get]
        article = await articles.get_by_id(2, options=articles.computed(None))
        print("get:", article.title, article.favorites_count, article.favorited)
        # --8<-- [end:get]
        # --8<-- [start:feed]
        print("feed:", show(await articles.feed(viewer=8, sort="-favorites,title")))
        # --8<-- [end:feed]
        # --8<-- [start:refused]
        try:
            await SortsByName(session).list(order_by="-favorites_count")
        except ConfigurationError as exc:
            print("whitelisted query_expression:", exc.code)
        # --8<-- [end:refused]

    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
