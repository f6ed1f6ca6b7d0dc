"""The tables of tenant and soft-delete models, and the error for unscoped statements.

The statement checks of ``sqla_repo._scoping`` and ``sqla_repo._tenant_writes`` look up
here which model a table found in a statement belongs to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapper
from sqlalchemy.sql.selectable import AliasedReturnsRows, TableClause

from sqla_repo.exceptions import RepositoryError
from sqla_repo.mixins.soft_delete import SoftDeleteMixin
from sqla_repo.mixins.tenant import TenantMixin

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "UNSCOPED",
    "forget",
    "scoped_mapper",
    "table_maps",
    "table_of",
    "tenant_tables",
    "unscoped",
]

UNSCOPED = "unscoped_statement"
"""The ``detail["reason"]`` of the errors raised for statements that cannot be scoped."""

# table -> the mapper whose local table it is (the base mapper for single-table
# hierarchies), for tenant and soft-delete models; rebuilt after mappers are configured.
_tables: dict[str, dict[TableClause, Mapper[Any]]] | None = None


def forget(*_args: object) -> None:
    """Drop the table maps (new mappers may have been configured)."""
    global _tables  # noqa: PLW0603 - a module-level cache, rebuilt on demand
    _tables = None


def _subclasses(cls: type[Any]) -> Iterator[type[Any]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def table_maps() -> dict[str, dict[TableClause, Mapper[Any]]]:
    """The tenant and soft-delete tables, each mapped to its mapper; built on first use."""
    global _tables  # noqa: PLW0603 - a module-level cache, rebuilt on demand
    maps = _tables
    if maps is None:
        maps = {"tenant": {}, "soft_delete": {}}
        for name, mixin in (("tenant", TenantMixin), ("soft_delete", SoftDeleteMixin)):
            # Pre-order: a base class comes before its subclasses, so a table shared by a
            # single-table hierarchy maps to the hierarchy's base mapper.
            for cls in _subclasses(mixin):
                mapper = sa_inspect(cls, raiseerr=False)
                if isinstance(mapper, Mapper):
                    for table in mapper.tables:
                        maps[name].setdefault(table, mapper)
        _tables = maps
    return maps


def scoped_mapper(table: TableClause | None) -> Mapper[Any] | None:
    """The mapper of a tenant or soft-delete model *table* belongs to, else ``None``."""
    maps = table_maps()
    if table is None:
        return None
    return maps["tenant"].get(table) or maps["soft_delete"].get(table)


def tenant_tables() -> dict[TableClause, Mapper[Any]]:
    """Every table of a tenant-scoped model, mapped to the mapper it is local to."""
    return table_maps()["tenant"]


def table_of(element: Any) -> TableClause | None:
    """The table behind a FROM element (an annotated table or an alias of one)."""
    while isinstance(element, AliasedReturnsRows):
        element = element.element
    if isinstance(element, TableClause):
        return element._deannotate()  # noqa: SLF001
    return None


def unscoped(model: type[Any] | None, message: str) -> RepositoryError:
    """The error for a statement the library cannot prove scoped."""
    return RepositoryError(message, model=model, detail={"reason": UNSCOPED})
