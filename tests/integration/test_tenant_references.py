"""Foreign keys into tenant-scoped tables are checked against the current tenant.

Every write path that can store a foreign key (the unit of work, ``create``, ``update`` by
instance and by id, ``update_where``, ``bulk_update``, ``bulk_create``, ``upsert``) must
refuse another tenant's row exactly as it refuses a row that exists nowhere, change
nothing, and leave the session usable; the tenant's own rows stay referenceable.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from models import (
    Bookmark,
    Code,
    CodeUse,
    Document,
    Folder,
    Invoice,
    Label,
    Note,
    Pin,
    Shortcut,
)
from recorder import StatementLog
from repositories import DocumentRepository
from sqla_repo import (
    ForeignKeyViolationError,
    InvalidValueError,
    TenantMismatchError,
    TenantRequiredError,
    all_tenants,
    tenant,
)
from sqla_repo.repository import BaseRepository


class NoteRepository(BaseRepository[Note]):
    pass


class FolderRepository(BaseRepository[Folder]):
    pass


class PinRepository(BaseRepository[Pin]):
    pass


class ShortcutRepository(BaseRepository[Shortcut]):
    pass


class BookmarkRepository(BaseRepository[Bookmark]):
    pass


class InvoiceRepository(BaseRepository[Invoice]):
    pass


class CodeRepository(BaseRepository[Code]):
    pass


class CodeUseRepository(BaseRepository[CodeUse]):
    pass


async def _flush_new(session: AsyncSession, note: Note, doc_id: uuid.UUID) -> Any:
    session.add(Note(document_id=doc_id, text="raw"))
    await session.flush()


async def _flush_change(session: AsyncSession, note: Note, doc_id: uuid.UUID) -> Any:
    note.document_id = doc_id
    await session.flush()


# Each write path, given the session, one of the tenant's notes and a document id to link.
Write = Callable[[AsyncSession, Note, uuid.UUID], Awaitable[Any]]
WRITES: dict[str, Write] = {
    "create(mapping)": lambda s, _n, d: NoteRepository(s).create({"document_id": d, "text": "n"}),
    "create(instance)": lambda s, _n, d: NoteRepository(s).create(Note(document_id=d, text="n")),
    "session.flush(new)": _flush_new,
    "session.flush(changed)": _flush_change,
    "update(instance)": lambda s, n, d: NoteRepository(s).update(n, document_id=d),
    "update(id)": lambda s, n, d: NoteRepository(s).update(n.id, document_id=d),
    "update_where": lambda s, n, d: NoteRepository(s).update_where(
        Note.id == n.id, values={"document_id": d}
    ),
    "bulk_update": lambda s, n, d: NoteRepository(s).bulk_update([{"id": n.id, "document_id": d}]),
    "bulk_create": lambda s, n, d: NoteRepository(s).bulk_create(
        [{"document_id": n.document_id, "text": "ok"}, {"document_id": d, "text": "n"}]
    ),
    "upsert": lambda s, n, d: NoteRepository(s).upsert(
        {"id": n.id, "document_id": d, "text": "n"}, conflict_on=["id"]
    ),
}


async def _setup(session: AsyncSession) -> tuple[Note, Document, Document]:
    """Globex holds a note on its own document, acme the document to probe with."""
    with tenant("acme"):
        foreign = await DocumentRepository(session).create({"slug": "acme-secret"})
    with tenant("globex"):
        docs = DocumentRepository(session)
        home = await docs.create({"slug": "home"})
        other = await docs.create({"slug": "other"})
        note = await NoteRepository(session).create({"document_id": home.id, "text": "mine"})
    del other
    return note, home, foreign


async def _snapshot(session: AsyncSession) -> list[tuple[Any, ...]]:
    with all_tenants():
        rows = await session.execute(
            select(Note.id, Note.tenant_id, Note.document_id, Note.text)
            .order_by(Note.id)
            .execution_options(include_deleted=True)
        )
    return [tuple(r) for r in rows]


@pytest.mark.parametrize("path", list(WRITES))
async def test_foreign_reference_is_refused_like_a_missing_one(session, path):
    """Another tenant's row and a missing row give the same error; nothing changes."""
    note, home, foreign = await _setup(session)
    before = await _snapshot(session)
    write = WRITES[path]
    with tenant("globex"):
        with pytest.raises(ForeignKeyViolationError) as missing:
            await write(session, note, uuid.uuid4())
        session.expunge_all()  # a refused flush leaves its objects behind, as SQLAlchemy does
        note = await NoteRepository(session).get_by_id(note.id)
        with pytest.raises(ForeignKeyViolationError) as refused:
            await write(session, note, foreign.id)
        session.expunge_all()
    assert str(refused.value) == str(missing.value)
    assert refused.value.detail == missing.value.detail
    assert refused.value.detail == {
        "model": "Note",
        "column": "document_id",
        "constraint": "fk_notes_document_id_documents",
    }
    assert await _snapshot(session) == before
    with tenant("globex"):  # the session is still usable
        assert (await NoteRepository(session).get_by_id(note.id)).document_id == home.id


@pytest.mark.parametrize("path", list(WRITES))
async def test_own_reference_is_accepted(session, path):
    """The tenant's own rows stay referenceable on every path."""
    note, _home, _foreign = await _setup(session)
    with tenant("globex"):
        target = await DocumentRepository(session).get_one(slug="other")
        await WRITES[path](session, note, target.id)
        session.expunge_all()
        linked = await NoteRepository(session).count(Note.document_id == target.id)
    assert linked == 1


async def test_relationship_to_a_foreign_object_is_refused(session):
    """An object loaded outside the tenant cannot be linked through a relationship."""
    with tenant("acme"):
        secret = await FolderRepository(session).create({"name": "secret"})
    with tenant("globex"):
        own = await FolderRepository(session).create({"name": "own"})
    with all_tenants():
        stranger = await session.get(Folder, secret.id)
    shortcuts = ShortcutRepository(session)
    with tenant("globex"):
        with pytest.raises(ForeignKeyViolationError):
            await shortcuts.create({"folder": stranger})
        with pytest.raises(ForeignKeyViolationError):
            await shortcuts.create(Shortcut(folder=stranger))
        linked = await shortcuts.create({"folder": own})
    assert linked.folder_id == own.id


async def test_backref_to_a_foreign_object_is_refused(session):
    """Linking changes the foreign object's collection, so the tenant check refuses it."""
    _note, home, foreign = await _setup(session)
    with all_tenants():
        stranger = await session.get(Document, foreign.id)
    with tenant("globex"):
        with pytest.raises(TenantMismatchError):
            await NoteRepository(session).create({"document": stranger, "text": "n"})
        own = await session.get(Document, home.id)
        linked = await NoteRepository(session).create({"document": own, "text": "n"})
    assert linked.document_id == home.id


async def test_all_tenants_writes_are_not_checked(session):
    """all_tenants() is the explicit opt-out: an administrator may link across tenants."""
    note, _home, foreign = await _setup(session)
    with all_tenants():
        moved = await NoteRepository(session).update(note.id, document_id=foreign.id)
    assert moved.document_id == foreign.id


async def test_soft_deleted_parent_stays_referenceable(session):
    """A soft-deleted row of the tenant can be referenced, as the database allows."""
    with tenant("acme"):
        folders = FolderRepository(session)
        folder = await folders.create({"name": "archive"})
        await folders.soft_delete(folder.id)
        pin = await PinRepository(session).create({"folder_id": folder.id})
    assert pin.folder_id == folder.id


async def test_composite_foreign_key_is_checked(session):
    """A key of several columns is matched as a whole."""
    with tenant("acme"):
        secret = await FolderRepository(session).create({"name": "secret"})
    with tenant("globex"):
        own = await FolderRepository(session).create({"name": "own"})
        pins = PinRepository(session)
        with pytest.raises(ForeignKeyViolationError) as refused:
            await pins.create({"folder_id": secret.id})
        with pytest.raises(ForeignKeyViolationError) as missing:
            await pins.create({"folder_id": secret.id + own.id + 1000})
        created = await pins.bulk_create(
            [{"folder_id": own.id, "tenant_id": "globex"}, {"folder_id": own.id}]
        )
    assert str(refused.value) == str(missing.value)
    assert refused.value.detail == missing.value.detail
    assert [p.folder_id for p in created] == [own.id, own.id]


async def test_unscoped_row_referencing_a_tenant_row_needs_the_tenant(session):
    """A model outside tenant scoping may point only at the current tenant's rows."""
    with tenant("acme"):
        secret = await FolderRepository(session).create({"name": "secret"})
    shortcuts = ShortcutRepository(session)
    with pytest.raises(TenantRequiredError):
        await shortcuts.create({"folder_id": secret.id})
    with tenant("globex"), pytest.raises(ForeignKeyViolationError):
        await shortcuts.bulk_create([{"folder_id": secret.id}])
    with tenant("acme"):
        created = await shortcuts.create({"folder_id": secret.id})
    assert created.folder_id == secret.id


async def test_check_costs_one_count_per_foreign_key(session):
    """One SELECT per referenced table and write; models without such keys pay nothing."""
    with tenant("acme"):
        docs = DocumentRepository(session)
        with StatementLog(session) as plain:
            doc = await docs.create({"slug": "s"})
        notes = NoteRepository(session)
        with StatementLog(session) as checked:
            await notes.bulk_create([{"document_id": doc.id, "text": str(i)} for i in range(50)])
    assert "SELECT" not in plain.dml
    assert checked.dml.count("SELECT") == 1


CONVERSIONS: dict[str, Callable[[int], Any]] = {
    "float": float,
    "decimal": Decimal,
    "text": lambda key: f"{key}.0",
    "bool": lambda _key: True,
}


@pytest.mark.parametrize("conversion", list(CONVERSIONS))
async def test_values_the_key_cannot_hold_are_refused(session, conversion):
    """1.0, Decimal(1), "1.0" or True could be converted by the database into a link.

    A float, a Decimal or text is not an integer column's type: refused as a value
    (``InvalidValueError``). ``True`` is an ``int``: refused as a missing reference.
    """
    with tenant("acme"):
        secret = await FolderRepository(session).create({"name": "secret"})
    value = CONVERSIONS[conversion](secret.id)
    shortcuts = ShortcutRepository(session)
    with tenant("globex"):
        for write in (
            lambda: shortcuts.create({"folder_id": value}),
            lambda: shortcuts.bulk_create([{"folder_id": value}]),
        ):
            expected = ForeignKeyViolationError if conversion == "bool" else InvalidValueError
            with pytest.raises(expected):
                await write()
    with all_tenants():
        assert await ShortcutRepository(session).count() == 0


async def test_a_parent_created_in_the_same_flush_can_be_referenced(session):
    """A UUID key exists before the flush: the new row is not in the table yet, but valid."""
    with tenant("acme"):
        doc = Document(slug="fresh")
        session.add(doc)
        session.add(Note(document_id=doc.id, text="first"))
        await session.flush()
        assert await NoteRepository(session).count(Note.document_id == doc.id) == 1


async def test_joined_inheritance_subclass_is_created(session):
    """The subclass table's key references its parent row, inserted in the same flush."""
    with tenant("acme"):
        invoices = InvoiceRepository(session)
        one = await invoices.create({"amount": 5})
        more = await invoices.bulk_create([{"amount": 6}, Invoice(amount=7)])
    assert [i.amount for i in [one, *more]] == [5, 6, 7]
    assert {i.tenant_id for i in [one, *more]} == {"acme"}


async def test_many_to_many_link_to_a_foreign_object_is_refused(session):
    """Association rows are checked through the objects appended to the collection."""
    with tenant("acme"):
        secret = await FolderRepository(session).create({"name": "secret"})
    with tenant("globex"):
        own = await FolderRepository(session).create({"name": "own"})
    with all_tenants():
        stranger = await session.get(Folder, secret.id)
    with tenant("globex"):
        label = Label(name="l", folders=[])
        session.add(label)
        await session.flush()
        label.folders.append(stranger)
        with pytest.raises(ForeignKeyViolationError):
            await session.flush()
        label.folders.remove(stranger)
        label.folders.append(own)
        await session.flush()
    with all_tenants():
        linked = (await session.execute(select(Label.id).join(Label.folders))).all()
    assert len(linked) == 1


async def test_model_of_another_registry_is_checked(session):
    """The tenant tables are found across registries sharing a MetaData."""
    with tenant("acme"):
        secret = await FolderRepository(session).create({"name": "secret"})
    with tenant("globex"), pytest.raises(ForeignKeyViolationError):
        await BookmarkRepository(session).create({"folder_id": secret.id})


@pytest.mark.parametrize("order", [("abc", "ABC"), ("ABC", "abc")])
async def test_keys_are_compared_by_the_database(session, order):
    """'ABC' (another tenant's) is not hidden behind 'abc' (own) in one batch."""
    with tenant("acme"):
        await CodeRepository(session).create({"code": "ABC"})
    with tenant("globex"):
        await CodeRepository(session).create({"code": "abc"})
        with pytest.raises(ForeignKeyViolationError):
            await CodeUseRepository(session).bulk_create([{"code": c} for c in order])
        used = await CodeUseRepository(session).bulk_create([{"code": "abc"}, {"code": "abc"}])
    assert [u.code for u in used] == ["abc", "abc"]


async def test_key_changed_beside_a_loaded_relationship_is_checked(session):
    """The column is what the flush writes when the relationship itself is unchanged."""
    with tenant("acme"):
        secret = await FolderRepository(session).create({"name": "secret"})
    with tenant("globex"):
        own = await FolderRepository(session).create({"name": "own"})
        shortcut = await ShortcutRepository(session).create({"folder": own})
        shortcut.folder_id = secret.id
        with pytest.raises(ForeignKeyViolationError):
            await session.flush()
    session.expunge_all()
    with tenant("globex"):
        assert (await ShortcutRepository(session).get_by_id(shortcut.id)).folder_id == own.id


async def test_an_object_made_up_in_memory_is_looked_up(session):
    """A related object's tenant_id in memory proves nothing: it can be made up."""
    with tenant("acme"):
        secret = await FolderRepository(session).create({"name": "secret"})
    session.expunge_all()
    with tenant("globex"):
        forged = Folder(id=secret.id, tenant_id="globex", name="secret")
        make_transient_to_detached(forged)
        session.add(forged)
        with pytest.raises(ForeignKeyViolationError):
            await ShortcutRepository(session).create({"folder": forged})
