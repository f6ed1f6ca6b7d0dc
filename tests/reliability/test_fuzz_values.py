"""Hostile values on every column type: answered correctly or refused, never a raw error.

A model holding every column type the library supports (integers of three widths,
``Numeric`` with and without scale, single and double precision floats, ``utf8mb3`` and
``utf8mb4`` text on MariaDB, text, booleans, dates, aware and naive datetimes, UUIDs,
enums, JSON) is filtered, sorted and written with hostile values. Properties, per backend:

* a filter either answers or raises ``InvalidFilterError``; for ``eq``/``ne``/``lt``/``le``/
  ``gt``/``ge`` on integer, decimal, double and code-point-collated string columns, the
  answer is the one a Python model of the stored rows gives;
* a write (``create()``, ``update()``) either stores the row or raises a
  ``RepositoryError``, and the transaction goes on;
* no error message holds SQL or a bound value;
* through FastAPI, no request is answered with a 5xx.
"""

import datetime as dt
import enum
import json
import math
import operator
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import httpx
import pytest
import pytest_asyncio
from fastapi import Depends, FastAPI
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Double,
    Enum,
    Float,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    Uuid,
    select,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import backends
from recorder import StatementLog
from sqla_repo import (
    InvalidFilterError,
    InvalidValueError,
    RepositoryError,
    UTCDateTime,
)
from sqla_repo._coerce import check_values
from sqla_repo.ext.fastapi import (
    SearchParams,
    install_exception_handlers,
    provide_repository,
    search_params,
    session_dependency,
)
from sqla_repo.repository import BaseRepository

EXAMPLES = int(os.environ.get("SQLA_REPO_FUZZ_EXAMPLES", "100"))
"""Examples per backend and property; raise it for a deep run."""
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure reproduces
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
UTC = dt.timezone.utc

# -- the model ---------------------------------------------------------------------------------


class FuzzBase(DeclarativeBase):
    metadata = MetaData()


def _code_point_text(charset: str) -> String:
    """Text compared by code point on every backend; in *charset* on MariaDB/MySQL.

    ``C`` on PostgreSQL, a ``NO PAD`` binary collation on MariaDB (``'a' = 'a '`` is false
    there too), SQLite's default ``BINARY``: Python's ``str`` comparison is the oracle.
    """
    mariadb = mysql.VARCHAR(50, charset=charset, collation=f"{charset}_nopad_bin")
    return (
        String(50)
        .with_variant(String(50, collation="C"), "postgresql")
        .with_variant(mariadb, "mariadb", "mysql")
    )


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Sample(FuzzBase):
    __tablename__ = "fuzz_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    i: Mapped[int | None] = mapped_column(Integer)
    bi: Mapped[int | None] = mapped_column(BigInteger)
    si: Mapped[int | None] = mapped_column(SmallInteger)
    n5: Mapped[Decimal | None] = mapped_column(Numeric(5))
    n52: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    f24: Mapped[float | None] = mapped_column(Float(precision=24))
    dbl: Mapped[float | None] = mapped_column(Double)
    s3: Mapped[str | None] = mapped_column(_code_point_text("utf8mb3"))
    s4: Mapped[str | None] = mapped_column(_code_point_text("utf8mb4"))
    txt: Mapped[str | None] = mapped_column(Text)
    flag: Mapped[bool | None] = mapped_column(Boolean)
    day: Mapped[dt.date | None] = mapped_column(Date)
    at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    naive: Mapped[dt.datetime | None] = mapped_column(DateTime)
    uid: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    color: Mapped[Color | None] = mapped_column(Enum(Color, name="fuzz_color"))
    data: Mapped[Any] = mapped_column(JSON, nullable=True)


FIELDS = tuple(c.key for c in Sample.__table__.columns)
WRITABLE = tuple(f for f in FIELDS if f != "id")


SORTABLE = tuple(f for f in FIELDS if f != "data")  # JSON has no order on PostgreSQL


class SampleRepository(BaseRepository[Sample]):
    filterable_fields = FIELDS
    sortable_fields = SORTABLE


INTEGERS = {"id", "i", "bi", "si", "n5", "n52"}  # compared exactly, as decimals
DOUBLES = {"dbl"}  # compared as doubles
STRINGS = {"s3", "s4"}  # compared by code point
UUIDS_ = {"uid"}  # compared for equality only (each backend orders UUIDs its own way)
ORACLE_FIELDS = INTEGERS | DOUBLES | STRINGS | UUIDS_
ORACLE_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}

SEED: list[dict[str, Any]] = [
    {
        "i": 0,
        "bi": 0,
        "si": 0,
        "n5": Decimal(0),
        "n52": Decimal("0.00"),
        "f24": 0.0,
        "dbl": 0.0,
        "s3": "",
        "s4": "",
        "txt": "",
        "flag": False,
        "day": dt.date(2024, 1, 1),
        "at": dt.datetime(2024, 1, 1, tzinfo=UTC),
        "naive": dt.datetime(2024, 1, 1),  # noqa: DTZ001 - naive on purpose
        "uid": uuid.UUID(int=0),
        "color": Color.RED,
        "data": {},
    },
    {
        "i": 2**31 - 1,
        "bi": 2**63 - 1,
        "si": 2**15 - 1,
        "n5": Decimal(99999),
        "n52": Decimal("999.99"),
        "f24": 3.4e38,
        "dbl": 1.7976931348623157e308,
        "s3": "a",
        "s4": "a",
        "txt": "a",
        "flag": True,
        "day": dt.date(9999, 12, 31),
        "at": dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        "naive": dt.datetime(9999, 12, 31, 23, 59, 59),  # noqa: DTZ001 - naive on purpose
        "uid": uuid.UUID("e8d207f5-9472-4fdc-88c8-0123456789ab"),
        "color": Color.GREEN,
        "data": {"a": [1, 2.5, None, "😀"]},
    },
    {
        "i": -(2**31),
        "bi": -(2**63),
        "si": -(2**15),
        "n5": Decimal(-99999),
        "n52": Decimal("-999.99"),
        "f24": -1.5,
        "dbl": -0.1,
        "s3": "A",
        "s4": "😀",
        "txt": "A",
        "day": dt.date(1000, 1, 1),
        "at": dt.datetime(1000, 1, 1, tzinfo=UTC),
        "naive": dt.datetime(1000, 1, 1),  # noqa: DTZ001 - naive on purpose
        "uid": uuid.UUID(int=2**128 - 1),
    },
    {"i": 1, "bi": 2, "si": 1, "n5": Decimal(2), "n52": Decimal("1.5"), "dbl": 1.5},
    {"i": 2, "n5": Decimal(1), "n52": Decimal("0.01"), "dbl": 0.1, "s3": "a ", "s4": "a "},
    {"i": -1, "n52": Decimal("-0.01"), "dbl": 5e-324, "s3": "é", "s4": "é", "txt": "É"},
    {"s3": "\u202eb", "s4": "ß", "dbl": -1.7976931348623157e308},
    {"s3": "z" * 50, "s4": "\U0010ffff" * 50, "txt": "x" * 1000},
    {},
]
"""Rows every backend stores as given (``s3`` holds no character beyond U+FFFF)."""

# -- hostile values ----------------------------------------------------------------------------

ZONES = st.sampled_from(
    [
        None,
        UTC,
        dt.timezone(dt.timedelta(hours=14)),
        dt.timezone(-dt.timedelta(hours=23, minutes=59)),
    ]
)
EDGE_INTEGERS = st.sampled_from(
    [
        0,
        -1,
        2**15,
        -(2**15) - 1,
        2**31,
        -(2**31) - 1,
        2**53 + 1,
        2**63,
        -(2**63) - 1,
        10**40,
        123456,
        99999,
        100000,
    ]
)
EDGE_FLOATS = st.sampled_from(
    [
        1.5,
        -1.5,
        0.1,
        -3.5e38,
        3.4028234663852886e38,
        3.4028235677973366e38,
        1e-46,
        5e-324,
        1e308,
        -0.0,
        math.nan,
        math.inf,
        -math.inf,
    ]
)
EDGE_DECIMALS = st.sampled_from(
    [
        Decimal("1.5"),
        Decimal("999.995"),
        Decimal("999.99"),
        Decimal("1E+5"),
        Decimal("-0.001"),
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("1E+40"),
        Decimal("1E-40"),
    ]
)
EDGE_NUMBERS = st.one_of(EDGE_INTEGERS, EDGE_FLOATS, EDGE_DECIMALS)
NUMERIC_TEXT = st.sampled_from(
    ["1.5", "123456", " 42 ", "1e2", "1e-2", "NaN", "inf", "-3.5e38", "0x10", "1_000", "٣"]
)
ODD_TEXT = st.one_of(
    st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=8),
    st.text(max_size=8),
    st.sampled_from(
        ["a", "A", "a ", "é", "É", "😀", "ß", "\x00", "a\x00b", "\ud800", "z" * 51, "İ", "\ufeff"]
    ),
)
DATES = st.one_of(
    st.dates(),
    st.sampled_from(["0001-01-01", "9999-12-31", "10000-01-01", "2024-02-30", "0000-01-01"]),
)
EDGE_DATETIMES = st.sampled_from(
    [
        dt.datetime(1, 1, 1),  # noqa: DTZ001 - naive on purpose
        dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone(-dt.timedelta(hours=1))),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999),  # noqa: DTZ001 - naive on purpose
    ]
)
DATETIMES = st.one_of(
    st.datetimes(timezones=ZONES),
    EDGE_DATETIMES,
    st.sampled_from(
        ["2024-05-01T07:00:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]
    ),
)
UUIDS = st.one_of(
    st.uuids(),
    st.builds(lambda n: uuid.UUID(int=n), st.integers(0, 2**128 - 1)),  # any variant
    st.sampled_from(
        [
            uuid.UUID("e8d207f5-9472-bfdc-08c8-0123456789ab"),  # NCS variant, version 11
            uuid.UUID(int=0),
            uuid.UUID(int=2**128 - 1),
            "e8d207f5-9472-bfdc-08c8-0123456789ab",
            "not-a-uuid",
        ]
    ),
)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), ODD_TEXT),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(ODD_TEXT, children, max_size=3)
    ),
    max_leaves=6,
)


def _seeded(field: str) -> st.SearchStrategy[Any]:
    return st.sampled_from([row[field] for row in SEED if field in row] or [None])


HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    EDGE_NUMBERS,
    st.floats(),
    st.decimals(),
    NUMERIC_TEXT,
    ODD_TEXT,
    DATES,
    DATETIMES,
    UUIDS,
    st.sampled_from([*Color, "red", "RED", "purple", "Red"]),
)
"""Any value of any type: what a filter may be given."""


def hostile_for(field: str) -> st.SearchStrategy[Any]:
    """Hostile values for *field*, with the stored values to make matches likely."""
    return st.one_of(_seeded(field), _seeded(field).map(str), HOSTILE)


def plausible_for(field: str) -> st.SearchStrategy[Any]:
    """Values near what *field* holds, often accepted: what the oracle gets to check."""
    if field in STRINGS:
        near = st.text(alphabet="aAzé😀ß \u202e", max_size=3)
    elif field in UUIDS_:
        near = UUIDS
    elif field in DOUBLES:
        near = st.one_of(st.floats(allow_nan=False, allow_infinity=False), EDGE_FLOATS)
    else:
        near = st.one_of(
            st.integers(-100_000, 100_000),
            st.integers(-3, 3),
            st.decimals(min_value=-1000, max_value=1000, places=3),
            st.floats(min_value=-1000, max_value=1000),
            EDGE_INTEGERS,
            EDGE_DECIMALS,
        )
    return st.one_of(_seeded(field), _seeded(field).map(str), _beside(field), near, near.map(str))


def _beside(field: str) -> st.SearchStrategy[Any]:
    """Values just beside a stored one, where rounding or truncation changes the answer."""
    stored = [row[field] for row in SEED if row.get(field) is not None] or [1, len(SEED)]
    if field in UUIDS_:
        # The same bits under another version and variant (NCS: variant bits 0xxx).
        return st.builds(
            lambda v, version, variant: uuid.UUID(
                int=(v.int & ~(0xF << 76) & ~(0xC << 60)) | (version << 76) | (variant << 60)
            ),
            st.sampled_from(stored),
            st.integers(0, 15),
            st.sampled_from([0, 4, 8, 0xC]),
        )
    if field in STRINGS:
        return st.builds(
            lambda v, c, before: c + v if before else v + c,
            st.sampled_from(stored),
            st.sampled_from(["", " ", "a", "\x01", "\uffff"]),
            st.booleans(),
        )
    if field in DOUBLES:
        return st.builds(
            lambda v, up: math.nextafter(v, math.inf if up else -math.inf),
            st.sampled_from(stored),
            st.booleans(),
        )
    steps = [Decimal("0.5"), Decimal("0.001"), Decimal(1), Decimal("0.005")]
    return st.builds(
        lambda v, step, sign: Decimal(v) + sign * step,
        st.sampled_from(stored),
        st.sampled_from(steps),
        st.sampled_from([1, -1]),
    )


WRITE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "i": st.one_of(st.integers(), EDGE_INTEGERS),
    "bi": st.one_of(st.integers(), EDGE_INTEGERS),
    "si": st.one_of(st.integers(), EDGE_INTEGERS),
    "n5": st.one_of(st.decimals(), EDGE_NUMBERS, st.integers()),
    "n52": st.one_of(st.decimals(), EDGE_NUMBERS, st.integers()),
    "f24": st.one_of(st.floats(), EDGE_FLOATS),
    "dbl": st.one_of(st.floats(), EDGE_FLOATS),
    "s3": ODD_TEXT,
    "s4": ODD_TEXT,
    "txt": ODD_TEXT,
    "flag": st.booleans(),
    "day": st.dates(),
    "at": st.one_of(st.datetimes(timezones=ZONES), EDGE_DATETIMES),
    "naive": st.one_of(st.datetimes(timezones=ZONES), EDGE_DATETIMES),
    "uid": st.one_of(st.uuids(), st.builds(lambda n: uuid.UUID(int=n), st.integers(0, 2**128 - 1))),
    # Names and strings naming no member: SQLite would store them (and every later read of
    # the row would fail); writes refuse them with InvalidValueError.
    "color": st.sampled_from([*Color, *(c.name for c in Color), "red", "purple", "Red", ""]),
    "data": JSON_VALUES,
}
"""Values of each column's Python type (or near it), hostile within the type."""
PAIRS = st.sampled_from(WRITABLE).flatmap(lambda f: st.tuples(st.just(f), WRITE_VALUES[f]))

OPERATORS = ["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "between", "is_null"]
OPERATORS += ["like", "ilike", "contains", "startswith", "endswith"]

# -- the oracle --------------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _as_decimal(value: object) -> Decimal | None:
    """The number a client meant by *value*, or ``None`` when it is no number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        try:
            return Decimal(value.strip())
        except InvalidOperation:  # pragma: no cover - the pattern admits decimals only
            return None
    return None


def oracle_value(field: str, value: object) -> Any:
    """The value *field* is compared with, read independently of the library, or ``None``."""
    if field in STRINGS:
        return value if isinstance(value, str) else None
    if field in UUIDS_:
        try:
            return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value).strip())
        except ValueError:
            return None
    number = _as_decimal(value)
    if number is None or not number.is_finite():
        return None
    if field in DOUBLES:
        return float(number)
    return number


def expected_ids(rows: list[dict[str, Any]], field: str, op: str, value: Any) -> set[int]:
    """The ids a filter ``field__op=value`` must return, by the filter language's rules.

    ``eq None`` is ``IS NULL`` and ``ne None`` ``IS NOT NULL``; ``ne`` also matches NULL;
    the other comparisons never match NULL.
    """
    if value is None:
        return {r["id"] for r in rows if (r[field] is None) == (op == "eq")}
    compare = ORACLE_OPERATORS[op]
    out = set()
    for row in rows:
        stored = row[field]
        if stored is None:
            if op == "ne":
                out.add(row["id"])
            continue
        stored = float(stored) if field in DOUBLES else stored
        stored = Decimal(stored) if field in INTEGERS else stored
        if compare(stored, value):
            out.add(row["id"])
    return out


LEAKS = (
    "SELECT",
    "INSERT",
    "UPDATE",
    "FROM fuzz_samples",
    "INTO fuzz_samples",
    "[SQL",
    "sqlalche.me",
)
"""Marks of a statement; a constraint's name (``fuzz_samples.data``) may be shown."""


def check_safe(error: RepositoryError, values: object = ()) -> None:
    """A typed error's message and detail hold no SQL, nor any of the text *values*."""
    items = values.values() if isinstance(values, dict) else values
    items = items if isinstance(items, (list, tuple, type({}.values()))) else [items]
    secrets = [v for v in items if isinstance(v, str) and len(v.strip()) >= 6]
    for text_ in (str(error), repr(error.detail)):
        assert len(text_) < 500, text_
        for leak in (*LEAKS, *secrets):
            assert leak not in text_, text_


# -- fixtures ----------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def fuzz(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The fuzz model's table, seeded and committed; dropped afterwards."""
    async with engine.begin() as conn:
        await conn.run_sync(FuzzBase.metadata.drop_all)
        await conn.run_sync(FuzzBase.metadata.create_all)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with factory() as session, session.begin():
            await SampleRepository(session).bulk_create([dict(row) for row in SEED])
        yield factory
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(FuzzBase.metadata.drop_all)


async def stored_rows(factory: async_sessionmaker[AsyncSession]) -> list[dict[str, Any]]:
    """The rows as the database holds them (after its own rounding), through Core."""
    async with factory() as session:
        result = await session.execute(select(Sample.__table__))
        return [dict(row._mapping) for row in result]


# -- filters -----------------------------------------------------------------------------------


@st.composite
def conditions(draw: st.DrawFn) -> tuple[str, str, Any]:
    """A condition on any field with any operator; two in three the oracle checks."""
    if draw(st.integers(0, 2)):
        field = draw(st.sampled_from(sorted(ORACLE_FIELDS)))
        op = draw(st.sampled_from(["eq", "ne"] if field in UUIDS_ else sorted(ORACLE_OPERATORS)))
        return field, op, draw(plausible_for(field))
    field = draw(st.sampled_from(FIELDS))
    op = draw(st.sampled_from(OPERATORS))
    value: Any
    if op in {"in", "not_in"}:
        value = draw(st.lists(hostile_for(field), max_size=3))
    elif op == "between":
        value = draw(st.lists(hostile_for(field), min_size=2, max_size=2))
    else:
        value = draw(hostile_for(field))
    return field, op, value


sorts = st.lists(
    st.sampled_from(SORTABLE).flatmap(lambda f: st.sampled_from([f, f"-{f}"])),
    max_size=2,
    unique_by=lambda s: s.lstrip("-"),
)


@FUZZ_SETTINGS
@given(data=st.data())
async def test_filters_answer_correctly_or_refuse(fuzz, data):
    """A hostile filter value: the right rows, or InvalidFilterError; never a driver error."""
    rows = await stored_rows(fuzz)
    field, op, value = data.draw(conditions(), label="condition")
    order_by = data.draw(sorts, label="order_by")
    async with fuzz() as session, session.begin():
        repo = SampleRepository(session)
        try:
            found = await repo.list(filters={f"{field}__{op}": value}, order_by=order_by)
        except InvalidFilterError as error:
            check_safe(error, value)
            event(f"refused {field}: {error.detail.get('reason')}")
            return
    if field in ORACLE_FIELDS and op in ORACLE_OPERATORS:
        expected = oracle_value(field, value) if value is not None else None
        if value is None or expected is not None:
            event("answered, checked by the oracle")
            assert {s.id for s in found} == expected_ids(rows, field, op, expected), (
                field,
                op,
                value,
            )
            return
    event(f"answered {field}")


# -- writes ------------------------------------------------------------------------------------


@FUZZ_SETTINGS
@given(data=st.data())
async def test_writes_store_or_refuse(fuzz, data):
    """A hostile written value: stored, or a RepositoryError; the transaction goes on."""
    values = data.draw(st.lists(PAIRS, min_size=1, max_size=3).map(dict), label="values")
    async with fuzz() as session, session.begin():
        repo = SampleRepository(session)
        before = await repo.count()
        target = (await repo.list(limit=1))[0]
        try:
            await repo.create(dict(values))
        except RepositoryError as error:
            check_safe(error, values)
            event(f"create refused: {type(error).__name__}")
        else:
            event("created")
        try:
            await repo.update(target.id, **values)
        except RepositoryError as error:
            check_safe(error, values)
            event(f"update refused: {type(error).__name__}")
        # The transaction goes on after a refused write, on every backend.
        assert await repo.count() >= before
        await session.rollback()


SILENTLY_CHANGED = {
    "fraction-in-numeric-p": {"n5": Decimal("1.5")},
    "extra-decimal-place": {"n52": Decimal("1.005")},
    "nan-in-a-double": {"dbl": math.nan},
    "enum-value-for-name": {"color": "red"},
    "not-a-member": {"color": "purple"},
    "aware-datetime-in-naive-column": {
        "naive": dt.datetime(2024, 5, 1, 7, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    },
    "numeric-overflow": {"n5": Decimal(123456)},
    "smallint-overflow": {"si": 2**15},
    "too-long": {"s4": "x" * 51},
    "nan-in-json": {"data": [math.nan]},
}
"""Written values some backend would store changed (rounded, NULL, reinterpreted, offset
dropped) or store where another refuses them. Every write path checks values with
``check_values()`` in ``sqla_repo._coerce`` first, so each is refused everywhere."""

_WRITES: dict[str, Callable[[SampleRepository, dict[str, Any], Any], Any]] = {
    "create": lambda repo, values, _t: repo.create(dict(values)),
    "create-instance": lambda repo, values, _t: repo.create(Sample(**values)),
    "update": lambda repo, values, t: repo.update(t.id, **values),
    "update-instance": lambda repo, values, t: repo.update(t, **values),
    "update_where": lambda repo, values, t: repo.update_where(Sample.id == t.id, values=values),
    "bulk_create": lambda repo, values, _t: repo.bulk_create([{"i": 1}, dict(values)]),
    "bulk_insert": lambda repo, values, _t: repo.bulk_insert([{"i": 1}, dict(values)]),
    "bulk_update": lambda repo, values, t: repo.bulk_update([{"id": t.id, **values}]),
    "upsert": lambda repo, values, t: repo.upsert({"id": t.id, **values}, conflict_on=["id"]),
    "bulk_upsert": lambda repo, values, t: repo.bulk_upsert(
        [{"id": t.id, **values}], conflict_on=["id"]
    ),
    "get_or_create": lambda repo, values, _t: repo.get_or_create(values, id=10**6),
    "bulk_get_or_create": lambda repo, values, _t: repo.bulk_get_or_create(
        [{"id": 10**6, **values}], conflict_on=["id"]
    ),
}
"""Every write method, given the values to write and a stored row."""


@pytest.mark.parametrize("case", sorted(SILENTLY_CHANGED))
async def test_values_a_backend_would_change_are_refused(fuzz, case):
    """A written value is stored exactly or refused with InvalidValueError, everywhere."""
    values = SILENTLY_CHANGED[case]
    with pytest.raises(InvalidValueError):
        check_values(Sample.__table__.c, values, model=Sample)
    async with fuzz() as session, session.begin():
        repo = SampleRepository(session)
        with pytest.raises(InvalidValueError) as caught:
            await repo.create(dict(values))
        check_safe(caught.value)
        assert await repo.count() == len(SEED)


@pytest.mark.parametrize("path", sorted(_WRITES))
@pytest.mark.parametrize("case", ["not-a-member", "fraction-in-numeric-p", "nan-in-a-double"])
async def test_every_write_path_checks_values(fuzz, path, case):
    """Every write method refuses such a value before sending anything; nothing changes."""
    values = SILENTLY_CHANGED[case]
    async with fuzz() as session, session.begin():
        repo = SampleRepository(session)
        target = (await repo.list(limit=1, order_by=Sample.id))[0]
        before = {k: getattr(target, k) for k in values}
        with StatementLog(session) as log, pytest.raises(InvalidValueError) as caught:
            await _WRITES[path](repo, values, target)
        assert log.dml == [], log.statements
        check_safe(caught.value)
        assert caught.value.detail["field"] == next(iter(values))
        assert await repo.count() == len(SEED)
        await session.refresh(target)
        assert {k: getattr(target, k) for k in values} == before


async def test_flushed_instance_values_are_checked(fuzz):
    """An instance the caller added to the session is checked before create() flushes it."""
    async with fuzz() as session, session.begin():
        repo = SampleRepository(session)
        obj = Sample(color="purple")
        session.add(obj)
        with pytest.raises(InvalidValueError):
            await repo.create(obj)
        session.expunge(obj)
        assert await repo.count() == len(SEED)


# -- through FastAPI ---------------------------------------------------------------------------


class SampleIn(BaseModel):
    """A create request's body: every column, each optional."""

    i: int | None = None
    bi: int | None = None
    si: int | None = None
    n5: Decimal | None = None
    n52: Decimal | None = None
    f24: float | None = None
    dbl: float | None = None
    s3: str | None = None
    s4: str | None = None
    txt: str | None = None
    flag: bool | None = None
    day: dt.date | None = None
    at: dt.datetime | None = None
    naive: dt.datetime | None = None
    uid: uuid.UUID | None = None
    color: Color | None = None
    data: Any = None


def build_app(factory: async_sessionmaker[AsyncSession]) -> FastAPI:
    """A small application: search with query-string filters, and create from a body."""
    get_session = session_dependency(factory)
    get_samples = provide_repository(SampleRepository, session=get_session)
    sample_search = search_params(SampleRepository)
    app = FastAPI()
    install_exception_handlers(app)

    @app.get("/samples")
    async def search(
        params: Annotated[SearchParams, Depends(sample_search)],
        samples: Annotated[SampleRepository, Depends(get_samples)],
    ) -> list[int]:
        return [s.id for s in (await samples.search(**params.as_kwargs())).items]

    @app.post("/samples", status_code=201)
    async def create(
        body: SampleIn, samples: Annotated[SampleRepository, Depends(get_samples)]
    ) -> int:
        return (await samples.create(body.model_dump(exclude_unset=True))).id

    return app


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def _query_text(value: object) -> str | None:
    """*value* as a client would write it in a query string, or ``None`` if it cannot be."""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (dt.date, dt.datetime)):
        value = value.isoformat()
    text_ = str(value) if value is not None else ""
    try:
        text_.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return text_


def _json_value(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (dt.date, dt.datetime, uuid.UUID, Decimal)):
        return str(value)
    return value


@pytest.mark.fastapi
@FUZZ_SETTINGS
@given(data=st.data())
async def test_http_never_answers_5xx(fuzz, data):
    """Hostile query-string filters and JSON bodies: 2xx or 4xx, never 5xx."""
    app = build_app(fuzz)
    field, op, value = data.draw(conditions(), label="condition")
    items = value if isinstance(value, list) else [value]
    texts = [_query_text(item) for item in items]
    params: dict[str, str] = {}
    if None not in texts:
        params[f"{field}__{op}"] = ",".join(t for t in texts if t is not None)
    sort = data.draw(sorts, label="sort")
    if sort:
        params["sort"] = ",".join(sort)
    body = data.draw(
        st.lists(PAIRS, max_size=3).map(lambda pairs: {k: _json_value(v) for k, v in pairs}),
        label="body",
    )
    async with _client(app) as client:
        response = await client.get("/samples", params=params)
        assert response.status_code < 500, (params, response.text)
        try:
            content = _json_dumps(body)
        except (UnicodeEncodeError, ValueError):
            return
        response = await client.post(
            "/samples", content=content, headers={"content-type": "application/json"}
        )
        assert response.status_code < 500, (body, response.text)
        for leak in LEAKS:
            assert leak not in response.text


def _json_dumps(body: object) -> bytes:
    # Standard JSON only: FastAPI's own validation error handler fails (a 500) on the
    # NaN and Infinity literals Python's json module reads, before any repository runs.
    return json.dumps(body, allow_nan=False).encode("utf-8")


# -- the defects these properties found, one by one --------------------------------------------


@pytest.mark.parametrize(
    ("filters", "reason"),
    [
        pytest.param({"n5__gt": 1.5}, "invalid_value", id="fraction-on-numeric-p"),
        pytest.param({"n5__gt": "1.5"}, "invalid_value", id="fraction-text-on-numeric-p"),
        pytest.param({"n5__lt": 123456}, "out_of_range", id="beyond-numeric-precision"),
        pytest.param({"n52__eq": "999.995"}, "invalid_value", id="beyond-numeric-scale"),
        pytest.param({"f24__gt": -3.5e38}, "out_of_range", id="beyond-float32"),
        pytest.param({"dbl__gt": "NaN"}, "invalid_value", id="nan"),
        pytest.param({"dbl__lt": math.inf}, "invalid_value", id="infinity"),
        pytest.param({"s3__eq": "😀"}, "invalid_value", id="four-byte-char-in-utf8mb3"),
        pytest.param({"s4__eq": "a\x00"}, "invalid_value", id="nul"),
        pytest.param(
            {"uid__ne": "e8d207f5-9472-bfdc-08c8-0123456789ab"}, "invalid_value", id="ncs-uuid"
        ),
        pytest.param({"color__eq": "purple"}, "invalid_value", id="not-a-member"),
        pytest.param({"data__eq": "{}"}, "unsupported_type", id="json"),
    ],
)
async def test_values_no_backend_can_compare_exactly_are_refused(fuzz, filters, reason):
    """Refused on every backend alike, before the database sees them."""
    async with fuzz() as session, session.begin():
        with pytest.raises(InvalidFilterError) as caught:
            await SampleRepository(session).list(filters=filters)
    assert caught.value.detail["reason"] == reason
    check_safe(caught.value)


async def test_numeric_comparisons_are_exact(fuzz):
    """The values a NUMERIC(p[, s]) column can hold compare exactly on every backend."""
    async with fuzz() as session, session.begin():
        repo = SampleRepository(session)
        assert {s.n5 for s in await repo.list(filters={"n5__gt": 1, "n5__lt": 3})} == {2}
        assert {s.n52 for s in await repo.list(filters={"n52__eq": "1.50"})} == {Decimal("1.5")}
        assert await repo.count(filters={"n5__lt": 99999}) == 4


async def test_unicode_beyond_the_bmp_in_utf8mb4(fuzz):
    """A 4-byte character is compared exactly where the column can hold it."""
    async with fuzz() as session, session.begin():
        found = await SampleRepository(session).list(filters={"s4__eq": "😀"})
    assert [s.s4 for s in found] == ["😀"]


async def test_ncs_uuid_write(fuzz, backend: backends.Backend):
    """A UUID MariaDB cannot hold is refused on write everywhere (one domain for all)."""
    ncs = uuid.UUID("e8d207f5-9472-bfdc-08c8-0123456789ab")
    async with fuzz() as session, session.begin():
        repo = SampleRepository(session)
        with pytest.raises(InvalidValueError):
            await repo.create({"uid": ncs})
        assert await repo.count() == len(SEED)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"s3": "\ud800"}, id="lone-surrogate"),
        pytest.param({"bi": 2**63}, id="beyond-64-bits"),
        pytest.param({"at": dt.datetime(2024, 5, 1, 7)}, id="naive-datetime"),  # noqa: DTZ001
        pytest.param({"at": "2024-05-01T07:00:00Z"}, id="text-for-a-datetime"),
        pytest.param({"data": {"a": object()}}, id="not-json"),
    ],
)
async def test_values_every_backend_refuses_on_write(fuzz, values):
    """Refused on write with an InvalidValueError everywhere; the transaction goes on."""
    async with fuzz() as session, session.begin():
        repo = SampleRepository(session)
        with pytest.raises(InvalidValueError) as caught:
            await repo.create(values)
        check_safe(caught.value)
        with pytest.raises(InvalidValueError):
            await repo.update((await repo.list(limit=1))[0].id, **values)
        assert await repo.count() == len(SEED)


async def test_naive_datetime_in_a_body_is_a_422(fuzz):
    """A JSON body's naive datetime reaches the repository and is answered 422, not 500."""
    async with _client(build_app(fuzz)) as client:
        response = await client.post("/samples", json={"at": "2024-05-01T07:00:00"})
        assert response.status_code == 422, response.text
        assert response.json().get("error") == "naive_datetime", response.text
        response = await client.post("/samples", json={"at": "2024-05-01T07:00:00Z"})
        assert response.status_code == 201, response.text


async def test_non_finite_floats_on_write(fuzz, backend: backends.Backend):
    """NaN and infinity: refused on write everywhere.

    MariaDB has neither; SQLite stores NaN as NULL.
    """
    async with fuzz() as session, session.begin():
        repo = SampleRepository(session)
        for value in (math.nan, math.inf, -math.inf):
            with pytest.raises(InvalidValueError):
                await repo.create({"dbl": value})
