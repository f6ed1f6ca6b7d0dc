"""Tutorial step 4: filters, sorting and page sizes from a query string."""

import asyncio
from typing import ClassVar
from urllib.parse import parse_qsl

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from models import Article, Author
from sqla_repo import ALL_COLUMNS, Base, InvalidFilterError
from sqla_repo.repository import BaseRepository


# --8<-- [start:repository]
class ArticleRepository(BaseRepository[Article]):
    filterable_fields = (
        "slug",
        "title",
        "status",
        "views",
        "created_at",
        "author.name",
    )
    sortable_fields = ("title", "views", "created_at")
    max_page_size = 50


# --8<-- [end:repository]
# --8<-- [start:all-columns]
class AuthorRepository(BaseRepository[Author]):
    # Every column, with every operator; no relationship paths.
    filterable_fields = ALL_COLUMNS
    sortable_fields = ALL_COLUMNS


# --8<-- [end:all-columns]
# --8<-- [start:operators]
class StrictArticleRepository(BaseRepository[Article]):
    filterable_fields: ClassVar[dict[str, tuple[str, ...]]] = {
        "slug": ("eq", "in"),
        "title": ("eq", "icontains"),
        "created_at": ("ge", "le", "between"),
        "author.name": ("eq",),
    }


# --8<-- [end:operators]
# --8<-- [start:parse]
def page_number(params: dict[str, str], name: str, default: int) -> int:
    """Take ``limit`` or ``offset`` out of *params*; refuse a non-integer."""
    value = params.pop(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise InvalidFilterError(
            f"{name} must be an integer",
            model=Article,
            detail={"field": name, "reason": "invalid_value"},
        ) from None


async def search_articles(
    articles: BaseRepository[Article], query_string: str
) -> None:
    """Answer ``GET /articles?<query_string>``."""
    params = dict(parse_qsl(query_string, keep_blank_values=True))
    sort = params.pop("sort", None)
    try:
        limit = page_number(params, "limit", 20)
        offset = page_number(params, "offset", 0)
        page = await articles.search(
            filters=params, order_by=sort, limit=limit, offset=offset
        )
    except InvalidFilterError as exc:
        print(f"?{query_string}\n  -> 422 {exc} ({exc.detail['reason']})")
        return
    print(
        f"?{query_string}\n  -> total={page.total} {[a.slug for a in page.items]}"
    )


# --8<-- [end:parse]
async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    new_session = async_sessionmaker(engine, expire_on_commit=False)

    async with new_session() as session, session.begin():
        session.add_all([Author(id=1, name="Ada"), Author(id=2, name="Grace")])
        await ArticleRepository(session).bulk_create(
            [
                {
                    "slug": "intro",
                    "title": "Python intro",
                    "views": 120,
                    "author_id": 1,
                },
                {"slug": "sql", "title": "SQL tricks", "views": 45, "author_id": 1},
                {
                    "slug": "async",
                    "title": "Async Python",
                    "views": 300,
                    "author_id": 2,
                },
                {
                    "slug": "cobol",
                    "title": "COBOL today",
                    "views": 3,
                    "author_id": 2,
                },
            ]
        )

    async with new_session() as session:
        articles = ArticleRepository(session)
        # --8<-- [start:queries]
        await search_articles(articles, "title__ilike=%25python%25&sort=-views")
        await search_articles(articles, "views__between=40,150&sort=title")
        await search_articles(articles, "slug__in=sql,cobol,missing")
        await search_articles(articles, "author.name=Grace&views__gt=10")
        await search_articles(articles, "created_at__gte=2000-01-01&limit=2")
        # --8<-- [end:queries]
        # --8<-- [start:errors]
        await search_articles(articles, "titel=SQL")
        await search_articles(articles, "views__gt=lots")
        await search_articles(articles, "title__regex=.*")
        await search_articles(articles, "sort=-author_id")
        await search_articles(articles, "limit=1000")
        await search_articles(articles, "limit=lots")
        # --8<-- [end:errors]

        # --8<-- [start:other-repositories]
        authors = AuthorRepository(session)
        found = await authors.list(
            filters={"name__startswith": "G"}, order_by="-id"
        )
        print("authors:", [a.name for a in found])
        strict = StrictArticleRepository(session)
        await search_articles(
            strict, "title__icontains=python&created_at__gte=2000-01-01"
        )
        await search_articles(strict, "title__like=%25")
        # --8<-- [end:other-repositories]

    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
