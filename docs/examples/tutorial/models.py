"""Tutorial step 1: models from mixins: timestamps, audit columns, soft delete."""

import asyncio
from datetime import datetime, timezone

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column, relationship

from sqla_repo import AuditedBase, Base, SoftDeleteMixin, TimestampedBase, actor


# --8<-- [start:models]
class Author(TimestampedBase):  # id, created_at, updated_at
    __tablename__ = "authors"

    name: Mapped[str] = mapped_column(String(100))


# id, created_at, updated_at, created_by, updated_by and deleted_at:
class Article(AuditedBase, SoftDeleteMixin):
    __tablename__ = "articles"

    slug: Mapped[str] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="draft")
    views: Mapped[int] = mapped_column(default=0)
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))

    # Loaded explicitly, never lazily: lazy loading has no place in async code.
    author: Mapped[Author] = relationship(lazy="raise")


# --8<-- [end:models]
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
            hello = Article(slug="hello", title="Hello", author_id=ada.id)
            draft = Article(slug="draft", title="Draft", author_id=ada.id)
            session.add_all([hello, draft])

    print(hello.id, hello.status, hello.created_by, hello.created_at.tzinfo)

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
