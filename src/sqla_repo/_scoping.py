"""Statement checks behind tenant and soft-delete scoping.

``sqla_repo._hooks`` adds loader criteria to ORM statements; this module covers what
loader criteria cannot: it finds tenant tables anywhere in a statement, checks the
``tenant_id`` a statement writes, correlates UPDATE and DELETE statements of joined-table
subclasses with their base tables, adds explicit criteria where SQLAlchemy ignores
loader criteria (ORM bulk UPDATE by primary key) and to Core UPDATE and DELETE
statements on tenant tables, and refuses what it cannot prove scoped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import ClauseElement, ColumnElement, and_, exists
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapper
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.dml import Delete, Insert, Update, UpdateBase
from sqlalchemy.sql.elements import (
    BinaryExpression,
    BindParameter,
    BooleanClauseList,
    Case,
    ColumnClause,
    Grouping,
    Null,
)
from sqlalchemy.sql.selectable import AliasedReturnsRows, Join, Select, TableClause
from sqlalchemy.sql.util import find_tables

from sqla_repo.exceptions import RepositoryError, TenantMismatchError
from sqla_repo.mixins.soft_delete import SoftDeleteMixin
from sqla_repo.mixins.tenant import TenantMixin

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

__all__ = [
    "UNSCOPED",
    "bulk_criteria",
    "check_conflict_branch",
    "check_written_tenant",
    "core_criteria",
    "correlate_inherited",
    "forget",
    "insert_source_model",
    "required_tenant_model",
    "scoped_mapper",
    "table_of",
    "tenant_column_table",
    "tenant_tables",
    "unfiltered_orm_model",
    "unscoped",
]

UNSCOPED = "unscoped_statement"
"""The ``detail["reason"]`` of the errors raised for statements that cannot be scoped."""

_MULTI_TABLE_SET = frozenset({"mysql", "mariadb"})
"""Dialects whose UPDATE can set columns of several tables."""

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


def _table_maps() -> dict[str, dict[TableClause, Mapper[Any]]]:
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
    maps = _table_maps()
    if table is None:
        return None
    return maps["tenant"].get(table) or maps["soft_delete"].get(table)


def tenant_tables() -> dict[TableClause, Mapper[Any]]:
    """Every table of a tenant-scoped model, mapped to the mapper it is local to."""
    return _table_maps()["tenant"]


def table_of(element: Any) -> TableClause | None:
    """The table behind a FROM element (an annotated table or an alias of one)."""
    while isinstance(element, AliasedReturnsRows):
        element = element.element
    if isinstance(element, TableClause):
        return element._deannotate()  # noqa: SLF001
    return None


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
    maps = _table_maps()
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
    for element in visitors.iterate(statement):
        annotations = getattr(element, "_annotations", None)
        mapper = annotations.get("parentmapper") if annotations else None
        if mapper is not None and issubclass(mapper.class_, mixins):
            model: type[Any] = mapper.class_
            return model
    return None


def unscoped(model: type[Any] | None, message: str) -> RepositoryError:
    """The error for a statement the library cannot prove scoped."""
    return RepositoryError(message, model=model, detail={"reason": UNSCOPED})


# -- the tenant a statement writes ---------------------------------------------------------


def _key_name(key: Any) -> str | None:
    if isinstance(key, str):
        return key
    return getattr(key, "key", None)


def _tenant_items(items: Iterable[tuple[Any, Any]]) -> Iterator[Any]:
    return (value for key, value in items if _key_name(key) == "tenant_id")


def _conflict_assignments(statement: Any) -> Iterable[tuple[Any, Any]]:
    """The SET of an upsert's conflict branch (PostgreSQL/SQLite, MySQL/MariaDB)."""
    clause = getattr(statement, "_post_values_clause", None)
    assigned = getattr(clause, "update_values_to_set", None)
    if assigned is None:
        assigned = getattr(clause, "update", None)
    if isinstance(assigned, dict):
        return list(assigned.items())
    return list(assigned or ())


def _written(statement: Any) -> Iterator[Any]:
    """The ``tenant_id`` values an INSERT or UPDATE statement sets (not its parameters)."""
    yield from _tenant_items((getattr(statement, "_values", None) or {}).items())
    for rows in getattr(statement, "_multi_values", ()) or ():
        for row in rows:
            yield from _tenant_items(row.items() if hasattr(row, "items") else ())
    yield from _tenant_items(_conflict_assignments(statement))


def _rows(params: Any) -> list[Mapping[str, Any]]:
    if isinstance(params, (list, tuple)):
        return [row for row in params if hasattr(row, "get")]
    return [params] if hasattr(params, "get") else []


def _values_of(value: Any, rows: list[Mapping[str, Any]]) -> list[Any]:
    """The literal values *value* stands for in each parameter row.

    Raises:
        TypeError: *value* is a SQL expression, not a literal or a bound value.
    """
    if isinstance(value, BindParameter):
        if value.callable is not None:
            raise TypeError
        if not rows:
            return [value.value]
        return [row.get(value.key, value.value) for row in rows]
    if isinstance(value, ClauseElement):
        raise TypeError
    return [value]


def check_written_tenant(
    statement: Any,
    params: Any,
    tenant_id: str,
    model: type[Any] | None,
    *,
    allow_none: bool,
) -> None:
    """Raise unless every ``tenant_id`` *statement* and *params* write is *tenant_id*.

    A value that is a SQL expression rather than a literal or a bound value cannot be
    checked and is refused. ``None`` is accepted for INSERT (the column default stamps
    the current tenant, and the column is NOT NULL).

    Raises:
        TenantMismatchError: Another tenant's id, ``None`` in an UPDATE, or an expression.
    """
    rows = _rows(params)
    values = [row["tenant_id"] for row in rows if "tenant_id" in row]
    try:
        for value in _written(statement):
            values.extend(_values_of(value, rows))
    except TypeError:
        raise TenantMismatchError(model=model) from None
    for value in values:
        if value != tenant_id and not (value is None and allow_none):
            raise TenantMismatchError(model=model)


# -- the conflict branch of an upsert --------------------------------------------------------


def _conjuncts(expression: Any) -> Iterator[Any]:
    while isinstance(expression, Grouping):
        expression = expression.element
    if isinstance(expression, BooleanClauseList) and expression.operator is operators.and_:
        for clause in expression.clauses:
            yield from _conjuncts(clause)
    else:
        yield expression


def _is_column(element: Any, table: TableClause, key: str) -> bool:
    return (
        isinstance(element, ColumnClause)
        and element.key == key
        and table_of(element.table) is table
    )


def _guarded(condition: Any, table: TableClause, tenant_id: str | None, *, soft: bool) -> bool:
    """Whether *condition* requires ``tenant_id = <tenant_id>`` and ``deleted_at IS NULL``."""
    need_tenant, need_soft = tenant_id is not None, soft
    for clause in _conjuncts(condition):
        if not isinstance(clause, BinaryExpression):
            continue
        right = clause.right
        if (
            clause.operator is operators.eq
            and _is_column(clause.left, table, "tenant_id")
            and isinstance(right, BindParameter)
            and right.callable is None
            and right.value == tenant_id
        ):
            need_tenant = False
        elif (
            clause.operator is operators.is_
            and _is_column(clause.left, table, "deleted_at")
            and isinstance(right, Null)
        ):
            need_soft = False
    return not (need_tenant or need_soft)


def _guarded_assignment(key: Any, value: Any, table: TableClause, **guard: Any) -> bool:
    """A MySQL ``ON DUPLICATE KEY UPDATE`` value that keeps a foreign row as it is."""
    name = _key_name(key) or ""
    if _is_column(value, table, name):
        return True  # col = col
    if not isinstance(value, Case) or len(value.whens) != 1:
        return False
    condition, _ = value.whens[0]
    return _is_column(value.else_, table, name) and _guarded(condition, table, **guard)


def check_conflict_branch(
    statement: Any, model: type[Any], tenant_id: str | None, *, soft: bool
) -> None:
    """Refuse an upsert whose conflict branch could update a row the scope hides.

    The row an ``ON CONFLICT DO UPDATE`` / ``ON DUPLICATE KEY UPDATE`` updates is found by
    a unique key, not by the statement's criteria: it may be another tenant's row or a
    soft-deleted one. The branch must be guarded: ``WHERE tenant_id = <tenant> AND
    deleted_at IS NULL`` (PostgreSQL, SQLite), or every assigned value written as
    ``CASE WHEN <that condition> THEN <new> ELSE <the column> END`` (MySQL, MariaDB).
    """
    clause = getattr(statement, "_post_values_clause", None)
    tenant_id = tenant_id if issubclass(model, TenantMixin) else None
    soft = soft and issubclass(model, SoftDeleteMixin)
    if clause is None or (tenant_id is None and not soft):
        return
    table = table_of(statement.table)
    guard: dict[str, Any] = {"tenant_id": tenant_id, "soft": soft}
    if table is not None and hasattr(clause, "update_values_to_set"):
        where = clause.update_whereclause
        if where is not None and _guarded(where, table, **guard):
            return
    elif table is not None and isinstance(getattr(clause, "update", None), dict):
        if all(_guarded_assignment(k, v, table, **guard) for k, v in clause.update.items()):
            return
    elif not hasattr(clause, "update_values_to_set"):
        return  # ON CONFLICT DO NOTHING
    msg = (
        "The conflict branch of this upsert could update a row of another tenant or a "
        "soft-deleted row; guard it with the tenant and soft-delete conditions."
    )
    raise unscoped(model, msg)


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
