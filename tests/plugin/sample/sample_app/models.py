from __future__ import annotations

from sqlalchemy import MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_repo import (
    NAMING_CONVENTION,
    AuditColumnsMixin,
    IntegerPKMixin,
    TenantMixin,
    TimestampMixin,
)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Item(IntegerPKMixin, TimestampMixin, Base):
    __tablename__ = "sample_items"

    name: Mapped[str] = mapped_column(String(50), unique=True)


class Memo(IntegerPKMixin, TenantMixin, AuditColumnsMixin, Base):
    __tablename__ = "sample_memos"

    body: Mapped[str] = mapped_column(String(200))
