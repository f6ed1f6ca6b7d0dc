"""Repository reads on every backend."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from flavours import make_repo
from models import Post, Status, User
from repositories import PostRepository, UserRepository
from sqla_repo import InvalidFilterError, MultipleResultsFoundError, NotFoundError
from sqla_repo.types import utcnow

pytestmark = pytest.mark.usefixtures("flavour")


@pytest.fixture
async def users(session):
    repo = make_repo(UserRepository, session)
    rows = await repo.bulk_create(
        [
            {"email": "ada@x.org", "name": "Ada", "username": "ada", "age": 36},
            {"email": "bob@x.org", "name": "Bob", "age": 25, "is_superuser": True},
            {"email": "cy@y.org", "name": "Cy", "age": 25, "is_active": False},
            {"email": "dee@y.org", "name": "Dee", "status": Status.DISABLED},
        ]
    )
    await repo.soft_delete(rows[3].id)
    return rows


async def test_get_and_get_by_id(session, users):
    """get() returns the row or None; get_by_id() raises NotFoundError naming the model."""
    repo = make_repo(UserRepository, session)
    assert (await repo.get(users[0].id)) is users[0]
    assert await repo.get(10**9) is None
    with pytest.raises(NotFoundError) as info:
        await repo.get_by_id(10**9)
    assert info.value.detail == {"model": "User", "identity": str(10**9)}


async def test_get_hides_soft_deleted_even_from_identity_map(session, users):
    """A soft-deleted object still in the identity map is not returned by get()."""
    repo = make_repo(UserRepository, session)
    assert await repo.get(users[3].id) is None
    assert (await repo.get(users[3].id, include_deleted=True)) is users[3]


async def test_get_with_options_loads_relationship(session, users):
    """get(options=...) eager-loads even when the object is already in the identity map."""
    session.add(Post(title="p", author_id=users[0].id))
    await session.flush()
    user = await make_repo(UserRepository, session).find_with_posts(users[0].id)
    assert [p.title for p in user.posts] == ["p"]


async def test_get_one(session, users):
    """get_one() returns exactly one row or raises."""
    repo = make_repo(UserRepository, session)
    assert (await repo.get_one(email="ada@x.org")).name == "Ada"
    with pytest.raises(NotFoundError):
        await repo.get_one(email="nobody@x.org")
    with pytest.raises(MultipleResultsFoundError):
        await repo.get_one(age=25)
    assert await repo.get_one_or_none(email="nobody@x.org") is None
    with pytest.raises(InvalidFilterError):
        await repo.get_one(no_such_column=1)


async def test_list_orders_by_primary_key_by_default(session, users):
    """list() returns live rows in key order, with equality and expression criteria."""
    repo = make_repo(UserRepository, session)
    assert [u.name for u in await repo.list()] == ["Ada", "Bob", "Cy"]
    assert [u.name for u in await repo.list(age=25)] == ["Bob", "Cy"]
    assert [u.name for u in await repo.list(User.age > 30)] == ["Ada"]
    assert [u.name for u in await repo.list(order_by=["-name"], limit=2)] == ["Cy", "Bob"]
    assert [u.name for u in await repo.list(order_by=["name"], offset=1)] == ["Bob", "Cy"]
    assert len(await repo.list(include_deleted=True)) == 4


async def test_list_with_untrusted_filters(session, users):
    """filters= applies the safe filter language."""
    repo = make_repo(UserRepository, session)
    found = await repo.list(filters={"email__endswith": "@x.org", "age__ge": "30"})
    assert [u.name for u in found] == ["Ada"]
    with pytest.raises(InvalidFilterError):
        await repo.list(filters={"emial": "typo"})


async def test_count_and_exists(session, users):
    """count() counts visible rows; exists() answers with EXISTS."""
    repo = make_repo(UserRepository, session)
    assert await repo.count() == 3
    assert await repo.count(include_deleted=True) == 4
    assert await repo.count(filters={"age": 25}) == 2
    assert await repo.exists(email="ada@x.org")
    assert not await repo.exists(email="dee@y.org")
    assert await repo.exists(email="dee@y.org", include_deleted=True)
    assert await repo.email_exists("bob@x.org")
    assert await repo.username_exists("ada")
    assert not await repo.username_exists("bob")


async def test_reference_repository_methods(session, users):
    """The reference UserRepository's custom methods work."""
    repo = make_repo(UserRepository, session)
    assert (await repo.find_by_email("ada@x.org")) is users[0]
    assert (await repo.find_by_username("ada")) is users[0]
    assert [u.name for u in await repo.find_active_users()] == ["Ada", "Bob"]
    assert [u.name for u in await repo.find_superusers()] == ["Bob"]
    page = await repo.search_by_name("y", limit=1)
    assert ([u.name for u in page.items], page.total) == (["Cy"], 1)


async def test_search_total_and_pages(session, users):
    """search() returns a page and the total, also for a page past the end."""
    repo = make_repo(UserRepository, session)
    page = await repo.search(order_by=["name"], limit=2)
    assert [u.name for u in page.items] == ["Ada", "Bob"]
    assert (page.total, page.page, page.total_pages, page.has_next, page.has_previous) == (
        3,
        1,
        2,
        True,
        False,
    )
    last = await repo.search(order_by=["name"], limit=2, offset=2)
    assert ([u.name for u in last.items], last.total, last.has_next) == (["Cy"], 3, False)
    past = await repo.search(limit=2, offset=10)
    assert (past.items, past.total, past.has_next) == ([], 3, False)
    quick = await repo.search(limit=2, include_total=False)
    assert (len(quick.items), quick.total, quick.has_next) == (2, None, True)


async def test_search_rejects_bad_page_input(session, users):
    """search() refuses limit <= 0, limit above max_page_size and negative offsets."""
    repo = make_repo(UserRepository, session)
    for kwargs in ({"limit": 0}, {"limit": 201}, {"offset": -1}, {"limit": True}):
        with pytest.raises(InvalidFilterError) as info:
            await repo.search(**kwargs)
        assert info.value.detail["field"] in {"limit", "offset"}


async def test_search_total_over_fanning_join(session, users):
    """The total counts distinct base rows when base_select() joins a collection."""
    session.add_all([Post(title=f"p{i}", author_id=users[0].id) for i in range(3)])
    session.add(Post(title="q", author_id=users[1].id))
    await session.flush()

    class AuthorRepository(UserRepository):
        def base_select(self):
            return select(User).join(User.posts).distinct()

    repo = make_repo(AuthorRepository, session)
    page = await repo.search(limit=1)
    assert page.total == 2
    assert await repo.count() == 2


async def test_relationship_filter_compiles_to_exists(session, users):
    """A whitelisted relationship path filters without fanning out rows."""
    session.add_all(
        [Post(title="a", author_id=users[0].id), Post(title="b", author_id=users[1].id)]
    )
    await session.flush()
    posts = await make_repo(PostRepository, session).list(filters={"author.email": "ada@x.org"})
    assert [p.title for p in posts] == ["a"]


async def test_default_options_and_no_lazy_io(session, users):
    """default_options eager-load for every read, so attributes need no lazy IO."""
    session.add(Post(title="p", author_id=users[0].id))
    await session.flush()
    session.expunge_all()

    class WithPosts(UserRepository):
        default_options = (selectinload(User.posts),)

    repo = make_repo(WithPosts, session)
    for user in await repo.list():
        assert isinstance(user.posts, list)
    page = await repo.search(limit=5)
    assert sum(len(u.posts) for u in page.items) == 1


async def test_stream_yields_every_row(session, users):
    """stream() yields all matching rows in order."""
    repo = make_repo(UserRepository, session)
    names = [u.name async for u in repo.stream(batch_size=2, order_by=["name"])]
    assert names == ["Ada", "Bob", "Cy"]
    assert [u.name async for u in repo.stream(filters={"age": 25})] == ["Bob", "Cy"]


async def test_soft_deleted_row_has_timestamp(session, users):
    """soft_delete() stamps deleted_at."""
    assert users[3].deleted_at is not None
    assert users[3].deleted_at <= utcnow()
