"""Where the time of a keyset page at depth goes: the floor of ``paginate()``.

    python benchmarks/keyset_steps.py --backend postgresql

On the benchmark's table (100,000 rows, the page at 90 % depth, 50 rows), each sample
runs in one fresh session, as ``run.py`` does, and times per call:

* ``orm``: the hand-written keyset query on the hand-written model;
* ``orm_utc``: the same query on sqla_repo's mapped class (aware-UTC timestamps);
* ``cursor``: what a secure cursor costs, timed right after that query, with the CPU
  caches as the page left them: authenticating and decrypting the incoming cursor and
  encrypting the next and previous ones (``decode_cursor`` + 2 ``encode_cursor``);
* ``paginate``: ``BaseRepository.paginate()``, cursor in, both cursors out.

``orm_utc + cursor`` is the floor of a page that hands out encrypted cursors; what
``paginate`` costs above it is the repository's own work.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from typing import Any

import operations as ops
from run import BACKENDS, DEFAULT_URLS, MAIN_TABLE, Backend, seed
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from models import build
from sqla_repo.pagination import cursor_scope, cursor_spec, decode_cursor, encode_cursor


async def _sample(maker: Any, calls: int, step: Any) -> float:
    async with maker() as session:
        try:
            await session.scalar(select(1))
            elapsed = 0.0
            for _ in range(calls):
                elapsed += await step(session)
        finally:
            await session.rollback()
    return elapsed / calls


async def amain(args: argparse.Namespace) -> None:
    server = args.url or (None if args.backend == "sqlite" else DEFAULT_URLS[args.backend])
    async with Backend(args.backend, server) as backend:
        engine = create_async_engine(backend.url)
        try:
            models = build(MAIN_TABLE, competitors=False)
            await seed(engine, models.table, args.rows)
            maker = async_sessionmaker(engine, expire_on_commit=False)
            depth = int(args.rows * 0.9)
            hand, model, repo_class = models.hand, models.repo_model, models.repo_class
            async with maker() as session:
                page = await repo_class(session).paginate(model.id >= depth, limit=1)
            cursor = page.next_cursor
            assert cursor is not None
            keys = repo_class(AsyncSession())._order(None)  # noqa: SLF001 - its sort keys
            spec = cursor_spec(model, keys)
            scope = cursor_scope(repo_class)

            def query(mapped: Any) -> Any:
                after = select(mapped).where(mapped.id > depth).order_by(mapped.id)
                return after.limit(ops.PAGE + 1)

            async def orm(session: AsyncSession) -> float:
                start = time.perf_counter()
                (await session.scalars(query(hand))).all()
                return time.perf_counter() - start

            async def orm_utc(session: AsyncSession) -> float:
                start = time.perf_counter()
                (await session.scalars(query(model))).all()
                return time.perf_counter() - start

            async def cursor_work(session: AsyncSession) -> float:
                rows = (await session.scalars(query(model))).all()
                start = time.perf_counter()
                decode_cursor(cursor, spec=spec, scope=scope)
                encode_cursor([rows[-2].id], spec=spec, scope=scope)
                encode_cursor([rows[0].id], spec=spec, scope=scope)
                return time.perf_counter() - start

            async def paginate(session: AsyncSession) -> float:
                repo = repo_class(session)
                start = time.perf_counter()
                await repo.paginate(limit=ops.PAGE, after=cursor)
                return time.perf_counter() - start

            steps = {"orm": orm, "orm_utc": orm_utc, "cursor": cursor_work, "paginate": paginate}
            for step in steps.values():  # warm the caches
                await _sample(maker, 2, step)
            samples: dict[str, list[float]] = {name: [] for name in steps}
            gc.collect()
            gc.freeze()
            for rep in range(args.reps):
                names = list(steps)[rep % len(steps) :] + list(steps)[: rep % len(steps)]
                for name in names:
                    gc.collect()
                    samples[name].append(await _sample(maker, args.calls, steps[name]))
            gc.unfreeze()
            medians = {name: statistics.median(values) for name, values in samples.items()}
            base = medians["orm"]
            print(f"keyset page at depth {depth:,} on {args.backend}, medians of {args.reps}:")
            for name, value in medians.items():
                print(f"  {name:9} {value * 1e6:7.0f} µs  {value / base:5.2f}x orm")
            floor = medians["orm_utc"] + medians["cursor"]
            print(f"  floor     {floor * 1e6:7.0f} µs  {floor / base:5.2f}x orm (orm_utc + cursor)")
        finally:
            await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, default="sqlite")
    parser.add_argument("--url", help="server URL (PostgreSQL/MariaDB); default: the local one")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=31)
    parser.add_argument("--calls", type=int, default=10)
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
