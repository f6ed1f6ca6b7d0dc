"""Statement checks behind tenant and soft-delete scoping.

``sqla_repo._hooks`` adds loader criteria to ORM statements; this module covers what
loader criteria cannot: it finds tenant tables anywhere in a statement, checks the
``tenant_id`` a statement writes, correlates UPDATE and DELETE statements of joined-table
subclasses with their base tables, adds explicit criteria where SQLAlchemy ignores
loader criteria (ORM bulk UPDATE by primary key) and to Core UPDATE and DELETE
statements on tenant tables, and refuses what it cannot prove scoped.

The tables of scoped models are looked up in ``sqla_repo._scoped_tables``, and the
tenant a statement writes is checked in ``sqla_repo._tenant_writes``; the names the
hooks use from those modules are re-exported here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import ClauseElement, ColumnElement, and_, exists
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import visitors
from sqlalchemy.sql.dml import Delete, Insert, Update, UpdateBase
from sqlalchemy.sql.selectable import CTE, Join, Select, TableClause
from sqlalchemy.sql.util import find_tables

from sqla_repo._plain_tables import SCOPED
from sqla_repo._scoped_tables import (
    UNSCOPED,
    forget,
    scoped_mapper,
    table_maps,
    table_of,
    tenant_tables,
    unscoped,
)
from sqla_repo._tenant_writes import check_conflict_branch, check_written_tenant, param_rows
from sqla_repo.exceptions import TenantRequiredError
from sqla_repo.mixins.soft_delete import SoftDeleteMixin
from sqla_repo.mixins.tenant import TenantMixin

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from sqlalchemy.orm import Mapper

__all__ = [
    "UNSCOPED",
    "bulk_criteria",
    "check_conflict_branch",
    "check_written_tenant",
    "core_criteria",
    "correlate_inherited",
    "extra_from_criteria",
    "forget",
    "insert_source_model",
    "overrides_criteria",
    "required_tenant_model",
    "scoped_mapper",
    "table_of",
    "tenant_column_table",
    "tenant_tables",
    "unfiltered_orm_model",
    "unscoped",
]

_CRITERIA_NAME = re.compile(r"tenant_id_\d+")
"""The compiled names of anonymous bound values compared with ``tenant_id``."""

_MULTI_TABLE_SET = frozenset({"mysql", "mariadb"})
"""Dialects whose UPDATE can set columns of several tables."""


def _leftmost(element: Any) -> Any:
    while isinstance(element, Join):
        element = element.left
    return element


def _main_froms(element: Any) -> Iterator[Any]:
    """The FROM elements a statement selects or writes rows of, joins' right sides aside."""
    if isinstance(element, Select):
        yield from element.columns_clause_froms
        for item in element._from_obj:  # noqa: SLF001
            yield _leftmost(item)
        for criterion in element._where_criteria:  # noqa: SLF001
            yield from criterion._from_objects  # noqa: SLF001
        for _target, _on, left, _flags in element._setup_joins:  # noqa: SLF001
            if left is not None:
                yield _leftmost(left)
    elif isinstance(element, UpdateBase):
        yield element.table
        yield from _extra_froms(element, set())


def required_tenant_model(statement: Any) -> type[Any] | None:
    """A tenant model whose rows *statement* reads or writes anywhere, else ``None``.

    Looks into subqueries, EXISTS, set operations (UNION …) and CTEs. A tenant model
    reached only as the right side of a join is not counted: the loader criteria make it
    match nothing when no tenant is set.
    """
    tables = tenant_tables()
    if not tables:
        return None
    for element in visitors.iterate(statement):
        for item in _main_froms(element):
            table = table_of(item)
            if table is not None and table in tables:
                return tables[table].class_
    return None


def _select_tables(statement: Any) -> Iterator[TableClause]:
    """The tables the SELECTs inside *statement* read rows of."""
    for element in visitors.iterate(statement):
        if isinstance(element, Select):
            for item in _main_froms(element):
                table = table_of(item)
                if table is not None:
                    yield table


def insert_source_model(statement: Insert) -> type[Any] | None:
    """A tenant or soft-delete model an INSERT copies rows from or (from a SELECT) into.

    Loader criteria do not reach a SELECT embedded in an INSERT (``from_select()``, a
    scalar subquery among the values), so such an INSERT cannot be proven scoped.
    """
    maps = table_maps()
    tables = list(_select_tables(statement))
    if statement.select is not None:
        tables.append(table_of(statement.table))  # type: ignore[arg-type]
    for table in tables:
        for kind in ("tenant", "soft_delete"):
            mapper = maps[kind].get(table)
            if mapper is not None:
                return mapper.class_
    return None


def unfiltered_orm_model(statement: Any, *, tenant: bool, soft_delete: bool) -> type[Any] | None:
    """A model named through ORM attributes inside a Core statement, where no criteria apply.

    ``select(exists().where(Note.id == 1))`` is a Core statement: SQLAlchemy applies loader
    criteria only when the top-level statement is ORM-enabled, so the EXISTS would read
    every tenant's rows, soft-deleted ones included.
    """
    mixins = tuple(
        mixin for mixin, on in ((TenantMixin, tenant), (SoftDeleteMixin, soft_delete)) if on
    )
    if not mixins:
        return None
    tables = tenant_tables() if tenant else {}
    for element in visitors.iterate(statement):
        if element is not statement and isinstance(element, UpdateBase):
            # A data-modifying CTE (PostgreSQL) inside the statement: no criteria reach it.
            mapper = tables.get(table_of(element.table))  # type: ignore[arg-type]
            if mapper is not None:
                return mapper.class_
        annotations = getattr(element, "_annotations", None)
        mapper = annotations.get("parentmapper") if annotations else None
        if mapper is not None and issubclass(mapper.class_, mixins):
            model: type[Any] = mapper.class_
            return model
    return None


def overrides_criteria(params: Any) -> bool:
    """Whether execution *params* name a bound value of the tenant criteria.

    SQLAlchemy lets an execution parameter replace an anonymous bound value by its
    compiled name: ``session.execute(select(Note), {"tenant_id_1": "B"})`` would bind
    another tenant's id into the criteria the hooks add.
    """
    return any(
        _CRITERIA_NAME.fullmatch(str(key)) is not None for row in param_rows(params) for key in row
    )


# -- joined-table inheritance --------------------------------------------------------------


def _joined_chain(mapper: Mapper[Any]) -> list[tuple[TableClause, ColumnElement[bool]]]:
    """``(base table, inherit condition)`` from *mapper* up its joined-table ancestors."""
    out: list[tuple[TableClause, ColumnElement[bool]]] = []
    current = mapper
    while current.inherits is not None:
        parent = current.inherits
        if current.local_table is not parent.local_table and current.inherit_condition is not None:
            out.append((parent.local_table, current.inherit_condition))  # type: ignore[arg-type]
        current = parent
    return out


def _referenced_tables(statement: Any) -> set[TableClause]:
    out: set[TableClause] = set()
    parts: list[Any] = list(statement._where_criteria)  # noqa: SLF001
    values = getattr(statement, "_values", None) or {}
    parts.extend(v for v in values.values() if isinstance(v, ClauseElement))
    for part in parts:
        for table in find_tables(part, include_aliases=True, check_columns=True):
            base = table_of(table)
            if base is not None:
                out.add(base)
    return out


def correlate_inherited(
    statement: Update | Delete,
    mapper: Mapper[Any],
    criteria_tables: Iterable[TableClause],
    dialect_name: str,
) -> Update | Delete:
    """Add the inherit conditions an UPDATE/DELETE of a joined subclass needs.

    SQLAlchemy renders criteria on a base table of a joined subclass as an extra FROM
    (``UPDATE clients … FROM people``) without the join condition. When the statement
    (its WHERE, its SET values, or the criteria the hooks add) refers to a base table,
    the conditions joining the subclass table to it are added, along every level.
    SQLite has no DELETE with more than one table: such a DELETE is refused.
    """
    chain = _joined_chain(mapper)
    if not chain:
        return statement
    referenced = _referenced_tables(statement) | set(criteria_tables)
    bases = [table for table, _ in chain]
    needed = [i for i, table in enumerate(bases) if table in referenced]
    if not needed:
        return statement
    if isinstance(statement, Update) and dialect_name not in _MULTI_TABLE_SET:
        keys = (getattr(key, "table", None) for key in statement._values or {})  # noqa: SLF001
        if any(table_of(table) in bases for table in keys):
            msg = (
                "This database cannot set a base table's column in an UPDATE of a "
                "joined-table subclass; update the base class instead."
            )
            raise unscoped(mapper.class_, msg)
    if isinstance(statement, Delete) and dialect_name == "sqlite":
        msg = (
            "SQLite cannot run a DELETE of a joined-table subclass that needs its base "
            "table; filter by primary key through a subquery, or delete the objects "
            "through the session."
        )
        raise unscoped(mapper.class_, msg)
    conditions = [condition for _, condition in chain[: max(needed) + 1]]
    # Tell SQLAlchemy the statement now has several tables (it picks how to synchronise
    # the session from this: MariaDB has no RETURNING with DELETE … USING).
    hint = "is_delete_using" if isinstance(statement, Delete) else "is_update_from"
    return statement.where(*conditions).execution_options(**{hint: True})


def _extra_froms(statement: Any, own: set[TableClause]) -> Iterator[Any]:
    """The FROM elements an UPDATE/DELETE adds beside its target (``UPDATE … FROM``).

    The tables *own* (the target's tables) are left out; an alias of one is not.
    """
    parts: list[Any] = list(getattr(statement, "_where_criteria", ()))
    for key, value in (getattr(statement, "_values", None) or {}).items():
        parts.extend(item for item in (key, value) if isinstance(item, ClauseElement))
    froms = [*getattr(statement, "_extra_froms", ())]
    for part in parts:
        froms.extend(part._from_objects)  # noqa: SLF001
    for item in froms:
        if not (isinstance(item, TableClause) and table_of(item) in own):
            yield item


def _refuse_scoped_join(join: Join, *, tenant: bool, soft: bool) -> None:
    """Refuse a join beside the target (``delete(M).using(a.join(b))``) of scoped tables.

    Their criteria would belong in the join's ON clauses, which the hooks do not rewrite.
    """
    maps = table_maps()
    kinds = [kind for kind, on in (("tenant", tenant), ("soft_delete", soft)) if on]
    for part in find_tables(join, include_aliases=True):
        for kind in kinds:
            mapper = maps[kind].get(table_of(part))  # type: ignore[arg-type]
            if mapper is not None:
                msg = "This UPDATE or DELETE reads a join of scoped models beside its target."
                raise unscoped(mapper.class_, msg)


def extra_from_criteria(
    statement: Update | Delete,
    own: set[TableClause],
    *,
    tenant_id: str | None,
    no_tenant: bool,
    soft: bool,
) -> list[ColumnElement[bool]]:
    """Criteria for the tables an ORM UPDATE/DELETE reads beside its target.

    Loader criteria reach the target and subqueries, but not a table named in the WHERE
    or SET clause (``update(Note).where(Note.document_id == Document.id)``), which
    SQLAlchemy renders as an extra FROM (``UPDATE … FROM``, ``DELETE … USING``, MySQL's
    multi-table ``UPDATE``): without criteria it reads, or on MySQL and MariaDB writes,
    every tenant's rows.

    The tables *own* (the target's) are left out. Core statements name tables beside
    their target the same way and get the same criteria.

    Raises:
        TenantRequiredError: A tenant table is read with no tenant set (*no_tenant*).
        RepositoryError: A tenant or soft-delete table without the column to filter on
            (the table of a joined subclass), reason ``unscoped_statement``.
    """
    maps = table_maps()
    out: list[ColumnElement[bool]] = []
    for item in _extra_froms(statement, own):
        if isinstance(item, Join):
            _refuse_scoped_join(item, tenant=no_tenant or tenant_id is not None, soft=soft)
            continue
        table = table_of(item)
        source = table if isinstance(item, TableClause) else item
        tenant_mapper = maps["tenant"].get(table)  # type: ignore[arg-type]
        soft_mapper = maps["soft_delete"].get(table)  # type: ignore[arg-type]
        checks: list[tuple[Mapper[Any], str, Any]] = []
        if tenant_mapper is not None and (no_tenant or tenant_id is not None):
            if no_tenant:
                raise TenantRequiredError(model=tenant_mapper.class_)
            checks.append((tenant_mapper, "tenant_id", lambda column: column == tenant_id))
        if soft_mapper is not None and soft:
            checks.append((soft_mapper, "deleted_at", lambda column: column.is_(None)))
        for scoped, key, build in checks:
            if source is None or key not in source.c:
                msg = (
                    "This UPDATE or DELETE reads a table of a scoped model beside its target "
                    "that cannot be filtered; use a subquery instead."
                )
                raise unscoped(scoped.class_, msg)
            # Marked, so that the compile-time check knows this FROM carries criteria.
            out.append(build(source.c[key]._annotate({SCOPED: True})))  # noqa: SLF001
    return out


def core_criteria(table: TableClause, tenant_id: str) -> ColumnElement[bool] | None:
    """The tenant criterion for a Core UPDATE/DELETE of *table*, or ``None`` if none fits.

    A table holding ``tenant_id`` is compared directly; the table of a joined subclass is
    tied to the base table that holds it by a correlated EXISTS over the inherit
    conditions.
    """
    if "tenant_id" in table.c:
        return table.c.tenant_id == tenant_id
    mapper = tenant_tables().get(table)
    if mapper is None:
        return None
    conditions: list[ColumnElement[bool]] = []
    for base, condition in _joined_chain(mapper):
        conditions.append(condition)
        if "tenant_id" in base.c:
            return exists().where(*conditions, base.c.tenant_id == tenant_id)
    return None


def tenant_column_table(mapper: Mapper[Any], key: str) -> TableClause | None:
    """The table that holds the column mapped as *key* on *mapper*."""
    prop = mapper.attrs.get(key) if hasattr(mapper.attrs, "get") else None
    columns = getattr(prop, "columns", None)
    if not columns:
        return None
    table = getattr(columns[0], "table", None)
    return table if isinstance(table, TableClause) else None


def bulk_criteria(
    mapper: Mapper[Any], tenant_id: str | None, *, soft: bool
) -> list[ColumnElement[bool]]:
    """Explicit WHERE criteria for an ORM bulk UPDATE by primary key of *mapper*'s class."""
    cls = mapper.class_
    out: list[ColumnElement[bool]] = []
    if tenant_id is not None and issubclass(cls, TenantMixin):
        out.append(cls.tenant_id == tenant_id)
    if soft and issubclass(cls, SoftDeleteMixin):
        out.append(cls.deleted_at.is_(None))
    return [and_(*out)] if out else []


# -- data-modifying CTEs -------------------------------------------------------------------


@compiles(CTE)
def _refuse_scoped_dml_cte(element: CTE, compiler: Any, **kw: Any) -> str:
    """Refuse an INSERT/UPDATE/DELETE on a tenant or soft-delete table inside a CTE.

    PostgreSQL runs such a CTE whatever the statement around it: inside an ORM SELECT it
    would write without the scoping criteria, and no per-execution check sees it without
    walking every SELECT. The check runs when the statement is compiled (once per
    statement shape, then cached), so it costs nothing per execution and refuses the form
    everywhere, ``all_tenants()`` included.
    """
    inner = element.element
    if isinstance(inner, UpdateBase):
        model = scoped_mapper(table_of(inner.table))
        if model is not None:
            msg = (
                "An INSERT, UPDATE or DELETE on a tenant or soft-delete table inside a "
                "WITH clause cannot be scoped; run it as a statement of its own."
            )
            raise unscoped(model.class_, msg)
    return compiler.visit_cte(element, **kw)  # type: ignore[no-any-return]
