"""Tenant scoping: stamped inserts, scoped statements, deny by default."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from models import Document, Gadget, Note, Product
from sqla_repo import (
    TenantMismatchError,
    TenantRequiredError,
    all_tenants,
    current_tenant,
    tenant,
)


async def _seed(session: AsyncSession) -> dict[str, Document]:
    docs = {}
    for name in ("acme", "globex"):
        with tenant(name):
            doc = Document(slug=f"{name}-doc")
            session.add(doc)
            await session.flush()
            session.add(Note(document_id=doc.id, text=f"{name}-note"))
            await session.flush()
            docs[name] = doc
    session.expunge_all()
    return docs


async def test_insert_is_stamped(session):
    """A new row gets the current tenant's id."""
    with tenant("acme"):
        doc = Document(slug="a")
        session.add(doc)
        await session.flush()
    assert doc.tenant_id == "acme"


async def test_select_is_scoped(session):
    """A tenant sees only its own rows."""
    await _seed(session)
    with tenant("acme"):
        assert (await session.scalars(select(Document.slug))).all() == ["acme-doc"]
        assert await session.scalar(select(func.count()).select_from(Note)) == 1


async def test_foreign_id_behaves_like_missing(session):
    """session.get() of another tenant's id returns None, like a missing id."""
    docs = await _seed(session)
    with tenant("acme"):
        assert await session.get(Document, docs["globex"].id) is None
        assert await session.get(Document, docs["acme"].id) is not None


async def test_relationship_loads_are_scoped(session):
    """Relationship loads and joins stay inside the tenant."""
    await _seed(session)
    with tenant("globex"):
        docs = (await session.scalars(select(Document).options(selectinload(Document.notes)))).all()
        assert [[n.text for n in d.notes] for d in docs] == [["globex-note"]]
        joined = select(Note.text).join(Note.document)
        assert (await session.scalars(joined)).all() == ["globex-note"]


async def test_update_and_delete_are_scoped(session):
    """ORM-enabled update()/delete() never touch another tenant's rows."""
    await _seed(session)
    with tenant("acme"):
        assert (await session.execute(update(Document).values(body="x"))).rowcount == 1
        assert (await session.execute(delete(Note))).rowcount == 1
    with all_tenants():
        bodies = (await session.execute(select(Document.tenant_id, Document.body))).all()
        assert sorted(bodies) == [("acme", "x"), ("globex", "")]
        assert (await session.scalars(select(Note.text))).all() == ["globex-note"]


async def test_no_tenant_refuses_select(session):
    """With no tenant set, a statement on a tenant model raises TenantRequiredError."""
    await _seed(session)
    assert current_tenant() is None
    with pytest.raises(TenantRequiredError) as info:
        await session.scalars(select(Document))
    assert info.value.detail["model"] == "Document"


async def test_no_tenant_refuses_flush(session):
    """With no tenant set, inserting a tenant row raises TenantRequiredError."""
    session.add(Document(slug="x"))
    with pytest.raises(TenantRequiredError):
        await session.flush()


async def test_no_tenant_refuses_update_and_insert_statements(session):
    """ORM update and insert statements are refused without a tenant."""
    with pytest.raises(TenantRequiredError):
        await session.execute(update(Gadget).values(name="x"))
    with pytest.raises(TenantRequiredError):
        await session.execute(insert(Gadget).values(name="x", tenant_id="acme"))


async def test_no_tenant_hides_joined_tenant_rows(session):
    """A tenant model reached only through a join matches nothing without a tenant."""
    await _seed(session)
    session.add(Product(sku="acme-doc"))
    await session.flush()
    stmt = select(Product.sku).join(Document, Document.slug == Product.sku)
    assert (await session.scalars(stmt)).all() == []
    with all_tenants():
        assert (await session.scalars(stmt)).all() == ["acme-doc"]


async def test_all_tenants_sees_everything(session):
    """all_tenants() lifts scoping explicitly."""
    await _seed(session)
    with all_tenants():
        slugs = (await session.scalars(select(Document.slug).order_by(Document.slug))).all()
    assert slugs == ["acme-doc", "globex-doc"]


async def test_all_tenants_requires_explicit_tenant_on_insert(session):
    """Inside all_tenants() a new row must name its tenant."""
    with all_tenants():
        session.add(Document(slug="x"))
        with pytest.raises(TenantRequiredError):
            await session.flush()
        session.expunge_all()
        session.add(Document(slug="y", tenant_id="initech"))
        await session.flush()


async def test_writing_foreign_tenant_id_raises(session):
    """Creating or moving a row into another tenant raises TenantMismatchError."""
    with tenant("acme"):
        session.add(Document(slug="x", tenant_id="globex"))
        with pytest.raises(TenantMismatchError):
            await session.flush()
        session.expunge_all()
        doc = Document(slug="y")
        session.add(doc)
        await session.flush()
        doc.tenant_id = "globex"
        with pytest.raises(TenantMismatchError):
            await session.flush()


async def test_insert_statement_with_foreign_tenant_raises(session):
    """An ORM insert() statement naming another tenant raises TenantMismatchError."""
    with tenant("acme"), pytest.raises(TenantMismatchError):
        await session.execute(insert(Gadget), [{"name": "g", "tenant_id": "globex"}])


async def test_insert_statement_is_stamped(session):
    """An ORM insert() statement without tenant_id is stamped by the column default."""
    with tenant("acme"):
        await session.execute(insert(Gadget), [{"name": "g1"}, {"name": "g2"}])
        assert (await session.scalars(select(Gadget.tenant_id))).all() == ["acme", "acme"]


async def test_concurrent_tasks_keep_their_tenant(session, sessionmaker):
    """Concurrent asyncio tasks each see their own tenant (contextvars)."""

    async def work(name: str) -> list[str]:
        with tenant(name):
            async with sessionmaker() as s, s.begin():
                s.add_all([Gadget(name=f"{name}-{i}") for i in range(3)])
            await asyncio.sleep(0)
            async with sessionmaker() as s:
                return sorted({g.tenant_id for g in (await s.scalars(select(Gadget))).all()})

    results = await asyncio.gather(*(work(f"t{i}") for i in range(10)))
    assert results == [[f"t{i}"] for i in range(10)]


async def test_tenant_rejects_empty_id():
    """An empty tenant id is refused."""
    with pytest.raises(ValueError, match="non-empty"), tenant(""):
        pass


async def test_another_tenants_loaded_row_cannot_be_moved_in(session):
    """A row loaded inside all_tenants() cannot be given the current tenant's id."""
    docs = await _seed(session)
    with all_tenants():
        theirs = await session.get(Document, docs["globex"].id)
    for cleared in ("acme", None):  # None would be stamped with the current tenant
        with tenant("acme"):
            theirs.tenant_id = cleared
            with pytest.raises(TenantMismatchError):
                await session.flush()
