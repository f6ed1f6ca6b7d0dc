"""On an engine without any SQLite transaction set-up, the caller still owns the transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from typing_extensions import Self

from models import METADATAS, User
from repositories import UserRepository
from sqla_repo import ConflictError, SyncBaseRepository, UniqueViolationError


@pytest.fixture
async def plain_sqlite(tmp_path):
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}")
    async with engine.begin() as conn:
        for metadata in METADATAS:
            await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


async def test_rollback_undoes_repository_writes(plain_sqlite):
    """Writes made through SAVEPOINTs are undone by the caller's rollback."""
    async with AsyncSession(plain_sqlite) as session:
        repo = UserRepository(session)
        await repo.create({"email": "a@x.org"})
        with pytest.raises(UniqueViolationError):
            await repo.create({"email": "a@x.org"})
        await repo.bulk_create([{"email": "b@x.org"}])
        assert await repo.count() == 2
        await session.rollback()
    async with AsyncSession(plain_sqlite) as session:
        assert await UserRepository(session).count() == 0


class _Counter:
    """The statements sent on *engine*, SAVEPOINTs and BEGIN included, by first word."""

    def __init__(self, engine) -> None:
        self.statements: list[str] = []
        self._engine = engine

    def __enter__(self) -> Self:
        event.listen(self._engine, "before_cursor_execute", self._log)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self._engine, "before_cursor_execute", self._log)

    def _log(self, _conn, _cursor, statement, *_args) -> None:
        self.statements.append(statement.split()[0].upper())


BULK_WRITES = {
    "bulk_create": lambda repo, rows: repo.bulk_create(rows, batch_size=2),
    "bulk_insert": lambda repo, rows: repo.bulk_insert(rows, batch_size=2),
    "bulk_upsert": lambda repo, rows: repo.bulk_upsert(rows, conflict_on=["email"], batch_size=2),
}


# The fifth row takes the first one's username (a unique column, not the upsert's key).
FAILING_IN_THE_THIRD_BATCH = [{"email": f"{i}@x.org", "username": f"u{i}"} for i in range(4)] + [
    {"email": "5@x.org", "username": "u0"}
]


@pytest.mark.parametrize("write", list(BULK_WRITES))
async def test_a_bulk_write_that_opens_the_transaction_sends_no_savepoint(plain_sqlite, write):
    """sqlite3 begins its transaction at the first write: nothing before it to protect."""
    rows = [{"email": f"{i}@x.org"} for i in range(5)]
    async with AsyncSession(plain_sqlite) as session:
        repo = UserRepository(session)
        assert await repo.count() == 0  # a read: sqlite3 runs it outside any transaction
        with _Counter(plain_sqlite.sync_engine) as log:
            await BULK_WRITES[write](repo, rows)
        assert "SAVEPOINT" not in log.statements
        assert "BEGIN" not in log.statements
        await session.commit()
    async with AsyncSession(plain_sqlite) as session:
        assert await UserRepository(session).count() == 5


@pytest.mark.parametrize("write", list(BULK_WRITES))
async def test_a_failed_first_bulk_write_leaves_nothing_and_the_session_usable(plain_sqlite, write):
    """The third batch fails: the first two are rolled back with it, and work goes on."""
    rows = FAILING_IN_THE_THIRD_BATCH
    async with AsyncSession(plain_sqlite) as session:
        repo = UserRepository(session)
        with pytest.raises(ConflictError):
            await BULK_WRITES[write](repo, rows)
        assert await repo.count() == 0
        await repo.create({"email": "after@x.org"})
        await session.commit()
    async with AsyncSession(plain_sqlite) as session:
        users = UserRepository(session)
        assert [u.email for u in await users.list()] == ["after@x.org"]


@pytest.mark.parametrize("write", list(BULK_WRITES))
async def test_a_failed_bulk_write_after_another_keeps_the_earlier_one(plain_sqlite, write):
    """Once the transaction holds a write, the bulk write runs inside a SAVEPOINT."""
    rows = FAILING_IN_THE_THIRD_BATCH
    async with AsyncSession(plain_sqlite) as session:
        repo = UserRepository(session)
        await repo.create({"email": "before@x.org"})
        with _Counter(plain_sqlite.sync_engine) as log, pytest.raises(ConflictError):
            await BULK_WRITES[write](repo, rows)
        assert "SAVEPOINT" in log.statements
        await session.commit()
    async with AsyncSession(plain_sqlite) as session:
        users = UserRepository(session)
        assert [u.email for u in await users.list()] == ["before@x.org"]


async def test_without_implicit_transactions_a_bulk_write_stays_all_or_nothing(tmp_path):
    """isolation_level=None (sqlite3 sends no BEGIN): the bulk write begins one itself."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'none.db'}")

    @event.listens_for(engine.sync_engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None

    async with engine.begin() as conn:
        for metadata in METADATAS:
            await conn.run_sync(metadata.create_all)
    try:
        async with AsyncSession(engine) as session:
            repo = UserRepository(session)
            rows = [{"email": f"{i}@x.org"} for i in range(4)] + [{"email": "0@x.org"}]
            with pytest.raises(ConflictError):
                await repo.bulk_create(rows, batch_size=2)
            assert await repo.count() == 0
    finally:
        await engine.dispose()


def test_the_sync_repository_follows_the_same_rule(tmp_path):
    """SyncBaseRepository on sqlite3: no SAVEPOINT first, all or nothing on failure."""
    engine = create_engine(f"sqlite:///{tmp_path / 'sync.db'}")
    for metadata in METADATAS:
        metadata.create_all(engine)

    class Users(SyncBaseRepository[User]):
        pass

    try:
        with Session(engine) as session:
            repo = Users(session)
            with _Counter(engine) as log:
                repo.bulk_insert([{"email": "a@x.org"}, {"email": "b@x.org"}], batch_size=1)
            assert "SAVEPOINT" not in log.statements
            with pytest.raises(ConflictError):
                repo.bulk_insert([{"email": "c@x.org"}, {"email": "a@x.org"}], batch_size=1)
            assert repo.count() == 2  # the earlier write kept, the failed one undone
            session.commit()
        with Session(engine) as session:
            assert Users(session).count() == 2
    finally:
        engine.dispose()
