"""Writes sent as single statements, and the guarantee that goes with them.

create()'s INSERT … RETURNING, plain SAVEPOINTs on PostgreSQL, the per-call savepoints()
switch; a conflict leaves the caller's session and transaction usable with nothing else
lost, on every backend.
"""

from __future__ import annotations

import pytest
from sqlalchemy import String, event, func, select, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, validates

from models import Client, Document, Note, Post, User
from recorder import StatementLog
from repositories import DocumentRepository, PostRepository, UserRepository
from sqla_repo import (
    BaseRepository,
    ForeignKeyViolationError,
    InvalidValueError,
    TenantMismatchError,
    TenantRequiredError,
    UniqueViolationError,
    actor,
    all_tenants,
    tenant,
)


class ClientRepository(BaseRepository[Client]):
    pass


class _OwnBase(DeclarativeBase):
    pass


class Shout(_OwnBase):
    """A model with a validator: a mapping given to create() must go through it."""

    __tablename__ = "write_statement_shouts"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(20))

    @validates("text")
    def _shout(self, _key: str, value: str) -> str:
        return value.upper() * 2


def _create_statements(backend_name: str) -> list[str]:
    if backend_name == "postgresql":
        return ["SAVEPOINT", "INSERT", "RELEASE"]
    return ["INSERT"]


async def _warm(repo: BaseRepository[object]) -> None:
    """Start the transaction (SQLite's BEGIN) and learn the dialect before counting."""
    await repo.count()


async def test_create_sends_one_insert_or_three_statements_on_postgresql(session, backend):
    """A mapping and a new instance are each written by one INSERT … RETURNING."""
    repo = UserRepository(session)
    await _warm(repo)
    with StatementLog(session) as log:
        await repo.create({"email": "a@x.org"})
    assert log.statements == _create_statements(backend.name)
    with StatementLog(session) as log:
        await repo.create(User(email="b@x.org"))
    assert log.statements == _create_statements(backend.name)


async def test_update_and_delete_by_id_statements(session, backend):
    """By key: one UPDATE (MariaDB: UPDATE + SELECT) or DELETE; PostgreSQL adds a SAVEPOINT."""
    repo = UserRepository(session)
    user = await repo.create({"email": "a@x.org"})
    with StatementLog(session) as log:
        await repo.update(user.id, name="n")
    with StatementLog(session) as log_delete:
        await repo.delete(user.id)
    if backend.name == "sqlite":
        assert log.statements == ["UPDATE"]
        assert log_delete.statements == ["DELETE"]
    elif backend.name == "mariadb":
        assert log.statements == ["UPDATE", "SELECT"]
        assert log_delete.statements == ["DELETE"]
    else:
        assert log.statements == ["SAVEPOINT", "UPDATE", "RELEASE"]
        assert log_delete.statements == ["SAVEPOINT", "DELETE", "RELEASE"]


async def test_savepoints_switch_drops_the_savepoint_for_the_block(session, backend):
    """repo.savepoints(False) turns the SAVEPOINTs off inside the block only."""
    repo = UserRepository(session)
    await _warm(repo)
    with repo.savepoints(False), StatementLog(session) as log:  # noqa: FBT003
        user = await repo.create({"email": "a@x.org"})
        await repo.update(user.id, name="n")
    dml = ["INSERT", "UPDATE"] + (["SELECT"] if backend.name == "mariadb" else [])
    assert log.statements == dml
    with StatementLog(session) as log:
        await repo.create({"email": "b@x.org"})
    assert log.statements == _create_statements(backend.name)


async def test_savepoints_switch_nests_and_overrides_the_class_setting(session, backend):
    """savepoints(True) inside a class with use_savepoints = False turns them back on."""

    class Unprotected(UserRepository):
        use_savepoints = False

    repo = Unprotected(session)
    await _warm(repo)
    with repo.savepoints(True):  # noqa: FBT003
        with repo.savepoints(False), StatementLog(session) as log:  # noqa: FBT003
            await repo.create({"email": "a@x.org"})
        assert log.statements == ["INSERT"]
        await repo.create({"email": "b@x.org"})
        with pytest.raises(UniqueViolationError):
            await repo.create({"email": "b@x.org"})
        assert await repo.count() == 2  # the transaction goes on, on every backend
    with StatementLog(session) as log:
        await repo.create({"email": "c@x.org"})
    assert log.statements == ["INSERT"]


async def test_create_conflict_keeps_earlier_rows_and_pending_objects(sessionmaker, backend):
    """After a ConflictError from either input form, earlier writes are all still there.

    Pending objects included; the transaction commits.
    """
    async with sessionmaker() as session, session.begin():
        repo = UserRepository(session)
        first = await repo.create({"email": "a@x.org"})
        session.add(User(email="pending@x.org"))
        with pytest.raises(UniqueViolationError):
            await repo.create({"email": "a@x.org"})
        dup = User(email="a@x.org")
        with pytest.raises(UniqueViolationError):
            await repo.create(dup)
        assert sa_inspect(dup).transient  # the caller's object is left as it was
        assert first.email == "a@x.org"
        await repo.update(first.id, name="still usable")
        await repo.create({"email": "b@x.org"})
    async with sessionmaker() as session:
        emails = (await session.scalars(select(User.email).order_by(User.email))).all()
        assert emails == ["a@x.org", "b@x.org", "pending@x.org"]
        assert await session.scalar(select(User.name).where(User.email == "a@x.org")) == (
            "still usable"
        )


async def test_statement_conflicts_keep_the_transaction(sessionmaker, backend):
    """update/update_where/delete by key failing on a constraint: the rest is kept."""
    async with sessionmaker() as session, session.begin():
        users = UserRepository(session)
        posts = PostRepository(session)
        a = await users.create({"email": "a@x.org"})
        b = await users.create({"email": "b@x.org"})
        await posts.create({"title": "t", "author_id": a.id})
        with pytest.raises(UniqueViolationError):
            await users.update(b.id, email="a@x.org")
        with pytest.raises(UniqueViolationError):
            await users.update_where(User.id == b.id, values={"email": "a@x.org"})
        with pytest.raises(ForeignKeyViolationError):
            await users.delete(a.id)
        with pytest.raises(ForeignKeyViolationError):
            await users.delete_where(User.id == a.id)
        await users.update(b.id, name="after")
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 2
        assert await session.scalar(select(func.count()).select_from(Post)) == 1
        assert await session.scalar(select(User.name).where(User.email == "b@x.org")) == "after"


async def test_conflict_inside_the_callers_savepoint_and_atomic(session, backend):
    """A repository SAVEPOINT inside the caller's begin_nested() or atomic().

    It releases and rolls back only its own work.
    """
    repo = UserRepository(session)
    await repo.create({"email": "a@x.org"})
    async with session.begin_nested():
        await repo.create({"email": "b@x.org"})
        with pytest.raises(UniqueViolationError):
            await repo.create({"email": "a@x.org"})
        await repo.create({"email": "c@x.org"})
    async with repo.atomic():
        with pytest.raises(UniqueViolationError):
            await repo.update((await repo.get_one(email="c@x.org")).id, email="b@x.org")
        await repo.create({"email": "d@x.org"})
    assert await repo.count() == 4


async def test_created_instance_is_the_persistent_object(session, backend):
    """create(obj) is obj: in the identity map, defaults loaded, later changes flushed."""
    repo = UserRepository(session)
    user = User(email="a@x.org", name="A")
    assert await repo.create(user) is user
    state = sa_inspect(user)
    assert state.persistent
    assert user.id is not None
    assert user.is_active is True
    assert user.created_at is not None
    with StatementLog(session) as log:
        assert await session.get(User, user.id) is user
    assert log.statements == []
    user.name = "B"
    with StatementLog(session) as log:
        await session.flush()
    assert log.dml == ["UPDATE"]
    await session.refresh(user)
    assert user.name == "B"


async def test_fast_path_stamps_defaults_version_audit_and_tenant(session, backend):
    """Timestamps, audit columns, the tenant and the first version are set by the INSERT."""
    repo = DocumentRepository(session)
    with tenant("t1"), actor("bob"):
        await _warm(repo)
        with StatementLog(session) as log:
            doc = await repo.create({"slug": "a"})
            inst = await repo.create(Document(slug="b"))
        assert log.statements == _create_statements(backend.name) * 2
        for obj in (doc, inst):
            assert obj.tenant_id == "t1"
            assert obj.version == 1
            assert obj.created_by == obj.updated_by == "bob"
            assert obj.created_at is not None
            assert obj.updated_at is not None
            assert obj.id is not None
        await repo.update(inst, body="changed")
        assert inst.version == 2
        stored = await session.scalar(select(Document.version).where(Document.id == doc.id))
        assert stored == 1


async def test_fast_path_checks_the_tenant(session, backend):
    """The tenant checks of the unit of work hold for the statement path."""
    repo = DocumentRepository(session)
    with tenant("t1"):
        with pytest.raises(TenantMismatchError):
            await repo.create({"slug": "a", "tenant_id": "t2"})
        with pytest.raises(TenantMismatchError):
            await repo.create(Document(slug="b", tenant_id="t2"))
    with pytest.raises(TenantRequiredError):
        await repo.create({"slug": "c"})
    with all_tenants():
        with pytest.raises(TenantRequiredError):
            await repo.create({"slug": "d"})
        assert (await repo.create({"slug": "e", "tenant_id": "t3"})).tenant_id == "t3"
        assert await repo.count() == 1


async def test_fallbacks_use_the_unit_of_work(session, backend):
    """A joined-table subclass, a relationship value or a pending instance: flushed."""
    with tenant("t1"):
        client = await ClientRepository(session).create({"name": "c", "company": "co"})
        assert sa_inspect(client).persistent
    users = UserRepository(session)
    author = await users.create({"email": "a@x.org"})
    post = await PostRepository(session).create({"title": "t", "author": author})
    assert post.author_id == author.id
    pending = User(email="b@x.org")
    session.add(pending)
    assert await users.create(pending) is pending
    assert sa_inspect(pending).persistent


async def test_statement_updates_keep_loaded_objects_in_step(session, backend):
    """A statement write changes the object already in the identity map."""
    repo = UserRepository(session)
    user = await repo.create({"email": "a@x.org"})
    same = await repo.update(user.id, name="new")
    assert same is user
    assert user.name == "new"
    await session.execute(update(User).where(User.id == user.id).values(name="raw"))
    assert (await repo.get(user.id, populate_existing=True)).name == "raw"


async def test_mapping_goes_through_the_models_validators(engine, backend):
    """A model with @validates: the statement path writes the validated values, checked."""
    async with engine.begin() as conn:
        await conn.run_sync(_OwnBase.metadata.create_all)
    try:
        async with AsyncSession(engine) as session, session.begin():
            repo = BaseRepository.for_model(Shout)(session)
            await repo.count()
            with StatementLog(session) as log:
                shout = await repo.create({"text": "hi"})
            assert log.statements == _create_statements(backend.name)
            assert shout.text == "HIHI"
            assert await session.scalar(select(Shout.text)) == "HIHI"
            with pytest.raises(InvalidValueError):
                await repo.create({"text": "x" * 15})  # 30 characters once validated
            assert await repo.count() == 1
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(_OwnBase.metadata.drop_all)


async def test_insert_events_keep_the_unit_of_work(engine, backend):
    """A before_insert listener on the model: create() flushes, so the listener runs."""
    seen: list[str] = []

    def _listener(_mapper: object, _conn: object, target: Shout) -> None:
        seen.append(target.text)

    event.listen(Shout, "before_insert", _listener)
    async with engine.begin() as conn:
        await conn.run_sync(_OwnBase.metadata.create_all)
    try:
        async with AsyncSession(engine) as session, session.begin():
            repo = BaseRepository.for_model(Shout)(session)
            await repo.create({"text": "a"})
            await repo.create(Shout(text="b"))
            assert seen == ["AA", "BB"]
    finally:
        event.remove(Shout, "before_insert", _listener)
        async with engine.begin() as conn:
            await conn.run_sync(_OwnBase.metadata.drop_all)


async def test_an_applications_flush_listener_sees_created_rows(session):
    """A session-level flush listener of the application: create() flushes, so it runs."""
    seen: list[object] = []

    def _listener(flushing, _context, _instances):  # type: ignore[no-untyped-def]
        seen.extend(obj for obj in flushing.new if isinstance(obj, Post))

    event.listen(session.sync_session, "before_flush", _listener)
    try:
        post = await PostRepository(session).create({"title": "seen"})
    finally:
        event.remove(session.sync_session, "before_flush", _listener)
    assert seen == [post]


async def test_fast_path_refuses_a_reference_to_another_tenants_row(session, backend):
    """Another tenant's row is refused like a missing one, by mapping and by instance."""
    with tenant("t2"):
        theirs = await DocumentRepository(session).create({"slug": "theirs"})
    notes = BaseRepository.for_model(Note)(session)
    with tenant("t1"):
        for given in (
            {"document_id": theirs.id, "text": "x"},
            Note(document_id=theirs.id, text="y"),
        ):
            with pytest.raises(ForeignKeyViolationError):
                await notes.create(given)
        assert await notes.count() == 0
    with all_tenants():
        assert await notes.count() == 0
