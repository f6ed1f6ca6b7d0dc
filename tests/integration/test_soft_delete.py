"""Soft-deleted rows are hidden from every ORM SELECT unless asked for."""

from __future__ import annotations

import pytest
import sqlalchemy
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased, joinedload, selectinload

from models import Post, Tag, User, Widget
from sqla_repo.types import utcnow


async def _users(session: AsyncSession) -> tuple[User, User]:
    live = User(email="live@x.org", name="live")
    gone = User(email="gone@x.org", name="gone")
    session.add_all([live, gone])
    await session.flush()
    gone.deleted_at = utcnow()
    await session.flush()
    session.expunge_all()
    return live, gone


async def test_select_hides_soft_deleted(session):
    """A plain select() returns live rows only."""
    await _users(session)
    names = (await session.scalars(select(User.name))).all()
    assert names == ["live"]


async def test_include_deleted_execution_option(session):
    """execution_options(include_deleted=True) returns every row."""
    await _users(session)
    stmt = select(User.name).order_by(User.name).execution_options(include_deleted=True)
    assert (await session.scalars(stmt)).all() == ["gone", "live"]


async def test_count_hides_soft_deleted(session):
    """Aggregates over the entity skip soft-deleted rows."""
    await _users(session)
    assert await session.scalar(select(func.count()).select_from(User)) == 1


async def test_session_get_hides_soft_deleted(session):
    """session.get() of a soft-deleted id that is not in the identity map returns None."""
    live, gone = await _users(session)
    assert await session.get(User, gone.id) is None
    assert (await session.get(User, live.id)) is not None
    found = await session.get(User, gone.id, execution_options={"include_deleted": True})
    assert found is not None


async def test_is_deleted_hybrid(session):
    """is_deleted works on instances and in queries."""
    await _users(session)
    stmt = select(User).where(User.is_deleted).execution_options(include_deleted=True)
    rows = (await session.scalars(stmt)).all()
    assert [u.email for u in rows] == ["gone@x.org"]
    assert rows[0].is_deleted is True


async def _posts(session: AsyncSession) -> tuple[User, User]:
    live, gone = await _users(session)
    session.add_all(
        [
            Post(title="by-live", author_id=live.id),
            Post(title="by-gone", author_id=gone.id),
            Post(title="orphan"),
        ]
    )
    dead = Post(title="deleted-post", author_id=live.id, deleted_at=utcnow())
    session.add(dead)
    await session.flush()
    session.expunge_all()
    return live, gone


async def test_left_join_stays_left(session):
    """The criterion goes in the ON clause: a LEFT JOIN keeps rows whose target is hidden."""
    await _posts(session)
    stmt = select(Post.title, User.name).outerjoin(Post.author).order_by(Post.title)
    rows = (await session.execute(stmt)).all()
    assert rows == [("by-gone", None), ("by-live", "live"), ("orphan", None)]


async def test_inner_join_hides_soft_deleted_target(session):
    """An inner join to a soft-deleted row drops the joined row."""
    await _posts(session)
    stmt = select(Post.title).join(Post.author).order_by(Post.title)
    assert (await session.scalars(stmt)).all() == ["by-live"]


async def test_explicit_on_clause_join(session):
    """A join with a hand-written ON clause is filtered too."""
    await _posts(session)
    stmt = select(Post.title).join(User, User.id == Post.author_id).order_by(Post.title)
    assert (await session.scalars(stmt)).all() == ["by-live"]


async def test_aliased_entity(session):
    """Aliases of a soft-delete model are filtered."""
    await _users(session)
    alias = aliased(User)
    assert (await session.scalars(select(alias.name))).all() == ["live"]


@pytest.mark.xfail(
    sqlalchemy.__version__.startswith("2.0."),
    reason="SQLAlchemy 2.0 does not apply loader criteria inside any()/has() EXISTS",
    strict=True,
)
async def test_any_and_has(session):
    """Relationship any()/has() EXISTS subqueries ignore soft-deleted rows."""
    await _posts(session)
    has_author = select(Post.title).where(Post.author.has()).order_by(Post.title)
    assert (await session.scalars(has_author)).all() == ["by-live"]
    with_posts = select(User.name).where(User.posts.any())
    assert (await session.scalars(with_posts)).all() == ["live"]
    deleted_only = select(User.name).where(User.posts.any(Post.title == "deleted-post"))
    assert (await session.scalars(deleted_only)).all() == []


async def test_selectinload_hides_soft_deleted_children(session):
    """Selectinload of a collection skips soft-deleted children."""
    await _posts(session)
    user = (await session.scalars(select(User).options(selectinload(User.posts)))).one()
    assert [p.title for p in user.posts] == ["by-live"]


async def test_joinedload_hides_soft_deleted_parent(session):
    """Joinedload of a many-to-one leaves the attribute None when the target is deleted."""
    await _posts(session)
    stmt = select(Post).options(joinedload(Post.author)).order_by(Post.title)
    posts = (await session.scalars(stmt)).all()
    assert [(p.title, p.author.name if p.author else None) for p in posts] == [
        ("by-gone", None),
        ("by-live", "live"),
        ("orphan", None),
    ]


async def test_secondary_many_to_many(session):
    """Many-to-many loads hide soft-deleted targets; association rows stay in place."""
    post = Post(title="p")
    keep, drop = Tag(name="keep"), Tag(name="drop")
    post.tags = [keep, drop]
    session.add(post)
    await session.flush()
    drop.deleted_at = utcnow()
    await session.flush()
    session.expunge_all()
    loaded = (await session.scalars(select(Post).options(selectinload(Post.tags)))).one()
    assert [t.name for t in loaded.tags] == ["keep"]
    joined = select(Tag.name).join(Post.tags).order_by(Tag.name)
    assert (await session.scalars(joined)).all() == ["keep"]


async def test_cte_is_filtered(session):
    """An ORM select used as a CTE is filtered inside the CTE."""
    await _users(session)
    cte = select(User.id, User.name).cte("u")
    assert (await session.scalars(select(cte.c.name))).all() == ["live"]


async def test_subquery_is_filtered(session):
    """An ORM select used as an IN subquery is filtered."""
    await _posts(session)
    sub = select(User.id).scalar_subquery()
    stmt = select(Post.title).where(Post.author_id.in_(select(User.id))).order_by(Post.title)
    del sub
    assert (await session.scalars(stmt)).all() == ["by-live"]


async def test_orm_update_and_delete_skip_soft_deleted(session):
    """ORM-enabled update()/delete() statements do not touch soft-deleted rows."""
    await _users(session)
    result = await session.execute(update(User).values(name="renamed"))
    assert result.rowcount == 1
    result = await session.execute(delete(User).where(User.email.like("%@x.org")))
    assert result.rowcount == 1
    stmt = select(User.name).execution_options(include_deleted=True)
    assert (await session.scalars(stmt)).all() == ["gone"]


async def test_refresh_of_deleted_object_works(session):
    """Refreshing a soft-deleted object still loads it: column loads are not filtered."""
    user = User(email="r@x.org")
    session.add(user)
    await session.flush()
    user.deleted_at = utcnow()
    await session.flush()
    await session.refresh(user)
    assert user.is_deleted


@pytest.mark.usefixtures("session")
async def test_plain_sessionmaker_is_filtered(engine, sessionmaker):
    """A plain AsyncSession from the user's own sessionmaker cannot see soft-deleted rows."""
    own = async_sessionmaker(engine)
    async with own() as s, s.begin():
        s.add_all([Widget(name="a"), Widget(name="b", deleted_at=utcnow())])
    async with own() as s:
        assert (await s.scalars(select(Widget.name))).all() == ["a"]
