"""Execution of keyset pages (the statement pieces live in :mod:`sqla_repo.pagination`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Double, cast, select
from sqlalchemy import inspect as sa_inspect

from sqla_repo._keyset import keyset_condition, lossy_indexes
from sqla_repo.exceptions import InvalidFilterError
from sqla_repo.pagination import (
    CursorPage,
    cursor_scope,
    cursor_spec,
    decode_cursor,
    encode_cursor,
    row_values,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Select
    from sqlalchemy.ext.asyncio import AsyncSession

    from sqla_repo.filters import SortKey

__all__ = ["keyset_page"]


async def keyset_page(
    session: AsyncSession,
    stmt: Select[Any],
    model: type[Any],
    keys: Sequence[SortKey],
    *,
    limit: int,
    after: str | None,
    before: str | None,
    repository: type[Any],
    filters: object,
    include_deleted: bool,
    max_age: float | None,
) -> CursorPage[Any]:
    """Fetch the page of *stmt* after (or before) a cursor, ordered by *keys*.

    Cursors are bound to *model* and *keys*, and to the scope of *repository*, *filters*,
    *include_deleted* and the tenant in force (see
    [`cursor_scope`][sqla_repo.pagination.cursor_scope]); those older than *max_age*
    seconds are refused.
    """
    if after is not None and before is not None:
        raise InvalidFilterError(
            "give either after or before, not both",
            model=model,
            detail={"field": "cursor", "reason": "both_cursors"},
        )
    spec = cursor_spec(model, keys)
    scope = cursor_scope(repository, filters=filters, include_deleted=include_deleted)
    backward = before is not None
    cursor = before if backward else after
    params: dict[str, Any] | None = None
    if cursor is not None:
        values = decode_cursor(cursor, spec=spec, scope=scope, max_age=max_age)
        condition, params = keyset_condition(keys, values, forward=not backward)
        stmt = stmt.where(condition)
    order = [k.reversed() for k in keys] if backward else keys
    stmt = stmt.order_by(*(k.clause() for k in order)).limit(limit + 1)
    result = await session.scalars(stmt, params)
    rows = list(result.unique().all())  # a joined eager collection repeats the entity
    more = len(rows) > limit
    items = rows[:limit]
    if backward:
        items.reverse()
        has_next, has_previous = True, more
    else:
        has_next, has_previous = more, after is not None
    next_cursor = (
        encode_cursor(await _boundary(session, model, keys, items[-1]), spec=spec, scope=scope)
        if has_next and items
        else None
    )
    previous_cursor = (
        encode_cursor(await _boundary(session, model, keys, items[0]), spec=spec, scope=scope)
        if has_previous and items
        else None
    )
    return CursorPage(
        items=items,
        next_cursor=next_cursor,
        previous_cursor=previous_cursor,
        has_next=has_next,
        has_previous=has_previous,
    )


async def _boundary(
    session: AsyncSession, model: type[Any], keys: Sequence[SortKey], obj: object
) -> list[Any]:
    """The sort-key values of *obj*, exact even for 4-byte floats on MariaDB/MySQL.

    Their drivers read a ``FLOAT`` as text with six significant digits (``100000.5``
    arrives as ``100001``), which would put the boundary between other rows. Those keys
    are read again, widened to ``DOUBLE`` (exact for a single-precision value), with one
    small query for the boundary row only.
    """
    values = row_values(obj, keys)
    lossy = lossy_indexes(keys)
    if not lossy:
        return values
    mapper = sa_inspect(model)
    if session.get_bind(mapper=mapper).dialect.name not in {"mysql", "mariadb"}:
        return values
    identity = mapper.primary_key_from_instance(obj)
    by_key = [column == value for column, value in zip(mapper.primary_key, identity, strict=True)]
    stmt: Any = (
        select(*(cast(keys[i].expression, Double()) for i in lossy))
        .where(*by_key)
        .execution_options(include_deleted=True)
    )
    exact = (await session.execute(stmt)).one()
    for index, value in zip(lossy, exact, strict=True):
        values[index] = value
    return values
