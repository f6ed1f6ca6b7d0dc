"""SyncBaseRepository on real synchronous drivers: sqlite3, psycopg 3 and PyMySQL.

The repository contract modules already run every test against the sync twin through
``AsyncSession.run_sync()``. These tests use what a synchronous application uses: a plain
``create_engine()`` with a sync driver on the run's databases, ``Session`` objects, and
threads instead of tasks for the races (one ``Session`` per thread).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, create_engine, event, insert, select
from sqlalchemy.orm import Session, sessionmaker

import backends
from flavours import SyncFacade
from models import Client, Document, Person, Post, Product, Ticket, User
from sqla_repo import (
    ALL_COLUMNS,
    BaseRepository,
    CheckViolationError,
    ConcurrencyError,
    ConflictError,
    ForeignKeyViolationError,
    InvalidFilterError,
    NotFoundError,
    SyncBaseRepository,
    TenantRequiredError,
    UniqueViolationError,
    actor,
    all_tenants,
    tenant,
)

T = TypeVar("T")

SYNC_DRIVERS = {
    "sqlite": "sqlite+pysqlite",
    "postgresql": "postgresql+psycopg",
    "mariadb": "mysql+pymysql",
}
THREADS = 10
RETRYABLE = (ConflictError, ConcurrencyError)


class UserRepository(SyncBaseRepository[User]):
    filterable_fields = ("email", "name", "age")
    sortable_fields = ("name", "age", "created_at")

    def find_by_email(self, email: str) -> User | None:
        return self.get_one_or_none(email=email)


class PostRepository(SyncBaseRepository[Post]):
    pass


class ProductRepository(SyncBaseRepository[Product]):
    pass


class DocumentRepository(SyncBaseRepository[Document]):
    filterable_fields = ALL_COLUMNS


class TicketRepository(SyncBaseRepository[Ticket]):
    pass


class ClientRepository(SyncBaseRepository[Client]):
    pass


@pytest.fixture(scope="session")
def sync_engine(backend: backends.Backend, engine) -> Iterator[Engine]:
    """A synchronous engine on the run's database (the async ``engine`` made the tables)."""
    url = backend.url.set(drivername=SYNC_DRIVERS[backend.family])
    sync = create_engine(url, pool_size=THREADS + 2, max_overflow=0, pool_timeout=30)
    if backend.family == "sqlite":
        # The driver's default transaction handling is kept on purpose: the repository
        # must not let a SAVEPOINT's RELEASE commit the caller's work there.
        @event.listens_for(sync, "connect")
        def _connect(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

    yield sync
    sync.dispose()


@pytest.fixture
def new_session(sync_engine: Engine, sessionmaker) -> sessionmaker[Session]:
    """Sessions that really commit; the async ``sessionmaker`` fixture empties the tables."""
    del sessionmaker  # requested for its clean-up
    return sessionmaker_for(sync_engine)


def sessionmaker_for(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def emails(session: Session) -> list[str]:
    return list(session.scalars(select(User.email).order_by(User.email)))


def test_crud(new_session):
    """create/get/update/delete and the counting reads, as the async repository has them."""
    with new_session() as session, session.begin():
        repo = UserRepository(session)
        ada = repo.create({"email": "ada@x.org", "name": "Ada"})
        assert isinstance(ada.id, int)
        assert repo.get(ada.id) is ada
        assert repo.find_by_email("ada@x.org") is ada
        assert repo.get(10**9) is None
        with pytest.raises(NotFoundError):
            repo.get_by_id(10**9)
        assert repo.update(ada, name="Ada L.").name == "Ada L."
        bob = repo.create({"email": "bob@x.org", "name": "Bob"})
        assert repo.update(bob.id, {"age": 30}).age == 30
        assert (repo.count(), repo.exists(email="bob@x.org")) == (2, True)
        repo.delete(bob.id)
        assert [u.email for u in repo.list()] == ["ada@x.org"]
        with pytest.raises(NotFoundError):
            repo.delete(bob.id)
    with new_session() as session:
        assert emails(session) == ["ada@x.org"]
        assert UserRepository(session).get_one(email="ada@x.org").name == "Ada L."


def test_search_paginate_stream(new_session):
    """Offset pages with totals, keyset pages both ways, and stream() as an iterator."""
    names = ["Eve", "Ann", "Dan", "Bea", "Cal"]
    with new_session() as session, session.begin():
        repo = UserRepository(session)
        repo.bulk_create([{"email": f"{n.lower()}@x.org", "name": n} for n in names])
        page = repo.search(filters={"email__endswith": "@x.org"}, order_by=["name"], limit=2)
        assert ([u.name for u in page.items], page.total, page.has_more) == (
            ["Ann", "Bea"],
            5,
            True,
        )
        seen: list[str] = []
        cursor = None
        while True:
            keyset = repo.paginate(order_by=["name"], limit=2, after=cursor)
            seen += [u.name for u in keyset.items]
            if not keyset.has_next:
                break
            cursor = keyset.next_cursor
        assert seen == sorted(names)
        back = repo.paginate(order_by=["name"], limit=2, before=keyset.previous_cursor)
        assert [u.name for u in back.items] == ["Cal", "Dan"]
        with pytest.raises(InvalidFilterError):
            repo.paginate(order_by=["name"], after="not-a-cursor")
        rows = repo.stream(order_by=["-name"], batch_size=2)
        assert isinstance(rows, Iterator)
        assert [u.name for u in rows] == sorted(names, reverse=True)
        assert [u.name for u in repo.stream(filters={"name__in": ["Ann", "Cal"]})] == [
            "Ann",
            "Cal",
        ]


def test_bulk_writes(new_session):
    """bulk_create, upsert, bulk_get_or_create, bulk_update and the *_where writes."""
    with new_session() as session, session.begin():
        products = ProductRepository(session)
        made = products.bulk_create([{"sku": f"s{i}", "price": i} for i in range(5)])
        assert [p.sku for p in made] == [f"s{i}" for i in range(5)]
        upserted = products.bulk_upsert(
            [{"sku": "s0", "price": 10}, {"sku": "new", "price": 7}], conflict_on=["sku"]
        )
        assert [(p.sku, p.price) for p in upserted] == [("s0", Decimal(10)), ("new", Decimal(7))]
        got = products.bulk_get_or_create(
            [{"sku": "s1", "price": 99}, {"sku": "other"}], conflict_on=["sku"]
        )
        assert [(p.sku, p.price) for p in got] == [("s1", Decimal(1)), ("other", Decimal(0))]
        assert products.bulk_update([{"id": made[2].id, "price": 20}]) == 1
        assert made[2].price == Decimal(20)
        assert products.update_where(Product.price < 2, values={"price": 2}) == 2
        assert products.delete_where(Product.sku.like("s%")) == 5
        assert sorted(p.sku for p in products.list()) == ["new", "other"]


def test_conflict_keeps_the_transaction_usable(new_session):
    """After a ConflictError the same transaction goes on and commits (savepoints)."""
    with new_session() as session, session.begin():
        repo = UserRepository(session)
        repo.create({"email": "a@x.org"})
        with pytest.raises(UniqueViolationError):
            repo.create({"email": "a@x.org"})
        with pytest.raises(UniqueViolationError):
            repo.bulk_create([{"email": "b@x.org"}, {"email": "a@x.org"}])
        with pytest.raises(ForeignKeyViolationError):
            PostRepository(session).create({"title": "t", "author_id": 10**9})
        with pytest.raises(CheckViolationError):
            ProductRepository(session).create({"sku": "p", "price": Decimal(-1)})
        with pytest.raises(UniqueViolationError), repo.atomic():
            session.execute(insert(User).values(email="a@x.org"))
        repo.create({"email": "c@x.org"})
    with new_session() as session:
        assert emails(session) == ["a@x.org", "c@x.org"]


def test_a_failed_first_write_keeps_the_transaction(new_session, backend):
    """A conflict as the transaction's first statement: no SAVEPOINT, nothing lost.

    The sync drivers tell whether their transaction ran anything (psycopg's
    ``transaction_status``). The failed write leaves the transaction empty again, so
    the next write is first too; on PostgreSQL only the one after pays the SAVEPOINT.
    """
    with new_session() as session, session.begin():
        UserRepository(session).create({"email": "a@x.org"})
    sent: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        sent.append(statement.split()[0].upper())

    with new_session() as session, session.begin():
        repo = UserRepository(session)
        session.connection()
        event.listen(session.get_bind(), "before_cursor_execute", record)
        try:
            with pytest.raises(UniqueViolationError):
                repo.create({"email": "a@x.org"})
            repo.create({"email": "b@x.org"})
            repo.create({"email": "c@x.org"})
        finally:
            event.remove(session.get_bind(), "before_cursor_execute", record)
    last = ["SAVEPOINT", "INSERT", "RELEASE"] if backend.family == "postgresql" else ["INSERT"]
    assert sent == ["INSERT", "INSERT", *last]
    with new_session() as session:
        assert emails(session) == ["a@x.org", "b@x.org", "c@x.org"]


def test_savepoints_sent_to_the_driver_keep_the_transaction(new_session, monkeypatch):
    """On psycopg SAVEPOINT and RELEASE go to the driver where nothing watches; nothing lost."""
    through_sqlalchemy: list[str] = []
    original = Connection.exec_driver_sql

    def spy(self, statement, *args, **kwargs):  # type: ignore[no-untyped-def]
        if statement.split()[0].upper() in {"SAVEPOINT", "RELEASE", "ROLLBACK"}:
            through_sqlalchemy.append(statement.split()[0].upper())
        return original(self, statement, *args, **kwargs)

    monkeypatch.setattr(Connection, "exec_driver_sql", spy)
    with new_session() as session, session.begin():
        repo = UserRepository(session)
        first = repo.create({"email": "a@x.org"})
        with pytest.raises(UniqueViolationError):
            repo.create({"email": "a@x.org"})
        second = repo.create({"email": "b@x.org"})
        with pytest.raises(UniqueViolationError):
            repo.update(second.id, email="a@x.org")
        repo.update(first.id, name="renamed")
        repo.delete(second.id)
    assert through_sqlalchemy == []
    with new_session() as session:
        assert emails(session) == ["a@x.org"]
        assert UserRepository(session).get_by_id(first.id).name == "renamed"


def test_error_messages_carry_no_values(new_session):
    """Translated errors name the model, never the SQL or the values bound."""
    with new_session() as session, session.begin():
        repo = UserRepository(session)
        repo.create({"email": "secret@x.org"})
        with pytest.raises(UniqueViolationError) as info:
            repo.create({"email": "secret@x.org"})
        assert "secret" not in str(info.value)
        assert "INSERT" not in str(info.value).upper()


def test_rollback_undoes_repository_writes(new_session):
    """The caller's rollback undoes what the repository wrote (sqlite3's own mode too)."""
    with new_session() as session:
        UserRepository(session).create({"email": "gone@x.org"})
        UserRepository(session).bulk_create([{"email": "gone2@x.org"}])
        session.rollback()
    with new_session() as session:
        assert emails(session) == []


def test_tenant_and_soft_delete_scoping(new_session):
    """Each tenant sees its own rows; no tenant is refused; soft-deleted rows are hidden."""
    with new_session() as session, session.begin():
        docs = DocumentRepository(session)
        with tenant("acme"):
            mine = docs.create({"slug": "home"})
        with tenant("globex"):
            docs.create({"slug": "home"})
            assert docs.get(mine.id) is None
            assert [d.tenant_id for d in docs.list()] == ["globex"]
        with pytest.raises(TenantRequiredError):
            docs.list()
        with all_tenants():
            assert docs.count() == 2
        users = UserRepository(session)
        user = users.create({"email": "s@x.org"})
        users.soft_delete(user.id)
        assert users.get(user.id) is None
        assert users.list(include_deleted=True) == [user]
        assert users.restore(user.id).deleted_at is None
        assert users.get(user.id) is user


def test_joined_inheritance_writes(new_session):
    """Writes by key on a joined-table subclass touch both tables, scoped to the tenant."""
    with new_session() as session, session.begin(), tenant("acme"):
        clients = ClientRepository(session)
        ada, bob = clients.bulk_create(
            [{"name": "Ada", "company": "A"}, {"name": "Bob", "company": "B"}]
        )
        updated = clients.update(ada.id, name="Ada L.", company="AL")
        assert (updated.name, updated.company) == ("Ada L.", "AL")
        assert clients.update_where(Client.company == "B", values={"name": "Bob B."}) == 1
        assert bob.name == "Bob B."
        assert clients.bulk_update([{"id": ada.id, "company": "A2"}]) == 1
        assert ada.company == "A2"
        with tenant("globex"):
            with pytest.raises(NotFoundError):
                clients.update(ada.id, name="stolen")
            assert clients.delete_where(Client.id.in_([ada.id, bob.id])) == 0
        clients.soft_delete(bob.id)
        clients.delete(ada.id)
        assert clients.list(include_deleted=True) == [bob]
    with new_session() as session, all_tenants():  # the tables: one row left in each
        assert session.scalars(select(Person.__table__.c.name)).all() == ["Bob B."]
        assert session.scalars(select(Client.__table__.c.id)).all() == [bob.id]


def test_context_is_per_thread(new_session):
    """Actor and tenant are context variables: each thread writes with its own."""

    def work(i: int) -> tuple[str | None, str | None, int]:
        with actor(f"user{i}"), tenant(f"t{i}"), new_session() as session, session.begin():
            repo = DocumentRepository(session)
            doc = repo.create({"slug": "home"})
            return doc.created_by, doc.tenant_id, repo.count()

    results = run_threads(work, THREADS)
    assert results == [(f"user{i}", f"t{i}", 1) for i in range(THREADS)]


def run_threads(work: Callable[[int], T], n: int) -> list[T]:
    """Run ``work(0..n-1)`` on *n* threads and return the results in order."""
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(work, range(n)))


def with_retries(new_session, work: Callable[[Session], T], barrier: threading.Barrier) -> T:
    """Run *work* in a fresh transaction until it commits, retrying only typed errors."""
    for attempt in range(10):
        try:
            with new_session() as session, session.begin():
                if attempt == 0:
                    session.connection()
                    barrier.wait()
                return work(session)
        except RETRYABLE:  # noqa: PERF203 - a retry loop
            continue
    msg = "no commit after 10 attempts"
    raise AssertionError(msg)


def test_get_or_create_race_from_threads(new_session, requires):
    """get_or_create() of one key from 10 threads: one row, which every thread gets."""
    requires("concurrent_writers")
    barrier = threading.Barrier(THREADS, timeout=30)

    def task(i: int) -> tuple[int, bool]:
        def work(session: Session) -> tuple[int, bool]:
            user, created = UserRepository(session).get_or_create(
                {"name": f"thread {i}"}, email="race@x.org"
            )
            return user.id, created

        return with_retries(new_session, work, barrier)

    results = run_threads(task, THREADS)
    with new_session() as session:
        rows = session.scalars(select(User).where(User.email == "race@x.org")).all()
    assert len(rows) == 1
    assert {ident for ident, _ in results} == {rows[0].id}
    assert sum(created for _, created in results) == 1


def test_bulk_get_or_create_race_from_threads(new_session, requires):
    """Overlapping bulk_get_or_create() calls from threads: one row per key, no error."""
    requires("concurrent_writers")
    barrier = threading.Barrier(THREADS, timeout=30)
    keys = [f"k{j}" for j in range(20)]

    def task(i: int) -> list[str]:
        def work(session: Session) -> list[str]:
            mine = keys[i : i + 10]
            got = ProductRepository(session).bulk_get_or_create(
                [{"sku": k, "price": i} for k in mine], conflict_on=["sku"]
            )
            return [p.sku for p in got]

        return with_retries(new_session, work, barrier)

    results = run_threads(task, THREADS)
    assert results == [keys[i : i + 10] for i in range(THREADS)]
    with new_session() as session:
        skus = session.scalars(select(Product.sku)).all()
    assert sorted(skus) == sorted(keys[: THREADS + 9])


def test_version_race_from_threads(new_session, requires):
    """Instance updates of one version from threads: one wins, the others are stale."""
    requires("concurrent_writers")
    with new_session() as session, session.begin():
        ticket = TicketRepository(session).create({"title": "start"})
    barrier = threading.Barrier(THREADS, timeout=30)

    def task(i: int) -> int | BaseException:
        try:
            with new_session() as session, session.begin():
                repo = TicketRepository(session)
                mine = repo.get_by_id(ticket.id)
                barrier.wait()
                repo.update(mine, title=f"thread {i}")
        except RETRYABLE as exc:
            return exc
        return i

    results = run_threads(task, THREADS)
    winners = [r for r in results if isinstance(r, int)]
    assert len(winners) == 1, results
    assert all(isinstance(r, ConcurrencyError) for r in results if not isinstance(r, int))
    with new_session() as session:
        final = TicketRepository(session).get_by_id(ticket.id)
    assert (final.title, final.version) == (f"thread {winners[0]}", 2)


def test_dialect_name(new_session, backend):
    """The twin reports the dialect of its bind, like the async repository."""
    expected = {"sqlite": {"sqlite"}, "postgresql": {"postgresql"}, "mariadb": {"mysql", "mariadb"}}
    with new_session() as session:
        assert UserRepository(session).dialect_name in expected[backend.family]


# --- The twins agree: the same call gives the same rows, async or sync ----------------------

row_strategy = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["ann", "Ann", "bob", "", "zoë"]),
        "age": st.one_of(st.none(), st.integers(0, 3)),
    }
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(row_strategy, max_size=8),
    order_by=st.lists(
        st.sampled_from(["name", "-name", "age", "-age"]),
        max_size=2,
        unique_by=lambda key: key.lstrip("-"),
    ),
    limit=st.integers(1, 4),
    age=st.one_of(st.none(), st.integers(0, 3)),
)
async def test_async_and_sync_twins_agree(session, rows, order_by, limit, age):
    """search(), paginate(), list(), count() and stream() give the same rows in both flavours."""
    filters = {} if age is None else {"age__le": age}
    async with session.begin_nested() as savepoint:
        session.add_all([User(email=f"t{i}@x.org", **row) for i, row in enumerate(rows)])
        await session.flush()
        results = []
        for repo in (AsyncUserRepository(session), SyncFacade(AsyncUserRepository, session)):
            page = await repo.search(filters=filters, order_by=order_by, limit=limit)
            keyset, walked = None, []
            while keyset is None or keyset.has_next:
                after = None if keyset is None else keyset.next_cursor
                keyset = await repo.paginate(order_by=order_by, limit=limit, after=after)
                walked += [u.id for u in keyset.items]
            results.append(
                (
                    [u.id for u in page.items],
                    page.total,
                    walked,
                    [u.id for u in await repo.list(filters=filters, order_by=order_by)],
                    await repo.count(filters=filters),
                    [u.id async for u in repo.stream(order_by=order_by, batch_size=limit)],
                )
            )
        assert results[0] == results[1]
        assert sorted(results[0][2]) == sorted(results[0][5])  # every row, once
        await savepoint.rollback()


class AsyncUserRepository(BaseRepository[User]):
    filterable_fields = ("age",)
    sortable_fields = ("name", "age")
