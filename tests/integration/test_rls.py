"""PostgreSQL row-level security: policies enforced by the database for every statement."""

from __future__ import annotations

import asyncio
import importlib.util
import random
import secrets
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    event,
    make_url,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import NullPool

import backends
from sqla_repo import IntegerPKMixin, TenantMixin, all_tenants, rls, tenant
from sqla_repo.exceptions import ConfigurationError, TenantMismatchError
from sqla_repo.repository import BaseRepository
from sqla_repo.routing import transaction_pooling_options


class RlsBase(DeclarativeBase):
    metadata = MetaData()


class RlsDoc(IntegerPKMixin, TenantMixin, RlsBase):
    __tablename__ = "rls_docs"
    title: Mapped[str] = mapped_column(String(50))


class RlsParty(IntegerPKMixin, TenantMixin, RlsBase):
    __tablename__ = "rls_parties"
    name: Mapped[str] = mapped_column(String(50))
    kind: Mapped[str] = mapped_column(String(20))
    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "party"}  # noqa: RUF012


class RlsCompany(RlsParty):
    """A joined subclass: its table has no tenant_id and is guarded through its parent."""

    __tablename__ = "rls_companies"
    id: Mapped[int] = mapped_column(ForeignKey("rls_parties.id"), primary_key=True)
    vat: Mapped[str] = mapped_column(String(20))
    __mapper_args__ = {"polymorphic_identity": "company"}  # noqa: RUF012


class RlsDocRepository(BaseRepository[RlsDoc]):
    pass


TABLES = ("rls_docs", "rls_parties", "rls_companies")
HAS_PSYCOPG = importlib.util.find_spec("psycopg") is not None
DRIVERS = pytest.mark.parametrize(
    "driver",
    [
        "asyncpg",
        pytest.param(
            "psycopg",
            marks=pytest.mark.skipif(not HAS_PSYCOPG, reason="psycopg is not installed"),
        ),
    ],
)


def _session_hooks_installed() -> bool:
    return event.contains(Session, "after_begin", rls._after_begin)


@pytest.fixture(autouse=True)
def installed():
    """rls.install() for the test's duration; the process-wide session hooks are removed after."""
    before = _session_hooks_installed()
    rls.install(RlsBase.metadata)
    yield
    if not before:
        event.remove(Session, "after_begin", rls._after_begin)
        event.remove(Session, "do_orm_execute", rls._on_execute)
        event.remove(Session, "before_flush", rls._before_flush)
        event.remove(Session, "after_soft_rollback", rls._after_soft_rollback)


@pytest_asyncio.fixture
async def admin(backend: backends.Backend) -> AsyncIterator[AsyncEngine]:
    """An engine with the test run's (owner, superuser on PostgreSQL) credentials; tables made."""
    engine = backend.engine(poolclass=NullPool)
    async with engine.begin() as conn:
        await conn.run_sync(RlsBase.metadata.drop_all)
        await conn.run_sync(RlsBase.metadata.create_all)
    yield engine
    async with engine.begin() as conn:
        await conn.run_sync(RlsBase.metadata.drop_all)
    await engine.dispose()


async def _admin_rows(admin: AsyncEngine) -> list[tuple[str, str]]:
    async with admin.connect() as conn:
        rows = await conn.execute(text("SELECT tenant_id, title FROM rls_docs ORDER BY id"))
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def _seed(admin: AsyncEngine) -> None:
    async with admin.begin() as conn:
        await conn.execute(
            text("INSERT INTO rls_docs (tenant_id, title) VALUES (:t, :title)"),
            [
                {"t": "A", "title": "a1"},
                {"t": "A", "title": "a2"},
                {"t": "B", "title": "b1"},
            ],
        )


@pytest_asyncio.fixture
async def role(requires, admin: AsyncEngine) -> AsyncIterator[str]:
    """A plain login role (not superuser, not owner, no BYPASSRLS) with DML rights."""
    requires("row_level_security")
    name = f"sqla_rls_{secrets.token_hex(4)}"
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f"CREATE ROLE {name} LOGIN NOSUPERUSER NOBYPASSRLS"))
        await conn.execute(
            text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(TABLES)} TO {name}")
        )
        await conn.execute(text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {name}"))
    yield name
    async with admin.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f"DROP OWNED BY {name}"))
        await conn.execute(text(f"DROP ROLE {name}"))


def _role_engine(backend: backends.Backend, role: str, driver: str = "asyncpg") -> AsyncEngine:
    url = backend.url.set(username=role, password=None, drivername=f"postgresql+{driver}")
    return create_async_engine(url, pool_size=1, max_overflow=0)


@pytest_asyncio.fixture
async def app(backend: backends.Backend, role: str) -> AsyncIterator[AsyncEngine]:
    """The application's engine: the plain role, one pooled connection."""
    engine = _role_engine(backend, role)
    yield engine
    await engine.dispose()


def _sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


# -- every backend ------------------------------------------------------------------------


def test_policy_ddl_renders_postgresql_statements():
    """policy_ddl() returns quoted, schema-qualified PostgreSQL statements on any backend."""
    docs = rls.policy_ddl(RlsDoc.__table__)  # type: ignore[arg-type]
    assert docs[0] == "ALTER TABLE rls_docs ENABLE ROW LEVEL SECURITY"
    assert docs[1] == "ALTER TABLE rls_docs FORCE ROW LEVEL SECURITY"
    assert docs[2] == (
        "CREATE POLICY sqla_repo_tenant_isolation ON rls_docs USING (tenant_id = "
        "NULLIF(current_setting('sqla_repo.tenant', true), '') OR "
        "current_setting('sqla_repo.all_tenants', true) = 'on') WITH CHECK (tenant_id = "
        "NULLIF(current_setting('sqla_repo.tenant', true), '') OR "
        "current_setting('sqla_repo.all_tenants', true) = 'on')"
    )
    child = rls.policy_ddl(RlsCompany.__table__)  # type: ignore[arg-type]
    assert child[2].endswith(
        "USING (EXISTS (SELECT 1 FROM rls_parties AS sqla_repo_parent "
        "WHERE sqla_repo_parent.id = rls_companies.id)) WITH CHECK (EXISTS (SELECT 1 "
        "FROM rls_parties AS sqla_repo_parent WHERE sqla_repo_parent.id = rls_companies.id))"
    )
    odd = Table("Order", MetaData(), Column("tenant_id", String(64)), schema="Tenant Data")
    assert rls.policy_ddl(odd)[0] == 'ALTER TABLE "Tenant Data"."Order" ENABLE ROW LEVEL SECURITY'
    assert rls.drop_policy_ddl(odd) == [
        'DROP POLICY IF EXISTS sqla_repo_tenant_isolation ON "Tenant Data"."Order"',
        'ALTER TABLE "Tenant Data"."Order" NO FORCE ROW LEVEL SECURITY',
        'ALTER TABLE "Tenant Data"."Order" DISABLE ROW LEVEL SECURITY',
    ]


def test_policy_ddl_refuses_a_table_without_tenant():
    """A table that is not tenant-scoped gets no policy: ConfigurationError, no SQL in it."""
    plain = Table("plain", MetaData(), Column("id", Integer, primary_key=True))
    with pytest.raises(ConfigurationError) as info:
        rls.policy_ddl(plain)
    assert "SELECT" not in str(info.value)


def test_install_is_idempotent():
    """Calling install() again registers no DDL or session hook twice."""
    counts = [len(RlsBase.metadata.tables[name].dispatch.after_create) for name in TABLES]
    rls.install(RlsBase.metadata)
    rls.install(RlsBase.metadata)
    assert [len(RlsBase.metadata.tables[n].dispatch.after_create) for n in TABLES] == counts
    assert counts == [3, 3, 3]


async def test_install_creates_tables_and_crud_works(backend, admin: AsyncEngine):
    """Tables are created with install() applied and the repository works (any backend).

    The hook writes the settings at the start and after each change of tenant on
    PostgreSQL, and sends nothing elsewhere.
    """
    sent: list[str] = []

    def log(_conn, _cursor, statement, *_args):  # type: ignore[no-untyped-def]
        sent.append(statement)

    event.listen(admin.sync_engine, "before_cursor_execute", log)
    try:
        await _crud_across_tenants(admin)
    finally:
        event.remove(admin.sync_engine, "before_cursor_execute", log)
    writes = 3 if "row_level_security" in backend.capabilities else 0
    assert len([s for s in sent if "set_config" in s]) == writes


async def _crud_across_tenants(admin: AsyncEngine) -> None:
    async with _sessions(admin)() as session, session.begin():
        repo = RlsDocRepository(session)
        with tenant("A"):
            doc = await repo.create({"title": "a"})
            session.add(RlsCompany(name="acme", vat="x1"))
            await session.flush()
        with tenant("B"):
            await repo.create({"title": "b"})
            assert [d.title for d in await repo.list()] == ["b"]
        with tenant("A"):
            assert (await repo.get_by_id(doc.id)).title == "a"
            assert [c.vat for c in (await session.scalars(select(RlsCompany))).all()] == ["x1"]


# -- PostgreSQL -----------------------------------------------------------------------------


async def test_policies_are_created(requires, admin: AsyncEngine):
    """create_all() enables and forces row-level security and creates one policy per table."""
    requires("row_level_security")
    async with admin.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
                "WHERE relname IN ('rls_docs', 'rls_parties', 'rls_companies') ORDER BY relname"
            )
        )
        assert [tuple(r) for r in rows] == [
            ("rls_companies", True, True),
            ("rls_docs", True, True),
            ("rls_parties", True, True),
        ]
        policies = await conn.execute(
            text("SELECT tablename, policyname FROM pg_policies WHERE tablename LIKE 'rls_%'")
        )
        assert sorted(tuple(p) for p in policies) == [
            (name, rls.POLICY_NAME) for name in sorted(TABLES)
        ]


@DRIVERS
async def test_raw_sql_sees_and_changes_only_the_tenant_rows(backend, admin, role, driver):
    """Textual SELECT, UPDATE and DELETE inside tenant('A') reach only A's rows."""
    await _seed(admin)
    engine = _role_engine(backend, role, driver)
    try:
        with tenant("A"):
            async with _sessions(engine)() as session, session.begin():
                titles = await session.scalars(text("SELECT title FROM rls_docs ORDER BY id"))
                assert titles.all() == ["a1", "a2"]
                updated = await session.execute(text("UPDATE rls_docs SET title = 'x'"))
                assert updated.rowcount == 2  # type: ignore[attr-defined]
            async with _sessions(engine)() as session, session.begin():
                deleted = await session.execute(text("DELETE FROM rls_docs"))
                assert deleted.rowcount == 2  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
    assert await _admin_rows(admin) == [("B", "b1")]


@DRIVERS
async def test_raw_insert_of_another_tenant_fails(backend, admin, role, driver):
    """A raw INSERT of B's row inside tenant('A') violates the policy (SQLSTATE 42501)."""
    await _seed(admin)
    engine = _role_engine(backend, role, driver)
    try:
        with tenant("A"):
            async with _sessions(engine)() as session:
                with pytest.raises(ProgrammingError) as info:
                    await session.execute(
                        text("INSERT INTO rls_docs (tenant_id, title) VALUES ('B', 'evil')")
                    )
                await session.rollback()
    finally:
        await engine.dispose()
    orig = info.value.orig
    assert getattr(orig, "sqlstate", None) == "42501"
    assert "row-level security" in str(orig)
    assert await _admin_rows(admin) == [("A", "a1"), ("A", "a2"), ("B", "b1")]


async def test_raw_update_moving_a_row_to_another_tenant_fails(admin, app):
    """A raw UPDATE that would hand A's rows to B violates the policy's WITH CHECK."""
    await _seed(admin)
    with tenant("A"):
        async with _sessions(app)() as session:
            with pytest.raises(DBAPIError) as info:
                await session.execute(text("UPDATE rls_docs SET tenant_id = 'B'"))
            await session.rollback()
    assert getattr(info.value.orig, "sqlstate", None) == "42501"
    assert await _admin_rows(admin) == [("A", "a1"), ("A", "a2"), ("B", "b1")]


async def test_no_tenant_sees_nothing_and_writes_nothing(backend, admin, app):
    """With no tenant set, raw SQL sees no tenant row and cannot insert one."""
    await _seed(admin)
    async with _sessions(app)() as session, session.begin():
        assert (await session.execute(text("SELECT * FROM rls_docs"))).all() == []
        updated = await session.execute(text("UPDATE rls_docs SET title = 'x'"))
        assert updated.rowcount == 0  # type: ignore[attr-defined]
    async with _sessions(app)() as session:
        with pytest.raises(DBAPIError):
            await session.execute(
                text("INSERT INTO rls_docs (tenant_id, title) VALUES ('A', 'evil')")
            )
    assert len(await _admin_rows(admin)) == 3


async def test_all_tenants_sees_and_writes_every_tenant(backend, admin, app):
    """Inside all_tenants() the bypass setting is on: every row is visible and writable."""
    await _seed(admin)
    with all_tenants():
        async with _sessions(app)() as session, session.begin():
            rows = await session.scalars(text("SELECT tenant_id FROM rls_docs ORDER BY id"))
            assert rows.all() == ["A", "A", "B"]
            await session.execute(
                text("INSERT INTO rls_docs (tenant_id, title) VALUES ('C', 'c1')")
            )
            session.add(RlsDoc(tenant_id="D", title="d1"))
    assert [t for t, _ in await _admin_rows(admin)] == ["A", "A", "B", "C", "D"]


async def test_setting_does_not_leak_across_transactions(backend, admin, app):
    """The setting is transaction-local: the next transaction on the same connection has its own."""
    await _seed(admin)
    with tenant("A"):
        async with _sessions(app)() as session, session.begin():
            assert len((await session.execute(text("SELECT 1 FROM rls_docs"))).all()) == 2
    with tenant("B"):
        async with _sessions(app)() as session, session.begin():
            titles = await session.scalars(text("SELECT title FROM rls_docs"))
            assert titles.all() == ["b1"]
    async with app.connect() as conn:  # the same pooled connection, no session hook
        assert await _setting(conn) in {None, ""}
        assert (await conn.execute(text("SELECT 1 FROM rls_docs"))).all() == []


async def _setting(conn: AsyncConnection) -> str | None:
    value = await conn.scalar(text("SELECT current_setting('sqla_repo.tenant', true)"))
    return None if value is None else str(value)


async def test_one_set_config_per_transaction(backend, admin, app):
    """Installed twice, the hook still sends one statement per transaction, none per savepoint."""
    rls.install(RlsBase.metadata)
    rls.install(RlsBase.metadata)
    sent: list[str] = []

    def log(_conn, _cursor, statement, *_args):  # type: ignore[no-untyped-def]
        sent.append(statement)

    event.listen(app.sync_engine, "before_cursor_execute", log)
    try:
        with tenant("A"):
            async with _sessions(app)() as session, session.begin():
                await session.execute(text("SELECT 1"))
                async with session.begin_nested():
                    await session.execute(text("SELECT 2"))
                session.add(RlsDoc(title="t"))
    finally:
        event.remove(app.sync_engine, "before_cursor_execute", log)
    assert [s for s in sent if "set_config" in s] == [sent[0]]
    assert len(sent) == 6  # set_config, SELECT 1, SAVEPOINT, SELECT 2, RELEASE, INSERT


async def test_tenant_change_inside_a_transaction_is_followed(backend, admin, app):
    """Changing the tenant context inside one transaction rewrites the setting before use."""
    await _seed(admin)
    async with _sessions(app)() as session, session.begin():
        with tenant("A"):
            assert len((await session.execute(text("SELECT 1 FROM rls_docs"))).all()) == 2
        with tenant("B"):
            titles = await session.scalars(text("SELECT title FROM rls_docs"))
            assert titles.all() == ["b1"]
            session.add(RlsDoc(title="b2"))
            await session.flush()
        with tenant("C"):
            session.add(RlsDoc(title="c1"))
            await session.flush()  # the first statement under C: before_flush rewrites it
    assert (await _admin_rows(admin))[-2:] == [("B", "b2"), ("C", "c1")]


async def test_savepoints_do_not_reset_and_rollback_is_followed(backend, admin, app):
    """A SAVEPOINT keeps the transaction's setting; one rolled back after a change is redone."""
    await _seed(admin)
    async with _sessions(app)() as session, session.begin():
        with tenant("A"):
            await session.execute(text("SELECT 1"))
            nested = await session.begin_nested()
            assert await _session_setting(session) == "A"
            with tenant("B"):
                assert await _session_setting(session) == "B"
            await nested.rollback()  # reverts the database setting to A
            with tenant("B"):
                titles = await session.scalars(text("SELECT title FROM rls_docs"))
                assert titles.all() == ["b1"]


async def _session_setting(session: AsyncSession) -> str | None:
    value = await session.scalar(text("SELECT current_setting('sqla_repo.tenant', true)"))
    return None if value is None else str(value)


async def test_session_joined_to_an_external_transaction(backend, admin, app):
    """A session bound to a connection inside an outer transaction carries the setting."""
    await _seed(admin)
    async with app.connect() as conn:
        outer = await conn.begin()
        session = AsyncSession(bind=conn, join_transaction_mode="create_savepoint")
        with tenant("B"):
            titles = await session.scalars(text("SELECT title FROM rls_docs"))
            assert titles.all() == ["b1"]
        await session.close()
        await outer.rollback()


async def test_joined_subclass_table_follows_its_parent(backend, admin, app):
    """Raw SQL on a joined subclass table sees only rows whose parent row is visible."""
    with all_tenants():
        async with _sessions(app)() as session, session.begin():
            session.add_all(
                [
                    RlsCompany(tenant_id="A", name="a", vat="VA"),
                    RlsCompany(tenant_id="B", name="b", vat="VB"),
                ]
            )
    with tenant("A"):
        async with _sessions(app)() as session, session.begin():
            vats = await session.scalars(text("SELECT vat FROM rls_companies"))
            assert vats.all() == ["VA"]
            deleted = await session.execute(text("DELETE FROM rls_companies"))
            assert deleted.rowcount == 1  # type: ignore[attr-defined]
    async with _sessions(app)() as session, session.begin():
        assert (await session.execute(text("SELECT * FROM rls_companies"))).all() == []
    async with admin.connect() as conn:
        assert (await conn.scalars(text("SELECT vat FROM rls_companies"))).all() == ["VB"]


async def test_repository_crud_as_the_plain_role(backend, admin, app):
    """The repository keeps working under the policies, savepoints included."""
    with tenant("A"):
        async with _sessions(app)() as session, session.begin():
            repo = RlsDocRepository(session)
            doc = await repo.create({"title": "one"})
            await repo.update(doc, title="two")
            got, created = await repo.get_or_create(title="three")
            assert created
            assert await repo.count() == 2
            await repo.delete(got)
            session.add(RlsCompany(name="acme", vat="V1"))
    with tenant("B"):
        async with _sessions(app)() as session, session.begin():
            assert await RlsDocRepository(session).count() == 0
    with tenant("A"):
        async with _sessions(app)() as session, session.begin():
            assert [d.title for d in await RlsDocRepository(session).list()] == ["two"]
            assert (await session.scalars(select(RlsCompany.vat))).all() == ["V1"]


async def test_a_write_the_policy_refuses_is_a_tenant_mismatch(backend, admin, app):
    """The database's refusal reaches the caller typed, and the transaction goes on."""
    await _seed(admin)
    with tenant("A"):
        async with _sessions(app)() as session, session.begin():
            # Another layer (a trigger, a bug, a hostile extension) set another tenant:
            # the ORM writes tenant_id 'A', the policy expects 'B' and refuses the row.
            await session.execute(text("SELECT set_config('sqla_repo.tenant', 'B', true)"))
            repo = RlsDocRepository(session)
            with pytest.raises(TenantMismatchError) as info:
                await repo.create({"title": "smuggled"})
            assert info.value.detail["reason"] == "row_level_security"
            assert "smuggled" not in str(info.value)
            # The repository's savepoint kept the transaction usable.
            assert (await session.scalars(text("SELECT title FROM rls_docs"))).all() == ["b1"]
    assert await _admin_rows(admin) == [("A", "a1"), ("A", "a2"), ("B", "b1")]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    owners=st.lists(st.sampled_from(["A", "B", "C"]), max_size=8),
    reader=st.sampled_from(["A", "B", "C", None, "*"]),
)
async def test_raw_reads_match_the_scope(admin, app, owners, reader):
    """Whatever rows exist, raw SQL sees exactly the rows the tenant scope allows."""
    async with _sessions(app)() as session, session.begin():
        with all_tenants():
            for i, owner in enumerate(owners):
                await session.execute(
                    text("INSERT INTO rls_docs (tenant_id, title) VALUES (:t, :title)"),
                    {"t": owner, "title": f"d{i}"},
                )
        query = text("SELECT tenant_id FROM rls_docs ORDER BY id")
        if reader == "*":
            with all_tenants():
                seen = (await session.scalars(query)).all()
            assert seen == owners
        elif reader is None:
            assert (await session.scalars(query)).all() == []
        else:
            with tenant(reader):
                seen = (await session.scalars(query)).all()
            assert seen == [owner for owner in owners if owner == reader]
        await session.rollback()


async def test_models_declared_after_install_are_protected(requires, admin: AsyncEngine):
    """A model declared after install() gets its policy when create_all() runs."""
    requires("row_level_security")

    class LateBase(DeclarativeBase):
        metadata = MetaData()

    rls.install(LateBase.metadata)

    class Late(IntegerPKMixin, TenantMixin, LateBase):
        __tablename__ = "rls_late"

    async with admin.begin() as conn:
        await conn.run_sync(LateBase.metadata.create_all)
        forced = await conn.scalar(
            text("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'rls_late'")
        )
        await conn.run_sync(LateBase.metadata.drop_all)
    assert forced is True
    assert Late.__table__.info[rls._INFO_KEY] is True


async def test_policy_ddl_runs_on_a_schema_qualified_table(requires, admin: AsyncEngine):
    """policy_ddl() and drop_policy_ddl() are valid SQL for a quoted, schema-qualified table."""
    requires("row_level_security")
    table = Table("Order", MetaData(), Column("tenant_id", String(64)), schema="Tenant Data")
    async with admin.connect() as conn:
        transaction = await conn.begin()
        await conn.execute(text('CREATE SCHEMA "Tenant Data"'))
        await conn.run_sync(table.create)
        for statement in rls.policy_ddl(table):
            await conn.execute(text(statement))
        assert (
            await conn.scalar(
                text("SELECT count(*) FROM pg_policies WHERE schemaname = 'Tenant Data'")
            )
            == 1
        )
        for statement in rls.drop_policy_ddl(table):
            await conn.execute(text(statement))
        assert (
            await conn.scalar(
                text("SELECT count(*) FROM pg_policies WHERE schemaname = 'Tenant Data'")
            )
            == 0
        )
        await transaction.rollback()


# -- behind PgBouncer's transaction pooling ----------------------------------------------
#
# Consecutive transactions of one client connection run on different server connections,
# and one server connection serves many clients in turn. The tenant setting is
# transaction-local, so no transaction may ever see another one's tenant.

POOL_TENANTS = ("A", "B", "C", "D")
POOL_TASKS = 16
POOL_ROUNDS = 12


def _pooled_engine(backend: backends.Backend, driver: str) -> AsyncEngine:
    pooler = make_url(backends.env_url("pgbouncer"))
    url = backend.url.set(drivername=f"postgresql+{driver}", host=pooler.host, port=pooler.port)
    return create_async_engine(url, pool_size=4, max_overflow=0, **transaction_pooling_options(url))


async def _seed_tenants(admin_engine: AsyncEngine) -> None:
    async with admin_engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO rls_docs (tenant_id, title) VALUES (:t, :title)"),
            [{"t": t, "title": f"{t}{i}"} for t in POOL_TENANTS for i in range(3)],
        )


@DRIVERS
async def test_tenant_setting_never_crosses_transactions(backend, admin, role, driver):
    """16 tasks × 12 transactions, random tenants, 4 client connections: no leak."""  # noqa: RUF002
    await _seed_tenants(admin)
    engine = _pooled_engine(backend, driver)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    seen: list[tuple[str, list[str]]] = []
    bare: list[list[str]] = []

    async def worker(seed: int) -> None:
        rng = random.Random(seed)  # noqa: S311 - a test schedule
        for _ in range(POOL_ROUNDS):
            current = rng.choice(POOL_TENANTS)
            if rng.random() < 0.25:
                # A transaction outside any session sends no setting: a tenant left
                # behind on the server connection by an earlier client would show here.
                async with engine.begin() as conn:
                    await conn.execute(text(f"SET LOCAL ROLE {role}"))
                    bare.append(list(await conn.scalars(text("SELECT tenant_id FROM rls_docs"))))
            with tenant(current):
                async with sessions() as session, session.begin():
                    # The pooler knows only its own user: act as the plain role inside
                    # the transaction, which is what the policies are checked against.
                    await session.execute(text(f"SET LOCAL ROLE {role}"))
                    rows = await session.scalars(text("SELECT tenant_id FROM rls_docs"))
                    seen.append((current, list(rows)))
                    await asyncio.sleep(0)

    try:
        await asyncio.gather(*(worker(seed) for seed in range(POOL_TASKS)))
    finally:
        await engine.dispose()
    assert len(seen) == POOL_TASKS * POOL_ROUNDS
    assert bare
    assert all(rows == [] for rows in bare)
    for current, rows in seen:
        assert rows == [current] * 3
    assert len(await _admin_rows(admin)) == len(POOL_TENANTS) * 3
