"""Every ORM statement form on tenant and soft-delete models is scoped or refused.

Each test runs inside tenant ``A`` with rows of tenants ``A`` and ``B`` (and soft-deleted
rows of both) and compares a dump of the whole table, taken inside ``all_tenants()``,
before and after: the rows of ``B`` and the soft-deleted rows never change, and a
refused statement writes nothing at all.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import rule, run_state_machine_as_test
from sqlalchemy import (
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from machines import SessionMachine
from models import (
    Client,
    Document,
    Employee,
    Engineer,
    Manager,
    Note,
    Person,
    Product,
)
from sqla_repo import (
    RepositoryError,
    TenantMismatchError,
    TenantRequiredError,
    all_tenants,
    tenant,
)

DELETED_AT = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
TABLES = {
    "notes": Note.__table__,
    "people": Person.__table__,
    "clients": Client.__table__,
    "employees": Employee.__table__,
}


async def seed(session: AsyncSession) -> dict[str, Any]:
    """Two tenants' rows, one soft-deleted row of each kind per tenant; return their ids."""
    ids: dict[str, Any] = {}
    with all_tenants():
        for name in ("A", "B"):
            doc = Document(slug=f"doc-{name}", tenant_id=name)
            session.add(doc)
            await session.flush()
            rows = {
                "note": Note(document_id=doc.id, text=f"n-{name}", tenant_id=name),
                "note_deleted": Note(
                    document_id=doc.id, text=f"d-{name}", tenant_id=name, deleted_at=DELETED_AT
                ),
                "person": Person(name=f"p-{name}", tenant_id=name),
                "client": Client(name="shared", company=f"c-{name}", tenant_id=name),
                "client_deleted": Client(
                    name="shared", company=f"x-{name}", tenant_id=name, deleted_at=DELETED_AT
                ),
                "manager": Manager(email=f"m-{name}@x", tenant_id=name),
                "engineer": Engineer(email=f"e-{name}@x", tenant_id=name),
            }
            session.add_all(rows.values())
            await session.flush()
            for key, obj in rows.items():
                ids[f"{key}_{name}"] = obj.id
            ids[f"doc_{name}"] = doc.id
    session.expunge_all()
    return ids


async def dump(session: AsyncSession) -> dict[str, dict[Any, tuple[Any, ...]]]:
    """Every row of the scoped tables, read through Core inside ``all_tenants()``."""
    out: dict[str, dict[Any, tuple[Any, ...]]] = {}
    with all_tenants():
        for name, table in TABLES.items():
            rows = (await session.execute(select(table))).all()
            out[name] = {row.id: tuple(row) for row in rows}
    return out


def tenant_of(before: dict[str, dict[Any, tuple[Any, ...]]], table: str, ident: Any) -> Any:
    """The tenant of a row (rows of ``clients`` take it from ``people``)."""
    source = "people" if table == "clients" else table
    row = before[source].get(ident)
    return None if row is None else row[TABLES[source].c.keys().index("tenant_id")]


def deleted(before: dict[str, dict[Any, tuple[Any, ...]]], table: str, ident: Any) -> bool:
    source = "people" if table == "clients" else table
    row = before[source].get(ident)
    columns = TABLES[source].c.keys()
    return (
        row is not None and "deleted_at" in columns and row[columns.index("deleted_at")] is not None
    )


def protected(
    snapshot: dict[str, dict[Any, tuple[Any, ...]]], owner: str, *, soft: bool = True
) -> dict[str, dict[Any, tuple[Any, ...]]]:
    """The rows *owner*'s statements must leave alone: other tenants' and soft-deleted ones."""
    return {
        table: {
            ident: row
            for ident, row in rows.items()
            if tenant_of(snapshot, table, ident) != owner
            or (soft and deleted(snapshot, table, ident))
        }
        for table, rows in snapshot.items()
    }


def assert_untouched(
    before: dict[str, dict[Any, tuple[Any, ...]]],
    after: dict[str, dict[Any, tuple[Any, ...]]],
    owner: str,
    *,
    soft: bool = True,
) -> None:
    expected = protected(before, owner, soft=soft)
    for table, rows in expected.items():
        assert {k: after[table].get(k) for k in rows} == rows, table


async def refused(session: AsyncSession, error: type[Exception], statement: Any, *params: Any):
    """Run *statement*, expect *error*, and check that nothing at all was written."""
    before = await dump(session)
    with pytest.raises(error) as info:
        await session.execute(statement, *params)
    assert await dump(session) == before
    return info.value


# -- joined-table inheritance --------------------------------------------------------------


async def test_joined_subclass_update_is_correlated(session):
    ids = await seed(session)
    before = await dump(session)
    with tenant("A"):
        result = await session.execute(update(Client).values(company="changed"))
    assert result.rowcount == 1
    after = await dump(session)
    assert_untouched(before, after, "A")
    assert after["clients"][ids["client_A"]][-1] == "changed"


async def test_joined_subclass_update_by_base_column_is_correlated(session):
    """A WHERE on the base table's column gets the join condition too, in every scope."""
    ids = await seed(session)
    before = await dump(session)
    with tenant("A"):
        stmt = update(Client).where(Client.name == "shared").values(company="changed")
        assert (await session.execute(stmt)).rowcount == 1
    assert_untouched(before, await dump(session), "A")
    with all_tenants():
        stmt = stmt.execution_options(include_deleted=True)
        assert (await session.execute(stmt)).rowcount == 4
    after = await dump(session)
    assert {after["clients"][ids[k]][-1] for k in ids if k.startswith("client")} == {"changed"}
    assert after["people"] == before["people"]


async def test_joined_subclass_delete(session, backend):
    """Correlated on PostgreSQL and MariaDB; refused on SQLite, which has no DELETE … USING."""
    ids = await seed(session)
    before = await dump(session)
    with tenant("A"):
        stmt = delete(Client).where(Client.company.like("%"))
        if backend.family == "sqlite":
            error = await refused(session, RepositoryError, stmt)
            assert error.detail["reason"] == "unscoped_statement"
            assert "DELETE" in str(error)
            return
        assert (await session.execute(stmt)).rowcount == 1
    after = await dump(session)
    assert_untouched(before, after, "A")
    assert ids["client_A"] not in after["clients"]


async def test_joined_subclass_update_setting_a_base_column(session, backend):
    """MariaDB sets it through a correlated multi-table UPDATE; the others refuse it."""
    ids = await seed(session)
    before = await dump(session)
    stmt = update(Client).values(deleted_at=DELETED_AT)
    with tenant("A"):
        if backend.family != "mariadb":
            error = await refused(session, RepositoryError, stmt)
            assert error.detail["reason"] == "unscoped_statement"
            return
        await session.execute(stmt)
    after = await dump(session)
    assert_untouched(before, after, "A")
    assert after["people"][ids["client_A"]] != before["people"][ids["client_A"]]


async def test_single_table_subclass_statements_are_scoped(session):
    ids = await seed(session)
    before = await dump(session)
    with tenant("A"):
        assert (await session.execute(update(Manager).values(name="boss"))).rowcount == 1
        assert (await session.execute(delete(Engineer))).rowcount == 1
    after = await dump(session)
    assert_untouched(before, after, "A")
    assert ids["engineer_A"] not in after["employees"]


# -- ORM bulk UPDATE by primary key ----------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "key", "column"),
    [(Note, "note", "text"), (Client, "client", "company"), (Manager, "manager", "name")],
)
async def test_bulk_update_by_primary_key_is_scoped(session, model, key, column):
    """Another tenant's row and a soft-deleted row are skipped, exactly like a missing id."""
    ids = await seed(session)
    before = await dump(session)
    targets = [ids[f"{key}_A"], ids[f"{key}_B"], 10**9]
    if f"{key}_deleted_A" in ids:
        targets.append(ids[f"{key}_deleted_A"])
    with tenant("A"):
        await session.execute(update(model), [{"id": i, column: "bulk"} for i in targets])
    after = await dump(session)
    assert_untouched(before, after, "A")
    table = TABLES["employees" if key == "manager" else f"{key}s" if key != "client" else "clients"]
    index = table.c.keys().index(column)
    assert after[table.name][ids[f"{key}_A"]][index] == "bulk"


async def test_bulk_update_by_primary_key_with_include_deleted(session):
    ids = await seed(session)
    before = await dump(session)
    with tenant("A"):
        stmt = update(Note).execution_options(include_deleted=True)
        rows = [{"id": ids[k], "text": "bulk"} for k in ("note_A", "note_deleted_A", "note_B")]
        await session.execute(stmt, rows)
    after = await dump(session)
    assert_untouched(before, after, "A", soft=False)
    assert after["notes"][ids["note_deleted_A"]] != before["notes"][ids["note_deleted_A"]]


async def test_bulk_update_naming_another_tenant_is_refused(session):
    ids = await seed(session)
    with tenant("A"):
        await refused(
            session,
            TenantMismatchError,
            update(Note),
            [{"id": ids["note_A"], "text": "x"}, {"id": ids["note_A"], "tenant_id": "B"}],
        )


# -- the tenant an UPDATE writes -------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: update(Note).values(tenant_id="B"),
        lambda: update(Note).values({Note.tenant_id: "B"}),
        lambda: update(Note).values({Note.__table__.c.tenant_id: "B"}),
        lambda: update(Note).ordered_values((Note.tenant_id, "B"), (Note.text, "x")),
        lambda: update(Note).values(tenant_id=Note.text),
        lambda: update(Note).values(tenant_id=func.lower("B")),
        lambda: update(Note).values(tenant_id=None),
        lambda: update(Client).values(tenant_id="B"),
        lambda: update(Manager).values(tenant_id="B"),
        lambda: Note.__table__.update().values(tenant_id="B"),
    ],
    ids=[
        "keyword",
        "attribute",
        "column",
        "ordered",
        "column-expression",
        "function",
        "null",
        "joined-subclass",
        "single-table-subclass",
        "core",
    ],
)
async def test_update_setting_another_tenant_is_refused(session, build):
    await seed(session)
    with tenant("A"):
        await refused(session, TenantMismatchError, build())


async def test_update_tenant_from_parameters(session):
    """A bound parameter for tenant_id is checked against the values executed."""
    await seed(session)
    stmt = update(Note).where(Note.text == "n-A").values(tenant_id=bindparam("t"))
    with tenant("A"):
        await refused(session, TenantMismatchError, stmt, {"t": "B"})
        assert (await session.execute(stmt, {"t": "A"})).rowcount == 1


async def test_update_setting_the_current_tenant_or_deleted_at_is_allowed(session):
    ids = await seed(session)
    before = await dump(session)
    with tenant("A"):
        assert (await session.execute(update(Note).values(tenant_id="A"))).rowcount == 1
        stmt = update(Note).where(Note.id == ids["note_A"]).values(deleted_at=DELETED_AT)
        assert (await session.execute(stmt)).rowcount == 1
    assert_untouched(before, await dump(session), "A")


async def test_all_tenants_may_move_rows(session):
    ids = await seed(session)
    with all_tenants():
        stmt = update(Note).where(Note.id == ids["note_A"]).values(tenant_id="B")
        assert (await session.execute(stmt)).rowcount == 1


# -- INSERT --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda d: (insert(Note).values(document_id=d, text="x", tenant_id="B"),),
        lambda d: (
            insert(Note).values(
                [
                    {"document_id": d, "text": "x"},
                    {"document_id": d, "text": "y", "tenant_id": "B"},
                ]
            ),
        ),
        lambda d: (insert(Note), [{"document_id": d, "text": "x", "tenant_id": "B"}]),
        lambda d: (insert(Note).values(document_id=d, text="x", tenant_id=Note.text),),
        lambda d: (Note.__table__.insert().values(document_id=d, text="x", tenant_id="B"),),
        lambda _d: (insert(Client), [{"name": "c", "kind": "client", "tenant_id": "B"}]),
    ],
    ids=["values", "multi-values", "executemany", "expression", "core", "joined-subclass"],
)
async def test_insert_naming_another_tenant_is_refused(session, build):
    ids = await seed(session)
    with tenant("A"):
        statement, *params = build(ids["doc_A"])
        await refused(session, TenantMismatchError, statement, *params)


async def test_insert_without_tenant_is_stamped(session):
    ids = await seed(session)
    doc = ids["doc_A"]
    with tenant("A"):
        await session.execute(insert(Note).values(document_id=doc, text="one"))
        await session.execute(insert(Note).values([{"document_id": doc, "text": "two"}]))
        await session.execute(insert(Note), [{"document_id": doc, "text": "three"}])
        await session.execute(
            insert(Note), [{"document_id": doc, "text": "four", "tenant_id": "A"}]
        )
        await session.execute(Note.__table__.insert().values(document_id=doc, text="five"))
        # The ORM leaves a None out of the row, so the column default stamps it.
        await session.execute(
            insert(Note), [{"document_id": doc, "text": "six", "tenant_id": None}]
        )
        await session.execute(insert(Client), [{"name": "c", "kind": "client"}])
    with all_tenants():
        stamped = dict(
            (await session.execute(select(Note.text, Note.tenant_id).where(Note.id > 0))).all()
        )
        clients = (await session.execute(select(Client.tenant_id).where(Client.name == "c"))).all()
    for text in ("one", "two", "three", "four", "five", "six"):
        assert stamped[text] == "A"
    assert clients == [("A",)]


async def test_core_insert_into_a_joined_subclass_table_is_refused(session):
    ids = await seed(session)
    with tenant("A"):
        stmt = Client.__table__.insert().values(id=ids["person_B"], company="x")
        error = await refused(session, RepositoryError, stmt)
    assert error.detail["reason"] == "unscoped_statement"


@pytest.mark.parametrize(
    "build",
    [
        # Copies another tenant's rows and soft-deleted rows: the inner SELECT is not scoped.
        lambda: insert(Note).from_select(
            ["document_id", "text", "tenant_id"],
            select(Note.document_id, Note.text, literal("B")),
        ),
        lambda: insert(Product).from_select(["sku"], select(Note.text)),
        lambda: insert(Note).from_select(
            ["document_id", "text"], select(Document.id, Document.slug)
        ),
    ],
    ids=["tenant-to-tenant", "tenant-to-plain", "into-tenant"],
)
async def test_insert_from_select_is_refused_in_a_tenant(session, build):
    await seed(session)
    with tenant("A"):
        error = await refused(session, RepositoryError, build())
    assert error.detail["reason"] == "unscoped_statement"
    assert "all_tenants" in str(error)


async def test_insert_from_select_inside_all_tenants(session):
    ids = await seed(session)
    stmt = insert(Note).from_select(
        ["document_id", "text", "tenant_id"],
        select(Note.document_id, literal("copy"), Note.tenant_id).where(Note.id == ids["note_B"]),
    )
    with all_tenants():
        await session.execute(stmt)
        copied = (await session.execute(select(Note.tenant_id).where(Note.text == "copy"))).all()
    assert copied == [("B",)]
    with pytest.raises(TenantRequiredError):
        await session.execute(stmt)


async def test_upsert_assigning_another_tenant_is_refused(session, backend):
    ids = await seed(session)
    row = {"id": ids["note_A"], "document_id": ids["doc_A"], "text": "x"}
    if backend.family == "mariadb":
        from sqlalchemy.dialects import mysql  # noqa: PLC0415

        stmt: Any = mysql.insert(Note).values(row).on_duplicate_key_update(tenant_id="B")
    else:
        from sqlalchemy.dialects import postgresql, sqlite  # noqa: PLC0415

        module: Any = postgresql if backend.family == "postgresql" else sqlite
        stmt = (
            module.insert(Note)
            .values(row)
            .on_conflict_do_update(index_elements=["id"], set_={"tenant_id": "B"})
        )
    with tenant("A"):
        await refused(session, TenantMismatchError, stmt)


def _upsert(backend: Any, model: Any, row: dict[str, Any], **assign: Any) -> Any:
    """An upsert on the primary key that assigns *assign* to the existing row."""
    if backend.family == "mariadb":
        from sqlalchemy.dialects import mysql  # noqa: PLC0415

        return mysql.insert(model).values(row).on_duplicate_key_update(**assign)
    from sqlalchemy.dialects import postgresql, sqlite  # noqa: PLC0415

    module: Any = postgresql if backend.family == "postgresql" else sqlite
    return (
        module.insert(model).values(row).on_conflict_do_update(index_elements=["id"], set_=assign)
    )


async def test_unguarded_upsert_conflict_branch_is_refused(session, backend):
    """The conflict branch finds its row by key, not by criteria: it must be guarded."""
    ids = await seed(session)
    row = {"id": ids["note_B"], "document_id": ids["doc_A"], "text": "x"}
    with tenant("A"):
        stmt = _upsert(backend, Note, row, text="taken")
        error = await refused(session, RepositoryError, stmt)
        assert error.detail["reason"] == "unscoped_statement"
        stmt = _upsert(backend, Note.__table__, row, text="taken")
        await refused(session, RepositoryError, stmt)
    with all_tenants():
        # Soft delete alone: the branch could revive or change a soft-deleted row.
        deleted_row = {**row, "id": ids["note_deleted_A"], "tenant_id": "A"}
        await refused(session, RepositoryError, _upsert(backend, Note, deleted_row, text="x"))


async def test_guarded_upsert_conflict_branch_runs(session, backend):
    """With the guard, another tenant's row is left as it is; the tenant's own row changes."""
    ids = await seed(session)
    before = await dump(session)
    table = Note.__table__
    guard = (table.c.tenant_id == "A") & table.c.deleted_at.is_(None)
    for key in ("note_A", "note_B"):
        row = {"id": ids[key], "document_id": ids["doc_A"], "text": "x"}
        if backend.family == "mariadb":
            from sqlalchemy import case  # noqa: PLC0415
            from sqlalchemy.dialects import mysql  # noqa: PLC0415

            stmt: Any = mysql.insert(Note).values(row)
            stmt = stmt.on_duplicate_key_update(
                text=case((guard, stmt.inserted.text), else_=table.c.text)
            )
        else:
            from sqlalchemy.dialects import postgresql, sqlite  # noqa: PLC0415

            module: Any = postgresql if backend.family == "postgresql" else sqlite
            stmt = module.insert(Note).values(row)
            stmt = stmt.on_conflict_do_update(
                index_elements=["id"], set_={"text": stmt.excluded.text}, where=guard
            )
        with tenant("A"):
            await session.execute(stmt)
    after = await dump(session)
    assert_untouched(before, after, "A")
    assert after["notes"][ids["note_A"]] != before["notes"][ids["note_A"]]


# -- reads: subqueries, EXISTS, UNION, CTE --------------------------------------------------


def _reads(ids: dict[str, Any]) -> dict[str, Any]:
    cte = select(Note.id).cte("visible")
    return {
        "exists": select(select(Note.id).where(Note.id == ids["note_B"]).exists()),
        "exists-deleted": select(exists(select(Note.id).where(Note.id == ids["note_deleted_A"]))),
        "core-exists": select(exists().where(Note.id == ids["note_B"])),
        "correlated": select(Product.id).where(exists().where(Note.id == Product.id)),
        "union": select(Note.id).where(Note.id == ids["note_B"]).union(select(Note.id)),
        "union_all": union_all(select(Client.id), select(Manager.id)),
        "cte": select(cte.c.id),
        "scalar": select(select(func.count(Note.id)).scalar_subquery()),
        "in": select(Product.id).where(Product.id.in_(select(Note.id))),
        "core": select(Note.__table__.c.id),
    }


async def test_reads_without_tenant_are_refused_everywhere(session):
    ids = await seed(session)
    for name, stmt in _reads(ids).items():
        with pytest.raises(TenantRequiredError):
            await session.execute(stmt)
        assert name


async def test_non_tenant_statements_without_tenant_run(session):
    await seed(session)
    assert (await session.execute(select(Product.id))).all() == []
    assert (await session.execute(select(exists().where(Product.id == 1)))).scalar() is False


async def test_reads_in_a_tenant_are_scoped(session):
    ids = await seed(session)
    reads = _reads(ids)
    with tenant("A"):
        assert (await session.execute(reads["exists"])).scalar() is False
        assert (await session.execute(reads["exists-deleted"])).scalar() is False
        assert set((await session.scalars(reads["union"])).all()) == {ids["note_A"]}
        assert set((await session.scalars(reads["union_all"])).all()) == {
            ids["client_A"],
            ids["manager_A"],
        }
        assert (await session.scalars(reads["cte"])).all() == [ids["note_A"]]
        assert (await session.scalar(reads["scalar"])) == 1
        assert (await session.scalars(reads["correlated"])).all() == []
        assert (await session.scalars(reads["in"])).all() == []


async def test_core_statement_over_orm_attributes_is_refused_in_a_tenant(session):
    """A Core top-level statement gets no loader criteria: naming a scoped model is refused."""
    ids = await seed(session)
    statements = [
        select(exists().where(Note.id == ids["note_B"])),
        select(literal(1)).where(exists().where(Note.id == ids["note_B"])),
        exists().where(Note.id == ids["note_B"]).select(),
    ]
    for stmt in statements:
        with tenant("A"):
            error = await refused(session, RepositoryError, stmt)
        assert error.detail["reason"] == "unscoped_statement"
    # Soft delete alone (inside all_tenants()) is enforced the same way; include_deleted lifts it.
    stmt = select(exists().where(Note.id == ids["note_deleted_A"]))
    with all_tenants():
        await refused(session, RepositoryError, stmt)
        lifted = stmt.execution_options(include_deleted=True)
        assert (await session.execute(lifted)).scalar() is True


async def test_core_select_of_a_table_is_not_scoped(session):
    """Selecting a Table object is the documented escape hatch: the tenant sees every row."""
    await seed(session)
    with tenant("A"):
        rows = (await session.execute(select(Note.__table__.c.tenant_id))).scalars().all()
    assert sorted(rows) == ["A", "A", "B", "B"]


async def test_write_without_tenant_touching_a_tenant_table_is_refused(session):
    ids = await seed(session)
    statements = [
        update(Product).where(Product.id.in_(select(Note.id))).values(sku="x"),
        delete(Product).where(exists().where(Note.id == Product.id)),
        Note.__table__.update().values(text="x"),
        Note.__table__.delete(),
        Note.__table__.insert().values(document_id=ids["doc_A"], text="x", tenant_id="A"),
        insert(Product).from_select(["sku"], select(Note.text)),
    ]
    for stmt in statements:
        await refused(session, TenantRequiredError, stmt)


# -- Core statements on tenant tables --------------------------------------------------------


async def test_core_update_and_delete_are_scoped_to_the_tenant(session):
    """Core statements get the tenant criterion; soft delete is an ORM notion and is not."""
    ids = await seed(session)
    before = await dump(session)
    with tenant("A"):
        notes = Note.__table__
        assert (await session.execute(notes.update().values(text="core"))).rowcount == 2
        clients = Client.__table__
        assert (await session.execute(clients.update().values(company="core"))).rowcount == 2
        employees = Employee.__table__
        assert (await session.execute(employees.delete())).rowcount == 2
    after = await dump(session)
    assert_untouched(before, after, "A", soft=False)
    assert after["clients"][ids["client_deleted_A"]][-1] == "core"
    assert not [i for i in after["employees"] if tenant_of(before, "employees", i) == "A"]


async def test_core_delete_of_a_joined_subclass_table_is_scoped(session):
    await seed(session)
    before = await dump(session)
    with tenant("A"):
        assert (await session.execute(Client.__table__.delete())).rowcount == 2
    assert_untouched(before, await dump(session), "A", soft=False)


# -- what stays as it was --------------------------------------------------------------------


async def test_get_relationship_and_refresh_still_work(session):
    ids = await seed(session)
    with tenant("A"):
        note = await session.get(Note, ids["note_A"])
        assert note is not None
        assert await session.get(Note, ids["note_B"]) is None
        await session.refresh(note)
        loaded = await session.scalars(
            select(Note).where(Note.id == note.id).options(selectinload(Note.document))
        )
        assert loaded.one().document.tenant_id == "A"
        client = await session.get(Client, ids["client_A"])
        assert client is not None
        assert client.company == "c-A"
        await session.refresh(client)
        assert await session.get(Client, ids["client_B"]) is None


async def test_non_tenant_join_without_tenant_matches_nothing(session):
    """A tenant model reached only through a join still contributes no rows, no error."""
    await seed(session)
    session.add(Product(sku="doc-A"))
    await session.flush()
    stmt = select(Product.sku).join(Document, Document.slug == Product.sku)
    assert (await session.scalars(stmt)).all() == []


# -- random interleavings --------------------------------------------------------------------

MODELS = {
    "Note": (Note, "text"),
    "Person": (Person, "name"),
    "Client": (Client, "company"),
    "Employee": (Employee, "name"),
    "Manager": (Manager, "name"),
    "Engineer": (Engineer, "name"),
}
TENANTS = ("A", "B")
who = st.sampled_from(TENANTS)
models = st.sampled_from(sorted(MODELS))
picks = st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=4)


class StatementMachine(SessionMachine):
    """Statement forms run as either tenant; the other tenant's rows never change."""

    def __init__(self) -> None:
        super().__init__()
        self.ids = self.run(seed(self.session))
        self.pool = sorted(
            {(k.split("_")[0], v) for k, v in self.ids.items() if not k.startswith("doc")}
        )
        self.counter = 0

    def ident(self, index: int) -> Any:
        return self.pool[index % len(self.pool)][1]

    def step(
        self,
        owner: str,
        statement: Any,
        *params: Any,
        error: type[Exception] | None = None,
        soft: bool = True,
    ) -> Any:
        """Run *statement* as *owner*; check the rows it must not touch, or the refusal."""
        before = self.run(dump(self.session))
        with tenant(owner):
            if error is not None:
                with pytest.raises(error):
                    self.run(self.session.execute(statement, *params))
            else:
                result = self.run(self.session.execute(statement, *params))
        after = self.run(dump(self.session))
        if error is not None:
            assert after == before
            return None
        assert_untouched(before, after, owner, soft=soft)
        return result

    def value(self) -> str:
        self.counter += 1
        return f"v{self.counter}"

    @rule(owner=who, name=models)
    def update_all(self, owner: str, name: str) -> None:
        model, column = MODELS[name]
        self.step(owner, update(model).values({column: self.value()}))

    @rule(owner=who, name=models, chosen=picks)
    def update_by_ids(self, owner: str, name: str, chosen: list[int]) -> None:
        model, column = MODELS[name]
        where = model.id.in_([self.ident(i) for i in chosen])
        self.step(owner, update(model).where(where).values({column: self.value()}))

    @rule(owner=who)
    def update_by_base_column(self, owner: str) -> None:
        self.step(owner, update(Client).where(Client.name == "shared").values(company="b"))

    @rule(owner=who, name=models, chosen=picks)
    def bulk_update_by_primary_key(self, owner: str, name: str, chosen: list[int]) -> None:
        model, column = MODELS[name]
        rows = [{"id": i, column: self.value()} for i in {self.ident(c) for c in chosen}]
        self.step(owner, update(model), rows)

    @rule(owner=who, name=models, chosen=picks)
    def delete_by_ids(self, owner: str, name: str, chosen: list[int]) -> None:
        model, _ = MODELS[name]
        stmt = delete(model).where(model.id.in_([self.ident(i) for i in chosen]))
        joined = model is Client and self.backend.family == "sqlite"
        self.step(owner, stmt, error=RepositoryError if joined else None)

    @rule(owner=who, name=models, chosen=picks)
    def soft_delete_by_ids(self, owner: str, name: str, chosen: list[int]) -> None:
        model, _ = MODELS[name]
        where = model.id.in_([self.ident(i) for i in chosen])
        # Only MariaDB can set a base table's column in an UPDATE of a joined subclass.
        refused = model is Client and self.backend.family != "mariadb"
        stmt = update(model).where(where).values(deleted_at=DELETED_AT)
        self.step(owner, stmt, error=RepositoryError if refused else None)

    @rule(owner=who, name=models, chosen=picks)
    def move_to_the_other_tenant(self, owner: str, name: str, chosen: list[int]) -> None:
        model, column = MODELS[name]
        other = TENANTS[1 - TENANTS.index(owner)]
        self.step(owner, update(model).values(tenant_id=other), error=TenantMismatchError)
        rows = [{"id": self.ident(i), "tenant_id": other} for i in chosen]
        self.step(owner, update(model), rows, error=TenantMismatchError)
        del column

    @rule(owner=who)
    def insert_notes(self, owner: str) -> None:
        other = TENANTS[1 - TENANTS.index(owner)]
        doc = self.ids[f"doc_{owner}"]
        rows = [{"document_id": doc, "text": self.value()}]
        self.step(owner, insert(Note), rows)
        foreign = [{**rows[0], "tenant_id": other}]
        self.step(owner, insert(Note), foreign, error=TenantMismatchError)
        self.step(owner, insert(Note).values(foreign), error=TenantMismatchError)
        copy = insert(Note).from_select(
            ["document_id", "text", "tenant_id"],
            select(Note.document_id, Note.text, literal(owner)),
        )
        self.step(owner, copy, error=RepositoryError)

    @rule(owner=who, name=models)
    def core_update(self, owner: str, name: str) -> None:
        model, column = MODELS[name]
        table = model.__table__
        if column not in table.c:
            table = Person.__table__
        self.step(owner, table.update().values({column: self.value()}), soft=False)

    @rule(owner=who, chosen=picks)
    def reads(self, owner: str, chosen: list[int]) -> None:
        idents = [self.ident(i) for i in chosen]
        seen = self.step(owner, select(Note.id).where(Note.id.in_(idents)).union(select(Note.id)))
        cte = select(Person.id).where(Person.id.in_(idents)).cte()
        people = self.step(owner, select(cte.c.id))
        with all_tenants():
            note_owner = dict(self.run(self.session.execute(select(Note.id, Note.tenant_id))).all())
            person_owner = dict(
                self.run(self.session.execute(select(Person.id, Person.tenant_id))).all()
            )
        assert {note_owner[i] for i in seen.scalars().all()} <= {owner}
        assert {person_owner[i] for i in people.scalars().all()} <= {owner}


def test_statement_forms_never_cross_tenants(backend, engine):
    """Random interleavings of statement forms under two tenants never touch the other's rows."""
    del engine  # requested for its tables only; the machine runs its own event loop
    machine = type("Machine", (StatementMachine,), {"backend": backend})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=15,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
