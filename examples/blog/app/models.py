"""Domain models, composed from sqla_repo's mixins on the application's own base."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from sqla_repo import (
    NAMING_CONVENTION,
    AuditColumnsMixin,
    IntegerPKMixin,
    SoftDeleteMixin,
    TenantMixin,
    TimestampMixin,
    UTCDateTime,
    VersionMixin,
)


class Base(DeclarativeBase):
    """The blog's own base. Tables are prefixed so the example can share a database."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(IntegerPKMixin, TimestampMixin, AuditColumnsMixin, SoftDeleteMixin, Base):
    """An author. Deleting one only hides it (soft delete); it can be restored."""

    __tablename__ = "blog_users"

    email: Mapped[str] = mapped_column(String(255), unique=True)
    username: Mapped[str] = mapped_column(String(50), unique=True)
    full_name: Mapped[str] = mapped_column(String(100), default="")
    is_active: Mapped[bool] = mapped_column(default=True)
    is_superuser: Mapped[bool] = mapped_column(default=False)
    post_count: Mapped[int] = mapped_column(default=0)

    # lazy="raise": async code must say what it loads (see UserRepository.find_with_posts).
    posts: Mapped[list[Post]] = relationship(
        back_populates="author", lazy="raise", order_by="Post.id"
    )


class Post(IntegerPKMixin, TimestampMixin, AuditColumnsMixin, VersionMixin, Base):
    """A blog post; its version guards against lost updates."""

    __tablename__ = "blog_posts"

    author_id: Mapped[int] = mapped_column(ForeignKey("blog_users.id"))
    slug: Mapped[str] = mapped_column(String(120), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="draft")
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)

    author: Mapped[User] = relationship(back_populates="posts", lazy="raise")


class Reminder(IntegerPKMixin, TenantMixin, TimestampMixin, AuditColumnsMixin, Base):
    """A note for an editorial team. Each team (tenant) sees only its own reminders."""

    __tablename__ = "blog_reminders"

    text: Mapped[str] = mapped_column(String(200))
    due_on: Mapped[dt.date | None] = mapped_column(default=None)
    done: Mapped[bool] = mapped_column(default=False)
