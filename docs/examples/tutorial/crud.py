"""Tutorial step 2: create, read, update and delete through a repository."""

import asyncio

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import selectinload

from models import Article, Author
from sqla_repo import Base, actor
from sqla_repo.repository import BaseRepository


# --8<-- [start:repositories]
class AuthorRepository(BaseRepository[Author]):
    pass


class ArticleRepository(BaseRepository[Article]):
    pass


# --8<-- [end:repositories]
async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    new_session = async_sessionmaker(engine, expire_on_commit=False)

    # --8<-- [start:create]
    with actor("alice"):
        async with new_session() as session, session.begin():
            authors = AuthorRepository(session)
            articles = ArticleRepository(session)
            ada = await authors.create({"name": "Ada"})
            hello = await articles.create(
                {"slug": "hello", "title": "Hello", "author_id": ada.id}
            )
            draft = await articles.create(
                Article(slug="draft", title="Draft", author_id=ada.id)
            )
            print("created:", hello.id, draft.id, hello.status, hello.created_by)
    # --8<-- [end:create]

    # --8<-- [start:read]
    async with new_session() as session:
        articles = ArticleRepository(session)
        article = await articles.get_by_id(
            hello.id, options=[selectinload(Article.author)]
        )
        print("get_by_id:", article.title, "by", article.author.name)
        print("get:", await articles.get(999))
        print("get_one:", (await articles.get_one(slug="draft")).title)
        print(
            "list:",
            [a.slug for a in await articles.list(order_by=Article.id.desc())],
        )
        print(
            "count:",
            await articles.count(),
            await articles.count(status="published"),
        )
        print("exists:", await articles.exists(Article.title.startswith("Hel")))
    # --8<-- [end:read]

    # --8<-- [start:update]
    with actor("bob"):
        async with new_session() as session, session.begin():
            articles = ArticleRepository(session)
            article = await articles.get_by_id(hello.id)
            # An instance: set the attributes, then flush.
            await articles.update(article, title="Hello, world")
            # A key: one UPDATE statement, without loading the row.
            draft = await articles.update(draft.id, status="published")
            changed = await articles.update_where(
                Article.status == "draft", values={"views": 1}
            )
            print(
                "updated:", article.title, draft.status, draft.updated_by, changed
            )
    # --8<-- [end:update]

    # --8<-- [start:get-or-create]
    async with new_session() as session, session.begin():
        articles = ArticleRepository(session)
        article, created = await articles.get_or_create(
            slug="hello", defaults={"title": "Hi", "author_id": ada.id}
        )
        print("get_or_create:", article.title, created)
    # --8<-- [end:get-or-create]

    # --8<-- [start:delete]
    async with new_session() as session, session.begin():
        articles = ArticleRepository(session)
        await articles.soft_delete(hello.id)
        print(
            "after soft_delete:",
            await articles.get(hello.id),
            await articles.count(),
        )
        restored = await articles.restore(hello.id)
        print("restored:", restored.title, restored.deleted_at)
        await articles.delete(draft.id)  # a hard DELETE
        print("after delete:", [a.slug for a in await articles.list()])
    # --8<-- [end:delete]

    # --8<-- [start:rollback]
    async with new_session() as session:
        articles = ArticleRepository(session)
        await articles.create(
            {"slug": "oops", "title": "Oops", "author_id": ada.id}
        )
        print("before rollback:", await articles.exists(slug="oops"))
        await session.rollback()  # the repository flushed; nothing was committed
        print("after rollback:", await articles.exists(slug="oops"))
    # --8<-- [end:rollback]

    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
