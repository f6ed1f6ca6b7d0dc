"""A pytest plugin: your repositories tested on real databases, each test rolled back.

Enable it explicitly (it is not loaded by merely installing sqla_repo):

```bash
pytest -p sqla_repo.testing
```

or in the top-level ``conftest.py``: ``pytest_plugins = ["sqla_repo.testing"]``.

Configuration (command line wins over the ini file):

* ``--sqla-url URL`` (repeatable) or the ini option ``sqla_urls`` (one URL a line): the
  database servers to test on. Each URL is used as an administrator: a fresh database
  ``sqla_test_<pid>_<hex>`` is created on that server at the start of the run and dropped
  at the end. SQLite URLs get a new file in a temporary directory. A URL without a driver
  gets the async default (``postgresql`` → asyncpg, ``mysql``/``mariadb`` → asyncmy,
  ``sqlite`` → aiosqlite). Default: SQLite only.
* ``sqla_metadata`` (ini): the ``MetaData`` whose tables are created, as
  ``package.module:attribute.path`` (several separated by whitespace or lines), e.g.
  ``myapp.models:Base.metadata``. Or override the ``sqla_metadata`` fixture.

With several URLs, every test using the fixtures runs once per database; its test id
names the backend (``test_x[sqlite]``, ``test_x[postgresql]``, ``test_x[mariadb]``).
A server that cannot be reached fails the run at start-up with a message naming it.

Fixtures: [`sqla_session`][sqla_repo.testing.sqla_session] (rolled back after each test,
even when the code under test commits),
[`sqla_sessionmaker`][sqla_repo.testing.sqla_sessionmaker],
[`sqla_connection`][sqla_repo.testing.sqla_connection],
[`sqla_engine`][sqla_repo.testing.sqla_engine],
[`sqla_database`][sqla_repo.testing.sqla_database],
[`sqla_url`][sqla_repo.testing.sqla_url],
[`sqla_metadata`][sqla_repo.testing.sqla_metadata],
[`sqla_engine_options`][sqla_repo.testing.sqla_engine_options], and their synchronous
twins for ``SyncBaseRepository`` code:
[`sqla_sync_session`][sqla_repo.testing.sqla_sync_session],
[`sqla_sync_sessionmaker`][sqla_repo.testing.sqla_sync_sessionmaker],
[`sqla_sync_connection`][sqla_repo.testing.sqla_sync_connection],
[`sqla_sync_engine`][sqla_repo.testing.sqla_sync_engine].
Markers: ``@pytest.mark.sqla_tenant("acme")``, ``@pytest.mark.sqla_actor("alice")`` and
``@pytest.mark.sqla_all_tenants`` set the [context][sqla_repo.context] for the whole test,
fixtures included.

The async fixtures need pytest-asyncio.
"""

from __future__ import annotations

import importlib
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

from sqla_repo import context
from sqla_repo.testing import _databases
from sqla_repo.testing._databases import TestDatabase

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from sqlalchemy.engine import URL, Connection, Engine

__all__ = [
    "TestDatabase",
    "load_metadata",
    "sqla_connection",
    "sqla_database",
    "sqla_engine",
    "sqla_engine_options",
    "sqla_metadata",
    "sqla_session",
    "sqla_sessionmaker",
    "sqla_sync_connection",
    "sqla_sync_engine",
    "sqla_sync_session",
    "sqla_sync_sessionmaker",
    "sqla_url",
]

_DATABASES = pytest.StashKey[list[TestDatabase]]()
_METADATA = pytest.StashKey[tuple[MetaData, ...]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--sqla-url`` and the ``sqla_urls`` / ``sqla_metadata`` ini options."""
    group = parser.getgroup("sqla_repo", "sqla_repo test databases")
    group.addoption(
        "--sqla-url",
        action="append",
        dest="sqla_urls",
        metavar="URL",
        default=None,
        help=(
            "run database tests on this server (repeatable; a fresh database is created "
            "on it and dropped at the end). Overrides the sqla_urls ini option. "
            "Default: SQLite in a temporary file."
        ),
    )
    parser.addini(
        "sqla_urls",
        type="linelist",
        default=[],
        help="database URLs to test on, one a line (sqla_repo.testing)",
    )
    parser.addini(
        "sqla_metadata",
        type="args",
        default=[],
        help="MetaData to create, as package.module:Base.metadata (sqla_repo.testing)",
    )


def load_metadata(spec: str) -> MetaData:
    """Import a ``MetaData`` named ``package.module:attribute.path``.

    Raises:
        pytest.UsageError: The spec is malformed, the module cannot be imported, or the
            attribute is missing or not a ``MetaData``.
    """
    module_name, colon, path = spec.partition(":")
    if not colon or not module_name or not path:
        msg = f"sqla_metadata: {spec!r} is not of the form package.module:Base.metadata"
        raise pytest.UsageError(msg)
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        msg = f"sqla_metadata: cannot import {module_name!r} ({exc})"
        raise pytest.UsageError(msg) from exc
    for attribute in path.split("."):
        if not hasattr(found, attribute):
            msg = f"sqla_metadata: {spec!r}: no attribute {attribute!r}"
            raise pytest.UsageError(msg)
        found = getattr(found, attribute)
    if not isinstance(found, MetaData):
        msg = f"sqla_metadata: {spec!r} is a {type(found).__name__}, not a MetaData"
        raise pytest.UsageError(msg)
    return found


def _configured_urls(config: pytest.Config) -> list[str]:
    given = config.getoption("sqla_urls") or config.getini("sqla_urls")
    urls = [part for line in given for part in str(line).split()]
    return urls or [_databases.DEFAULT_URL]


def _is_xdist_controller(config: pytest.Config) -> bool:
    return getattr(config.option, "dist", "no") != "no" and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers, import the metadata and create one database per URL.

    Raises:
        pytest.UsageError: A server cannot be reached or refuses to create the database.
    """
    config.addinivalue_line(
        "markers", "sqla_tenant(tenant_id): run the test with this tenant set (sqla_repo)"
    )
    config.addinivalue_line(
        "markers", "sqla_actor(actor): run the test with this actor set (sqla_repo)"
    )
    config.addinivalue_line(
        "markers", "sqla_all_tenants: run the test inside all_tenants() (sqla_repo)"
    )
    config.stash[_METADATA] = tuple(load_metadata(spec) for spec in config.getini("sqla_metadata"))
    config.stash[_DATABASES] = []
    if config.option.help or _is_xdist_controller(config):
        return  # nothing runs here; each xdist worker creates databases of its own
    created: list[TestDatabase] = config.stash[_DATABASES]
    failures = [failure for url in _configured_urls(config) if (failure := _create(url, created))]
    if failures:
        _drop_all(created)
        msg = "sqla_repo.testing: database server unreachable or unusable:\n" + "\n".join(failures)
        raise pytest.UsageError(msg)
    ids = _databases.ids(created)
    created[:] = [
        TestDatabase(id_, db.url, db.family, db.server_url, db.database)
        for id_, db in zip(ids, created, strict=True)
    ]


def _create(url: str, created: list[TestDatabase]) -> str | None:
    """Create a database for *url* into *created*; return why it failed, if it did."""
    try:
        created.append(_databases.create(url))
    except _databases.DatabaseError as exc:
        return f"  {exc}"
    return None


def _drop(database: TestDatabase) -> str | None:
    try:
        _databases.drop(database)
    except Exception as exc:  # noqa: BLE001 - every database gets its chance to go
        return f"{_databases.shown(database.url)}: {type(exc).__name__}: {exc}"
    return None


def _drop_all(databases: list[TestDatabase]) -> None:
    errors = [error for database in databases if (error := _drop(database))]
    databases.clear()
    if errors:
        msg = "sqla_repo.testing: could not drop test databases:\n" + "\n".join(errors)
        raise RuntimeError(msg)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Drop the databases made for the run."""
    _drop_all(config.stash.get(_DATABASES, []))


def pytest_report_header(config: pytest.Config) -> str | None:
    """Name the test databases in the report header."""
    databases = config.stash.get(_DATABASES, [])
    if not databases:
        return None
    return "sqla_repo: " + ", ".join(f"{db.id} ({_databases.shown(db.url)})" for db in databases)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run tests using the database fixtures once per configured database."""
    databases = metafunc.config.stash.get(_DATABASES, [])
    if len(databases) > 1 and "sqla_database" in metafunc.fixturenames:
        metafunc.parametrize(
            "sqla_database",
            databases,
            ids=[db.id for db in databases],
            indirect=True,
            scope="session",
        )


@pytest.fixture(scope="session")
def sqla_metadata(pytestconfig: pytest.Config) -> tuple[MetaData, ...]:
    """The ``MetaData`` whose tables are created in each test database.

    From the ``sqla_metadata`` ini option; override this fixture (session scope) to
    supply them in code. Empty: no tables are created.
    """
    return pytestconfig.stash[_METADATA]


@pytest.fixture(scope="session")
def sqla_database(
    request: pytest.FixtureRequest, sqla_metadata: tuple[MetaData, ...] | MetaData
) -> TestDatabase:
    """The database of the current backend, its tables created (once per test session)."""
    databases = request.config.stash[_DATABASES]
    if not databases:
        pytest.fail("sqla_repo.testing: no test database (the plugin did not configure)")
    database: TestDatabase = getattr(request, "param", databases[0])
    metadatas = (sqla_metadata,) if isinstance(sqla_metadata, MetaData) else sqla_metadata
    _databases.create_schema(database, metadatas)
    return database


@pytest.fixture(scope="session")
def sqla_url(sqla_database: TestDatabase) -> URL:
    """The URL of the current test database (for an application's own settings)."""
    return sqla_database.url


@pytest.fixture(scope="session")
def sqla_engine_options() -> dict[str, Any]:
    """Keyword arguments for ``create_async_engine`` of `sqla_engine`; override to add some."""
    return {}


def _engine_scope(fixture_name: str, config: pytest.Config) -> str:  # noqa: ARG001
    # An engine's pooled connections belong to one event loop: live as long as the loop
    # the tests run in (a session when asyncio_default_test_loop_scope = session).
    try:
        scope = config.getini("asyncio_default_test_loop_scope") or "function"
    except ValueError:  # pytest-asyncio before 0.26 has no such option: per-test loops
        scope = "function"
    return str(scope)


@pytest_asyncio.fixture(scope=_engine_scope)  # type: ignore[arg-type]
async def sqla_engine(
    sqla_database: TestDatabase, sqla_engine_options: dict[str, Any]
) -> AsyncIterator[AsyncEngine]:
    """An ``AsyncEngine`` connected to the current test database.

    Lives as long as the tests' event loop: the whole session when
    ``asyncio_default_test_loop_scope = session``, else one test (the schema is created
    once per session either way). On SQLite, SAVEPOINTs work and foreign keys are enforced.
    """
    engine = _databases.engine(sqla_database.url, **sqla_engine_options)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest_asyncio.fixture
async def sqla_connection(sqla_engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside an outer transaction that is rolled back after the test."""
    async with sqla_engine.connect() as conn:
        outer = await conn.begin()
        try:
            yield conn
        finally:
            if outer.is_active:
                await outer.rollback()


@pytest.fixture
def sqla_sessionmaker(sqla_connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    """Sessions joined to the test's outer transaction (``create_savepoint``).

    Give it to code that opens sessions itself (an application's session dependency):
    ``commit()`` and ``rollback()`` there release or roll back a SAVEPOINT, and the outer
    transaction is rolled back after the test. The sessions share one connection: use
    them one after another, not concurrently. Close the ones you open.
    """
    return async_sessionmaker(
        bind=sqla_connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest_asyncio.fixture
async def sqla_session(
    sqla_sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """An ``AsyncSession`` whose work is rolled back after the test, commits included."""
    async with sqla_sessionmaker() as session:
        yield session


@pytest.fixture(scope="session")
def sqla_sync_engine(
    sqla_database: TestDatabase, sqla_engine_options: dict[str, Any]
) -> Iterator[Engine]:
    """A synchronous ``Engine`` on the current test database, for ``SyncBaseRepository``.

    Same server and database as `sqla_engine`, through the backend's synchronous driver:
    sqlite3, psycopg (``psycopg`` must be installed) or PyMySQL (in the ``mysql`` extra).
    """
    engine = _databases.sync_engine(sqla_database.url, **sqla_engine_options)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def sqla_sync_connection(sqla_sync_engine: Engine) -> Iterator[Connection]:
    """A synchronous connection inside an outer transaction rolled back after the test."""
    with sqla_sync_engine.connect() as conn:
        outer = conn.begin()
        try:
            yield conn
        finally:
            if outer.is_active:
                outer.rollback()


@pytest.fixture
def sqla_sync_sessionmaker(sqla_sync_connection: Connection) -> sessionmaker[Session]:
    """Synchronous sessions joined to the test's outer transaction (``create_savepoint``)."""
    return sessionmaker(
        bind=sqla_sync_connection,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
    )


@pytest.fixture
def sqla_sync_session(sqla_sync_sessionmaker: sessionmaker[Session]) -> Iterator[Session]:
    """A ``Session`` whose work is rolled back after the test, commits included."""
    with sqla_sync_sessionmaker() as session:
        yield session


@pytest.fixture(autouse=True)
def _sqla_context(request: pytest.FixtureRequest) -> Iterator[None]:
    """Apply the ``sqla_tenant`` / ``sqla_actor`` / ``sqla_all_tenants`` markers."""
    tenant = request.node.get_closest_marker("sqla_tenant")
    actor = request.node.get_closest_marker("sqla_actor")
    every = request.node.get_closest_marker("sqla_all_tenants")
    if tenant is None and actor is None and every is None:
        yield
        return
    if tenant is not None and every is not None:
        pytest.fail("sqla_tenant and sqla_all_tenants cannot both apply to a test", pytrace=False)
    with ExitStack() as stack:
        if tenant is not None:
            stack.enter_context(context.tenant(_marker_value(tenant)))
        if every is not None:
            stack.enter_context(context.all_tenants())
        if actor is not None:
            stack.enter_context(context.actor(_marker_value(actor)))
        yield


def _marker_value(marker: pytest.Mark) -> str:
    if len(marker.args) != 1 or marker.kwargs or not isinstance(marker.args[0], str):
        pytest.fail(f"@pytest.mark.{marker.name} takes one string: the id to set", pytrace=False)
    value: str = marker.args[0]
    return value
