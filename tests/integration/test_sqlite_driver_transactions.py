"""On an engine without any SQLite transaction set-up, the caller still owns the transaction."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from models import METADATAS
from repositories import UserRepository
from sqla_repo import UniqueViolationError


@pytest.fixture
async def plain_sqlite(tmp_path):
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}")
    async with engine.begin() as conn:
        for metadata in METADATAS:
            await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


async def test_rollback_undoes_repository_writes(plain_sqlite):
    """Writes made through SAVEPOINTs are undone by the caller's rollback."""
    async with AsyncSession(plain_sqlite) as session:
        repo = UserRepository(session)
        await repo.create({"email": "a@x.org"})
        with pytest.raises(UniqueViolationError):
            await repo.create({"email": "a@x.org"})
        await repo.bulk_create([{"email": "b@x.org"}])
        assert await repo.count() == 2
        await session.rollback()
    async with AsyncSession(plain_sqlite) as session:
        assert await UserRepository(session).count() == 0
