"""Portable column types.

[`UTCDateTime`][sqla_repo.types.UTCDateTime] stores an instant in time and reads it back
as a timezone-aware ``datetime`` in UTC, with microseconds, on every backend:

* PostgreSQL: ``TIMESTAMP WITH TIME ZONE``;
* MySQL/MariaDB: ``DATETIME(6)`` holding UTC (``TIMESTAMP`` would be bound to 2038);
* SQLite: SQLAlchemy's ISO-8601 text holding UTC, so text order is time order.

Naive datetimes are rejected with [`NaiveDatetimeError`][sqla_repo.exceptions.NaiveDatetimeError]
when they are bound to a statement (at flush, or when a statement compares a column with
one): a naive value is ambiguous (``datetime.now()`` is local time, ``datetime.utcnow()``
is not), and guessing silently corrupts data. Aware values in any zone are converted to
UTC. SQLAlchemy reports an error raised while binding as a ``StatementError`` whose
``orig`` is the `NaiveDatetimeError`; the repository re-raises the `NaiveDatetimeError`
itself, without the SQL and parameters SQLAlchemy's message quotes. It is an
[`InvalidValueError`][sqla_repo.exceptions.InvalidValueError] (and so a ``ValueError``
and a ``RepositoryError``); it is defined in ``sqla_repo.exceptions`` and importable
from here too.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlalchemy import DateTime, Interval
from sqlalchemy.types import TypeDecorator, TypeEngine

from sqla_repo.exceptions import NaiveDatetimeError

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import Dialect
    from sqlalchemy.sql.operators import OperatorType

__all__ = ["NaiveDatetimeError", "UTCDateTime", "ensure_utc", "utcnow"]

UTC = dt.timezone.utc
# datetime.combine(d, t, tz) builds the same value as replace(tzinfo=tz) about six times
# faster on CPython 3.11; it runs for every timestamp bound or loaded.
_combine = dt.datetime.combine
# len("2024-05-01 07:00:00.000000"): how SQLAlchemy's SQLite dialect stores a datetime.
_SQLITE_TEXT_LENGTH = 26
# The storage format of SQLAlchemy's SQLite DATETIME, which the bind processor's short
# path writes with datetime.isoformat().
_SQLITE_FORMAT = (
    "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"
)


def _as_utc(value: dt.datetime) -> dt.datetime:
    """A loaded datetime as aware UTC (a naive value from the database is UTC)."""
    tz = value.tzinfo
    if tz is UTC:  # asyncpg's timestamptz values need no conversion
        return value
    if tz is None:
        return _combine(value.date(), value.time(), UTC)
    return value.astimezone(UTC)


def utcnow() -> dt.datetime:
    """Return the current time as an aware UTC ``datetime``."""
    return dt.datetime.now(UTC)


def ensure_utc(value: dt.datetime) -> dt.datetime:
    """Return *value* converted to UTC.

    Raises:
        NaiveDatetimeError: *value* has no time zone.
        TypeError: *value* is not a ``datetime``.
    """
    if not isinstance(value, dt.datetime):  # untyped callers: the bind path gets any value
        msg = f"expected a datetime, got {type(value).__name__}"  # type: ignore[unreachable]
        raise TypeError(msg)
    tz = value.tzinfo
    if tz is UTC:
        return value
    if tz is None or tz.utcoffset(value) is None:
        msg = (
            "naive datetime rejected: give it a time zone, "
            "e.g. datetime.now(timezone.utc) or value.replace(tzinfo=timezone.utc)"
        )
        raise NaiveDatetimeError(msg, detail={"reason": "naive_datetime"})
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
            # Imported here: the MySQL dialect package costs ~50 ms at import time.
            from sqlalchemy.dialects import mysql  # noqa: PLC0415

            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def coerce_compared_value(
        self,
        op: OperatorType | None,  # noqa: ARG002 - SQLAlchemy's signature
        value: object,
    ) -> TypeEngine[Any]:
        """Treat a ``timedelta`` operand as an interval, any other value as this type.

        ``created_at + timedelta(days=1)`` is date arithmetic, not a datetime to bind.
        """
        if isinstance(value, dt.timedelta):
            return Interval()
        return self

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        """Convert to UTC; backends without zone support get the naive UTC wall time."""
        if value is None:
            return None
        value = ensure_utc(value)
        if dialect.name == "postgresql":
            return value
        return _combine(value.date(), value.time())

    def bind_processor(self, dialect: Dialect) -> Any:
        """Convert bound values to what the driver stores, in one call per value.

        Does what the default ``TypeDecorator`` processor does
        ([`process_bind_param`][sqla_repo.types.UTCDateTime.process_bind_param], then the
        dialect's own processor) without its indirections: it runs for every timestamp of
        every row written, twice per row for ``created_at`` and ``updated_at``. An aware
        UTC ``datetime`` takes a short path; any other value the general one.
        """
        if type(self).process_bind_param is not UTCDateTime.process_bind_param:
            return super().bind_processor(dialect)  # a subclass's own conversion
        inner = self.impl_instance.bind_processor(dialect)
        sqlite_text = (
            inner is not None
            and dialect.name == "sqlite"
            and getattr(self.impl_instance, "_storage_format", None) == _SQLITE_FORMAT
        )
        return _bind_processor(dialect, inner, self.process_bind_param, sqlite_text=sqlite_text)

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        """Convert loaded values to aware UTC in one call per value.

        Does what the default ``TypeDecorator`` processor does (the dialect's own
        processor, then [`process_result_value`][sqla_repo.types.UTCDateTime.process_result_value])
        without its indirections: it runs for every timestamp of every row loaded.
        """
        if type(self).process_result_value is not UTCDateTime.process_result_value:
            return super().result_processor(dialect, coltype)  # a subclass's own conversion
        inner = self.load_dialect_impl(dialect).result_processor(dialect, coltype)
        return _result_processor(dialect, inner, self.process_result_value)

    def process_result_value(
        self,
        value: object,
        dialect: Dialect,  # noqa: ARG002 - SQLAlchemy's signature
    ) -> dt.datetime | None:
        """Return an aware UTC ``datetime`` (a naive value from the database is UTC)."""
        if value is None:
            return None
        if isinstance(value, str):  # SQLite without the type's result processor (raw SQL)
            value = dt.datetime.fromisoformat(value)
        if not isinstance(value, dt.datetime):
            msg = f"expected a datetime from the database, got {type(value).__name__}"
            raise TypeError(msg)
        return _as_utc(value)


def _bind_processor(
    dialect: Dialect,
    inner: Callable[[Any], Any] | None,
    slow: Callable[[Any, Dialect], Any],
    *,
    sqlite_text: bool,
) -> Callable[[Any], Any]:
    """``UTCDateTime``'s bind processor: a short path for aware UTC values, *slow* else.

    *inner* is the dialect's own processor, *slow* ``process_bind_param``; with
    *sqlite_text* the dialect's storage format is SQLAlchemy's default one.
    """
    datetime = dt.datetime
    if inner is None and (
        dialect.name == "postgresql"
        or (
            dialect.name in {"mysql", "mariadb"}
            and getattr(dialect, "driver", None) in _WALL_TIME_DRIVERS
        )
    ):
        # asyncpg and psycopg bind an aware value as it is; PyMySQL, aiomysql and
        # asyncmy write a datetime's wall time and ignore its zone, which for an aware
        # UTC value is the naive UTC time DATETIME holds.

        def process_aware(value: Any) -> Any:
            if value.__class__ is datetime and value.tzinfo is UTC:
                return value
            return slow(value, dialect)

        return process_aware
    if sqlite_text and inner is not None:
        return _sqlite_text_bind(dialect, inner, slow)
    if inner is None:

        def process_naive(value: Any) -> Any:
            if value.__class__ is datetime and value.tzinfo is UTC:
                return _combine(value.date(), value.time())
            return slow(value, dialect)

        return process_naive
    other_inner = inner

    def process(value: Any) -> Any:
        return other_inner(slow(value, dialect))

    return process


_WALL_TIME_DRIVERS = frozenset({"pymysql", "aiomysql", "asyncmy"})
"""MySQL drivers that render a ``datetime`` parameter from its fields, zone ignored."""


def _sqlite_text_bind(
    dialect: Dialect, inner: Callable[[Any], Any], slow: Callable[[Any, Dialect], Any]
) -> Callable[[Any], Any]:
    """The ISO text SQLAlchemy's SQLite dialect writes, built by C calls only.

    From the naive copy: formatting an aware value's offset costs more than the copy.
    """
    datetime = dt.datetime

    def process_text(value: Any) -> Any:
        if value.__class__ is datetime and value.tzinfo is UTC:
            return _combine(value.date(), value.time()).isoformat(" ", "microseconds")
        value = slow(value, dialect)
        return value if value is None else inner(value)

    return process_text


def _result_processor(
    dialect: Dialect,
    inner: Callable[[Any], Any] | None,
    fallback: Callable[[Any, Dialect], dt.datetime | None],
) -> Callable[[Any], dt.datetime | None]:
    """``UTCDateTime``'s result processor: *inner*, then aware UTC, in one call per value."""
    datetime = dt.datetime

    def process(value: Any) -> dt.datetime | None:
        if value is None:
            return None
        if inner is not None:
            value = inner(value)
        if value.__class__ is not datetime:
            return fallback(value, dialect)
        # _as_utc(), inlined: this runs for every timestamp loaded.
        tz = value.tzinfo
        if tz is UTC:  # asyncpg's timestamptz values
            return value
        if tz is None:  # MySQL/MariaDB's DATETIME holding UTC
            return _combine(value.date(), value.time(), UTC)
        return value.astimezone(UTC)

    return process if dialect.name != "sqlite" else _sqlite_text_result(process)


def _sqlite_text_result(
    process: Callable[[Any], dt.datetime | None],
) -> Callable[[Any], dt.datetime | None]:
    """*process*, after a short path for the text SQLAlchemy's SQLite dialect writes."""
    # SQLite stores the naive UTC wall time as text in the ISO format SQLAlchemy writes
    # ("2024-05-01 07:00:00.000000"): parsing it with its UTC offset appended gives the
    # aware value in one C call, a third of the time of the parse-then-attach path. Any
    # other text (written by hand, with its own offset) takes it.
    from_iso = dt.datetime.fromisoformat

    def process_sqlite(value: Any) -> dt.datetime | None:
        if value.__class__ is str and len(value) == _SQLITE_TEXT_LENGTH:
            try:
                return from_iso(value + "+00:00")
            except ValueError:
                pass
        return process(value)

    return process_sqlite
