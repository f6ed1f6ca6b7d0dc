"""Translate SQLAlchemy and driver errors into sqla_repo errors.

Classification keys on structured codes, never on message text: the SQLSTATE
(PostgreSQL through asyncpg and psycopg), the server errno (MySQL/MariaDB, whose
drivers report SQLSTATE ``23000`` for every integrity error) and SQLite's extended
result code. Message text is read only to recover a constraint or column *name* where
the server reports no structured one, never to decide the class; the exceptions are
SQLite on Python 3.10, whose ``sqlite3`` module exposes no result code, and PostgreSQL's
row-level security refusal, which shares SQLSTATE 42501 with a missing privilege (it
becomes a ``TenantMismatchError``; a missing privilege is left as it is).

Errors raised before the statement reaches the database are classified by their type:
a ``StatementError`` raised while binding a value (the value could not be converted for
its column), a ``UnicodeEncodeError`` from a driver encoding the statement, and a driver
error refusing a bound non-finite float (MySQL drivers have no literal for NaN and
infinity).
"""

from __future__ import annotations

import copy
import math
import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import exc as orm_exc

from sqla_repo.exceptions import (
    CheckViolationError,
    ConcurrencyError,
    ConflictError,
    ForeignKeyViolationError,
    InvalidFilterError,
    InvalidValueError,
    NotNullViolationError,
    RepositoryError,
    StatementTimeoutError,
    TenantMismatchError,
    UniqueViolationError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager

__all__ = ["classify", "translate", "translate_errors", "translate_read_errors"]

SQLSTATE_CLASSES: Final[dict[str, type[ConflictError]]] = {
    "23505": UniqueViolationError,  # unique_violation
    "23503": ForeignKeyViolationError,  # foreign_key_violation
    "23001": ForeignKeyViolationError,  # restrict_violation
    "23502": NotNullViolationError,  # not_null_violation
    "23514": CheckViolationError,  # check_violation
}
"""PostgreSQL SQLSTATE codes of integrity violations."""

MYSQL_ERRNO_CLASSES: Final[dict[int, type[ConflictError]]] = {
    1022: UniqueViolationError,  # ER_DUP_KEY
    1062: UniqueViolationError,  # ER_DUP_ENTRY
    1169: UniqueViolationError,  # ER_DUP_UNIQUE
    1557: UniqueViolationError,  # ER_FOREIGN_DUPLICATE_KEY (a cascade would duplicate a key)
    1586: UniqueViolationError,  # ER_DUP_ENTRY_WITH_KEY_NAME
    1761: UniqueViolationError,  # ER_FOREIGN_DUPLICATE_KEY_WITH_CHILD_INFO
    1762: UniqueViolationError,  # ER_FOREIGN_DUPLICATE_KEY_WITHOUT_CHILD_INFO
    1216: ForeignKeyViolationError,  # ER_NO_REFERENCED_ROW
    1217: ForeignKeyViolationError,  # ER_ROW_IS_REFERENCED
    1451: ForeignKeyViolationError,  # ER_ROW_IS_REFERENCED_2
    1452: ForeignKeyViolationError,  # ER_NO_REFERENCED_ROW_2
    1048: NotNullViolationError,  # ER_BAD_NULL_ERROR
    1364: NotNullViolationError,  # ER_NO_DEFAULT_FOR_FIELD (strict mode)
    3819: CheckViolationError,  # MySQL ER_CHECK_CONSTRAINT_VIOLATED
    4025: CheckViolationError,  # MariaDB ER_CONSTRAINT_FAILED (an OperationalError)
}
"""MySQL/MariaDB server error numbers of integrity violations."""

SQLITE_CODE_CLASSES: Final[dict[int, type[ConflictError]]] = {
    2067: UniqueViolationError,  # SQLITE_CONSTRAINT_UNIQUE
    1555: UniqueViolationError,  # SQLITE_CONSTRAINT_PRIMARYKEY
    2579: UniqueViolationError,  # SQLITE_CONSTRAINT_ROWID
    787: ForeignKeyViolationError,  # SQLITE_CONSTRAINT_FOREIGNKEY
    1299: NotNullViolationError,  # SQLITE_CONSTRAINT_NOTNULL
    275: CheckViolationError,  # SQLITE_CONSTRAINT_CHECK
}
"""SQLite extended result codes of integrity violations."""

_SQLSTATE_LENGTH: Final = 5

# MySQL/MariaDB report no structured constraint name; these recover it from the message
# of each errno. The duplicate-key message quotes the offending *value* first, so its
# pattern is anchored at the end, where the server puts the key name: a value that
# itself contains "for key '...'" cannot pass for a constraint name.
_DUPLICATE_KEY: Final = re.compile(r"for key '(?:[^'.]+\.)?(?P<name>[^']+)'\Z")
_BACKTICK_CONSTRAINT: Final = re.compile(r"CONSTRAINT `(?P<name>[^`]+)`")
_CHECK_CONSTRAINT: Final = re.compile(r"^Check constraint '(?P<name>[^']+)'")
_MYSQL_CONSTRAINT_PATTERNS: Final[dict[int, re.Pattern[str]]] = {
    1062: _DUPLICATE_KEY,
    1586: _DUPLICATE_KEY,
    1216: _BACKTICK_CONSTRAINT,
    1217: _BACKTICK_CONSTRAINT,
    1451: _BACKTICK_CONSTRAINT,
    1452: _BACKTICK_CONSTRAINT,
    3819: _CHECK_CONSTRAINT,
    4025: _BACKTICK_CONSTRAINT,
}
_MYSQL_COLUMN_PATTERNS: Final[dict[int, re.Pattern[str]]] = {
    1048: re.compile(r"^Column '(?P<name>[^']+)' cannot be null"),
    1364: re.compile(r"^Field '(?P<name>[^']+)' doesn't have a default value"),
}

# SQLite names the CHECK constraint (when it has a name) and the NOT NULL column.
_SQLITE_CHECK: Final = re.compile(r"^CHECK constraint failed: (?P<name>[A-Za-z_][\w$]*)\Z")
_SQLITE_NOT_NULL: Final = re.compile(r"^NOT NULL constraint failed: (?:[^.\s]+\.)?(?P<name>\S+)\Z")
# A unique violation names the index (an index on expressions) or the columns it covers,
# each as ``table.column``; names that are not plain identifiers are not read.
_SQLITE_UNIQUE_INDEX: Final = re.compile(r"^UNIQUE constraint failed: index '(?P<name>[^']+)'\Z")
_IDENTIFIER: Final = r"[A-Za-z_][\w$]*"
_SQLITE_UNIQUE_COLUMNS: Final = re.compile(
    rf"^UNIQUE constraint failed: (?P<names>{_IDENTIFIER}\.{_IDENTIFIER}"
    rf"(?:, {_IDENTIFIER}\.{_IDENTIFIER})*)\Z"
)
# Python 3.10's sqlite3 has no ``sqlite_errorcode``; SQLite's messages are fixed.
_SQLITE_MESSAGE_CLASSES: Final = (
    ("UNIQUE constraint failed", UniqueViolationError),
    ("FOREIGN KEY constraint failed", ForeignKeyViolationError),
    ("NOT NULL constraint failed", NotNullViolationError),
    ("CHECK constraint failed", CheckViolationError),
)


class _Codes(NamedTuple):
    """What a database error reports about itself, gathered from its cause chain."""

    sqlstate: str | None = None
    errno: int | None = None
    sqlite_code: int | None = None
    sqlite_message: str | None = None
    constraint: str | None = None
    column: str | None = None
    columns: tuple[str, ...] = ()


def _sqlite_unique_columns(message: str) -> tuple[str, ...]:
    """The columns SQLite names in a unique violation's message, without their table."""
    match = _SQLITE_UNIQUE_COLUMNS.search(message)
    if match is None:
        return ()
    return tuple(name.partition(".")[2] for name in match.group("names").split(", "))


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """Yield *exc* and the exceptions behind it, each once, nearest first.

    SQLAlchemy's emulated DBAPI errors (asyncpg) keep the driver's exception as
    ``orig`` (2.1) and raise from it (2.0 and 2.1); other drivers chain the usual way.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        inner = getattr(exc, "orig", None)
        exc = inner if isinstance(inner, BaseException) else exc.__cause__ or exc.__context__


def _str_attr(obj: object, name: str) -> str | None:
    value = getattr(obj, name, None)
    return value if isinstance(value, str) and value else None


def _match(pattern: re.Pattern[str] | None, message: str) -> str | None:
    match = pattern.search(message) if pattern is not None else None
    return match.group("name") if match else None


def _codes(error: sa_exc.DBAPIError) -> _Codes:
    """Collect the codes and names found anywhere in the chain of ``error.orig``."""
    sqlstate: str | None = None
    errno: int | None = None
    sqlite_code: int | None = None
    sqlite_message: str | None = None
    constraint: str | None = None
    column: str | None = None
    for exc in _chain(error.orig):
        # asyncpg (and SQLAlchemy's adaption of it): ``sqlstate``; psycopg: ``sqlstate``
        # and ``diag``; psycopg2: ``pgcode``. MySQL drivers may report a generic
        # SQLSTATE too ("23000"), which simply matches no entry of the table.
        state = _str_attr(exc, "sqlstate") or _str_attr(exc, "pgcode")
        if sqlstate is None and state is not None and len(state) == _SQLSTATE_LENGTH:
            sqlstate = state
        diag = getattr(exc, "diag", None)
        constraint = constraint or _str_attr(exc, "constraint_name")
        constraint = constraint or _str_attr(diag, "constraint_name")
        column = column or _str_attr(exc, "column_name") or _str_attr(diag, "column_name")
        code = getattr(exc, "sqlite_errorcode", None)
        if sqlite_code is None and isinstance(code, int):
            sqlite_code = code
        args: tuple[object, ...] = getattr(exc, "args", ())
        if type(exc).__module__ == "sqlite3" and args and isinstance(args[0], str):
            sqlite_message = sqlite_message or args[0]
        # MySQL drivers (asyncmy, aiomysql, PyMySQL, mysqlclient): args == (errno, message).
        if errno is None and len(args) == 2:  # noqa: PLR2004
            number, message = args
            if isinstance(number, int) and isinstance(message, str):
                errno = number
                constraint = constraint or _match(_MYSQL_CONSTRAINT_PATTERNS.get(errno), message)
                column = column or _match(_MYSQL_COLUMN_PATTERNS.get(errno), message)
    columns: tuple[str, ...] = ()
    if sqlite_message is not None:
        constraint = constraint or _match(_SQLITE_CHECK, sqlite_message)
        constraint = constraint or _match(_SQLITE_UNIQUE_INDEX, sqlite_message)
        column = column or _match(_SQLITE_NOT_NULL, sqlite_message)
        columns = _sqlite_unique_columns(sqlite_message)
    return _Codes(sqlstate, errno, sqlite_code, sqlite_message, constraint, column, columns)


def _classify(error: sa_exc.DBAPIError, codes: _Codes) -> type[ConflictError] | None:
    if codes.sqlstate is not None and codes.sqlstate in SQLSTATE_CLASSES:
        return SQLSTATE_CLASSES[codes.sqlstate]
    if codes.errno is not None and codes.errno in MYSQL_ERRNO_CLASSES:
        return MYSQL_ERRNO_CLASSES[codes.errno]
    if codes.sqlite_code is not None and codes.sqlite_code in SQLITE_CODE_CLASSES:
        return SQLITE_CODE_CLASSES[codes.sqlite_code]
    if not isinstance(error, sa_exc.IntegrityError):
        return None
    if codes.sqlite_code is None and codes.sqlite_message is not None:
        for prefix, cls in _SQLITE_MESSAGE_CLASSES:
            if codes.sqlite_message.startswith(prefix):
                return cls
    return ConflictError


def classify(error: sa_exc.DBAPIError) -> tuple[type[ConflictError] | None, str | None]:
    """Return the most specific conflict class for *error* and the constraint name.

    The class is ``None`` when *error* is not an integrity violation; any other
    ``IntegrityError`` is a plain [`ConflictError`][sqla_repo.exceptions.ConflictError].
    """
    codes = _codes(error)
    return _classify(error, codes), codes.constraint


TRANSIENT_SQLSTATES: Final = frozenset({"40001", "40P01", "55P03"})
"""PostgreSQL serialization failure, deadlock and lock-not-available: retry the transaction."""

TRANSIENT_MYSQL_ERRNOS: Final = frozenset({1205, 1213})
"""MySQL/MariaDB lock wait timeout and deadlock: retry the transaction."""

TRANSIENT_SQLITE_CODES: Final = frozenset({5, 261, 517, 773})
"""SQLite ``SQLITE_BUSY`` and its extended codes ("database is locked")."""


TIMEOUT_SQLSTATES: Final = frozenset({"57014"})
"""PostgreSQL ``query_canceled``: ``statement_timeout`` (or a cancel request) stopped it."""

TIMEOUT_MYSQL_ERRNOS: Final = frozenset({1969, 3024})
"""MariaDB ``ER_STATEMENT_TIMEOUT`` (``max_statement_time``), MySQL ``ER_QUERY_TIMEOUT``."""

DATA_MYSQL_ERRNOS: Final = frozenset(
    {1264, 1265, 1267, 1270, 1271, 1292, 1300, 1366, 1406, 1411, 3140}
)
"""MySQL/MariaDB out of range, truncated, illegal mix of collations (a value the
column's character set cannot hold), invalid character string, incorrect value, data
too long, invalid JSON."""


def _non_finite(params: object, depth: int = 0) -> bool:
    """Whether the bound *params* (one row or several) hold a NaN or infinite number."""
    if isinstance(params, float):
        return not math.isfinite(params)
    if isinstance(params, Decimal):
        return not params.is_finite()
    if depth < 2 and isinstance(params, (list, tuple, dict)):  # noqa: PLR2004 - rows of values
        values = params.values() if isinstance(params, dict) else params
        return any(_non_finite(value, depth + 1) for value in values)
    return False


def _data_error(error: sa_exc.DBAPIError, codes: _Codes) -> bool:
    # SQLSTATE class 22 (data exception); asyncpg reports client-side encoding failures
    # ("invalid input for query argument") as a DataError without a SQLSTATE.
    no_code = codes.sqlstate is None and codes.errno is None and codes.sqlite_code is None
    return (
        (codes.sqlstate is not None and codes.sqlstate.startswith("22"))
        or codes.errno in DATA_MYSQL_ERRNOS
        or (no_code and isinstance(error, sa_exc.DataError))
        or type(error.orig).__name__ == "DataError"
        or (_unrendered(codes) and _non_finite(error.params))
    )


def _unrendered(codes: _Codes) -> bool:
    # A MySQL driver refusing a NaN float (no code at all), or rendering a NaN or infinite
    # Decimal as a bare word the server reads as a column name (errno 1054).
    return codes.sqlstate in {None, "42S22"} and codes.errno in {None, 1054}


def _transient(codes: _Codes) -> bool:
    return (
        codes.sqlstate in TRANSIENT_SQLSTATES
        or codes.errno in TRANSIENT_MYSQL_ERRNOS
        or codes.sqlite_code in TRANSIENT_SQLITE_CODES
    )


ROW_SECURITY_SQLSTATE: Final = "42501"
"""PostgreSQL's insufficient_privilege, raised (among others) by a row-level security
policy's ``WITH CHECK``."""


def _row_security(error: sa_exc.DBAPIError) -> bool:
    # insufficient_privilege also means a missing GRANT, a deployment error left as it
    # is; the policy's refusal has no code of its own, so its fixed wording decides.
    return "row-level security" in str(error.orig)


def _timed_out(codes: _Codes) -> bool:
    return codes.sqlstate in TIMEOUT_SQLSTATES or codes.errno in TIMEOUT_MYSQL_ERRNOS


_BIND_ERRORS: Final = (TypeError, ValueError, ArithmeticError, LookupError)
"""What a type's bind processor raises for a value it cannot convert (``LookupError``:
an ``Enum`` with ``validate_strings=True`` given a string that names no member)."""

_ENCODING_ERRORS: Final = (UnicodeError, OverflowError)
"""What a driver raises, unwrapped, for a parameter it cannot encode: a lone surrogate
(asyncmy, sqlite3), an integer beyond 64 bits (sqlite3)."""


def translate(
    error: BaseException,
    model: type[Any] | None = None,
    *,
    value_error: type[RepositoryError] = InvalidValueError,
) -> RepositoryError | None:
    """Return the sqla_repo error for *error*, or ``None`` when it has no translation.

    Args:
        error: The exception raised by SQLAlchemy or the driver.
        model: The mapped class the operation was about.
        value_error: The class for a value the database or a type refused:
            ``InvalidValueError`` for writes, ``InvalidFilterError`` for reads.
    """
    if isinstance(error, orm_exc.StaleDataError):
        return ConcurrencyError(model=model)
    if isinstance(error, sa_exc.DBAPIError):
        return _translate_dbapi(error, model, value_error)
    if isinstance(error, (sa_exc.StatementError, *_ENCODING_ERRORS)):
        return _translate_unsent(error, model, value_error)
    return None


def _translate_unsent(
    error: BaseException, model: type[Any] | None, value_error: type[RepositoryError]
) -> RepositoryError | None:
    """Translate an error raised before the statement reached the database."""
    if isinstance(error, _ENCODING_ERRORS):
        return value_error(
            "A value cannot be encoded for the database.",
            model=model,
            detail={"reason": "invalid_value"},
        )
    if not isinstance(error, sa_exc.StatementError):  # pragma: no cover - callers check
        return None
    # Raised while binding, by a type's bind processor.
    orig = error.orig
    if isinstance(orig, RepositoryError):
        return copy.copy(orig)
    if isinstance(orig, _BIND_ERRORS):
        return value_error(
            "A value cannot be converted for its column.",
            model=model,
            detail={"reason": "invalid_value"},
        )
    return None


def _translate_dbapi(
    error: sa_exc.DBAPIError, model: type[Any] | None, value_error: type[RepositoryError]
) -> RepositoryError | None:
    codes = _codes(error)
    if _timed_out(codes):
        return StatementTimeoutError(model=model, detail={"reason": "statement_timeout"})
    if _transient(codes):
        return ConcurrencyError(
            "The transaction lost a race for a lock; retry it.",
            model=model,
            detail={"reason": "lock_conflict"},
        )
    if codes.sqlstate == ROW_SECURITY_SQLSTATE and _row_security(error):
        return TenantMismatchError(model=model, detail={"reason": "row_level_security"})
    cls = _classify(error, codes)
    if cls is not None:
        # A not-null violation names a column; the other classes name a constraint.
        column = codes.column if issubclass(cls, NotNullViolationError) else None
        # SQLite names a unique violation's columns rather than its constraint.
        unique_columns = codes.columns if issubclass(cls, UniqueViolationError) else ()
        detail = {"columns": list(unique_columns)} if unique_columns else None
        return cls(model=model, constraint=codes.constraint, column=column, detail=detail)
    if _data_error(error, codes):
        return value_error(
            InvalidValueError.default_message, model=model, detail={"reason": "invalid_value"}
        )
    return None


def _savepoint_lost(error: BaseException) -> bool:
    """Whether *error* is MySQL/MariaDB's "SAVEPOINT does not exist" (errno 1305)."""
    return isinstance(error, sa_exc.DBAPIError) and _codes(error).errno == 1305  # noqa: PLR2004


def translate_errors(
    model: type[Any] | None = None, *, value_error: type[RepositoryError] = InvalidValueError
) -> AbstractContextManager[None]:
    """Re-raise database and binding errors as sqla_repo errors, chained.

    Translated: integrity violations, stale versions, lock conflicts, statement
    timeouts, values the database refused, and errors raised while binding a value. An
    error a type raised while binding (such as
    [`NaiveDatetimeError`][sqla_repo.exceptions.NaiveDatetimeError]) reaches SQLAlchemy's
    caller as a ``StatementError``, whose message quotes the SQL and its parameters; the
    repository error inside it is re-raised as itself, chained from the
    ``StatementError``. Other errors pass through unchanged.

    Args:
        model: The mapped class the operation is about.
        value_error: The class for a refused value; reads pass
            [`InvalidFilterError`][sqla_repo.exceptions.InvalidFilterError].
    """
    return _Translating(model, value_error)


class _Translating:
    """The context manager of :func:`translate_errors`.

    A class rather than a ``@contextmanager`` generator, at a third of its cost: every
    repository call enters one.
    """

    __slots__ = ("model", "value_error")

    def __init__(self, model: type[Any] | None, value_error: type[RepositoryError]) -> None:
        self.model = model
        self.value_error = value_error

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: object
    ) -> None:
        if exc is None or not isinstance(exc, _TRANSLATED):
            return
        model = self.model
        translated = translate(exc, model, value_error=self.value_error)
        if translated is None and _savepoint_lost(exc):
            # MariaDB ends the whole transaction on a deadlock, so the ROLLBACK TO
            # SAVEPOINT that follows fails (errno 1305). The lock conflict that started
            # it, up the context chain, is what happened.
            context = exc.__context__
            for _ in range(8):
                if context is None or translated is not None:
                    break
                if isinstance(context, sa_exc.DBAPIError):
                    candidate = translate(context, model)
                    if isinstance(candidate, ConcurrencyError):
                        translated = candidate
                context = context.__context__
        if translated is None:
            return
        raise translated from exc


_TRANSLATED: Final = (sa_exc.StatementError, orm_exc.StaleDataError, *_ENCODING_ERRORS)


def translate_read_errors(model: type[Any] | None = None) -> AbstractContextManager[None]:
    """[`translate_errors`][sqla_repo._translate.translate_errors] for a read.

    A value the database refuses in a read came from a filter, so it is an
    [`InvalidFilterError`][sqla_repo.exceptions.InvalidFilterError].
    """
    return translate_errors(model, value_error=InvalidFilterError)
