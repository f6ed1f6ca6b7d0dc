"""The quickstart as a plain synchronous script: the same steps with SyncBaseRepository.

Run ``pip install -e . && python examples/sync_quickstart.py``: it uses a throw-away
SQLite file through Python's own ``sqlite3`` driver. With DATABASE_URL set
(``postgresql+psycopg://user:secret@host/db``, ``mysql+pymysql://user:secret@host/db``)
it creates its ``sync_quickstart_*`` tables on that server and drops them at the end.
"""

import os
import tempfile
from pathlib import Path

from sqlalchemy import String, create_engine
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from sqla_repo import (
    AuditedBase,
    Base,
    InvalidFilterError,
    SoftDeleteMixin,
    SyncBaseRepository,
    TenantMixin,
    TenantRequiredError,
    TimestampedBase,
    UniqueViolationError,
    actor,
    tenant,
)


class Author(AuditedBase, SoftDeleteMixin):
    """id, created_at/updated_at (UTC), created_by/updated_by, deleted_at: all from mixins."""

    __tablename__ = "sync_quickstart_authors"

    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    age: Mapped[int | None] = mapped_column(default=None)


class Note(TimestampedBase, TenantMixin):
    """Each note belongs to a tenant; a tenant never sees another's notes."""

    __tablename__ = "sync_quickstart_notes"

    text: Mapped[str] = mapped_column(String(200))


class AuthorRepository(SyncBaseRepository[Author]):
    filterable_fields = ("email", "name", "age")  # what untrusted input may filter on
    sortable_fields = ("name", "age", "created_at")


class NoteRepository(SyncBaseRepository[Note]):
    pass


def database_url() -> str:
    if url := os.environ.get("DATABASE_URL"):
        return url
    path = Path(tempfile.gettempdir()) / "sqla_repo_sync_quickstart.db"
    path.unlink(missing_ok=True)
    return f"sqlite:///{path}"


def main() -> None:
    engine = create_engine(database_url())
    print(f"Database: {engine.dialect.name}")
    tables = [Author.__table__, Note.__table__]
    Base.metadata.drop_all(engine, tables=tables)
    Base.metadata.create_all(engine, tables=tables)
    sessions = sessionmaker(engine, expire_on_commit=False)
    print("\n== Mixins")
    print("authors columns:", ", ".join(Author.__table__.columns.keys()))
    try:
        ada_id = crud(sessions)
        with sessions.begin() as session:
            search(AuthorRepository(session))
            soft_delete(AuthorRepository(session), ada_id)
        tenants(sessions)
    finally:
        Base.metadata.drop_all(engine, tables=tables)
        engine.dispose()


def crud(sessions: sessionmaker) -> int:
    print("\n== CRUD (the repository flushes; the caller commits)")
    # actor() stamps created_by / updated_by
    with actor("alice"), sessions.begin() as session:
        authors = AuthorRepository(session)
        ada = authors.create({"email": "ada@example.org", "name": "Ada", "age": 36})
        rows = [("Alan", 41), ("Grace", 85), ("Linus", 28)]
        authors.bulk_create(  # one multi-row INSERT
            [{"email": f"{n.lower()}@example.org", "name": n, "age": a} for n, a in rows]
        )
        print(f"created {ada.name} (id {ada.id}) by {ada.created_by}, at {ada.created_at}")
        try:
            authors.create({"email": "ada@example.org", "name": "Ada again"})
        except UniqueViolationError as exc:
            print(f"duplicate email refused: {exc.code}, the session is still usable")
    with actor("bob"), sessions.begin() as session:
        ada = AuthorRepository(session).update(ada.id, age=37)
        print(f"updated {ada.name}: age {ada.age}, updated_by {ada.updated_by}")
    return ada.id


def search(authors: AuthorRepository) -> None:
    print("\n== Search: filters from untrusted input, sort, offset pages")
    page = authors.search(
        filters={"email__endswith": "@example.org", "age__ge": "30"},
        order_by="-age,name",
        limit=2,
    )
    print(f"search: {[a.name for a in page.items]}, {page.total} matches in all,")
    print(f"        page {page.page} of {page.total_pages}, has_next={page.has_next}")
    try:
        authors.search(filters={"emial": "ada@example.org"})
    except InvalidFilterError as exc:
        print(f"typo refused: {exc.message}")

    print("\n== Keyset pages: opaque cursors, stable under inserts")
    first = authors.paginate(order_by=["name"], limit=2)
    second = authors.paginate(order_by=["name"], limit=2, after=first.next_cursor)
    print(f"page 1: {[a.name for a in first.items]}")
    print(f"page 2: {[a.name for a in second.items]}, has_next={second.has_next}")

    print("\n== Stream: a plain iterator, in constant memory")
    print(f"stream: {[a.name for a in authors.stream(order_by=['name'], batch_size=2)]}")


def soft_delete(authors: AuthorRepository, ada_id: int) -> None:
    print("\n== Soft delete and restore")
    authors.soft_delete(ada_id)
    print(f"soft-deleted: get() -> {authors.get(ada_id)}, count {authors.count()}")
    hidden = authors.get(ada_id, include_deleted=True)
    print(f"with include_deleted=True: {hidden.name}, deleted_at {hidden.deleted_at}")
    authors.restore(ada_id)
    print(f"restored: count {authors.count()}")


def tenants(sessions: sessionmaker) -> None:
    print("\n== Tenants: every statement is scoped to the current tenant")
    with sessions.begin() as session:
        notes = NoteRepository(session)
        with tenant("acme"):
            notes.create({"text": "Acme roadmap"})
        with tenant("globex"):
            notes.create({"text": "Globex budget"})
            print(f"globex sees: {[n.text for n in notes.list()]}")
        with tenant("acme"):
            print(f"acme sees: {[n.text for n in notes.list()]}")
        try:
            notes.list()
        except TenantRequiredError as exc:
            print(f"no tenant set: {exc.code} (deny by default)")


if __name__ == "__main__":
    main()
