"""Edge cases found in review: fan-out joins, loose ids, upsert keys, stale objects."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from flavours import make_repo
from models import Document, Post, Ticket, User
from recorder import StatementLog
from repositories import DocumentRepository, PostRepository, TicketRepository, UserRepository
from sqla_repo import (
    InvalidFilterError,
    MultipleResultsFoundError,
    RepositoryError,
    TenantRequiredError,
    UniqueViolationError,
    all_tenants,
)

pytestmark = pytest.mark.usefixtures("flavour")


class AuthorRepository(UserRepository):
    """Users with at least one post: base_select() joins a collection."""

    def base_select(self):
        return select(User).join(User.posts)


@pytest.fixture
async def authors(session):
    users = await make_repo(UserRepository, session).bulk_create(
        [{"email": "a@x.org", "age": 1}, {"email": "b@x.org", "age": 1}, {"email": "c@x.org"}]
    )
    session.add_all([Post(title=f"p{i}", author_id=users[0].id) for i in range(3)])
    session.add(Post(title="q", author_id=users[1].id))
    await session.flush()
    return users


async def test_fanning_join_returns_each_row_once(session, authors):
    """A joined base_select() yields one entity per row in list(), search() and counts."""
    repo = make_repo(AuthorRepository, session)
    assert sorted(u.email for u in await repo.list()) == ["a@x.org", "b@x.org"]
    page = await repo.search(limit=10)
    assert (len(page.items), page.total) == (2, 2)
    assert await repo.count() == 2
    with pytest.raises(MultipleResultsFoundError):
        await repo.get_one_or_none(age=1)


async def test_exists_goes_through_base_select(session, authors):
    """exists() honours a base_select() override, like count()."""
    repo = make_repo(AuthorRepository, session)
    assert await repo.exists(email="a@x.org")
    assert not await repo.exists(email="c@x.org")


@pytest.mark.parametrize("bad", ["abc", "1abc", "1e0", 2**70, [1]])
async def test_badly_typed_ids_are_invalid_input(session, bad):
    """An id the key column cannot hold is refused before the driver sees it."""
    repo = make_repo(UserRepository, session)
    user = await repo.create({"email": "a@x.org"})
    with pytest.raises(InvalidFilterError) as info:
        await repo.get(bad)
    assert info.value.detail["field"] == "id"
    assert (await repo.get(str(user.id))) is user
    assert await repo.count() == 1


async def test_upsert_matches_keys_given_as_strings(session):
    """conflict_on values are compared as the column's type ("1" is 1)."""
    repo = make_repo(UserRepository, session)
    user = await repo.create({"email": "a@x.org", "name": "old"})
    row = await repo.upsert(
        {"id": str(user.id), "email": "a@x.org", "name": "new"}, conflict_on=["id"]
    )
    assert (row.id, row.name) == (user.id, "new")


async def test_update_where_leaves_loaded_versioned_rows_readable(session):
    """After update_where(), loaded objects show the new version without lazy IO."""
    repo = make_repo(TicketRepository, session)
    ticket = await repo.create({"title": "t"})
    assert await repo.update_where(Ticket.id == ticket.id, values={"state": "closed"}) == 1
    assert (ticket.state, ticket.version) == ("closed", 2)


async def test_failed_instance_update_leaves_object_readable(session):
    """After a conflicting update of an instance, its attributes still read without IO."""
    repo = make_repo(UserRepository, session)
    await repo.create({"email": "taken@x.org"})
    user = await repo.create({"email": "a@x.org", "name": "kept"})
    with pytest.raises(UniqueViolationError):
        await repo.update(user, email="taken@x.org")
    assert (user.email, user.name) == ("a@x.org", "kept")


async def test_relationship_names_are_refused_on_statement_paths(session):
    """Update by id and bulk paths refuse relationship names instead of writing garbage."""
    posts = make_repo(PostRepository, session)
    user = await make_repo(UserRepository, session).create({"email": "a@x.org"})
    post = await posts.create({"title": "t", "author": user})
    assert post.author_id == user.id
    with pytest.raises(RepositoryError):
        await posts.update(post.id, author=None)
    with pytest.raises(RepositoryError):
        await posts.update_where(Post.id == post.id, values={"author": None})
    with pytest.raises(RepositoryError):
        await posts.bulk_create([Post(title="x", author=User(email="new@x.org"))])
    loaded = await posts.get_by_id(post.id, options=[selectinload(Post.author)])
    assert loaded.author is user


async def test_heterogeneous_bulk_create_is_batched(session):
    """Rows with different keys are grouped: a few INSERTs, input order kept."""
    repo = make_repo(UserRepository, session)
    rows = [
        {"email": f"{i}@x.org", **({"age": i} if i % 2 else {"name": f"n{i}"})} for i in range(100)
    ]
    with StatementLog(session) as log:
        created = await repo.bulk_create(rows)
    assert [u.email for u in created] == [r["email"] for r in rows]
    assert log.dml.count("INSERT") <= 4


async def test_count_and_exists_refuse_without_tenant(session):
    """Deny by default also covers count() and exists()."""
    repo = make_repo(DocumentRepository, session)
    with pytest.raises(TenantRequiredError):
        await repo.count()
    with pytest.raises(TenantRequiredError):
        await repo.exists(Document.slug == "x")


async def test_restore_of_live_row_changes_nothing(session):
    """restore() of a live row by id returns it without bumping updated_at or version."""
    repo = make_repo(TicketRepository, session)
    ticket = await repo.create({"title": "t"})
    before = ticket.updated_at
    with pytest.raises(RepositoryError, match="SoftDeleteMixin"):
        await repo.restore(ticket.id)
    users = make_repo(UserRepository, session)
    user = await users.create({"email": "a@x.org"})
    stamp = user.updated_at
    assert (await users.restore(user.id)) is user
    assert user.updated_at == stamp
    del before


async def test_all_tenants_bulk_writes_need_tenant_id(session):
    """Inside all_tenants(), bulk_create/upsert rows without tenant_id are refused."""
    repo = make_repo(DocumentRepository, session)
    with all_tenants():
        with pytest.raises(TenantRequiredError):
            await repo.bulk_create([{"slug": "a"}])
        with pytest.raises(TenantRequiredError):
            await repo.upsert({"slug": "a"}, conflict_on=["tenant_id", "slug"])
        doc = await repo.upsert({"slug": "a", "tenant_id": "t1"}, conflict_on=["tenant_id", "slug"])
    assert doc.tenant_id == "t1"


async def test_order_by_accepts_one_expression(session):
    """order_by= takes a single SQLAlchemy expression as well as a list."""
    repo = make_repo(UserRepository, session)
    await repo.bulk_create([{"email": "b@x.org"}, {"email": "a@x.org"}])
    assert [u.email for u in await repo.list(order_by=User.email)] == ["a@x.org", "b@x.org"]
    assert [u.email for u in await repo.list(order_by=User.email.desc())] == ["b@x.org", "a@x.org"]


async def test_bulk_create_with_scattered_nulls_stays_batched(session):
    """Rows whose None values differ still go out as a few multi-row INSERTs."""
    repo = make_repo(UserRepository, session)
    rows = [{"email": f"{i}@x.org", "age": None if i % 3 else i} for i in range(90)]
    with StatementLog(session) as log:
        created = await repo.bulk_create(rows)
    assert [u.age for u in created] == [r["age"] for r in rows]
    assert log.dml.count("INSERT") <= 2


async def test_upsert_with_nothing_to_update_keeps_the_row(session):
    """update=[] returns the existing row unchanged: no stamp, no version bump."""
    repo = make_repo(TicketRepository, session)
    ticket = await repo.create({"title": "t"})
    stamp = ticket.updated_at
    same = await repo.upsert({"id": ticket.id, "title": "other"}, conflict_on=["id"], update=[])
    assert (same.id, same.title, same.version, same.updated_at) == (ticket.id, "t", 1, stamp)
