"""``created_at`` / ``updated_at`` columns in aware UTC."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Mapped, mapped_column

from sqla_repo.types import UTCDateTime, utcnow

__all__ = ["TimestampMixin"]


def same_as_created_at(context: Any) -> dt.datetime:
    """``updated_at``'s default: the row's ``created_at``, one instant for both columns.

    ``created_at``'s default ran first (column order), so its value is already among
    the row's parameters. Writes of many rows stamp both columns themselves
    ([`stamp_write_time()`][sqla_repo._row_prep.stamp_write_time]) by the same rule.
    """
    created = context.get_current_parameters().get("created_at")
    return created if isinstance(created, dt.datetime) else utcnow()


class TimestampMixin:
    """``created_at`` and ``updated_at``, timezone-aware UTC with microseconds.

    Both are computed in Python (no server default), so their values are on the object
    after a flush and reading them never needs lazy IO (no ``MissingGreenlet`` in async
    code). ``updated_at`` changes with every UPDATE of the row: ORM flushes, ORM-enabled
    ``update()`` statements and the repository's bulk updates alike. Explicit values win.
    """

    created_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime(), default=utcnow, nullable=False, sort_order=100
    )
    """When the row was inserted."""

    updated_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime(),
        default=same_as_created_at,
        onupdate=utcnow,
        nullable=False,
        sort_order=101,
    )
    """When the row was last updated (equal to ``created_at`` on insert)."""
