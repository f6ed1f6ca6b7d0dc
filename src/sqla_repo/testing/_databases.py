"""Per-run test databases: create one per configured URL, drop it at the end."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from collections.abc import Coroutine, Sequence

    from sqlalchemy.engine import URL
    from sqlalchemy.sql.schema import MetaData

__all__ = ["DEFAULT_URL", "TestDatabase", "create", "create_schema", "drop", "engine", "ids"]

DEFAULT_URL = "sqlite+aiosqlite://"
"""Used when no URL is configured: an SQLite file in a temporary directory."""

ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "mysql": "mysql+asyncmy",
    "mariadb": "mariadb+asyncmy",
}
"""The driver given to a URL that names none (``postgresql://…``)."""


@dataclass(frozen=True)
class TestDatabase:
    """A database created for this test run.

    Attributes:
        id: The name of the backend in test ids (``sqlite``, ``postgresql``, ``mariadb``…).
        url: Where the tests connect: the database made for this run.
        family: The server family: ``sqlite``, ``postgresql``, ``mariadb`` or ``mysql``.
        server_url: The configured URL, used to create and drop the database
            (``None`` for SQLite).
        database: The name of the database made on the server (the file path on SQLite).
    """

    __test__ = False  # not a test class, whatever its name

    id: str
    url: URL
    family: str
    server_url: URL | None = None
    database: str | None = None


class DatabaseError(Exception):
    """A configured database server could not be used; the message names it."""


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    # A private loop: the test loops of pytest-asyncio are neither touched nor needed.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def normalise(value: str) -> URL:
    """Parse a configured URL and give it the default async driver if it names none."""
    url = make_url(value)
    if "+" not in url.drivername and url.drivername in ASYNC_DRIVERS:
        url = url.set(drivername=ASYNC_DRIVERS[url.drivername])
    return url


def _masked(message: str) -> str:
    """*message* with the password of every ``scheme://user:password@`` in it masked."""
    return re.sub(r"(://[^/@:\s]*:)[^@\s]*@", r"\1***@", message)


def shown(url: URL) -> str:
    """The URL as reports show it, password masked."""
    return url.render_as_string(hide_password=True)


def engine(url: URL, **options: Any) -> AsyncEngine:
    """An async engine for *url*; on SQLite, with working SAVEPOINTs and foreign keys."""
    created = create_async_engine(url, **options)
    if url.get_backend_name() == "sqlite":
        _sqlite_transactions(created)
    return created


SYNC_DRIVERS: dict[str, str] = {
    "sqlite": "pysqlite",
    "postgresql": "psycopg",
    "mysql": "pymysql",
    "mariadb": "pymysql",
}
"""The synchronous driver used for each backend's sync fixtures."""


def sync_engine(url: URL, **options: Any) -> Engine:
    """A synchronous engine on the database of *url* (same server, same database).

    The driver is the backend's synchronous one (``SYNC_DRIVERS``); on SQLite, with
    working SAVEPOINTs and foreign keys, like the async engine.
    """
    backend = url.get_backend_name()
    driver = SYNC_DRIVERS.get(backend)
    if driver is None:
        msg = f"no synchronous driver is known for {backend!r}"
        raise DatabaseError(msg)
    created = create_engine(url.set(drivername=f"{backend}+{driver}"), **options)
    if backend == "sqlite":
        _sqlite_transactions(created)
    return created


def _sqlite_transactions(created: AsyncEngine | Engine) -> None:
    # The sqlite3 module's own transaction handling defers BEGIN and breaks SAVEPOINT;
    # let SQLAlchemy emit BEGIN itself (SQLAlchemy's documented recipe for pysqlite,
    # which applies to aiosqlite too).
    target = created.sync_engine if isinstance(created, AsyncEngine) else created

    @event.listens_for(target, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    @event.listens_for(target, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")


async def _family(url: URL) -> str:
    probe = engine(url, poolclass=NullPool)
    try:
        async with probe.connect() as conn:
            dialect = conn.dialect
            return "mariadb" if getattr(dialect, "is_mariadb", False) else dialect.name
    finally:
        await probe.dispose()


async def _admin(url: URL, verb: str, name: str, suffix: str = "") -> str:
    """Run ``<verb> <name><suffix>`` outside a transaction; return the server family."""
    admin = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            dialect = conn.dialect
            quoted = dialect.identifier_preparer.quote(name)
            await conn.execute(text(f"{verb} {quoted}{suffix}"))
            return "mariadb" if getattr(dialect, "is_mariadb", False) else dialect.name
    finally:
        await admin.dispose()


def create(configured: str) -> TestDatabase:
    """Create a fresh database for *configured* (a URL); raise `DatabaseError` if unusable.

    SQLite gets a new file in a temporary directory (only the driver and query of the
    URL are used); a server gets a new database ``sqla_test_<pid>_<hex>``, created
    through the configured URL.
    """
    try:
        url = normalise(configured)
    except Exception as exc:  # noqa: BLE001 - reported as a DatabaseError, password masked
        # Parsing failed, so the password cannot be hidden by the URL object: mask the
        # userinfo's password in the text (the parser's message may quote the URL too).
        message = _masked(f"{configured!r} is not a database URL: {exc}")
        raise DatabaseError(message) from None
    try:
        if url.get_backend_name() == "sqlite":
            path = Path(tempfile.mkdtemp(prefix="sqla_test_")) / "test.db"
            target = url.set(database=str(path))
            try:
                family = _run(_family(target))
            except BaseException:
                shutil.rmtree(path.parent, ignore_errors=True)
                raise
            return TestDatabase(family, target, family, database=str(path))
        name = f"sqla_test_{os.getpid()}_{secrets.token_hex(4)}"
        family = _run(_admin(url, "CREATE DATABASE", name))
    except Exception as exc:
        message = f"{shown(url)}: {type(exc).__name__}: {exc}"
        raise DatabaseError(message) from exc
    return TestDatabase(family, url.set(database=name), family, server_url=url, database=name)


def drop(database: TestDatabase) -> None:
    """Drop a database made by `create` (errors are left to the caller)."""
    if database.server_url is None:
        if database.database:
            shutil.rmtree(Path(database.database).parent, ignore_errors=True)
        return
    force = " WITH (FORCE)" if database.family == "postgresql" else ""
    _run(_admin(database.server_url, "DROP DATABASE IF EXISTS", database.database or "", force))


def create_schema(database: TestDatabase, metadatas: Sequence[MetaData]) -> None:
    """Create every table of *metadatas* in *database* (dropping leftovers first)."""
    if not metadatas:
        return

    async def run() -> None:
        schema_engine = engine(database.url, poolclass=NullPool)
        try:
            async with schema_engine.begin() as conn:
                for metadata in metadatas:
                    await conn.run_sync(metadata.create_all)
        finally:
            await schema_engine.dispose()

    _run(run())


def ids(databases: Sequence[TestDatabase]) -> list[str]:
    """Test ids naming each database's backend, made unique where a backend repeats.

    The family alone (``postgresql``); with the driver when the family repeats
    (``postgresql-asyncpg``, ``postgresql-psycopg``); with a position when that repeats too.
    """
    families = Counter(db.family for db in databases)
    named = [
        db.family if families[db.family] == 1 else f"{db.family}-{db.url.get_driver_name()}"
        for db in databases
    ]
    counts = Counter(named)
    seen: Counter[str] = Counter()
    result = []
    for name in named:
        if counts[name] > 1:
            seen[name] += 1
            result.append(f"{name}-{seen[name]}")
        else:
            result.append(name)
    return result
