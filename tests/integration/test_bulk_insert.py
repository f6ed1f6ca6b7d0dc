"""bulk_insert(): bulk_create's validation, defaults and atomicity, without objects."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from models import Client, Document, Folder, Note, Pin, Product, Widget
from recorder import StatementLog
from sqla_repo import (
    ConflictError,
    ForeignKeyViolationError,
    TenantMismatchError,
    TenantRequiredError,
    UniqueViolationError,
    actor,
    all_tenants,
    tenant,
)
from sqla_repo.repository import BaseRepository


class Products(BaseRepository[Product]):
    pass


class Documents(BaseRepository[Document]):
    pass


class Notes(BaseRepository[Note]):
    pass


class Pins(BaseRepository[Pin]):
    pass


class Clients(BaseRepository[Client]):
    pass


class Widgets(BaseRepository[Widget]):
    pass


async def _count(session, model) -> int:  # type: ignore[no-untyped-def]
    return int(await session.scalar(select(func.count()).select_from(model)))


async def test_inserts_every_row_and_builds_no_object(session) -> None:
    rows = [{"sku": f"s{i}", "price": i} for i in range(25)]
    assert await Products(session).bulk_insert(rows, batch_size=7) == 25
    assert not session.identity_map
    assert await _count(session, Product) == 25
    assert await Products(session).bulk_insert([]) == 0


async def test_defaults_audit_version_and_tenant_are_stamped(session) -> None:
    with tenant("A"), actor("ada"):
        n = await Documents(session).bulk_insert([{"slug": "a"}, {"slug": "b", "body": "x"}])
        assert n == 2
        docs = (await session.scalars(select(Document).order_by(Document.slug))).all()
    assert [d.tenant_id for d in docs] == ["A", "A"]
    assert [d.version for d in docs] == [1, 1]
    assert [d.created_by for d in docs] == ["ada", "ada"]
    assert all(d.created_at is not None and d.created_at == d.updated_at for d in docs)
    assert docs[0].id != docs[1].id


async def test_none_gets_the_default_like_create(session) -> None:
    await Widgets(session).bulk_insert([{"name": "w", "id": None}])
    (widget,) = (await session.scalars(select(Widget))).all()
    assert widget.id is not None


async def test_a_conflict_inserts_nothing_and_leaves_the_session_usable(session) -> None:
    repo = Products(session)
    await repo.bulk_insert([{"sku": "dup", "price": 1}])
    rows = [{"sku": f"n{i}", "price": 1} for i in range(5)] + [{"sku": "dup", "price": 2}]
    for batch_size in (100, 2):  # one statement, then several batches
        with pytest.raises(UniqueViolationError):
            await repo.bulk_insert(rows, batch_size=batch_size)
        assert await _count(session, Product) == 1
    assert await repo.bulk_insert([{"sku": "after", "price": 3}]) == 1
    assert await _count(session, Product) == 2


async def test_one_execute_per_key_set_by_default(session) -> None:
    """Without batch_size the driver's executemany gets every row with the same keys."""
    repo = Products(session)
    await repo.count()  # the transaction has run something: the write is protected
    rows = [{"sku": f"s{i}", "price": i} for i in range(2500)]
    rows += [{"sku": f"t{i}"} for i in range(3)]
    with StatementLog(session) as log:
        assert await repo.bulk_insert(rows) == 2503
    assert log.dml == ["INSERT", "INSERT"]
    assert await _count(session, Product) == 2503
    dup = [{"sku": f"u{i}", "price": 1} for i in range(2000)] + [{"sku": "s7", "price": 1}]
    with pytest.raises(UniqueViolationError):
        await repo.bulk_insert(dup)
    assert await _count(session, Product) == 2503


async def test_tenant_rules(session) -> None:
    repo = Notes(session)
    with tenant("A"):
        doc = await Documents(session).create({"slug": "d"})
        with pytest.raises(TenantMismatchError):
            await repo.bulk_insert([{"document_id": doc.id, "text": "x", "tenant_id": "B"}])
    with pytest.raises(TenantRequiredError):
        await repo.bulk_insert([{"document_id": doc.id, "text": "x"}])
    with all_tenants():
        with pytest.raises(TenantRequiredError):
            await repo.bulk_insert([{"document_id": doc.id, "text": "x"}])
        assert await _count(session, Note) == 0


async def test_a_reference_to_another_tenant_is_refused_like_a_missing_row(session) -> None:
    with tenant("B"):
        foreign = await Documents(session).create({"slug": "theirs"})
    with tenant("A"):
        with pytest.raises(ForeignKeyViolationError) as info:
            await Notes(session).bulk_insert([{"document_id": foreign.id, "text": "x"}])
        assert isinstance(info.value, ConflictError)
        with all_tenants():
            assert await _count(session, Note) == 0


async def test_composite_tenant_reference(session) -> None:
    with tenant("A"):
        folder = Folder(name="f")
        session.add(folder)
        await session.flush()
        assert await Pins(session).bulk_insert([{"folder_id": folder.id}]) == 1


async def test_joined_inheritance_writes_both_tables(session) -> None:
    with tenant("A"):
        assert await Clients(session).bulk_insert([{"name": "c", "company": "acme"}]) == 1
        (client,) = (await session.scalars(select(Client))).all()
    assert (client.name, client.company, client.kind, client.tenant_id) == (
        "c",
        "acme",
        "client",
        "A",
    )
