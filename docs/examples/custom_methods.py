"""Custom repository methods: domain queries that keep the visibility rules."""

import asyncio
from typing import Any, TypeVar

from sqlalchemy import ForeignKey, Select, String, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Mapped, contains_eager, mapped_column, relationship

from sqla_repo import Base, IntegerPKMixin, SoftDeleteMixin
from sqla_repo.pagination import SearchResult
from sqla_repo.repository import BaseRepository

T = TypeVar("T")


class Author(IntegerPKMixin, SoftDeleteMixin, Base):
    __tablename__ = "authors"

    name: Mapped[str] = mapped_column(String(100))


class Article(IntegerPKMixin, SoftDeleteMixin, Base):
    __tablename__ = "articles"

    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="draft")
    views: Mapped[int] = mapped_column(default=0)
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))

    author: Mapped[Author] = relationship(lazy="raise")


class AuthorRepository(BaseRepository[Author]):
    pass


# --8<-- [start:base]
class AppRepository(BaseRepository[T]):
    """Settings shared by every repository of the application."""

    max_page_size = 50


# --8<-- [end:base]
# --8<-- [start:methods]
class ArticleRepository(AppRepository[Article]):
    async def most_read(self, *, limit: int = 3) -> list[Article]:
        return await self.list(
            Article.status == "published",
            order_by=Article.views.desc(),
            limit=limit,
        )

    async def by_author(self, name: str) -> list[Article]:
        return await self.list(
            Article.author_id.in_(select(Author.id).where(Author.name == name))
        )

    async def publish(self, article_id: int) -> Article:
        return await self.update(article_id, status="published")

    async def record_view(self, article_id: int) -> None:
        await self.update_where(
            Article.id == article_id, values={"views": Article.views + 1}
        )

    async def views_by_status(self) -> dict[str, int]:
        stmt = select(Article.status, func.sum(Article.views)).group_by(
            Article.status
        )
        return dict((await self.session.execute(stmt)).all())


# --8<-- [end:methods]
# --8<-- [start:base-select]
class FeedRepository(AppRepository[Article]):
    """Published articles only, each with its author loaded by the same query."""

    def base_select(self) -> Select[Any]:
        return (
            select(Article)
            .join(Article.author)
            .where(Article.status == "published")
            .options(contains_eager(Article.author))
        )

    async def page(self, *, offset: int = 0) -> SearchResult[Article]:
        return await self.search(
            order_by=Article.views.desc(), limit=2, offset=offset
        )


# --8<-- [end:base-select]
async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    new_session = async_sessionmaker(engine, expire_on_commit=False)

    async with new_session() as session, session.begin():
        session.add_all([Author(id=1, name="Ada"), Author(id=2, name="Grace")])
        articles = ArticleRepository(session)
        await articles.bulk_create(
            [
                {"title": "Engines", "views": 30, "author_id": 1},
                {"title": "Notes", "views": 20, "author_id": 1},
                {"title": "Compilers", "views": 50, "author_id": 2},
                {"title": "Debugging", "views": 10, "author_id": 2},
                {"title": "Draft", "views": 0, "author_id": 2},
            ]
        )
        for article_id in (1, 2, 3, 4):
            await articles.publish(article_id)
        await articles.record_view(4)
        await articles.soft_delete(2)

    async with new_session() as session:
        articles = ArticleRepository(session)
        # --8<-- [start:use]
        print("most read:", [a.title for a in await articles.most_read()])
        print("by Grace:", [a.title for a in await articles.by_author("Grace")])
        print("views by status:", await articles.views_by_status())
        # --8<-- [end:use]

        # --8<-- [start:core]
        orm = await session.scalar(select(func.count()).select_from(Article))
        core = await session.scalar(
            select(func.count()).select_from(Article.__table__)
        )
        print("ORM count:", orm, "- Core count, soft-deleted included:", core)
        # --8<-- [end:core]

        # --8<-- [start:feed]
        feed = FeedRepository(session)
        first = await feed.page()
        print(
            "feed:",
            [(a.title, a.author.name) for a in first.items],
            "total:",
            first.total,
        )
        # --8<-- [end:feed]

    async with new_session() as session, session.begin():
        # --8<-- [start:cascade]
        await AuthorRepository(session).soft_delete(2)  # Grace
        feed = await FeedRepository(session).page()
        print(
            "feed without Grace:",
            [a.title for a in feed.items],
            "total:",
            feed.total,
        )
        # --8<-- [end:cascade]

    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
