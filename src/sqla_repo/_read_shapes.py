"""The shapes of the repository's reads: joins that fan out, one row per entity, counts.

``base_select()`` may join other tables; these helpers tell whether a join can repeat
the entity and rewrite such a statement to select each entity once, and count rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.sql import Join

if TYPE_CHECKING:
    from sqla_repo._statements import ModelInfo

__all__ = ["by_key", "count_statement", "fans_out", "has_join"]


def has_join(stmt: Select[Any]) -> bool:
    """Whether *stmt* joins other tables (so its rows may fan out).

    Reads the statement's own join list where SQLAlchemy keeps one:
    ``get_final_froms()`` compiles an ORM statement to answer (about 0.35 ms).
    """
    setup_joins = getattr(stmt, "_setup_joins", None)
    from_obj = getattr(stmt, "_from_obj", None)
    if setup_joins is None or from_obj is None:
        return any(isinstance(f, Join) for f in stmt.get_final_froms())
    return bool(setup_joins) or any(isinstance(f, Join) for f in from_obj)


def fans_out(stmt: Select[Any]) -> bool:
    """Whether the joins of *stmt* may repeat its entity (a collection or an ad hoc join).

    A join along a many-to-one relationship (``join(Post.author)``) adds at most one row
    per entity; every other join, including one given as a table and an ON clause, is
    assumed to fan out.
    """
    setup_joins = getattr(stmt, "_setup_joins", None)
    from_obj = getattr(stmt, "_from_obj", None)
    if setup_joins is None or from_obj is None or any(isinstance(f, Join) for f in from_obj):
        return True
    for target, onclause, *_ in setup_joins:
        relationship = next(
            (
                getattr(e, "property", None)
                for e in (onclause, target)
                if hasattr(getattr(e, "property", None), "uselist")
            ),
            None,
        )
        if relationship is None or relationship.uselist:
            return True
    return False


def by_key(stmt: Select[Any], info: ModelInfo) -> Select[Any]:
    """Return ``SELECT model WHERE pk IN (SELECT pk FROM <stmt>)``: one row per entity.

    Deduplicates a fanning join without ``DISTINCT`` over every column, which PostgreSQL
    refuses for ``json`` columns and which forbids ORDER BY expressions outside the
    select list. The filters stay inside the subquery; ORDER BY, LIMIT and loader options
    go on the outer statement, which names the model's own table only.
    """
    keys = stmt.with_only_columns(*info.pk_attrs, maintain_column_froms=True).order_by(None)
    target = tuple_(*info.pk_attrs) if len(info.pk_attrs) > 1 else info.pk_attrs[0]
    outer = select(info.model).where(target.in_(keys))
    execution_options = stmt.get_execution_options()
    return outer.execution_options(**execution_options) if execution_options else outer


def count_statement(stmt: Select[Any], info: ModelInfo, *, joined: bool) -> Select[Any]:
    """Return a COUNT of the distinct base rows of *stmt*, without ORDER BY or loader options.

    A plain ``count(*)`` over the filtered table when there is no join; over the distinct
    primary keys when a join could fan rows out.
    """
    if joined:
        bare = stmt.order_by(None).limit(None).offset(None)
        keys = bare.with_only_columns(*info.pk_attrs).distinct().subquery()
        return select(func.count()).select_from(keys)
    where = stmt.whereclause
    count = select(func.count()).select_from(info.model)
    return count.where(where) if where is not None else count
