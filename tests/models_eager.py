"""Models shaped like those of real applications: eager collections, JSON, odd keys.

They live on their own declarative base so that the rest of the suite never sees them;
tests/integration/test_real_apps.py creates and drops their tables.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from sqla_repo import IntegerPKMixin, TimestampMixin, UUIDPKMixin, VersionMixin


class EagerBase(DeclarativeBase):
    metadata = MetaData()


class Owner(IntegerPKMixin, EagerBase):
    __tablename__ = "eager_owners"

    name: Mapped[str] = mapped_column(String(50))


class Shelf(IntegerPKMixin, TimestampMixin, VersionMixin, EagerBase):
    """Like fastapi-users' ``User``: a ``lazy="joined"`` collection, plus a JSON column."""

    __tablename__ = "eager_shelves"

    name: Mapped[str] = mapped_column(String(50), unique=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("eager_owners.id"), default=None)
    owner: Mapped[Owner | None] = relationship(lazy="joined")
    books: Mapped[list[Book]] = relationship(
        lazy="joined", back_populates="shelf", order_by="Book.id"
    )
    badges: Mapped[list[Badge]] = relationship(lazy="selectin", order_by="Badge.id")


class Book(IntegerPKMixin, EagerBase):
    __tablename__ = "eager_books"

    shelf_id: Mapped[int] = mapped_column(ForeignKey("eager_shelves.id"))
    title: Mapped[str] = mapped_column(String(100))
    shelf: Mapped[Shelf] = relationship(back_populates="books", lazy="raise")


class Badge(IntegerPKMixin, EagerBase):
    __tablename__ = "eager_badges"

    shelf_id: Mapped[int] = mapped_column(ForeignKey("eager_shelves.id"))
    label: Mapped[str] = mapped_column(String(50))


class Reading(EagerBase):
    """A single-precision float primary key (values exactly representable in 24 bits)."""

    __tablename__ = "eager_readings"

    value: Mapped[float] = mapped_column(Float(24), primary_key=True, autoincrement=False)
    label: Mapped[str] = mapped_column(String(50))


class Membership(EagerBase):
    """A composite primary key, both parts given by the application."""

    __tablename__ = "eager_memberships"

    org_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    member: Mapped[str] = mapped_column(String(40), primary_key=True)
    role: Mapped[str] = mapped_column(String(20), default="member")


class Keyword(IntegerPKMixin, TimestampMixin, VersionMixin, EagerBase):
    """RealWorld's tag: rows ensured by name from many concurrent requests."""

    __tablename__ = "eager_keywords"

    name: Mapped[str] = mapped_column(String(50), unique=True)
    color: Mapped[str] = mapped_column(String(20), default="grey")


class Token(UUIDPKMixin, EagerBase):
    """A Python-generated key and a column with a Python default."""

    __tablename__ = "eager_tokens"

    label: Mapped[str] = mapped_column(String(50), default="unnamed")
    note: Mapped[str | None] = mapped_column(String(50), default=None)


__all__ = [
    "Badge",
    "Book",
    "EagerBase",
    "Keyword",
    "Membership",
    "Owner",
    "Reading",
    "Shelf",
    "Token",
]
