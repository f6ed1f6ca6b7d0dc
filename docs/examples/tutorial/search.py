"""Tutorial step 3: offset pages with a total, keyset pages, streaming."""

import asyncio

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from models import Article, Author
from sqla_repo import Base
from sqla_repo.repository import BaseRepository


class ArticleRepository(BaseRepository[Article]):
    sortable_fields = ("title", "views")  # names order_by= may use
    default_order_by = ("-views",)  # used when a call gives no order_by


async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    new_session = async_sessionmaker(engine, expire_on_commit=False)

    async with new_session() as session, session.begin():
        session.add(Author(id=1, name="Ada"))
        # --8<-- [start:seed]
        articles = ArticleRepository(session)
        await articles.bulk_create(
            {
                "slug": f"post-{n}",
                "title": f"Post {n}",
                "status": "draft" if n % 4 == 0 else "published",
                "views": n * 10 % 70,
                "author_id": 1,
            }
            for n in range(1, 24)
        )
        # --8<-- [end:seed]

    async with new_session() as session:
        articles = ArticleRepository(session)

        # --8<-- [start:search]
        page = await articles.search(
            Article.status == "published", order_by=["-views", "title"], limit=5
        )
        print("page", page.page, "of", page.total_pages, "- total:", page.total)
        print([(a.title, a.views) for a in page.items])
        print("has_next:", page.has_next, "has_previous:", page.has_previous)
        # --8<-- [end:search]

        # --8<-- [start:last-page]
        last = await articles.search(
            Article.status == "published", limit=5, offset=15
        )
        print("last page:", last.page, [a.title for a in last.items], last.has_next)
        past_the_end = await articles.search(
            Article.status == "published", limit=5, offset=50
        )
        print("past the end:", past_the_end.items, past_the_end.total)
        # --8<-- [end:last-page]

        # --8<-- [start:no-total]
        quick = await articles.search(limit=5, include_total=False)
        print("without total:", quick.total, quick.has_next)
        # --8<-- [end:no-total]

        # --8<-- [start:paginate]
        titles, cursor, pages = [], None, 0
        while True:
            keyset = await articles.paginate(
                order_by=["-views"], limit=10, after=cursor
            )
            titles += [a.title for a in keyset.items]
            pages += 1
            if not keyset.has_next:
                break
            cursor = keyset.next_cursor
        print("keyset pages:", pages, "rows:", len(titles), "first:", titles[:3])
        # --8<-- [end:paginate]

        # --8<-- [start:stream]
        total_views = 0
        async for article in articles.stream(Article.views > 0, batch_size=100):
            total_views += article.views
        print("total views:", total_views)
        # --8<-- [end:stream]

    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
