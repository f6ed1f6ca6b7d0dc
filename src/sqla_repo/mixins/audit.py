"""``created_by`` / ``updated_by`` columns stamped from the current actor."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from sqla_repo.context import current_actor

__all__ = ["AuditColumnsMixin"]


def _actor() -> str | None:
    return current_actor()


class AuditColumnsMixin:
    """``created_by`` and ``updated_by``: who inserted and who last updated the row.

    Stamped from [`actor()`][sqla_repo.context.actor] when the statement runs, so each
    asyncio task stamps its own actor. An explicit value given for the column wins.
    An update made with no actor set records ``updated_by = NULL`` rather than keeping a
    previous actor's name, which would misattribute the change.
    """

    created_by: Mapped[str | None] = mapped_column(
        String(255), default=_actor, nullable=True, sort_order=110
    )
    """The actor who inserted the row."""

    updated_by: Mapped[str | None] = mapped_column(
        String(255), default=_actor, onupdate=_actor, nullable=True, sort_order=111
    )
    """The actor of the latest update (the creator on insert)."""
