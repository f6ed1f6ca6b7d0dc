"""Synchronous code: SyncBaseRepository over a Session, one Session per thread."""

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import String, create_engine, update
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from sqla_repo import (
    AuditedBase,
    Base,
    SyncBaseRepository,
    TenantMixin,
    TimestampedBase,
    UniqueViolationError,
    actor,
    tenant,
)


# --8<-- [start:model]
class Author(AuditedBase):
    __tablename__ = "authors"

    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(100))


class Note(TimestampedBase, TenantMixin):
    __tablename__ = "notes"

    text: Mapped[str] = mapped_column(String(200))


class AuthorRepository(SyncBaseRepository[Author]):
    sortable_fields = ("name",)

    def rename_all(self, old: str, new: str) -> int:
        with self.atomic():  # a context manager, not an async one
            result = self.session.execute(
                update(Author).where(Author.name == old).values(name=new)
            )
        return result.rowcount


class NoteRepository(SyncBaseRepository[Note]):
    pass


# --8<-- [end:model]
# --8<-- [start:setup]
engine = create_engine("sqlite:///sync.db")  # sqlite3, psycopg, PyMySQL...
Base.metadata.create_all(engine)
new_session = sessionmaker(engine, expire_on_commit=False)
# --8<-- [end:setup]


def unit_of_work() -> None:
    # --8<-- [start:unit-of-work]
    with actor("alice"), new_session() as session, session.begin():
        authors = AuthorRepository(session)
        ada = authors.create({"email": "ada@example.org", "name": "Ada"})
        authors.bulk_create(
            [
                {"email": "alan@example.org", "name": "Alan"},
                {"email": "grace@example.org", "name": "Grace"},
            ]
        )
        try:
            authors.create({"email": "ada@example.org", "name": "Ada again"})
        except UniqueViolationError as exc:
            print(f"refused: {exc.code}; the transaction goes on")
        print(f"created {ada.name} (id {ada.id}) by {ada.created_by}")
        print("renamed:", authors.rename_all("Alan", "Alan T."))
        page = authors.search(order_by=["name"], limit=2)
        print("page:", [a.name for a in page.items], "of", page.total)
        print("stream:", [a.name for a in authors.stream(order_by=["-name"])])
    # committed here: the repository only flushed
    # --8<-- [end:unit-of-work]


# --8<-- [start:threads]
def write_note(tenant_id: str) -> str:
    # One Session per thread; actor and tenant are set in the thread that uses them.
    with tenant(tenant_id), new_session() as session, session.begin():
        notes = NoteRepository(session)
        notes.create({"text": f"note of {tenant_id}"})
        return f"{tenant_id} sees {[n.text for n in notes.list()]}"


def threads() -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        tenants = ["acme", "globex", "initech"]
        print(*pool.map(write_note, tenants), sep="\n")


# --8<-- [end:threads]
unit_of_work()
threads()
engine.dispose()
