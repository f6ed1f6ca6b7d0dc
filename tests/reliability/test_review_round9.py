"""Adversarial review of round 9: plain SAVEPOINTs for multi-statement bulk writes.

Bulk writes now run in a plain ``SAVEPOINT`` on SQLite and MariaDB too, ``bulk_create()``
sends each key set in one ``execute()``, a failed keyed write restores only what it
loaded, ``get()`` skips coercion for an int key and ``translate_errors()`` is a class.
These tests pin the behaviour checked and found correct.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import CheckConstraint, Integer, SmallInteger, String, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncAttrs, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import flavours
from reliability.support import own_tables
from sqla_repo import (
    BaseRepository,
    ConflictError,
    IntegerPKMixin,
    InvalidFilterError,
    SoftDeleteMixin,
)
from sqla_repo._translate import translate_errors

pytestmark = pytest.mark.usefixtures("flavour")


class _Base(AsyncAttrs, DeclarativeBase):
    pass


class Item(IntegerPKMixin, _Base):
    __tablename__ = "r9_items"
    __table_args__ = (CheckConstraint("rank >= 0", name="r9_items_rank"),)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    label: Mapped[str] = mapped_column(String(20), default="")
    rank: Mapped[int] = mapped_column(Integer, default=0)


class ItemRepo(BaseRepository[Item]):
    pass


ITEMS = Item.__table__


@pytest_asyncio.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with own_tables(engine, _Base.metadata) as session:
        yield session


async def _codes(session: AsyncSession) -> list[str]:
    rows = await session.execute(select(ITEMS.c.code).order_by(ITEMS.c.code))
    return [row[0] for row in rows]


def _rows(n, bad=None, prefix="r"):
    return [
        {"code": f"{prefix}{i:05d}", "label": "l", "rank": -1 if i == bad else i} for i in range(n)
    ]


def _items_in_session(session):
    return sorted(o.code for o in session.identity_map.values() if isinstance(o, Item))


@pytest.mark.parametrize("first", [True, False])
async def test_bulk_create_row_1500_fails(db, first):
    """A bulk_create() of 2500 rows whose row 1500 fails leaves nothing: no row, no object.

    With ``batch_size=None`` SQLAlchemy splits the one execute() into pages; the rows of
    the first page are rolled back, the caller's earlier write is kept (or, as the first
    statement, the driver transaction is rolled back) and the session goes on.
    """
    repo = flavours.make_repo(ItemRepo, db)
    marker = None if first else await repo.create({"code": "marker"})
    with pytest.raises(ConflictError):
        await repo.bulk_create(_rows(2500, bad=1500))
    assert _items_in_session(db) == ([] if first else ["marker"])
    await repo.create({"code": "after"})
    del marker
    await db.commit()
    assert await _codes(db) == (["after"] if first else ["after", "marker"])


async def test_bulk_create_order(db):
    """bulk_create() returns objects in input order across pages and key-set groups."""
    repo = flavours.make_repo(ItemRepo, db)
    rows = []
    for i in range(2500):
        row = {"code": f"c{2500 - i:05d}"}
        if i % 3 == 0:
            row["label"] = f"l{i}"
        if i % 7 == 0:
            row["rank"] = i
        rows.append(row)
    objs = await repo.bulk_create(rows)
    assert [o.code for o in objs] == [r["code"] for r in rows]
    assert len({id(o) for o in objs}) == 2500


async def test_bulk_create_then_outer_rollback(db):
    """After the caller rolls back, objects of a successful bulk_create() leave the session."""
    repo = flavours.make_repo(ItemRepo, db)
    await db.execute(select(1))
    objs = await repo.bulk_create(_rows(3))
    await db.rollback()
    assert all(o not in db for o in objs)
    assert await repo.get(objs[0].id) is None


async def test_bulk_create_in_nested_then_nested_rollback(db):
    """Rolling back the caller's own SAVEPOINT takes bulk_create()'s objects with it."""
    repo = flavours.make_repo(ItemRepo, db)
    await repo.create({"code": "marker"})
    nested = await db.begin_nested()
    objs = await repo.bulk_create(_rows(3))
    await nested.rollback()
    assert all(o not in db for o in objs)
    await db.commit()
    assert await _codes(db) == ["marker"]


@pytest.mark.parametrize(
    "op", ["bulk_create", "bulk_upsert", "bulk_get_or_create", "bulk_insert", "bulk_update"]
)
async def test_failure_inside_callers_nested(db, op):
    """A failed bulk write inside the caller's begin_nested() leaves that SAVEPOINT usable.

    The plain SAVEPOINT is rolled back and released inside SQLAlchemy's, whose earlier
    and later writes commit; the outer transaction's rows are untouched.
    """
    repo = flavours.make_repo(ItemRepo, db)
    await repo.create({"code": "outer"})
    base = await repo.bulk_create(_rows(3, prefix="b"))
    async with db.begin_nested():
        await repo.create({"code": "inner"})
        failing = {
            "bulk_create": lambda: repo.bulk_create(_rows(5, bad=3)),
            "bulk_upsert": lambda: repo.bulk_upsert(_rows(5, bad=3), conflict_on=["code"]),
            "bulk_get_or_create": lambda: repo.bulk_get_or_create(
                _rows(5, bad=3), conflict_on=["code"]
            ),
            "bulk_insert": lambda: repo.bulk_insert(_rows(5, bad=3)),
            "bulk_update": lambda: repo.bulk_update(
                [{"id": base[0].id, "rank": 5}, {"id": base[1].id, "rank": -5}]
            ),
        }[op]
        with pytest.raises(ConflictError):
            await failing()
        await repo.create({"code": "inner2"})
    await db.commit()
    assert await _codes(db) == ["b00000", "b00001", "b00002", "inner", "inner2", "outer"]
    ranks = (await db.execute(select(ITEMS.c.rank).order_by(ITEMS.c.code))).scalars().all()
    assert ranks[:3] == [0, 1, 2]


@pytest_asyncio.fixture(params=["legacy"])
async def lite(backend, request) -> AsyncIterator[AsyncSession]:
    if backend.name != "sqlite":
        pytest.skip("sqlite only")
    kw = {"isolation_level": "AUTOCOMMIT"} if request.param == "autocommit" else {}
    engine = create_async_engine(backend.url, **kw)
    try:
        async with own_tables(engine, _Base.metadata) as session:
            yield session
    finally:
        await engine.dispose()


@pytest.mark.parametrize("op", ["bulk_create", "bulk_upsert", "bulk_get_or_create", "bulk_insert"])
@pytest.mark.parametrize("before", ["nothing", "read", "write"])
async def test_legacy_sqlite_failed_bulk(lite, op, before):
    """Pysqlite's legacy transaction mode: a failed bulk write loses nothing of the caller's.

    Without a prior write no SAVEPOINT is sent and the driver transaction is rolled back;
    after one, the SAVEPOINT is rolled back and the caller's row commits.
    """
    db = lite
    repo = flavours.make_repo(ItemRepo, db)
    if before == "read":
        await db.execute(select(1))
    elif before == "write":
        await repo.create({"code": "marker"})
    with pytest.raises(ConflictError):
        await getattr(repo, op)(
            _rows(5, bad=3),
            **({"conflict_on": ["code"]} if op in ("bulk_upsert", "bulk_get_or_create") else {}),
        )
    await repo.create({"code": "after"})
    await db.commit()
    assert await _codes(db) == (["after", "marker"] if before == "write" else ["after"])


@pytest.mark.parametrize("op", ["bulk_create", "bulk_upsert", "bulk_get_or_create", "bulk_insert"])
@pytest.mark.parametrize("before", ["nothing", "read", "write"])
async def test_legacy_sqlite_ok_bulk_then_rollback(lite, op, before):
    """Legacy mode: a successful bulk write's RELEASE does not commit; the rollback undoes it."""
    db = lite
    repo = flavours.make_repo(ItemRepo, db)
    if before == "read":
        await db.execute(select(1))
    elif before == "write":
        await repo.create({"code": "marker"})
    await getattr(repo, op)(
        _rows(5),
        **({"conflict_on": ["code"]} if op in ("bulk_upsert", "bulk_get_or_create") else {}),
    )
    await db.rollback()
    assert await _codes(db) == []


class Gone(SoftDeleteMixin, _Base):
    __tablename__ = "r9_gone"
    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(20))


class GoneRepo(BaseRepository[Gone]):
    pass


@pytest.mark.parametrize(
    ("key", "refused"),
    [
        (True, True),
        (2**63, True),
        (40000, True),
        (3.0, True),
        (-1, False),
        ("3", False),
        (3, False),
    ],
)
async def test_get_odd_keys_on_soft_deleted(db, key, refused):
    """get() refuses bool, out-of-range and float keys and hides a soft-deleted row.

    The int fast path of ``ModelInfo.identity()`` accepts only a plain int in the
    SmallInteger range; everything else gets the full coercion, as before.
    """
    repo = flavours.make_repo(GoneRepo, db)
    row = await repo.create({"id": 3, "name": "x"})
    await repo.soft_delete(row)
    if refused:
        with pytest.raises(InvalidFilterError):
            await repo.get(key)
    else:
        assert await repo.get(key) is None
    assert (await repo.get(3, include_deleted=True)) is row


def test_translate_errors_chaining_and_passthrough():
    """translate_errors() chains the translated error from the original; others pass untouched."""
    orig = Exception("boom")
    err = sa_exc.IntegrityError("INSERT", {}, orig)
    with pytest.raises(ConflictError) as info, translate_errors(Item):
        raise err
    assert info.value.__cause__ is err
    assert info.value.__context__ is err
    for passthrough in (
        KeyboardInterrupt(),
        asyncio.CancelledError(),
        GeneratorExit(),
        ValueError("x"),
    ):
        with pytest.raises(type(passthrough)) as caught, translate_errors(Item):
            raise passthrough
        assert caught.value is passthrough
