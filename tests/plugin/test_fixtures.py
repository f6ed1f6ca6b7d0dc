"""sqla_repo's own tests on the plugin's fixtures (enabled in tests/conftest.py).

They run on the plugin's databases: SQLite by default, the servers given with
``--sqla-url``. ``test_plugin.py`` runs the plugin on all three backends.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from models import METADATAS, Document, User
from repositories import DocumentRepository, UserRepository
from sqla_repo import current_actor, current_tenant, tenant

pytestmark = pytest.mark.sqla_tenant("t1")


@pytest.fixture(scope="session")
def sqla_metadata():
    return METADATAS


@pytest.fixture
async def document(sqla_session):
    return await DocumentRepository(sqla_session).create({"slug": "made-by-a-fixture"})


async def test_fixtures_see_the_module_marker(document):
    assert document.tenant_id == "t1"


async def test_commit_in_the_test(sqla_session):
    repo = UserRepository(sqla_session)
    user = await repo.create({"email": "ada@example.org"})
    await sqla_session.commit()
    await repo.soft_delete(user)
    await sqla_session.commit()
    assert await repo.count() == 0
    assert await repo.count(include_deleted=True) == 1


async def test_is_rolled_back_after_it(sqla_session):
    total = select(func.count()).select_from(User).execution_options(include_deleted=True)
    assert await sqla_session.scalar(total) == 0
    assert await DocumentRepository(sqla_session).count() == 0


@pytest.mark.sqla_tenant("t2")
@pytest.mark.sqla_actor("bob")
async def test_closest_marker_wins(sqla_session):
    assert (current_tenant(), current_actor()) == ("t2", "bob")
    made = await DocumentRepository(sqla_session).create({"slug": "b"})
    assert (made.tenant_id, made.created_by) == ("t2", "bob")
    with tenant("t1"):
        assert await DocumentRepository(sqla_session).count() == 0


async def test_sessions_share_the_test_transaction(sqla_sessionmaker):
    async with sqla_sessionmaker() as first:
        await DocumentRepository(first).create({"slug": "c"})
        await first.commit()
    async with sqla_sessionmaker() as second:
        found = await second.scalars(select(Document.slug))
        assert list(found) == ["c"]
