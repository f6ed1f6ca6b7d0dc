"""Tutorial step 5: the errors sqla_repo raises, and how to handle them."""

import asyncio
from collections.abc import Awaitable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from models import Article, Author
from sqla_repo import (
    Base,
    ForeignKeyViolationError,
    NotFoundError,
    RepositoryError,
    UniqueViolationError,
)
from sqla_repo.repository import BaseRepository


class ArticleRepository(BaseRepository[Article]):
    filterable_fields = ("title", "status")


# --8<-- [start:report]
async def report(call: Awaitable[object]) -> None:
    """Await a repository call and print any sqla_repo error it raises."""
    try:
        await call
    except RepositoryError as exc:
        print(f"{type(exc).__name__} ({exc.code}): {exc}")


# --8<-- [end:report]
async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")

    # --8<-- [start:foreign-keys]
    @event.listens_for(engine.sync_engine, "connect")
    def enforce_foreign_keys(dbapi_connection: Any, _record: object) -> None:
        # SQLite checks foreign keys only when a connection asks for it.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    # --8<-- [end:foreign-keys]

    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    new_session = async_sessionmaker(engine, expire_on_commit=False)

    async with new_session() as session, session.begin():
        articles = ArticleRepository(session)
        session.add(Author(id=1, name="Ada"))
        await articles.create({"slug": "hello", "title": "Hello", "author_id": 1})

        # --8<-- [start:not-found]
        try:
            await articles.get_by_id(42)
        except NotFoundError as exc:
            print(f"{exc.code}: {exc}")
            print("  detail:", exc.detail)
        # --8<-- [end:not-found]

        # --8<-- [start:conflict]
        try:
            await articles.create(
                {"slug": "hello", "title": "Again", "author_id": 1}
            )
        except UniqueViolationError as exc:
            print(f"{exc.code}: {exc}")
            print("  detail:", exc.detail)
            print("  caused by", type(exc.__cause__).__name__)
        # Still usable: the failed INSERT was rolled back to a savepoint.
        await articles.create({"slug": "hello-2", "title": "Again", "author_id": 1})
        # --8<-- [end:conflict]

        # --8<-- [start:foreign-key]
        try:
            await articles.create(
                {"slug": "orphan", "title": "Orphan", "author_id": 99}
            )
        except ForeignKeyViolationError as exc:
            print(exc.code, exc.detail)
        # --8<-- [end:foreign-key]

        # --8<-- [start:catch-all]
        await report(articles.create({"slug": "untitled", "author_id": 1}))
        await report(articles.list(filters={"body__contains": "x"}))
        await report(articles.search(limit=0))
        # --8<-- [end:catch-all]

    async with new_session() as session:
        print(
            "committed:", [a.slug for a in await ArticleRepository(session).list()]
        )

    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
