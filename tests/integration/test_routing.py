"""Read replicas: which engine answers each statement of a routed session.

The routing rules run on every backend with a second engine on the same database
standing in for the replica (statements are counted per engine). The streaming-replica
tests in ``test_replica.py`` check the same rules against a real PostgreSQL standby.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
from sqlalchemy import event, insert, select, text, update
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

import backends
from models import Product
from repositories import ProductRepository
from sqla_repo.routing import RoutingSession, replica_sessionmaker, use_primary

UNREACHABLE = {
    "sqlite": "sqlite+aiosqlite:////nonexistent/directory/replica.db",
    "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:1/test",
    "mariadb": "mysql+asyncmy://root@127.0.0.1:1/test",
}


@dataclass
class Counter:
    """Statements each engine received, in order."""

    log: list[str] = field(default_factory=list)

    def watch(self, engine: AsyncEngine, name: str) -> None:
        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _seen(_conn, _cursor, statement, _params, _context, _many):  # type: ignore[no-untyped-def]
            if not statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "BEGIN")):
                self.log.append(name)

    def take(self) -> list[str]:
        seen, self.log = self.log, []
        return seen


@pytest_asyncio.fixture
async def routed(
    backend: backends.Backend, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], Counter]]:
    del sessionmaker  # requested for its clean-up of committed rows
    primary = backend.engine()
    if backend.family == "sqlite":
        # Two connections to one file: a read transaction left open on the stand-in
        # would block the primary's commit, which a real replica never does.
        replica = create_async_engine(backend.url, isolation_level="AUTOCOMMIT")
    else:
        replica = backend.engine()
    counter = Counter()
    counter.watch(primary, "primary")
    counter.watch(replica, "replica")
    try:
        yield replica_sessionmaker(primary, [replica], expire_on_commit=False), counter
    finally:
        await primary.dispose()
        await replica.dispose()


async def test_reads_go_to_the_replica_until_the_transaction_writes(routed) -> None:
    maker, counter = routed
    async with maker() as session, session.begin():
        await session.execute(select(Product))
        assert counter.take() == ["replica"]
        await session.execute(insert(Product).values(sku="a", price=1))
        await session.execute(select(Product))
        assert counter.take() == ["primary", "primary"]
        assert isinstance(session.sync_session, RoutingSession)
        assert session.sync_session.routed_to_primary
    async with maker() as session, session.begin():
        rows = (await session.scalars(select(Product.sku))).all()
        assert counter.take() == ["replica"]
        assert rows == ["a"]


async def test_flushes_locking_reads_and_text_go_to_the_primary(routed) -> None:
    maker, counter = routed
    async with maker() as session, session.begin():
        session.add(Product(sku="b", price=2))
        await session.flush()
        assert set(counter.take()) == {"primary"}
    async with maker() as session, session.begin():
        await session.execute(select(Product).with_for_update())
        assert counter.take() == ["primary"]
    async with maker() as session, session.begin():
        await session.execute(text("SELECT 1"))
        assert counter.take() == ["primary"]
    async with maker() as session, session.begin():
        await session.execute(update(Product).values(price=3))
        assert counter.take() == ["primary"]


async def test_use_primary_forces_the_primary(routed) -> None:
    maker, counter = routed
    async with maker() as session, session.begin():
        with use_primary():
            await session.execute(select(Product))
        assert counter.take() == ["primary"]


async def test_repository_reads_and_writes(routed) -> None:
    maker, counter = routed
    async with maker() as session, session.begin():
        repo = ProductRepository(session)
        assert await repo.count() == 0
        assert await repo.list() == []
        assert set(counter.take()) == {"replica"}
    # A new transaction: on SQLite the stand-in replica's open read would block the commit.
    async with maker() as session, session.begin():
        repo = ProductRepository(session)
        product = await repo.create({"sku": "c", "price": 5})
        assert set(counter.take()) == {"primary"}
        assert await repo.get_by_id(product.id) is product
        counter.take()
    async with maker() as session, session.begin():
        repo = ProductRepository(session)
        await repo.update(product.id, price=6)
        await repo.delete(product.id)
        assert set(counter.take()) == {"primary"}


async def test_unreachable_replica_falls_back_to_the_primary(
    backend: backends.Backend,
    sessionmaker: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    del sessionmaker
    primary = backend.engine()
    broken = create_async_engine(UNREACHABLE[backend.family])
    counter = Counter()
    counter.watch(primary, "primary")
    maker = replica_sessionmaker(primary, [broken], retry_after=60)
    try:
        with caplog.at_level(logging.WARNING, logger="sqla_repo.routing"):
            async with maker() as session, session.begin():
                assert await ProductRepository(session).list() == []
            async with maker() as session, session.begin():
                assert await ProductRepository(session).count() == 0
        assert counter.take() == ["primary", "primary"]
        warnings = [r for r in caplog.records if r.name == "sqla_repo.routing"]
        # Left out after the first failure: the second transaction does not try again.
        assert len(warnings) == 1
        assert "unreachable" in warnings[0].getMessage()
    finally:
        await primary.dispose()
        await broken.dispose()


def test_bind_arguments_are_refused() -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    with pytest.raises(TypeError, match="bind"):
        replica_sessionmaker(engine, [], bind=engine)
