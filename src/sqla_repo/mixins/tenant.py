"""Tenant scoping: ``tenant_id`` plus deny-by-default statement criteria."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column

from sqla_repo._registry import enable
from sqla_repo.context import current_tenant

__all__ = ["TenantMixin"]


def _tenant() -> str | None:
    return current_tenant()


TENANT_ID_TYPE = String(64).with_variant(
    mysql.VARCHAR(64, collation="utf8mb4_nopad_bin"), "mysql", "mariadb"
)
"""``tenant_id``'s type: compared byte for byte on PostgreSQL, SQLite and MariaDB.

MariaDB's default collations fold case and accents and ignore trailing spaces, so
``tenant("a")`` would see tenant ``"A"``'s rows; a binary NO PAD collation makes ``=``
mean "the same string" there, as it does on PostgreSQL and SQLite. MySQL 8 (not tested)
has no collation of that name and refuses the ``CREATE TABLE``: declare ``tenant_id``
yourself there, with ``utf8mb4_0900_bin``.
"""


class TenantMixin:
    """A ``tenant_id`` column and automatic scoping to the current tenant.

    With a tenant set by [`tenant()`][sqla_repo.context.tenant], every ORM SELECT,
    UPDATE and DELETE on the model is restricted to that tenant's rows and new rows are
    stamped with it; writing a row whose ``tenant_id`` is another tenant's raises
    [`TenantMismatchError`][sqla_repo.exceptions.TenantMismatchError]. With no tenant set,
    statements on the model raise [`TenantRequiredError`][sqla_repo.exceptions.TenantRequiredError]
    unless they run inside [`all_tenants()`][sqla_repo.context.all_tenants].

    A foreign key into a tenant-scoped table may only point at the current tenant's rows:
    another tenant's row is refused with the same
    [`ForeignKeyViolationError`][sqla_repo.exceptions.ForeignKeyViolationError] as a
    missing one.
    """

    tenant_id: Mapped[str] = mapped_column(
        TENANT_ID_TYPE, default=_tenant, nullable=False, index=True, sort_order=-50
    )
    """The owning tenant (compared exactly: case, accents and trailing spaces count)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        enable(tenant=True)
        super().__init_subclass__(**kwargs)
