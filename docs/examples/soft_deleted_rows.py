"""Soft-deleted rows: hidden by default, visible on request, restored, purged."""

import asyncio
from datetime import datetime, timedelta, timezone

from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column

from sqla_repo import Base, IntegerPKMixin, SoftDeleteMixin
from sqla_repo.repository import BaseRepository


class Note(IntegerPKMixin, SoftDeleteMixin, Base):
    __tablename__ = "notes"

    text: Mapped[str] = mapped_column(String(200))


class NoteRepository(BaseRepository[Note]):
    pass


async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    new_session = async_sessionmaker(engine, expire_on_commit=False)

    async with new_session() as session, session.begin():
        notes = NoteRepository(session)
        _, binned, old = await notes.bulk_create(
            [{"text": "keep"}, {"text": "bin"}, {"text": "old"}]
        )
        await notes.soft_delete(binned.id)
        await notes.soft_delete(old.id)
        # Pretend the old note was deleted long ago.
        await notes.update_where(
            Note.id == old.id,
            values={"deleted_at": datetime(2020, 1, 1, tzinfo=timezone.utc)},
            include_deleted=True,
        )

    async with new_session() as session, session.begin():
        notes = NoteRepository(session)
        # --8<-- [start:repository]
        print("visible:", [n.text for n in await notes.list()])
        print("all:", [n.text for n in await notes.list(include_deleted=True)])
        print(
            "in the bin:",
            [
                n.text
                for n in await notes.list(Note.is_deleted, include_deleted=True)
            ],
        )
        print(
            "count:", await notes.count(), await notes.count(include_deleted=True)
        )
        print(
            "get:",
            await notes.get(binned.id),
            (await notes.get(binned.id, include_deleted=True)).text,
        )
        # --8<-- [end:repository]

        # --8<-- [start:restore]
        restored = await notes.restore(binned.id)
        print("restored:", restored.text, restored.is_deleted)
        # --8<-- [end:restore]

        # --8<-- [start:purge]
        cutoff = datetime.now(timezone.utc) - timedelta(days=30)
        purged = await notes.delete_where(
            Note.deleted_at < cutoff, include_deleted=True
        )
        print("purged:", purged)
        # --8<-- [end:purge]

    async with new_session() as session:
        # --8<-- [start:plain-session]
        stmt = select(Note.text).execution_options(include_deleted=True)
        print("select:", (await session.scalars(stmt)).all())
        note = await session.get(
            Note, 1, execution_options={"include_deleted": True}
        )
        print("session.get:", note.text if note else None)
        # --8<-- [end:plain-session]

    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
