"""The backend matrix: URLs, per-run databases and capabilities."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from sqla_repo.routing import transaction_pooling_options

BACKENDS = ("sqlite", "postgresql", "mariadb")

POOLED = ("pgbouncer-asyncpg", "pgbouncer-psycopg")
"""PostgreSQL behind PgBouncer in transaction-pooling mode, once per driver.

Only the modules in ``conftest.POOLED_MODULES`` (the repository contract and the
concurrency races) run there; each gets a database of its own on the primary.
"""

POOLED_DRIVERS = {"pgbouncer-asyncpg": "asyncpg", "pgbouncer-psycopg": "psycopg"}

DEFAULT_URLS = {
    "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+asyncmy://root@127.0.0.1:3306/test",
    "pgbouncer": "postgresql://postgres@127.0.0.1:6432/test",
}

# What each backend can do; tests gate on these, never on the dialect name.
CAPABILITIES: dict[str, frozenset[str]] = {
    "sqlite": frozenset({"returning"}),
    "postgresql": frozenset(
        {
            "returning",
            "concurrent_writers",
            "transactional_ddl",
            "unicode_case_folding",
            "row_level_security",
        }
    ),
    "mariadb": frozenset({"concurrent_writers", "unicode_case_folding"}),
}
for _pooled in POOLED:
    CAPABILITIES[_pooled] = CAPABILITIES["postgresql"] | {"transaction_pooler"}


def server_of(name: str) -> str:
    """The server a backend needs reachable: PgBouncer for the pooled ones."""
    return "pgbouncer" if name in POOLED else name


def env_url(backend: str) -> str:
    return os.environ.get(f"SQLA_REPO_TEST_{backend.upper()}_URL", DEFAULT_URLS[backend])


@dataclass
class Backend:
    """One database server (or file) created for this test run."""

    name: str
    url: URL
    admin_url: URL | None = None
    database: str | None = None
    capabilities: frozenset[str] = field(default_factory=frozenset)

    @property
    def family(self) -> str:
        """The server family: ``sqlite``, ``postgresql`` or ``mariadb`` (pooled ones too)."""
        return "postgresql" if self.name in POOLED else self.name

    def engine(self, **kwargs: object) -> AsyncEngine:
        if self.name in POOLED:
            options = transaction_pooling_options(self.url)
            kwargs = {**options, **kwargs}
        engine = create_async_engine(self.url, **kwargs)  # type: ignore[arg-type]
        if self.name == "sqlite":
            _sqlite_transactions(engine)
        return engine


def _sqlite_transactions(engine: AsyncEngine) -> None:
    # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; let
    # SQLAlchemy emit BEGIN itself (the documented aiosqlite recipe).
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN")


async def _admin(url: URL, statement: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def _check_pooler(url: URL) -> None:
    engine = create_async_engine(url, poolclass=NullPool, **transaction_pooling_options(url))
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


def create(name: str) -> Backend:
    """Create a fresh database for this run; raise if the server is unreachable."""
    if name == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="sqla_repo_")) / "test.db"
        return Backend(
            name, make_url(f"sqlite+aiosqlite:///{path}"), capabilities=CAPABILITIES[name]
        )
    server = "postgresql" if name in POOLED else name
    admin_url = make_url(env_url(server))
    database = f"sqla_repo_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(_admin(admin_url, f"CREATE DATABASE {database}"))
    url = admin_url.set(database=database)
    if name in POOLED:
        pooler = make_url(env_url("pgbouncer"))
        url = url.set(
            drivername=f"postgresql+{POOLED_DRIVERS[name]}", host=pooler.host, port=pooler.port
        )
        asyncio.run(_check_pooler(url))
    return Backend(
        name,
        url,
        admin_url=admin_url,
        database=database,
        capabilities=CAPABILITIES[name],
    )


def drop(backend: Backend) -> None:
    if backend.admin_url is None:
        if backend.url.database:
            shutil.rmtree(Path(backend.url.database).parent, ignore_errors=True)
        return
    if backend.family == "postgresql":
        statement = f"DROP DATABASE IF EXISTS {backend.database} WITH (FORCE)"
    else:
        statement = f"DROP DATABASE IF EXISTS {backend.database}"
    asyncio.run(_admin(backend.admin_url, statement))
