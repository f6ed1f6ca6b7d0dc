"""Soft delete: ``deleted_at`` plus rows hidden from every ORM SELECT."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column

from sqla_repo._registry import enable
from sqla_repo.types import UTCDateTime

__all__ = ["SoftDeleteMixin"]


class SoftDeleteMixin:
    """A nullable ``deleted_at`` timestamp; rows with one are invisible by default.

    Every ORM SELECT made through a session hides soft-deleted rows: ``select()``,
    ``session.get()``, joins (the criterion goes in the ON clause, so a LEFT JOIN stays
    a LEFT JOIN), relationship loads and ``any()``/``has()``. ORM-enabled ``update()``
    and ``delete()`` statements skip them too. Add
    ``execution_options(include_deleted=True)`` to a statement (or pass
    ``include_deleted=True`` to a repository method) to see them.
    """

    deleted_at: Mapped[dt.datetime | None] = mapped_column(
        UTCDateTime(), nullable=True, default=None, index=True, sort_order=120
    )
    """When the row was soft-deleted, or ``None`` while it is live."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        enable(soft_delete=True)
        super().__init_subclass__(**kwargs)

    @hybrid_property
    def is_deleted(self) -> bool:
        """Whether the row is soft-deleted (usable in queries: ``Model.is_deleted``)."""
        return self.deleted_at is not None

    @is_deleted.inplace.expression
    @classmethod
    def _is_deleted_expression(cls) -> ColumnElement[bool]:
        return cls.deleted_at.is_not(None)
