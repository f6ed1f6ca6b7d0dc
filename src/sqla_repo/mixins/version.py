"""Optimistic locking through SQLAlchemy's ``version_id_col``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

__all__ = ["VersionMixin"]


class VersionMixin:
    """A ``version`` counter used as the mapper's ``version_id_col``.

    Every UPDATE and DELETE of the row checks the version the session read and increments
    it; when another transaction changed the row first, the write matches no row and the
    repository raises [`ConcurrencyError`][sqla_repo.exceptions.ConcurrencyError]
    (chained from SQLAlchemy's ``StaleDataError``). The repository's bulk paths increment
    the version themselves.

    If your class declares its own ``__mapper_args__``, include
    ``"version_id_col": cls.__table__.c.version`` in it.
    """

    version: Mapped[int] = mapped_column(Integer(), nullable=False, sort_order=130)
    """The row version, 1 on insert."""

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]
