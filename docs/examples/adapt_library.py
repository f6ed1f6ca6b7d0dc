"""Adapting a library that expects its own data layer (model known at run time)."""

import asyncio
from typing import Any, Generic, TypeVar

from sqlalchemy import ForeignKey, String
from sqlalchemy.ext.asyncio import (
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from sqla_repo import Base, ConflictError, IntegerPKMixin
from sqla_repo.repository import BaseRepository

M = TypeVar("M")


# --8<-- [start:models]
class OAuthAccount(IntegerPKMixin, Base):
    __tablename__ = "oauth_accounts"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    provider: Mapped[str] = mapped_column(String(20))


class User(IntegerPKMixin, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(255), unique=True)
    # The library's documented model loads the accounts with every user.
    oauth_accounts: Mapped[list[OAuthAccount]] = relationship(lazy="joined")


class Tag(IntegerPKMixin, Base):
    __tablename__ = "tags"

    name: Mapped[str] = mapped_column(String(50), unique=True)


# --8<-- [end:models]
# --8<-- [start:adapter]
class AppRepository(BaseRepository[M]):
    """The application's base: its settings reach every adapter's repository."""

    max_page_size = 50


class UserStore(Generic[M]):
    """The data-layer interface a library defines; it hands over the user model."""

    def __init__(self, session: AsyncSession, user_model: type[M]) -> None:
        self.session = session
        self.users = AppRepository.for_model(user_model)(session)

    async def get_by_email(self, email: str) -> M | None:
        return await self.users.get_one_or_none(email=email)

    async def create(self, values: dict[str, Any]) -> M:
        user = await self.users.create(values)
        await self.session.commit()  # the library expects each call to commit
        return user


# --8<-- [end:adapter]
async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    new_session = async_sessionmaker(engine, expire_on_commit=False)

    # --8<-- [start:use]
    async with new_session() as session:
        store = UserStore(session, User)
        ada = await store.create({"email": "ada@example.org"})
        print("created:", ada.email, "accounts:", ada.oauth_accounts)
        try:
            await store.create({"email": "ada@example.org"})
        except ConflictError as exc:
            print("taken:", exc.code)
        found = await store.get_by_email("ada@example.org")
        print("found the same object:", found is ada)
        same_class = type(store.users) is AppRepository.for_model(User)
        print("one class per model:", same_class)
    # --8<-- [end:use]

    # --8<-- [start:tags]
    async def tag_article(names: list[str]) -> list[str]:
        async with new_session() as session, session.begin():
            tags = AppRepository.for_model(Tag)(session)
            rows = await tags.bulk_get_or_create(
                [{"name": n} for n in names], conflict_on=["name"]
            )
            return [f"{t.name}#{t.id}" for t in rows]

    print(await tag_article(["sql", "python"]))
    print(await tag_article(["python", "async", "sql", "python"]))
    # --8<-- [end:tags]
    await engine.dispose()


asyncio.run(main())
