"""Composable declarative mixins.

Each mixin adds columns (and, for soft delete and tenants, session behaviour) to a
mapped class. They work on [`Base`][sqla_repo.base.Base] and on any other
``DeclarativeBase``.
"""

from sqla_repo.mixins.audit import AuditColumnsMixin
from sqla_repo.mixins.pk import IntegerPKMixin, UUIDPKMixin, UUIDv7PKMixin
from sqla_repo.mixins.soft_delete import SoftDeleteMixin
from sqla_repo.mixins.tenant import TenantMixin
from sqla_repo.mixins.timestamps import TimestampMixin
from sqla_repo.mixins.version import VersionMixin

__all__ = [
    "AuditColumnsMixin",
    "IntegerPKMixin",
    "SoftDeleteMixin",
    "TenantMixin",
    "TimestampMixin",
    "UUIDPKMixin",
    "UUIDv7PKMixin",
    "VersionMixin",
]
