"""A taste of sqla_repo: a model from mixins, a repository, a filtered search."""

import asyncio

from sqlalchemy import String
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column

from sqla_repo import AuditedBase, SoftDeleteMixin, actor
from sqla_repo.repository import BaseRepository


# id, created_at, updated_at, created_by, updated_by, deleted_at:
class User(AuditedBase, SoftDeleteMixin):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(100))


class UserRepository(BaseRepository[User]):
    filterable_fields = ("email", "name", "created_at")  # what clients filter on


async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(User.metadata.create_all)

    with actor("admin"):  # stamps created_by and updated_by
        new_session = async_sessionmaker(engine)
        async with new_session() as session, session.begin():  # you commit
            users = UserRepository(session)
            await users.create({"email": "ada@example.org", "name": "Ada"})
            await users.create({"email": "bob@example.com", "name": "Bob"})
            page = await users.search(filters={"email__ilike": "%@EXAMPLE.org"})
            print(page.total, [(u.name, u.created_by) for u in page.items])

    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
