"""Models used across the test suite, on ``sqla_repo.Base`` and on a user's own base."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from sqla_repo import (
    AuditColumnsMixin,
    AuditedBase,
    Base,
    IntegerPKMixin,
    SoftDeleteMixin,
    TenantMixin,
    TimestampMixin,
    UUIDPKMixin,
    UUIDv7PKMixin,
    VersionMixin,
)


class Status(enum.Enum):
    ACTIVE = "active"
    DISABLED = "disabled"


post_tags = Table(
    "post_tags",
    Base.metadata,
    Column("post_id", ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
)


class User(AuditedBase, SoftDeleteMixin):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    username: Mapped[str | None] = mapped_column(String(50), unique=True, default=None)
    age: Mapped[int | None] = mapped_column(default=None)
    score: Mapped[float | None] = mapped_column(Double(), default=None)
    balance: Mapped[Decimal | None] = mapped_column(Numeric(12, 2), default=None)
    is_active: Mapped[bool] = mapped_column(default=True)
    is_superuser: Mapped[bool] = mapped_column(default=False)
    status: Mapped[Status] = mapped_column(default=Status.ACTIVE)
    birthday: Mapped[dt.date | None] = mapped_column(default=None)
    external_id: Mapped[uuid.UUID | None] = mapped_column(default=None)

    posts: Mapped[list[Post]] = relationship(back_populates="author", lazy="raise")


class Post(IntegerPKMixin, TimestampMixin, SoftDeleteMixin, Base):
    __tablename__ = "posts"

    title: Mapped[str] = mapped_column(String(200))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    author: Mapped[User | None] = relationship(back_populates="posts", lazy="raise")
    tags: Mapped[list[Tag]] = relationship(secondary=post_tags, lazy="raise")


class Tag(IntegerPKMixin, SoftDeleteMixin, Base):
    __tablename__ = "tags"

    name: Mapped[str] = mapped_column(String(50), unique=True)


class Product(IntegerPKMixin, Base):
    """No mixins beyond the key: the hooks must leave it alone."""

    __tablename__ = "products"
    __table_args__ = (CheckConstraint("price >= 0", name="price_non_negative"),)

    sku: Mapped[str] = mapped_column(String(50), unique=True)
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2), default=Decimal(0))


class Document(UUIDv7PKMixin, TenantMixin, VersionMixin, TimestampMixin, AuditColumnsMixin, Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("tenant_id", "slug"),)

    slug: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(String(1000), default="")
    notes: Mapped[list[Note]] = relationship(back_populates="document", lazy="raise")


class Note(IntegerPKMixin, TenantMixin, SoftDeleteMixin, Base):
    __tablename__ = "notes"

    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("documents.id"))
    text: Mapped[str] = mapped_column(String(200))
    document: Mapped[Document] = relationship(back_populates="notes", lazy="raise")


class Folder(IntegerPKMixin, TenantMixin, SoftDeleteMixin, Base):
    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("tenant_id", "id"),)

    name: Mapped[str] = mapped_column(String(50))


class Pin(IntegerPKMixin, TenantMixin, Base):
    """A tenant's row whose composite foreign key carries the tenant too."""

    __tablename__ = "pins"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "folder_id"], ["folders.tenant_id", "folders.id"]),
    )

    folder_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))


class Shortcut(IntegerPKMixin, Base):
    """A row outside tenant scoping that points into a tenant's table."""

    __tablename__ = "shortcuts"

    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id"))
    # A read-only view of the same key, declared first: writes go through ``folder``.
    folder_view: Mapped[Folder] = relationship(lazy="raise", viewonly=True)
    folder: Mapped[Folder] = relationship(lazy="raise")


label_folders = Table(
    "label_folders",
    Base.metadata,
    Column("label_id", ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True),
    Column("folder_id", ForeignKey("folders.id", ondelete="CASCADE"), primary_key=True),
)


class Label(IntegerPKMixin, Base):
    """Linked to tenants' folders through an association table."""

    __tablename__ = "labels"

    name: Mapped[str] = mapped_column(String(50))
    folders: Mapped[list[Folder]] = relationship(secondary=label_folders, lazy="raise")


class Record(UUIDPKMixin, TenantMixin, Base):
    """The base of a joined-table inheritance hierarchy with keys known at construction."""

    __tablename__ = "records"
    __mapper_args__: ClassVar[dict[str, Any]] = {
        "polymorphic_on": "kind",
        "polymorphic_identity": "record",
    }

    kind: Mapped[str] = mapped_column(String(20))


class Invoice(Record):
    __tablename__ = "invoices"
    __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "invoice"}

    id: Mapped[uuid.UUID] = mapped_column(ForeignKey("records.id"), primary_key=True)
    amount: Mapped[int] = mapped_column(default=0)


class Person(IntegerPKMixin, TenantMixin, SoftDeleteMixin, TimestampMixin, Base):
    """The base of a joined-table hierarchy whose tenant and soft-delete columns live here."""

    __tablename__ = "people"
    __mapper_args__: ClassVar[dict[str, Any]] = {
        "polymorphic_on": "kind",
        "polymorphic_identity": "person",
    }

    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(50))


class Client(Person):
    """A joined subclass: its own table holds only its own columns."""

    __tablename__ = "clients"
    __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "client"}

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("people.id", ondelete="CASCADE"),
        primary_key=True,
    )
    company: Mapped[str] = mapped_column(String(50), default="")


class Employee(IntegerPKMixin, TenantMixin, SoftDeleteMixin, Base):
    """The base of a single-table hierarchy."""

    __tablename__ = "employees"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)
    __mapper_args__: ClassVar[dict[str, Any]] = {
        "polymorphic_on": "kind",
        "polymorphic_identity": "employee",
    }

    kind: Mapped[str] = mapped_column(String(20))
    email: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(50), default="")


class Manager(Employee):
    __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "manager"}

    reports: Mapped[int | None] = mapped_column(default=None)


class Engineer(Employee):
    __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "engineer"}

    language: Mapped[str | None] = mapped_column(String(30), default=None)


CASE_SENSITIVE_CODE = String(20).with_variant(
    mysql.VARCHAR(20, collation="utf8mb4_bin"), "mysql", "mariadb"
)
"""Compared case-sensitively on every backend (MariaDB's default collation folds case)."""


class Code(IntegerPKMixin, TenantMixin, Base):
    """A case-sensitive text key (binary collation on MariaDB), referenced by ``CodeUse``."""

    __tablename__ = "codes"

    code: Mapped[str] = mapped_column(
        CASE_SENSITIVE_CODE,
        unique=True,
    )


class CodeUse(IntegerPKMixin, TenantMixin, Base):
    __tablename__ = "code_uses"

    code: Mapped[str] = mapped_column(
        CASE_SENSITIVE_CODE,
        ForeignKey("codes.code"),
    )


class SideBase(DeclarativeBase):
    """A second registry on the same metadata as ``Base``."""

    metadata = Base.metadata


class Bookmark(IntegerPKMixin, SideBase):
    __tablename__ = "bookmarks"

    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id"))


class Ticket(UUIDPKMixin, VersionMixin, TimestampMixin, Base):
    __tablename__ = "tickets"

    title: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(20), default="open")


class OwnBase(DeclarativeBase):
    """A user's own declarative base, without sqla_repo's naming convention."""

    metadata = MetaData()


class Widget(
    UUIDv7PKMixin, TimestampMixin, AuditColumnsMixin, SoftDeleteMixin, VersionMixin, OwnBase
):
    __tablename__ = "widgets"

    name: Mapped[str] = mapped_column(String(50))


class Gadget(IntegerPKMixin, TenantMixin, OwnBase):
    __tablename__ = "gadgets"

    name: Mapped[str] = mapped_column(String(50))


METADATAS = (Base.metadata, OwnBase.metadata)
