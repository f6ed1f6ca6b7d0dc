"""ORM statements that read a tenant table where no tenant criteria reach, refused.

Loader criteria reach the FROM elements that come from mapped entities (``Note``,
``aliased(Note)``, ``select(Note).cte()``), in subqueries too, but not a ``Table`` object,
a Core alias of one, a lightweight ``table()`` of the same name, or the expression of
``with_expression()``. A Core SELECT of ``Note.__table__`` is the documented escape hatch
and is left alone; inside an ORM statement the same table would quietly read every
tenant's rows: ``select(Note.id, select(notes.c.text).scalar_subquery())``, a CTE or a
LATERAL over ``notes``, an ORM UPDATE whose SET copies from it. Such a statement cannot
be proven scoped, so it is refused.

Two uses of a plain table are scoped all the same: the ``Table`` of an entity the same
SELECT names (one ``FROM notes``, which the criteria filter), and a relationship's
``secondary`` table beside the parent or the target entity of that relationship (the
ORM's own many-to-many loads), whose rows only link rows the criteria filter.

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
from sqlalchemy.sql.elements import ClauseElement, ColumnClause, ColumnElement
from sqlalchemy.sql.schema import Column, Table
from sqlalchemy.sql.selectable import (
    AliasedReturnsRows,
    FromClause,
    Join,
    Select,
    TableClause,
)

from sqla_repo._entity_selectables import own_selectable
from sqla_repo._scoped_tables import table_of, tenant_tables, unscoped
from sqla_repo.mixins.soft_delete import SoftDeleteMixin
from sqla_repo.mixins.tenant import TenantMixin

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.orm import Mapper

__all__ = ["RELATIONSHIP_LOAD", "SCOPED", "plain_tenant_model"]

_CHECKED = "_sqla_repo_plain_tables_checked"
"""The attribute that marks a compiler whose statement was checked."""


RELATIONSHIP_LOAD = "sqla_repo_relationship_load"
"""The execution option the session hooks set on the ORM's own relationship loads."""

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


_OWN_TURN = (Select, AliasedReturnsRows, TableClause, Join)
"""What an expression walk does not enter (a function is a FROM clause too, and is)."""


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
        elif not isinstance(element, _OWN_TURN):
            pending.extend(element.get_children())


def _opened(pending: list[tuple[Any, Any]], criteria: list[Any]) -> Iterator[tuple[Any, Any]]:
    """The FROM elements of *pending*, joins opened up (their ON clauses go to *criteria*)."""
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


def _froms(select: Select[Any]) -> Iterator[tuple[Any, Any]]:
    """Every FROM element *select* names itself, joins opened up, with its entity.

    Nested SELECTs are left to their own turn.
    """
    pending: list[tuple[Any, Any]] = [
        (item, _entity(item))
        for item in select._from_obj  # noqa: SLF001
    ]
    criteria: list[Any] = list(select._where_criteria)  # noqa: SLF001
    for column in select._raw_columns:  # noqa: SLF001
        # A function is a FROM clause too: it is read as the expression it is here.
        if isinstance(column, FromClause) and not isinstance(column, ColumnElement):  # type: ignore[unreachable]
            pending.append((column, _entity(column)))
        else:
            criteria.append(column)
    for target, on, left, _flags in select._setup_joins:  # noqa: SLF001
        pending.extend((item, _entity(item)) for item in (target, left) if item is not None)
        if on is not None:
            criteria.append(on)
    yield from _opened(pending, criteria)
    for criterion in criteria:
        if criterion is not None:
            yield from _expression_froms(criterion)
    # An entity named only in HAVING adds no FROM the criteria filter: it covers nothing.
    for criterion in select._having_criteria:  # noqa: SLF001
        for item, _source in _expression_froms(criterion):
            yield item, None


class _Tenants:
    """The tenant tables a check compares FROM elements with, looked up lazily."""

    def __init__(self, tables: dict[TableClause, Mapper[Any]], *, relationship_load: bool) -> None:
        self.tables = tables
        self.by_name = {(table.schema, table.name): table for table in tables}
        self.relationship_load = relationship_load
        self._secondaries: dict[TableClause, set[TableClause]] | None = None

    def table(self, item: Any) -> TableClause | None:
        """The tenant table behind FROM element *item* (by name for ``table()``), or None."""
        table = table_of(item)
        if table is None:
            return None
        if table in self.tables:
            return table
        if isinstance(table, Table):
            return None
        return self.by_name.get((getattr(table, "schema", None), table.name))

    def linked(self, table: TableClause) -> set[TableClause]:
        """The tables of the entities a ``secondary`` *table* links, in a relationship load.

        Only the ORM's own loads of a relationship (lazy, selectin) may read a tenant
        table as a ``secondary``: they read its link columns beside the entities it
        links. In a statement of the application's it is a plain table like any other.
        """
        if not self.relationship_load:
            return set()
        if self._secondaries is None:
            found: dict[TableClause, set[TableClause]] = {}
            for mapper in _registry_mappers(self.tables):
                for rel in mapper.relationships:
                    secondary = table_of(rel.secondary) if rel.secondary is not None else None
                    if secondary is not None and secondary in self.tables:
                        found.setdefault(secondary, set()).update(
                            (*rel.parent.tables, *rel.mapper.tables)
                        )
            self._secondaries = found
        return self._secondaries.get(table, set())


def _registry_mappers(tables: dict[TableClause, Mapper[Any]]) -> set[Mapper[Any]]:
    """Every mapper of the registries the tenant models belong to."""
    return {mapper for tenant in tables.values() for mapper in tenant.registry.mappers}


def _covered(item: Any, entity: Any, covered: set[Any]) -> None:
    """Add what the criteria of *entity* (the source of FROM *item*) scope to *covered*."""
    if entity is _SCOPED_FROM:
        covered.add(item)  # the hooks' own criteria name this very FROM
    elif not entity.is_aliased_class:
        # An entity's FROM holds every table of its mapper (joined inheritance).
        covered.update(entity.mapper.tables)


def _plain_in(
    select: Select[Any], tenants: _Tenants, enclosing: frozenset[Any], *, correlating: bool
) -> tuple[type[Any] | None, frozenset[Any]]:
    """A tenant model *select* reads through a plain table (or Core alias) FROM.

    Also returns the tables the entities of *select* and of the SELECTs around it
    (*enclosing*) cover, for the SELECTs nested in it. *correlating* tells whether
    *select* sits where SQL correlates (a scalar subquery, ``EXISTS``, ``IN``), not in a
    FROM clause.
    """
    covered: set[Any] = set()
    plain: list[tuple[TableClause, Any]] = []
    for item, entity in _froms(select):
        if entity is not None:
            _covered(item, entity, covered)
        else:
            table = tenants.table(item)
            if table is not None:
                plain.append((table, item))
    inner = enclosing.union(covered)
    for table, item in plain:
        # The Table itself shares the FROM of an entity on it (one ``FROM notes``, scoped
        # by the criteria); a Core alias or a ``table()`` of it is a FROM of its own.
        if item in covered or (item is table and not covered.isdisjoint(tenants.linked(table))):
            continue
        if correlating and item is table and item in enclosing and _correlates(select, item):
            continue  # the enclosing entity's row: ``any()``, ``has()``, ``correlate()``
        return tenants.tables[table].class_, inner
    return None, inner


def _correlates(select: Select[Any], item: Any) -> bool:
    """Whether *select* is told to correlate *item* to a SELECT around it."""
    correlate = select._correlate  # noqa: SLF001
    if correlate and item in correlate:
        return True
    except_ = select._correlate_except  # noqa: SLF001
    return except_ is not None and item not in except_


def _entities(statement: Any) -> tuple[set[int], set[Any], type[Any] | None]:
    """The selectables to skip, the mappers named, and a model aliased over a loose join.

    An aliased entity over a join of its tables that are not joined by their inherit
    conditions cannot be scoped by the criteria (see ``own_selectable``).
    """
    skip: set[int] = set()
    mappers: set[Any] = set()
    loose: type[Any] | None = None
    for element in visitors.iterate(statement):
        entity = _entity(element)
        if entity is None or entity is _SCOPED_FROM:
            continue
        mappers.add(entity.mapper)
        if own_selectable(entity):
            skip.add(id(entity.selectable))
            if isinstance(element, FromClause) and not isinstance(element, (TableClause, Join)):
                skip.add(id(element))
        elif entity.is_aliased_class and isinstance(entity.selectable, Join):
            loose = loose or entity.mapper.class_
    return skip, mappers, loose


def _walk(statement: Any, tenants: _Tenants, skip: set[int]) -> type[Any] | None:
    """A tenant model some SELECT in *statement* reads through a plain FROM."""
    pending: list[tuple[Any, frozenset[Any], bool]] = [(statement, frozenset(), False)]
    seen: set[int] = set()
    while pending:
        element, enclosing, correlating = pending.pop()
        if id(element) in seen or id(element) in skip:
            continue
        seen.add(id(element))
        if isinstance(element, Select):
            model, enclosing = _plain_in(element, tenants, enclosing, correlating=correlating)
            if model is not None:
                return model
        # What a FROM clause holds (a subquery, a CTE, a LATERAL) is not correlated.
        nested = not isinstance(element, FromClause) or isinstance(element, ColumnElement)
        pending.extend((child, enclosing, nested) for child in element.get_children())
    return None


def _query_expressions(statement: Any) -> Iterator[Any]:
    """The expressions of the ``with_expression()`` options of *statement*."""
    for option in getattr(statement, "_with_options", ()):
        for element in getattr(option, "context", ()):
            if ("query_expression", True) in (element.strategy or ()):
                yield from element._extra_criteria  # noqa: SLF001


def _unscoped_part(part: Any, tenants: _Tenants, top: set[Any]) -> TableClause | None:
    """The tenant table a part of a ``with_expression()`` expression reads unscoped."""
    if isinstance(part, Select):
        for item, _source in _froms(part):
            table = tenants.table(item)
            if table is not None:
                return table
    elif isinstance(part, ColumnClause) and part.table is not None:
        table = tenants.table(part.table)
        if table is not None and part.table not in top:
            return table
    return None


def _expression_model(statement: Any, tenants: _Tenants) -> type[Any] | None:
    """A tenant model the expression of a ``with_expression()`` option reads unscoped.

    SQLAlchemy strips the expression of its ORM annotations: no criteria reach a SELECT
    inside it, even over an entity. Its own columns are added to the statement's SELECT,
    where only the tables of the statement's entities are scoped.
    """
    top: set[Any] = set()
    if isinstance(statement, Select):
        for item, entity in _froms(statement):
            if entity is not None:
                _covered(item, entity, top)
    for expression in _query_expressions(statement):
        for part in visitors.iterate(expression):
            table = _unscoped_part(part, tenants, top)
            if table is not None:
                return tenants.tables[table].class_
    return None


def _related(mappers: set[Any]) -> set[Any]:
    """*mappers*, their subclasses and every mapper their relationships reach.

    Their column expressions may be loaded with the statement (``joinedload``,
    ``with_polymorphic="*"``).
    """
    found: set[Any] = set()
    pending = list(mappers)
    while pending:
        mapper = pending.pop()
        if mapper in found:
            continue
        found.add(mapper)
        pending.extend(mapper.self_and_descendants)
        pending.extend(rel.mapper for rel in mapper.relationships)
    return found


def _mapped_expression_model(mappers: set[Any], tenants: _Tenants) -> type[Any] | None:
    """A tenant model a ``column_property()`` or ``query_expression()`` reads unscoped."""
    for mapper in _related(mappers):
        for prop in mapper.column_attrs:
            for expression in prop.columns:
                if isinstance(expression, Column):
                    continue
                model = _walk(expression, tenants, set())
                if model is not None:
                    return model
    return None


def _option_criteria_model(statement: Any, tenants: _Tenants) -> type[Any] | None:
    """A tenant model the criteria of the statement's loader options read unscoped.

    ``selectinload(A.bs.and_(...))`` and the application's own ``with_loader_criteria``
    carry expressions the statement walk does not see; they are checked as the
    application's (no relationship load may vouch for them).
    """
    strict = _Tenants(tenants.tables, relationship_load=False)
    for option in getattr(statement, "_with_options", ()):
        criteria: list[Any] = []
        if isinstance(option, LoaderCriteriaOption):
            if option.root_entity in (TenantMixin, SoftDeleteMixin):
                continue  # the hooks' own
            criteria.append(option.where_criteria)
        for element in getattr(option, "context", ()):
            criteria.extend(element._extra_criteria)  # noqa: SLF001
        for criterion in criteria:
            if isinstance(criterion, ClauseElement):
                model = _walk(criterion, strict, set())
                if model is not None:
                    return model
    return None


def plain_tenant_model(statement: Any, *, relationship_load: bool = False) -> type[Any] | None:
    """A tenant model *statement* reads where no tenant criteria reach, else ``None``."""
    tables = tenant_tables()
    if not tables:
        return None
    tenants = _Tenants(tables, relationship_load=relationship_load)
    skip, mappers, loose = _entities(statement)
    if loose is not None and any(table in tables for table in loose.__mapper__.tables):
        return loose
    return (
        _expression_model(statement, tenants)
        or _option_criteria_model(statement, tenants)
        or _walk(statement, tenants, skip)
        or _mapped_expression_model(mappers, tenants)
    )


def _tenant_scoped(statement: Any) -> bool:
    """Whether *statement* is an ORM statement carrying tenant loader criteria."""
    if statement._propagate_attrs.get("compile_state_plugin") != "orm":  # noqa: SLF001
        return False
    return any(
        isinstance(option, LoaderCriteriaOption) and option.root_entity is TenantMixin
        for option in getattr(statement, "_with_options", ())
    )


def _is_tenant_table(element: TableClause) -> bool:
    tables = tenant_tables()
    if element in tables:
        return True
    return not isinstance(element, Table) and any(
        table.name == element.name and table.schema == getattr(element, "schema", None)
        for table in tables
    )


@compiles(TableClause)
@compiles(Table)
def _refuse_plain_tenant_table(element: TableClause, compiler: Any, **kw: Any) -> str:
    """Check the statement being compiled once, when it names a tenant table."""
    if not compiler.__dict__.get(_CHECKED) and _is_tenant_table(element):
        compiler.__dict__[_CHECKED] = True
        statement = compiler.statement
        if statement is not None and _tenant_scoped(statement):
            load = bool(compiler.execution_options.get(RELATIONSHIP_LOAD))
            model = plain_tenant_model(statement, relationship_load=load)
            if model is not None:
                msg = (
                    "An ORM statement reads a tenant table where no tenant criteria reach "
                    "(its Table object or a Core alias in a subquery, CTE or LATERAL, or "
                    "the expression of with_expression()); use the mapped class or its "
                    "attributes instead."
                )
                raise unscoped(model, msg)
    return compiler.visit_table(element, **kw)  # type: ignore[no-any-return]
