"""Conditions through the same relationship hold for the same related row, on every backend.

``{"posts.title": "a", "posts.tags.name": "sql"}`` matches a user with *one* post titled
"a" carrying the tag "sql"; two posts, one of each, do not. The property test compares
the repository with a Python model of that rule over a fixed data set.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from models import Post, Tag, User, post_tags
from sqla_repo import BaseRepository, compile_filters

TITLES = ("a", "b", "c")
TAGS = ("sql", "orm", "web")


class UserRepo(BaseRepository[User]):
    filterable_fields = ("name", "posts.title", "posts.id", "posts.tags.name", "posts.tags.id")


class PostRepo(BaseRepository[Post]):
    filterable_fields = ("title", "tags.name", "tags.id")


@dataclass(frozen=True)
class PostRow:
    title: str
    tags: tuple[str, ...]
    deleted: bool = False


# name -> posts; "mixed" has the title and the tag on different posts.
USERS: dict[str, tuple[PostRow, ...]] = {
    "both": (PostRow("a", ("sql",)),),
    "mixed": (PostRow("a", ("orm",)), PostRow("b", ("sql",))),
    "many": (PostRow("a", ("sql", "orm")), PostRow("c", ("web",))),
    "deleted": (PostRow("a", ("sql",), deleted=True), PostRow("b", ("orm",))),
    "none": (),
    "untagged": (PostRow("c", ()),),
}


async def _seed(session: AsyncSession) -> dict[str, int]:
    """Store USERS; return each tag's id by name."""
    tags = {name: Tag(name=name) for name in TAGS}
    session.add_all(tags.values())
    await session.flush()
    links = []
    for name, rows in USERS.items():
        user = User(email=f"{name}@example.org", name=name)
        session.add(user)
        await session.flush()
        for row in rows:
            deleted_at = dt.datetime.now(dt.timezone.utc) if row.deleted else None
            post = Post(title=row.title, author_id=user.id, deleted_at=deleted_at)
            session.add(post)
            await session.flush()
            links += [{"post_id": post.id, "tag_id": tags[tag].id} for tag in row.tags]
    if links:
        await session.execute(insert(post_tags), links)
    return {name: tag.id for name, tag in tags.items()}


async def _names(session: AsyncSession, filters: Any) -> set[str]:
    return {user.name for user in await UserRepo(session).list(filters=filters)}


async def test_one_to_many_conditions_hold_for_one_post(session: AsyncSession) -> None:
    """Two conditions on posts: one post must satisfy both."""
    await _seed(session)
    filters = {"posts.title": "a", "posts.tags.name": "sql"}
    assert await _names(session, filters) == {"both", "many"}
    # Each condition alone still matches through any post.
    assert await _names(session, {"posts.title": "a"}) == {"both", "mixed", "many"}
    assert await _names(session, {"posts.tags.name": "sql"}) == {"both", "mixed", "many"}


async def test_many_to_many_conditions_hold_for_one_tag(session: AsyncSession) -> None:
    """Two conditions on tags: one tag must satisfy both."""
    ids = await _seed(session)
    posts = PostRepo(session)
    both = await posts.list(filters={"tags.name": "sql", "tags.id": ids["sql"]})
    assert {post.title for post in both} == {"a", "b"}  # the non-deleted posts tagged sql
    assert await posts.list(filters={"tags.name": "sql", "tags.id": ids["orm"]}) == []
    users = await _names(session, {"posts.tags.name": "sql", "posts.tags.id": ids["orm"]})
    assert users == set()


async def test_triples_on_one_path_share_the_row(session: AsyncSession) -> None:
    """The triple form groups too: two titles on one post can never both hold."""
    await _seed(session)
    filters = [("posts.title", "eq", "a"), ("posts.title", "eq", "b")]
    assert await _names(session, filters) == set()
    filters = [("posts.title", "in", ["a", "b"]), ("posts.title", "ne", "a")]
    assert await _names(session, filters) == {"mixed", "deleted"}


def test_compile_filters_returns_one_exists_per_relationship() -> None:
    """Own-field conditions stay separate; a relationship's conditions become one EXISTS."""
    conditions = compile_filters(
        User,
        {"name": "x", "posts.title": "a", "posts.tags.name": "sql", "posts.id__ge": 1},
        allowed=UserRepo.filterable_fields,
    )
    assert len(conditions) == 2  # name, and one EXISTS on posts
    sql = str(conditions[1])
    assert sql.count("EXISTS") == 2  # posts, and tags inside it


# -- property: the repository agrees with a Python model -----------------------------------

POST_CONDITIONS = st.sampled_from(
    [
        ("posts.title", "eq", "a"),
        ("posts.title", "eq", "b"),
        ("posts.title", "ne", "c"),
        ("posts.title", "in", ["a", "c"]),
    ]
)
TAG_CONDITIONS = st.sampled_from(
    [
        ("posts.tags.name", "eq", "sql"),
        ("posts.tags.name", "eq", "orm"),
        ("posts.tags.name", "ne", "web"),
        ("posts.tags.name", "in", ["orm", "web"]),
    ]
)
NAME_CONDITIONS = st.sampled_from([("name", "ne", "many"), ("name", "in", ["both", "mixed"])])


def _holds(value: str, op: str, operand: Any) -> bool:
    if op == "eq":
        return value == operand
    if op == "ne":
        return value != operand
    return value in operand


def _model(conditions: list[tuple[str, str, Any]]) -> set[str]:
    """The rule: every posts.* condition holds for one live post, tags.* for one of its tags."""
    own = [c for c in conditions if "." not in c[0]]
    on_post = [c for c in conditions if c[0] == "posts.title"]
    on_tag = [c for c in conditions if c[0] == "posts.tags.name"]
    through = bool(on_post or on_tag)
    matched = set()
    for name, rows in USERS.items():
        if not all(_holds(name, op, v) for _, op, v in own):
            continue
        post_ok = any(
            not row.deleted
            and all(_holds(row.title, op, v) for _, op, v in on_post)
            and (not on_tag or any(all(_holds(t, op, v) for _, op, v in on_tag) for t in row.tags))
            for row in rows
        )
        if post_ok or not through:
            matched.add(name)
    return matched


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    data=st.lists(st.one_of(POST_CONDITIONS, TAG_CONDITIONS, NAME_CONDITIONS), max_size=4),
)
@pytest.mark.usefixtures("seeded")
async def test_paths_agree_with_a_python_model(
    session: AsyncSession, data: list[tuple[str, str, Any]]
) -> None:
    """Whatever the mix of conditions, the database answers what the model says."""
    assert await _names(session, data) == _model(data)


@pytest.fixture
async def seeded(session: AsyncSession) -> None:
    await _seed(session)
