"""Fixtures of the reliability suite.

Every fixture depends on ``backend`` (through ``sessionmaker``), so each test runs on every
backend of the run; the ``sessionmaker`` fixture empties the tables afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import backends
from reliability.support import FAULT_SQL, TASKS, TIME_LIMIT, Faults


@pytest_asyncio.fixture
async def wide_sessionmaker(
    backend: backends.Backend, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Committing sessions on a pool wide enough for every racing task to hold a connection."""
    del sessionmaker  # requested for its clean-up
    engine = backend.engine(pool_size=TASKS + 4, max_overflow=0, pool_timeout=TIME_LIMIT)
    try:
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()


@pytest_asyncio.fixture
async def faults(
    backend: backends.Backend, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Faults]:
    """Fault injection for server backends; SQLite has no server connection to attack."""
    del sessionmaker  # requested for its clean-up
    sql = FAULT_SQL.get(backend.name)
    if sql is None:
        pytest.skip(f"{backend.name} has no server connection to kill or time out")
    faults = Faults(backend, sql)
    try:
        yield faults
    finally:
        await faults.aclose()


@pytest.fixture
def lacks(backend: backends.Backend):
    """Skip the calling test where the backend has a capability (the inverse of ``requires``)."""

    def check(*capabilities: str) -> None:
        present = set(capabilities) & backend.capabilities
        if present:
            pytest.skip(f"{backend.name} has {', '.join(sorted(present))}")

    return check
