"""Profile one operation of one contender with cProfile, on the benchmark's table.

    python benchmarks/profile_op.py --backend sqlite --op create --contender sqla_repo
    python benchmarks/profile_op.py --backend postgresql --op search --sort tottime --top 40
    python benchmarks/profile_op.py --backend mariadb --op create --contender sqla_repo_sync

Runs the operation ``--calls`` times (one rolled-back session per ``--per-session``
calls, as the benchmark does) and prints the cProfile statistics, so a ratio in the
benchmark table can be traced to the functions that cost the time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys

import operations as ops
from run import BACKENDS, DEFAULT_URLS, MAIN_TABLE, Backend, seed
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from models import build


async def amain(args: argparse.Namespace) -> None:
    server = None if args.backend == "sqlite" else DEFAULT_URLS[args.backend]
    if args.url:
        server = args.url
    async with Backend(args.backend, server) as backend:
        engine = create_async_engine(backend.url)
        sync_engine: Engine | None = None
        try:
            models = build(MAIN_TABLE)
            await seed(engine, models.table, args.rows)
            maker = async_sessionmaker(engine, expire_on_commit=False)
            depth = int(args.rows * 0.9)
            async with maker() as session:
                t = models.table
                active = await session.scalar(
                    select(func.count()).select_from(t).where(t.c.status == "active")
                )
                page = await models.repo_class(session).paginate(
                    models.repo_model.id >= depth, limit=1
                )
            env = ops.Env(
                backend=args.backend,
                engine=engine,
                maker=maker,
                models=models,
                rows=args.rows,
                bulk_rows=args.bulk_rows,
                upsert_rows=args.upsert_rows,
                depth=depth,
                boundary_id=depth,
                cursor=page.next_cursor or "",
                active_total=int(active or 0),
                insert_returning=bool(engine.dialect.insert_returning),
                update_returning=bool(engine.dialect.update_returning),
            )
            sync = args.contender in ops.SYNC_CONTENDERS
            if sync:
                sync_engine = create_engine(backend.sync_url)
                env.sync_engine = sync_engine
                env.sync_maker = sessionmaker(sync_engine, expire_on_commit=False)
            op = next(
                o
                for o in ops.operations(env, reps=1, heavy_reps=1, quick=False)
                if o.name == args.op
            )
            if args.contender not in op.fns:
                # e.g. bulk_insert before the repository has the method
                sys.exit(f"{args.op} has no {args.contender} contender in this version")
            fn = op.fns[args.contender]
            sessions = max(args.calls // args.per_session, 1)
            profiler = cProfile.Profile()
            for number in range(sessions + 1):  # the first session warms the caches
                arguments = op.args(env, number, args.per_session)
                if sync:
                    assert env.sync_maker is not None
                    with env.sync_maker() as sync_session:
                        try:
                            handle = ops.make_sync_handle(env, args.contender, sync_session)
                            if not op.own_transaction:
                                # As run.py: writes are measured inside a transaction
                                # that has already run a statement.
                                sync_session.scalar(text("SELECT 1"))
                            if number:
                                profiler.enable()
                            for argument in arguments:
                                fn(env, handle, argument)
                            profiler.disable()
                        finally:
                            sync_session.rollback()
                    continue
                async with maker() as session:
                    try:
                        handle = await ops.make_handle(
                            env, args.contender, session, own_transaction=op.own_transaction
                        )
                        if not op.own_transaction:
                            await session.scalar(text("SELECT 1"))
                        if number:
                            profiler.enable()
                        for argument in arguments:
                            await fn(env, handle, argument)
                        profiler.disable()
                    finally:
                        await session.rollback()
            stats = pstats.Stats(profiler, stream=sys.stdout)
            calls = sessions * args.per_session
            # Function calls per operation do not depend on the machine's load, unlike
            # the times, which makes them the figure to compare between two versions.
            print(
                f"{args.contender} {args.op} on {args.backend}: "
                f"{stats.total_calls / calls:,.0f} function calls per call, "
                f"{stats.total_tt / calls * 1e6:,.0f} µs per call under the profiler"
            )
            restrictions: list[object] = [args.filter] if args.filter else []
            stats.strip_dirs().sort_stats(args.sort).print_stats(*restrictions, args.top)
            if args.dump:
                stats.dump_stats(args.dump)
        finally:
            if sync_engine is not None:
                sync_engine.dispose()
            await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, default="sqlite")
    parser.add_argument("--url", help="server URL (PostgreSQL/MariaDB); default: the local one")
    parser.add_argument("--op", required=True)
    parser.add_argument("--contender", default="sqla_repo", choices=ops.CONTENDERS)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--bulk-rows", type=int, default=10_000)
    parser.add_argument("--upsert-rows", type=int, default=1_000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--per-session", type=int, default=50)
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--filter", help="only functions whose file:line(name) matches this regex")
    parser.add_argument("--dump", help="also save the statistics to this file (pstats format)")
    asyncio.run(amain(parser.parse_args()))


if __name__ == "__main__":
    main()
