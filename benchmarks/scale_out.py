"""Overheads of scaling out on PostgreSQL: the routing decision, PgBouncer, replica reads.

Run after ``bash .ci/scale-out`` (PgBouncer on 6432, a streaming replica on 5433):

    .venv/bin/python benchmarks/scale_out.py [--rounds 2000]

Prints medians of per-call times (µs) and the ratios the "Scaling out" docs page quotes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import BigInteger, String, make_url, select, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import NullPool

from sqla_repo.repository import BaseRepository
from sqla_repo.routing import RoutingSession, replica_sessionmaker, transaction_pooling_options

PRIMARY = os.environ.get(
    "SQLA_REPO_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
POOLER_PORT = int(os.environ.get("SQLA_REPO_BENCH_PGBOUNCER_PORT", "6432"))
REPLICA_PORT = int(os.environ.get("SQLA_REPO_BENCH_REPLICA_PORT", "5433"))


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "scale_items"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class ItemRepository(BaseRepository[Item]):
    pass


async def _median(call: Callable[[], Awaitable[Any]], rounds: int) -> float:
    for _ in range(min(200, rounds)):
        await call()
    times = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        await call()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


async def _get_by_id(maker: async_sessionmaker[AsyncSession]) -> None:
    async with maker() as session, session.begin():
        await ItemRepository(session).get(1)


def _decision_us(rounds: int) -> float:
    engine = create_async_engine("sqlite+aiosqlite://").sync_engine
    from sqla_repo.routing import _Replicas  # noqa: PLC0415 - measuring the internal choice

    session = RoutingSession(routing=(engine, _Replicas([engine], 5.0, 1.0)))
    session._replica = engine  # noqa: SLF001 - a transaction that already picked its replica
    stmt = select(Item).where(Item.id == 1)
    start = time.perf_counter_ns()
    for _ in range(rounds * 100):
        session.get_bind(clause=stmt)
    return (time.perf_counter_ns() - start) / (rounds * 100) / 1000


async def main(rounds: int) -> None:
    admin = make_url(PRIMARY)
    database = f"sqla_repo_bench_{secrets.token_hex(3)}"
    setup = create_async_engine(admin, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    async with setup.connect() as conn:
        await conn.execute(text(f"CREATE DATABASE {database}"))
    url = admin.set(database=database)
    direct = create_async_engine(url)
    pooled_url = url.set(port=POOLER_PORT)
    pooled = create_async_engine(pooled_url, **transaction_pooling_options(pooled_url))
    replica = create_async_engine(url.set(port=REPLICA_PORT))
    engines: list[AsyncEngine] = [direct, pooled, replica]
    try:
        async with direct.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            await conn.execute(Item.__table__.insert(), [{"id": 1, "name": "one"}])  # type: ignore[attr-defined]
        await asyncio.sleep(1)  # let the replica replay the table
        plain = async_sessionmaker(direct, expire_on_commit=False)
        through_pooler = async_sessionmaker(pooled, expire_on_commit=False)
        routed_to_primary = replica_sessionmaker(direct, [], expire_on_commit=False)
        routed_to_replica = replica_sessionmaker(direct, [replica], expire_on_commit=False)
        contenders = {
            "get (direct, plain session)": plain,
            "get (direct, routed session, no replica)": routed_to_primary,
            "get (plain session on the replica)": async_sessionmaker(
                replica, expire_on_commit=False
            ),
            "get (routed to the replica)": routed_to_replica,
            "get (through PgBouncer, asyncpg)": through_pooler,
        }
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(3):  # interleaved, so that load elsewhere hits every contender alike
            for name, maker in contenders.items():
                samples[name].append(await _median(lambda m=maker: _get_by_id(m), rounds))
        results = {name: statistics.median(values) for name, values in samples.items()}
        base = results["get (direct, plain session)"]
        for name, value in results.items():
            print(f"{name:45s} {value:8.1f} µs  {value / base:5.2f}x")
        print(f"{'routing decision per statement':45s} {_decision_us(rounds):8.2f} µs")
    finally:
        for engine in engines:
            await engine.dispose()
        async with setup.connect() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        await setup.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    asyncio.run(main(parser.parse_args().rounds))
