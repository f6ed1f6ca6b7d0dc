"""Infrastructure: the engine, the request-scoped session, the tables.

``DATABASE_URL`` picks the database (SQLite in ``./blog.db`` by default), for example
``postgresql+asyncpg://user:secret@localhost/blog`` or
``mysql+asyncmy://user:secret@localhost/blog``.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import URL, event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from sqla_repo.ext.fastapi import session_dependency

from .models import Base

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./blog.db"

# Bound to an engine by main.create_app(); one application per process.
SessionLocal = async_sessionmaker(expire_on_commit=False)

# One session per request: committed when the endpoint returns, rolled back on error.
get_session = session_dependency(SessionLocal)


def create_engine(url: str | URL | None = None) -> AsyncEngine:
    engine = create_async_engine(url or os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")  # SQLite ignores foreign keys otherwise
            cursor.execute("PRAGMA busy_timeout=5000")  # wait for a concurrent writer
            cursor.close()

    return engine


async def create_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)


async def drop_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
