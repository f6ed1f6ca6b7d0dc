"""After a failed bulk write, the session holds no object of a row the rollback undid.

Bulk writes load the rows they write into the session (``INSERT … RETURNING``, upserts
with ``populate_existing``, read-backs). When a later batch fails, the SAVEPOINT (or the
driver's transaction) takes the earlier batches' rows back: their objects must leave the
identity map, where ``session.get()`` would return them without a query, and objects
loaded before the write must not keep values that were rolled back.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from models import User
from repositories import UserRepository
from sqla_repo import ConflictError


def _users_in_session(session, emails: set[str]) -> list[User]:
    return [o for o in session.identity_map.values() if isinstance(o, User) and o.email in emails]


async def test_bulk_create_failing_in_a_later_batch_leaves_no_object(session) -> None:
    repo = UserRepository(session)
    await repo.create({"email": "dup@x.org"})
    rows = [{"email": f"{c}@x.org"} for c in "abc"] + [{"email": "dup@x.org"}]
    with pytest.raises(ConflictError):
        await repo.bulk_create(rows, batch_size=2)
    assert _users_in_session(session, {"a@x.org", "b@x.org", "c@x.org"}) == []
    assert await repo.count() == 1
    # The same rows can be written afterwards, and get() finds them.
    made = await repo.bulk_create(rows[:3], batch_size=2)
    assert [await repo.get(u.id) for u in made] == made


async def test_bulk_upsert_failing_restores_the_objects_it_loaded(session) -> None:
    repo = UserRepository(session)
    kept = await repo.create({"email": "a@x.org", "name": "before"})
    await repo.create({"email": "z@x.org", "username": "taken"})
    rows = [
        {"email": "a@x.org", "name": "during"},
        {"email": "b@x.org", "name": "new"},
        {"email": "c@x.org", "name": "new"},
        {"email": "d@x.org", "name": "new", "username": "taken"},  # a unique column refuses
    ]
    with pytest.raises(ConflictError):
        await repo.bulk_upsert(rows, conflict_on=["email"], batch_size=2)
    assert kept.name == "before"  # read again: the update was rolled back
    assert _users_in_session(session, {"b@x.org", "c@x.org", "d@x.org"}) == []
    names = await session.scalars(select(User.name).order_by(User.email))
    assert list(names) == ["before", ""]


async def test_bulk_get_or_create_refused_leaves_no_object(session) -> None:
    repo = UserRepository(session)
    await repo.create({"email": "a@x.org"})
    await repo.create({"email": "z@x.org", "username": "taken"})
    rows = [{"email": "a@x.org"}, {"email": "b@x.org"}, {"email": "c@x.org", "username": "taken"}]
    with pytest.raises(ConflictError):
        await repo.bulk_get_or_create(rows, conflict_on=["email"], batch_size=1)
    assert _users_in_session(session, {"b@x.org", "c@x.org"}) == []
    assert await repo.count() == 2
