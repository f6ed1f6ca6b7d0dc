"""The filter and sort language, compiled against dialect objects (no server)."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Integer,
    SmallInteger,
    String,
    Time,
    Uuid,
    func,
    select,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.dialects.mysql.mariadb import MariaDBDialect
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, joinedload, mapped_column, relationship
from sqlalchemy.sql.elements import ColumnElement

from models import Post, Status, User
from sqla_repo.exceptions import ConfigurationError, InvalidFilterError
from sqla_repo.filters import (
    ALIASES,
    ALL_COLUMNS,
    MAX_CONDITIONS,
    MAX_SORT_KEYS,
    MAX_VALUE_LENGTH,
    OPERATORS,
    SortKey,
    compile_filters,
    compile_order_by,
)

UTC = dt.timezone.utc
# psycopg2 renders no bind casts, which keeps the expected SQL readable.
PG, MY, LITE = postgresql.psycopg2.dialect(), mysql.dialect(), sqlite.dialect()
DIALECTS = [
    pytest.param(PG, id="postgresql"),
    pytest.param(postgresql.asyncpg.dialect(), id="postgresql+asyncpg"),
    pytest.param(MY, id="mysql"),
    pytest.param(MariaDBDialect(), id="mariadb"),
    pytest.param(LITE, id="sqlite"),
]


class Color(enum.IntEnum):
    RED = 1
    GREEN = 2


class Other(DeclarativeBase):
    pass


class Gizmo(Other):
    """Column types the shared test models lack."""

    __tablename__ = "gizmos"

    id: Mapped[int] = mapped_column(primary_key=True)
    small: Mapped[int | None] = mapped_column(SmallInteger)
    big: Mapped[int | None] = mapped_column(Integer)
    naive_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=False))
    at_time: Mapped[dt.time | None] = mapped_column(Time)
    day: Mapped[dt.date | None] = mapped_column(Date)
    uuid_text: Mapped[str | None] = mapped_column(Uuid(as_uuid=False))
    kind: Mapped[str | None] = mapped_column(Enum("a", "b", name="kind"))
    color: Mapped[Color | None] = mapped_column(Enum(Color))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    label: Mapped[str] = mapped_column(String(20), default="")
    odd__name: Mapped[int | None] = mapped_column(Integer)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("gizmos.id"))
    children: Mapped[list[Gizmo]] = relationship()

    @hybrid_property
    def has_label(self) -> bool:
        return self.label != ""

    @has_label.inplace.expression
    @classmethod
    def _has_label(cls) -> ColumnElement[bool]:
        return cls.label != ""


def sql(clause: Any, dialect: Dialect = PG) -> str:
    return str(clause.compile(dialect=dialect, compile_kwargs={"render_postcompile": True}))


def params(clause: Any, dialect: Dialect = PG) -> list[Any]:
    return list(clause.compile(dialect=dialect).params.values())


def one(model: type[Any], filters: Any, **kwargs: Any) -> ColumnElement[bool]:
    """Compile one condition; every column is filterable unless *allowed* says otherwise."""
    kwargs.setdefault("allowed", ALL_COLUMNS)
    (condition,) = compile_filters(model, filters, **kwargs)
    return condition


def error(model: type[Any], filters: Any, **kwargs: Any) -> InvalidFilterError:
    kwargs.setdefault("allowed", ALL_COLUMNS)
    with pytest.raises(InvalidFilterError) as info:
        compile_filters(model, filters, **kwargs)
    assert info.value.detail["reason"]
    assert "SELECT" not in str(info.value)
    return info.value


class TestOperators:
    def test_operator_set(self):
        """The operator names and aliases are the documented ones."""
        assert {
            "eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "like", "ilike",
            "iexact", "contains", "icontains", "startswith", "istartswith", "endswith",
            "iendswith", "is_null", "between",
        } == OPERATORS  # fmt: skip
        assert dict(ALIASES) == {"lte": "le", "gte": "ge"}

    @pytest.mark.parametrize(
        ("key", "value", "expected", "bound"),
        [
            ("age", "5", "users.age = %(age_1)s", [5]),
            ("age__eq", 5, "users.age = %(age_1)s", [5]),
            ("age__eq", None, "users.age IS NULL", []),
            ("age__ne", None, "users.age IS NOT NULL", []),
            ("age__lt", "5", "users.age < %(age_1)s", [5]),
            ("age__le", "5", "users.age <= %(age_1)s", [5]),
            ("age__lte", "5", "users.age <= %(age_1)s", [5]),
            ("age__gt", "5", "users.age > %(age_1)s", [5]),
            ("age__ge", "5", "users.age >= %(age_1)s", [5]),
            ("age__gte", "5", "users.age >= %(age_1)s", [5]),
            ("age__between", [1, "9"], "users.age BETWEEN %(age_1)s AND %(age_2)s", [1, 9]),
            ("age__between", "1,9", "users.age BETWEEN %(age_1)s AND %(age_2)s", [1, 9]),
            ("age__is_null", "true", "users.age IS NULL", []),
            ("age__is_null", False, "users.age IS NOT NULL", []),
            ("name__eq", "", "users.name = %(name_1)s", [""]),
        ],
    )
    def test_scalar_operators(self, key, value, expected, bound):
        """Each comparison compiles to its SQL operator with coerced, bound values."""
        condition = one(User, {key: value})
        assert sql(condition) == expected
        assert params(condition) == bound

    def test_ne_includes_null_on_nullable_columns(self):
        """The ne operator matches NULL too ("NULL is not 5"); NOT NULL columns need no OR."""
        assert sql(one(User, {"age__ne": 5})) == "users.age != %(age_1)s OR users.age IS NULL"
        assert sql(one(User, {"name__ne": "x"})) == "users.name != %(name_1)s"

    def test_in_and_not_in(self):
        """in/not_in take lists or comma-separated strings; not_in keeps NULLs."""
        condition = one(User, {"status__in": "active,DISABLED"})
        assert sql(condition) == "users.status IN (%(status_1_1)s, %(status_1_2)s)"
        assert condition.compile(dialect=PG).params["status_1"] == [
            Status.ACTIVE,
            Status.DISABLED,
        ]
        assert sql(one(User, {"age__not_in": [1, 2]})) == (
            "(users.age NOT IN (%(age_1_1)s, %(age_1_2)s)) OR users.age IS NULL"
        )
        assert sql(one(User, {"name__not_in": ("a",)})) == "(users.name NOT IN (%(name_1_1)s))"

    def test_empty_lists(self):
        """An empty in matches nothing; an empty not_in matches everything."""
        assert sql(one(User, {"age__in": []})) == "false"
        assert sql(one(User, {"age__in": ""})) == "false"
        assert sql(one(User, {"age__not_in": []})) == "true"

    def test_comma_strings_keep_spaces_for_text(self):
        """Text items of a comma-separated string are taken as they are."""
        condition = one(User, {"name__in": "a, b"})
        assert condition.compile(dialect=PG).params["name_1"] == ["a", " b"]
        condition = one(User, {"age__in": "1, 2"})
        assert condition.compile(dialect=PG).params["age_1"] == [1, 2]

    def test_triples(self):
        """A list of (field, operator, value) triples is the same language."""
        conditions = compile_filters(
            User, [("age", "gte", "3"), ["name", "eq", "bob"]], allowed=ALL_COLUMNS
        )
        assert [sql(c) for c in conditions] == ["users.age >= %(age_1)s", "users.name = %(name_1)s"]

    def test_none_and_empty(self):
        """No filters compile to no conditions, even without a whitelist (nothing is named)."""
        assert compile_filters(User, None) == []
        assert compile_filters(User, {}) == []
        assert compile_filters(User, []) == []


class TestLike:
    @pytest.mark.parametrize(
        ("op", "value", "pattern"),
        [
            ("contains", "50%", "%50\\%%"),
            ("contains", "a_b", "%a\\_b%"),
            ("contains", "back\\slash", "%back\\\\slash%"),
            ("startswith", "%x", "\\%x%"),
            ("endswith", "x_", "%x\\_"),
            ("contains", "", "%%"),
            ("contains", "Ünïcödé ✓", "%Ünïcödé ✓%"),
            ("like", "a%b_c", "a%b_c"),
            ("like", "50\\%", "50\\%"),
            ("ilike", "%@X.org", "%@X.org"),
        ],
    )
    def test_patterns(self, op, value, pattern):
        """contains/startswith/endswith escape wildcards; like/ilike keep the pattern."""
        condition = one(User, {f"name__{op}": value})
        assert params(condition)[0] == pattern

    def test_postgresql(self):
        """PostgreSQL: LIKE is case-sensitive, ILIKE is not; the escape is a parameter."""
        assert sql(one(User, {"name__like": "a%"})) == (
            "users.name LIKE %(param_1)s ESCAPE %(param_2)s"
        )
        assert sql(one(User, {"name__ilike": "a%"})) == (
            "users.name ILIKE %(param_1)s ESCAPE %(param_2)s"
        )
        assert params(one(User, {"name__like": "a%"}))[1] == "\\"

    @pytest.mark.parametrize("dialect", [MY, MariaDBDialect()], ids=["mysql", "mariadb"])
    def test_mysql(self, dialect):
        """MySQL/MariaDB compare under a binary collation, so case and accents count."""
        assert sql(one(User, {"name__contains": "a"}), dialect) == (
            "CONVERT(users.name USING utf8mb4) COLLATE utf8mb4_bin LIKE %s ESCAPE %s"
        )
        assert sql(one(User, {"name__ilike": "a"}), dialect) == (
            "LOWER(CONVERT(users.name USING utf8mb4)) COLLATE utf8mb4_bin LIKE LOWER(%s) ESCAPE %s"
        )

    @pytest.mark.parametrize(
        ("op", "value", "glob"),
        [
            ("like", "a%b_c", "a*b?c"),
            ("like", "a\\%b\\_\\\\", "a%b_\\"),
            ("like", "*?[]", "[*][?][[]]"),
            ("contains", "50%", "*50%*"),
            ("contains", "[x]*", "*[[]x][*]*"),
            ("startswith", "a?", "a[?]*"),
            ("endswith", "é", "*é"),
        ],
    )
    def test_sqlite_glob(self, op, value, glob):
        """SQLite: a case-sensitive LIKE becomes the equivalent GLOB pattern."""
        condition = one(User, {f"name__{op}": value})
        assert sql(condition, LITE) == "users.name GLOB ?"
        assert params(condition, LITE) == [glob]

    def test_sqlite_ilike(self):
        """SQLite: ilike compares lower() of both sides."""
        assert sql(one(User, {"name__ilike": "A"}), LITE) == (
            "lower(users.name) LIKE lower(?) ESCAPE ?"
        )

    def test_embedded_in_boolean_operators(self):
        """The comparison stays parenthesised under NOT, AND and OR."""
        condition = one(User, {"name__like": "a"})
        assert sql(~condition) == "NOT (users.name LIKE %(param_1)s ESCAPE %(param_2)s)"
        assert sql(select(User.id).where(condition, User.age > 1)).endswith(
            "WHERE (users.name LIKE %(param_1)s ESCAPE %(param_2)s) AND users.age > %(age_1)s"
        )

    def test_statement_cache_reuses_the_sql(self):
        """Different patterns share one cache key (values are parameters)."""
        first = select(User.id).where(one(User, {"name__like": "a%"}))
        second = select(User.id).where(one(User, {"name__like": "zz"}))
        third = select(User.id).where(one(User, {"name__ilike": "a%"}))
        assert first._generate_cache_key() == second._generate_cache_key()
        assert first._generate_cache_key() != third._generate_cache_key()


class TestFields:
    def test_field_names_with_underscores(self):
        """Keys split at the last double underscore that names an operator."""
        assert sql(one(User, {"is_active__eq": "true"})) == "users.is_active = true"
        assert sql(one(User, {"created_at__gte": "2024-01-01"})).startswith("users.created_at >=")

    def test_double_underscore_field(self):
        """A field whose name contains a double underscore still parses."""
        assert sql(one(Gizmo, {"odd__name": 1})) == "gizmos.odd__name = %(odd__name_1)s"
        assert sql(one(Gizmo, {"odd__name__gt": 1})) == "gizmos.odd__name > %(odd__name_1)s"
        err = error(Gizmo, {"odd__nope": 1})
        assert (err.detail["field"], err.detail["reason"]) == ("odd__nope", "unknown_field")

    def test_relationship_many_to_one(self):
        """A many-to-one path compiles to EXISTS via has()."""
        condition = one(Post, {"author.email__endswith": "@x.org"}, allowed={"author.email"})
        # On SQLAlchemy 2.0 the soft-delete criterion is added inside the EXISTS too.
        assert (
            "WHERE EXISTS (SELECT 1 \nFROM users \nWHERE users.id = posts.author_id AND "
            "(users.email LIKE %(param_1)s ESCAPE %(param_2)s)"
        ) in sql(select(Post.id).where(condition))

    def test_relationship_collection(self):
        """A collection path compiles to EXISTS via any(); rows cannot repeat."""
        condition = one(User, {"posts.title": "hi"}, allowed={"posts.title"})
        assert "EXISTS (SELECT 1 \nFROM posts" in sql(condition)
        nested = one(Post, {"author.posts.title": "x"}, allowed={"author.posts.title"})
        assert sql(nested).count("EXISTS") == 2

    def test_relationship_paths_need_the_whitelist(self):
        """Paths are refused unless listed, and the default whitelist lists none."""
        err = error(Post, {"author.email": "a"})
        assert err.detail == {
            "field": "author.email",
            "operator": "eq",
            "reason": "unknown_field",
            "model": "Post",
        }

    def test_hybrid(self):
        """A whitelisted hybrid property is filterable."""
        assert sql(one(Gizmo, {"has_label": "no"}, allowed={"has_label"})) == (
            "(gizmos.label != %(label_1)s) = false"
        )

    @pytest.mark.parametrize("name", ["nope", "posts", "posts.nope", "author.email", "name.x"])
    def test_bad_whitelist_is_a_configuration_error(self, name):
        """Whitelisting something the model lacks is the developer's error."""
        with pytest.raises(ConfigurationError):
            compile_filters(User, {name: "x"}, allowed={name})

    def test_whitelist_as_string_is_refused(self):
        """A bare string is no whitelist (it would allow its substrings)."""
        with pytest.raises(ConfigurationError):
            compile_filters(User, {"name": "x"}, allowed="name")

    def test_unmapped_model(self):
        """An unmapped class is a configuration error."""
        with pytest.raises(ConfigurationError):
            compile_filters(object, {"x": 1}, allowed=ALL_COLUMNS)


class TestCoercion:
    @pytest.mark.parametrize(
        ("key", "value", "expected"),
        [
            ("age", "-7", -7),
            ("age", " +7 ", 7),
            ("age", 2**31 - 1, 2**31 - 1),
            ("id", str(2**63 - 1), 2**63 - 1),
            ("score", "1.5", 1.5),
            ("score", "1e3", 1000.0),
            ("score", 2, 2.0),
            ("score", Decimal("0.25"), 0.25),
            ("balance", "12.50", Decimal("12.50")),
            ("balance", "-9999999999.99", Decimal("-9999999999.99")),
            ("balance", "1.500", Decimal("1.500")),
            ("score", "1e300", 1e300),
            ("score", "1e-400", 0.0),
            ("balance", 3, Decimal(3)),
            ("balance", 0.1, Decimal("0.1")),
            ("balance", "0e-500", Decimal(0)),
            ("is_active", "TRUE", True),
            ("is_active", "no", False),
            ("is_active", "1", True),
            ("is_active", 0, False),
            ("is_active", True, True),
            ("is_active", "Off", False),
            ("birthday", "2024-02-29", dt.date(2024, 2, 29)),
            ("birthday", dt.date(2000, 1, 1), dt.date(2000, 1, 1)),
            ("status", "active", Status.ACTIVE),
            ("status", "DISABLED", Status.DISABLED),
            ("status", Status.ACTIVE, Status.ACTIVE),
            (
                "external_id",
                "12345678-1234-5678-1234-567812345678",
                uuid.UUID("12345678-1234-5678-1234-567812345678"),
            ),
            (
                "external_id",
                "12345678123456781234567812345678",
                uuid.UUID(int=0x12345678123456781234567812345678),
            ),
            ("name", "Ünïcödé ✓ 😀", "Ünïcödé ✓ 😀"),
            ("name", "x" * MAX_VALUE_LENGTH, "x" * MAX_VALUE_LENGTH),
            ("name", "id; DROP TABLE users", "id; DROP TABLE users"),
        ],
    )
    def test_values(self, key, value, expected):
        """Values are coerced to the column's Python type."""
        (bound,) = params(one(User, {f"{key}__in": [value]}))[0]
        assert bound == expected
        assert type(bound) is type(expected)

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("2024-05-01T12:00:00Z", dt.datetime(2024, 5, 1, 12, tzinfo=UTC)),
            ("2024-05-01T12:00:00z", dt.datetime(2024, 5, 1, 12, tzinfo=UTC)),
            ("2024-05-01T14:00:00+02:00", dt.datetime(2024, 5, 1, 12, tzinfo=UTC)),
            ("2024-05-01T12:00:00.123456", dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)),
            ("2024-05-01", dt.datetime(2024, 5, 1, tzinfo=UTC)),
            (dt.date(2024, 5, 1), dt.datetime(2024, 5, 1, tzinfo=UTC)),
            (dt.datetime(2024, 5, 1, 12), dt.datetime(2024, 5, 1, 12, tzinfo=UTC)),  # noqa: DTZ001
            (
                dt.datetime(2024, 5, 1, 7, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
                dt.datetime(2024, 5, 1, 12, tzinfo=UTC),
            ),
        ],
    )
    def test_datetimes(self, value, expected):
        """Datetimes are aware UTC; a naive value is read as UTC."""
        (bound,) = params(one(User, {"created_at__gte": value}))
        assert bound == expected
        assert bound.tzinfo is UTC

    def test_naive_column_gets_naive_utc(self):
        """A column without time zone receives naive UTC wall time."""
        (bound,) = params(one(Gizmo, {"naive_at": "2024-05-01T14:00:00+02:00"}))
        assert bound == dt.datetime(2024, 5, 1, 12)  # noqa: DTZ001 - naive on purpose
        assert bound.tzinfo is None

    def test_other_types(self):
        """Times, string enums, int enums and text UUIDs are coerced too."""
        assert params(one(Gizmo, {"at_time": "10:30"})) == [dt.time(10, 30)]
        assert params(one(Gizmo, {"kind": "a"})) == ["a"]
        assert params(one(Gizmo, {"color": "2"})) == [Color.GREEN]
        assert params(one(Gizmo, {"color": 1})) == [Color.RED]
        assert params(one(Gizmo, {"color": "RED"})) == [Color.RED]
        value = "{12345678-1234-5678-1234-567812345678}"
        assert params(one(Gizmo, {"uuid_text": value})) == ["12345678-1234-5678-1234-567812345678"]
        assert params(one(Gizmo, {"small": "-32768"})) == [-32768]

    @pytest.mark.parametrize(
        ("model", "key", "value", "reason"),
        [
            (User, "age", "1.5", "invalid_value"),
            (User, "age", 1.0, "invalid_value"),
            (User, "age", True, "invalid_value"),
            (User, "age", "1_000", "invalid_value"),
            (User, "age", "١٢", "invalid_value"),
            (User, "age", "", "invalid_value"),
            (User, "age", str(2**31), "out_of_range"),
            (User, "id", 2**63, "out_of_range"),
            (Gizmo, "small", 40000, "out_of_range"),
            (User, "age", "9" * 200, "invalid_value"),
            (User, "score", "nan", "invalid_value"),
            (User, "score", "inf", "invalid_value"),
            (User, "score", float("inf"), "invalid_value"),
            (User, "score", "1e999", "out_of_range"),
            (User, "score", False, "invalid_value"),
            (User, "balance", "1e50", "out_of_range"),
            (User, "balance", "1.005", "invalid_value"),
            (User, "balance", "10000000000", "out_of_range"),
            (User, "balance", "9999999999.995", "invalid_value"),
            (User, "balance", "1" * 39, "out_of_range"),
            (User, "balance", Decimal("NaN"), "invalid_value"),
            (User, "balance", "12,5", "invalid_value"),
            (User, "is_active", "maybe", "invalid_value"),
            (User, "is_active", 2, "invalid_value"),
            (User, "birthday", "2024-02-30", "invalid_value"),
            (User, "birthday", dt.datetime(2024, 1, 1, tzinfo=UTC), "invalid_value"),
            (User, "birthday", 20240101, "invalid_value"),
            (User, "created_at", "yesterday", "invalid_value"),
            (User, "created_at", 1700000000, "invalid_value"),
            (User, "created_at", "9999-12-31T23:00:00-05:00", "out_of_range"),
            (User, "created_at", "0001-01-01T00:00:00+05:00", "out_of_range"),
            (User, "status", "ACTIVEX", "invalid_value"),
            (User, "status", 1, "invalid_value"),
            (User, "external_id", "not-a-uuid", "invalid_value"),
            (User, "external_id", 5, "invalid_value"),
            (User, "name", 5, "invalid_value"),
            (User, "name", b"bytes", "invalid_value"),
            (User, "name", "nul\x00byte", "invalid_value"),
            (User, "name", "\ud800", "invalid_value"),
            (User, "name", "x" * (MAX_VALUE_LENGTH + 1), "value_too_long"),
            (Gizmo, "kind", "c", "invalid_value"),
            (Gizmo, "color", "BLUE", "invalid_value"),
            (Gizmo, "at_time", "10:30+02:00", "invalid_value"),
            (Gizmo, "at_time", "noon", "invalid_value"),
            (Gizmo, "uuid_text", "xyz", "invalid_value"),
            (Gizmo, "data", "{}", "unsupported_type"),
        ],
    )
    def test_rejected_values(self, model, key, value, reason):
        """Values that do not fit the column are refused, naming the field."""
        err = error(model, {key: value})
        assert err.detail["field"] == key
        assert err.detail["operator"] == "eq"
        assert err.detail["reason"] == reason
        assert len(str(err)) < 200


class TestErrors:
    @pytest.mark.parametrize(
        ("filters", "field", "operator", "reason"),
        [
            ({"nope": 1}, "nope", "eq", "unknown_field"),
            ({"": 1}, "", "eq", "invalid_field"),
            ({"__eq": 1}, "", "eq", "invalid_field"),
            ({"age__nope": 1}, "age", "nope", "unknown_operator"),
            ({"age__": 1}, "age", "", "unknown_operator"),
            ({"age__in": 1}, "age", "in", "expected_list"),
            ({"age__in": {"a": 1}}, "age", "in", "expected_list"),
            ({"age__in": [[1]]}, "age", "in", "expected_scalar"),
            ({"age__in": [None]}, "age", "in", "null_not_allowed"),
            ({"age__in": list(range(501))}, "age", "in", "too_many_values"),
            ({"age__between": [1]}, "age", "between", "wrong_number_of_values"),
            ({"age__between": "1,2,3"}, "age", "between", "wrong_number_of_values"),
            ({"age__between": [1, None]}, "age", "between", "null_not_allowed"),
            ({"age__eq": [1, 2]}, "age", "eq", "expected_scalar"),
            ({"age": {"nested": 1}}, "age", "eq", "expected_scalar"),
            ({"age__gt": None}, "age", "gt", "null_not_allowed"),
            ({"age__is_null": "perhaps"}, "age", "is_null", "invalid_value"),
            ({"age__is_null": None}, "age", "is_null", "invalid_value"),
            ({"age__is_null": [True]}, "age", "is_null", "invalid_value"),
            ({"age__contains": "1"}, "age", "contains", "unsupported_operator"),
            ({"status__like": "a%"}, "status", "like", "unsupported_operator"),
            ({"is_active__lt": "1"}, "is_active", "lt", "unsupported_operator"),
            ({"is_active__between": "0,1"}, "is_active", "between", "unsupported_operator"),
            ({"name__like": "abc\\"}, "name", "like", "invalid_pattern"),
            ({"name__ilike": 5}, "name", "ilike", "invalid_value"),
            ({"name__in": "x" * (MAX_VALUE_LENGTH + 1)}, "name", "in", "value_too_long"),
            ({"id; DROP TABLE users": 1}, "id; DROP TABLE users", "eq", "unknown_field"),
            ({"name) OR 1=1 --": 1}, "name) OR 1=1 --", "eq", "unknown_field"),
        ],
    )
    def test_mapping_errors(self, filters, field, operator, reason):
        """Each bad input names the field, the operator and the reason."""
        err = error(User, filters)
        assert (err.detail["field"], err.detail["operator"], err.detail["reason"]) == (
            field,
            operator,
            reason,
        )
        assert err.model is User

    @pytest.mark.parametrize(
        ("filters", "reason"),
        [
            ("name=bob", "invalid_filters"),
            (42, "invalid_filters"),
            ({1: "x"}, "invalid_field"),
            ([("name", "eq")], "invalid_filters"),
            (["name"], "invalid_filters"),
            ([(1, "eq", 1)], "invalid_field"),
            ([("name", 1, 1)], "unknown_operator"),
            ([("name", "nope", 1)], "unknown_operator"),
            ([("name__eq", "eq", 1)], "unknown_field"),
            ({f"f{i}": 1 for i in range(MAX_CONDITIONS + 1)}, "too_many_conditions"),
            ([("name", "eq", "x")] * (MAX_CONDITIONS + 1), "too_many_conditions"),
        ],
    )
    def test_shape_errors(self, filters, reason):
        """Malformed filter containers are refused."""
        assert error(User, filters).detail["reason"] == reason

    def test_max_in_is_configurable(self):
        """max_in caps in and not_in."""
        assert error(User, {"age__not_in": [1, 2, 3]}, max_in=2).detail["reason"] == (
            "too_many_values"
        )
        assert compile_filters(User, {"age__in": [1, 2, 3]}, allowed=ALL_COLUMNS, max_in=3)

    def test_long_names_are_not_echoed_whole(self):
        """Huge field names are truncated in the message and detail."""
        err = error(User, {"x" * 5000: 1})
        assert len(err.detail["field"]) == 64
        assert len(str(err)) < 120

    def test_values_are_never_echoed(self):
        """The rejected value does not appear in the message."""
        err = error(User, {"age": "secret-value-123"})
        assert "secret-value-123" not in str(err)
        assert "secret-value-123" not in repr(err.detail)

    def test_custom_whitelist(self):
        """Only the whitelisted fields are accepted."""
        assert compile_filters(User, {"name": "x"}, allowed=["name"])
        assert error(User, {"age": 1}, allowed=["name"]).detail["reason"] == "unknown_field"


class TestOrderBy:
    def test_directions_and_tiebreaker(self):
        """A leading '-' means descending; the primary key is appended ascending."""
        keys = compile_order_by(User, "-age, name", allowed=ALL_COLUMNS)
        assert [(k.name, k.descending, k.nullable) for k in keys] == [
            ("age", True, True),
            ("name", False, False),
            ("id", False, False),
        ]
        assert [k.attribute for k in keys] == ["age", "name", "id"]

    def test_list_and_plus(self):
        """A list of names works, '+' is ascending."""
        keys = compile_order_by(User, ["+email", "-id"], allowed=ALL_COLUMNS)
        assert [(k.name, k.descending) for k in keys] == [("email", False), ("id", True)]

    @pytest.mark.parametrize("order_by", [None, "", "  ", []])
    def test_default(self, order_by):
        """An empty order uses the default, then the primary key."""
        keys = compile_order_by(User, order_by, default=["-created_at"])
        assert [(k.name, k.descending) for k in keys] == [("created_at", True), ("id", False)]
        assert [k.name for k in compile_order_by(User, order_by)] == ["id"]

    def test_default_skips_the_whitelist(self):
        """The default is trusted; a bad default is a configuration error."""
        keys = compile_order_by(User, None, allowed=["name"], default="-age")
        assert keys[0].name == "age"
        with pytest.raises(ConfigurationError):
            compile_order_by(User, None, default=["nope"])

    def test_expressions(self):
        """Expressions from code are accepted, directions and attributes recovered."""
        keys = compile_order_by(User, [User.name.desc(), User.age, func.lower(User.email)])
        assert [(k.name, k.descending, k.attribute) for k in keys] == [
            ("name", True, "name"),
            ("age", False, "age"),
            ("lower(users.email)", False, None),
            ("id", False, "id"),
        ]
        other = compile_order_by(User, [Post.title])[0]
        assert other.attribute is None

    def test_hybrid_sort(self):
        """Whitelisted hybrids are sortable; ALL_COLUMNS does not cover hybrids."""
        assert compile_order_by(Gizmo, "has_label", allowed={"has_label"})[0].name == "has_label"
        with pytest.raises(InvalidFilterError):
            compile_order_by(Gizmo, "has_label", allowed=ALL_COLUMNS)

    @pytest.mark.parametrize(
        ("order_by", "field", "reason"),
        [
            ("nope", "nope", "not_sortable"),
            ("-", "", "invalid_field"),
            ("name,,age", "", "invalid_field"),
            ("name,-name", "name", "duplicate_sort_field"),
            (["id", User.id], "id", "duplicate_sort_field"),
            ("posts.title", "posts.title", "not_sortable"),
            ("name; DROP TABLE users", "name; DROP TABLE users", "not_sortable"),
            ([1], "int", "invalid_field"),
            (",".join(["name"] * (MAX_SORT_KEYS + 1)), None, "too_many_conditions"),
            (5, None, "invalid_filters"),
            ("n" * (MAX_VALUE_LENGTH + 1), None, "value_too_long"),
        ],
    )
    def test_errors(self, order_by, field, reason):
        """Unknown, empty, repeated or excess sort fields are refused."""
        with pytest.raises(InvalidFilterError) as info:
            compile_order_by(User, order_by, allowed=ALL_COLUMNS)
        assert info.value.detail["field"] == field
        assert info.value.detail["reason"] == reason

    def test_not_whitelisted(self):
        """A column outside the sort whitelist is refused."""
        with pytest.raises(InvalidFilterError) as info:
            compile_order_by(User, "email", allowed=["name"])
        assert info.value.detail["reason"] == "not_sortable"

    def test_relationship_path_cannot_be_sorted(self):
        """Sorting on a whitelisted relationship path is a configuration error."""
        with pytest.raises(ConfigurationError):
            compile_order_by(Post, "author.email", allowed=["author.email"])

    @pytest.mark.parametrize(
        ("dialect", "expected"),
        [
            (PG, "users.age DESC NULLS LAST, users.name ASC NULLS FIRST, users.id ASC"),
            (MY, "users.age DESC, users.name ASC, users.id ASC"),
            (MariaDBDialect(), "users.age DESC, users.name ASC, users.id ASC"),
            (LITE, "users.age DESC, users.name ASC, users.id ASC"),
        ],
    )
    def test_nulls_smallest(self, dialect, expected):
        """NULL sorts smallest everywhere; NULLS FIRST/LAST only where needed."""
        keys = compile_order_by(User, ["-age", func.coalesce(User.name, "")], allowed=ALL_COLUMNS)
        keys[1] = SortKey(
            User.name.__clause_element__(), descending=False, name="name"
        )  # nullable=True
        stmt = select(User.id).order_by(*[k.clause() for k in keys])
        assert sql(stmt, dialect).endswith("ORDER BY " + expected)

    def test_reversed(self):
        """reversed() flips the direction and the NULL placement with it."""
        key = compile_order_by(User, "age", allowed=ALL_COLUMNS)[0]
        assert not key.descending
        assert key.reversed().descending
        assert sql(key.reversed().clause()) == "users.age DESC NULLS LAST"

    @pytest.mark.parametrize("dialect", DIALECTS)
    def test_eager_load_with_limit(self, dialect):
        """The ORM wraps the page in a subquery for collection eager loads; still valid."""
        keys = compile_order_by(Post, "-author_id", allowed=ALL_COLUMNS)
        stmt = (
            select(Post).options(joinedload(Post.tags)).order_by(*[k.clause() for k in keys])
        ).limit(3)
        text = sql(stmt, dialect)
        assert text.count("ORDER BY") == 2
        assert ("NULLS LAST" in text) is (dialect.name == "postgresql")


INJECTION = [
    "id; DROP TABLE users",
    "name) OR 1=1 --",
    "' OR '1'='1",
    "name__eq",
    "author.email",
    "__class__",
    "posts",
    "",
]
names = st.one_of(st.sampled_from([*INJECTION, "name", "age", "status", "created_at"]), st.text())
operators = st.one_of(st.sampled_from([*OPERATORS, "lte", "gte", "nope", ""]), st.text())
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.decimals(),
    st.text(),
    st.sampled_from(INJECTION),
    st.binary(),
    st.dates(),
    st.datetimes(),
    st.uuids(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=5), inner, max_size=3),
    ),
    max_leaves=8,
)
keys = st.one_of(
    st.builds(lambda n, o: f"{n}__{o}", names, operators), names, st.integers(), st.none()
)
filter_inputs = st.one_of(
    st.dictionaries(keys, values, max_size=5),
    st.lists(st.tuples(names, operators, values), max_size=5),
    st.lists(values, max_size=3),
    values,
)


class TestProperties:
    @settings(max_examples=400, deadline=None)
    @given(filters=filter_inputs)
    def test_junk_raises_only_invalid_filter_error(self, filters):
        """Any input either compiles or raises InvalidFilterError, never anything else."""
        try:
            conditions = compile_filters(User, filters, allowed=ALL_COLUMNS)
        except InvalidFilterError as exc:
            conditions, detail = [], exc.detail
        else:
            detail = {"field": None, "reason": None}
        assert set(detail) >= {"field", "reason"}
        for dialect in (PG, MY, LITE):
            for condition in conditions:
                sql(condition, dialect)

    @settings(max_examples=200, deadline=None)
    @given(order_by=st.one_of(st.text(), st.lists(st.one_of(names, st.integers()), max_size=4)))
    def test_junk_sort_raises_only_invalid_filter_error(self, order_by):
        """Any sort input either compiles or raises InvalidFilterError."""
        try:
            keys = compile_order_by(User, order_by, allowed=ALL_COLUMNS)
        except InvalidFilterError:
            return
        assert keys[-1].name == "id"


class TestCaseInsensitiveOperators:
    @pytest.mark.parametrize(
        ("op", "value", "pattern"),
        [
            ("iexact", "Bob", "Bob"),
            ("iexact", "50%_x", "50\\%\\_x"),
            ("icontains", "a_b", "%a\\_b%"),
            ("istartswith", "%X", "\\%X%"),
            ("iendswith", "back\\slash", "%back\\\\slash"),
        ],
    )
    def test_patterns(self, op, value, pattern):
        """The i-operators escape % and _ like contains/startswith/endswith."""
        assert params(one(User, {f"name__{op}": value}))[0] == pattern

    @pytest.mark.parametrize(
        ("dialect", "expected"),
        [
            (PG, "users.name ILIKE %(param_1)s ESCAPE %(param_2)s"),
            (LITE, "lower(users.name) LIKE lower(?) ESCAPE ?"),
            (
                MY,
                (
                    "LOWER(CONVERT(users.name USING utf8mb4)) COLLATE utf8mb4_bin "
                    "LIKE LOWER(%s) ESCAPE %s"
                ),
            ),
        ],
    )
    def test_fold_like_ilike(self, dialect, expected):
        """Each i-operator compiles like ilike on every backend."""
        for op in ("iexact", "icontains", "istartswith", "iendswith"):
            assert sql(one(User, {f"name__{op}": "x"}), dialect) == expected

    def test_text_only(self):
        """Like the other pattern operators, they apply to text fields only."""
        assert error(User, {"age__iexact": "1"}).detail["reason"] == "unsupported_operator"


class TestDenyByDefault:
    @pytest.mark.parametrize(
        "filters",
        [{"name": "x"}, [("name", "eq", "x")], {"password_hash__startswith": "$2b"}, "junk"],
    )
    def test_filters_without_whitelist(self, filters):
        """With no whitelist, naming any field is a configuration error saying what to set."""
        with pytest.raises(ConfigurationError) as info:
            compile_filters(User, filters)
        assert "allowed=" in str(info.value)
        assert "ALL_COLUMNS" in str(info.value)

    @pytest.mark.parametrize("order_by", ["name", "-age", ["name"], [User.name, "-age"]])
    def test_sort_names_without_whitelist(self, order_by):
        """With no whitelist, a sort field name is a configuration error."""
        with pytest.raises(ConfigurationError) as info:
            compile_order_by(User, order_by)
        assert "ALL_COLUMNS" in str(info.value)

    def test_expressions_and_default_need_no_whitelist(self):
        """Trusted expressions and the default order work without a whitelist."""
        keys = compile_order_by(User, [User.email.desc()])
        assert [k.name for k in keys] == ["email", "id"]
        keys = compile_order_by(User, "  ", default="-age")
        assert [k.name for k in keys] == ["age", "id"]

    def test_all_columns(self):
        """ALL_COLUMNS allows every column attribute with every operator, and no path."""
        assert one(User, {"email__icontains": "x"}, allowed=ALL_COLUMNS) is not None
        err = error(Post, {"author.email": "x"}, allowed=ALL_COLUMNS)
        assert err.detail["reason"] == "unknown_field"
        err = error(Gizmo, {"has_label": "true"}, allowed=ALL_COLUMNS)
        assert err.detail["reason"] == "unknown_field"
        keys = compile_order_by(User, "-email", allowed=ALL_COLUMNS)
        assert keys[0].name == "email"

    def test_hidden_and_missing_fields_answer_alike(self):
        """A column left out of the whitelist is refused exactly like one that does not exist."""
        hidden = error(User, {"email__startswith": "a"}, allowed=["name"])
        missing = error(User, {"nosuch__startswith": "a"}, allowed=["name"])
        assert str(hidden).replace("email", "X") == str(missing).replace("nosuch", "X")
        assert hidden.detail["reason"] == missing.detail["reason"] == "unknown_field"
        with pytest.raises(InvalidFilterError) as hidden_sort:
            compile_order_by(User, "email", allowed=["name"])
        with pytest.raises(InvalidFilterError) as missing_sort:
            compile_order_by(User, "nosuch", allowed=["name"])
        assert hidden_sort.value.detail["reason"] == missing_sort.value.detail["reason"]


class TestPerFieldOperators:
    ALLOWED: ClassVar[dict[str, tuple[str, ...]]] = {
        "email": ("eq", "iexact"),
        "created_at": ("gte", "le", "between"),
        "name": OPERATORS,
    }

    def test_allowed_operators(self):
        """Listed operators compile; aliases in the mapping and in the input both work."""
        assert one(User, {"email": "a@x.org"}, allowed=self.ALLOWED) is not None
        assert one(User, {"email__iexact": "A@x.org"}, allowed=self.ALLOWED) is not None
        assert one(User, {"created_at__ge": "2024-01-01"}, allowed=self.ALLOWED) is not None
        assert one(User, {"created_at__lte": "2024-01-01"}, allowed=self.ALLOWED) is not None
        assert one(User, {"name__not_in": "a,b"}, allowed=self.ALLOWED) is not None

    @pytest.mark.parametrize(
        ("filters", "field", "operator"),
        [
            ({"email__startswith": "a"}, "email", "startswith"),
            ({"email__ne": "a"}, "email", "ne"),
            ({"created_at": "2024-01-01"}, "created_at", "eq"),
            ({"created_at__gt": "2024-01-01"}, "created_at", "gt"),
        ],
    )
    def test_other_operators_are_refused(self, filters, field, operator):
        """An operator the field does not list is refused, naming field and operator."""
        err = error(User, filters, allowed=self.ALLOWED)
        assert (err.detail["field"], err.detail["operator"], err.detail["reason"]) == (
            field,
            operator,
            "operator_not_allowed",
        )
        assert field in str(err)
        assert operator in str(err)

    def test_relationship_path(self):
        """A relationship path takes an operator list like any field."""
        allowed = {"author.email": ("eq",)}
        assert "EXISTS" in sql(one(Post, {"author.email": "a@x.org"}, allowed=allowed))
        err = error(Post, {"author.email__endswith": "x.org"}, allowed=allowed)
        assert err.detail["reason"] == "operator_not_allowed"

    def test_unknown_field_comes_before_operator(self):
        """A field outside the mapping is unknown whatever the operator."""
        err = error(User, {"age__eq": 1}, allowed=self.ALLOWED)
        assert err.detail["reason"] == "unknown_field"

    @pytest.mark.parametrize(
        "allowed",
        [
            {"email": ("eq", "nope")},
            {"email": "eq"},
            {"email": ()},
            {"email": ALL_COLUMNS},
            {"email": None},
            {"": ("eq",)},
            ["email", 3],
            42,
        ],
    )
    def test_malformed_mapping_is_a_configuration_error(self, allowed):
        """Unknown operator names, a bare string or an empty list are the developer's error."""
        with pytest.raises(ConfigurationError):
            compile_filters(User, {"email": "x"}, allowed=allowed)


field_names = st.sampled_from(["name", "email", "age", "status", "created_at", "username"])
known_ops = st.sampled_from(sorted(OPERATORS | set(ALIASES)))
whitelists = st.one_of(
    st.lists(field_names, max_size=4, unique=True),
    st.dictionaries(field_names, st.lists(known_ops, min_size=1, max_size=5), max_size=4),
)
filter_pairs = st.lists(
    st.tuples(st.one_of(field_names, st.sampled_from(["password_hash", "id"])), known_ops),
    min_size=1,
    max_size=4,
)


def _allows(allowed: Any, name: str, op: str) -> bool:
    if name not in allowed:
        return False
    if isinstance(allowed, dict):
        return ALIASES.get(op, op) in {ALIASES.get(o, o) for o in allowed[name]}
    return True


class TestWhitelistProperty:
    @settings(max_examples=300, deadline=None)
    @given(allowed=whitelists, pairs=filter_pairs, value=st.sampled_from(["1", "x", "true", ""]))
    def test_only_whitelisted_pairs_are_accepted(self, allowed, pairs, value):
        """Every compiled condition is a whitelisted (field, operator) pair; others are refused.

        Refusals for a non-whitelisted pair carry unknown_field or operator_not_allowed;
        whitelisted pairs may still fail on their value, never on the whitelist.
        """
        for name, op in pairs:
            try:
                compile_filters(User, {f"{name}__{op}": value}, allowed=allowed)
            except InvalidFilterError as exc:  # noqa: PERF203 - each pair on its own
                reason = exc.detail["reason"]
                if _allows(allowed, name, op):
                    assert reason not in {"unknown_field", "operator_not_allowed"}
                elif name not in allowed:
                    assert reason == "unknown_field"
                else:
                    assert reason == "operator_not_allowed"
            else:
                assert _allows(allowed, name, op)
        combined = {f"{name}__{op}": value for name, op in pairs}
        try:
            compile_filters(User, combined, allowed=allowed)
        except InvalidFilterError:
            return
        assert all(_allows(allowed, name, op) for name, op in pairs)


class TestCheckSettings:
    def test_malformed_declarations_are_refused_without_a_mapper(self):
        """check_settings() validates the shape a repository class declares."""
        from sqla_repo._whitelist import check_settings  # noqa: PLC0415 - private helper

        class Good:
            filterable_fields: ClassVar = {"email": ("eq", "gte"), "author.name": OPERATORS}
            sortable_fields = ALL_COLUMNS

        check_settings(Good)

        class Typo:
            filterable_fields: ClassVar = {"email": ("eq", "equals")}

        class Bare:
            sortable_fields = "name"

        for cls in (Typo, Bare):
            with pytest.raises(ConfigurationError) as info:
                check_settings(cls)
            assert cls.__name__ in str(info.value)


class _JsonBase(DeclarativeBase):
    pass


class _WithJson(_JsonBase):
    __tablename__ = "with_json"

    id: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[Any] = mapped_column(JSON, default=None)
    name: Mapped[str] = mapped_column(String(20), default="")


class TestJsonSort:
    """JSON values have no order on PostgreSQL: a JSON column is never a sort key."""

    def test_all_columns_leaves_json_out(self):
        keys = compile_order_by(_WithJson, ["name"], allowed=ALL_COLUMNS)
        assert [k.name for k in keys] == ["name", "id"]
        with pytest.raises(InvalidFilterError) as info:
            compile_order_by(_WithJson, ["data"], allowed=ALL_COLUMNS)
        assert info.value.detail["reason"] == "not_sortable"

    def test_a_listed_json_column_is_a_configuration_error(self):
        with pytest.raises(ConfigurationError, match="JSON"):
            compile_order_by(_WithJson, ["-data"], allowed=("data",))
