"""Whether a mapped entity selects only what its mappers' own tables hold.

Loader criteria filter an aliased entity through its columns: ``tenant_id`` of the base
table. That scopes every row when the entity's selectable is its mappers' own tables
joined by their inherit conditions (``aliased(Company)``, ``with_polymorphic(...,
aliased=True)``, flat aliases), and a concrete hierarchy's polymorphic union. A
selectable the application gives may join a subclass table loosely
(``animals JOIN cats ON animals.id != cats.id``), add another table, group or limit:
then the criteria on the base table do not scope what the other tables add.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression, BooleanClauseList, ColumnClause
from sqlalchemy.sql.selectable import CompoundSelect, Join, Select, TableClause

from sqla_repo._scoped_tables import table_of

if TYPE_CHECKING:
    from sqlalchemy.orm import Mapper

__all__ = ["own_join", "own_selectable"]


def _hierarchy(entity: Any) -> set[Mapper[Any]]:
    mappers: set[Mapper[Any]] = set()
    for mapper in (entity.mapper, *entity.with_polymorphic_mappers):
        mappers.update(mapper.iterate_to_root())
    return mappers


def _column_pairs(condition: Any) -> frozenset[frozenset[tuple[Any, str]]] | None:
    """The ``(table, column name)`` pairs an equality (or an AND of them) compares."""
    is_and = isinstance(condition, BooleanClauseList) and condition.operator is operators.and_
    parts = condition.clauses if is_and else (condition,)
    pairs = set()
    for part in parts:
        if not (
            isinstance(part, BinaryExpression)
            and part.operator is operators.eq
            and isinstance(part.left, ColumnClause)
            and isinstance(part.right, ColumnClause)
        ):
            return None
        pairs.add(frozenset((table_of(side.table), side.name) for side in (part.left, part.right)))
    return frozenset(pairs)


def own_join(join: Join, entity: Any) -> bool:
    """Whether *join* joins only *entity*'s own tables (or aliases), by inherit conditions."""
    mappers = _hierarchy(entity)
    own = {table for mapper in mappers for table in mapper.tables}
    conditions = {
        _column_pairs(mapper.inherit_condition)
        for mapper in mappers
        if mapper.inherit_condition is not None
    }
    pending: list[Any] = [join]
    while pending:
        item = pending.pop()
        if isinstance(item, Join):
            if _column_pairs(item.onclause) not in conditions:
                return False
            pending.extend((item.left, item.right))
        elif table_of(item) not in own:
            return False
    return True


def own_selectable(entity: Any) -> bool:
    """Whether *entity*'s selectable is built from its mappers' own tables only.

    Its inner SELECT (if any) is then scoped through the entity, and not looked at.
    """
    selectable = entity.selectable
    if isinstance(selectable, Join):
        return own_join(selectable, entity)
    inner = getattr(selectable, "element", None)
    if isinstance(inner, CompoundSelect):
        return not entity.is_aliased_class  # a concrete hierarchy's polymorphic union
    if not isinstance(inner, Select):
        return True  # a table or an alias of one: the criteria reach its columns
    return _own_select(inner, entity)


def _own_select(inner: Select[Any], entity: Any) -> bool:
    """Whether *inner* selects *entity*'s own tables, joined by inherit conditions."""
    if _shaped(inner):
        return False
    own = {table for mapper in _hierarchy(entity) for table in mapper.tables}
    columns = inner._raw_columns  # noqa: SLF001
    if not all(isinstance(c, TableClause) and table_of(c) in own for c in columns):
        return False
    froms = inner._from_obj  # noqa: SLF001
    if not froms:
        return len(columns) == 1
    return len(froms) == 1 and isinstance(froms[0], Join) and own_join(froms[0], entity)


def _shaped(select: Select[Any]) -> bool:
    """Whether *select* filters, groups, joins or limits beyond its FROM."""
    return bool(
        select._where_criteria  # noqa: SLF001
        or select._having_criteria  # noqa: SLF001
        or select._group_by_clauses  # noqa: SLF001
        or select._setup_joins  # noqa: SLF001
        or select._limit_clause is not None  # noqa: SLF001
        or select._offset_clause is not None  # noqa: SLF001
        or select._distinct  # noqa: SLF001
    )
