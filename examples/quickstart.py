"""sqla_repo in one file: models from mixins, CRUD, search, pages, soft delete, audit, tenants.

Run ``pip install -e ".[sqlite]" && python examples/quickstart.py``: it uses a throw-away
SQLite file. With DATABASE_URL set (``postgresql+asyncpg://user:secret@host/db``,
``mysql+asyncmy://user:secret@host/db``) it creates its ``quickstart_*`` tables on that
server and drops them at the end.
"""

import asyncio
import os
import tempfile
from pathlib import Path

from sqlalchemy import String
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column

from sqla_repo import (
    AuditedBase,
    Base,
    BaseRepository,
    InvalidFilterError,
    SoftDeleteMixin,
    TenantMixin,
    TenantRequiredError,
    TimestampedBase,
    UniqueViolationError,
    actor,
    tenant,
)


class Author(AuditedBase, SoftDeleteMixin):
    """id, created_at/updated_at (UTC), created_by/updated_by, deleted_at: all from mixins."""

    __tablename__ = "quickstart_authors"

    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    age: Mapped[int | None] = mapped_column(default=None)


class Note(TimestampedBase, TenantMixin):
    """Each note belongs to a tenant; a tenant never sees another's notes."""

    __tablename__ = "quickstart_notes"

    text: Mapped[str] = mapped_column(String(200))


class AuthorRepository(BaseRepository[Author]):
    filterable_fields = ("email", "name", "age")  # what untrusted input may filter on
    sortable_fields = ("name", "age", "created_at")


class NoteRepository(BaseRepository[Note]):
    pass


def database_url() -> str:
    if url := os.environ.get("DATABASE_URL"):
        return url
    path = Path(tempfile.gettempdir()) / "sqla_repo_quickstart.db"
    path.unlink(missing_ok=True)
    return f"sqlite+aiosqlite:///{path}"


async def main() -> None:
    engine = create_async_engine(database_url())
    print(f"Database: {engine.dialect.name}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    print("\n== Mixins")
    print("authors columns:", ", ".join(Author.__table__.columns.keys()))
    try:
        ada_id = await crud(sessions)
        async with sessions.begin() as session:
            await search(AuthorRepository(session))
            await soft_delete(AuthorRepository(session), ada_id)
        await tenants(sessions)
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
        await engine.dispose()


async def crud(sessions: async_sessionmaker) -> int:
    print("\n== CRUD (the repository flushes; the caller commits)")
    with actor("alice"):  # stamps created_by / updated_by
        async with sessions.begin() as session:
            authors = AuthorRepository(session)
            ada = await authors.create({"email": "ada@example.org", "name": "Ada", "age": 36})
            rows = [("Alan", 41), ("Grace", 85), ("Linus", 28)]
            await authors.bulk_create(  # one multi-row INSERT
                [{"email": f"{n.lower()}@example.org", "name": n, "age": a} for n, a in rows]
            )
            print(f"created {ada.name} (id {ada.id}) by {ada.created_by}, at {ada.created_at}")
            try:
                await authors.create({"email": "ada@example.org", "name": "Ada again"})
            except UniqueViolationError as exc:
                print(f"duplicate email refused: {exc.code}, the session is still usable")
    with actor("bob"):
        async with sessions.begin() as session:
            ada = await AuthorRepository(session).update(ada.id, age=37)
            print(f"updated {ada.name}: age {ada.age}, updated_by {ada.updated_by}")
    return ada.id


async def search(authors: AuthorRepository) -> None:
    print("\n== Search: filters from untrusted input, sort, offset pages")
    page = await authors.search(
        filters={"email__endswith": "@example.org", "age__ge": "30"},
        order_by="-age,name",
        limit=2,
    )
    print(f"search: {[a.name for a in page.items]}, {page.total} matches in all,")
    print(f"        page {page.page} of {page.total_pages}, has_next={page.has_next}")
    try:
        await authors.search(filters={"emial": "ada@example.org"})
    except InvalidFilterError as exc:
        print(f"typo refused: {exc.message}")

    print("\n== Keyset pages: opaque cursors, stable under inserts")
    first = await authors.paginate(order_by=["name"], limit=2)
    second = await authors.paginate(order_by=["name"], limit=2, after=first.next_cursor)
    print(f"page 1: {[a.name for a in first.items]}")
    print(f"page 2: {[a.name for a in second.items]}, has_next={second.has_next}")


async def soft_delete(authors: AuthorRepository, ada_id: int) -> None:
    print("\n== Soft delete and restore")
    await authors.soft_delete(ada_id)
    print(f"soft-deleted: get() -> {await authors.get(ada_id)}, count {await authors.count()}")
    hidden = await authors.get(ada_id, include_deleted=True)
    print(f"with include_deleted=True: {hidden.name}, deleted_at {hidden.deleted_at}")
    await authors.restore(ada_id)
    print(f"restored: count {await authors.count()}")


async def tenants(sessions: async_sessionmaker) -> None:
    print("\n== Tenants: every statement is scoped to the current tenant")
    async with sessions.begin() as session:
        notes = NoteRepository(session)
        with tenant("acme"):
            await notes.create({"text": "Acme roadmap"})
        with tenant("globex"):
            await notes.create({"text": "Globex budget"})
            print(f"globex sees: {[n.text for n in await notes.list()]}")
        with tenant("acme"):
            print(f"acme sees: {[n.text for n in await notes.list()]}")
        try:
            await notes.list()
        except TenantRequiredError as exc:
            print(f"no tenant set: {exc.code} (deny by default)")


if __name__ == "__main__":
    asyncio.run(main())
