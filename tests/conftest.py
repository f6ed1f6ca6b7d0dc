"""Fixtures: every integration test runs on SQLite, PostgreSQL and MariaDB.

A backend that cannot be reached fails the run, naming it. Narrow the run explicitly
with ``--backend sqlite`` (repeatable); CI never does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from hypothesis import settings
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import backends
import flavours
from models import METADATAS

# A wall-clock deadline fails a property on a loaded machine, not on a wrong result.
settings.register_profile("sqla_repo", deadline=None)
settings.load_profile("sqla_repo")

pytest_plugins = ["sqla_repo.testing"]
"""sqla_repo's own pytest plugin; tests/plugin/test_fixtures.py uses its fixtures."""

POOLED_MODULES = frozenset(
    {
        "test_repository_reads",
        "test_repository_writes",
        "test_repository_edges",
        "test_repository_state_machine",
        "test_concurrency",
        "test_first_statement_writes",
        "test_transaction_control",
    }
)
"""Modules that also run through PgBouncer (``backends.POOLED``): the repository
contract, the concurrency races, and the driver-level rollback of a failed first write."""

_SELECTED: list[str] = []
_CREATED: dict[str, backends.Backend] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend",
        action="append",
        choices=(*backends.BACKENDS, *backends.POOLED),
        help=(
            "run integration tests on this backend only (repeatable; default: the three "
            "backends, and PostgreSQL through PgBouncer for the modules in POOLED_MODULES)"
        ),
    )


def _create(name: str) -> str | None:
    """Create the backend's database for this run; return why it failed, if it did."""
    try:
        _CREATED[name] = backends.create(name)
    except Exception as exc:  # noqa: BLE001 - reported by the caller, which aborts the run
        url = "sqlite" if name == "sqlite" else backends.env_url(backends.server_of(name))
        return f"  {name} ({url}): {type(exc).__name__}: {exc}"
    return None


def pytest_configure(config: pytest.Config) -> None:
    _SELECTED[:] = config.getoption("--backend") or [*backends.BACKENDS, *backends.POOLED]
    failures = [failure for name in _SELECTED if (failure := _create(name))]
    if failures:
        for backend in _CREATED.values():
            backends.drop(backend)
        msg = "backend unreachable; start it or narrow the run with --backend:\n" + "\n".join(
            failures
        )
        raise pytest.UsageError(msg)


def pytest_unconfigure(config: pytest.Config) -> None:
    for backend in _CREATED.values():
        backends.drop(backend)
    _CREATED.clear()


def pytest_report_header(config: pytest.Config) -> str:
    return "backends: " + ", ".join(
        f"{b.name} ({b.url.render_as_string()})" for b in _CREATED.values()
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        module = metafunc.module.__name__.rpartition(".")[2]
        names = [n for n in _SELECTED if n in backends.BACKENDS or module in POOLED_MODULES]
        metafunc.parametrize(
            "backend",
            [pytest.param(name, marks=_mark(name), id=name) for name in names],
            indirect=True,
            scope="session",
        )


def _mark(name: str) -> pytest.MarkDecorator:
    return pytest.mark.pgbouncer if name in backends.POOLED else getattr(pytest.mark, name)


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> backends.Backend:
    return _CREATED[request.param]


@pytest.fixture(params=flavours.FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> Iterator[str]:
    """Which repository ``flavours.make_repo()`` builds: the async one or its sync twin."""
    flavours.current["flavour"] = request.param
    yield request.param
    flavours.current["flavour"] = "async"


@pytest.fixture
def requires(backend: backends.Backend):
    """Skip the calling test where the backend lacks a capability (never for CI gaps)."""

    def check(*capabilities: str) -> None:
        missing = set(capabilities) - backend.capabilities
        if missing:
            pytest.skip(f"{backend.name} lacks {', '.join(sorted(missing))}")

    return check


@pytest_asyncio.fixture(scope="session")
async def engine(backend: backends.Backend) -> AsyncIterator[AsyncEngine]:
    engine = backend.engine()
    async with engine.begin() as conn:
        for metadata in METADATAS:
            await conn.run_sync(metadata.drop_all)
            await conn.run_sync(metadata.create_all)
    yield engine
    async with engine.begin() as conn:
        for metadata in METADATAS:
            await conn.run_sync(metadata.drop_all)
    await engine.dispose()


@pytest_asyncio.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session inside an outer transaction that is rolled back after the test."""
    async with engine.connect() as conn:
        outer = await conn.begin()
        session = AsyncSession(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield session
        finally:
            await session.close()
            if outer.is_active:
                await outer.rollback()


@pytest_asyncio.fixture
async def sessionmaker(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions that really commit (for tests across connections); tables are emptied after."""
    yield async_sessionmaker(engine, expire_on_commit=False)
    async with engine.begin() as conn:
        for metadata in METADATAS:
            for table in reversed(metadata.sorted_tables):
                await conn.execute(delete(table))
