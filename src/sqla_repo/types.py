"""Portable column types.

[`UTCDateTime`][sqla_repo.types.UTCDateTime] stores an instant in time and reads it back
as a timezone-aware ``datetime`` in UTC, with microseconds, on every backend:

* PostgreSQL: ``TIMESTAMP WITH TIME ZONE``;
* MySQL/MariaDB: ``DATETIME(6)`` holding UTC (``TIMESTAMP`` would be bound to 2038);
* SQLite: SQLAlchemy's ISO-8601 text holding UTC, so text order is time order.

Naive datetimes are rejected with [`NaiveDatetimeError`][sqla_repo.types.NaiveDatetimeError]
when they are assigned to a mapped attribute and again when they are bound: a naive value
is ambiguous (``datetime.now()`` is local time, ``datetime.utcnow()`` is not), and guessing
silently corrupts data. Aware values in any zone are converted to UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["NaiveDatetimeError", "UTCDateTime", "ensure_utc", "utcnow"]

UTC = dt.timezone.utc


class NaiveDatetimeError(ValueError):
    """A ``datetime`` without ``tzinfo`` was given where an instant in time is stored."""


def utcnow() -> dt.datetime:
    """Return the current time as an aware UTC ``datetime``."""
    return dt.datetime.now(UTC)


def ensure_utc(value: dt.datetime) -> dt.datetime:
    """Return *value* converted to UTC.

    Raises:
        NaiveDatetimeError: *value* has no time zone.
        TypeError: *value* is not a ``datetime``.
    """
    if not isinstance(value, dt.datetime):
        msg = f"expected a datetime, got {type(value).__name__}"
        raise TypeError(msg)
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        msg = (
            "naive datetime rejected: give it a time zone, "
            "e.g. datetime.now(timezone.utc) or value.replace(tzinfo=timezone.utc)"
        )
        raise NaiveDatetimeError(msg)
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC ``datetime`` column on every backend.

    Example:
        ```python
        published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
        ```
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[dt.datetime]:
        """The Python type of values: ``datetime.datetime``."""
        return dt.datetime

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Use ``DATETIME(6)`` on MySQL/MariaDB so microseconds survive."""
        if dialect.name in {"mysql", "mariadb"}:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        """Convert to UTC; backends without zone support get the naive UTC wall time."""
        if value is None:
            return None
        value = ensure_utc(value)
        if dialect.name == "postgresql":
            return value
        return value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:  # noqa: ANN401 - the driver decides
        """Return an aware UTC ``datetime``."""
        if value is None:
            return None
        if isinstance(value, str):  # SQLite without the type's result processor (raw SQL)
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)  # type: ignore[no-any-return]
