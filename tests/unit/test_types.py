"""UTCDateTime: aware UTC in, aware UTC out, on every dialect."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Column, Integer, Interval, MetaData, Table, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.dialects.mysql.mariadb import MariaDBDialect
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateTable

from sqla_repo.types import NaiveDatetimeError, UTCDateTime, ensure_utc, utcnow

UTC = dt.timezone.utc
PLUS_0530 = dt.timezone(dt.timedelta(hours=5, minutes=30))
MINUS_08 = dt.timezone(dt.timedelta(hours=-8))

DIALECTS = [
    pytest.param(postgresql.dialect(), id="postgresql"),
    pytest.param(postgresql.asyncpg.dialect(), id="postgresql+asyncpg"),
    pytest.param(postgresql.psycopg.dialect(), id="postgresql+psycopg"),
    pytest.param(mysql.dialect(), id="mysql"),
    pytest.param(mysql.asyncmy.dialect(), id="mysql+asyncmy"),
    pytest.param(MariaDBDialect(), id="mariadb"),
    pytest.param(sqlite.dialect(), id="sqlite"),
    pytest.param(sqlite.aiosqlite.dialect(), id="sqlite+aiosqlite"),
]

table = Table(
    "events",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime(), nullable=False),
)


def bind(dialect: Dialect, value: Any) -> Any:
    """Run *value* through the full bind processing the dialect applies."""
    processor = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert processor is not None
    return processor(value)


def result(dialect: Dialect, value: Any) -> Any:
    """Run a database *value* through the full result processing the dialect applies."""
    processor = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)
    assert processor is not None
    return processor(value)


class TestEnsureUTC:
    def test_aware_utc_unchanged(self) -> None:
        """An aware UTC value comes back equal, in UTC."""
        value = dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
        assert ensure_utc(value) == value
        assert ensure_utc(value).tzinfo is UTC

    def test_other_zone_converted(self) -> None:
        """An aware value in another zone is converted to the same instant in UTC."""
        value = dt.datetime(2024, 1, 2, 8, 34, 5, 123456, tzinfo=PLUS_0530)
        assert ensure_utc(value) == value
        assert ensure_utc(value) == dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
        assert ensure_utc(value).tzinfo is UTC

    def test_naive_rejected(self) -> None:
        """A naive value raises NaiveDatetimeError, which is also a ValueError."""
        with pytest.raises(NaiveDatetimeError, match="time zone") as info:
            ensure_utc(dt.datetime(2024, 1, 2))  # noqa: DTZ001 - the point of the test
        assert isinstance(info.value, ValueError)

    def test_tzinfo_without_offset_is_naive(self) -> None:
        """A tzinfo whose utcoffset() is None leaves the value naive, so it is rejected."""

        class Floating(dt.tzinfo):
            def utcoffset(self, _dt: dt.datetime | None) -> None:
                return None

            def dst(self, _dt: dt.datetime | None) -> None:
                return None

            def tzname(self, _dt: dt.datetime | None) -> str:
                return "floating"

        with pytest.raises(NaiveDatetimeError):
            ensure_utc(dt.datetime(2024, 1, 2, tzinfo=Floating()))

    @pytest.mark.parametrize(
        "value", [dt.date(2024, 1, 2), "2024-01-02T00:00:00+00:00", 0], ids=["date", "str", "int"]
    )
    def test_not_a_datetime(self, value: object) -> None:
        """Anything but a datetime raises TypeError."""
        with pytest.raises(TypeError, match="expected a datetime"):
            ensure_utc(value)  # type: ignore[arg-type]

    def test_utcnow_is_aware_utc(self) -> None:
        """utcnow() returns the current time as an aware UTC datetime."""
        before = dt.datetime.now(UTC)
        now = utcnow()
        assert now.tzinfo is UTC
        assert before <= now <= dt.datetime.now(UTC)


@pytest.mark.parametrize("dialect", DIALECTS)
class TestBind:
    def test_naive_rejected(self, dialect: Dialect) -> None:
        """Binding a naive datetime raises NaiveDatetimeError on every dialect."""
        with pytest.raises(NaiveDatetimeError):
            bind(dialect, dt.datetime(2024, 1, 2, 3, 4, 5))  # noqa: DTZ001 - the point of the test

    def test_none_passes(self, dialect: Dialect) -> None:
        """None binds as None (NULL)."""
        assert bind(dialect, None) is None

    def test_converted_to_utc_with_microseconds(self, dialect: Dialect) -> None:
        """An aware non-UTC value binds as the same instant in UTC, microseconds kept."""
        value = dt.datetime(2024, 1, 1, 19, 4, 5, 123456, tzinfo=MINUS_08)
        bound = bind(dialect, value)
        wall = dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC).replace(tzinfo=None)
        if isinstance(bound, str):  # SQLite stores ISO-8601 text
            assert bound == "2024-01-02 03:04:05.123456"
        elif bound.tzinfo is None:  # MySQL/MariaDB: naive UTC wall time
            assert bound == wall
        else:  # PostgreSQL: aware UTC
            assert bound == value
            assert bound.utcoffset() == dt.timedelta(0)
            assert bound.replace(tzinfo=None) == wall

    def test_result_naive_is_utc(self, dialect: Dialect) -> None:
        """A zone-less value read back (SQLite text, MySQL DATETIME) is UTC, made aware."""
        naive = dt.datetime(2024, 1, 2, 3, 4, 5, 123456)  # noqa: DTZ001 - as stored
        stored = naive.isoformat(" ") if dialect.name == "sqlite" else naive
        loaded = result(dialect, stored)
        assert loaded == naive.replace(tzinfo=UTC)
        assert loaded.tzinfo is UTC

    def test_result_aware_is_converted(self, dialect: Dialect) -> None:
        """An aware value read back in another zone (PostgreSQL's session zone) becomes UTC."""
        value = dt.datetime(2024, 1, 2, 8, 34, 5, 123456, tzinfo=PLUS_0530)
        loaded = UTCDateTime().process_result_value(value, dialect)
        assert loaded == value
        assert loaded is not None
        assert loaded.tzinfo is UTC
        assert loaded.microsecond == 123456

    def test_result_processor_converts_aware_values(self, dialect: Dialect) -> None:
        """The loading path (not only process_result_value) converts other zones to UTC."""
        value = dt.datetime(2024, 1, 2, 8, 34, 5, 123456, tzinfo=PLUS_0530)
        loaded = result(dialect, value.isoformat() if dialect.name == "sqlite" else value)
        assert loaded == value
        assert loaded.tzinfo is UTC

    def test_subclass_conversion_is_used(self, dialect: Dialect) -> None:
        """A subclass overriding process_result_value gets it called for every value."""

        class Shifted(UTCDateTime):
            cache_ok = True

            def process_result_value(self, value: object, dialect: Dialect) -> dt.datetime | None:
                loaded = super().process_result_value(value, dialect)
                return None if loaded is None else loaded + dt.timedelta(hours=1)

        naive = dt.datetime(2024, 1, 2, 3, 4, 5)  # noqa: DTZ001 - as stored
        stored = naive.isoformat(" ") if dialect.name == "sqlite" else naive
        processor = Shifted().dialect_impl(dialect).result_processor(dialect, None)
        loaded = processor(stored) if processor else None
        assert loaded == dt.datetime(2024, 1, 2, 4, 4, 5, tzinfo=UTC)

    def test_result_none(self, dialect: Dialect) -> None:
        """NULL reads back as None."""
        assert result(dialect, None) is None

    def test_round_trip(self, dialect: Dialect) -> None:
        """A value bound and read back is the same instant, aware UTC, microseconds intact."""
        value = dt.datetime(2024, 6, 30, 23, 59, 59, 999999, tzinfo=PLUS_0530)
        loaded = result(dialect, bind(dialect, value))
        assert loaded == value
        assert loaded.tzinfo is UTC
        assert loaded.microsecond == 999999


class TestSQLiteText:
    def test_text_result(self) -> None:
        """SQLite's stored text reads back as aware UTC with microseconds."""
        loaded = result(sqlite.dialect(), "2024-01-02 03:04:05.123456")
        assert loaded == dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)

    def test_raw_text_without_driver_processing(self) -> None:
        """A string reaching process_result_value directly (raw SQL) is parsed as UTC."""
        loaded = UTCDateTime().process_result_value("2024-01-02 03:04:05.000001", sqlite.dialect())
        assert loaded == dt.datetime(2024, 1, 2, 3, 4, 5, 1, tzinfo=UTC)

    def test_text_order_is_time_order(self) -> None:
        """Stored text sorts like the instants, whole seconds and microseconds alike."""
        dialect = sqlite.dialect()
        base = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
        instants = [
            base,
            base + dt.timedelta(microseconds=1),
            base + dt.timedelta(microseconds=100_000),
            base + dt.timedelta(seconds=1),
            (base + dt.timedelta(hours=1)).astimezone(MINUS_08),  # earlier wall time
            base + dt.timedelta(days=400),
        ]
        texts = [bind(dialect, value) for value in instants]
        assert sorted(texts) == texts
        assert len({len(text) for text in texts}) == 1  # fixed width, microseconds always


class TestDDL:
    @pytest.mark.parametrize(
        ("dialect", "ddl"),
        [
            pytest.param(postgresql.dialect(), "TIMESTAMP WITH TIME ZONE", id="postgresql"),
            pytest.param(mysql.dialect(), "DATETIME(6)", id="mysql"),
            pytest.param(MariaDBDialect(), "DATETIME(6)", id="mariadb"),
            pytest.param(sqlite.dialect(), "DATETIME", id="sqlite"),
        ],
    )
    def test_column_type(self, dialect: Dialect, ddl: str) -> None:
        """The column type keeps microseconds: DATETIME(6) on MySQL, timestamptz on PG."""
        assert UTCDateTime().compile(dialect=dialect) == ddl
        assert f"at {ddl} NOT NULL" in str(CreateTable(table).compile(dialect=dialect))

    def test_python_type(self) -> None:
        """The type reports datetime as its Python type."""
        assert UTCDateTime().python_type is dt.datetime


class TestExpressions:
    def test_compared_datetime_uses_this_type(self) -> None:
        """A datetime compared with the column is bound through UTCDateTime (so naive fails)."""
        expression = table.c.at > dt.datetime(2024, 1, 2, tzinfo=UTC)
        assert isinstance(expression.right.type, UTCDateTime)

    def test_timedelta_is_an_interval(self) -> None:
        """Adding a timedelta to the column binds an interval, not a datetime."""
        expression = table.c.at + dt.timedelta(days=1)
        assert isinstance(expression.right.type, Interval)
        sql = str(select(expression).compile(dialect=postgresql.asyncpg.dialect()))
        assert "events.at + $1::INTERVAL" in sql

    def test_timedelta_comparison_compiles(self) -> None:
        """``at - timedelta < now`` compiles with an interval and a UTCDateTime parameter."""
        cutoff = dt.datetime(2024, 1, 2, tzinfo=UTC)
        expression = table.c.at - dt.timedelta(hours=1) < cutoff
        compiled = select(table.c.id).where(expression).compile(dialect=postgresql.dialect())
        params = compiled.construct_params()
        assert dt.timedelta(hours=1) in params.values()
        assert cutoff in params.values()
