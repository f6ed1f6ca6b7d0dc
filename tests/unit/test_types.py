"""Column types: UTCDateTime, and the domain of each type that values are checked against.

UTCDateTime: aware UTC in, aware UTC out, on every dialect. Domains: what a filter value
or a written value must be for a column of each type, the same on every backend.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import (
    JSON,
    REAL,
    Column,
    Date,
    DateTime,
    Double,
    Enum,
    Float,
    Integer,
    Interval,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
    Uuid,
    func,
    select,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.dialects.mysql.mariadb import MariaDBDialect
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateTable

from sqla_repo._coerce import (
    CoercionError,
    check_value,
    check_values,
    coerce,
    column_fast_check,
    value_fast_check,
)
from sqla_repo.exceptions import InvalidValueError
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


class _Later(dt.datetime):
    """A datetime subclass (as freezegun's or pendulum's values are)."""


_ZONES = st.sampled_from(
    [UTC, PLUS_0530, MINUS_08, dt.timezone(dt.timedelta(0)), dt.timezone(dt.timedelta(hours=14))]
)


def general_bind(dialect: Dialect, value: Any) -> Any:
    """What TypeDecorator's own processing binds: process_bind_param, then the dialect's."""
    impl = UTCDateTime().dialect_impl(dialect)
    processor = TypeDecorator.bind_processor(impl, dialect)
    assert processor is not None
    return processor(value)


@pytest.mark.parametrize("dialect", DIALECTS)
class TestBindShortPath:
    """The bind processor's short path for aware UTC values binds what the general one does."""

    @given(value=st.datetimes(timezones=_ZONES))
    def test_same_as_general_processing(self, dialect: Dialect, value: dt.datetime) -> None:
        """Every aware value, in UTC or another zone, binds exactly as process_bind_param's."""
        bound = bind(dialect, value)
        expected = general_bind(dialect, value)
        if isinstance(bound, dt.datetime) and bound.tzinfo is not None and expected.tzinfo is None:
            # PyMySQL, aiomysql and asyncmy render a datetime from its fields, zone
            # ignored: an aware UTC value goes as it is and is written as the naive UTC
            # time the general path gives (tests/integration/test_write_time.py reads
            # the stored value back).
            assert dialect.driver in {"pymysql", "aiomysql", "asyncmy"}
            assert bound.tzinfo is UTC
            assert bound.replace(tzinfo=None) == expected
            return
        assert bound == expected
        assert type(bound) is type(expected)
        if isinstance(bound, dt.datetime):
            assert bound.tzinfo == expected.tzinfo

    def test_subclass_value_takes_the_general_path(self, dialect: Dialect) -> None:
        """A datetime subclass is converted like any other aware value."""
        value = _Later(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
        assert bind(dialect, value) == general_bind(dialect, value)

    def test_naive_subclass_rejected(self, dialect: Dialect) -> None:
        """A naive value is refused on the short path's dialects too, subclass or not."""
        with pytest.raises(NaiveDatetimeError):
            bind(dialect, _Later(2024, 1, 2))

    def test_subclass_bind_conversion_is_used(self, dialect: Dialect) -> None:
        """A subclass overriding process_bind_param gets it called for every value."""

        class Shifted(UTCDateTime):
            cache_ok = True

            def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
                shifted = None if value is None else value + dt.timedelta(hours=1)
                return super().process_bind_param(shifted, dialect)

        processor = Shifted().dialect_impl(dialect).bind_processor(dialect)
        assert processor is not None
        bound = processor(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
        assert result(dialect, bound) == dt.datetime(2024, 1, 2, 4, 4, 5, tzinfo=UTC)


class TestSQLiteText:
    def test_text_result(self) -> None:
        """SQLite's stored text reads back as aware UTC with microseconds."""
        loaded = result(sqlite.dialect(), "2024-01-02 03:04:05.123456")
        assert loaded == dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)

    def test_raw_text_without_driver_processing(self) -> None:
        """A string reaching process_result_value directly (raw SQL) is parsed as UTC."""
        loaded = UTCDateTime().process_result_value("2024-01-02 03:04:05.000001", sqlite.dialect())
        assert loaded == dt.datetime(2024, 1, 2, 3, 4, 5, 1, tzinfo=UTC)

    @given(st.datetimes(timezones=st.just(UTC)))
    def test_stored_text_reads_back_as_the_same_instant(self, value: dt.datetime) -> None:
        """Every instant SQLite stores reads back equal, as aware UTC (``timezone.utc``)."""
        loaded = result(sqlite.dialect(), bind(sqlite.dialect(), value))
        assert loaded == value
        assert loaded.tzinfo is UTC

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2024-01-02 03:04:05", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
            ("2024-01-02T03:04:05.000001", dt.datetime(2024, 1, 2, 3, 4, 5, 1, tzinfo=UTC)),
            ("2024-01-02 03:04:05+02:00", dt.datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC)),
            ("2024-01-02 03:04:05.123+00:00", dt.datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)),
        ],
    )
    def test_text_written_by_other_tools(self, text: str, expected: dt.datetime) -> None:
        """Text not in SQLAlchemy's own format (hand-written rows) still reads as UTC."""
        loaded = result(sqlite.dialect(), text)
        assert loaded == expected
        assert loaded.tzinfo is UTC

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


# -- the domain of each column type: what filters and writes accept ---------------------------


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


MARIADB_NCS = uuid.UUID("e8d207f5-9472-bfdc-08c8-0123456789ab")
UTF8MB3 = String(50).with_variant(mysql.VARCHAR(50, charset="utf8mb3"), "mariadb", "mysql")


def _accepts(value: object, type_: Any) -> bool:
    try:
        coerce(value, type_, max_length=None)
    except CoercionError:
        return False
    return True


class TestFilterDomains:
    @given(st.decimals(allow_nan=False, allow_infinity=False, places=4, max_value=10**6))
    def test_numeric_accepts_exactly_what_the_column_holds(self, value: Decimal) -> None:
        """NUMERIC(5, 2): at most 3 integer digits and 2 decimal places, nothing rounded."""
        fits = abs(value) < 1000 and value == value.quantize(Decimal("0.01"))
        assert _accepts(value, Numeric(5, 2)) is fits

    @given(st.decimals(allow_nan=False, allow_infinity=False, places=2, max_value=10**6))
    def test_numeric_without_scale_has_scale_zero(self, value: Decimal) -> None:
        """NUMERIC(5) is NUMERIC(5, 0): no fraction (asyncpg's cast would round it)."""
        fits = abs(value) < 100_000 and value == value.to_integral_value()
        assert _accepts(value, Numeric(5)) is fits

    def test_numeric_without_precision_is_unbounded(self) -> None:
        """Numeric() takes fractions: PostgreSQL's NUMERIC has no scale."""
        assert coerce("1.5", Numeric(), max_length=None) == Decimal("1.5")

    def test_float_asdecimal_is_not_a_numeric_scale(self) -> None:
        """Float(precision=24, asdecimal=True) keeps its fractions."""
        assert coerce("1.5", Float(precision=24, asdecimal=True), max_length=None) == Decimal("1.5")

    @pytest.mark.parametrize("type_", [Float(precision=24), REAL(), Float(precision=10)])
    def test_single_precision_range(self, type_: Any) -> None:
        """float32 columns refuse values beyond the float32 range; doubles do not."""
        assert coerce(3.4028234663852886e38, type_, max_length=None) == 3.4028234663852886e38
        assert not _accepts(-3.5e38, type_)
        assert not _accepts("1e39", type_)
        assert coerce(-3.5e38, Double(), max_length=None) == -3.5e38
        assert coerce(-3.5e38, Float(), max_length=None) == -3.5e38

    @pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "NaN", "inf", "1e400"])
    def test_non_finite_floats(self, value: object) -> None:
        """NaN and infinity are refused: MariaDB has neither."""
        assert not _accepts(value, Double())

    @pytest.mark.parametrize("value", ["😀", "a\U0001f600b", "\U00010000"])
    def test_utf8mb3_refuses_characters_beyond_the_bmp(self, value: str) -> None:
        """A utf8mb3 column (as a MariaDB variant, a charset or a collation) holds the BMP only."""
        for type_ in (
            UTF8MB3,
            mysql.VARCHAR(50, charset="utf8mb3"),
            mysql.VARCHAR(50, charset="utf8"),
            String(50, collation="utf8mb3_general_ci"),
        ):
            assert not _accepts(value, type_)
        assert coerce(value, String(50), max_length=None) == value
        assert coerce("\uffff", UTF8MB3, max_length=None) == "\uffff"

    def test_latin1_refuses_what_cp1252_cannot_encode(self) -> None:
        """MySQL's latin1 is cp1252."""
        latin1 = mysql.VARCHAR(50, charset="latin1")
        assert coerce("é€", latin1, max_length=None) == "é€"
        assert not _accepts("日本", latin1)

    @pytest.mark.parametrize("variant", [0, 4, 7])
    @pytest.mark.parametrize("version", range(8, 16))
    def test_uuids_mariadb_cannot_hold(self, version: int, variant: int) -> None:
        """Version 8-15 with the NCS variant: MariaDB's UUID type turns them into NULL."""
        value = uuid.UUID(int=(MARIADB_NCS.int & ~(0xF << 76) & ~(0xF << 60)))
        value = uuid.UUID(int=value.int | (version << 76) | (variant << 60))
        assert not _accepts(value, Uuid())
        assert not _accepts(str(value), Uuid(as_uuid=False))

    @pytest.mark.parametrize(
        "value",
        [
            uuid.UUID(int=0),
            uuid.UUID(int=2**128 - 1),
            uuid.UUID("e8d207f5-9472-4fdc-08c8-0123456789ab"),  # NCS variant, version 4
            uuid.UUID("e8d207f5-9472-ffdc-88c8-0123456789ab"),  # RFC variant, version 15
        ],
    )
    def test_uuids_every_backend_holds(self, value: uuid.UUID) -> None:
        assert coerce(value, Uuid(), max_length=None) == value


class _Lenient(TypeDecorator[int]):
    """An integer column whose bind processing takes text: other types are its business."""

    impl = Integer
    cache_ok = True

    def process_bind_param(self, value: Any, _dialect: Any) -> Any:
        return None if value is None else len(value)


class TestWriteDomains:
    @pytest.mark.parametrize(
        ("value", "type_"),
        [
            pytest.param(Decimal("1.5"), Numeric(5), id="fraction-in-numeric-p"),
            pytest.param(Decimal("1.005"), Numeric(5, 2), id="extra-decimal-place"),
            pytest.param(Decimal(123456), Numeric(5), id="numeric-overflow"),
            pytest.param(math.nan, Double(), id="nan"),
            pytest.param(-3.5e38, Float(precision=24), id="beyond-float32"),
            pytest.param(2**15, SmallInteger(), id="smallint-overflow"),
            pytest.param("x" * 51, String(50), id="too-long"),
            pytest.param("a\x00", Text(), id="nul"),
            pytest.param("😀", UTF8MB3, id="utf8mb3"),
            pytest.param("red", Enum(Color), id="enum-value-not-name"),
            pytest.param("purple", Enum("red", "green"), id="not-a-member"),
            pytest.param(dt.datetime(2024, 1, 1, tzinfo=UTC), DateTime(), id="aware-in-naive"),
            pytest.param(MARIADB_NCS, Uuid(), id="ncs-uuid"),
            pytest.param({"a": [math.inf]}, JSON(), id="json-infinity"),
            pytest.param({"a\ud800": 1}, JSON(), id="json-surrogate"),
            pytest.param(1.5, Integer(), id="float-in-integer"),
            pytest.param(
                dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2))),
                DateTime(timezone=True),
                id="offset-in-timezone-column",
            ),
            pytest.param(dt.datetime(2024, 1, 2, 3), Date(), id="datetime-in-date"),  # noqa: DTZ001
            pytest.param(2**53 + 1, Double(), id="inexact-int-in-double"),
            pytest.param(Decimal(2), Integer(), id="decimal-in-integer"),
            pytest.param("12", Integer(), id="text-in-integer"),
            pytest.param("1.005", Numeric(5, 2), id="text-in-numeric"),
            pytest.param(12345, String(5), id="integer-in-string"),
            pytest.param(str(uuid.UUID(int=5)), Uuid(), id="text-in-uuid"),
            pytest.param(uuid.UUID(int=5), Uuid(as_uuid=False), id="uuid-in-uuid-as-text"),
            pytest.param("nope", Uuid(as_uuid=False), id="not-a-uuid-as-text"),
        ],
    )
    def test_refused(self, value: object, type_: Any) -> None:
        """Values some backend refuses, or stores changed, are refused on every backend."""
        with pytest.raises(CoercionError):
            check_value(value, type_)

    @pytest.mark.parametrize(
        ("value", "type_"),
        [
            pytest.param(Decimal(2), Numeric(5), id="integer-in-numeric-p"),
            pytest.param(Decimal("1.5"), Numeric(), id="numeric-unbounded"),
            pytest.param(1.5, Double(), id="double"),
            pytest.param("x" * 50, String(50), id="fits"),
            pytest.param("😀", String(50), id="utf8mb4"),
            pytest.param(Color.RED, Enum(Color), id="member"),
            pytest.param("RED", Enum(Color), id="member-name"),
            pytest.param(dt.datetime(2024, 1, 1), DateTime(), id="naive-in-naive"),  # noqa: DTZ001
            pytest.param(dt.datetime(2024, 1, 1, tzinfo=UTC), UTCDateTime(), id="aware"),
            pytest.param({"a": [1, 2.5, None, "😀"]}, JSON(), id="json"),
            pytest.param("not an int", _Lenient(), id="decorator-decides-other-types"),
            pytest.param(2, Numeric(5, 2), id="integer-in-numeric"),
            pytest.param(Decimal("2.5"), Float(), id="decimal-in-float"),
            pytest.param(True, Integer(), id="bool-in-integer"),
            pytest.param(
                dt.datetime(2024, 1, 1, tzinfo=UTC), DateTime(timezone=True), id="utc-in-tz-column"
            ),
            pytest.param(2**60, Double(), id="exact-big-int-in-double"),
            pytest.param(str(uuid.UUID(int=5)), Uuid(as_uuid=False), id="text-in-uuid-as-text"),
            pytest.param(func.lower("A"), String(5), id="sql-expression"),
            pytest.param(None, Integer(), id="null"),
        ],
    )
    def test_accepted(self, value: object, type_: Any) -> None:
        check_value(value, type_)

    def test_check_values_names_the_field(self) -> None:
        """check_values() raises InvalidValueError naming the field, never the value."""
        columns = {"qty": Column("qty", Numeric(5)), "other": Column("other", Integer)}
        with pytest.raises(InvalidValueError) as info:
            check_values(columns, {"qty": Decimal("1.5"), "unknown": object()}, model=Color)
        assert info.value.detail == {"field": "qty", "reason": "invalid_value", "model": "Color"}
        assert "1.5" not in str(info.value)
        check_values(columns, {"qty": Decimal(2), "other": None})


_GLANCED_TYPES = [
    pytest.param(Integer(), id="integer"),
    pytest.param(SmallInteger(), id="smallint"),
    pytest.param(String(5), id="string-5"),
    pytest.param(Text(), id="text"),
]
_COLUMN_VALUES = st.lists(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**64), max_value=2**64),
        st.sampled_from([2**15 - 1, 2**15, -(2**15), -(2**15) - 1, 2**31 - 1, 2**31, -(2**31)]),
        st.text(max_size=7),
        st.text(alphabet="ab\x00", max_size=6),
        st.floats(allow_nan=False),
    ),
    max_size=12,
)


@pytest.mark.parametrize("type_", _GLANCED_TYPES)
class TestColumnGlance:
    """Bulk writes glance at a whole column at once: the same verdict as value by value."""

    @given(values=_COLUMN_VALUES)
    def test_same_verdict_as_each_value(self, type_: Any, values: list[Any]) -> None:
        """The column passes exactly when every non-None value passes the per-value glance."""
        column = column_fast_check(type_)
        each = value_fast_check(type_)
        assert column is not None
        assert each is not None
        assert column(values) == all(each(v) for v in values if v is not None)

    @given(values=_COLUMN_VALUES)
    def test_a_passed_column_needs_no_full_check(self, type_: Any, values: list[Any]) -> None:
        """Every value of a column the glance passes also passes the full check."""
        column = column_fast_check(type_)
        assert column is not None
        if column(values):
            for value in values:
                check_value(value, type_)
