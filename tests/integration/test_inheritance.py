"""The repository contract on inheritance hierarchies, on every backend.

Joined-table: ``Person`` (table ``people``: tenant, soft delete, timestamps) and its
subclass ``Client`` (table ``clients``); ``Record``/``Invoice`` with UUID keys. Single-
table: ``Employee`` with ``Manager`` and ``Engineer``. Every write is checked against a
dump of all tables taken inside ``all_tenants()``: rows of another tenant, of a sibling
class, soft-deleted rows and rows not targeted stay exactly as they were, and no base row
is left without its subclass row.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import ForeignKey, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from models import Client, Code, Employee, Engineer, Invoice, Manager, Person, Record
from recorder import StatementLog
from sqla_repo import (
    ConflictError,
    NotFoundError,
    RepositoryError,
    TenantRequiredError,
    actor,
    all_tenants,
    tenant,
)
from sqla_repo.mixins import (
    AuditColumnsMixin,
    IntegerPKMixin,
    SoftDeleteMixin,
    TenantMixin,
    TimestampMixin,
    VersionMixin,
)
from sqla_repo.repository import BaseRepository


class PersonRepo(BaseRepository[Person]):
    filterable_fields = ("name",)
    sortable_fields = ("name", "id")


class ClientRepo(BaseRepository[Client]):
    filterable_fields = ("name", "company")
    sortable_fields = ("name", "company", "id")


class InvoiceRepo(BaseRepository[Invoice]):
    pass


class EmployeeRepo(BaseRepository[Employee]):
    pass


class ManagerRepo(BaseRepository[Manager]):
    filterable_fields = ("name", "email")
    sortable_fields = ("name", "id")


class EngineerRepo(BaseRepository[Engineer]):
    pass


class CodeRepo(BaseRepository[Code]):
    pass


# -- a joined hierarchy with version and audit columns, on its own metadata -------------


class AuditBase(DeclarativeBase):
    pass


class Party(
    IntegerPKMixin,
    TenantMixin,
    SoftDeleteMixin,
    TimestampMixin,
    AuditColumnsMixin,
    VersionMixin,
    AuditBase,
):
    __tablename__ = "inh_parties"

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {
            "polymorphic_on": "kind",
            "polymorphic_identity": "party",
            "version_id_col": cls.__table__.c.version,
        }

    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(50))


class Org(Party):
    __tablename__ = "inh_orgs"
    __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "org"}

    id: Mapped[int] = mapped_column(
        ForeignKey("inh_parties.id", ondelete="CASCADE"), primary_key=True
    )
    sector: Mapped[str] = mapped_column(String(50), default="")


class OrgRepo(BaseRepository[Org]):
    pass


# -- helpers --------------------------------------------------------------------------


async def dump(session: AsyncSession, *tables: Any) -> dict[str, set[tuple[Any, ...]]]:
    """Every row of *tables*, all tenants and deleted rows included."""
    out: dict[str, set[tuple[Any, ...]]] = {}
    with all_tenants():
        for table in tables:
            rows = (await session.execute(select(table))).all()
            out[table.name] = {tuple(row) for row in rows}
    return out


PEOPLE = (Person.__table__, Client.__table__)
EMPLOYEES = (Employee.__table__,)


def without(rows: dict[str, set[tuple[Any, ...]]], *ids: Any) -> dict[str, set[tuple[Any, ...]]]:
    """*rows* minus the rows whose first column (the key) is in *ids*."""
    return {name: {r for r in table if r[0] not in ids} for name, table in rows.items()}


async def no_orphans(session: AsyncSession) -> None:
    """Every client row has its base row and every base row of kind client its client row."""
    with all_tenants():
        people = {
            row.id: row.kind for row in (await session.execute(select(Person.__table__))).all()
        }
        clients = {row.id for row in (await session.execute(select(Client.__table__))).all()}
    assert clients <= set(people)
    assert {i for i, kind in people.items() if kind == "client"} == clients


async def seed_people(session: AsyncSession) -> dict[str, Any]:
    """Tenant A: clients a1, a2, a soft-deleted client, a plain person; tenant B: one of each."""
    ids: dict[str, Any] = {}
    with tenant("B"):
        ids["b"] = (await ClientRepo(session).create({"name": "b", "company": "kb"})).id
        ids["bp"] = (await PersonRepo(session).create({"name": "bp"})).id
    with tenant("A"):
        repo = ClientRepo(session)
        ids["a1"] = (await repo.create({"name": "a1", "company": "k1"})).id
        ids["a2"] = (await repo.create({"name": "a2", "company": "k2"})).id
        ids["gone"] = (await repo.create({"name": "gone", "company": "kg"})).id
        await repo.soft_delete(ids["gone"])
        ids["ap"] = (await PersonRepo(session).create({"name": "ap"})).id
    session.expunge_all()
    return ids


async def seed_staff(session: AsyncSession) -> dict[str, Any]:
    """Tenant A: managers m1, m2, engineer e1, soft-deleted manager; tenant B: a manager."""
    ids: dict[str, Any] = {}
    with tenant("B"):
        ids["mb"] = (await ManagerRepo(session).create({"email": "mb@x.org", "reports": 1})).id
    with tenant("A"):
        managers = ManagerRepo(session)
        ids["m1"] = (await managers.create({"email": "m1@x.org", "name": "m1"})).id
        ids["m2"] = (await managers.create({"email": "m2@x.org", "name": "m2"})).id
        ids["mgone"] = (await managers.create({"email": "mg@x.org"})).id
        await managers.soft_delete(ids["mgone"])
        engineer = await EngineerRepo(session).create({"email": "e1@x.org", "language": "py"})
        ids["e1"] = engineer.id
    session.expunge_all()
    return ids


# -- joined-table inheritance: writes by key ------------------------------------------


async def test_update_by_key_spans_tables(session):
    """update(key) writes each table's own columns, bumps updated_at, touches nothing else."""
    ids = await seed_people(session)
    before = await dump(session, *PEOPLE)
    with tenant("A"):
        old = (await ClientRepo(session).get_by_id(ids["a1"])).updated_at
        updated = await ClientRepo(session).update(ids["a1"], name="n1", company="c1")
        assert (updated.name, updated.company) == ("n1", "c1")
        assert updated.updated_at > old
        stamp = updated.updated_at
        only_company = await ClientRepo(session).update(ids["a1"], company="c2")
        assert only_company.company == "c2"
        assert only_company.updated_at > stamp  # kept on the base table
    session.expunge_all()
    with tenant("A"):
        again = await ClientRepo(session).get_by_id(ids["a1"])
    assert (again.name, again.company) == ("n1", "c2")
    assert without(await dump(session, *PEOPLE), ids["a1"]) == without(before, ids["a1"])


@pytest.mark.parametrize("target", ["b", "gone", "missing", "ap"])
@pytest.mark.parametrize("operation", ["update", "soft_delete", "delete"])
async def test_invisible_keys_are_not_found(session, operation, target):
    """A foreign, a soft-deleted, a missing key and a plain Person all raise NotFoundError."""
    ids = await seed_people(session)
    ident = ids.get(target, 10**9)
    before = await dump(session, *PEOPLE)
    repo = ClientRepo(session)
    call = (
        repo.update(ident, name="x", company="x")
        if operation == "update"
        else getattr(repo, operation)(ident)
    )
    with tenant("A"), pytest.raises(NotFoundError):
        await call
    assert await dump(session, *PEOPLE) == before


async def test_restore_by_key(session):
    """restore() clears deleted_at of the tenant's row; a live row comes back unchanged."""
    ids = await seed_people(session)
    with tenant("B"):
        await ClientRepo(session).soft_delete(ids["b"])
    before = await dump(session, *PEOPLE)
    repo = ClientRepo(session)
    with tenant("A"):
        with pytest.raises(NotFoundError):
            await repo.restore(ids["b"])
        assert await dump(session, *PEOPLE) == before
        restored = await repo.restore(ids["gone"])
        assert restored.deleted_at is None
        assert (await repo.get(ids["gone"])) is restored
        live = await repo.get_by_id(ids["a1"])
        stamp = live.updated_at
        assert (await repo.restore(ids["a1"])).updated_at == stamp
    after = await dump(session, *PEOPLE)
    assert without(after, ids["gone"]) == without(before, ids["gone"])


async def test_soft_delete_by_key_hides_the_row(session):
    """soft_delete(key) stamps deleted_at on the base table; reads no longer see the row."""
    ids = await seed_people(session)
    repo = ClientRepo(session)
    with tenant("A"):
        deleted = await repo.soft_delete(ids["a1"])
        assert deleted.deleted_at is not None
        assert await repo.get(ids["a1"]) is None
        assert (await repo.get(ids["a1"], include_deleted=True)) is deleted
        assert {c.id for c in await repo.list()} == {ids["a2"]}
        with pytest.raises(NotFoundError):
            await repo.soft_delete(ids["a1"])
    await no_orphans(session)


async def test_update_where_is_scoped(session):
    """update_where() changes only the tenant's visible rows, on every table, and counts them."""
    ids = await seed_people(session)
    before = await dump(session, *PEOPLE)
    repo = ClientRepo(session)
    with tenant("A"):
        assert await repo.update_where(Client.id == ids["b"], values={"company": "x"}) == 0
        assert await repo.update_where(Client.id == ids["gone"], values={"name": "x"}) == 0
        assert await dump(session, *PEOPLE) == before
        count = await repo.update_where(
            Client.company.in_(["k1", "k2", "kb", "kg"]), values={"name": "same", "company": "c"}
        )
        assert count == 2
        assert sorted((c.name, c.company) for c in await repo.list()) == [("same", "c")] * 2
        # Criteria on the base table, SQL expressions reading the table being written.
        assert await repo.update_where(Client.name == "same", values={"name": Client.name + "!"})
        assert {c.name for c in await repo.list()} == {"same!"}
    changed = (ids["a1"], ids["a2"])
    assert without(await dump(session, *PEOPLE), *changed) == without(before, *changed)


async def test_update_where_refuses_a_value_from_another_table(session):
    """A value computed from a column of another table of the hierarchy is refused."""
    ids = await seed_people(session)
    before = await dump(session, *PEOPLE)
    with tenant("A"), pytest.raises(RepositoryError) as info:
        await ClientRepo(session).update_where(
            Client.id == ids["a1"], values={"company": Client.name}
        )
    assert info.value.detail["fields"] == ["company"]
    assert await dump(session, *PEOPLE) == before


async def test_bulk_update_skips_invisible_rows(session):
    """bulk_update() updates the tenant's visible rows on both tables; others are skipped."""
    ids = await seed_people(session)
    before = await dump(session, *PEOPLE)
    rows = [
        {"id": ids["a1"], "company": "z1"},
        {"id": str(ids["a2"]), "name": "z2"},
        {"id": ids["b"], "name": "hack", "company": "hack"},
        {"id": ids["gone"], "company": "hack"},
        {"id": ids["ap"], "name": "not a client"},
        {"id": 10**9, "name": "missing"},
    ]
    with tenant("A"):
        old = {c.id: c.updated_at for c in await ClientRepo(session).list()}
        assert await ClientRepo(session).bulk_update(rows) == 2
        session.expunge_all()
        now = {c.id: c for c in await ClientRepo(session).list()}
    assert (now[ids["a1"]].company, now[ids["a1"]].name) == ("z1", "a1")
    assert (now[ids["a2"]].company, now[ids["a2"]].name) == ("k2", "z2")
    assert all(now[i].updated_at > old[i] for i in old)
    changed = (ids["a1"], ids["a2"])
    assert without(await dump(session, *PEOPLE), *changed) == without(before, *changed)


async def test_bulk_update_refreshes_loaded_objects(session):
    """Objects already in the session show the new values after bulk_update/update_where."""
    ids = await seed_people(session)
    with tenant("A"):
        repo = ClientRepo(session)
        loaded = await repo.get_by_id(ids["a1"])
        await repo.bulk_update([{"id": ids["a1"], "company": "new", "name": "new"}])
        assert (loaded.company, loaded.name) == ("new", "new")
        await repo.update_where(Client.id == ids["a1"], values={"company": "newer"})
        assert loaded.company == "newer"


@pytest.mark.parametrize("how", ["key", "instance", "where", "base_repository"])
async def test_delete_removes_the_whole_row(session, how):
    """Every delete path removes the base row and the subclass row, nothing else."""
    ids = await seed_people(session)
    before = await dump(session, *PEOPLE)
    with tenant("A"):
        if how == "key":
            await ClientRepo(session).delete(ids["a1"])
        elif how == "instance":
            await ClientRepo(session).delete(await ClientRepo(session).get_by_id(ids["a1"]))
        elif how == "where":
            assert await ClientRepo(session).delete_where(Client.company.in_(["k1", "kb"])) == 1
        else:
            await PersonRepo(session).delete(ids["a1"])
        assert await ClientRepo(session).get(ids["a1"]) is None
        assert await PersonRepo(session).get(ids["a1"]) is None
    after = await dump(session, *PEOPLE)
    assert after == without(before, ids["a1"])
    await no_orphans(session)


async def test_delete_where_counts_and_honours_include_deleted(session):
    """delete_where() counts the rows deleted; soft-deleted rows go only with include_deleted."""
    ids = await seed_people(session)
    before = await dump(session, *PEOPLE)
    with tenant("A"):
        repo = ClientRepo(session)
        assert await repo.delete_where(Client.name.in_(["gone", "b"])) == 0
        assert await dump(session, *PEOPLE) == before
        assert await repo.delete_where(Client.name.in_(["gone", "b"]), include_deleted=True) == 1
        assert await PersonRepo(session).delete_where() == 3  # a1, a2 and the plain person
        assert await PersonRepo(session).count(include_deleted=True) == 0
    after = await dump(session, *PEOPLE)
    assert after == without(before, ids["a1"], ids["a2"], ids["gone"], ids["ap"])
    await no_orphans(session)


async def test_writes_need_a_tenant(session):
    """With no tenant set every path raises TenantRequiredError and changes nothing."""
    ids = await seed_people(session)
    before = await dump(session, *PEOPLE)
    repo = ClientRepo(session)
    calls = [
        repo.update(ids["a1"], name="x"),
        repo.soft_delete(ids["a1"]),
        repo.delete(ids["a1"]),
        repo.update_where(Client.id == ids["a1"], values={"name": "x"}),
        repo.bulk_update([{"id": ids["a1"], "name": "x"}]),
        repo.delete_where(Client.id == ids["a1"]),
    ]
    for call in calls:
        with pytest.raises(TenantRequiredError):
            await call
    assert await dump(session, *PEOPLE) == before


async def test_all_tenants_reaches_every_tenant(session):
    """Inside all_tenants() the same paths reach every tenant's rows."""
    ids = await seed_people(session)
    with all_tenants():
        repo = ClientRepo(session)
        assert await repo.update_where(values={"company": "all"}) == 3
        assert (await repo.update(ids["b"], name="bb")).name == "bb"
        await repo.delete(ids["b"])
    with tenant("A"):
        assert {c.company for c in await ClientRepo(session).list()} == {"all"}
    await no_orphans(session)


async def test_statements_per_path(session, backend):
    """update(key) on a joined subclass: one locking SELECT, one UPDATE per table, one SELECT."""
    ids = await seed_people(session)
    with tenant("A"):
        with StatementLog(session) as log:
            await ClientRepo(session).update(ids["a1"], name="n", company="c")
        assert log.dml == ["SELECT", "UPDATE", "UPDATE", "SELECT"]
        with StatementLog(session) as log:
            await ClientRepo(session).delete(ids["a1"])
        assert log.dml == ["SELECT", "DELETE", "DELETE"]
        with StatementLog(session) as log:
            await PersonRepo(session).update(ids["ap"], name="n")
        # Person's own table is one table: the single-statement path.
        expected = ["UPDATE"] if "returning" in backend.capabilities else ["UPDATE", "SELECT"]
        assert log.dml == expected


# -- joined-table inheritance: inserts and upsert -------------------------------------


async def test_inserts_on_a_joined_subclass(session):
    """create, bulk_create and get_or_create write both tables and stamp the tenant."""
    with tenant("A"):
        repo = ClientRepo(session)
        made = await repo.bulk_create(
            [{"name": f"c{i}", "company": f"k{i}"} for i in range(5)] + [Client(name="obj")]
        )
        assert [c.name for c in made] == ["c0", "c1", "c2", "c3", "c4", "obj"]
        assert all(c.tenant_id == "A" and c.kind == "client" for c in made)
        found, created = await repo.get_or_create(name="c1")
        assert (found.id, created) == (made[1].id, False)
        new, created = await repo.get_or_create({"company": "kn"}, name="new")
        assert created
        assert (new.company, new.kind) == ("kn", "client")
    session.expunge_all()
    with tenant("A"):
        assert {c.company for c in await ClientRepo(session).list()} >= {"k0", "k4", "kn"}
    await no_orphans(session)


async def test_upsert_on_a_joined_subclass_is_refused(session):
    """ON CONFLICT covers one table: upsert on a joined subclass raises before writing."""
    ids = await seed_people(session)
    before = await dump(session, *PEOPLE)
    with tenant("A"):
        for call in (
            ClientRepo(session).upsert({"id": ids["a1"], "name": "x"}, conflict_on=["id"]),
            ClientRepo(session).bulk_upsert([{"id": 10**6, "name": "x"}], conflict_on=["id"]),
        ):
            with pytest.raises(RepositoryError) as info:
                await call
            assert info.value.detail["reason"] == "joined_inheritance"
        # The session is still usable.
        assert await ClientRepo(session).count() == 2
    assert await dump(session, *PEOPLE) == before


async def test_polymorphic_base_repository(session):
    """The base class's repository sees subclass rows as their subclass, tenant-scoped."""
    ids = await seed_people(session)
    with tenant("A"):
        repo = PersonRepo(session)
        people = await repo.list(order_by="name")
        assert [(type(p).__name__, p.name) for p in people] == [
            ("Client", "a1"),
            ("Client", "a2"),
            ("Person", "ap"),
        ]
        assert await repo.get(ids["b"]) is None
        assert await repo.count() == 3
        renamed = await repo.update(ids["a1"], name="r")
        assert isinstance(renamed, Client)
        assert renamed.name == "r"
        assert (
            await repo.bulk_update([{"id": ids["a2"], "name": "r"}, {"id": ids["b"], "name": "r"}])
            == 1
        )
        upserted = await repo.upsert({"id": ids["ap"], "name": "up"}, conflict_on=["id"])
        assert upserted.name == "up"
        with pytest.raises(ConflictError):
            await repo.upsert({"id": ids["b"], "name": "hack"}, conflict_on=["id"])
    with tenant("B"):
        assert (await PersonRepo(session).get_by_id(ids["b"])).name == "b"


# -- joined-table inheritance: reads --------------------------------------------------


async def test_reads_on_a_joined_subclass(session):
    """Every read treats a foreign row as missing and hides soft-deleted rows."""
    ids = await seed_people(session)
    with tenant("A"):
        repo = ClientRepo(session)
        for key in (ids["b"], ids["gone"], ids["ap"], 10**9):
            assert await repo.get(key) is None
            with pytest.raises(NotFoundError):
                await repo.get_by_id(key)
        assert (await repo.get(ids["gone"], include_deleted=True)).name == "gone"
        assert await repo.get(ids["b"], include_deleted=True) is None
        names = ["a1", "a2"]
        assert [c.name for c in await repo.list(order_by="name")] == names
        assert await repo.count() == 2
        assert await repo.count(include_deleted=True) == 3
        assert await repo.exists(Client.company == "k1")
        assert not await repo.exists(Client.company == "kb")
        assert not await repo.exists(name="gone")
        result = await repo.search(filters={"company__in": ["k1", "k2", "kb"]}, order_by="name")
        assert ([c.name for c in result.items], result.total) == (names, 2)
        assert [c.name async for c in repo.stream(order_by="name")] == names
        first = await repo.paginate(order_by="name", limit=1)
        assert [c.name for c in first.items] == ["a1"]
        second = await repo.paginate(order_by="name", limit=1, after=first.next_cursor)
        assert [c.name for c in second.items] == ["a2"]
        assert (await repo.get_one(company="k2")).name == "a2"
        assert await repo.get_one_or_none(company="kb") is None


# -- joined-table inheritance: UUID keys, no soft delete ------------------------------


async def test_uuid_joined_hierarchy(session):
    """Record/Invoice: the same paths with client-side UUID keys and no soft delete."""
    records = (Record.__table__, Invoice.__table__)
    with tenant("B"):
        foreign = await InvoiceRepo(session).create({"amount": 9})
    with tenant("A"):
        repo = InvoiceRepo(session)
        made = await repo.bulk_create([{"amount": i} for i in range(3)])
        before = await dump(session, *records)
        with pytest.raises(NotFoundError):
            await repo.update(foreign.id, amount=1)
        with pytest.raises(NotFoundError):
            await repo.delete(foreign.id)
        assert await repo.update_where(Invoice.amount == 9, values={"amount": 0}) == 0
        assert await dump(session, *records) == before
        assert (await repo.update(str(made[0].id), amount=10)).amount == 10
        assert (
            await repo.bulk_update(
                [{"id": made[1].id, "amount": 11}, {"id": foreign.id, "amount": 1}]
            )
            == 1
        )
        await repo.delete(made[2].id)
        assert sorted(i.amount for i in await repo.list()) == [10, 11]
    with all_tenants():
        remaining = {row.id for row in (await session.execute(select(Record.__table__))).all()}
    assert remaining == {foreign.id, made[0].id, made[1].id}


# -- joined-table inheritance with version and audit columns --------------------------


@pytest.fixture
async def org_tables(engine):
    async with engine.begin() as conn:
        await conn.run_sync(AuditBase.metadata.drop_all)
        await conn.run_sync(AuditBase.metadata.create_all)
    yield
    async with engine.begin() as conn:
        await conn.run_sync(AuditBase.metadata.drop_all)


async def test_version_and_audit_columns_are_maintained(org_tables, session):
    """version, updated_at and updated_by live on the base table and move on every path."""
    with tenant("A"):
        repo = OrgRepo(session)
        with actor("alice"):
            org = await repo.create({"name": "o", "sector": "s"})
        key = org.id
        assert (org.version, org.updated_by) == (1, "alice")
        with actor("bob"):
            org = await repo.update(key, sector="t")  # a subclass column only
        assert (org.version, org.updated_by, org.sector) == (2, "bob", "t")
        with actor("carol"):
            assert await repo.update_where(Org.id == key, values={"sector": "u"}) == 1
        assert (org.version, org.updated_by, org.sector) == (3, "carol", "u")
        with actor("dave"):
            assert await repo.bulk_update([{"id": key, "sector": "v"}]) == 1
        assert (org.version, org.updated_by, org.sector) == (4, "dave", "v")
        with actor("erin"):
            deleted = await repo.soft_delete(key)
        assert (deleted.version, deleted.updated_by) == (5, "erin")
        assert deleted.deleted_at is not None
        restored = await repo.restore(key)
        assert (restored.version, restored.deleted_at) == (6, None)
        assert isinstance(restored.updated_at, dt.datetime)


# -- single-table inheritance ---------------------------------------------------------


@pytest.mark.parametrize("target", ["e1", "mb", "mgone"])
async def test_sibling_and_foreign_rows_are_invisible_to_writes(session, target):
    """A Manager repository never changes an Engineer, another tenant's or a deleted row."""
    ids = await seed_staff(session)
    ident = ids[target]
    before = await dump(session, *EMPLOYEES)
    repo = ManagerRepo(session)
    with tenant("A"):
        for call in (
            repo.update(ident, name="x", reports=9),
            repo.soft_delete(ident),
            repo.delete(ident),
        ):
            with pytest.raises(NotFoundError):
                await call
        assert await repo.bulk_update([{"id": ident, "name": "x", "reports": 9}]) == 0
        assert await repo.update_where(Employee.id == ident, values={"name": "x"}) == 0
        assert await repo.delete_where(Employee.id == ident) == 0
        assert await repo.get(ident) is None
        if target != "mgone":
            with pytest.raises(NotFoundError):
                await repo.restore(ident)
    assert await dump(session, *EMPLOYEES) == before


async def test_sti_subclass_writes_touch_only_their_class(session):
    """Broad criteria through a Manager repository reach only the tenant's live managers."""
    ids = await seed_staff(session)
    before = await dump(session, *EMPLOYEES)
    with tenant("A"):
        repo = ManagerRepo(session)
        assert await repo.update_where(values={"name": "all"}) == 2
        rows = [{"id": ids[k], "reports": 7} for k in ("m1", "m2", "e1", "mb", "mgone")]
        assert await repo.bulk_update(rows) == 2
        assert sorted((m.name, m.reports) for m in await repo.list()) == [("all", 7)] * 2
        engineer = await EngineerRepo(session).get_by_id(ids["e1"])
        assert (engineer.name, engineer.language) == ("", "py")
    changed = (ids["m1"], ids["m2"])
    assert without(await dump(session, *EMPLOYEES), *changed) == without(before, *changed)
    with tenant("A"):
        assert await ManagerRepo(session).delete_where() == 2
        assert await EmployeeRepo(session).count(include_deleted=True) == 2  # e1 and mgone


async def test_sti_upsert_conflicting_with_a_sibling_is_a_conflict(session):
    """An upsert hitting an Engineer's unique key raises ConflictError and changes nothing."""
    ids = await seed_staff(session)
    before = await dump(session, *EMPLOYEES)
    repo = ManagerRepo(session)
    conflict_on = ["tenant_id", "email"]
    with tenant("A"):
        with pytest.raises(ConflictError):
            await repo.upsert(
                {"email": "e1@x.org", "name": "x", "reports": 3}, conflict_on=conflict_on
            )
        with pytest.raises(ConflictError):
            await repo.bulk_upsert(
                [{"email": "m1@x.org", "name": "ok"}, {"email": "e1@x.org", "name": "x"}],
                conflict_on=conflict_on,
            )
        with pytest.raises(ConflictError):
            await repo.get_or_create(email="e1@x.org")
        assert await dump(session, *EMPLOYEES) == before
        own = await repo.upsert({"email": "m1@x.org", "reports": 4}, conflict_on=conflict_on)
        assert (own.id, own.reports, own.kind) == (ids["m1"], 4, "manager")
        new = await repo.upsert({"email": "m3@x.org", "reports": 1}, conflict_on=conflict_on)
        assert (new.kind, new.tenant_id) == ("manager", "A")
        base = await EmployeeRepo(session).upsert(
            {"email": "e1@x.org", "name": "via base"}, conflict_on=conflict_on
        )
        assert isinstance(base, Engineer)
        assert base.name == "via base"


async def test_sti_inserts_set_the_discriminator(session):
    """create, bulk_create and get_or_create on a subclass store its polymorphic identity."""
    with tenant("A"):
        made = await ManagerRepo(session).bulk_create(
            [{"email": "a@x.org"}, Manager(email="b@x.org", reports=2)]
        )
        one = await EngineerRepo(session).create({"email": "c@x.org"})
        got, created = await EngineerRepo(session).get_or_create(email="d@x.org")
        assert created
    with all_tenants():
        kinds = dict((await session.execute(select(Employee.email, Employee.kind))).all())
    assert kinds == {
        "a@x.org": "manager",
        "b@x.org": "manager",
        "c@x.org": "engineer",
        "d@x.org": "engineer",
    }
    assert [m.kind for m in made] == ["manager", "manager"]
    assert (one.kind, got.kind) == ("engineer", "engineer")


async def test_sti_reads(session):
    """Reads through a subclass repository see only that class; the base sees every class."""
    ids = await seed_staff(session)
    with tenant("A"):
        managers = ManagerRepo(session)
        assert await managers.get(ids["e1"]) is None
        assert await managers.get(ids["mb"]) is None
        assert await managers.count() == 2
        assert await managers.count(include_deleted=True) == 3
        assert not await managers.exists(email="e1@x.org")
        assert [m.name for m in await managers.list(order_by="name")] == ["m1", "m2"]
        page = await managers.search(filters={"email__contains": "@"}, order_by="name")
        assert page.total == 2
        cursor_page = await managers.paginate(order_by="name", limit=5)
        assert [m.name for m in cursor_page.items] == ["m1", "m2"]
        assert [m.id async for m in managers.stream(order_by="id")] == [ids["m1"], ids["m2"]]
        staff = await EmployeeRepo(session).list(order_by=Employee.id)
        assert [type(e).__name__ for e in staff] == ["Manager", "Manager", "Engineer"]


# -- a property: a bulk update through any repository never leaks -----------------------


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    targets=st.lists(st.sampled_from(["a1", "a2", "gone", "ap", "b", "bp", "missing"]), max_size=6),
    staff=st.lists(st.sampled_from(["m1", "m2", "e1", "mb", "mgone", "missing"]), max_size=6),
)
async def test_bulk_update_changes_exactly_the_visible_targets(session, targets, staff):
    """bulk_update() changes exactly the visible rows of the class asked for, and counts them."""
    async with session.begin_nested() as savepoint:
        ids = {**await seed_people(session), **await seed_staff(session), "missing": 10**9}
        visible = {"a1", "a2"}
        before = await dump(session, *PEOPLE, *EMPLOYEES)
        with tenant("A"):
            count = await ClientRepo(session).bulk_update(
                [{"id": ids[t], "name": "p"} for t in targets]
            )
            staff_count = await ManagerRepo(session).bulk_update(
                [{"id": ids[t], "name": "p"} for t in staff]
            )
        changed = {ids[t] for t in targets if t in visible}
        changed_staff = {ids[t] for t in staff if t in {"m1", "m2"}}
        assert count == len(changed)
        assert staff_count == len(changed_staff)
        after = await dump(session, *PEOPLE, *EMPLOYEES)
        people_after = {k: v for k, v in after.items() if k != "employees"}
        people_before = {k: v for k, v in before.items() if k != "employees"}
        assert without(people_after, *changed) == without(people_before, *changed)
        staff_after = {"employees": after["employees"]}
        staff_before = {"employees": before["employees"]}
        assert without(staff_after, *changed_staff) == without(staff_before, *changed_staff)
        await no_orphans(session)
        await savepoint.rollback()


@pytest.mark.parametrize("tenant_id", ["A", "o'k\\n%s"])
async def test_multi_row_upsert_guards_with_odd_tenant_ids(session, tenant_id):
    """Several rows at once: the guard's values are quoted right on MySQL/MariaDB too."""
    with tenant("B"):
        foreign = await CodeRepo(session).create({"code": "taken"})
    with tenant(tenant_id):
        repo = ManagerRepo(session)
        await repo.create({"email": "m1@x.org", "name": "old"})
        await EngineerRepo(session).create({"email": "e1@x.org"})
        rows = await repo.bulk_upsert(
            [{"email": "m1@x.org", "name": "new"}, {"email": "m2@x.org", "name": "n2"}],
            conflict_on=["tenant_id", "email"],
        )
        assert [(m.name, m.tenant_id) for m in rows] == [("new", tenant_id), ("n2", tenant_id)]
        with pytest.raises(ConflictError):
            await repo.bulk_upsert(
                [{"email": "m3@x.org"}, {"email": "e1@x.org", "name": "x"}],
                conflict_on=["tenant_id", "email"],
            )
        with pytest.raises(ConflictError):
            await CodeRepo(session).bulk_upsert(
                [{"code": "mine"}, {"code": "taken"}], conflict_on=["code"]
            )
    with all_tenants():
        assert (await session.get(Code, foreign.id)).tenant_id == "B"
        assert (await session.get(Engineer, rows[0].id)) is None


async def test_instance_paths_and_include_deleted(session):
    """update/soft_delete/restore of an instance, and bulk_update(include_deleted=True)."""
    ids = await seed_people(session)
    with tenant("A"):
        repo = ClientRepo(session)
        obj = await repo.get_by_id(ids["a1"])
        assert (await repo.update(obj, name="i", company="j")).company == "j"
        assert (await repo.soft_delete(obj)).deleted_at is not None
        assert (await repo.restore(obj)).deleted_at is None
        rows = [{"id": ids["gone"], "company": "back"}]
        assert await repo.bulk_update(rows) == 0
        assert await repo.bulk_update(rows, include_deleted=True) == 1
        assert (await repo.get_by_id(ids["gone"], include_deleted=True)).company == "back"
        assert await repo.update_where(Client.id == ids["gone"], values={"name": "g"}) == 0
        touched = await repo.update_where(
            Client.id == ids["gone"], values={"name": "g"}, include_deleted=True
        )
        assert touched == 1
    session.expunge_all()
    with tenant("A"):
        again = await ClientRepo(session).get_by_id(ids["a1"])
    assert (again.name, again.company, again.deleted_at) == ("i", "j", None)


async def test_update_racing_a_soft_delete_finds_nothing(sessionmaker, requires):
    """The locking read waits for a concurrent soft delete, then sees the row gone."""
    requires("concurrent_writers")
    with tenant("A"):
        async with sessionmaker() as setup, setup.begin():
            key = (await ClientRepo(setup).create({"name": "r", "company": "before"})).id
        async with sessionmaker() as first, sessionmaker() as second:
            await first.begin()
            await ClientRepo(first).soft_delete(key)  # holds the row locks
            late = asyncio.create_task(_update_company(second, key))
            await asyncio.sleep(0.3)
            assert not late.done()  # waiting on the lock
            await first.commit()
            with pytest.raises(NotFoundError):
                await late
            await second.rollback()
        async with sessionmaker() as check:
            row = await ClientRepo(check).get_by_id(key, include_deleted=True)
    assert (row.company, row.deleted_at is not None) == ("before", True)


async def _update_company(session: AsyncSession, key: int) -> Client:
    async with session.begin():
        return await ClientRepo(session).update(key, company="late")
