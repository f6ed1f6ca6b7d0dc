"""The audit actor: who created and who last changed each row."""

import asyncio

from sqlalchemy import String, update
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column

from sqla_repo import AuditedBase, Base, actor
from sqla_repo.repository import BaseRepository


class Page(AuditedBase):
    __tablename__ = "pages"

    title: Mapped[str] = mapped_column(String(200))


class PageRepository(BaseRepository[Page]):
    pass


def show(label: str, page: Page) -> None:
    print(f"{label}: created_by={page.created_by} updated_by={page.updated_by}")


async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///pages.db")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    new_session = async_sessionmaker(engine, expire_on_commit=False)

    # --8<-- [start:rules]
    with actor("alice"):
        async with new_session() as session, session.begin():
            pages = PageRepository(session)
            page = await pages.create({"title": "Home"})
            show("insert", page)
            imported = await pages.create(
                {"title": "Old", "created_by": "legacy-import"}
            )
            show("explicit value", imported)

    with actor("bob"):
        async with new_session() as session, session.begin():
            show(
                "update",
                await PageRepository(session).update(page.id, title="Start"),
            )
            await session.execute(
                update(Page).where(Page.id == imported.id).values(title="Older")
            )
            show(
                "ORM update()", await PageRepository(session).get_by_id(imported.id)
            )

    async with new_session() as session, session.begin():
        show(
            "no actor",
            await PageRepository(session).update(page.id, title="Welcome"),
        )
    # --8<-- [end:rules]

    # --8<-- [start:tasks]
    async def rename(user: str, page_id: int, title: str) -> None:
        with actor(user):
            async with new_session() as session, session.begin():
                await PageRepository(session).update(page_id, title=title)

    await asyncio.gather(
        rename("carol", page.id, "A"), rename("dave", imported.id, "B")
    )
    async with new_session() as session:
        for row in await PageRepository(session).list():
            show(f"task wrote {row.title}", row)
    # --8<-- [end:tasks]

    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
