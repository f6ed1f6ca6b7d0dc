"""Repository writes on every backend: CRUD, bulk paths, upsert, soft delete, errors."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest

from flavours import make_repo
from models import Document, Post, User, Widget
from recorder import StatementLog
from repositories import (
    DocumentRepository,
    PostRepository,
    ProductRepository,
    TicketRepository,
    UserRepository,
    WidgetRepository,
)
from sqla_repo import (
    CheckViolationError,
    ConcurrencyError,
    ConfigurationError,
    ConflictError,
    ForeignKeyViolationError,
    NotFoundError,
    RepositoryError,
    TenantMismatchError,
    UniqueViolationError,
    actor,
    all_tenants,
    tenant,
)
from sqla_repo.repository import BaseRepository

pytestmark = pytest.mark.usefixtures("flavour")


async def test_create_from_mapping_and_instance(session):
    """create() takes a mapping or an instance and returns it with key and defaults."""
    repo = make_repo(UserRepository, session)
    with actor("alice"):
        a = await repo.create({"email": "a@x.org", "name": "A"})
        b = await repo.create(User(email="b@x.org"))
    assert isinstance(a.id, int)
    assert a.created_at is not None
    assert b.created_by == "alice"


async def test_create_unknown_key_is_an_error(session):
    """A mapping naming a missing attribute raises RepositoryError listing it."""
    with pytest.raises(RepositoryError) as info:
        await make_repo(UserRepository, session).create({"email": "a@x.org", "emial": "typo"})
    assert info.value.detail["fields"] == ["emial"]


async def test_create_conflict_keeps_transaction_usable(session):
    """A unique violation raises UniqueViolationError and the transaction goes on."""
    repo = make_repo(UserRepository, session)
    first = await repo.create({"email": "a@x.org"})
    with pytest.raises(UniqueViolationError) as info:
        await repo.create({"email": "a@x.org"})
    assert "a@x.org" not in str(info.value)
    assert "INSERT" not in str(info.value)
    assert info.value.__cause__ is not None
    assert await repo.count() == 1
    assert (await repo.create({"email": "b@x.org"})).id != first.id


async def test_foreign_key_and_check_violations(session):
    """FK and CHECK violations raise their ConflictError subclasses."""
    posts = make_repo(PostRepository, session)
    with pytest.raises(ForeignKeyViolationError):
        await posts.create({"title": "t", "author_id": 10**9})
    with pytest.raises(CheckViolationError):
        await make_repo(ProductRepository, session).create({"sku": "s", "price": Decimal(-1)})
    assert await make_repo(ProductRepository, session).count() == 0


async def test_update_instance_and_by_id(session):
    """update() sets attributes on an instance, or runs one UPDATE by key."""
    repo = make_repo(UserRepository, session)
    user = await repo.create({"email": "a@x.org"})
    created = user.updated_at
    await repo.update(user, name="via-object")
    assert user.name == "via-object"
    with actor("bob"):
        same = await repo.update(user.id, {"name": "via-id"}, age=3)
    assert same is user
    assert (user.name, user.age, user.updated_by) == ("via-id", 3, "bob")
    assert user.updated_at > created
    with pytest.raises(NotFoundError):
        await repo.update(10**9, name="x")
    with pytest.raises(RepositoryError):
        await repo.update(user.id, nope=1)


async def test_update_by_id_does_not_load_first(session, backend):
    """update(id, ...) issues one UPDATE … RETURNING (UPDATE then SELECT without RETURNING)."""
    repo = make_repo(UserRepository, session)
    user = await repo.create({"email": "a@x.org"})
    session.expunge_all()
    with StatementLog(session) as log:
        updated = await repo.update(user.id, name="n")
    assert updated.name == "n"
    expected = ["UPDATE"] if "returning" in backend.capabilities else ["UPDATE", "SELECT"]
    assert log.dml == expected


async def test_delete_by_id_is_one_statement(session):
    """delete(id) issues one DELETE without loading the row."""
    repo = make_repo(UserRepository, session)
    user = await repo.create({"email": "a@x.org"})
    with StatementLog(session) as log:
        await repo.delete(user.id)
    assert log.dml == ["DELETE"]
    with pytest.raises(NotFoundError):
        await repo.delete(user.id)
    other = await repo.create({"email": "b@x.org"})
    await repo.delete(other)
    assert await repo.count(include_deleted=True) == 0


async def test_versioned_update_by_id_increments_version(session):
    """update(id) on a versioned model bumps the version; a stale instance then fails."""
    repo = make_repo(TicketRepository, session)
    ticket = await repo.create({"title": "t"})
    await repo.update(ticket.id, state="closed")
    assert ticket.version == 2


async def test_stale_instance_update_raises(sessionmaker):
    """Updating an instance whose version changed underneath raises ConcurrencyError."""
    async with sessionmaker() as s, s.begin():
        ticket = await make_repo(TicketRepository, s).create({"title": "t"})
    async with sessionmaker() as s:
        stale = await make_repo(TicketRepository, s).get_by_id(ticket.id)
        await s.commit()
        async with sessionmaker() as other, other.begin():
            await make_repo(TicketRepository, other).update(ticket.id, state="other")
        with pytest.raises(ConcurrencyError):
            await make_repo(TicketRepository, s).update(stale, state="mine")


async def test_update_where_and_delete_where(session):
    """update_where()/delete_where() touch visible matching rows and return counts."""
    repo = make_repo(UserRepository, session)
    await repo.bulk_create([{"email": f"{i}@x.org", "age": i} for i in range(5)])
    await repo.soft_delete((await repo.get_one(email="4@x.org")).id)
    with actor("eve"):
        assert await repo.update_where(User.age >= 2, values={"name": "old"}) == 2
    assert sorted(u.email for u in await repo.list(name="old")) == ["2@x.org", "3@x.org"]
    assert {u.updated_by for u in await repo.list(name="old")} == {"eve"}
    assert await repo.delete_where(User.age < 2) == 2
    assert await repo.count(include_deleted=True) == 3


async def test_bulk_create_returns_rows_in_input_order(session):
    """bulk_create() returns persistent objects with keys, in input order, in few statements."""
    repo = make_repo(UserRepository, session)
    emails = [f"{i:04d}@x.org" for i in range(250)]
    rows = [{"email": e, "name": e[:4]} for e in reversed(emails)]
    with StatementLog(session) as log:
        created = await repo.bulk_create(rows, batch_size=100)
    assert [u.email for u in created] == list(reversed(emails))
    assert all(isinstance(u.id, int) for u in created)
    assert len({u.id for u in created}) == 250
    assert log.dml.count("INSERT") <= 6
    for user in created:
        assert (await repo.get(user.id)) is user


async def test_bulk_create_uuid_model_and_instances(session):
    """bulk_create() takes transient instances and client-generated keys."""
    repo = make_repo(WidgetRepository, session)
    given = [Widget(name=f"w{i}") for i in range(10)]
    created = await repo.bulk_create(given)
    assert [w.id for w in created] == [w.id for w in given]
    assert all(w.version == 1 for w in created)


async def test_bulk_create_is_atomic(session):
    """A duplicate inside the batch persists nothing and raises UniqueViolationError."""
    repo = make_repo(UserRepository, session)
    await repo.create({"email": "keep@x.org"})
    rows = [{"email": f"{i}@x.org"} for i in range(30)] + [{"email": "5@x.org"}]
    with pytest.raises(UniqueViolationError):
        await repo.bulk_create(rows, batch_size=10)
    assert [u.email for u in await repo.list()] == ["keep@x.org"]


async def test_bulk_update(session):
    """bulk_update() updates by key, skipping soft-deleted rows, and counts distinct rows."""
    repo = make_repo(UserRepository, session)
    users = await repo.bulk_create([{"email": f"{i}@x.org"} for i in range(4)])
    await repo.soft_delete(users[3].id)
    with actor("bulk"):
        count = await repo.bulk_update(
            [{"id": u.id, "name": f"n{i}"} for i, u in enumerate(users)]
            + [{"id": users[0].id, "age": 1}]
        )
    assert count == 3
    assert users[0].name == "n0"
    assert users[0].age == 1
    assert users[0].updated_by == "bulk"
    assert users[3].name == ""


async def test_bulk_update_bumps_version(session):
    """bulk_update() increments the version of versioned rows."""
    repo = make_repo(TicketRepository, session)
    tickets = await repo.bulk_create([{"title": "a"}, {"title": "b"}])
    assert await repo.bulk_update([{"id": t.id, "state": "x"} for t in tickets]) == 2
    assert [t.version for t in tickets] == [2, 2]


async def test_upsert_inserts_then_updates(session):
    """upsert() inserts a new row and updates it on conflict, keeping created_* intact."""
    repo = make_repo(UserRepository, session)
    with actor("first"):
        row = await repo.upsert({"email": "a@x.org", "name": "one"}, conflict_on=["email"])
    first_id, created_at = row.id, row.created_at
    with actor("second"):
        row = await repo.upsert({"email": "a@x.org", "name": "two"}, conflict_on=["email"])
    assert (row.id, row.name, row.created_by, row.updated_by) == (
        first_id,
        "two",
        "first",
        "second",
    )
    assert row.created_at == created_at
    assert row.updated_at >= created_at
    assert await repo.count() == 1


async def test_bulk_upsert_half_conflicting(session):
    """bulk_upsert() returns rows in input order, new and updated alike."""
    repo = make_repo(ProductRepository, session)
    await repo.bulk_create([{"sku": f"s{i}", "price": Decimal(1)} for i in range(0, 10, 2)])
    rows = [{"sku": f"s{i}", "price": Decimal(i)} for i in range(10)]
    result = await repo.bulk_upsert(rows, conflict_on=["sku"])
    assert [(p.sku, p.price) for p in result] == [(f"s{i}", Decimal(i)) for i in range(10)]
    assert await repo.count() == 10


async def test_bulk_upsert_is_atomic_and_checks_input(session):
    """bulk_upsert() refuses duplicate keys in its input and rolls back on violation."""
    repo = make_repo(ProductRepository, session)
    with pytest.raises(RepositoryError):
        await repo.bulk_upsert([{"sku": "a"}, {"sku": "a"}], conflict_on=["sku"])
    with pytest.raises(CheckViolationError):
        await repo.bulk_upsert(
            [{"sku": "ok", "price": Decimal(1)}, {"sku": "bad", "price": Decimal(-1)}],
            conflict_on=["sku"],
        )
    assert await repo.count() == 0


async def test_upsert_versioned_row(session):
    """An upsert that updates a versioned row increments its version."""
    repo = make_repo(DocumentRepository, session)
    with tenant("acme"):
        doc = await repo.upsert({"slug": "a", "body": "1"}, conflict_on=["tenant_id", "slug"])
        assert doc.version == 1
        doc = await repo.upsert({"slug": "a", "body": "2"}, conflict_on=["tenant_id", "slug"])
    assert (doc.body, doc.version) == ("2", 2)


async def test_upsert_never_touches_other_tenant(session):
    """An upsert colliding with another tenant's row is refused, not applied."""
    repo = make_repo(DocumentRepository, session)
    with tenant("acme"):
        await repo.create({"slug": "s", "body": "acme"})
    with tenant("globex"):
        other = await repo.upsert(
            {"slug": "s", "body": "globex"}, conflict_on=["tenant_id", "slug"]
        )
        assert other.tenant_id == "globex"
        with pytest.raises(TenantMismatchError):
            await repo.upsert({"slug": "s", "tenant_id": "acme"}, conflict_on=["tenant_id", "slug"])
    with all_tenants():
        bodies = sorted((d.tenant_id, d.body) for d in await repo.list())
    assert bodies == [("acme", "acme"), ("globex", "globex")]


async def test_upsert_skips_soft_deleted_conflict(session):
    """An upsert colliding with a soft-deleted row raises ConflictError and changes nothing."""
    repo = make_repo(UserRepository, session)
    user = await repo.create({"email": "a@x.org", "name": "old"})
    await repo.soft_delete(user.id)
    with pytest.raises(ConflictError):
        await repo.upsert({"email": "a@x.org", "name": "new"}, conflict_on=["email"])
    assert (await repo.get(user.id, include_deleted=True)).name == "old"


async def test_soft_delete_and_restore(session):
    """soft_delete() hides a row; restore() brings it back; both by id or instance."""
    repo = make_repo(UserRepository, session)
    user = await repo.create({"email": "a@x.org"})
    deleted = await repo.soft_delete(user.id)
    assert deleted.is_deleted
    assert await repo.get(user.id) is None
    with pytest.raises(NotFoundError):
        await repo.soft_delete(user.id)
    restored = await repo.restore(user.id)
    assert not restored.is_deleted
    assert (await repo.get(user.id)) is restored
    await repo.soft_delete(restored)
    assert (await repo.restore(restored)).deleted_at is None
    assert (await repo.restore(user.id)).deleted_at is None
    with pytest.raises(NotFoundError):
        await repo.restore(10**9)


async def test_soft_delete_requires_mixin(session):
    """soft_delete() on a model without SoftDeleteMixin raises RepositoryError."""
    with pytest.raises(RepositoryError, match="SoftDeleteMixin"):
        await make_repo(ProductRepository, session).soft_delete(1)


async def test_get_or_create(session):
    """get_or_create() creates once, then returns the existing row."""
    repo = make_repo(UserRepository, session)
    first, created = await repo.get_or_create({"name": "A"}, email="a@x.org")
    again, created_again = await repo.get_or_create({"name": "B"}, email="a@x.org")
    assert (created, created_again) == (True, False)
    assert again is first
    assert again.name == "A"


async def test_get_or_create_race(sessionmaker, requires):
    """Concurrent get_or_create() callers end with one row, each holding it."""
    requires("concurrent_writers")

    async def attempt() -> uuid.UUID | int:
        async with sessionmaker() as s, s.begin():
            user, _ = await make_repo(UserRepository, s).get_or_create(email="race@x.org")
            return user.id

    ids = await asyncio.gather(*(attempt() for _ in range(20)))
    assert len(set(ids)) == 1
    async with sessionmaker() as s:
        assert await make_repo(UserRepository, s).count(email="race@x.org") == 1


async def test_tenant_scoped_writes(session):
    """Writes by id never reach another tenant's rows: they behave like missing rows."""
    repo = make_repo(DocumentRepository, session)
    with tenant("acme"):
        doc = await repo.create({"slug": "a"})
    with tenant("globex"):
        assert await repo.get(doc.id) is None
        with pytest.raises(NotFoundError):
            await repo.update(doc.id, body="hacked")
        with pytest.raises(NotFoundError):
            await repo.delete(doc.id)
        assert await repo.update_where(Document.slug == "a", values={"body": "x"}) == 0
        assert await repo.bulk_update([{"id": doc.id, "body": "x"}]) == 0
        with pytest.raises(TenantMismatchError):
            await repo.create({"slug": "b", "tenant_id": "acme"})
        with pytest.raises(TenantMismatchError):
            await repo.bulk_create([{"slug": "b", "tenant_id": "acme"}])
    with tenant("acme"):
        assert (await repo.get_by_id(doc.id)).body == ""


async def test_model_inference():
    """The model is inferred through a generic intermediate base or set explicitly."""
    assert UserRepository.model is User
    assert WidgetRepository.model is Widget
    with pytest.raises(ConfigurationError):

        class NoModel(BaseRepository):  # type: ignore[type-arg]
            pass

    with pytest.raises(ConfigurationError):

        class NotMapped(BaseRepository[int]):  # type: ignore[type-var]
            pass


async def test_statement_conflicts_keep_transaction_usable(session):
    """Conflicts from single statements (update by id, delete by id) spare the transaction."""
    repo = make_repo(UserRepository, session)
    a = await repo.create({"email": "a@x.org"})
    await repo.create({"email": "b@x.org"})
    with pytest.raises(UniqueViolationError):
        await repo.update(a.id, email="b@x.org")
    session.add(Post(title="t", author_id=a.id))
    await session.flush()
    with pytest.raises(ForeignKeyViolationError):
        await repo.delete(a.id)
    assert await repo.count() == 2
    assert (await repo.update(a.id, name="still-works")).name == "still-works"
