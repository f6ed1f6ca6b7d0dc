"""Declarative base classes and the constraint naming convention."""

from __future__ import annotations

from typing import Final

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from sqla_repo.mixins import AuditColumnsMixin, IntegerPKMixin, TimestampMixin, UUIDPKMixin

__all__ = ["NAMING_CONVENTION", "AuditedBase", "Base", "TimestampedBase", "UUIDTimestampedBase"]

NAMING_CONVENTION: Final[dict[str, str]] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so Alembic autogenerate can find and drop them."""


class Base(DeclarativeBase):
    """A ``DeclarativeBase`` whose ``MetaData`` uses the naming convention.

    See [`NAMING_CONVENTION`][sqla_repo.base.NAMING_CONVENTION].
    """

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampedBase(IntegerPKMixin, TimestampMixin, Base):
    """Abstract base: integer ``id`` plus ``created_at``/``updated_at``."""

    __abstract__ = True


class UUIDTimestampedBase(UUIDPKMixin, TimestampMixin, Base):
    """Abstract base: UUID v4 ``id`` plus ``created_at``/``updated_at``."""

    __abstract__ = True


class AuditedBase(IntegerPKMixin, TimestampMixin, AuditColumnsMixin, Base):
    """Abstract base: integer ``id``, timestamps and ``created_by``/``updated_by``."""

    __abstract__ = True
