"""A rollback takes the objects of statement writes away, as it takes flushed ones.

A write's objects are recorded as one entry of weak references, moved into SQLAlchemy's
own bookkeeping only when a rollback comes (``sqla_repo._new_objects``): every way a
transaction or SAVEPOINT ends must treat them as it treats flushed objects, whatever
the number of rows.
"""

from __future__ import annotations

import contextlib
import gc

import pytest
from sqlalchemy import func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flavours import make_repo
from models import Post
from repositories import PostRepository
from sqla_repo import ConflictError, _new_objects

pytestmark = pytest.mark.usefixtures("flavour")

SIZES = pytest.mark.parametrize("size", [1, 3, 100], ids=["one", "few", "many"])
MANY = 100


def _rows(prefix: str, size: int) -> list[dict[str, str]]:
    return [{"title": f"{prefix}{i}"} for i in range(size)]


def _persistent(objs: list[Post]) -> list[bool]:
    return [sa_inspect(obj).persistent for obj in objs]


async def _titles(session: AsyncSession) -> list[str]:
    return sorted((await session.scalars(select(Post.title))).all())


@SIZES
async def test_root_rollback(session: AsyncSession, size: int) -> None:
    repo = make_repo(PostRepository, session)
    ghosts = await repo.bulk_create(_rows("g", size))
    await session.rollback()
    assert not any(_persistent(ghosts))
    assert await repo.get_one_or_none(title="g0") is None
    assert await repo.bulk_create(_rows("g", size))  # the identities are free again


@SIZES
async def test_savepoint_rollback_spares_earlier_work(session: AsyncSession, size: int) -> None:
    repo = make_repo(PostRepository, session)
    kept = await repo.bulk_create(_rows("k", size))
    with contextlib.suppress(LookupError):
        async with session.begin_nested():
            ghosts = await repo.bulk_create(_rows("g", size))
            raise LookupError
    assert not any(_persistent(ghosts))
    assert all(_persistent(kept))
    assert await _titles(session) == sorted(row["title"] for row in _rows("k", size))
    assert (await repo.get(kept[0].id)) is kept[0]


@SIZES
async def test_released_savepoint_then_root_rollback(session: AsyncSession, size: int) -> None:
    repo = make_repo(PostRepository, session)
    async with session.begin_nested():
        inner = await repo.bulk_create(_rows("i", size))
    outer = await repo.bulk_create(_rows("o", size))
    await session.rollback()
    assert not any(_persistent(inner + outer))


@SIZES
async def test_inner_savepoint_rollback_keeps_the_outer_batch(
    session: AsyncSession, size: int
) -> None:
    repo = make_repo(PostRepository, session)
    async with session.begin_nested():
        outer = await repo.bulk_create(_rows("o", size))
        with contextlib.suppress(LookupError):
            async with session.begin_nested():
                inner = await repo.bulk_create(_rows("i", size))
                raise LookupError
        assert all(_persistent(outer))
        assert not any(_persistent(inner))
    assert all(_persistent(outer))
    assert len(await _titles(session)) == size


@SIZES
async def test_committed_objects_survive_a_later_rollback(
    sessionmaker: async_sessionmaker[AsyncSession], size: int
) -> None:
    async with sessionmaker() as session:
        repo = make_repo(PostRepository, session)
        committed = await repo.bulk_create(_rows("c", size))
        await session.commit()
        later = await repo.bulk_create(_rows("l", size))
        await session.rollback()
        assert all(_persistent(committed))
        assert not any(_persistent(later))
        assert await repo.count() == size


@SIZES
async def test_failed_write_after_a_batch(session: AsyncSession, size: int) -> None:
    """A failed bulk_create() in the same transaction takes only its own objects."""
    repo = make_repo(PostRepository, session)
    kept = await repo.bulk_create(_rows("k", size))
    with pytest.raises(ConflictError):
        await repo.bulk_create([*_rows("n", size), {"title": "x", "author_id": 10**9}])
    assert all(_persistent(kept))
    assert await repo.count() == size


async def test_freed_objects_before_the_rollback(session: AsyncSession) -> None:
    repo = make_repo(PostRepository, session)
    await repo.bulk_create(_rows("f", MANY))
    gc.collect()
    kept = await repo.bulk_create(_rows("k", MANY))
    await session.rollback()
    assert not any(_persistent(kept))
    assert await session.scalar(select(func.count()).select_from(Post)) == 0


@pytest.mark.parametrize("end", ["commit", "rollback", "close"])
async def test_records_are_forgotten_when_the_transaction_ends(
    sessionmaker: async_sessionmaker[AsyncSession], end: str
) -> None:
    """The weak references of a write live as long as its transaction, not the session's."""
    async with sessionmaker() as session:
        repo = make_repo(PostRepository, session)
        await repo.bulk_create(_rows("b", MANY))
        await repo.create({"title": "one"})
        assert len(_new_objects._ENTRIES[session.sync_session].entries) == 2
        await getattr(session, end)()
        assert session.sync_session not in _new_objects._ENTRIES


async def test_records_of_a_long_transaction_stay_bounded(session: AsyncSession) -> None:
    """Objects written and dropped in one long transaction leave no weak reference each.

    An import that calls ``bulk_create()`` chunk after chunk and drops each chunk's
    objects holds memory for what is alive, not for every row the transaction inserted.
    """
    repo = make_repo(PostRepository, session)
    for chunk in range(60):
        await repo.bulk_create(_rows(f"c{chunk}-", 64))
    gc.collect()
    entries = _new_objects._ENTRIES[session.sync_session]
    held = sum(len(refs) for _, refs in entries.entries)
    assert held <= 2 * _new_objects._COMPACT_FROM
    assert entries.count == held
