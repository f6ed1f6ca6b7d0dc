"""A write that opens its transaction: no SAVEPOINT, and nothing lost when it fails.

PostgreSQL aborts its whole transaction on an error, so a write there runs inside a
SAVEPOINT, unless it is the first statement of the transaction: then there is nothing
before it to lose, and on error the driver's transaction is rolled back and begun again
unseen. These tests hold every backend to the same guarantee: after a ConflictError the
caller's transaction goes on, with its isolation level and with whatever ran before the
write (an ``after_begin`` listener's statement, pending objects) kept.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, insert, select, text

from models import Post, User
from recorder import StatementLog
from repositories import PostRepository, UserRepository
from sqla_repo import ForeignKeyViolationError, UniqueViolationError


def _protected(backend, dml: list[str]) -> list[str]:
    """The statements of a write that is not its transaction's first."""
    return ["SAVEPOINT", *dml, "RELEASE"] if backend.family == "postgresql" else dml


async def _seed(sessionmaker) -> tuple[int, int]:
    async with sessionmaker() as session, session.begin():
        users = UserRepository(session)
        a = await users.create({"email": "a@x.org"})
        b = await users.create({"email": "b@x.org"})
        await PostRepository(session).create({"title": "t", "author_id": a.id})
    return a.id, b.id


async def _emails(sessionmaker) -> list[str]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(User.email).order_by(User.email))).all())


async def _begin(session) -> None:
    """Open the session's transaction and check out its connection, sending nothing."""
    await session.connection()


async def test_the_first_write_of_a_transaction_sends_no_savepoint(sessionmaker, backend):
    """create, update and delete by key, each first in its transaction: one statement."""
    _, b_id = await _seed(sessionmaker)
    update_dml = ["UPDATE", "SELECT"] if backend.family == "mariadb" else ["UPDATE"]
    cases = [
        (lambda r: r.create({"email": "c@x.org"}), ["INSERT"]),
        (lambda r: r.update(b_id, name="n"), update_dml),
        (lambda r: r.delete(b_id), ["DELETE"]),
    ]
    for write, dml in cases:
        async with sessionmaker() as session, session.begin():
            repo = UserRepository(session)
            await _begin(session)
            with StatementLog(session) as first:
                await write(repo)
            with StatementLog(session) as second:
                await repo.create({"email": f"second-{len(dml)}-{dml[0]}@x.org"})
        assert first.statements == dml
        assert second.statements == _protected(backend, ["INSERT"])
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Post)) == 1


@pytest.mark.parametrize("failing", ["create", "update", "delete", "update_where", "delete_where"])
async def test_a_conflict_as_the_first_statement_keeps_the_transaction(
    sessionmaker, backend, failing
):
    """The failed write was all the transaction held; what follows it commits."""
    a_id, b_id = await _seed(sessionmaker)
    async with sessionmaker() as session, session.begin():
        users = UserRepository(session)
        if failing == "create":
            with pytest.raises(UniqueViolationError):
                await users.create({"email": "a@x.org"})
        elif failing == "update":
            with pytest.raises(UniqueViolationError):
                await users.update(b_id, email="a@x.org")
        elif failing == "update_where":
            with pytest.raises(UniqueViolationError):
                await users.update_where(User.id == b_id, values={"email": "a@x.org"})
        elif failing == "delete":
            with pytest.raises(ForeignKeyViolationError):
                await users.delete(a_id)
        else:
            with pytest.raises(ForeignKeyViolationError):
                await users.delete_where(User.id == a_id)
        await users.create({"email": "c@x.org"})
        await users.update(b_id, name="after")
        with pytest.raises(UniqueViolationError):  # and again, now inside a SAVEPOINT
            await users.create({"email": "c@x.org"})
        await users.create({"email": "d@x.org"})
    assert await _emails(sessionmaker) == ["a@x.org", "b@x.org", "c@x.org", "d@x.org"]
    async with sessionmaker() as session:
        assert await session.scalar(select(User.name).where(User.id == b_id)) == "after"


async def test_an_after_begin_listeners_statement_counts_as_work_to_keep(sessionmaker, backend):
    """A row written by the session's after_begin listener survives the failed write."""
    await _seed(sessionmaker)

    def stamp(_session, _transaction, connection):
        connection.execute(insert(User).values(email="listener@x.org", name=""))

    async with sessionmaker() as session:
        event.listen(session.sync_session, "after_begin", stamp)
        async with session.begin():
            users = UserRepository(session)
            with StatementLog(session) as log, pytest.raises(UniqueViolationError):
                await users.create({"email": "a@x.org"})
            assert log.dml == ["INSERT", "INSERT"]  # the listener's, then the failed one
            assert ("SAVEPOINT" in log.statements) == (backend.family == "postgresql")
            await users.create({"email": "c@x.org"})
    assert await _emails(sessionmaker) == ["a@x.org", "b@x.org", "c@x.org", "listener@x.org"]


async def test_pending_objects_flushed_first_are_kept(sessionmaker, backend):
    """Pending changes are flushed before the write: they are work to keep, not to lose."""
    await _seed(sessionmaker)
    async with sessionmaker() as session, session.begin():
        session.add(User(email="pending@x.org"))
        with pytest.raises(UniqueViolationError):
            await UserRepository(session).create({"email": "a@x.org"})
    assert await _emails(sessionmaker) == ["a@x.org", "b@x.org", "pending@x.org"]


async def test_the_isolation_level_survives_a_failed_first_write(sessionmaker, backend):
    """The transaction begun again after the failure has the level the caller chose."""
    await _seed(sessionmaker)
    query = {
        "postgresql": "SHOW transaction_isolation",
        "mariadb": "SELECT @@session.tx_isolation",
        "sqlite": "PRAGMA read_uncommitted",
    }[backend.family]
    level = "SERIALIZABLE" if backend.family != "sqlite" else "READ UNCOMMITTED"
    async with sessionmaker() as session:
        await session.connection(execution_options={"isolation_level": level})
        before = await session.scalar(text(query))
        await session.rollback()
        await session.connection(execution_options={"isolation_level": level})
        with pytest.raises(UniqueViolationError):
            await UserRepository(session).create({"email": "a@x.org"})
        assert await session.scalar(text(query)) == before
        await UserRepository(session).create({"email": "c@x.org"})
        await session.commit()
    assert str(before).upper().replace("-", " ").replace("_", " ") in {
        "SERIALIZABLE",
        "1",
    }
    assert await _emails(sessionmaker) == ["a@x.org", "b@x.org", "c@x.org"]


async def test_writes_on_an_autocommit_connection(sessionmaker, backend):
    """With AUTOCOMMIT every write is its own transaction: it needs, and gets, no SAVEPOINT.

    On PostgreSQL a SAVEPOINT outside a transaction block is an error.
    """
    await _seed(sessionmaker)
    async with sessionmaker() as session:
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        users = UserRepository(session)
        with StatementLog(session) as log:
            await users.create({"email": "c@x.org"})
            with pytest.raises(UniqueViolationError):
                await users.create({"email": "a@x.org"})
            await users.update_where(User.email == "c@x.org", values={"name": "n"})
        assert "SAVEPOINT" not in log.statements
        await session.commit()
    assert await _emails(sessionmaker) == ["a@x.org", "b@x.org", "c@x.org"]
