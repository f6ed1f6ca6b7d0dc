"""Tenant isolation under random interleavings of two tenants' operations.

A state machine plays ``acme`` and ``globex`` against one session: creates, updates by id
and by instance, ``update_where``, ``delete_where``, ``bulk_update``, ``upsert``,
``get_or_create``, deletes, notes created on and moved between documents of either
tenant, soft deletes and restores of notes, and every read by a foreign id. After each
step the database must equal an in-memory model in which a tenant's operations only ever
touch its own rows, and a foreign id must behave exactly like one that does not exist.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from machines import SessionMachine
from models import Document, Note
from repositories import DocumentRepository
from sqla_repo import (
    ForeignKeyViolationError,
    NotFoundError,
    RepositoryError,
    TenantMismatchError,
    UniqueViolationError,
    all_tenants,
    tenant,
)
from sqla_repo.repository import BaseRepository

TENANTS = ("acme", "globex")
who = st.sampled_from(TENANTS)
slugs = st.sampled_from(["a", "b", "c", "d", "e"])
bodies = st.text(alphabet="xyz", max_size=4)


class NoteRepository(BaseRepository[Note]):
    pass


def _same_refusal(foreign: BaseException, missing: BaseException) -> None:
    """A foreign id is refused exactly like an id that exists nowhere."""
    assert type(foreign) is type(missing)
    assert str(foreign) == str(missing)
    strip = {"identity"}
    assert {k: v for k, v in foreign.detail.items() if k not in strip} == {  # type: ignore[attr-defined]
        k: v
        for k, v in missing.detail.items()  # type: ignore[attr-defined]
        if k not in strip
    }


class TenantMachine(SessionMachine):
    """Each step runs as one tenant; the model says what that tenant may see and change."""

    documents = Bundle("documents")
    notes = Bundle("notes")

    def __init__(self) -> None:
        super().__init__()
        self.docs = DocumentRepository(self.session)
        self.note_repo = NoteRepository(self.session)
        # id -> {"tenant", "slug", "body"}; id -> {"tenant", "document", "text", "deleted"}
        self.expected_docs: dict[uuid.UUID, dict[str, Any]] = {}
        self.expected_notes: dict[int, dict[str, Any]] = {}
        # Strong references keep loaded rows in the session's (weak) identity map, so reads
        # by the other tenant meet them there as well as in the database.
        self.held: list[Any] = []

    # -- helpers -----------------------------------------------------------------------------

    def own(self, tenant_id: str) -> dict[uuid.UUID, dict[str, Any]]:
        return {k: v for k, v in self.expected_docs.items() if v["tenant"] == tenant_id}

    def is_own(self, tenant_id: str, ident: uuid.UUID) -> bool:
        row = self.expected_docs.get(ident)
        return row is not None and row["tenant"] == tenant_id

    def referenced(self, ident: uuid.UUID) -> bool:
        return any(n["document"] == ident for n in self.expected_notes.values())

    def refused_like_missing(
        self,
        who: str,
        ident: uuid.UUID,
        call: Any,
        expected: type[RepositoryError] = NotFoundError,
    ) -> None:
        """``call(ident)`` raises exactly what it raises for an id that exists nowhere."""
        with tenant(who), pytest.raises(RepositoryError) as foreign:
            self.run(call(ident))
        with tenant(who), pytest.raises(RepositoryError) as missing:
            self.run(call(uuid.uuid4()))
        assert isinstance(foreign.value, expected)
        _same_refusal(foreign.value, missing.value)

    # -- documents ---------------------------------------------------------------------------

    @rule(target=documents, who=who, slug=slugs, body=bodies)
    def create(self, who: str, slug: str, body: str) -> Any:
        taken = any(v["slug"] == slug for v in self.own(who).values())
        with tenant(who):
            if taken:
                # The other tenant's slugs never collide: the key is (tenant_id, slug).
                with pytest.raises(UniqueViolationError):
                    self.run(self.docs.create({"slug": slug, "body": body}))
                return multiple()
            doc = self.run(self.docs.create({"slug": slug, "body": body}))
        self.held.append(doc)
        assert doc.tenant_id == who
        self.expected_docs[doc.id] = {"tenant": who, "slug": slug, "body": body}
        return doc.id

    @rule(target=documents, who=who, slug=slugs, body=bodies)
    def upsert(self, who: str, slug: str, body: str) -> Any:
        with tenant(who):
            doc = self.run(
                self.docs.upsert({"slug": slug, "body": body}, conflict_on=["tenant_id", "slug"])
            )
        self.held.append(doc)
        assert (doc.tenant_id, doc.slug, doc.body) == (who, slug, body)
        existing = [k for k, v in self.own(who).items() if v["slug"] == slug]
        assert existing in ([], [doc.id])
        self.expected_docs[doc.id] = {"tenant": who, "slug": slug, "body": body}
        return doc.id

    @rule(target=documents, who=who, slug=slugs, body=bodies)
    def get_or_create(self, who: str, slug: str, body: str) -> Any:
        with tenant(who):
            doc, created = self.run(self.docs.get_or_create({"body": body}, slug=slug))
        self.held.append(doc)
        existing = [k for k, v in self.own(who).items() if v["slug"] == slug]
        assert created == (not existing)
        assert doc.tenant_id == who
        if created:
            self.expected_docs[doc.id] = {"tenant": who, "slug": slug, "body": body}
        else:
            assert [doc.id] == existing
            assert doc.body == self.expected_docs[doc.id]["body"]
        return doc.id

    @rule(who=who, ident=documents)
    def read(self, who: str, ident: uuid.UUID) -> None:
        with tenant(who):
            found = self.run(self.docs.get(ident))
            exists = self.run(self.docs.exists(Document.id == ident))
            counted = self.run(self.docs.count(filters={"id": str(ident)}))
        if self.is_own(who, ident):
            row = self.expected_docs[ident]
            assert found is not None
            assert (found.tenant_id, found.slug, found.body) == (who, row["slug"], row["body"])
            assert (exists, counted) == (True, 1)
            return
        assert (found, exists, counted) == (None, False, 0)
        self.refused_like_missing(who, ident, self.docs.get_by_id)

    @rule(who=who, ident=documents, body=bodies)
    def update_by_id(self, who: str, ident: uuid.UUID, body: str) -> None:
        if not self.is_own(who, ident):
            self.refused_like_missing(who, ident, lambda i: self.docs.update(i, body=body))
            self.refused_like_missing(who, ident, lambda i: self.docs.update(i, {"slug": "a"}))
            return
        with tenant(who):
            doc = self.run(self.docs.update(ident, body=body))
        assert doc.body == body
        self.expected_docs[ident]["body"] = body

    @rule(who=who, ident=documents, body=bodies)
    def update_instance(self, who: str, ident: uuid.UUID, body: str) -> None:
        with tenant(who):
            doc = self.run(self.docs.get(ident))
            if doc is None:
                assert not self.is_own(who, ident)
                return
            self.run(self.docs.update(doc, body=body))
        self.expected_docs[ident]["body"] = body

    @rule(who=who, chosen=st.lists(slugs, max_size=3), body=bodies)
    def update_where(self, who: str, chosen: list[str], body: str) -> None:
        with tenant(who):
            count = self.run(
                self.docs.update_where(Document.slug.in_(chosen), values={"body": body})
            )
        hit = [k for k, v in self.own(who).items() if v["slug"] in chosen]
        assert count == len(hit)
        for ident in hit:
            self.expected_docs[ident]["body"] = body

    @rule(who=who, idents=st.lists(documents, max_size=4, unique=True), body=bodies)
    def bulk_update(self, who: str, idents: list[uuid.UUID], body: str) -> None:
        with tenant(who):
            count = self.run(self.docs.bulk_update([{"id": i, "body": body} for i in idents]))
        hit = [i for i in idents if self.is_own(who, i)]
        assert count == len(hit)
        for ident in hit:
            self.expected_docs[ident]["body"] = body

    @rule(who=who, chosen=st.lists(slugs, max_size=2))
    def delete_where(self, who: str, chosen: list[str]) -> None:
        hit = [k for k, v in self.own(who).items() if v["slug"] in chosen]
        with tenant(who):
            if any(self.referenced(ident) for ident in hit):
                with pytest.raises(ForeignKeyViolationError):
                    self.run(self.docs.delete_where(Document.slug.in_(chosen)))
                return
            count = self.run(self.docs.delete_where(Document.slug.in_(chosen)))
        assert count == len(hit)
        for ident in hit:
            del self.expected_docs[ident]

    @rule(who=who, ident=documents)
    def delete(self, who: str, ident: uuid.UUID) -> None:
        if not self.is_own(who, ident):
            self.refused_like_missing(who, ident, self.docs.delete)
            return
        with tenant(who):
            if self.referenced(ident):
                with pytest.raises(ForeignKeyViolationError):
                    self.run(self.docs.delete(ident))
                return
            self.run(self.docs.delete(ident))
        del self.expected_docs[ident]

    @rule(who=who, ident=documents, other=who)
    def move_to_another_tenant(self, who: str, ident: uuid.UUID, other: str) -> None:
        """Writing another tenant's id is refused on every write path, whatever the row."""
        if other == who:
            return
        attempts = [
            lambda: self.docs.create({"slug": "moved", "tenant_id": other}),
            lambda: self.docs.bulk_create([{"slug": "moved", "tenant_id": other}]),
            lambda: self.docs.update(ident, tenant_id=other),
            lambda: self.docs.update_where(Document.id == ident, values={"tenant_id": other}),
            lambda: self.docs.bulk_update([{"id": ident, "tenant_id": other}]),
            lambda: self.docs.upsert(
                {"slug": "moved", "tenant_id": other}, conflict_on=["tenant_id", "slug"]
            ),
        ]
        with tenant(who):
            for attempt in attempts:
                with pytest.raises(TenantMismatchError):
                    self.run(attempt())

    # -- notes (soft delete) -----------------------------------------------------------------

    @rule(target=notes, who=who, ident=documents, text=bodies)
    def create_note(self, who: str, ident: uuid.UUID, text: str) -> Any:
        if not self.is_own(who, ident):
            # Another tenant's document is refused exactly like one that exists nowhere.
            self.refused_like_missing(
                who,
                ident,
                lambda i: self.note_repo.create({"document_id": i, "text": text}),
                ForeignKeyViolationError,
            )
            return multiple()
        with tenant(who):
            note = self.run(self.note_repo.create({"document_id": ident, "text": text}))
        assert note.tenant_id == who
        self.expected_notes[note.id] = {
            "tenant": who,
            "document": ident,
            "text": text,
            "deleted": False,
        }
        return note.id

    @rule(who=who, ident=notes, doc=documents)
    def move_note(self, who: str, ident: int, doc: uuid.UUID) -> None:
        row = self.expected_notes.get(ident)

        def move(document_id: uuid.UUID) -> Any:
            return self.note_repo.update(ident, document_id=document_id)

        if not self.is_own(who, doc):
            # Checked before the note is looked up: the outcome never depends on it.
            self.refused_like_missing(who, doc, move, ForeignKeyViolationError)
            return
        if row is None or row["tenant"] != who or row["deleted"]:
            with tenant(who), pytest.raises(NotFoundError):
                self.run(move(doc))
            return
        with tenant(who):
            assert self.run(move(doc)).document_id == doc
        row["document"] = doc

    @rule(who=who, ident=notes)
    def soft_delete_note(self, who: str, ident: int) -> None:
        row = self.expected_notes.get(ident)
        if row is None or row["tenant"] != who or row["deleted"]:
            with tenant(who), pytest.raises(NotFoundError):
                self.run(self.note_repo.soft_delete(ident))
            return
        with tenant(who):
            assert self.run(self.note_repo.soft_delete(ident)).is_deleted
        row["deleted"] = True

    @rule(who=who, ident=notes)
    def restore_note(self, who: str, ident: int) -> None:
        row = self.expected_notes.get(ident)
        if row is None or row["tenant"] != who:
            with tenant(who), pytest.raises(NotFoundError):
                self.run(self.note_repo.restore(ident))
            return
        with tenant(who):
            assert not self.run(self.note_repo.restore(ident)).is_deleted
        row["deleted"] = False

    @rule()
    def forget(self) -> None:
        """Empty the identity map, so later reads go to the database rather than to it."""
        self.held.clear()
        self.session.expunge_all()

    # -- what each tenant sees -----------------------------------------------------------------

    @invariant()
    def each_tenant_sees_exactly_its_rows(self) -> None:
        for name in TENANTS:
            with tenant(name):
                docs = self.run(self.docs.list())
                page = self.run(self.docs.search(limit=100))
                notes = self.run(self.note_repo.list(include_deleted=True))
            assert {d.id: (d.tenant_id, d.slug, d.body) for d in docs} == {
                k: (v["tenant"], v["slug"], v["body"]) for k, v in self.own(name).items()
            }
            assert page.total == len(docs)
            assert {n.id: (n.tenant_id, n.text, n.deleted_at is not None) for n in notes} == {
                k: (v["tenant"], v["text"], v["deleted"])
                for k, v in self.expected_notes.items()
                if v["tenant"] == name
            }

    @invariant()
    def nothing_else_changed(self) -> None:
        with all_tenants():
            table = Document.__table__
            rows = self.run(
                self.session.execute(
                    select(table.c.id, table.c.tenant_id, table.c.slug, table.c.body)
                )
            )
        assert {r.id: (r.tenant_id, r.slug, r.body) for r in rows} == {
            k: (v["tenant"], v["slug"], v["body"]) for k, v in self.expected_docs.items()
        }
        with all_tenants():
            notes = Note.__table__
            rows = self.run(
                self.session.execute(
                    select(notes.c.id, notes.c.tenant_id, notes.c.document_id, notes.c.text)
                )
            )
        assert {r.id: (r.tenant_id, r.document_id, r.text) for r in rows} == {
            k: (v["tenant"], v["document"], v["text"]) for k, v in self.expected_notes.items()
        }


def test_tenant_isolation_state_machine(backend, engine):
    """Random interleavings of two tenants' operations never cross the tenant boundary."""
    del engine  # requested for its tables only; the machine runs its own event loop
    machine = type("Machine", (TenantMachine,), {"backend": backend})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=30,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


async def test_another_tenants_row_cannot_be_referenced(session):
    """A foreign key to another tenant's row is refused exactly like one to a missing row."""
    with tenant("acme"):
        secret = await DocumentRepository(session).create({"slug": "secret"})
    notes = NoteRepository(session)
    with tenant("globex"):
        with pytest.raises(ForeignKeyViolationError) as missing:
            await notes.create({"document_id": uuid.uuid4(), "text": "probe"})
        with pytest.raises(ForeignKeyViolationError) as foreign:
            await notes.create({"document_id": secret.id, "text": "probe"})
    _same_refusal(foreign.value, missing.value)
