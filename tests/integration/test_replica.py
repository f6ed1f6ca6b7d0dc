"""Routed sessions against a real PostgreSQL streaming replica.

``.ci/scale-out`` makes the replica (``pg_basebackup -R`` of the main cluster, on port
5433). ``pg_is_in_recovery()`` tells which server answered: true on the standby only.
An unreachable replica fails these tests; it is never skipped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, make_url, select, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

import backends
from models import Product
from repositories import ProductRepository
from sqla_repo.routing import replica_sessionmaker, use_primary

REPLICA_URL = os.environ.get(
    "SQLA_REPO_TEST_REPLICA_URL", "postgresql+asyncpg://postgres@127.0.0.1:5433/test"
)
CLUSTER = "sqla_repo_replica"
IN_RECOVERY = select(func.pg_is_in_recovery())


async def _autocommit(url: URL | str, statement: str) -> object:
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text(statement))
            return result.scalar() if result.returns_rows else None
    finally:
        await engine.dispose()


async def _wait(predicate, *, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            msg = "the replica did not catch up in time"
            raise AssertionError(msg)
        await asyncio.sleep(0.05)


async def _caught_up(primary: AsyncEngine, replica: AsyncEngine) -> bool:
    async with primary.connect() as conn:
        lsn = (await conn.execute(text("SELECT pg_current_wal_lsn()"))).scalar()
    async with replica.connect() as conn:
        return bool(
            (
                await conn.execute(
                    text("SELECT pg_last_wal_replay_lsn() >= CAST(:lsn AS pg_lsn)"),
                    {"lsn": lsn},
                )
            ).scalar()
        )


@pytest_asyncio.fixture(scope="module")
async def servers() -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """A database of its own on the primary, its tables, and the replica's view of it."""
    admin = make_url(backends.env_url("postgresql"))
    replica_admin = make_url(REPLICA_URL)
    try:
        assert await _autocommit(replica_admin, "SELECT pg_is_in_recovery()") is True
    except Exception as exc:
        msg = f"the PostgreSQL replica at {replica_admin.render_as_string()} is unreachable: {exc}"
        raise pytest.UsageError(msg) from exc
    database = f"sqla_repo_replica_{os.getpid()}_{secrets.token_hex(3)}"
    await _autocommit(admin, f"CREATE DATABASE {database}")
    primary = create_async_engine(admin.set(database=database))
    async with primary.begin() as conn:
        await conn.run_sync(Product.__table__.create)  # type: ignore[attr-defined]
    replica = create_async_engine(replica_admin.set(database=database))
    try:
        await _wait(lambda: _exists_on_replica(replica_admin, database))
        await _wait(lambda: _caught_up(primary, replica))
        yield primary, replica
    finally:
        await primary.dispose()
        await replica.dispose()
        await _autocommit(admin, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


async def _exists_on_replica(replica_admin: URL, database: str) -> bool:
    found = await _autocommit(
        replica_admin, f"SELECT count(*) FROM pg_database WHERE datname = '{database}'"
    )
    return found == 1


@pytest_asyncio.fixture
async def maker(servers) -> AsyncIterator[async_sessionmaker[AsyncSession]]:  # type: ignore[no-untyped-def]
    primary, replica = servers
    yield replica_sessionmaker(primary, [replica], expire_on_commit=False, retry_after=0.0)
    async with primary.begin() as conn:
        await conn.execute(text("DELETE FROM products"))


async def test_reads_are_answered_by_the_standby(maker) -> None:
    async with maker() as session, session.begin():
        assert (await session.execute(IN_RECOVERY)).scalar() is True
        assert await ProductRepository(session).count() == 0


async def test_read_your_writes_within_a_transaction(maker) -> None:
    async with maker() as session, session.begin():
        repo = ProductRepository(session)
        assert (await session.execute(IN_RECOVERY)).scalar() is True
        product = await repo.create({"sku": "ryw", "price": 1})
        # From the first write on, the primary answers: the new row is visible.
        assert (await session.execute(IN_RECOVERY)).scalar() is False
        assert await repo.count() == 1
        assert (await repo.get_by_id(product.id)).sku == "ryw"


async def test_locking_reads_and_use_primary(maker) -> None:
    async with maker() as session, session.begin():
        assert (await session.execute(IN_RECOVERY.with_for_update())).scalar() is False
    async with maker() as session, session.begin():
        with use_primary():
            assert (await session.execute(IN_RECOVERY)).scalar() is False


async def test_replica_lag_is_visible(servers, maker) -> None:
    """A commit on the primary reaches a replica read only after the replica replays it."""
    primary, replica = servers
    replica_admin = make_url(REPLICA_URL)
    await _autocommit(replica_admin, "SELECT pg_wal_replay_pause()")
    try:
        async with maker() as session, session.begin():
            await ProductRepository(session).create({"sku": "lag", "price": 1})
        async with maker() as session, session.begin():
            # Committed on the primary, not yet replayed on the standby.
            assert await ProductRepository(session).count() == 0
        async with maker() as session, session.begin():
            with use_primary():
                assert await ProductRepository(session).count() == 1
    finally:
        await _autocommit(replica_admin, "SELECT pg_wal_replay_resume()")
    await _wait(lambda: _caught_up(primary, replica))
    async with maker() as session, session.begin():
        assert (await session.execute(IN_RECOVERY)).scalar() is True
        assert await ProductRepository(session).count() == 1


def _cluster(action: str) -> None:
    version = max(p.name for p in Path("/etc/postgresql").iterdir())
    subprocess.run(  # noqa: S603 - fixed arguments
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, CLUSTER, action],  # noqa: S607
        check=True,
        capture_output=True,
    )


async def test_a_stopped_replica_falls_back_to_the_primary(
    servers, caplog: pytest.LogCaptureFixture
) -> None:
    primary, module_replica = servers
    replica_url = make_url(REPLICA_URL).set(database=primary.url.database)
    # Close the module's pooled replica connections before their server goes away (the
    # pool makes new ones after the restart), and route through a fresh engine.
    await module_replica.dispose()
    replica = create_async_engine(replica_url)
    maker = replica_sessionmaker(primary, [replica], retry_after=0.0)
    _cluster("stop")
    try:
        try:
            with caplog.at_level(logging.WARNING, logger="sqla_repo.routing"):
                async with maker() as session, session.begin():
                    assert (await session.execute(IN_RECOVERY)).scalar() is False
                    assert await ProductRepository(session).count() == 0
            assert any("unreachable" in r.getMessage() for r in caplog.records)
        finally:
            _cluster("start")
        await _wait(lambda: _autocommit_ok(replica_url))
        async with maker() as session, session.begin():
            assert (await session.execute(IN_RECOVERY)).scalar() is True
    finally:
        # Every connection the test made, to the stopped server and to the restarted
        # one, is closed here, not left to the garbage collector.
        await replica.dispose()


async def _autocommit_ok(url: URL) -> bool:
    try:
        return await _autocommit(url, "SELECT pg_is_in_recovery()") is True
    except Exception:  # noqa: BLE001 - still starting
        return False
