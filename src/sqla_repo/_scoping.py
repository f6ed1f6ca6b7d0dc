"""Statement checks behind tenant and soft-delete scoping.

``sqla_repo._hooks`` adds loader criteria to ORM statements; this module covers what
loader criteria cannot: it finds tenant tables anywhere in a statement, checks the
``tenant_id`` a statement writes, correlates UPDATE and DELETE statements of joined-table
subclasses with their base tables, adds explicit criteria where SQLAlchemy ignores
loader criteria (ORM bulk UPDATE by primary key) and to Core UPDATE and DELETE
statements on tenant tables, and refuses what it cannot prove scoped.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import ClauseElement, ColumnElement, and_, exists
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.compiler import compiles
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
from sqlalchemy.sql.selectable import CTE, AliasedReturnsRows, Join, Select, TableClause
from sqlalchemy.sql.util import find_tables

from sqla_repo.exceptions import RepositoryError, TenantMismatchError, TenantRequiredError
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

_ANONYMOUS = re.compile(r"%\(\d+ (.*)\)s")
"""The key of an anonymous bound value, holding the base of its compiled name."""

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
        _CRITERIA_NAME.fullmatch(str(key)) is not None for row in _rows(params) for key in row
    )


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
        anonymous = _ANONYMOUS.fullmatch(value.key)
        if anonymous is not None:
            # An anonymous value is replaced by the parameter of its compiled name
            # ("tenant_id_1", "param_2"), which is not known before compiling.
            compiled = re.compile(re.escape(anonymous.group(1)) + r"_\d+")
            if any(compiled.fullmatch(str(key)) for row in rows for key in row):
                raise TypeError
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


def _all_equal(value: Any, rows: list[Mapping[str, Any]], expected: str | None) -> bool:
    try:
        return all(each == expected for each in _values_of(value, rows))
    except TypeError:
        return False


def _is_column(element: Any, table: TableClause, key: str) -> bool:
    """Whether *element* is the column *key* of *table* itself, not of an alias of it.

    The proposed row of an upsert is an alias of the target table (``excluded`` on
    PostgreSQL and SQLite, ``inserted`` on MySQL and MariaDB): its ``tenant_id`` is the
    current tenant's, so a guard on it, or an assignment from it, says nothing about the
    existing row the conflict branch updates.
    """
    source = getattr(element, "table", None)
    return (
        isinstance(element, ColumnClause)
        and element.key == key
        and isinstance(source, TableClause)
        and source._deannotate() is table  # noqa: SLF001
    )


def _guarded(
    condition: Any,
    table: TableClause,
    tenant_id: str | None,
    *,
    soft: bool,
    rows: list[Mapping[str, Any]],
) -> bool:
    """Whether *condition* requires ``tenant_id = <tenant_id>`` and ``deleted_at IS NULL``.

    A bound value counts with every value the execution *rows* give it.
    """
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
            and _all_equal(right, rows, tenant_id)
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
    statement: Any, model: type[Any], tenant_id: str | None, *, soft: bool, params: Any = None
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
    guard: dict[str, Any] = {"tenant_id": tenant_id, "soft": soft, "rows": _rows(params)}
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
    maps = _table_maps()
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
    maps = _table_maps()
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
            out.append(build(source.c[key]))
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
