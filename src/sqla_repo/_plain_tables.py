"""ORM statements that read a tenant table through its ``Table`` object, refused.

Loader criteria reach the FROM elements that come from mapped entities (``Note``,
``aliased(Note)``, ``select(Note).cte()``), in subqueries too, but not a ``Table`` object
or a Core alias of one. A Core SELECT of ``Note.__table__`` is the documented escape
hatch and is left alone; inside an ORM statement the same table would quietly read every
tenant's rows: ``select(Note.id, select(notes.c.text).scalar_subquery())``, a CTE or a
LATERAL over ``notes``, an ORM UPDATE whose SET copies from it. Such a statement cannot
be proven scoped, so it is refused.

The check runs when the statement is compiled. SQLAlchemy caches the compiled form by
the statement's shape, which includes the tenant criteria the session hooks add, so the
check costs nothing per execution and holds whatever the tenant (``all_tenants()`` adds
no criteria and is not checked).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm.util import LoaderCriteriaOption
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import ColumnClause
from sqlalchemy.sql.schema import Table
from sqlalchemy.sql.selectable import FromClause, Join, Select, TableClause

from sqla_repo._scoped_tables import table_of, tenant_tables, unscoped
from sqla_repo.mixins.tenant import TenantMixin

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.orm import Mapper

__all__ = ["SCOPED", "plain_tenant_model"]

_CHECKED = "_sqla_repo_plain_tables_checked"
"""The attribute that marks a compiler whose statement was checked."""


SCOPED = "sqla_repo_scoped"
"""The annotation on the columns of the criteria the hooks add for a FROM themselves."""

_SCOPED_FROM = object()
"""Stands for the entity of a column of those criteria."""


def _entity(element: Any) -> Any:
    """The mapped entity (mapper or aliased class) *element* comes from, else ``None``."""
    annotations = getattr(element, "_annotations", None)
    if not annotations:
        return None
    if annotations.get(SCOPED):
        return _SCOPED_FROM
    return annotations.get("parententity")


def _expression_froms(expression: Any) -> Iterator[tuple[Any, Any]]:
    """The FROM element of each column *expression* names, and the column's entity.

    An expression's own ``_from_objects`` lose the ORM annotations, so its columns are
    read instead. Nested SELECTs are left to their own turn.
    """
    pending = [expression]
    while pending:
        element = pending.pop()
        if isinstance(element, ColumnClause):
            if element.table is not None:
                yield element.table, _entity(element)
        elif not isinstance(element, (Select, FromClause)):
            pending.extend(element.get_children())


def _froms(select: Select[Any]) -> Iterator[tuple[Any, Any]]:
    """Every FROM element *select* names itself, joins opened up, with its entity.

    Nested SELECTs are left to their own turn.
    """
    pending: list[tuple[Any, Any]] = [
        (item, _entity(item))
        for item in select._from_obj  # noqa: SLF001
    ]
    criteria: list[Any] = [*select._where_criteria, *select._having_criteria]  # noqa: SLF001
    for column in select._raw_columns:  # noqa: SLF001
        if isinstance(column, FromClause):
            pending.append((column, _entity(column)))
        else:
            criteria.append(column)
    for target, on, left, _flags in select._setup_joins:  # noqa: SLF001
        pending.extend((item, _entity(item)) for item in (target, left) if item is not None)
        if on is not None:
            criteria.append(on)
    while pending:
        item, entity = pending.pop()
        if isinstance(item, Join):
            # A join mapped as an entity (joined-table inheritance) is the entity's tables.
            entity = entity or _entity(item)
            pending.extend(((item.left, entity), (item.right, entity)))
            if entity is None:
                criteria.append(item.onclause)
        else:
            yield item, entity or _entity(item)
    for criterion in criteria:
        if criterion is not None:
            yield from _expression_froms(criterion)


def _plain_in(select: Select[Any], tables: dict[TableClause, Mapper[Any]]) -> type[Any] | None:
    """A tenant model *select* reads through a plain ``Table`` (or Core alias) FROM."""
    covered: set[Any] = set()
    plain: list[tuple[TableClause, Any]] = []
    for item, entity in _froms(select):
        if entity is _SCOPED_FROM:
            covered.add(item)  # the hooks' own criteria name this very FROM
        elif entity is not None:
            if not entity.is_aliased_class:
                # An entity's FROM holds every table of its mapper (joined inheritance).
                covered.update(entity.mapper.tables)
        else:
            table = table_of(item)
            if table is not None and table in tables:
                # The Table itself shares the FROM of an entity on it (one ``FROM notes``,
                # scoped by the criteria); a Core alias of it is a FROM of its own.
                plain.append((table, item))
    for table, item in plain:
        if item not in covered:
            return tables[table].class_
    return None


def plain_tenant_model(statement: Any) -> type[Any] | None:
    """A tenant model some SELECT in *statement* reads through its ``Table`` object."""
    tables = tenant_tables()
    if not tables:
        return None
    for element in visitors.iterate(statement):
        if isinstance(element, Select):
            model = _plain_in(element, tables)
            if model is not None:
                return model
    return None


def _tenant_scoped(statement: Any) -> bool:
    """Whether *statement* is an ORM statement carrying tenant loader criteria."""
    if statement._propagate_attrs.get("compile_state_plugin") != "orm":  # noqa: SLF001
        return False
    return any(
        isinstance(option, LoaderCriteriaOption) and option.root_entity is TenantMixin
        for option in getattr(statement, "_with_options", ())
    )


@compiles(Table)
def _refuse_plain_tenant_table(element: Table, compiler: Any, **kw: Any) -> str:
    """Check the statement being compiled once, when it names a tenant table."""
    if not compiler.__dict__.get(_CHECKED) and element in tenant_tables():
        compiler.__dict__[_CHECKED] = True
        statement = compiler.statement
        if statement is not None and _tenant_scoped(statement):
            model = plain_tenant_model(statement)
            if model is not None:
                msg = (
                    "An ORM statement reads a tenant table through its Table object (in a "
                    "subquery, CTE or LATERAL), where no tenant criteria apply; use the "
                    "mapped class or its attributes instead."
                )
                raise unscoped(model, msg)
    return compiler.visit_table(element, **kw)  # type: ignore[no-any-return]
