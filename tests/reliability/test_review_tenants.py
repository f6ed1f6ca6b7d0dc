"""An adversarial review of tenant isolation: attacks from inside tenant ``A`` on ``B``.

Each test seeds rows of tenants ``A`` and ``B``, runs one attack inside ``tenant("A")``
(or with no tenant set) and checks, through a dump taken inside ``all_tenants()``, that
``B``'s rows were neither read, changed nor deleted. Attacks the library does not stop yet
are strict ``xfail`` tests: they fail today and start passing when the hole is closed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    bindparam,
    case,
    delete,
    func,
    insert,
    lambda_stmt,
    literal,
    select,
    update,
)
from sqlalchemy.exc import CompileError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import (
    aliased,
    joinedload,
    make_transient_to_detached,
    selectin_polymorphic,
    selectinload,
)
from sqlalchemy.orm import with_polymorphic as polymorphic

import backends
from models import (
    Client,
    Document,
    Employee,
    Folder,
    Manager,
    Note,
    Person,
    Product,
    Shortcut,
)
from sqla_repo import (
    RepositoryError,
    TenantMismatchError,
    TenantRequiredError,
    all_tenants,
    tenant,
)
from sqla_repo.repository import BaseRepository

NOTES = Note.__table__
DOCUMENTS = Document.__table__
DELETED_AT = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


async def seed(session: AsyncSession) -> dict[str, Any]:
    """One row of each kind per tenant; return their ids by ``<kind>_<tenant>``."""
    ids: dict[str, Any] = {}
    with all_tenants():
        for name in ("A", "B"):
            doc = Document(slug=f"doc-{name}", tenant_id=name)
            folder = Folder(name=f"f-{name}", tenant_id=name)
            session.add_all([doc, folder])
            await session.flush()
            rows = {
                "note": Note(document_id=doc.id, text=f"n-{name}", tenant_id=name),
                "client": Client(name=f"p-{name}", company=f"c-{name}", tenant_id=name),
                "manager": Manager(email=f"m-{name}@x", tenant_id=name),
                "shortcut": Shortcut(folder_id=folder.id),
            }
            session.add_all(rows.values())
            await session.flush()
            for key, obj in rows.items():
                ids[f"{key}_{name}"] = obj.id
            ids[f"doc_{name}"] = doc.id
            ids[f"folder_{name}"] = folder.id
    session.expunge_all()
    return ids


async def dump(session: AsyncSession) -> dict[str, dict[Any, tuple[Any, ...]]]:
    """Every row of the tables under attack, read through Core inside ``all_tenants()``."""
    out: dict[str, dict[Any, tuple[Any, ...]]] = {}
    with all_tenants():
        for table in (NOTES, DOCUMENTS, Person.__table__, Client.__table__):
            rows = (await session.execute(select(table))).all()
            out[table.name] = {row.id: tuple(row) for row in rows}
    return out


def assert_no_leak(error: BaseException) -> None:
    """The error names neither tenant ``B`` nor any of its values."""
    text = f"{error} {getattr(error, 'detail', '')}"
    assert re.search(r"\bB\b|n-B|doc-B", text) is None, text


def upsert_module(backend: backends.Backend) -> Any:
    from sqlalchemy.dialects import mysql, postgresql, sqlite  # noqa: PLC0415

    return {"postgresql": postgresql, "sqlite": sqlite, "mariadb": mysql}[backend.family]


async def attempt(session: AsyncSession, statement: Any, *params: Any) -> BaseException | None:
    """Run *statement* inside tenant ``A``; return the typed refusal, if any."""
    with tenant("A"):
        try:
            await session.execute(statement, *params)
        except RepositoryError as error:
            return error
    return None


# -- upsert guards that look right but are not ---------------------------------------------


def _excluded_guard(backend: backends.Backend, row: dict[str, Any]) -> Any:
    """A conflict branch "guarded" by the proposed row, which is always the tenant's own."""
    module = upsert_module(backend)
    stmt = module.insert(Note).values(row)
    if backend.family == "mariadb":
        proposed = stmt.inserted
        guard = (proposed.tenant_id == "A") & proposed.deleted_at.is_(None)
        return stmt.on_duplicate_key_update(text=case((guard, proposed.text), else_=NOTES.c.text))
    proposed = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["id"],
        set_={"text": proposed.text},
        where=(proposed.tenant_id == "A") & proposed.deleted_at.is_(None),
    )


def _assigned_from_proposed(backend: backends.Backend, row: dict[str, Any]) -> Any:
    """``text = VALUES(text)`` / ``excluded.text``: looks like ``col = col``, is not."""
    module = upsert_module(backend)
    stmt = module.insert(Note).values(row)
    if backend.family == "mariadb":
        return stmt.on_duplicate_key_update(text=stmt.inserted.text)
    return stmt.on_conflict_do_update(index_elements=["id"], set_={"text": stmt.excluded.text})


def _guard_rebound(backend: backends.Backend, row: dict[str, Any]) -> Any:
    """A guard on a named bound value that the execution parameters replace."""
    module = upsert_module(backend)
    stmt = module.insert(Note).values(row)
    guard = (NOTES.c.tenant_id == bindparam("owner", "A")) & NOTES.c.deleted_at.is_(None)
    if backend.family == "mariadb":
        return stmt.on_duplicate_key_update(
            text=case((guard, stmt.inserted.text), else_=NOTES.c.text)
        )
    return stmt.on_conflict_do_update(
        index_elements=["id"], set_={"text": stmt.excluded.text}, where=guard
    )


def _guard_rebound_anonymously(backend: backends.Backend, row: dict[str, Any]) -> Any:
    """A guard on an anonymous value, replaced through its compiled name ``param_1``."""
    module = upsert_module(backend)
    stmt = module.insert(Note).values(row)
    guard = (NOTES.c.tenant_id == literal("A")) & NOTES.c.deleted_at.is_(None)
    if backend.family == "mariadb":
        return stmt.on_duplicate_key_update(
            text=case((guard, stmt.inserted.text), else_=NOTES.c.text)
        )
    return stmt.on_conflict_do_update(
        index_elements=["id"], set_={"text": stmt.excluded.text}, where=guard
    )


@pytest.mark.parametrize(
    ("build", "params"),
    [
        (_excluded_guard, ()),
        (_assigned_from_proposed, ()),
        (_guard_rebound, ({"owner": "B"},)),
        (_guard_rebound_anonymously, ({"param_1": "B", "param_2": "B"},)),
    ],
    ids=["guard-on-proposed-row", "assigned-from-proposed-row", "named-guard", "anonymous-guard"],
)
async def test_upsert_guards_that_do_not_guard_are_refused(session, backend, build, params):
    """Fixed: the guard must name the target table and hold for the executed values."""
    ids = await seed(session)
    before = await dump(session)
    row = {"id": ids["note_B"], "document_id": ids["doc_A"], "text": "pwned"}
    error = await attempt(session, build(backend, row), *params)
    assert error is not None
    assert error.detail["reason"] == "unscoped_statement"
    assert_no_leak(error)
    assert await dump(session) == before


async def test_a_real_guard_still_runs_with_parameters(session, backend):
    """The named guard bound to the current tenant keeps the tenant's own row updatable."""
    ids = await seed(session)
    before = await dump(session)
    for key in ("note_A", "note_B"):
        row = {"id": ids[key], "document_id": ids["doc_A"], "text": "mine"}
        assert await attempt(session, _guard_rebound(backend, row), {"owner": "A"}) is None
    after = await dump(session)
    assert after["notes"][ids["note_B"]] == before["notes"][ids["note_B"]]
    assert after["notes"][ids["note_A"]] != before["notes"][ids["note_A"]]


# -- execution parameters replacing the criteria's bound values ------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda _ids: select(Note.id),
        lambda ids: select(Note.id).where(Note.id.in_([ids["note_A"], ids["note_B"]])),
        lambda _ids: select(Client.id),
        lambda _ids: update(Note).values(text="pwned"),
        lambda _ids: NOTES.update().values(text="pwned"),
        lambda _ids: NOTES.delete(),
    ],
    ids=["select", "select-in", "joined-subclass", "orm-update", "core-update", "core-delete"],
)
@pytest.mark.parametrize("name", ["tenant_id_1", "tenant_id_2"])
async def test_parameters_cannot_rebind_the_tenant_criteria(session, build, name):
    """Fixed: ``execute(stmt, {"tenant_id_1": "B"})`` replaced the criteria's tenant."""
    ids = await seed(session)
    before = await dump(session)
    error = await attempt(session, build(ids), {name: "B"})
    assert error is not None
    assert error.detail["reason"] == "unscoped_statement"
    assert await dump(session) == before


_PARAM_NAMES = ["tenant_id_1", "tenant_id_2", "tenant_id_3", "param_1", "id_1", "text_1", "t"]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    params=st.dictionaries(st.sampled_from(_PARAM_NAMES), st.sampled_from(["A", "B"]), max_size=3),
    build=st.sampled_from(["select", "orm-update", "core-update", "bulk-by-key"]),
)
async def test_no_execution_parameters_reach_another_tenant(session, params, build):
    """Whatever parameters accompany a statement in tenant ``A``, ``B``'s rows stay out."""
    async with session.begin_nested() as savepoint:
        ids = await seed(session)
        before = await dump(session)
        statements = {
            "select": (select(Note.id, Note.tenant_id), params),
            "orm-update": (update(Note).values(text="mine"), params),
            "core-update": (NOTES.update().values(text="mine"), params),
            "bulk-by-key": (
                update(Note),
                [{**params, "id": ids["note_B"], "text": "mine"}] if params else [],
            ),
        }
        stmt, args = statements[build]
        if build == "bulk-by-key" and not args:
            args = [{"id": ids["note_B"], "text": "mine"}]
        with tenant("A"):
            try:
                result = await session.execute(stmt, args)
            except RepositoryError:
                result = None
            except StatementError:
                result = None  # a parameter the statement does not know: SQLAlchemy refuses
        if result is not None and build == "select":
            assert {row.tenant_id for row in result} <= {"A"}
        after = await dump(session)
        assert after["notes"][ids["note_B"]] == before["notes"][ids["note_B"]]
        await savepoint.rollback()


async def test_written_tenant_rebound_through_a_compiled_name_is_refused(session):
    """Fixed: ``values(tenant_id=literal("A"))`` with ``{"param_1": "B"}`` wrote ``B``."""
    ids = await seed(session)
    before = await dump(session)
    stmt = update(Note).where(Note.id == ids["note_A"]).values(tenant_id=literal("A"))
    for params in ({"param_1": "B"}, {"param_2": "B"}):
        with tenant("A"), pytest.raises(TenantMismatchError) as info:
            await session.execute(stmt, params)
        assert_no_leak(info.value)
    assert await dump(session) == before
    stmt = insert(Note).values(document_id=ids["doc_A"], text="x", tenant_id=literal("A"))
    with tenant("A"), pytest.raises(TenantMismatchError):
        await session.execute(stmt, {"param_1": "B"})
    assert await dump(session) == before


# -- data-modifying CTEs (PostgreSQL) ---------------------------------------------------------


async def test_core_update_in_a_cte_is_refused(session, backend):
    """Fixed: a Core UPDATE in a CTE of a SELECT updated every tenant's rows."""
    if backend.family != "postgresql":
        pytest.skip("only PostgreSQL runs INSERT/UPDATE/DELETE inside a WITH clause")
    ids = await seed(session)
    before = await dump(session)
    updated = NOTES.update().values(text="pwned").returning(NOTES.c.id).cte("u")
    deleted = NOTES.delete().returning(NOTES.c.id).cte("d")
    for stmt in (
        select(updated.c.id),
        select(deleted.c.id),
        select(DOCUMENTS.c.id).add_cte(deleted),
    ):
        error = await attempt(session, stmt)
        assert error is not None, stmt
    assert await dump(session) == before
    assert ids


@pytest.mark.parametrize("form", ["orm-insert", "core-update-in-orm-select"])
async def test_dml_cte_in_an_orm_select_cannot_write_another_tenants_rows(session, backend, form):
    if backend.family != "postgresql":
        pytest.skip("only PostgreSQL runs INSERT/UPDATE inside a WITH clause")
    ids = await seed(session)
    before = await dump(session)
    if form == "orm-insert":
        planted = (
            insert(Note)
            .values(text="planted", tenant_id="B", document_id=ids["doc_B"])
            .returning(Note.id)
            .cte("p")
        )
        stmt = select(planted.c.id)
    else:
        updated = NOTES.update().values(text="pwned").returning(NOTES.c.id).cte("u")
        stmt = select(Document.id).add_cte(updated)
    await attempt(session, stmt)
    assert await dump(session) == before


async def test_orm_update_in_a_cte_is_refused(session, backend):
    """Refused when compiled, on every backend and inside all_tenants() too."""
    ids = await seed(session)
    before = await dump(session)
    updated = update(Note).values(text="mine").returning(Note.id).cte("u")
    for scope in (tenant("A"), all_tenants()):
        with scope, pytest.raises(RepositoryError) as info:
            await session.scalars(select(updated.c.id))
        assert info.value.detail["reason"] == "unscoped_statement"
    assert await dump(session) == before
    assert ids


# -- the unit of work with objects made up in memory ----------------------------------------


def _made_up(ids: dict[str, Any]) -> Note:
    """An object claiming to be tenant ``A``'s, with the primary key of ``B``'s note."""
    note = Note(id=ids["note_B"], tenant_id="A", text="n-B", document_id=ids["doc_A"])
    make_transient_to_detached(note)
    return note


@pytest.mark.xfail(
    strict=True,
    reason="a persistent object made up in memory is flushed by primary key only: the "
    "UPDATE/DELETE the unit of work emits carries no tenant criteria",
)
@pytest.mark.parametrize("how", ["add-update", "add-delete", "merge-no-load"])
async def test_made_up_objects_cannot_touch_another_tenants_row(session, how):
    ids = await seed(session)
    before = await dump(session)
    with tenant("A"):
        try:
            if how == "merge-no-load":
                note = await session.merge(_made_up(ids), load=False)
                note.text = "pwned"
            else:
                note = _made_up(ids)
                session.add(note)
                if how == "add-delete":
                    await session.delete(note)
                else:
                    note.text = "pwned"
            await session.flush()
        except RepositoryError:
            pass
    session.expunge_all()
    assert (await dump(session))["notes"] == before["notes"]


# -- the legacy Session bulk methods --------------------------------------------------------


def _legacy(ids: dict[str, Any], how: str) -> Any:
    def run(sync_session: Any) -> None:
        if how == "bulk_update_mappings":
            sync_session.bulk_update_mappings(Note, [{"id": ids["note_B"], "text": "pwned"}])
        elif how == "bulk_insert_mappings":
            row = {"tenant_id": "B", "text": "planted", "document_id": ids["doc_B"]}
            sync_session.bulk_insert_mappings(Note, [row])
        else:
            note = Note(id=ids["note_B"], tenant_id="A", text="n-B", document_id=ids["doc_A"])
            make_transient_to_detached(note)
            note.text = "pwned"
            sync_session.bulk_save_objects([note])

    return run


@pytest.mark.xfail(
    strict=True,
    reason="Session.bulk_*_mappings/bulk_save_objects emit Core statements on the "
    "connection: no do_orm_execute or before_flush hook sees them",
)
@pytest.mark.parametrize(
    "how", ["bulk_update_mappings", "bulk_insert_mappings", "bulk_save_objects"]
)
@pytest.mark.parametrize("scope", ["tenant-A", "no-tenant"])
async def test_legacy_bulk_methods_are_scoped_or_refused(session, how, scope):
    ids = await seed(session)
    before = await dump(session)
    try:
        if scope == "tenant-A":
            with tenant("A"):
                await session.run_sync(_legacy(ids, how))
        else:
            await session.run_sync(_legacy(ids, how))
    except RepositoryError:
        pass
    assert await dump(session) == before


# -- collations ----------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["a", "A ", "\N{LATIN CAPITAL LETTER A WITH ACUTE}"])
async def test_tenant_ids_are_compared_exactly(session, backend, request, spelling):
    """``a``, ``A `` and ``Á`` are other tenants than ``A`` (MariaDB: a NO PAD binary collation)."""
    ids = await seed(session)
    before = await dump(session)
    with tenant(spelling):
        assert (await session.scalars(select(Note.id))).all() == []
        assert (await session.execute(update(Note).values(text="x"))).rowcount == 0
    assert await dump(session) == before
    assert ids


# -- reads: every form sees only the tenant's rows -------------------------------------------


def _reads(ids: dict[str, Any]) -> dict[str, Any]:
    alias = aliased(Note)
    people = polymorphic(Person, [Client])
    return {
        "aliased": select(alias.id),
        "aliased-join": select(Document.id).join(alias, alias.document_id == Document.id),
        "with-polymorphic": select(people.id),
        "polymorphic-base": select(Person.id),
        "selectin-polymorphic": select(Person.id).options(selectin_polymorphic(Person, [Client])),
        "column-only-subclass": select(Client.id),
        "count-select-from": select(func.count()).select_from(Client),
        "non-tenant-join": select(Shortcut.folder_id).join(Folder, Shortcut.folder_id == Folder.id),
        "sti-base": select(Employee.id),
        "lambda": lambda_stmt(lambda: select(Note.id)),
        "union-core-orm": select(Note.id).union_all(select(Person.id)),
    }


def _visible(ids: dict[str, Any], tenant_id: str) -> set[Any]:
    return {value for key, value in ids.items() if key.endswith(f"_{tenant_id}")}


@pytest.mark.parametrize(
    "name",
    [
        "aliased",
        "aliased-join",
        "with-polymorphic",
        "polymorphic-base",
        "selectin-polymorphic",
        "column-only-subclass",
        "count-select-from",
        "non-tenant-join",
        "sti-base",
        "lambda",
        "union-core-orm",
    ],
)
async def test_read_forms_see_only_the_tenants_rows(session, name):
    ids = await seed(session)
    stmt = _reads(ids)[name]
    foreign = _visible(ids, "B") - _visible(ids, "A")
    for who in ("A", "B"):  # the same statement object, so the same cached SQL
        with tenant(who):
            rows = (await session.execute(stmt)).all()
        if name == "count-select-from":
            assert rows == [(1,)]
            continue
        values = {row[0] for row in rows}
        assert values, name
        assert values <= _visible(ids, who)
        if who == "A":
            assert not values & foreign
    if name != "non-tenant-join":
        with pytest.raises(TenantRequiredError):
            await session.execute(stmt)


async def test_same_statement_binds_each_tenant(session):
    """One statement object, run in turn for each tenant, binds that tenant every time."""
    ids = await seed(session)
    stmt = update(Note).where(Note.text.like("n-%")).values(text=Note.text + "!")
    read = select(Note.text)
    for who, expected in (("A", "n-A!"), ("B", "n-B!"), ("A", "n-A!!")):
        with tenant(who):
            assert (await session.execute(stmt)).rowcount == 1
            assert (await session.scalars(read)).all() == [expected]
    assert ids


async def test_context_is_task_local_and_nested(session):
    ids = await seed(session)

    async def read() -> set[Any]:
        return set((await session.scalars(select(Note.id))).all())

    with tenant("A"):
        with tenant("B"):
            assert await read() == {ids["note_B"]}
            with all_tenants():
                assert await read() == {ids["note_A"], ids["note_B"]}
                with tenant("A"):
                    assert await read() == {ids["note_A"]}
        assert await read() == {ids["note_A"]}
        assert await asyncio.create_task(read()) == {ids["note_A"]}
    with pytest.raises(TenantRequiredError):
        await asyncio.create_task(read())


@pytest.mark.xfail(
    strict=True,
    reason="attribute loads of an object made up in memory run by primary key only "
    "(column loads are exempt from the criteria)",
)
@pytest.mark.parametrize("how", ["expired-attribute", "refresh"])
async def test_made_up_objects_cannot_read_another_tenants_row(session, how):
    ids = await seed(session)
    with tenant("A"):
        note = Note(id=ids["note_B"], tenant_id="A", document_id=ids["doc_A"])
        make_transient_to_detached(note)  # every other attribute is now "expired"
        session.add(note)
        text = None
        try:
            if how == "refresh":
                await session.refresh(note, ["text"])
                text = note.text
            else:
                text = await note.awaitable_attrs.text
        except RepositoryError:
            pass
    assert text != "n-B"


# -- relationship loads from a model outside tenant scoping --------------------------------


@pytest.mark.parametrize("loader", [selectinload, joinedload])
async def test_relationship_loads_from_a_shared_model_hide_other_tenants(session, loader):
    ids = await seed(session)
    stmt = select(Shortcut).options(loader(Shortcut.folder)).order_by(Shortcut.id)
    with tenant("A"):
        shortcuts = (await session.scalars(stmt)).unique().all()
    folders = {s.id: (s.folder.id if s.folder is not None else None) for s in shortcuts}
    assert folders == {ids["shortcut_A"]: ids["folder_A"], ids["shortcut_B"]: None}
    session.expunge_all()
    with pytest.raises(TenantRequiredError):
        await session.execute(select(Folder.id).join(Shortcut, Shortcut.folder_id == Folder.id))


# -- ORM INSERT executemany ------------------------------------------------------------------


async def test_orm_insert_rows_are_stamped_or_refused(session):
    ids = await seed(session)
    rows = [
        {"document_id": ids["doc_A"], "text": "omitted"},
        {"document_id": ids["doc_A"], "text": "none", "tenant_id": None},
        {"document_id": ids["doc_A"], "text": "own", "tenant_id": "A"},
    ]
    with tenant("A"):
        await session.execute(insert(Note), rows)
    with all_tenants():
        owners = dict((await session.execute(select(NOTES.c.text, NOTES.c.tenant_id))).all())
    assert {owners[row["text"]] for row in rows} == {"A"}
    before = await dump(session)
    planted = [*rows, {"document_id": ids["doc_B"], "text": "planted", "tenant_id": "B"}]
    with tenant("A"), pytest.raises(TenantMismatchError) as info:
        await session.execute(insert(Note), planted)
    assert_no_leak(info.value)
    assert await dump(session) == before


# -- tables named beside the target of an UPDATE/DELETE (UPDATE … FROM) ---------------------


def _beside(ids: dict[str, Any], form: str) -> Any:
    other = aliased(Note)
    products = Product.__table__
    forms = {
        # UPDATE notes SET text=documents.body FROM documents: B's values copied into A's row
        "copy-from-another-table": lambda: (
            update(Note)
            .where(Note.id == ids["note_A"], Document.id != Note.document_id)
            .values(text=Document.body + "|" + Document.slug)
        ),
        # MariaDB: UPDATE notes, documents SET documents.body=…: B's rows written
        "set-another-table": lambda: (
            update(Note)
            .where(Note.id == ids["note_A"], Document.id != Note.document_id)
            .values({Document.body: "pwned"})
        ),
        "aliased-self-join": lambda: (
            update(Note)
            .where(Note.id == ids["note_A"], other.id != Note.id)
            .values(text=other.text)
        ),
        # DELETE … USING documents: the row count tells whether B has that slug
        "delete-oracle": lambda: (
            delete(Note)
            .where(
                Note.id == ids["note_A"], Document.id != Note.document_id, Document.slug == "doc-B"
            )
            .execution_options(is_delete_using=True)
        ),
        "shared-target": lambda: (
            update(Product).where(Product.sku == Document.slug).values(price=1)
        ),
        "core-copy": lambda: (
            NOTES.update()
            .where(NOTES.c.id == ids["note_A"], DOCUMENTS.c.id != NOTES.c.document_id)
            .values(text=DOCUMENTS.c.body + "|" + DOCUMENTS.c.slug)
        ),
        "core-set-another-table": lambda: (
            NOTES.update()
            .where(NOTES.c.id == ids["note_A"], DOCUMENTS.c.id != NOTES.c.document_id)
            .values({DOCUMENTS.c.body: "pwned"})
        ),
        # UPDATE people … FROM clients: a subclass table has no tenant_id to filter on
        "subclass-table-beside-base": lambda: (
            update(Person)
            .where(Person.id == ids["client_A"], Client.company == "c-B")
            .values(name="x")
        ),
        "join-beside": lambda: (
            delete(Note)
            .where(Note.id == ids["note_A"], DOCUMENTS.c.id != Note.document_id)
            .using(DOCUMENTS.join(NOTES.alias(), DOCUMENTS.c.id != NOTES.c.document_id))
            .execution_options(is_delete_using=True)
        ),
        "core-shared-target": lambda: (
            products.update().where(products.c.sku == DOCUMENTS.c.slug).values(price=1)
        ),
    }
    return forms[form]()


@pytest.mark.parametrize(
    "form",
    [
        "copy-from-another-table",
        "set-another-table",
        "aliased-self-join",
        "delete-oracle",
        "shared-target",
        "core-copy",
        "core-set-another-table",
        "core-shared-target",
        "subclass-table-beside-base",
        "join-beside",
    ],
)
async def test_tables_beside_the_target_are_scoped(session, backend, form):
    """Fixed: loader criteria skip tables an UPDATE/DELETE reads beside its target."""
    ids = await seed(session)
    with all_tenants():
        session.add(Product(sku="doc-B"))
        await session.flush()
    before = await dump(session)
    stmt = _beside(ids, form)
    refusal: Exception | None = None
    with tenant("A"):
        try:
            result = await session.execute(stmt)
        except (RepositoryError, CompileError, NotImplementedError) as error:
            refusal = error
        else:
            assert result.rowcount == 0
    if isinstance(refusal, RepositoryError):
        assert form in {"subclass-table-beside-base", "join-beside"}
        assert refusal.detail["reason"] == "unscoped_statement"
    elif refusal is not None:
        # SQLite and PostgreSQL cannot set another table's column, SQLite cannot
        # DELETE … USING: SQLAlchemy refuses to compile, nothing runs.
        assert backend.family != "mariadb" or "set-another-table" not in form
    assert await dump(session) == before
    if "shared-target" in form:
        with pytest.raises(TenantRequiredError):
            await session.execute(stmt)
    assert await dump(session) == before


# -- repositories on inheritance hierarchies: a foreign id is a missing id ---------------------


class _ClientRepo(BaseRepository[Client]):
    pass


class _ManagerRepo(BaseRepository[Manager]):
    pass


def _describe(error: BaseException) -> tuple[Any, ...]:
    detail = dict(getattr(error, "detail", {}) or {})
    detail.pop("identity", None)  # the identity asked for, echoed back
    assert "B" not in {str(value) for value in detail.values()}
    return type(error), detail, getattr(error, "model", None)


@pytest.mark.parametrize("repo_class", [_ClientRepo, _ManagerRepo], ids=["joined", "sti"])
@pytest.mark.parametrize("operation", ["get_by_id", "update", "soft_delete", "restore", "delete"])
async def test_repository_foreign_id_is_a_missing_id(session, repo_class, operation):
    ids = await seed(session)
    kind = "client" if repo_class is _ClientRepo else "manager"
    before = await dump(session)
    outcomes = []
    for ident in (ids[f"{kind}_B"], 10**9):
        repo = repo_class(session)
        call = getattr(repo, operation)
        args = {"name": "x"} if operation == "update" else {}
        with tenant("A"), pytest.raises(RepositoryError) as info:
            await call(ident, **args)
        outcomes.append((_describe(info.value), str(info.value).replace(str(ident), "<id>")))
    assert outcomes[0] == outcomes[1]
    assert await dump(session) == before
