"""Stream rows of the stream table in a process of its own and report its peak RSS.

Run by ``run.py`` once per contender and row count, so that one contender's peak memory
cannot hide another's. Prints one JSON object on stdout.

    python benchmarks/stream.py --url URL --table bench_stream --contender sqla_repo --limit 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from models import build

BATCH = 1000
CONTENDERS = ("core", "orm", "sqla_repo", "orm_all")


def peak_rss_kib() -> int:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def consume(contender: str, url: str, table: str, limit: int) -> dict[str, Any]:
    models = build(table, competitors=False)
    engine = create_async_engine(url)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    t, hand, repo_model = models.table, models.hand, models.repo_model
    try:
        # Warm up the same code path on a few rows so imports, connections and statement
        # caches are in place before the baseline is taken.
        async with maker() as session:
            await session.execute(select(t).limit(10))
            await session.scalars(select(hand).limit(10))
            async for _ in models.repo_class(session).stream(repo_model.id <= 10, batch_size=BATCH):
                pass
        gc.collect()
        before = peak_rss_kib()
        rows = 0
        checksum = 0
        start = time.perf_counter()
        async with maker() as session:
            if contender == "core":
                conn = await session.connection()
                stmt = select(t).where(t.c.id <= limit).order_by(t.c.id)
                result = await conn.stream(stmt.execution_options(yield_per=BATCH))
                async for row in result:
                    rows += 1
                    checksum += row.score
            elif contender == "orm":
                stmt = select(hand).where(hand.id <= limit).order_by(hand.id)
                scalars = await session.stream_scalars(stmt.execution_options(yield_per=BATCH))
                async for obj in scalars:
                    rows += 1
                    checksum += obj.score
            elif contender == "sqla_repo":
                repo = models.repo_class(session)
                async for obj in repo.stream(repo_model.id <= limit, batch_size=BATCH):
                    rows += 1
                    checksum += obj.score
            elif contender == "orm_all":
                # Not a stream: every row loaded at once, for contrast.
                stmt = select(hand).where(hand.id <= limit).order_by(hand.id)
                for obj in (await session.scalars(stmt)).all():
                    rows += 1
                    checksum += obj.score
            else:
                msg = f"unknown contender {contender!r}"
                raise SystemExit(msg)
        seconds = time.perf_counter() - start
        peak = peak_rss_kib()
    finally:
        await engine.dispose()
    return {
        "contender": contender,
        "rows": rows,
        "checksum": checksum,
        "seconds": seconds,
        "rss_before_kib": before,
        "rss_peak_kib": peak,
        "rss_growth_kib": peak - before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--contender", required=True, choices=CONTENDERS)
    parser.add_argument("--limit", type=int, required=True)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(consume(args.contender, args.url, args.table, args.limit))))


if __name__ == "__main__":
    main()
