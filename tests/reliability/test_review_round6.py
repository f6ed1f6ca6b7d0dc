"""Adversarial tests of the table's own INSERT and of the first write of a transaction.

``create()`` and ``bulk_insert()`` write through the table's Core ``INSERT`` and build the
object by hand; the object must be the one an ORM load gives (attribute keys that are not
column names, server defaults, deferred and expression columns, versions, tenants), and
rollbacks must take it away. On PostgreSQL a failed write that opened its transaction is
undone by the driver: nothing the caller set up for the transaction may be lost. Common
written values are checked at a glance: the values at the edge must still be refused.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
import pytest_asyncio
from sqlalchemy import (
    BigInteger,
    Integer,
    SmallInteger,
    String,
    delete,
    insert,
    select,
    text,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncAttrs, AsyncEngine, AsyncSession
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    column_property,
    deferred,
    mapped_column,
    reconstructor,
    synonym,
)

import flavours
from reliability.support import own_tables
from sqla_repo import (
    AuditColumnsMixin,
    BaseRepository,
    IntegerPKMixin,
    InvalidValueError,
    RepositoryError,
    SoftDeleteMixin,
    TenantMismatchError,
    TenantMixin,
    TenantRequiredError,
    TimestampMixin,
    UniqueViolationError,
    actor,
    all_tenants,
    tenant,
)
from sqla_repo.routing import replica_sessionmaker

pytestmark = pytest.mark.usefixtures("flavour")


class _Base(AsyncAttrs, DeclarativeBase):
    pass


class Note(IntegerPKMixin, TenantMixin, TimestampMixin, SoftDeleteMixin, AuditColumnsMixin, _Base):
    """Attribute keys that are not column names, a server default, a deferred column."""

    __tablename__ = "r6_notes"
    label: Mapped[str] = mapped_column("label_col", String(20), unique=True)
    score: Mapped[int] = mapped_column("score_col", SmallInteger, server_default=text("7"))
    body: Mapped[str | None] = deferred(mapped_column("body_col", String(20), default="b"))
    tag = synonym("label")

    @hybrid_property
    def shout(self) -> str:
        return self.label.upper()

    @shout.inplace.setter
    def _shout_setter(self, value: str) -> None:
        self.label = value.lower()


NOTES = Note.__table__


class Tally(IntegerPKMixin, _Base):
    """A ``column_property()`` over an expression of the row's own columns."""

    __tablename__ = "r6_tallies"
    n: Mapped[int] = mapped_column(Integer)


Tally.n_plus = column_property(Tally.__table__.c.n + 1)


class Rebuilt(IntegerPKMixin, _Base):
    """Per-instance state set up by ``@reconstructor`` whenever the ORM loads a row."""

    __tablename__ = "r6_rebuilt"
    name: Mapped[str] = mapped_column(String(20))

    @reconstructor
    def _on_load(self) -> None:
        self.cache: dict[str, Any] = {}


class RebuiltRepo(BaseRepository[Rebuilt]):
    pass


def _next_rev(_current: object) -> str:
    return uuid.uuid4().hex


class Rev(IntegerPKMixin, _Base):
    """A version column under another attribute key, from a generator of the application."""

    __tablename__ = "r6_revs"
    name: Mapped[str] = mapped_column(String(20))
    rev_col = mapped_column("rev_col", String(32), nullable=False)
    __mapper_args__: ClassVar[dict[str, Any]] = {
        "version_id_col": rev_col,
        "version_id_generator": _next_rev,
    }


class Bounds(IntegerPKMixin, _Base):
    __tablename__ = "r6_bounds"
    small: Mapped[int | None] = mapped_column(SmallInteger)
    mid: Mapped[int | None] = mapped_column(Integer)
    big: Mapped[int | None] = mapped_column(BigInteger)
    code: Mapped[str | None] = mapped_column(String(5))


class NoteRepo(BaseRepository[Note]):
    pass


class TallyRepo(BaseRepository[Tally]):
    pass


class RevRepo(BaseRepository[Rev]):
    pass


class BoundsRepo(BaseRepository[Bounds]):
    pass


@pytest_asyncio.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A committing session over this module's own tables, dropped afterwards."""
    async with own_tables(engine, _Base.metadata) as session:
        yield session


async def _core_rows(session: AsyncSession) -> list[tuple[Any, ...]]:
    with all_tenants():
        stmt = select(
            NOTES.c.label_col, NOTES.c.score_col, NOTES.c.body_col, NOTES.c.tenant_id
        ).order_by(NOTES.c.label_col)
        return [tuple(row) for row in await session.execute(stmt)]


# -- the table's own INSERT -----------------------------------------------------------------


async def test_create_under_renamed_columns_returns_a_loaded_object(db):
    repo = flavours.make_repo(NoteRepo, db)
    with tenant("A"), actor("alice"):
        note = await repo.create({"label": "n1"})
        assert (note.label, note.score, note.body, note.tenant_id) == ("n1", 7, "b", "A")
        assert note.created_by == "alice"
        assert note.created_at == note.updated_at
        assert note.deleted_at is None
        assert await repo.get_by_id(note.id) is note
    await db.commit()
    assert await _core_rows(db) == [("n1", 7, "b", "A")]


async def test_bulk_insert_under_renamed_columns_stamps_the_tenant(db):
    repo = flavours.make_repo(NoteRepo, db)
    with tenant("A"), actor("bob"):
        assert await repo.bulk_insert([{"label": "a", "score": 1}, {"label": "b"}]) == 2
    await db.commit()
    assert await _core_rows(db) == [("a", 1, "b", "A"), ("b", 7, "b", "A")]
    with all_tenants():
        by = await db.scalars(select(NOTES.c.created_by))
        assert set(by) == {"bob"}


@pytest.mark.parametrize("op", ["create", "bulk_insert"])
async def test_another_tenants_id_is_refused_inside_a_tenant(db, op):
    repo = flavours.make_repo(NoteRepo, db)
    rows = [{"label": "x"}, {"label": "y", "tenant_id": "B"}]
    write = repo.create(rows[1]) if op == "create" else repo.bulk_insert(rows)
    with tenant("A"), pytest.raises(TenantMismatchError):
        await write
    await db.commit()
    assert await _core_rows(db) == []


async def test_create_of_a_column_property_model(db):
    repo = flavours.make_repo(TallyRepo, db)
    tally = await repo.create({"n": 4})
    assert tally.n == 4
    assert await tally.awaitable_attrs.n_plus == 5
    assert await repo.bulk_insert([{"n": 1}, {"n": 2}]) == 2
    assert sorted(t.n_plus for t in await repo.list()) == [2, 3, 5]


async def test_create_from_a_mapping_runs_the_reconstructor(db):
    """The object is built as a loaded one (no constructor): the ORM's load hooks run."""
    repo = flavours.make_repo(RebuiltRepo, db)
    row = await repo.create({"name": "r"})
    assert row.cache == {}
    row.cache["x"] = 1
    updated = await repo.update(row.id, name="s")
    assert updated is row
    assert updated.name == "s"


@pytest.mark.parametrize("key", ["tag", "shout"])
async def test_create_through_a_synonym_or_a_hybrid_setter(db, key):
    """Keys that name no column but set one are written as the constructor would."""
    repo = flavours.make_repo(NoteRepo, db)
    with tenant("A"):
        try:
            note = await repo.create({key: "syn"})
        except RepositoryError:
            return  # refused as an unknown key: acceptable, nothing written
        assert note.label == "syn"
    await db.commit()
    assert [row[0] for row in await _core_rows(db)] == ["syn"]


async def test_create_of_an_instance_under_renamed_columns(db):
    repo = flavours.make_repo(NoteRepo, db)
    with tenant("A"):
        note = await repo.create(Note(label="inst", body="x"))
        assert (note.label, note.score, note.body, note.tenant_id) == ("inst", 7, "x", "A")
        assert sa_inspect(note).persistent
    await db.commit()
    assert await _core_rows(db) == [("inst", 7, "x", "A")]


async def test_no_tenant_no_create(db):
    repo = flavours.make_repo(NoteRepo, db)
    with pytest.raises(TenantRequiredError):
        await repo.create({"label": "x"})
    with pytest.raises(TenantRequiredError):
        await repo.bulk_insert([{"label": "x"}, {"label": "y"}])
    with all_tenants(), pytest.raises(TenantRequiredError):
        await repo.create({"label": "x"})
    await db.commit()
    assert await _core_rows(db) == []


async def test_a_generated_version_under_another_key(db):
    repo = flavours.make_repo(RevRepo, db)
    rev = await repo.create({"name": "r"})
    first = rev.rev_col
    assert isinstance(first, str)
    assert len(first) == 32
    assert await repo.bulk_insert([{"name": "s"}, {"name": "t"}]) == 2
    assert None not in set(await db.scalars(select(Rev.__table__.c.rev_col)))
    updated = await repo.update(rev, name="r2")
    assert updated.rev_col != first


async def test_a_row_inserted_under_a_stale_key_replaces_the_stale_object(db):
    repo = flavours.make_repo(NoteRepo, db)
    with tenant("A"):
        old = await repo.create({"label": "old", "score": 1})
        key = old.id
        await db.execute(delete(NOTES).where(NOTES.c.id == key))  # behind the session
        new = await repo.create({"id": key, "label": "new", "score": 2})
        assert (new.label, new.score) == ("new", 2)
        assert await db.get(Note, key) is new
        assert (await repo.get_by_id(key)).label == "new"


async def _create_then_fail(repo: Any, made: list[Note]) -> None:
    async with repo.atomic(flush=True):
        made.append(await repo.create({"label": "ghost"}))
        raise LookupError


async def test_create_rolled_back_by_atomic_leaves_no_object(db):
    repo = flavours.make_repo(NoteRepo, db)
    with tenant("A"):
        made: list[Note] = []
        with pytest.raises(LookupError):
            await _create_then_fail(repo, made)
        note = made[0]
        assert note not in db
        assert await db.get(Note, note.id) is None
        nested = await db.begin_nested()
        other = await repo.create({"label": "ghost2"})
        await nested.rollback()
        assert other not in db
        assert await repo.get_one_or_none(label="ghost2") is None


# -- values checked at a glance -----------------------------------------------------------------

EDGES = [
    ("small", 2**15 - 1, True),
    ("small", -(2**15), True),
    ("small", 2**15, False),
    ("small", -(2**15) - 1, False),
    ("mid", 2**31 - 1, True),
    ("mid", 2**31, False),
    ("big", -(2**63), True),
    ("big", 2**63, False),
    ("code", "abcde", True),
    ("code", "abcdef", False),
    ("code", "ab\x00", False),
    ("code", "\udcff", False),
]


@pytest.mark.parametrize(("column", "value", "ok"), EDGES)
async def test_values_at_the_edge(db, column, value, ok):
    repo = flavours.make_repo(BoundsRepo, db)
    if ok:
        row = await repo.create({column: value})
        await db.commit()
        assert await db.scalar(select(getattr(Bounds, column)).where(Bounds.id == row.id)) == value
        return
    with pytest.raises(InvalidValueError):
        await repo.create({column: value})
    with pytest.raises(InvalidValueError):
        await repo.bulk_insert([{column: value}])


# -- the first write of a transaction (PostgreSQL: no SAVEPOINT, a driver rollback) ---------


async def test_a_failed_first_write_keeps_the_callers_rows_and_objects(db):
    repo = flavours.make_repo(NoteRepo, db)
    with tenant("A"):
        await repo.create({"label": "taken"})
        await db.commit()
        with pytest.raises(UniqueViolationError):
            await repo.create({"label": "taken"})
        kept = await repo.create({"label": "kept"})
        with pytest.raises(UniqueViolationError):
            await repo.bulk_insert([{"label": "taken"}])
        await db.commit()
        assert kept in db
    assert [row[0] for row in await _core_rows(db)] == ["kept", "taken"]


async def test_a_failed_first_write_on_the_primary_of_a_routed_session(engine, db):
    """The transaction read from a replica first: the primary's first write fails alone."""
    with tenant("A"):
        await db.execute(insert(NOTES).values(label_col="taken", tenant_id="A"))
    await db.commit()
    async with replica_sessionmaker(engine, [engine])() as session:
        repo = flavours.make_repo(NoteRepo, session)
        with tenant("A"):
            assert await repo.count() == 1  # on a replica's connection
            with pytest.raises(UniqueViolationError):
                await repo.create({"label": "taken"})
            kept = await repo.create({"label": "kept"})
            assert await repo.get_by_id(kept.id) is kept
            await session.commit()
    assert [row[0] for row in await _core_rows(db)] == ["kept", "taken"]


@pytest.mark.parametrize("first", [True, False], ids=["first", "after-a-read"])
async def test_a_cancelled_write_leaves_the_session_usable(engine, db, requires, first):
    """A write cancelled while it waits for a lock: the caller's transaction goes on."""
    requires("concurrent_writers")
    holder = AsyncSession(engine)
    repo = flavours.make_repo(NoteRepo, db)
    try:
        with tenant("A"):
            await holder.execute(insert(NOTES).values(label_col="held", tenant_id="A"))
            if not first:
                await repo.count()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(repo.create({"label": "held"}), 0.5)
            await holder.rollback()
            await db.rollback()  # a cancelled statement invalidates the connection
            await repo.create({"label": "after"})
            await db.commit()
    finally:
        await holder.close()
    assert [row[0] for row in await _core_rows(db)] == ["after"]
