"""Benchmark sqla_repo against hand-written SQLAlchemy, Core, advanced-alchemy and FastCRUD.

Every contender does the same work on the same table in the same run. Samples are
interleaved (A B C D E, B C D E A, ...), each one in a fresh session whose transaction has
run a ``SELECT 1`` before the timed calls and is rolled back afterwards (an operation that
begins and commits a transaction per call gets a session with no transaction instead),
and the median per operation is reported with its ratio to the hand-written ORM version
and to SQLAlchemy Core, and the number of SQL statements one operation sends. The
synchronous contenders (``SyncBaseRepository``, hand-written code on a ``Session``,
advanced-alchemy's sync repository) run on the same database through the backend's sync
driver (sqlite3, psycopg, PyMySQL); their ratios are to the hand-written sync ORM version.

    python benchmarks/run.py                       # the full run: SQLite, PostgreSQL, MariaDB
    python benchmarks/run.py --quick               # a smoke test of the harness (< 1 minute)
    python benchmarks/run.py --backends sqlite     # one backend

Results are printed and saved as JSON in ``benchmarks/results/`` (or ``--output``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import operations as ops
from sqlalchemy import Engine, create_engine, event, func, make_url, select, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import NullPool
from typing_extensions import Self

from models import Models, build, seed_row

HERE = Path(__file__).resolve().parent
BACKENDS = ("sqlite", "postgresql", "mariadb")
DEFAULT_URLS = {
    # Server URLs of an account that may create and drop databases; each run creates its
    # own database there and drops it at the end.
    "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+asyncmy://root@127.0.0.1:3306/test",
}
# The driver of the sync contenders on each backend: the run's URL with its driver swapped.
SYNC_DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg", "mariadb": "pymysql"}
MAIN_TABLE = "bench_items"
STREAM_TABLE = "bench_stream"

# (operation, contender to compare with, highest ratio allowed, the target as worded)
TARGETS = (
    ("get", "orm", 1.10, "get by id <= 1.10x hand-written ORM"),
    ("create", "orm", 1.10, "create <= 1.10x hand-written ORM"),
    ("create_tx", "orm", 1.10, "create, one transaction per call <= 1.10x hand-written ORM"),
    ("update", "orm", 0.80, "update by id with values <= 0.80x hand-written ORM"),
    ("delete", "orm", 0.70, "delete by id <= 0.70x hand-written ORM"),
    (
        "bulk_create_returning",
        "orm",
        1.05,
        "bulk_create <= 1.05x ORM insert(Model).returning(Model)",
    ),
    ("bulk_insert", "core", 1.30, "bulk_insert <= 1.3x Core insertmanyvalues"),
    ("search", "orm", 1.10, "search page + total <= 1.10x hand-written two-query version"),
    ("keyset_deep", "orm", 1.15, "keyset page at depth 90% <= 1.15x hand-written keyset"),
)
# The same targets for SyncBaseRepository, against hand-written code on a sync Session.
SYNC_TARGETS = (
    ("get", "orm_sync", 1.10, "sync get by id <= 1.10x hand-written sync ORM"),
    ("create", "orm_sync", 1.10, "sync create <= 1.10x hand-written sync ORM"),
    (
        "create_tx",
        "orm_sync",
        1.10,
        "sync create, one transaction per call <= 1.10x hand-written sync ORM",
    ),
    ("update", "orm_sync", 0.80, "sync update by id with values <= 0.80x hand-written sync ORM"),
    ("delete", "orm_sync", 0.70, "sync delete by id <= 0.70x hand-written sync ORM"),
    (
        "search",
        "orm_sync",
        1.10,
        "sync search page + total <= 1.10x hand-written sync two-query version",
    ),
)
# (contender judged, its ratio targets)
JUDGED = (("sqla_repo", TARGETS), ("sqla_repo_sync", SYNC_TARGETS))
# (contender, rival it should beat on every operation both run)
RIVALS = (
    ("sqla_repo", "advanced_alchemy"),
    ("sqla_repo", "fastcrud"),
    ("sqla_repo_sync", "advanced_alchemy_sync"),
)
# (contender, hand-written contender it should send no more statements than, target kind,
# the target as worded before the operation's label)
STATEMENT_PAIRS = (
    ("sqla_repo", "orm", "statements", "statements <= hand-written"),
    ("sqla_repo_sync", "orm_sync", "statements:sync", "sync statements <= hand-written sync"),
)
KEYSET_VS_PAGE1 = 1.25  # "about the cost of page 1": within 25 %
STREAM_SLACK_KIB = 16 * 1024  # "constant memory": 10x the rows may grow the peak by <= 16 MiB


def log(message: str) -> None:
    print(message, flush=True)


# -- machine and versions -------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with Path("/proc/cpuinfo").open() as lines:
        for line in lines:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with Path("/proc/meminfo").open() as lines:
        for line in lines:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
                break
    os_name = platform.platform()
    release = Path("/etc/os-release")
    if release.exists():
        match = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', release.read_text(), re.MULTILINE)
        if match:
            os_name = f"{match.group(1)} (Linux {platform.release()})"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "os": os_name,
    }


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for dist in (
        "sqla_repo",
        "sqlalchemy",
        "greenlet",
        "aiosqlite",
        "asyncpg",
        "asyncmy",
        "psycopg",
        "pymysql",
        "advanced-alchemy",
        "fastcrud",
        "pydantic",
    ):
        out[dist] = _version(dist)
    return out


def source() -> dict[str, Any]:
    """Which sqla_repo was measured: its path and, in a git checkout, the commit."""
    import sqla_repo  # noqa: PLC0415 - only to locate it

    path = Path(sqla_repo.__file__).resolve().parent
    out: dict[str, Any] = {"path": str(path)}

    def git(*args: str) -> str | None:
        done = subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else None

    out["commit"] = git("rev-parse", "HEAD")
    if out["commit"] is not None:
        out["modified_files"] = (git("status", "--porcelain", "--", ".") or "").splitlines()
    return out


# -- backends ---------------------------------------------------------------------------


async def _admin(url: URL, statement: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


class Backend:
    """A database made for this run and dropped at the end."""

    def __init__(self, name: str, server_url: str | None) -> None:
        self.name = name
        self.server_url = make_url(server_url) if server_url else None
        self.database = f"sqla_repo_bench_{os.getpid()}"
        self.tmpdir: str | None = None
        self.url: URL

    async def __aenter__(self) -> Self:
        if self.name == "sqlite":
            self.tmpdir = tempfile.mkdtemp(prefix="bench-sqlite-")
            self.url = make_url(f"sqlite+aiosqlite:///{self.tmpdir}/bench.db")
            return self
        assert self.server_url is not None
        if self.name == "postgresql":
            await _admin(self.server_url, f'DROP DATABASE IF EXISTS "{self.database}"')
            await _admin(self.server_url, f'CREATE DATABASE "{self.database}"')
        else:
            await _admin(
                self.server_url, f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4"
            )
        self.url = self.server_url.set(database=self.database)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        elif self.name == "postgresql":
            assert self.server_url is not None
            await _admin(self.server_url, f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        elif self.server_url is not None:
            await _admin(self.server_url, f"DROP DATABASE IF EXISTS `{self.database}`")

    @property
    def sync_url(self) -> URL:
        """The run's database through the backend's sync driver."""
        return self.url.set(drivername=f"{self.url.get_backend_name()}+{SYNC_DRIVERS[self.name]}")


async def server_version(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return "SQLite " + str(await conn.scalar(text("select sqlite_version()")))
        return str(await conn.scalar(text("select version()")))


async def seed(engine: AsyncEngine, table: Any, total: int) -> float:
    """Create *table* and fill it with *total* deterministic rows; return the seconds."""
    start = time.perf_counter()
    async with engine.begin() as conn:
        await conn.run_sync(table.create)
        chunk = 10_000
        for first in range(1, total + 1, chunk):
            rows = [seed_row(i, total) for i in range(first, min(first + chunk, total + 1))]
            await conn.execute(table.insert(), rows)
    async with engine.connect() as conn:
        low, high, count = (
            await conn.execute(select(func.min(table.c.id), func.max(table.c.id), func.count()))
        ).one()
    if (low, high, count) != (1, total, total):
        msg = f"seeding gave keys {low}..{high} for {count} rows; expected 1..{total}"
        raise RuntimeError(msg)
    # Fresh statistics (and, on PostgreSQL, a visibility map) as autovacuum would leave.
    auto = await engine.connect()
    try:
        conn = await auto.execution_options(isolation_level="AUTOCOMMIT")
        if engine.dialect.name == "postgresql":
            await conn.execute(text(f"VACUUM ANALYZE {table.name}"))
        elif engine.dialect.name == "sqlite":
            await conn.execute(text("ANALYZE"))
        else:
            await conn.execute(text(f"ANALYZE TABLE {table.name}"))
    finally:
        await auto.close()
    return time.perf_counter() - start


# -- timing -----------------------------------------------------------------------------


class StatementCounter:
    """Counts the statements sent to the database while attached."""

    def __init__(self, engine: AsyncEngine | Engine) -> None:
        self.engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
        self.count = 0

    def _on_execute(self, *_: object) -> None:
        self.count += 1

    def __enter__(self) -> Self:
        self.count = 0
        event.listen(self.engine, "before_cursor_execute", self._on_execute)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._on_execute)


# What each sample's transaction runs before the timed calls (and before the statement
# count). session.connection() alone sends nothing on asyncpg and psycopg: BEGIN goes out
# with the transaction's first statement. The first measured call would then be its
# transaction's first statement, which sqla_repo writes without a SAVEPOINT on
# PostgreSQL, and the later calls of the sample would not. With this statement first,
# every call of every contender is measured as a statement in a transaction already
# under way; the own_transaction operations measure the other shape.
WARM_TRANSACTION = text("SELECT 1")


async def checked_call(
    env: ops.Env, op: ops.Operation, contender: str, arg: Any, *, check: bool = True
) -> int:
    """Run one call in its own rolled-back session and return its statement count.

    The session's transaction runs ``SELECT 1`` first, outside the count, unless the
    operation begins its own transaction. With *check*, the operation's check then
    verifies the call's effect in that session.
    """
    fn = op.fns[contender]
    if contender in ops.SYNC_CONTENDERS:
        assert env.sync_engine is not None
        assert env.sync_maker is not None
        with env.sync_maker() as sync_session:
            try:
                handle = ops.make_sync_handle(env, contender, sync_session)
                if not op.own_transaction:
                    sync_session.scalar(WARM_TRANSACTION)
                with StatementCounter(env.sync_engine) as counter:
                    result = fn(env, handle, arg)
                if check and op.check is not None:
                    await op.check(env, ops.SyncReader(sync_session), arg, result)  # type: ignore[arg-type]
                return counter.count
            finally:
                sync_session.rollback()
    async with env.maker() as session:
        try:
            handle = await ops.make_handle(
                env, contender, session, own_transaction=op.own_transaction
            )
            if not op.own_transaction:
                await session.scalar(WARM_TRANSACTION)
            with StatementCounter(env.engine) as counter:
                result = await fn(env, handle, arg)
            if check and op.check is not None:
                await op.check(env, session, arg, result)
            return counter.count
        finally:
            await session.rollback()


async def timed_sample(env: ops.Env, op: ops.Operation, contender: str, args: list[Any]) -> float:
    """Time *contender* on each of *args* in one fresh session, rolled back after.

    Returns seconds per call. The session's transaction runs ``SELECT 1`` outside the
    timing, unless the operation begins its own transaction per call: then the session
    starts with none.
    """
    fn = op.fns[contender]
    if contender in ops.SYNC_CONTENDERS:
        assert env.sync_maker is not None
        with env.sync_maker() as sync_session:
            try:
                handle = ops.make_sync_handle(env, contender, sync_session)
                if not op.own_transaction:
                    # Check out, begin and run a statement outside the timing.
                    sync_session.scalar(WARM_TRANSACTION)
                start = time.perf_counter()
                for arg in args:
                    fn(env, handle, arg)
                elapsed = time.perf_counter() - start
            finally:
                sync_session.rollback()
        return elapsed / len(args)
    async with env.maker() as session:
        try:
            handle = await ops.make_handle(
                env, contender, session, own_transaction=op.own_transaction
            )
            if not op.own_transaction:
                # Check out, begin and run a statement outside the timing.
                await session.scalar(WARM_TRANSACTION)
            start = time.perf_counter()
            for arg in args:
                await fn(env, handle, arg)
            elapsed = time.perf_counter() - start
        finally:
            await session.rollback()
    return elapsed / len(args)


async def run_operation(env: ops.Env, op: ops.Operation, contenders: list[str]) -> dict[str, Any]:
    names = [c for c in ops.CONTENDERS if c in contenders and c in op.fns]
    out: dict[str, Any] = {"label": op.label, "per_sample": op.per_sample, "contenders": {}}
    warm_up = 10**6  # a rep number no timed sample uses
    for contender in names:
        args = op.args(env, warm_up, 2)
        if len(args) < 2:
            args = args * 2
        await checked_call(env, op, contender, args[0], check=False)  # caches, first connect
        statements = await checked_call(env, op, contender, args[1])
        out["contenders"][contender] = {"statements": statements, "samples": []}
    # Everything alive now stays: freezing it keeps the collection before each sample short.
    gc.collect()
    gc.freeze()
    for rep in range(op.reps):
        # An own-transaction operation commits its rows: each sample needs rows of its own.
        shared = None if op.own_transaction else op.args(env, rep, op.per_sample)
        shift = rep % len(names)
        for contender in names[shift:] + names[:shift]:
            args = shared if shared is not None else op.args(env, rep, op.per_sample)
            gc.collect()
            per_call = await timed_sample(env, op, contender, args)
            out["contenders"][contender]["samples"].append(per_call)
    gc.unfreeze()
    if op.cleanup is not None:  # e.g. delete the rows an own-transaction operation committed
        await op.cleanup(env)
    for stats in out["contenders"].values():
        stats["median_s"] = statistics.median(stats["samples"])
    medians = {c: s["median_s"] for c, s in out["contenders"].items()}
    for stats in out["contenders"].values():
        # ratio_to_orm_sync where the sync contenders ran: it is their yardstick
        for base in ("orm", "core", "orm_sync"):
            if base in medians:
                stats[f"ratio_to_{base}"] = stats["median_s"] / medians[base]
    return out


async def count_strategies(env: ops.Env, reps: int, per_sample: int) -> dict[str, Any]:
    """Time a window COUNT(*) OVER () page against a page plus a separate COUNT."""
    t = env.models.table
    order = (t.c.created_at.desc(), t.c.id)
    out: dict[str, Any] = {}
    for status in ("active", "archived"):
        where = t.c.status == status
        window = (
            select(t, func.count().over().label("total"))
            .where(where)
            .order_by(*order)
            .limit(ops.PAGE)
        )
        page = select(t).where(where).order_by(*order).limit(ops.PAGE)
        counter = select(func.count()).select_from(t).where(where)

        async def by_window(conn: Any, window: Any = window) -> int:
            rows = (await conn.execute(window)).all()
            return int(rows[0].total)

        async def separate(conn: Any, page: Any = page, counter: Any = counter) -> int:
            (await conn.execute(page)).all()
            return int((await conn.execute(counter)).scalar_one())

        strategies = {"window": by_window, "separate_count": separate}
        samples: dict[str, list[float]] = {name: [] for name in strategies}
        totals = set()
        async with env.engine.connect() as conn:
            for fn in strategies.values():
                totals.add(await fn(conn))
            for rep in range(reps):
                names = list(strategies)[rep % 2 :] + list(strategies)[: rep % 2]
                for name in names:
                    start = time.perf_counter()
                    for _ in range(per_sample):
                        await strategies[name](conn)
                    samples[name].append((time.perf_counter() - start) / per_sample)
            await conn.rollback()
        if len(totals) != 1:
            msg = f"count strategies disagree: {totals}"
            raise RuntimeError(msg)
        window_s = statistics.median(samples["window"])
        separate_s = statistics.median(samples["separate_count"])
        out[status] = {
            "matching_rows": totals.pop(),
            "window_s": window_s,
            "separate_count_s": separate_s,
            "window_over_separate": window_s / separate_s,
            "samples": samples,
        }
    return out


def stream_runs(url: URL, rows: int, *, both_sizes: bool) -> dict[str, Any]:
    """Stream in a subprocess per contender and row count; collect peak RSS.

    With *both_sizes*, a tenth of the rows is streamed too: constant memory means the
    peak does not grow with the row count.
    """
    out: dict[str, Any] = {}
    sizes = sorted({max(rows // 10, 1), rows}) if both_sizes else [rows]
    for limit in sizes:
        for contender in ("core", "orm", "sqla_repo", "orm_all"):
            command = [
                sys.executable,
                str(HERE / "stream.py"),
                "--url",
                url.render_as_string(hide_password=False),
                "--table",
                STREAM_TABLE,
                "--contender",
                contender,
                "--limit",
                str(limit),
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                msg = f"stream.py {contender} failed:\n{done.stderr}"
                raise RuntimeError(msg)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            if result["rows"] != limit:
                msg = f"stream.py {contender} read {result['rows']} rows, expected {limit}"
                raise RuntimeError(msg)
            out.setdefault(contender, {})[str(limit)] = result
            log(
                f"    stream {contender:<10} {limit:>9,} rows: {result['seconds']:7.2f} s, "
                f"peak RSS +{result['rss_growth_kib'] / 1024:7.1f} MiB "
                f"(total {result['rss_peak_kib'] / 1024:.0f} MiB)"
            )
    return out


# -- import time ------------------------------------------------------------------------

IMPORTS = {
    "sqla_repo": "import sqla_repo",
    "sqlalchemy (orm + asyncio)": "import sqlalchemy.orm, sqlalchemy.ext.asyncio",
    "advanced_alchemy.repository": "import advanced_alchemy.repository",
    "fastcrud": "import fastcrud",
}


def _importtime_top(code: str, baseline: set[str]) -> tuple[float, set[str]]:
    """Sum the cumulative -X importtime of top-level imports not in *baseline* (us)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    total = 0.0
    names = set()
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not match or match.group(3) != " ":
            continue  # nested imports are inside a top-level one's cumulative time
        name = match.group(4)
        names.add(name)
        if name not in baseline:
            total += int(match.group(2))
    return total, names


def import_times(runs: int) -> dict[str, Any]:
    def wall(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - start

    _, baseline = _importtime_top("pass", set())
    out: dict[str, Any] = {}
    bare = statistics.median(wall("pass") for _ in range(runs))
    out["interpreter_start_s"] = bare
    for label, code in IMPORTS.items():
        try:
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError:
            out[label] = None
            continue
        walls = []
        importtimes = []
        for _ in range(runs):
            walls.append(wall(code))
            importtimes.append(_importtime_top(code, baseline)[0])
        out[label] = {
            "wall_minus_interpreter_s": statistics.median(walls) - bare,
            "importtime_cumulative_s": statistics.median(importtimes) / 1e6,
        }
    leaked = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, sqla_repo; print(','.join(m for m in ('fastapi', 'pydantic') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    out["sqla_repo_imports_fastapi_or_pydantic"] = leaked or None
    return out


# -- one backend ------------------------------------------------------------------------


async def run_backend(
    name: str, args: argparse.Namespace, params: dict[str, Any], models: Models, stream_table: Any
) -> dict[str, Any]:
    server = None if name == "sqlite" else getattr(args, f"{name}_url")
    result: dict[str, Any] = {}
    async with Backend(name, server) as backend:
        engine = create_async_engine(backend.url)
        sync_engine: Engine | None = None
        try:
            result["server"] = await server_version(engine)
            result["url"] = backend.url.render_as_string(hide_password=True)
            log(f"\n== {name}: {result['server']}")
            result["load_average_before"] = os.getloadavg()
            seconds = await seed(engine, models.table, params["rows"])
            log(f"  seeded {params['rows']:,} rows in {seconds:.1f} s")
            maker = async_sessionmaker(engine, expire_on_commit=False)
            depth = int(params["rows"] * 0.9)
            async with maker() as session:
                t = models.table
                active = await session.scalar(
                    select(func.count()).select_from(t).where(t.c.status == "active")
                )
                # The cursor of the row at the depth: sqla_repo cursors are opaque, so it
                # comes from a page whose first row is that row.
                repo = models.repo_class(session)
                start_page = await repo.paginate(models.repo_model.id >= depth, limit=1)
                cursor = start_page.next_cursor
                assert cursor is not None
            env = ops.Env(
                backend=name,
                engine=engine,
                maker=maker,
                models=models,
                rows=params["rows"],
                bulk_rows=params["bulk_rows"],
                upsert_rows=params["upsert_rows"],
                depth=depth,
                boundary_id=depth,
                cursor=cursor,
                active_total=int(active or 0),
                insert_returning=bool(engine.dialect.insert_returning),
                update_returning=bool(engine.dialect.update_returning),
            )
            if set(args.contenders) & set(ops.SYNC_CONTENDERS):
                try:
                    sync_engine = create_engine(backend.sync_url)
                except ImportError as exc:  # the driver is missing: skip the sync contenders
                    log(f"  sync contenders skipped: {exc}")
                else:
                    env.sync_engine = sync_engine
                    env.sync_maker = sessionmaker(sync_engine, expire_on_commit=False)
                    result["sync_url"] = backend.sync_url.render_as_string(hide_password=True)
            contenders = sorted(ops.available(env) & set(args.contenders))
            operations = ops.operations(
                env, reps=params["reps"], heavy_reps=params["heavy_reps"], quick=args.quick
            )
            result["operations"] = {}
            for op in operations:
                if args.ops and op.name not in args.ops:
                    continue
                started = time.perf_counter()
                result["operations"][op.name] = await run_operation(env, op, contenders)
                log(f"  {op.label:<52} {time.perf_counter() - started:6.1f} s")
            if not args.ops or "count_strategy" in args.ops:
                result["count_strategy"] = await count_strategies(
                    env, reps=params["reps"], per_sample=params["count_per_sample"]
                )
                log("  count strategies measured")
            if params["stream_rows"] and (not args.ops or "stream" in args.ops):
                seconds = await seed(engine, stream_table, params["stream_rows"])
                log(f"  seeded {params['stream_rows']:,} stream rows in {seconds:.1f} s")
                result["stream"] = await asyncio.to_thread(
                    stream_runs, backend.url, params["stream_rows"], both_sizes=not args.quick
                )
        finally:
            if sync_engine is not None:
                sync_engine.dispose()
            await engine.dispose()
    result["load_average_after"] = os.getloadavg()
    return result


# -- report -----------------------------------------------------------------------------


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} us"


def _print_table(
    operations: dict[str, Any], contenders: tuple[str, ...], second: Callable[..., float | None]
) -> None:
    header = f"{'operation':<46}" + "".join(f"{ops.LABELS[c]:>28}" for c in contenders)
    log(header)
    log("-" * len(header))
    for op in operations.values():
        if not any(c in op["contenders"] for c in contenders):
            continue
        cells = []
        for contender in contenders:
            stats = op["contenders"].get(contender)
            if stats is None:
                cells.append(f"{'n/a':>28}")
                continue
            other = second(op, contender)
            cell = (
                f"{fmt_time(stats['median_s'])} "
                f"x{stats[f'ratio_to_{ops.yardstick(contender)}']:.2f}"
                f"/{'-' if other is None else f'x{other:.2f}'} "
                f"[{stats['statements']}]"
            )
            cells.append(f"{cell:>28}")
        log(f"{op['label'][:46]:<46}" + "".join(cells))


def _to_core(op: dict[str, Any], contender: str) -> float | None:
    return op["contenders"][contender].get("ratio_to_core")


def _to_async_twin(op: dict[str, Any], contender: str) -> float | None:
    twin = op["contenders"].get(ops.ASYNC_TWIN[contender])
    return None if twin is None else op["contenders"][contender]["median_s"] / twin["median_s"]


def print_backend(name: str, result: dict[str, Any]) -> None:
    log(f"\n=== {name}: {result['server']}")
    operations = result["operations"]
    _print_table(operations, ops.ASYNC_CONTENDERS, _to_core)
    log("cell: median per operation, x ratio to hand-written ORM / x ratio to Core, [statements]")
    if any(c in op["contenders"] for op in operations.values() for c in ops.SYNC_CONTENDERS):
        log(f"\n--- {name}, sync: {result.get('sync_url', '')}")
        _print_table(operations, ops.SYNC_CONTENDERS, _to_async_twin)
        log(
            "cell: median per operation, x ratio to hand-written sync ORM / "
            "x ratio to the same contender's async form, [statements]"
        )
    counts = result.get("count_strategy")
    if counts:
        for status, figures in counts.items():
            log(
                f"count strategy, {figures['matching_rows']:,} rows match ({status}): "
                f"window {fmt_time(figures['window_s'])}, "
                f"page + separate COUNT {fmt_time(figures['separate_count_s'])}, "
                f"window / separate = {figures['window_over_separate']:.2f}"
            )


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Judge each target of the benchmark issue on each backend measured."""
    out: list[dict[str, Any]] = []
    for backend, result in results["backends"].items():
        operations = result.get("operations", {})
        for judged, targets in JUDGED:
            for op_name, against, limit, wording in targets:
                op = operations.get(op_name)
                if op is None or judged not in op["contenders"] or against not in op["contenders"]:
                    continue
                ratio = op["contenders"][judged][f"ratio_to_{against}"]
                out.append(
                    {
                        "backend": backend,
                        "target": wording,
                        "figure": ratio,
                        "met": ratio <= limit,
                        "kind": "ratio",
                        "op": op_name,
                        "contender": judged,
                        "against": against,
                        "limit": limit,
                    }
                )
        first, deep = operations.get("keyset_first"), operations.get("keyset_deep")
        if first and deep and "sqla_repo" in deep["contenders"]:
            ratio = (
                deep["contenders"]["sqla_repo"]["median_s"]
                / first["contenders"]["sqla_repo"]["median_s"]
            )
            out.append(
                {
                    "backend": backend,
                    "target": f"keyset page at depth 90% about the cost of page 1 (<= {KEYSET_VS_PAGE1}x)",
                    "figure": ratio,
                    "met": ratio <= KEYSET_VS_PAGE1,
                    "kind": "keyset_vs_page1",
                    "op": "keyset_deep",
                    "limit": KEYSET_VS_PAGE1,
                }
            )
        for contender, rival in RIVALS:
            who = "" if contender == "sqla_repo" else f"{ops.LABELS[contender]} "
            for op_name, op in operations.items():
                stats = op["contenders"]
                if rival not in stats or contender not in stats or op_name == "search_filters":
                    continue
                ratio = stats[contender]["median_s"] / stats[rival]["median_s"]
                out.append(
                    {
                        "backend": backend,
                        "target": f"{who}faster than {ops.LABELS[rival]}: {op['label']}",
                        "figure": ratio,
                        "met": ratio < 1,
                        "kind": f"faster:{rival}",
                        "op": op_name,
                    }
                )
        for contender, hand, kind, wording in STATEMENT_PAIRS:
            for op_name, op in operations.items():
                stats = op["contenders"]
                if contender not in stats or hand not in stats or op_name == "search_filters":
                    continue
                mine, theirs = stats[contender]["statements"], stats[hand]["statements"]
                out.append(
                    {
                        "backend": backend,
                        "target": f"{wording}: {op['label']}",
                        "figure": f"{mine} vs {theirs}",
                        "met": mine <= theirs,
                        "kind": kind,
                        "op": op_name,
                    }
                )
        stream = result.get("stream", {}).get("sqla_repo")
        if stream and len(stream) == 2:
            small, large = (stream[k] for k in sorted(stream, key=int))
            growth = large["rss_growth_kib"] - small["rss_growth_kib"]
            out.append(
                {
                    "backend": backend,
                    "target": f"stream at constant memory ({large['rows']:,} vs {small['rows']:,} rows)",
                    "figure": f"{large['rss_growth_kib'] / 1024:.1f} MiB vs {small['rss_growth_kib'] / 1024:.1f} MiB",
                    "met": growth <= STREAM_SLACK_KIB,
                    "kind": "stream",
                }
            )
    return out


def print_targets(targets: list[dict[str, Any]]) -> None:
    log("\n=== targets")
    for target in targets:
        figure = target["figure"]
        shown = f"{figure:.2f}x" if isinstance(figure, float) else str(figure)
        log(
            f"{'met   ' if target['met'] else 'MISSED'} {target['backend']:<11} {target['target']}: {shown}"
        )


def strip_samples(results: dict[str, Any]) -> None:
    """Keep the samples (they are small), rounded to nanoseconds."""
    for result in results["backends"].values():
        for op in result.get("operations", {}).values():
            for stats in op["contenders"].values():
                stats["samples"] = [round(s, 9) for s in stats["samples"]]


# -- main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and few repetitions (CI smoke test)"
    )
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated: sqlite,postgresql,mariadb"
    )
    parser.add_argument(
        "--postgresql-url",
        default=os.environ.get("SQLA_REPO_BENCH_POSTGRESQL_URL", DEFAULT_URLS["postgresql"]),
        help="server URL of an account that may create databases",
    )
    parser.add_argument(
        "--mariadb-url",
        default=os.environ.get("SQLA_REPO_BENCH_MARIADB_URL", DEFAULT_URLS["mariadb"]),
        help="server URL of an account that may create databases",
    )
    parser.add_argument("--rows", type=int, help="rows in the main table (default 100,000)")
    parser.add_argument("--bulk-rows", type=int, help="rows per bulk create (default 10,000)")
    parser.add_argument("--upsert-rows", type=int, help="rows per upsert (default 1,000)")
    parser.add_argument(
        "--stream-rows", type=int, help="rows streamed (default 1,000,000; 0 skips)"
    )
    parser.add_argument("--reps", type=int, help="timed samples per contender (default 31)")
    parser.add_argument("--heavy-reps", type=int, help="samples for bulk operations (default 31)")
    parser.add_argument("--ops", default="", help="comma-separated operation names (default: all)")
    parser.add_argument(
        "--contenders", default=",".join(ops.CONTENDERS), help="comma-separated contenders"
    )
    parser.add_argument("--import-runs", type=int, help="runs per import-time figure (default 21)")
    parser.add_argument(
        "--output", type=Path, help="JSON file (default benchmarks/results/<time>.json)"
    )
    args = parser.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    for backend in args.backends:
        if backend not in BACKENDS:
            parser.error(f"unknown backend {backend!r}")
    args.ops = [o for o in args.ops.split(",") if o]
    args.contenders = [c for c in args.contenders.split(",") if c]
    if "orm" not in args.contenders or "core" not in args.contenders:
        parser.error("the ratios need the core and orm contenders")
    for contender in args.contenders:
        if contender not in ops.CONTENDERS:
            parser.error(f"unknown contender {contender!r}")
    if set(args.contenders) & set(ops.SYNC_CONTENDERS) and "orm_sync" not in args.contenders:
        parser.error("the sync contenders' ratios need the orm_sync contender")
    return args


def params_for(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    params = {
        "rows": 2_000 if quick else 100_000,
        "bulk_rows": 1_000 if quick else 10_000,
        "upsert_rows": 200 if quick else 1_000,
        "stream_rows": 5_000 if quick else 1_000_000,
        "reps": 3 if quick else 31,
        "heavy_reps": 3 if quick else 31,
        "count_per_sample": 2 if quick else 5,
        "import_runs": 1 if quick else 21,
    }
    for key in params:
        value = getattr(args, key, None)
        if value is not None:
            params[key] = value
    return params


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    params = params_for(args)
    results: dict[str, Any] = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "params": params,
        "machine": machine(),
        "versions": versions(),
        "source": source(),
        "backends": {},
    }
    # Mapped once: the mappings do not depend on the backend.
    models = build(MAIN_TABLE)
    stream_table = build(STREAM_TABLE, competitors=False).table
    for name in args.backends:
        results["backends"][name] = await run_backend(name, args, params, models, stream_table)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    results = asyncio.run(amain(args))
    if not args.ops or "import" in args.ops:
        results["import_time"] = import_times(results["params"]["import_runs"])
    for name, result in results["backends"].items():
        print_backend(name, result)
    if "import_time" in results:
        log("\n=== import time (median; wall clock minus a bare interpreter / -X importtime)")
        for label, figures in results["import_time"].items():
            if isinstance(figures, dict):
                log(
                    f"{label:<30} {figures['wall_minus_interpreter_s'] * 1e3:7.1f} ms / "
                    f"{figures['importtime_cumulative_s'] * 1e3:7.1f} ms"
                )
        leaked = results["import_time"]["sqla_repo_imports_fastapi_or_pydantic"]
        log(f"import sqla_repo pulls in fastapi/pydantic: {leaked or 'no'}")
    results["targets"] = evaluate_targets(results)
    print_targets(results["targets"])
    strip_samples(results)
    results["seconds"] = round(time.perf_counter() - started, 1)
    output = args.output
    if output is None:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%SZ")
        output = HERE / "results" / f"{stamp}{'-quick' if args.quick else ''}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=1) + "\n")
    log(f"\nsaved {output} ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
