"""The protective SAVEPOINT sent straight to the driver, and still keeping its promise.

On PostgreSQL a write that is not its transaction's first runs inside ``SAVEPOINT …
RELEASE``. Where nothing watches the connection (no echo, no cursor-execute listener)
those go to asyncpg or psycopg directly, without an execution context; where something
does, through ``exec_driver_sql()``, so that it sees them. Either way a conflict leaves
the transaction usable, and an error the driver raises for the SAVEPOINT itself reaches
the caller as SQLAlchemy's, never as the driver's own class.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from models import User
from recorder import StatementLog
from repositories import UserRepository
from sqla_repo import RepositoryError, UniqueViolationError

CONTROL = ("SAVEPOINT", "RELEASE", "ROLLBACK")


@pytest.fixture
def through_sqlalchemy(monkeypatch) -> list[str]:
    """The transaction-control statements sent through ``exec_driver_sql()``."""
    sent: list[str] = []
    original = Connection.exec_driver_sql

    def spy(self, statement, *args, **kwargs):  # type: ignore[no-untyped-def]
        if statement.split()[0].upper() in CONTROL:
            sent.append(statement.split()[0].upper())
        return original(self, statement, *args, **kwargs)

    monkeypatch.setattr(Connection, "exec_driver_sql", spy)
    return sent


async def _emails(sessionmaker) -> list[str]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(User.email).order_by(User.email))).all())


async def test_unwatched_savepoints_skip_the_execution_context_and_keep_the_transaction(
    sessionmaker, through_sqlalchemy
):
    """A conflict after earlier work: the earlier work and the later writes commit."""
    async with sessionmaker() as session, session.begin():
        repo = UserRepository(session)
        first = await repo.create({"email": "a@x.org"})
        with pytest.raises(UniqueViolationError):
            await repo.create({"email": "a@x.org"})
        await repo.create({"email": "b@x.org"})
        await repo.update(first.id, name="renamed")
        second = await repo.create({"email": "c@x.org"})
        with pytest.raises(UniqueViolationError):
            await repo.update(second.id, email="b@x.org")
        await repo.delete(second.id)
        assert (await repo.get_by_id(first.id)).name == "renamed"
    # No single-statement write sent its SAVEPOINT through an execution context.
    assert through_sqlalchemy == []
    assert await _emails(sessionmaker) == ["a@x.org", "b@x.org"]


async def test_watched_savepoints_are_seen_by_cursor_listeners(
    sessionmaker, backend, through_sqlalchemy
):
    async with sessionmaker() as session, session.begin():
        repo = UserRepository(session)
        await repo.create({"email": "a@x.org"})
        with StatementLog(session) as log:
            await repo.create({"email": "b@x.org"})
            with pytest.raises(UniqueViolationError):
                await repo.create({"email": "a@x.org"})
        await repo.create({"email": "c@x.org"})
    if backend.family == "postgresql":
        expected = ["SAVEPOINT", "INSERT", "RELEASE", "SAVEPOINT", "INSERT", "ROLLBACK"]
        assert log.statements == expected
        assert through_sqlalchemy == ["SAVEPOINT", "RELEASE", "SAVEPOINT", "ROLLBACK"]
    else:  # one statement undoes itself there: no SAVEPOINT at all
        assert log.statements == ["INSERT", "INSERT"]
        assert through_sqlalchemy == []
    assert await _emails(sessionmaker) == ["a@x.org", "b@x.org", "c@x.org"]


async def test_echo_sends_savepoints_where_the_log_shows_them(
    sessionmaker, backend, through_sqlalchemy, caplog
):
    async with sessionmaker() as session:
        engine = session.bind
    engine.echo = True  # a connection reads the flag when it opens
    try:
        with caplog.at_level("INFO", logger="sqlalchemy.engine"):
            async with sessionmaker() as session, session.begin():
                repo = UserRepository(session)
                await repo.create({"email": "a@x.org"})
                await repo.create({"email": "b@x.org"})
    finally:
        engine.echo = False
    if backend.family == "postgresql":
        assert through_sqlalchemy == ["SAVEPOINT", "RELEASE"]
        assert any(r.getMessage().startswith("SAVEPOINT") for r in caplog.records)
    else:
        assert through_sqlalchemy == []
    assert await _emails(sessionmaker) == ["a@x.org", "b@x.org"]


async def test_a_savepoint_the_driver_refuses_raises_sqlalchemys_error(sessionmaker, backend):
    """In a transaction PostgreSQL has aborted, the SAVEPOINT itself fails."""
    if backend.family != "postgresql":
        pytest.skip("only PostgreSQL aborts a transaction on an error; the others go on")
    async with sessionmaker() as session, session.begin():
        repo = UserRepository(session)
        await repo.create({"email": "a@x.org"})
        with pytest.raises(DBAPIError):
            await session.execute(text("SELECT 1 / 0"))
        with pytest.raises((DBAPIError, RepositoryError)) as caught:
            await repo.create({"email": "b@x.org"})
        assert type(caught.value).__module__.split(".")[0] in {"sqlalchemy", "sqla_repo"}
        await session.rollback()
    assert await _emails(sessionmaker) == []
