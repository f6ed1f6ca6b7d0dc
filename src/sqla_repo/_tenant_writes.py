"""The tenant a statement writes, and the guard of an upsert's conflict branch.

An INSERT or UPDATE may write ``tenant_id`` through its values, its execution parameters
or the conflict branch of an upsert; each such value must be the current tenant's. The
conflict branch of an upsert updates a row found by a unique key, not by the statement's
criteria, so it must carry the tenant and soft-delete conditions itself.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlalchemy import ClauseElement
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import (
    BinaryExpression,
    BindParameter,
    BooleanClauseList,
    Case,
    ColumnClause,
    Grouping,
    Null,
)
from sqlalchemy.sql.selectable import TableClause

from sqla_repo._scoped_tables import table_of, unscoped
from sqla_repo.exceptions import TenantMismatchError
from sqla_repo.mixins.soft_delete import SoftDeleteMixin
from sqla_repo.mixins.tenant import TenantMixin

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

__all__ = ["check_conflict_branch", "check_written_tenant", "param_rows"]

_ANONYMOUS = re.compile(r"%\(\d+ (.*)\)s")
"""The key of an anonymous bound value, holding the base of its compiled name."""


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


def param_rows(params: Any) -> list[Mapping[str, Any]]:
    """The rows of execution parameters (one mapping, or a list of them for executemany)."""
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
    rows = param_rows(params)
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
    guard: dict[str, Any] = {"tenant_id": tenant_id, "soft": soft, "rows": param_rows(params)}
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
