"""Primary-key mixins: integer, UUID v4 and time-ordered UUID v7."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import BigInteger, Integer, Uuid, event
from sqlalchemy.orm import Mapped, configure_mappers, mapped_column

from sqla_repo._uuid7 import uuid7

__all__ = ["IntegerPKMixin", "UUIDPKMixin", "UUIDv7PKMixin"]


class IntegerPKMixin:
    """An autoincrement integer primary key ``id``.

    ``BIGINT`` on PostgreSQL and MySQL/MariaDB; ``INTEGER`` on SQLite, where only an
    ``INTEGER PRIMARY KEY`` column is the rowid alias that autoincrements.
    """

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
        sort_order=-100,
    )
    """The primary key, assigned by the database at INSERT."""


class UUIDPKMixin:
    """A random UUID (version 4) primary key ``id``, generated in Python.

    The value is assigned when the object is constructed, so it is known before any
    flush (to link objects or return it early); Core inserts get it from the column
    default. Stored as native ``UUID`` on PostgreSQL and ``CHAR(32)`` elsewhere.
    """

    id: Mapped[uuid.UUID] = mapped_column(
        Uuid(), primary_key=True, default=uuid.uuid4, sort_order=-100
    )
    """The primary key."""


class UUIDv7PKMixin:
    """A time-ordered UUID (version 7, RFC 9562) primary key ``id``.

    Values sort by creation time, so new rows land at the right edge of the primary-key
    index (like an integer key) while staying globally unique and unguessable enough to
    expose. Values made in one process are strictly increasing. Assigned at construction,
    like [`UUIDPKMixin`][sqla_repo.mixins.UUIDPKMixin].
    """

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid7, sort_order=-100)
    """The primary key."""


def _assign_on_init(factory: Any) -> Any:
    def assign(target: Any, args: Any, kwargs: dict[str, Any]) -> None:  # noqa: ARG001
        if kwargs.get("id") is None:
            kwargs.pop("id", None)
            # "init" can fire before the mapper's own first-use configuration.
            if not target.__mapper__.configured:
                configure_mappers()
            target.id = factory()

    return assign


event.listen(UUIDPKMixin, "init", _assign_on_init(uuid.uuid4), propagate=True)
event.listen(UUIDv7PKMixin, "init", _assign_on_init(uuid7), propagate=True)
