"""Translate SQLAlchemy and driver errors into sqla_repo errors.

Classification keys on structured codes, never on message text: the SQLSTATE
(PostgreSQL through asyncpg and psycopg), the server errno (MySQL/MariaDB, whose
drivers report SQLSTATE ``23000`` for every integrity error) and SQLite's extended
result code. Message text is read only to recover a constraint *name* where the
server reports no structured one, never to decide the class.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import exc as orm_exc

from sqla_repo.exceptions import (
    CheckViolationError,
    ConcurrencyError,
    ConflictError,
    ForeignKeyViolationError,
    NotNullViolationError,
    RepositoryError,
    UniqueViolationError,
)

__all__ = ["classify", "translate_errors"]

SQLSTATE_CLASSES: Final[dict[str, type[ConflictError]]] = {
    "23505": UniqueViolationError,
    "23503": ForeignKeyViolationError,
    "23502": NotNullViolationError,
    "23514": CheckViolationError,
}
"""PostgreSQL SQLSTATE codes of integrity violations."""

MYSQL_ERRNO_CLASSES: Final[dict[int, type[ConflictError]]] = {
    1062: UniqueViolationError,  # ER_DUP_ENTRY
    1586: UniqueViolationError,  # ER_DUP_ENTRY_WITH_KEY_NAME
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
    787: ForeignKeyViolationError,  # SQLITE_CONSTRAINT_FOREIGNKEY
    1299: NotNullViolationError,  # SQLITE_CONSTRAINT_NOTNULL
    275: CheckViolationError,  # SQLITE_CONSTRAINT_CHECK
}
"""SQLite extended result codes of integrity violations."""

# MySQL reports no structured constraint name; these recover it from the message.
_MYSQL_NAME_PATTERNS: Final = (
    re.compile(r"for key '(?:[^'.]+\.)?(?P<name>[^']+)'"),
    re.compile(r"CONSTRAINT `(?P<name>[^`]+)`"),
    re.compile(r"[Cc]onstraint '(?:[^'.]+\.)?(?P<name>[^']+)'"),
    re.compile(r"Column '(?P<name>[^']+)' cannot be null"),
)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _codes(error: sa_exc.DBAPIError) -> tuple[str | None, int | None, int | None, str | None]:
    """Return ``(sqlstate, mysql_errno, sqlite_code, constraint_name)`` found on the error."""
    sqlstate: str | None = None
    errno: int | None = None
    sqlite_code: int | None = None
    constraint: str | None = None
    for exc in _chain(error.orig):
        state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        if sqlstate is None and isinstance(state, str) and len(state) == 5:  # noqa: PLR2004
            sqlstate = state
        diag = getattr(exc, "diag", None)
        name = getattr(exc, "constraint_name", None) or getattr(diag, "constraint_name", None)
        if constraint is None and isinstance(name, str):
            constraint = name
        code = getattr(exc, "sqlite_errorcode", None)
        if sqlite_code is None and isinstance(code, int):
            sqlite_code = code
        args = getattr(exc, "args", ())
        if errno is None and args and isinstance(args[0], int) and len(args) > 1:
            errno = args[0]
            if constraint is None and isinstance(args[1], str):
                constraint = _mysql_constraint_name(args[1])
    return sqlstate, errno, sqlite_code, constraint


def _mysql_constraint_name(message: str) -> str | None:
    for pattern in _MYSQL_NAME_PATTERNS:
        match = pattern.search(message)
        if match:
            return match.group("name")
    return None


def _sqlite_fallback(error: sa_exc.DBAPIError) -> type[ConflictError] | None:
    # Python < 3.11 has no ``sqlite_errorcode``; SQLite's messages are stable and fixed.
    text = str(error.orig)
    for prefix, cls in (
        ("UNIQUE constraint failed", UniqueViolationError),
        ("FOREIGN KEY constraint failed", ForeignKeyViolationError),
        ("NOT NULL constraint failed", NotNullViolationError),
        ("CHECK constraint failed", CheckViolationError),
    ):
        if text.startswith(prefix):
            return cls
    return None


def classify(error: sa_exc.DBAPIError) -> tuple[type[ConflictError] | None, str | None]:
    """Return the most specific conflict class for *error* and the constraint name.

    The class is ``None`` when *error* is not an integrity violation.
    """
    sqlstate, errno, sqlite_code, constraint = _codes(error)
    cls: type[ConflictError] | None = None
    if sqlstate is not None and sqlstate in SQLSTATE_CLASSES:
        cls = SQLSTATE_CLASSES[sqlstate]
    elif errno is not None and errno in MYSQL_ERRNO_CLASSES:
        cls = MYSQL_ERRNO_CLASSES[errno]
    elif sqlite_code is not None and sqlite_code in SQLITE_CODE_CLASSES:
        cls = SQLITE_CODE_CLASSES[sqlite_code]
    elif isinstance(error, sa_exc.IntegrityError):
        cls = _sqlite_fallback(error) or ConflictError
    return cls, constraint


def translate(error: BaseException, model: type[Any] | None = None) -> RepositoryError | None:
    """Return the sqla_repo error for *error*, or ``None`` when it has no translation."""
    if isinstance(error, orm_exc.StaleDataError):
        return ConcurrencyError(model=model)
    if isinstance(error, sa_exc.DBAPIError):
        cls, constraint = classify(error)
        if cls is not None:
            return cls(model=model, constraint=constraint)
    return None


@contextmanager
def translate_errors(model: type[Any] | None = None) -> Iterator[None]:
    """Re-raise integrity and stale-version errors as sqla_repo errors, chained."""
    try:
        yield
    except (sa_exc.DBAPIError, orm_exc.StaleDataError) as exc:
        translated = translate(exc, model)
        if translated is None:
            raise
        raise translated from exc
