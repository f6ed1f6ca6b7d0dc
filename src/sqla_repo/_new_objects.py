"""Objects loaded from an ``INSERT … RETURNING``, taken away again by a rollback.

A flush records the objects it inserts in the session's current transaction
(``SessionTransaction._new``, a weak mapping), whose rollback (a SAVEPOINT's included)
expunges them; a released SAVEPOINT hands its records to the enclosing transaction.
Objects a statement loaded are not recorded by SQLAlchemy: after a rollback they would
stay in the identity map, ghosts of rows that no longer exist, returned by ``get()``
without a query. SQLAlchemy has no public call for this; the flush's own bookkeeping is
used.

The weak mapping costs a Python call per object twice: when it is recorded and when it
is freed (the weak reference's callback). A few objects are recorded there directly. A
batch (``bulk_create()``) is kept as one entry of plain weak references, without
callbacks, under the transaction that inserted it; only if that transaction, or one
enclosing it, rolls back are the batch's objects still alive moved into the mapping,
from the session's ``after_rollback`` event, which SQLAlchemy dispatches just before it
expunges what the mapping holds. The batches of a root transaction are forgotten when it
ends.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.orm.base import instance_state

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.orm import InstanceState, Session, SessionTransaction

__all__ = ["BATCH", "record_new"]

BATCH = 64
"""From this many objects on, a write's objects are recorded as one batch."""


def record_new(session: Session, objs: Iterable[Any]) -> None:
    """Let a rollback take away the objects a statement inserted, as it does flushed ones."""
    transaction = session._transaction  # noqa: SLF001
    if transaction is None:
        return
    states = list(map(instance_state, objs))
    if len(states) < BATCH:
        # One update() of the weak mapping: a loop of item assignments costs twice as much.
        transaction._new.update(dict.fromkeys(states, True))  # noqa: SLF001
        return
    batches = _BATCHES.get(session)
    if batches is None:
        batches = _BATCHES[session] = _Batches()
        event.listen(session, "after_rollback", batches.after_rollback)
        event.listen(session, "after_transaction_end", batches.after_transaction_end)
    batches.entries.append((_boundary(transaction), list(map(weakref.ref, states))))


class _Batches:
    """A session's batches: ``(transaction, weak references to the states)`` each."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: list[tuple[SessionTransaction, list[weakref.ref[InstanceState[Any]]]]] = []

    def after_rollback(self, session: Session) -> None:
        """Move the batches of the transaction rolling back into its weak mapping.

        SQLAlchemy rolls back the nearest boundary (the root or a SAVEPOINT) enclosing
        the session's current transaction, then expunges what that boundary's ``_new``
        holds. A batch goes with it if it was inserted in that boundary or in a
        SAVEPOINT inside it: one rolled back earlier has had its batches taken already,
        one released handed them to its parent, as SQLAlchemy's own records go.
        """
        current = session._transaction  # noqa: SLF001
        if current is None or not self.entries:
            return
        boundary = _boundary(current)
        kept = []
        for entry in self.entries:
            if _inside(entry[0], boundary):
                alive = [state for state in (ref() for ref in entry[1]) if state is not None]
                boundary._new.update(dict.fromkeys(alive, True))  # noqa: SLF001
            else:
                kept.append(entry)
        self.entries = kept

    def after_transaction_end(self, _session: Session, transaction: SessionTransaction) -> None:
        """Forget every batch once the root transaction ends: its rows stay or are gone."""
        if transaction._parent is None:  # noqa: SLF001
            self.entries = []


_BATCHES: weakref.WeakKeyDictionary[Session, _Batches] = weakref.WeakKeyDictionary()


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
