"""Objects loaded from an ``INSERT … RETURNING``, taken away again by a rollback.

A flush records the objects it inserts in the session's current transaction
(``SessionTransaction._new``, a weak mapping), whose rollback (a SAVEPOINT's included)
expunges them; a released SAVEPOINT hands its records to the enclosing transaction.
Objects a statement loaded are not recorded by SQLAlchemy: after a rollback they would
stay in the identity map, ghosts of rows that no longer exist, returned by ``get()``
without a query. SQLAlchemy has no public call for this; the flush's own bookkeeping is
used, late.

Each write's objects are kept as one entry of plain weak references (no callback: the
weak mapping costs a Python call per object when it records it and another when the
object is freed) under the transaction that inserted them. When that transaction, or one
enclosing it, rolls back, the entry's objects still alive are moved into the weak mapping
of the transaction rolling back, from the ``after_rollback`` event, which SQLAlchemy
dispatches just before it expunges what the mapping holds. Whether an entry goes is
decided by walking up from the transaction that wrote it: released SAVEPOINTs hand
theirs to their parent, as SQLAlchemy's own records go, and a SAVEPOINT still open when
an enclosing one rolls back goes with it (where SQLAlchemy drops the records of such a
SAVEPOINT, and its flushed objects stay behind). A session's entries are forgotten when
its root transaction ends, and dead references are dropped as they pile up in a long
transaction. The two listeners go on SQLAlchemy's ``Session`` class, once, at the first
write: a session without entries costs them a dictionary look-up.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.orm import Session
from sqlalchemy.orm.base import instance_state

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.orm import InstanceState, SessionTransaction

__all__ = ["record_new"]

_COMPACT_FROM = 1024
"""Weak references a session's entries may hold before dead ones are first dropped."""


def record_new(session: Session, objs: Iterable[Any]) -> None:
    """Let a rollback take away the objects a statement inserted, as it does flushed ones."""
    transaction = session._transaction  # noqa: SLF001
    if transaction is None:
        return
    refs = list(map(weakref.ref, map(instance_state, objs)))
    if not refs:
        return
    entries = _ENTRIES.get(session)
    if entries is None:
        if not _listening:
            _listen()
        entries = _ENTRIES[session] = _Entries()
    entries.add(_boundary(transaction), refs)


class _Entries:
    """A session's entries: ``(transaction, weak references to the states)`` each."""

    __slots__ = ("count", "entries", "limit")

    def __init__(self) -> None:
        self.entries: list[tuple[SessionTransaction, list[weakref.ref[InstanceState[Any]]]]] = []
        self.count = 0
        self.limit = _COMPACT_FROM

    def add(
        self, transaction: SessionTransaction, refs: list[weakref.ref[InstanceState[Any]]]
    ) -> None:
        self.entries.append((transaction, refs))
        self.count += len(refs)
        if self.count > self.limit:
            # Amortised: each compaction at least halves what the next one may find.
            self.entries = [
                (owner, alive)
                for owner, refs in self.entries
                if (alive := [ref for ref in refs if ref() is not None])
            ]
            self.count = sum(len(refs) for _, refs in self.entries)
            self.limit = max(2 * self.count, _COMPACT_FROM)

    def rolling_back(self, boundary: SessionTransaction) -> None:
        """Move the entries *boundary*'s rollback undoes into its weak mapping."""
        kept = []
        for entry in self.entries:
            if _inside(entry[0], boundary):
                alive = [state for state in (ref() for ref in entry[1]) if state is not None]
                boundary._new.update(dict.fromkeys(alive, True))  # noqa: SLF001
                self.count -= len(entry[1])
            else:
                kept.append(entry)
        self.entries = kept


_ENTRIES: weakref.WeakKeyDictionary[Session, _Entries] = weakref.WeakKeyDictionary()
_listening = False


def _listen() -> None:
    global _listening  # noqa: PLW0603 - set once, when the first write records objects
    event.listen(Session, "after_rollback", _after_rollback)
    event.listen(Session, "after_transaction_end", _after_transaction_end)
    _listening = True


def _after_rollback(session: Session) -> None:
    """SQLAlchemy rolls back the boundary enclosing the session's current transaction."""
    if not _ENTRIES:
        return
    entries = _ENTRIES.get(session)
    current = session._transaction  # noqa: SLF001
    if entries is not None and current is not None:
        entries.rolling_back(_boundary(current))


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    """Forget a session's entries once its root transaction ends: its rows stay or are gone."""
    if transaction._parent is None and _ENTRIES:  # noqa: SLF001
        _ENTRIES.pop(session, None)


def _boundary(transaction: SessionTransaction) -> SessionTransaction:
    """The transaction whose rollback undoes *transaction*'s work: the root or a SAVEPOINT."""
    while not (transaction._parent is None or transaction.nested):  # noqa: SLF001
        transaction = transaction._parent  # noqa: SLF001
    return transaction


def _inside(transaction: SessionTransaction | None, boundary: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is boundary:
            return True
        transaction = transaction._parent  # noqa: SLF001
    return False
