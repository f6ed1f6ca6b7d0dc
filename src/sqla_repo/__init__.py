"""sqla_repo: mixins, a generic async repository and a safe filter language for SQLAlchemy 2.x."""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from sqla_repo._uuid7 import uuid7
from sqla_repo.base import (
    NAMING_CONVENTION,
    AuditedBase,
    Base,
    TimestampedBase,
    UUIDTimestampedBase,
)
from sqla_repo.context import (
    actor,
    all_tenants,
    current_actor,
    current_tenant,
    install,
    set_actor,
    set_tenant,
    tenant,
)
from sqla_repo.exceptions import (
    CheckViolationError,
    ConcurrencyError,
    ConfigurationError,
    ConflictError,
    ForeignKeyViolationError,
    InvalidFilterError,
    InvalidValueError,
    MultipleResultsFoundError,
    NotFoundError,
    NotNullViolationError,
    RepositoryError,
    StatementTimeoutError,
    TenantMismatchError,
    TenantRequiredError,
    UniqueViolationError,
)
from sqla_repo.filters import ALL_COLUMNS, SortKey, compile_filters, compile_order_by
from sqla_repo.mixins import (
    AuditColumnsMixin,
    IntegerPKMixin,
    SoftDeleteMixin,
    TenantMixin,
    TimestampMixin,
    UUIDPKMixin,
    UUIDv7PKMixin,
    VersionMixin,
)
from sqla_repo.pagination import CursorPage, SearchResult, set_cursor_secret
from sqla_repo.repository import BaseRepository
from sqla_repo.types import NaiveDatetimeError, UTCDateTime

if TYPE_CHECKING:
    from sqla_repo.sync_repository import SyncBaseRepository

try:
    __version__ = version("sqla_repo")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"


def __getattr__(name: str) -> Any:
    # The synchronous repository is imported on first use: async code never pays for it.
    if name == "SyncBaseRepository":
        from sqla_repo.sync_repository import SyncBaseRepository  # noqa: PLC0415

        return SyncBaseRepository
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "ALL_COLUMNS",
    "NAMING_CONVENTION",
    "AuditColumnsMixin",
    "AuditedBase",
    "Base",
    "BaseRepository",
    "CheckViolationError",
    "ConcurrencyError",
    "ConfigurationError",
    "ConflictError",
    "CursorPage",
    "ForeignKeyViolationError",
    "IntegerPKMixin",
    "InvalidFilterError",
    "InvalidValueError",
    "MultipleResultsFoundError",
    "NaiveDatetimeError",
    "NotFoundError",
    "NotNullViolationError",
    "RepositoryError",
    "SearchResult",
    "SoftDeleteMixin",
    "SortKey",
    "StatementTimeoutError",
    "SyncBaseRepository",
    "TenantMismatchError",
    "TenantMixin",
    "TenantRequiredError",
    "TimestampMixin",
    "TimestampedBase",
    "UTCDateTime",
    "UUIDPKMixin",
    "UUIDTimestampedBase",
    "UUIDv7PKMixin",
    "UniqueViolationError",
    "VersionMixin",
    "__version__",
    "actor",
    "all_tenants",
    "compile_filters",
    "compile_order_by",
    "current_actor",
    "current_tenant",
    "install",
    "set_actor",
    "set_cursor_secret",
    "set_tenant",
    "tenant",
    "uuid7",
]
