"""Driver and SQLAlchemy errors become the most specific sqla_repo error."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import exc as orm_exc

from sqla_repo._translate import (
    MYSQL_ERRNO_CLASSES,
    SQLITE_CODE_CLASSES,
    SQLSTATE_CLASSES,
    classify,
    translate,
    translate_errors,
    translate_read_errors,
)
from sqla_repo.exceptions import (
    CheckViolationError,
    ConcurrencyError,
    ConflictError,
    ForeignKeyViolationError,
    InvalidFilterError,
    InvalidValueError,
    NotFoundError,
    NotNullViolationError,
    RepositoryError,
    StatementTimeoutError,
    TenantRequiredError,
    UniqueViolationError,
)
from sqla_repo.types import NaiveDatetimeError

SQL = "INSERT INTO users (email, password) VALUES (%(email)s, %(password)s)"
PARAMS = {"email": "secret-value@example.org", "password": "hunter2"}
LEAKS = ("INSERT", "users (email", "secret-value", "hunter2")


class User:
    """Stands in for a mapped class: translation only reads its name."""


# -- fake driver exceptions, shaped like the real ones ---------------------------------


class AsyncpgDriverError(Exception):
    """asyncpg's own exception: ``sqlstate``, ``constraint_name``, ``column_name``."""

    def __init__(
        self, message: str, sqlstate: str, constraint: str | None, column: str | None
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.constraint_name = constraint
        self.column_name = column
        self.table_name = "users"


class AsyncpgAdaptedError(Exception):
    """SQLAlchemy's DBAPI adaption of an asyncpg error: ``sqlstate`` and ``pgcode`` only."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = self.pgcode = sqlstate


class PsycopgError(Exception):
    """psycopg 3's error: ``sqlstate`` plus a ``diag`` object carrying the names."""

    def __init__(
        self, message: str, sqlstate: str, constraint: str | None, column: str | None
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.diag = SimpleNamespace(
            sqlstate=sqlstate,
            constraint_name=constraint,
            column_name=column,
            table_name="users",
            message_primary=message,
        )


class MySQLDriverError(Exception):
    """asyncmy/PyMySQL error: ``args == (errno, message)``; asyncmy adds SQLSTATE 23000."""

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(errno, message)
        self.sqlstate = "23000"


def asyncpg_error(
    sqlstate: str, constraint: str | None = None, column: str | None = None
) -> Exception:
    driver = AsyncpgDriverError(f"violation {sqlstate}", sqlstate, constraint, column)
    adapted = AsyncpgAdaptedError(f"<class 'asyncpg.exceptions.X'>: {driver}", sqlstate)
    adapted.__cause__ = driver  # SQLAlchemy raises the adaption from the driver error
    return adapted


def psycopg_error(
    sqlstate: str, constraint: str | None = None, column: str | None = None
) -> Exception:
    return PsycopgError(
        f"violation {sqlstate}\nDETAIL:  Key (email)=({PARAMS['email']}) already exists.",
        sqlstate,
        constraint,
        column,
    )


def sqlite_error(code: int | None, message: str) -> sqlite3.Error:
    error = sqlite3.IntegrityError(message)
    if code is not None:  # Python 3.10's sqlite3 sets no result code
        error.sqlite_errorcode = code  # type: ignore[attr-defined]
    return error


def wrap(
    orig: BaseException, cls: type[sa_exc.DBAPIError] = sa_exc.IntegrityError
) -> sa_exc.DBAPIError:
    return cls(SQL, PARAMS, orig)


# -- the tables -------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    error: sa_exc.DBAPIError
    expected: type[ConflictError]
    constraint: str | None
    column: str | None = None


def _pg_cases() -> list[pytest.ParameterSet]:
    cases = []
    for sqlstate, cls in SQLSTATE_CLASSES.items():
        not_null = cls is NotNullViolationError
        constraint = None if not_null else f"ck_{sqlstate}"
        column = "sku" if not_null else None
        for driver, build in (("asyncpg", asyncpg_error), ("psycopg", psycopg_error)):
            error = wrap(build(sqlstate, constraint, column))
            cases.append(
                pytest.param(Case(error, cls, constraint, column), id=f"{driver}-{sqlstate}")
            )
    return cases


_FK_MESSAGE = (
    "Cannot add or update a child row: a foreign key constraint fails (`db`.`posts`, "
    "CONSTRAINT `fk_posts_author_id_users` FOREIGN KEY (`author_id`) REFERENCES `users` (`id`))"
)
_FK_PARENT_MESSAGE = (
    "Cannot delete or update a parent row: a foreign key constraint fails (`db`.`posts`, "
    "CONSTRAINT `fk_posts_author_id_users` FOREIGN KEY (`author_id`) REFERENCES `users` (`id`))"
)
# errno -> (message as the server words it, constraint, column)
MYSQL_MESSAGES: dict[int, tuple[str, str | None, str | None]] = {
    1022: ("Can't write; duplicate key in table 'users'", None, None),
    1062: (f"Duplicate entry '{PARAMS['email']}' for key 'uq_users_email'", "uq_users_email", None),
    1169: ("Can't write, because of unique constraint, to table 'users'", None, None),
    1557: (
        (
            "Upholding foreign key constraints for table 'posts', entry '7', key 2 would "
            "lead to a duplicate entry"
        ),
        None,
        None,
    ),
    1586: (f"Duplicate entry '{PARAMS['email']}' for key 'uq_users_email'", "uq_users_email", None),
    1761: (
        (
            "Foreign key constraint for table 'users', record '7' would lead to a duplicate "
            "entry in table 'posts', key 'uq_posts_slug'"
        ),
        None,
        None,
    ),
    1762: (
        (
            "Foreign key constraint for table 'users', record '7' would lead to a duplicate "
            "entry in a child table"
        ),
        None,
        None,
    ),
    1216: ("Cannot add or update a child row: a foreign key constraint fails", None, None),
    1217: ("Cannot delete or update a parent row: a foreign key constraint fails", None, None),
    1451: (_FK_PARENT_MESSAGE, "fk_posts_author_id_users", None),
    1452: (_FK_MESSAGE, "fk_posts_author_id_users", None),
    1048: ("Column 'sku' cannot be null", None, "sku"),
    1364: ("Field 'sku' doesn't have a default value", None, "sku"),
    3819: (
        "Check constraint 'ck_products_price_non_negative' is violated.",
        "ck_products_price_non_negative",
        None,
    ),
    4025: (
        "CONSTRAINT `ck_products_price_non_negative` failed for `db`.`products`",
        "ck_products_price_non_negative",
        None,
    ),
}
# MariaDB reports a violated CHECK as an OperationalError, not an IntegrityError.
MYSQL_WRAPPERS: dict[int, type[sa_exc.DBAPIError]] = {4025: sa_exc.OperationalError}


def _mysql_cases() -> list[pytest.ParameterSet]:
    cases = []
    for errno, cls in MYSQL_ERRNO_CLASSES.items():
        message, constraint, column = MYSQL_MESSAGES[errno]
        wrapper = MYSQL_WRAPPERS.get(errno, sa_exc.IntegrityError)
        error = wrap(MySQLDriverError(errno, message), wrapper)
        cases.append(pytest.param(Case(error, cls, constraint, column), id=f"asyncmy-{errno}"))
    return cases


# code -> (message as SQLite words it, constraint, column)
SQLITE_MESSAGES: dict[int, tuple[str, str | None, str | None]] = {
    2067: ("UNIQUE constraint failed: users.email", None, None),
    1555: ("UNIQUE constraint failed: users.id", None, None),
    2579: ("UNIQUE constraint failed: users.rowid", None, None),
    787: ("FOREIGN KEY constraint failed", None, None),
    1299: ("NOT NULL constraint failed: products.sku", None, "sku"),
    275: (
        "CHECK constraint failed: ck_products_price_non_negative",
        "ck_products_price_non_negative",
        None,
    ),
}


def _sqlite_cases() -> list[pytest.ParameterSet]:
    cases = []
    for code, cls in SQLITE_CODE_CLASSES.items():
        message, constraint, column = SQLITE_MESSAGES[code]
        error = wrap(sqlite_error(code, message))
        cases.append(pytest.param(Case(error, cls, constraint, column), id=f"sqlite3-{code}"))
    return cases


ALL_CASES = [*_pg_cases(), *_mysql_cases(), *_sqlite_cases()]


def _assert_safe(error: BaseException) -> None:
    texts = (str(error), repr(error), str(getattr(error, "detail", "")), *map(str, error.args))
    for text in texts:
        for leak in LEAKS:
            assert leak not in text


class TestTables:
    def test_mysql_messages_cover_the_table(self) -> None:
        """Every MySQL/MariaDB errno of the table has a realistic message under test."""
        assert set(MYSQL_MESSAGES) == set(MYSQL_ERRNO_CLASSES)

    def test_sqlite_messages_cover_the_table(self) -> None:
        """Every SQLite result code of the table has a realistic message under test."""
        assert set(SQLITE_MESSAGES) == set(SQLITE_CODE_CLASSES)

    def test_every_class_is_reachable_from_each_family(self) -> None:
        """Each conflict subclass is reachable from SQLSTATE, errno and SQLite codes."""
        expected = {
            UniqueViolationError,
            ForeignKeyViolationError,
            NotNullViolationError,
            CheckViolationError,
        }
        assert set(SQLSTATE_CLASSES.values()) == expected
        assert set(MYSQL_ERRNO_CLASSES.values()) == expected
        assert set(SQLITE_CODE_CLASSES.values()) == expected

    def test_wrapped_errors_do_quote_sql(self) -> None:
        """SQLAlchemy's own message quotes the SQL and parameters the translation must drop."""
        text = str(ALL_CASES[0].values[0].error)  # type: ignore[union-attr]
        assert "INSERT" in text
        assert "hunter2" in text


@pytest.mark.parametrize("case", ALL_CASES)
class TestClassification:
    def test_classify(self, case: Case) -> None:
        """classify() returns the most specific class and the reported constraint."""
        assert classify(case.error) == (case.expected, case.constraint)

    def test_translate(self, case: Case) -> None:
        """translate() builds the most specific error with constraint, column and model."""
        error = translate(case.error, User)
        assert type(error) is case.expected
        assert isinstance(error, ConflictError)
        assert error.constraint == case.constraint
        assert error.column == case.column
        assert error.model is User
        assert error.detail["model"] == "User"
        assert error.detail.get("constraint") == case.constraint
        assert error.detail.get("column") == case.column

    def test_message_is_safe(self, case: Case) -> None:
        """The translated error never quotes the SQL statement or its bound parameters."""
        error = translate(case.error, User)
        assert error is not None
        _assert_safe(error)

    def test_translate_errors_chains(self, case: Case) -> None:
        """translate_errors() raises the translated error from the original one."""
        with pytest.raises(case.expected) as info, translate_errors(User):
            raise case.error
        assert type(info.value) is case.expected
        assert info.value.__cause__ is case.error
        _assert_safe(info.value)


class TestNames:
    def test_not_null_names_a_column_not_a_constraint(self) -> None:
        """A not-null violation reports the column as ``column``, never as the constraint."""
        for orig in (
            MySQLDriverError(1048, "Column 'sku' cannot be null"),
            sqlite_error(1299, "NOT NULL constraint failed: products.sku"),
            asyncpg_error("23502", column="sku"),
            psycopg_error("23502", column="sku"),
        ):
            error = translate(wrap(orig))
            assert isinstance(error, NotNullViolationError)
            assert (error.constraint, error.column) == (None, "sku")

    def test_column_only_on_not_null(self) -> None:
        """Other violations leave ``column`` empty even when the driver reports one."""
        error = translate(wrap(asyncpg_error("23505", "uq_users_email", column="email")))
        assert isinstance(error, UniqueViolationError)
        assert error.column is None
        assert "column" not in error.detail

    def test_duplicate_value_cannot_pose_as_key_name(self) -> None:
        """A duplicate value that contains "for key '...'" does not become the constraint."""
        message = "Duplicate entry 'x' for key 'evil' for key 'uq_users_email'"
        error = translate(wrap(MySQLDriverError(1062, message)))
        assert isinstance(error, UniqueViolationError)
        assert error.constraint == "uq_users_email"

    def test_mysql8_key_name_is_table_qualified(self) -> None:
        """MySQL 8 prefixes the key with its table; the name is the key alone."""
        message = "Duplicate entry 'a' for key 'users.uq_users_email'"
        assert classify(wrap(MySQLDriverError(1062, message))) == (
            UniqueViolationError,
            "uq_users_email",
        )

    @pytest.mark.parametrize(
        ("code", "message", "constraint", "columns"),
        [
            (2067, "UNIQUE constraint failed: users.username", None, ["username"]),
            (2067, "UNIQUE constraint failed: pairs.a, pairs.b", None, ["a", "b"]),
            (1555, "UNIQUE constraint failed: products.id", None, ["id"]),
            (
                2067,
                "UNIQUE constraint failed: index 'uq_users_lower_email'",
                "uq_users_lower_email",
                None,
            ),
            (None, "UNIQUE constraint failed: users.email", None, ["email"]),
            (2067, "UNIQUE constraint failed: users.e mail", None, None),
            (2067, "UNIQUE constraint failed", None, None),
        ],
        ids=["column", "columns", "primary-key", "index", "no-code", "odd-name", "no-names"],
    )
    def test_sqlite_unique_names(
        self, code: int | None, message: str, constraint: str | None, columns: list[str] | None
    ) -> None:
        """SQLite's unique message gives the index name or the columns, read for detail only."""
        error = translate(wrap(sqlite_error(code, message)), User)
        assert isinstance(error, UniqueViolationError)
        assert error.constraint == constraint
        assert error.detail.get("constraint") == constraint
        assert error.detail.get("columns") == columns
        assert error.column is None
        assert "column" not in error.detail

    def test_unique_columns_only_from_sqlite(self) -> None:
        """Other violations and other drivers never get ``columns``."""
        for orig in (
            sqlite_error(1299, "NOT NULL constraint failed: users.email"),
            sqlite_error(787, "FOREIGN KEY constraint failed"),
            MySQLDriverError(1062, "Duplicate entry 'a' for key 'uq_users_email'"),
            asyncpg_error("23505", "uq_users_email", column="email"),
            Exception("UNIQUE constraint failed: users.email"),
        ):
            error = translate(wrap(orig))
            assert isinstance(error, ConflictError)
            assert "columns" not in error.detail

    def test_unnamed_sqlite_check_reports_no_constraint(self) -> None:
        """SQLite quotes the expression of an unnamed CHECK; that is not a constraint name."""
        error = wrap(sqlite_error(275, "CHECK constraint failed: price >= 0"))
        assert classify(error) == (CheckViolationError, None)

    def test_emulated_dbapi_error_with_orig(self) -> None:
        """A driver error kept as ``orig`` (SQLAlchemy 2.1's emulation) is read too."""
        adapted = AsyncpgAdaptedError("duplicate", "23505")
        adapted.orig = AsyncpgDriverError("duplicate", "23505", "uq_users_email", None)  # type: ignore[attr-defined]
        assert classify(wrap(adapted)) == (UniqueViolationError, "uq_users_email")

    def test_psycopg2_pgcode(self) -> None:
        """A ``pgcode`` without ``sqlstate`` (psycopg2) is a SQLSTATE as well."""
        orig = Exception("duplicate")
        orig.pgcode = "23503"  # type: ignore[attr-defined]
        assert classify(wrap(orig)) == (ForeignKeyViolationError, None)

    def test_cyclic_chain_terminates(self) -> None:
        """A cause chain that loops back on itself is walked once."""
        first = AsyncpgAdaptedError("x", "23514")
        second = AsyncpgDriverError("x", "23514", "ck_products_price_non_negative", None)
        first.__cause__ = second
        second.__context__ = first
        assert classify(wrap(first)) == (CheckViolationError, "ck_products_price_non_negative")


class TestFallbacks:
    @pytest.mark.parametrize(
        ("message", "expected"),
        [
            ("UNIQUE constraint failed: users.email", UniqueViolationError),
            ("FOREIGN KEY constraint failed", ForeignKeyViolationError),
            ("NOT NULL constraint failed: products.sku", NotNullViolationError),
            ("CHECK constraint failed: ck_x", CheckViolationError),
            ("constraint failed", ConflictError),
        ],
        ids=["unique", "foreign-key", "not-null", "check", "unknown"],
    )
    def test_sqlite_without_result_code(self, message: str, expected: type[ConflictError]) -> None:
        """SQLite errors without a result code (Python 3.10) fall back to SQLite's fixed text."""
        cls, _ = classify(wrap(sqlite_error(None, message)))
        assert cls is expected

    def test_message_text_never_classifies_other_drivers(self) -> None:
        """SQLite's wording in another driver's error does not pick a subclass."""
        error = wrap(Exception("UNIQUE constraint failed: users.email"))
        assert classify(error) == (ConflictError, None)

    @pytest.mark.parametrize(
        "orig",
        [
            asyncpg_error("23P01", "ex_booking_overlap"),
            MySQLDriverError(1999, "some other integrity rule"),
            sqlite_error(1811, "constraint failed"),
            Exception("no code at all"),
        ],
        ids=["pg-exclusion", "mysql-unknown", "sqlite-trigger", "no-code"],
    )
    def test_unknown_integrity_error_is_plain_conflict(self, orig: Exception) -> None:
        """An IntegrityError of no known kind is a plain ConflictError."""
        error = translate(wrap(orig), User)
        assert type(error) is ConflictError
        _assert_safe(error)


class TestPassThrough:
    @pytest.mark.parametrize(
        "error",
        [
            wrap(sqlite3.OperationalError("disk I/O error"), sa_exc.OperationalError),
            wrap(MySQLDriverError(2013, "Lost connection to server"), sa_exc.OperationalError),
        ],
        ids=["sqlite-io", "mysql-2013"],
    )
    def test_non_integrity_dbapi_error(self, error: sa_exc.DBAPIError) -> None:
        """A DBAPIError that is no integrity violation is re-raised untouched."""
        assert classify(error) == (None, None)
        assert translate(error) is None
        with pytest.raises(type(error)) as info, translate_errors(User):
            raise error
        assert info.value is error

    @pytest.mark.parametrize(
        "error",
        [
            wrap(AsyncpgAdaptedError("value too long", "22001"), sa_exc.DBAPIError),
            wrap(psycopg_error("22001"), sa_exc.DataError),
            wrap(psycopg_error("22003"), sa_exc.DataError),
            wrap(MySQLDriverError(1406, "Data too long for column 'sku'"), sa_exc.DataError),
            wrap(MySQLDriverError(1264, "Out of range value"), sa_exc.DataError),
        ],
        ids=["asyncpg-22001", "psycopg-22001", "psycopg-22003", "mysql-1406", "mysql-1264"],
    )
    def test_data_errors_become_invalid_value_errors(self, error: sa_exc.DBAPIError) -> None:
        """Values the database refuses (too long, out of range) become InvalidValueError."""
        translated = translate(error, User)
        assert isinstance(translated, InvalidValueError)
        assert isinstance(translated, ValueError)
        with pytest.raises(InvalidValueError) as info, translate_errors(User):
            raise error
        assert info.value.__cause__ is error
        assert "Data too long" not in str(info.value)

    @pytest.mark.parametrize(
        "error",
        [
            wrap(psycopg_error("40001"), sa_exc.OperationalError),
            wrap(psycopg_error("40P01"), sa_exc.OperationalError),
            wrap(MySQLDriverError(1213, "Deadlock found"), sa_exc.OperationalError),
            wrap(MySQLDriverError(1205, "Lock wait timeout exceeded"), sa_exc.OperationalError),
        ],
        ids=["psycopg-40001", "psycopg-40P01", "mysql-1213", "mysql-1205"],
    )
    def test_retryable_errors_become_concurrency_errors(self, error: sa_exc.DBAPIError) -> None:
        """Deadlocks, serialization failures and lock timeouts become ConcurrencyError."""
        translated = translate(error, User)
        assert isinstance(translated, ConcurrencyError)
        assert translated.detail["reason"] == "lock_conflict"
        with pytest.raises(ConcurrencyError) as info, translate_errors(User):
            raise error
        assert info.value.__cause__ is error

    @pytest.mark.parametrize(
        "error",
        [ValueError("x"), NotFoundError(model=User), sa_exc.InvalidRequestError("x")],
        ids=["builtin", "sqla-repo", "sqlalchemy"],
    )
    def test_other_errors(self, error: Exception) -> None:
        """Errors that are not database errors pass through translate_errors() untouched."""
        assert translate(error) is None
        with pytest.raises(type(error)) as info, translate_errors(User):
            raise error
        assert info.value is error

    def test_no_error(self) -> None:
        """translate_errors() is transparent when the block succeeds."""
        with translate_errors(User):
            result = 1
        assert result == 1


class TestStaleData:
    def test_stale_data_is_concurrency_error(self) -> None:
        """StaleDataError becomes ConcurrencyError, chained and naming the model."""
        stale = orm_exc.StaleDataError(
            "UPDATE statement on table 'tickets' expected to update 1 row(s); 0 were matched."
        )
        with pytest.raises(ConcurrencyError) as info, translate_errors(User):
            raise stale
        assert info.value.__cause__ is stale
        assert info.value.detail == {"model": "User"}
        assert "tickets" not in str(info.value)

    def test_translate_stale_data(self) -> None:
        """translate() maps StaleDataError without a model too."""
        error = translate(orm_exc.StaleDataError("x"))
        assert type(error) is ConcurrencyError
        assert error.model is None


class TestNaiveDatetime:
    def test_statement_error_is_unwrapped(self) -> None:
        """A naive datetime rejected while binding surfaces as NaiveDatetimeError, chained."""
        naive = NaiveDatetimeError("naive datetime rejected")
        wrapped = sa_exc.StatementError(str(naive), SQL, PARAMS, naive)
        with pytest.raises(NaiveDatetimeError) as info, translate_errors(User):
            raise wrapped
        assert info.value.__cause__ is wrapped
        assert str(info.value) == "naive datetime rejected"
        _assert_safe(info.value)

    def test_it_is_an_invalid_value_error(self) -> None:
        """NaiveDatetimeError is in the hierarchy: an InvalidValueError and a ValueError."""
        assert issubclass(NaiveDatetimeError, InvalidValueError)
        assert issubclass(NaiveDatetimeError, RepositoryError)
        assert issubclass(NaiveDatetimeError, ValueError)

    def test_stays_itself_in_reads(self) -> None:
        """A read does not turn it into an InvalidFilterError: it is raised as itself."""
        naive = NaiveDatetimeError("naive datetime rejected")
        wrapped = sa_exc.StatementError(str(naive), SQL, PARAMS, naive)
        with pytest.raises(NaiveDatetimeError) as info, translate_read_errors(User):
            raise wrapped
        assert type(info.value) is NaiveDatetimeError

    def test_any_repository_error_is_unwrapped(self) -> None:
        """Any library error a type raised while binding is re-raised as a copy, chained."""
        inner = TenantRequiredError(model=User)
        wrapped = sa_exc.StatementError(str(inner), SQL, PARAMS, inner)
        with pytest.raises(TenantRequiredError) as info, translate_errors(User):
            raise wrapped
        assert info.value.__cause__ is wrapped
        assert info.value.detail == inner.detail
        assert info.value.__cause__.__cause__ is not info.value  # no cycle in the chain


class TestBindErrors:
    @pytest.mark.parametrize(
        "orig",
        [TypeError("expected a datetime, got str"), ValueError("bad"), OverflowError("date")],
        ids=["type", "value", "overflow"],
    )
    def test_bind_value_errors_become_invalid_value_errors(self, orig: Exception) -> None:
        """A value a type cannot convert while binding is an InvalidValueError, chained."""
        wrapped = sa_exc.StatementError("bad", SQL, PARAMS, orig)
        with pytest.raises(InvalidValueError) as info, translate_errors(User):
            raise wrapped
        assert type(info.value) is InvalidValueError
        assert info.value.__cause__ is wrapped
        assert info.value.detail == {"model": "User", "reason": "invalid_value"}
        _assert_safe(info.value)

    def test_in_a_read_they_are_filter_errors(self) -> None:
        """In a read the value came from a filter: InvalidFilterError."""
        wrapped = sa_exc.StatementError("bad", SQL, PARAMS, TypeError("bad"))
        with pytest.raises(InvalidFilterError) as info, translate_read_errors(User):
            raise wrapped
        assert info.value.detail["reason"] == "invalid_value"

    def test_other_statement_errors_pass_through(self) -> None:
        """A StatementError about anything else than a value is re-raised untouched."""
        wrapped = sa_exc.StatementError("bad", SQL, PARAMS, sa_exc.InvalidRequestError("x"))
        with pytest.raises(sa_exc.StatementError) as info, translate_errors(User):
            raise wrapped
        assert info.value is wrapped

    def test_unencodable_text_is_an_invalid_value(self) -> None:
        """A driver failing to encode a lone surrogate: InvalidValueError, chained."""
        error = UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        with pytest.raises(InvalidValueError) as info, translate_errors(User):
            raise error
        assert info.value.__cause__ is error
        with pytest.raises(InvalidFilterError), translate_read_errors(User):
            raise error

    @pytest.mark.parametrize(
        "params",
        [{"price": float("nan")}, (1, float("inf")), [(1, 2.0), (2, float("-inf"))]],
        ids=["dict", "tuple", "executemany"],
    )
    def test_non_finite_floats_refused_by_a_driver(self, params: object) -> None:
        """MySQL drivers refuse NaN and infinity with no error number: InvalidValueError."""
        orig = MySQLDriverError(0, "x")
        orig.args = ("nan can not be used with MySQL",)
        orig.sqlstate = None  # type: ignore[assignment]
        error = sa_exc.ProgrammingError(SQL, params, orig)
        assert isinstance(translate(error, User), InvalidValueError)

    def test_finite_params_do_not_make_a_programming_error_a_value_error(self) -> None:
        """The same driver error with finite parameters is no value error."""
        orig = MySQLDriverError(0, "x")
        orig.args = ("something else",)
        orig.sqlstate = None  # type: ignore[assignment]
        assert translate(sa_exc.ProgrammingError(SQL, {"price": 1.5}, orig), User) is None


OPERATIONAL = sa_exc.OperationalError


class TestStatementTimeout:
    @pytest.mark.parametrize(
        "error",
        [
            wrap(asyncpg_error("57014"), sa_exc.DBAPIError),
            wrap(psycopg_error("57014"), sa_exc.OperationalError),
            wrap(
                MySQLDriverError(1969, "Query execution was interrupted"), sa_exc.OperationalError
            ),
            wrap(
                MySQLDriverError(3024, "Query execution was interrupted"), sa_exc.OperationalError
            ),
        ],
        ids=["asyncpg-57014", "psycopg-57014", "mariadb-1969", "mysql-3024"],
    )
    def test_timeouts_become_statement_timeout_errors(self, error: sa_exc.DBAPIError) -> None:
        """A statement cancelled by its timeout is a StatementTimeoutError, chained and safe."""
        translated = translate(error, User)
        assert type(translated) is StatementTimeoutError
        assert translated.detail == {"model": "User", "reason": "statement_timeout"}
        for context in (translate_errors(User), translate_read_errors(User)):
            with pytest.raises(StatementTimeoutError) as info, context:
                raise error
            assert info.value.__cause__ is error
            _assert_safe(info.value)

    def test_not_a_concurrency_error(self) -> None:
        """A timeout is no lost race: retrying the same statement would time out again."""
        assert not issubclass(StatementTimeoutError, ConcurrencyError)


class TestCollations:
    @pytest.mark.parametrize("errno", [1267, 1270, 1271, 1300])
    def test_charset_refusals_are_value_errors(self, errno: int) -> None:
        """MariaDB's "illegal mix of collations": a value the column's charset lacks."""
        error = wrap(MySQLDriverError(errno, "Illegal mix of collations"), sa_exc.OperationalError)
        assert isinstance(translate(error, User), InvalidValueError)
        with pytest.raises(InvalidFilterError) as info, translate_read_errors(User):
            raise error
        assert "collations" not in str(info.value)


class TestCleanupFailure:
    def test_failed_savepoint_rollback_reports_the_original_error(self) -> None:
        """A cleanup error raised while handling a deadlock is reported as the deadlock."""
        deadlock = wrap(MySQLDriverError(1213, "Deadlock found"), sa_exc.OperationalError)
        cleanup = wrap(
            MySQLDriverError(1305, "SAVEPOINT sa_1 does not exist"), sa_exc.OperationalError
        )

        def fail_during_cleanup() -> None:
            try:
                raise deadlock
            except sa_exc.OperationalError:
                raise cleanup  # noqa: B904 - the cleanup error replaces it, as in SQLAlchemy

        with pytest.raises(ConcurrencyError) as info, translate_errors(User):
            fail_during_cleanup()
        assert info.value.__cause__ is cleanup
