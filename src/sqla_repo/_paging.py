"""Execution of keyset pages (the statement pieces live in :mod:`sqla_repo.pagination`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqla_repo.exceptions import InvalidFilterError
from sqla_repo.pagination import (
    CursorPage,
    cursor_spec,
    decode_cursor,
    encode_cursor,
    keyset_predicate,
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
) -> CursorPage[Any]:
    """Fetch the page of *stmt* after (or before) a cursor, ordered by *keys*."""
    if after is not None and before is not None:
        raise InvalidFilterError(
            "give either after or before, not both",
            model=model,
            detail={"field": "cursor", "reason": "both_cursors"},
        )
    spec = cursor_spec(model, keys)
    backward = before is not None
    cursor = before if backward else after
    if cursor is not None:
        values = decode_cursor(cursor, spec=spec)
        stmt = stmt.where(keyset_predicate(keys, values, forward=not backward))
    order = [k.reversed() for k in keys] if backward else keys
    stmt = stmt.order_by(*(k.clause() for k in order)).limit(limit + 1)
    result = await session.scalars(stmt)
    rows = list(result.unique().all() if stmt._with_options else result.all())  # noqa: SLF001
    more = len(rows) > limit
    items = rows[:limit]
    if backward:
        items.reverse()
        has_next, has_previous = True, more
    else:
        has_next, has_previous = more, after is not None
    next_cursor = (
        encode_cursor(row_values(items[-1], keys), spec=spec) if has_next and items else None
    )
    previous_cursor = (
        encode_cursor(row_values(items[0], keys), spec=spec) if has_previous and items else None
    )
    return CursorPage(
        items=items,
        next_cursor=next_cursor,
        previous_cursor=previous_cursor,
        has_next=has_next,
        has_previous=has_previous,
    )
