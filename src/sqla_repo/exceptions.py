"""The exceptions sqla_repo raises.

Every error the library raises derives from
[`RepositoryError`][sqla_repo.exceptions.RepositoryError], so one ``except RepositoryError``
catches them all:

```text
RepositoryError                 model, detail, code
├── ConfigurationError          misuse found at class creation
├── NotFoundError               no row with that identity (or not visible)
├── MultipleResultsFoundError   one row expected, several matched
├── InvalidFilterError          bad filter / sort / cursor / page size (also ValueError)
├── InvalidValueError           a value the column cannot hold (also ValueError)
│   └── NaiveDatetimeError      a datetime without a time zone for an instant
├── ConcurrencyError            lost a race: stale version, deadlock, lock timeout
├── StatementTimeoutError       the database cancelled a statement that ran too long
├── TenantRequiredError         tenant model touched with no tenant set
├── TenantMismatchError         a row written with another tenant's id
└── ConflictError               integrity violation
    ├── UniqueViolationError
    ├── ForeignKeyViolationError
    ├── NotNullViolationError
    └── CheckViolationError
```

Messages and ``detail`` never contain SQL or bound parameters, so both are safe to show
to an API client. The database exception, when there is one, is chained as ``__cause__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "CheckViolationError",
    "ConcurrencyError",
    "ConfigurationError",
    "ConflictError",
    "ForeignKeyViolationError",
    "InvalidFilterError",
    "InvalidValueError",
    "MultipleResultsFoundError",
    "NaiveDatetimeError",
    "NotFoundError",
    "NotNullViolationError",
    "RepositoryError",
    "StatementTimeoutError",
    "TenantMismatchError",
    "TenantRequiredError",
    "UniqueViolationError",
]


def _model_name(model: type[Any] | None) -> str | None:
    return None if model is None else model.__name__


class RepositoryError(Exception):
    """Base class of every sqla_repo error.

    Attributes:
        model: The mapped class the operation was about, when known.
        detail: Structured, client-safe information (never SQL or bound values).
        code: A short stable identifier, one per class; it names the anchor of the
            class on the exceptions reference page.
    """

    code: ClassVar[str] = "repository_error"
    default_message: ClassVar[str] = "The repository operation failed."

    def __init__(
        self,
        message: str | None = None,
        *,
        model: type[Any] | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.model = model
        self.detail: dict[str, Any] = dict(detail or {})
        if model is not None:
            self.detail.setdefault("model", _model_name(model))
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, detail={self.detail!r})"


class ConfigurationError(RepositoryError):
    """The library is used in a way it cannot support, detected at class creation."""

    code = "configuration_error"
    default_message = "sqla_repo is misconfigured."


class NotFoundError(RepositoryError, LookupError):
    """No visible row has the requested identity.

    A soft-deleted row and a row of another tenant are reported exactly like a
    missing one, so the error never reveals that they exist.
    """

    code = "not_found"
    default_message = "The requested row does not exist."


class MultipleResultsFoundError(RepositoryError):
    """A lookup that expects at most one row matched several."""

    code = "multiple_results"
    default_message = "More than one row matched where at most one was expected."


class InvalidFilterError(RepositoryError, ValueError):
    """Untrusted filter, sort, cursor or page input was rejected.

    ``detail`` names the offending ``field`` (when there is one) and the ``reason``.
    """

    code = "invalid_filter"
    default_message = "The filter, sort or pagination input is invalid."


class ConcurrencyError(RepositoryError):
    """A write lost a race: retrying the whole transaction may succeed.

    Raised for a stale version (optimistic locking with
    [`VersionMixin`][sqla_repo.mixins.VersionMixin]) and for the database's own
    retryable conflicts: deadlocks, serialization failures and lock timeouts.
    """

    code = "concurrency_conflict"
    default_message = "The row was changed by someone else; reload it and try again."


class InvalidValueError(RepositoryError, ValueError):
    """A value does not fit its column: too long, out of range, or not of the column's type.

    Raised when the database refuses a written value, and when a value bound to a
    statement cannot be converted for the column (text that is not valid Unicode, a
    non-finite float where the backend has none).
    """

    code = "invalid_value"
    default_message = "A value does not fit its column."


class NaiveDatetimeError(InvalidValueError):
    """A ``datetime`` without ``tzinfo`` was given where an instant in time is stored.

    Raised by [`UTCDateTime`][sqla_repo.types.UTCDateTime] when the value is bound to a
    statement (at flush, or when a statement compares the column with it), and by
    [`ensure_utc`][sqla_repo.types.ensure_utc]. Repository methods raise it as itself,
    never wrapped in SQLAlchemy's ``StatementError``.
    """

    code = "naive_datetime"
    default_message = "A datetime has no time zone; give it one, e.g. UTC."


class StatementTimeoutError(RepositoryError):
    """The database cancelled a statement that ran longer than its statement timeout.

    Translated from PostgreSQL's ``query_canceled`` (SQLSTATE ``57014``, raised by
    ``statement_timeout``), MariaDB's ``ER_STATEMENT_TIMEOUT`` (1969, raised by
    ``max_statement_time``) and MySQL's ``ER_QUERY_TIMEOUT`` (3024, raised by
    ``max_execution_time``). SQLite has no statement timeout.

    What is left of the transaction depends on the backend: PostgreSQL aborts it
    (roll back, or roll back to the savepoint a repository write opened), MariaDB and
    MySQL cancel the statement only and the transaction goes on.
    """

    code = "statement_timeout"
    default_message = "The statement took too long and was cancelled."


class TenantRequiredError(RepositoryError):
    """A tenant-scoped model was used with no tenant set and outside ``all_tenants()``."""

    code = "tenant_required"
    default_message = "A tenant must be set to use this model."


class TenantMismatchError(RepositoryError):
    """A row was written with a ``tenant_id`` other than the current tenant's."""

    code = "tenant_mismatch"
    default_message = "The row belongs to another tenant than the current one."


class ConflictError(RepositoryError):
    """The database refused a write because it would break an integrity constraint.

    Attributes:
        constraint: The constraint's name when the database reports it, else ``None``
            (PostgreSQL always does; MySQL/MariaDB do for unique, foreign-key and check
            violations; SQLite only for named check constraints and for unique indexes
            on expressions). A unique violation on SQLite names its columns instead, as
            ``detail["columns"]`` (``["username"]``; the columns of a composite key in
            order); the other backends give no ``columns``.
        column: The column a not-null violation is about, when the database reports it,
            else ``None``.
    """

    code = "conflict"
    default_message = "The write conflicts with an integrity constraint."

    def __init__(
        self,
        message: str | None = None,
        *,
        model: type[Any] | None = None,
        detail: Mapping[str, Any] | None = None,
        constraint: str | None = None,
        column: str | None = None,
    ) -> None:
        super().__init__(message, model=model, detail=detail)
        self.constraint = constraint
        self.column = column
        if constraint is not None:
            self.detail.setdefault("constraint", constraint)
        if column is not None:
            self.detail.setdefault("column", column)


class UniqueViolationError(ConflictError):
    """A unique constraint or primary key already holds the value."""

    code = "unique_violation"
    default_message = "A row with the same unique value already exists."


class ForeignKeyViolationError(ConflictError):
    """A foreign key points to a missing row, or a referenced row is still referenced."""

    code = "foreign_key_violation"
    default_message = "The write references a missing row, or a row that is still referenced."


class NotNullViolationError(ConflictError):
    """A required column was given no value."""

    code = "not_null_violation"
    default_message = "A required value is missing."


class CheckViolationError(ConflictError):
    """A CHECK constraint rejected the row."""

    code = "check_violation"
    default_message = "A value breaks a check constraint."
