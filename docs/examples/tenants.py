"""Multi-tenant scoping: one set of tables, each tenant inside its own rows."""

import asyncio
import uuid

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.ext.asyncio import (
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Mapped, mapped_column

from sqla_repo import (
    Base,
    ForeignKeyViolationError,
    IntegerPKMixin,
    NotFoundError,
    TenantMismatchError,
    TenantMixin,
    TenantRequiredError,
    TimestampMixin,
    UUIDv7PKMixin,
    all_tenants,
    tenant,
)
from sqla_repo.repository import BaseRepository


# --8<-- [start:model]
class Document(UUIDv7PKMixin, TenantMixin, TimestampMixin, Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("tenant_id", "slug"),)  # unique per tenant

    slug: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(200))


class Comment(IntegerPKMixin, TenantMixin, Base):
    __tablename__ = "comments"

    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("documents.id"))
    text: Mapped[str] = mapped_column(String(500))


class DocumentRepository(BaseRepository[Document]):
    pass


class CommentRepository(BaseRepository[Comment]):
    pass


# --8<-- [end:model]
async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    new_session = async_sessionmaker(engine, expire_on_commit=False)

    # --8<-- [start:scoped]
    with tenant("acme"):
        async with new_session() as session, session.begin():
            docs = DocumentRepository(session)
            welcome = await docs.create(
                {"slug": "welcome", "title": "Welcome to Acme"}
            )
            print("acme creates:", welcome.tenant_id, welcome.slug)

    with tenant("globex"):
        async with new_session() as session, session.begin():
            docs = DocumentRepository(session)
            await docs.create({"slug": "welcome", "title": "Welcome to Globex"})
            print("globex sees:", [d.title for d in await docs.list()])
            try:
                await docs.get_by_id(welcome.id)  # acme's row
            except NotFoundError:
                print("globex reading acme's id: NotFoundError")
            print(
                "globex updates:",
                await docs.update_where(values={"title": "Hello"}),
            )
    # --8<-- [end:scoped]

    # --8<-- [start:references]
    with tenant("globex"):
        async with new_session() as session, session.begin():
            comments = CommentRepository(session)
            try:
                await comments.create({"document_id": welcome.id, "text": "hi"})
            except ForeignKeyViolationError as exc:
                print("globex linking acme's document:", exc.detail)
            try:
                await comments.create({"document_id": uuid.uuid4(), "text": "hi"})
            except ForeignKeyViolationError as exc:
                print("globex linking a missing one: ", exc.detail)
    # --8<-- [end:references]

    # --8<-- [start:denied]
    async with new_session() as session:
        try:
            await DocumentRepository(session).list()
        except TenantRequiredError as exc:
            print("no tenant:", exc.code)

    with tenant("acme"):
        async with new_session() as session, session.begin():
            try:
                await DocumentRepository(session).create(
                    {"slug": "x", "title": "x", "tenant_id": "globex"}
                )
            except TenantMismatchError as exc:
                print("acme writing a globex row:", exc.code)
    # --8<-- [end:denied]

    await across_tenants(new_session)

    await engine.dispose()


async def across_tenants(new_session: async_sessionmaker[AsyncSession]) -> None:
    # --8<-- [start:all-tenants]
    with all_tenants():
        async with new_session() as session, session.begin():
            docs = DocumentRepository(session)
            print(
                "all tenants:",
                sorted((d.tenant_id, d.title) for d in await docs.list()),
            )
            await docs.create(
                {"slug": "news", "title": "News", "tenant_id": "acme"}
            )
            try:
                await docs.create({"slug": "orphan", "title": "No tenant"})
            except TenantRequiredError:
                print("a new row inside all_tenants() must name its tenant")
    # --8<-- [end:all-tenants]


if __name__ == "__main__":
    asyncio.run(main())
