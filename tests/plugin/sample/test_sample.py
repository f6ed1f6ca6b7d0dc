"""Run by ../test_plugin.py; the file order of the tests matters (isolation)."""

from __future__ import annotations

import pytest
from sample_app.models import Item
from sample_app.repositories import ItemRepository, MemoRepository
from sqlalchemy import func, select, text

from sqla_repo import SyncBaseRepository, current_actor, current_tenant
from sqla_repo.exceptions import TenantRequiredError, UniqueViolationError


async def test_commit_is_undone_after_the_test(sqla_session):
    await ItemRepository(sqla_session).create({"name": "committed"})
    await sqla_session.commit()
    assert await ItemRepository(sqla_session).count() == 1


async def test_previous_commit_is_gone(sqla_session):
    assert await ItemRepository(sqla_session).count() == 0


async def test_conflict_leaves_the_session_usable(sqla_session):
    repo = ItemRepository(sqla_session)
    await repo.create({"name": "twice"})
    with pytest.raises(UniqueViolationError):
        await repo.create({"name": "twice"})
    assert await repo.count() == 1


async def test_sessionmaker_shares_the_transaction(sqla_sessionmaker):
    async with sqla_sessionmaker() as first:
        first.add(Item(name="shared"))
        await first.commit()
    async with sqla_sessionmaker() as second:
        assert await second.scalar(select(func.count()).select_from(Item)) == 1


async def test_sessionmaker_commit_is_undone_too(sqla_session):
    assert await ItemRepository(sqla_session).count() == 0


async def test_database_is_made_for_the_run(sqla_database, sqla_url, sqla_session):
    assert sqla_url == sqla_database.url
    if sqla_database.family == "sqlite":
        assert sqla_url.database.endswith("test.db")
    else:
        assert sqla_url.database.startswith("sqla_test_")
    dialect = sqla_session.bind.dialect
    family = "mariadb" if getattr(dialect, "is_mariadb", False) else dialect.name
    assert family == sqla_database.family
    assert (await sqla_session.execute(text("SELECT 1"))).scalar() == 1


@pytest.mark.sqla_tenant("acme")
@pytest.mark.sqla_actor("alice")
async def test_tenant_and_actor_markers(sqla_session):
    assert current_tenant() == "acme"
    assert current_actor() == "alice"
    memo = await MemoRepository(sqla_session).create({"body": "hi"})
    assert (memo.tenant_id, memo.created_by) == ("acme", "alice")


async def test_markers_do_not_leak(sqla_session):
    assert current_tenant() is None
    assert current_actor() is None
    with pytest.raises(TenantRequiredError):
        await MemoRepository(sqla_session).count()


@pytest.mark.sqla_all_tenants
async def test_all_tenants_marker(sqla_session):
    assert await MemoRepository(sqla_session).count() == 0


class SyncItems(SyncBaseRepository[Item]):
    pass


def test_sync_session_commits_are_rolled_back(sqla_sync_session):
    SyncItems(sqla_sync_session).create({"name": "committed in sync code"})
    sqla_sync_session.commit()
    assert SyncItems(sqla_sync_session).count() == 1


def test_sync_session_starts_empty(sqla_sync_session, sqla_sync_engine):
    assert SyncItems(sqla_sync_session).count() == 0
    assert not sqla_sync_engine.dialect.is_async
