"""The repository contract on model shapes real applications have.

One scenario of every read and write, run on: a model with ``lazy="joined"`` and
``lazy="selectin"`` collections and a JSON column, a single-precision float primary key,
a composite primary key, a joined-table subclass and a single-table subclass (both
tenant-scoped and soft-deletable).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import delete
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from models import Client, Manager
from models_eager import EagerBase, Membership, Reading, Shelf
from sqla_repo import tenant
from sqla_repo.repository import BaseRepository


@dataclass(frozen=True)
class Shape:
    model: type[Any]
    row: Callable[[int], dict[str, Any]]
    field: str
    value: Callable[[int], Any]
    tenant: str | None = None


SHAPES = {
    "eager-json": Shape(
        Shelf, lambda i: {"name": f"shelf-{i}", "meta": {"n": i, "tags": ["a"]}}, "name", str
    ),
    "float32-key": Shape(
        Reading, lambda i: {"value": i + 0.25, "label": f"r{i}"}, "label", lambda i: f"x{i}"
    ),
    "composite-key": Shape(
        Membership, lambda i: {"org_id": i % 2, "member": f"m{i}"}, "role", lambda i: f"role{i}"
    ),
    "joined-subclass": Shape(
        Client, lambda i: {"name": f"c{i}", "company": f"co{i}"}, "company", str, "A"
    ),
    "single-table-subclass": Shape(
        Manager, lambda i: {"email": f"m{i}@x.org", "reports": i}, "reports", int, "A"
    ),
}


@pytest_asyncio.fixture(autouse=True)
async def eager_tables(engine: AsyncEngine) -> AsyncIterator[None]:
    async with engine.begin() as conn:
        await conn.run_sync(EagerBase.metadata.create_all)
    yield
    async with engine.begin() as conn:
        for table in reversed(EagerBase.metadata.sorted_tables):
            await conn.execute(delete(table))


def _key(obj: object) -> tuple[Any, ...]:
    return tuple(sa_inspect(obj).identity)


def _ident(key: tuple[Any, ...]) -> Any:
    return key[0] if len(key) == 1 else key


@pytest.mark.parametrize("name", list(SHAPES))
async def test_the_whole_contract(session, name: str) -> None:
    shape = SHAPES[name]
    if shape.tenant is None:
        await _contract(session, shape)
    else:
        with tenant(shape.tenant):
            await _contract(session, shape)


async def _contract(session, shape: Shape) -> None:  # type: ignore[no-untyped-def]
    repo = BaseRepository.for_model(shape.model)(session)
    mapper = sa_inspect(shape.model)
    pk_keys = [mapper.get_property_by_column(c).key for c in mapper.primary_key]

    # Creates, in input order; reads see them.
    created = await repo.bulk_create([shape.row(i) for i in range(3)])
    created.append(await repo.create(shape.row(3)))
    keys = [_key(obj) for obj in created]
    assert len(set(keys)) == 4
    assert await repo.count() == 4
    assert await repo.exists()
    for obj, key in zip(created, keys, strict=True):
        assert await repo.get(_ident(key)) is obj
        assert await repo.get_by_id(_ident(key), populate_existing=True) is obj
    listed = await repo.list()
    assert sorted(map(_key, listed)) == sorted(keys)
    page = await repo.search(limit=3)
    assert (page.total, len(page.items)) == (4, 3)
    walked: list[tuple[Any, ...]] = []
    cursor = None
    for _ in range(10):
        cursor_page = await repo.paginate(limit=1, after=cursor)
        walked += map(_key, cursor_page.items)
        if not cursor_page.has_next:
            break
        cursor = cursor_page.next_cursor
    assert sorted(walked) == sorted(keys)
    assert len(walked) == 4
    streamed = [_key(obj) async for obj in repo.stream(batch_size=2)]
    assert sorted(streamed) == sorted(keys)

    # Updates by key, by instance, by criteria and in bulk.
    changed = await repo.update(_ident(keys[0]), **{shape.field: shape.value(100)})
    assert getattr(changed, shape.field) == shape.value(100)
    await repo.update(created[1], **{shape.field: shape.value(101)})
    assert getattr(await repo.get_by_id(_ident(keys[1])), shape.field) == shape.value(101)
    column = getattr(shape.model, shape.field)
    assert (
        await repo.update_where(column == shape.value(100), values={shape.field: shape.value(102)})
        == 1
    )
    bulk = [
        {**dict(zip(pk_keys, keys[i], strict=True)), shape.field: shape.value(200 + i)}
        for i in (2, 3)
    ]
    assert await repo.bulk_update(bulk) == 2
    reread = await repo.get_by_id(_ident(keys[3]), populate_existing=True)
    assert getattr(reread, shape.field) == shape.value(203)

    # Rows without objects, then deletes by key and by criteria.
    assert await repo.bulk_insert([shape.row(i) for i in (4, 5)]) == 2
    assert await repo.count() == 6
    await repo.delete(_ident(keys[0]))
    assert await repo.get(_ident(keys[0])) is None
    assert await repo.delete_where(column == shape.value(101)) == 1
    assert await repo.count() == 4
