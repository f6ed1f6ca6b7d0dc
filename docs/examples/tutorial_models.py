"""Models from mixins: timestamps, audit columns and soft delete on SQLite."""

import asyncio
from datetime import datetime, timezone

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column

from sqla_repo import AuditedBase, Base, SoftDeleteMixin, TimestampedBase, actor


class Author(TimestampedBase):
    __tablename__ = "authors"

    name: Mapped[str] = mapped_column(String(100))


class Article(AuditedBase, SoftDeleteMixin):
    __tablename__ = "articles"

    title: Mapped[str] = mapped_column(String(200))
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))


async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    new_session = async_sessionmaker(engine, expire_on_commit=False)

    with actor("alice"):
        async with new_session() as session, session.begin():
            ada = Author(name="Ada")
            session.add(ada)
            await session.flush()  # ada.id is assigned here
            hello = Article(title="Hello", author_id=ada.id)
            draft = Article(title="Draft", author_id=ada.id)
            session.add_all([hello, draft])

    print(hello.id, hello.created_by, hello.created_at.tzinfo)

    with actor("bob"):
        async with new_session() as session, session.begin():
            draft = await session.get_one(Article, draft.id)
            draft.deleted_at = datetime.now(timezone.utc)

    async with new_session() as session:
        visible = await session.scalars(select(Article.title))
        print("visible:", visible.all())
        everything = select(Article.title, Article.updated_by).execution_options(
            include_deleted=True
        )
        print("all:", (await session.execute(everything)).all())

    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
