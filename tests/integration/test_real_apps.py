"""The repository contract on models shaped like real applications' (see models_eager).

fastapi-users' ``User`` has a ``lazy="joined"`` collection and adapters get the model only
at run time; RealWorld's tags are ensured by name from concurrent requests.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import joinedload, selectinload

from models import Code, Tag
from models_eager import Badge, Book, EagerBase, Keyword, Membership, Owner, Reading, Shelf, Token
from sqla_repo import (
    BaseRepository,
    ConfigurationError,
    ConflictError,
    RepositoryError,
    UniqueViolationError,
    tenant,
)


@pytest_asyncio.fixture(autouse=True)
async def eager_tables(engine: AsyncEngine) -> AsyncIterator[None]:
    """Create this module's tables once per database; empty them after each test."""
    async with engine.begin() as conn:
        await conn.run_sync(EagerBase.metadata.create_all)
    yield
    async with engine.begin() as conn:
        for table in reversed(EagerBase.metadata.sorted_tables):
            await conn.execute(delete(table))


class ShelfRepository(BaseRepository[Shelf]):
    filterable_fields = ("name",)
    sortable_fields = ("name",)


class ShelvesWithBooks(ShelfRepository):
    """A base_select() joining a collection, on a model with a JSON column."""

    def base_select(self) -> Any:
        return select(Shelf).join(Shelf.books).where(Book.title.like("b%"))


async def seed(session: AsyncSession, count: int = 3) -> list[int]:
    """Shelves s0..s<count-1>, each with two books, one badge and the same owner."""
    owner = Owner(name="o")
    session.add(owner)
    await session.flush()
    ids = []
    for i in range(count):
        shelf = Shelf(name=f"s{i}", meta={"i": i}, owner_id=owner.id)
        session.add(shelf)
        await session.flush()
        session.add_all([Book(shelf_id=shelf.id, title=f"b{i}{j}") for j in range(2)])
        session.add(Badge(shelf_id=shelf.id, label=f"l{i}"))
        ids.append(shelf.id)
    await session.flush()
    session.expunge_all()
    return ids


def loaded(shelf: Shelf) -> tuple[str, int, int, str | None]:
    """Touch every eager relationship (MissingGreenlet if one needed lazy IO)."""
    return shelf.name, len(shelf.books), len(shelf.badges), shelf.owner and shelf.owner.name


# -- 1. lazy="joined" collections -------------------------------------------------------


async def test_reads_of_a_model_with_a_joined_collection(session):
    """list(), search(), paginate(), get_one() and stream() return each row once, loaded."""
    await seed(session)
    repo = ShelfRepository(session)
    assert [loaded(s) for s in await repo.list(order_by="name")] == [
        ("s0", 2, 1, "o"),
        ("s1", 2, 1, "o"),
        ("s2", 2, 1, "o"),
    ]
    page = await repo.search(order_by="name", limit=2)
    assert ([s.name for s in page.items], page.total) == (["s0", "s1"], 3)
    first = await repo.paginate(order_by="name", limit=2)
    rest = await repo.paginate(order_by="name", limit=2, after=first.next_cursor)
    assert [s.name for s in first.items + rest.items] == ["s0", "s1", "s2"]
    assert loaded(await repo.get_one(name="s1")) == ("s1", 2, 1, "o")
    streamed = [loaded(s) async for s in repo.stream(order_by="name", batch_size=2)]
    assert streamed == [("s0", 2, 1, "o"), ("s1", 2, 1, "o"), ("s2", 2, 1, "o")]


async def test_stream_refuses_a_joined_collection_option(session):
    """A joinedload() of a collection cannot run under yield_per: a typed error says so."""
    await seed(session, 1)
    repo = ShelfRepository(session)
    with pytest.raises(ConfigurationError, match="selectinload"):
        async for _ in repo.stream(options=[joinedload(Shelf.books)]):
            pass
    option = joinedload(Shelf.badges)
    if repo.dialect_name in {"mysql", "mariadb"}:
        # Eager loads there stream in buffered keyset batches, where a join is fine.
        assert [loaded(s) async for s in repo.stream(options=[option])] == [("s0", 2, 1, "o")]
        return
    with pytest.raises(ConfigurationError, match="selectinload"):
        async for _ in repo.stream(options=[option]):
            pass


# -- 4. an earlier pending object is not blamed on create() ----------------------------


async def test_create_does_not_take_the_blame_for_a_pending_object(session):
    """A pending duplicate fails as itself (no model named), not as the created row."""
    repo = BaseRepository.for_model(Keyword)(session)
    await repo.create({"name": "dup"})
    session.add(Keyword(name="dup"))
    with pytest.raises(UniqueViolationError) as caught:
        await repo.create({"name": "mine"})
    assert caught.value.model is None


async def test_create_flushes_valid_pending_objects_first(session):
    """Pending objects are flushed before the SAVEPOINT; a conflict of ours spares them."""
    repo = BaseRepository.for_model(Keyword)(session)
    await repo.create({"name": "taken"})
    session.add(Keyword(name="pending"))
    with pytest.raises(UniqueViolationError) as caught:
        await repo.create({"name": "taken"})
    assert caught.value.model is Keyword
    assert {k.name for k in await repo.list()} == {"taken", "pending"}


# -- 5. base_select() joins dedupe by key, not DISTINCT --------------------------------


async def test_joined_base_select_on_a_json_model(session):
    """A fanning join works with a JSON column and an ORDER BY expression, counts right."""
    await seed(session)
    repo = ShelvesWithBooks(session)
    names = [s.name for s in await repo.list(order_by=func.lower(Shelf.name).desc())]
    assert names == ["s2", "s1", "s0"]
    page = await repo.search(order_by=[func.lower(Shelf.name)], limit=2, offset=1)
    assert ([s.name for s in page.items], page.total) == (["s1", "s2"], 3)
    assert await repo.count() == 3
    assert (await repo.get_one(name="s1")).meta == {"i": 1}
    keyset = await repo.paginate(order_by="name", limit=2)
    assert [s.name for s in keyset.items] == ["s0", "s1"]
    assert [s.name for s in await repo.list(limit=2, order_by="name")] == ["s0", "s1"]


# -- 6. update() by key that changes the key -------------------------------------------


async def test_update_by_key_can_change_the_key(session):
    """The row is read back by its new key (MariaDB has no UPDATE … RETURNING)."""
    members = BaseRepository.for_model(Membership)(session)
    await members.create({"org_id": 1, "member": "ada"})
    moved = await members.update((1, "ada"), member="grace", role="owner")
    assert (moved.org_id, moved.member, moved.role) == (1, "grace", "owner")
    assert await members.get((1, "ada")) is None
    readings = BaseRepository.for_model(Reading)(session)
    await readings.create({"value": 0.5, "label": "half"})
    changed = await readings.update(0.5, value=1.25)
    assert (changed.value, changed.label) == (1.25, "half")
    assert (await readings.get_by_id(1.25)).label == "half"


# -- 7. one rule for identity lookups --------------------------------------------------


async def test_identity_lookups_ignore_base_select(session):
    """get(), get(options=…) and default_options agree: by key, without base_select()."""
    ids = await seed(session, 1)

    class Hidden(ShelfRepository):
        def base_select(self) -> Any:
            return select(Shelf).where(Shelf.name != "s0")

    class HiddenWithDefaults(Hidden):
        default_options = (selectinload(Shelf.badges),)

    session.expunge_all()
    assert (await Hidden(session).get(ids[0])).name == "s0"
    session.expunge_all()
    assert (await Hidden(session).get(ids[0], options=[selectinload(Shelf.badges)])).name == "s0"
    session.expunge_all()
    assert (await HiddenWithDefaults(session).get_by_id(ids[0])).name == "s0"
    assert await Hidden(session).get_one_or_none(name="s0") is None


# -- 8. bulk_create() treats None as create() does -------------------------------------


async def test_bulk_create_none_fires_defaults_like_create(session):
    """An explicit None for a column with a default gets the default, as in create()."""
    tokens = BaseRepository.for_model(Token)(session)
    one = await tokens.create({"id": None, "label": None, "note": None})
    many = await tokens.bulk_create(
        [{"id": None, "label": None, "note": None}, {"label": "x", "note": None}]
    )
    assert one.id is not None
    assert one.label == "unnamed"
    assert one.note is None
    assert [(t.id is not None, t.label, t.note) for t in many] == [
        (True, "unnamed", None),
        (True, "x", None),
    ]
    keywords = BaseRepository.for_model(Keyword)(session)
    made = await keywords.bulk_create([{"id": None, "name": "k", "color": None}])
    assert (made[0].id is not None, made[0].color, made[0].version) == (True, "grey", 1)


# -- for_model() -----------------------------------------------------------------------


T = TypeVar("T")


class AppRepository(BaseRepository[T]):
    max_page_size = 7

    async def names(self) -> list[str]:
        return [row.name for row in await self.list()]


async def test_for_model_is_cached_and_subclass_aware(session):
    """One class per (repository class, model), deriving from the class it is called on."""
    assert BaseRepository.for_model(Keyword) is BaseRepository.for_model(Keyword)
    app = AppRepository.for_model(Keyword)
    assert app is AppRepository.for_model(Keyword)
    assert app is not BaseRepository.for_model(Keyword)
    assert issubclass(app, AppRepository)
    assert app.model is Keyword
    assert app.max_page_size == 7
    await app(session).create({"name": "n"})
    assert await app(session).names() == ["n"]
    with pytest.raises(ConfigurationError):
        BaseRepository.for_model(int)


# -- returned objects are ready to use -------------------------------------------------


async def test_written_objects_have_their_eager_relationships_loaded(session):
    """create/update/get_or_create/upsert/bulk_* return objects needing no lazy IO."""
    owner = Owner(name="o")
    session.add(owner)
    await session.flush()
    repo = ShelfRepository(session)
    created = await repo.create({"name": "a", "owner_id": owner.id})
    assert loaded(created) == ("a", 0, 0, "o")
    session.expunge_all()
    by_key = await repo.update(created.id, name="b")
    assert loaded(by_key) == ("b", 0, 0, "o")
    session.expunge_all()
    found, made = await repo.get_or_create(name="b")
    assert (loaded(found), made) == (("b", 0, 0, "o"), False)
    fresh, made = await repo.get_or_create({"owner_id": owner.id}, name="c")
    assert (loaded(fresh), made) == (("c", 0, 0, "o"), True)
    session.expunge_all()
    upserted = await repo.upsert({"name": "c", "meta": {"x": 1}}, conflict_on=["name"])
    assert loaded(upserted) == ("c", 0, 0, "o")
    session.expunge_all()
    rows = await repo.bulk_create([{"name": "d"}])
    ensured = await repo.bulk_get_or_create([{"name": "d"}, {"name": "e"}], conflict_on=["name"])
    assert [loaded(s) for s in rows + ensured] == [
        ("d", 0, 0, None),
        ("d", 0, 0, None),
        ("e", 0, 0, None),
    ]


async def test_writes_take_loader_options(session):
    """options= on writes loads the relationships they name (Book.shelf is lazy="raise")."""
    (shelf_id,) = await seed(session, 1)
    books = BaseRepository.for_model(Book)(session)
    book = await books.create(
        {"shelf_id": shelf_id, "title": "t"}, options=[joinedload(Book.shelf)]
    )
    assert book.shelf.name == "s0"
    session.expunge_all()
    renamed = await books.update(book.id, {"title": "u"}, options=[selectinload(Book.shelf)])
    assert (renamed.title, renamed.shelf.name) == ("u", "s0")


# -- populate_existing -----------------------------------------------------------------


async def test_populate_existing_reloads_rows_and_relationships(session):
    """Rows changed behind the session's back are re-read only with populate_existing."""
    (shelf_id,) = await seed(session, 1)
    repo = ShelfRepository(session)
    shelf = await repo.get_by_id(shelf_id)
    await session.execute(update(Shelf.__table__).values(name="renamed"))
    await session.execute(insert(Book.__table__).values(shelf_id=shelf_id, title="new"))
    assert (await repo.get(shelf_id)).name == "s0"
    assert (await repo.list())[0].name == "s0"
    again = await repo.get(shelf_id, populate_existing=True)
    assert again is shelf
    assert loaded(again) == ("renamed", 3, 1, "o")
    await session.execute(update(Shelf.__table__).values(name="twice"))
    assert (await repo.list(populate_existing=True))[0].name == "twice"
    await session.execute(update(Shelf.__table__).values(name="thrice"))
    assert (await repo.get_one(name="thrice", populate_existing=True)).name == "thrice"
    await session.execute(update(Shelf.__table__).values(name="four"))
    opts = [selectinload(Shelf.badges)]
    assert (await repo.get_by_id(shelf_id, options=opts, populate_existing=True)).name == "four"


# -- bulk_get_or_create() --------------------------------------------------------------


async def test_bulk_get_or_create_leaves_existing_rows_alone(session):
    """Input order, duplicates share one object, existing rows keep updated_at/version."""
    repo = BaseRepository.for_model(Keyword)(session)
    old = await repo.create({"name": "b", "color": "red"})
    stamp, version = old.updated_at, old.version
    rows = await repo.bulk_get_or_create(
        [{"name": "c"}, {"name": "b", "color": "blue"}, {"name": "a"}, {"name": "c"}],
        conflict_on=["name"],
    )
    assert [k.name for k in rows] == ["c", "b", "a", "c"]
    assert rows[0] is rows[3]
    assert rows[1] is old
    session.expunge_all()
    again = await repo.get_by_id(old.id)
    assert (again.color, again.updated_at, again.version) == ("red", stamp, version)
    assert await repo.count() == 3
    assert await repo.bulk_get_or_create([], conflict_on=["name"]) == []


async def test_bulk_get_or_create_refuses_invisible_or_bad_keys(session):
    """A soft-deleted or another tenant's row with the key is a conflict; None is refused."""
    tags = BaseRepository.for_model(Tag)(session)
    gone = await tags.create({"name": "gone"})
    await tags.soft_delete(gone)
    with pytest.raises(ConflictError):
        await tags.bulk_get_or_create([{"name": "fine"}, {"name": "gone"}], conflict_on=["name"])
    assert await tags.get_one_or_none(name="fine") is None  # all or nothing
    with pytest.raises(RepositoryError):
        await tags.bulk_get_or_create([{"name": None}], conflict_on=["name"])
    codes = BaseRepository.for_model(Code)(session)
    with tenant("A"):
        await codes.create({"code": "shared"})
    with tenant("B"), pytest.raises(ConflictError):
        await codes.bulk_get_or_create([{"code": "shared"}], conflict_on=["code"])
    with tenant("B"):
        (mine,) = await codes.bulk_get_or_create([{"code": "own"}], conflict_on=["code"])
    assert mine.tenant_id == "B"


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(names=st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=8))
async def test_bulk_get_or_create_maps_every_key_to_its_one_row(session, names):
    """Whatever the keys and repeats: one row per key, returned in input order."""
    async with session.begin_nested() as savepoint:
        repo = BaseRepository.for_model(Keyword)(session)
        await repo.bulk_create([{"name": "c"}])
        rows = await repo.bulk_get_or_create([{"name": n} for n in names], conflict_on=["name"])
        assert [r.name for r in rows] == names
        assert len({id(r) for r in rows}) == len(set(names))
        assert await repo.count() == len(set(names) | {"c"})
        await savepoint.rollback()
    session.expunge_all()


@pytest.mark.parametrize("read_first", [False, True])
async def test_bulk_get_or_create_race_has_no_deadlock(backend, sessionmaker, requires, read_first):
    """Concurrent callers listing the same keys in any order end with one row per key.

    With ``read_first`` each transaction reads before the race, so that under REPEATABLE
    READ its snapshot predates the rows the others commit.
    """
    del sessionmaker  # requested for its clean-up of the shared tables
    requires("concurrent_writers")
    tasks, keys = 16, [f"tag{i}" for i in range(12)]
    engine = backend.engine(pool_size=tasks + 2, max_overflow=0, pool_timeout=60)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    gate = asyncio.Barrier(tasks)

    async def caller(seed: int) -> list[str]:
        mine = random.Random(seed).sample(keys, len(keys))  # noqa: S311 - a shuffle
        async with maker() as session, session.begin():
            await session.connection()
            if read_first:
                await session.scalar(select(func.count()).select_from(Keyword))
            await gate.wait()
            rows = await BaseRepository.for_model(Keyword)(session).bulk_get_or_create(
                [{"name": k} for k in mine], conflict_on=["name"]
            )
            return [r.name for r in rows] == mine and [r.name for r in rows]

    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(caller(i) for i in range(tasks)), return_exceptions=True), 60
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors
        assert all(results)
        async with maker() as session:
            counts = await session.execute(
                select(Keyword.name, func.count()).group_by(Keyword.name)
            )
            assert dict(counts.all()) == dict.fromkeys(keys, 1)
    finally:
        await engine.dispose()
