"""Query-string parameters for search and keyset pages, checked against a repository."""

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Query, Request

from sqla_repo.ext._fastapi_query_parser import QueryParser, QueryValidationError
from sqla_repo.pagination import CURSOR_SECRET_ENV, cursor_secret_is_ephemeral
from sqla_repo.repository import BaseRepository

__all__ = ["CursorParams", "QueryValidationError", "SearchParams", "cursor_params", "search_params"]

FilterValues = Mapping[str, str | list[str]]

logger = logging.getLogger("sqla_repo.ext.fastapi")


@dataclass(frozen=True)
class SearchParams:
    """The parameters of an offset page, already checked against the repository.

    Attributes:
        limit: The page size.
        offset: How many rows to skip.
        order_by: Sort fields, ``"-"`` first for descending (empty: the default order).
        filters: ``{"field__operator": value}``, a value being the query-string text or,
            for a repeated list parameter, the list of its values.
    """

    limit: int
    offset: int = 0
    order_by: tuple[str, ...] = ()
    filters: FilterValues = field(default_factory=dict)

    def as_kwargs(self) -> dict[str, Any]:
        """Return the keyword arguments of ``search()``.

        See [`BaseRepository.search`][sqla_repo.repository.BaseRepository.search].

        Example:
            ```python
            result = await users.search(User.is_active, **params.as_kwargs())
            ```
        """
        return {
            "filters": dict(self.filters),
            "order_by": list(self.order_by) or None,
            "limit": self.limit,
            "offset": self.offset,
        }


@dataclass(frozen=True)
class CursorParams:
    """The parameters of a keyset page, already checked against the repository.

    Attributes:
        limit: The page size.
        cursor: The ``next_cursor`` of the previous page: this page comes after it.
        before: The ``previous_cursor`` of the next page: this page comes before it.
        order_by: Sort fields, ``"-"`` first for descending (empty: the default order).
        filters: As for [`SearchParams`][sqla_repo.ext.fastapi.SearchParams].
    """

    limit: int
    cursor: str | None = None
    before: str | None = None
    order_by: tuple[str, ...] = ()
    filters: FilterValues = field(default_factory=dict)

    def as_kwargs(self) -> dict[str, Any]:
        """Return the keyword arguments of ``paginate()``.

        See [`BaseRepository.paginate`][sqla_repo.repository.BaseRepository.paginate].

        Example:
            ```python
            page = await posts.paginate(**params.as_kwargs())
            ```
        """
        return {
            "filters": dict(self.filters),
            "order_by": list(self.order_by) or None,
            "limit": self.limit,
            "after": self.cursor,
            "before": self.before,
        }


def _default_limit(repository: type[BaseRepository[Any]], default_limit: int) -> int:
    return max(1, min(default_limit, repository.max_page_size))


def search_params(
    repository: type[BaseRepository[Any]],
    *,
    default_limit: int = 20,
    extra_params: Collection[str] = (),
    aliases: Mapping[str, str] | None = None,
) -> Callable[..., Awaitable[SearchParams]]:
    """Make a dependency reading an offset page's query string for *repository*.

    The query string holds ``limit`` (``1..max_page_size``, default
    ``min(default_limit, max_page_size)``), ``offset`` (default 0), ``sort``
    (``-created_at,name``: a leading ``-`` for descending) and filters, one parameter
    each, in the syntax of [`compile_filters`][sqla_repo.filters.compile_filters]:
    ``?email__ilike=%25@example.org&status__in=active,new&age__between=25,35``. The list
    operators ``in``, ``not_in`` and ``between`` take comma-separated values, or the
    parameter repeated once per value (``?tag__in=a&tag__in=b,c`` is two values, the
    second holding a comma); any other parameter may appear once.

    Sort fields and filters are checked against the repository's ``sortable_fields``
    and ``filterable_fields`` (operators too, where ``filterable_fields`` maps fields to
    their operators); every other query parameter is an error, so a typo never
    silently returns every row. A repository must set at least one of the two
    whitelists; the one left unset (``None``) accepts nothing, and any use of it is a
    422. Query parameters the route declares itself (on the
    endpoint or another dependency) are left alone, as are *extra_params*. Problems are
    answered with FastAPI's own 422 validation error, one entry per offending parameter
    (``"loc": ["query", "emial__ilike"]``), with the reason as ``type``.

    In the OpenAPI schema ``limit``, ``offset`` and ``sort`` are ordinary parameters
    (with their bounds and the sortable fields); the filters appear as one free-form
    object parameter named ``filters``, whose properties are sent as separate query
    parameters (OpenAPI's default ``style: form, explode: true``) and whose description
    and ``propertyNames`` pattern list the filterable fields and each one's operators.

    *aliases* publish a whitelisted field under a name of the API's own:
    ``aliases={"tag": "tags.name", "favorites": "favorites_count"}`` accepts
    ``?tag=sql`` and ``?tag__eq=sql`` (the filter ``tags.name__eq``) and
    ``?sort=-favorites``. An aliased field is known to clients by its public name only:
    ``?tags.name=sql`` is refused like any unknown field (map a name to itself,
    ``{"tags.name": "tags.name"}``, to accept both), errors name the public name, and
    the OpenAPI descriptions list the public names. The parameters the dependency gives
    hold the whitelisted names, ready for the repository.

    Args:
        repository: The repository class whose whitelists and ``max_page_size`` apply.
        default_limit: The page size when the request gives none (capped at
            ``max_page_size``).
        extra_params: Other query parameters to leave alone, when the route reads them
            from the ``Request`` rather than declaring them.
        aliases: Public name -> name in ``filterable_fields`` or ``sortable_fields`` (the
            alias applies wherever its target is whitelisted). A public name is letters,
            digits, ``_``, ``.`` or ``-`` without ``__``, and is neither one of the
            dependency's own parameters nor a whitelisted field it would hide.

    Returns:
        The dependency; it gives a [`SearchParams`][sqla_repo.ext.fastapi.SearchParams].

    Raises:
        ConfigurationError: Neither ``filterable_fields`` nor ``sortable_fields`` is set,
            a whitelist is malformed or names something the model does not have, or an
            alias is malformed or stands for a field neither whitelist holds.
    """
    parser = QueryParser(
        repository, {"limit", "offset", "sort", *extra_params}, "search_params", aliases
    )
    max_size = repository.max_page_size

    async def dependency(
        request: Request,
        *,
        limit: Annotated[
            int, Query(ge=1, le=max_size, description=f"Page size, 1 to {max_size}.")
        ] = _default_limit(repository, default_limit),
        offset: Annotated[int, Query(ge=0, description="How many items to skip.")] = 0,
        sort: Annotated[str | None, parser.sort_query()] = None,
        filters: Annotated[Any, parser.filters_query()] = None,
    ) -> SearchParams:
        del filters  # documentation only: read from the query string with the others
        order_by, values = parser.parse(request, sort, {})
        return SearchParams(limit=limit, offset=offset, order_by=order_by, filters=values)

    dependency.__name__ = dependency.__qualname__ = f"{repository.__name__}_search_params"
    return dependency


def cursor_params(
    repository: type[BaseRepository[Any]],
    *,
    default_limit: int = 20,
    extra_params: Collection[str] = (),
    aliases: Mapping[str, str] | None = None,
) -> Callable[..., Awaitable[CursorParams]]:
    """Make a dependency reading a keyset page's query string for *repository*.

    Like [`search_params`][sqla_repo.ext.fastapi.search_params], with ``cursor`` (the
    previous page's ``next_cursor``) or ``before`` (the next page's
    ``previous_cursor``) instead of ``offset``. A malformed or tampered cursor, one made
    for another sort order, or both parameters at once are 422 errors.

    Args:
        repository: The repository class whose whitelists and ``max_page_size`` apply.
        default_limit: The page size when the request gives none (capped at
            ``max_page_size``).
        extra_params: Other query parameters to leave alone.
        aliases: Public names of whitelisted fields, as for ``search_params``.

    Returns:
        The dependency; it gives a [`CursorParams`][sqla_repo.ext.fastapi.CursorParams].

    Raises:
        ConfigurationError: Neither ``filterable_fields`` nor ``sortable_fields`` is set,
            a whitelist is malformed or names something the model does not have, or an
            alias is malformed or stands for a field neither whitelist holds.
    """
    parser = QueryParser(
        repository, {"limit", "cursor", "before", "sort", *extra_params}, "cursor_params", aliases
    )
    max_size = repository.max_page_size
    if cursor_secret_is_ephemeral():
        logger.warning(
            "cursor_params(%s): keyset cursors are signed with a random per-process secret; "
            "a cursor made by one worker or before a restart will be refused. Set %s (the "
            "same value in every worker) or call set_cursor_secret() at start-up.",
            repository.__name__,
            CURSOR_SECRET_ENV,
        )

    async def dependency(
        request: Request,
        *,
        limit: Annotated[
            int, Query(ge=1, le=max_size, description=f"Page size, 1 to {max_size}.")
        ] = _default_limit(repository, default_limit),
        cursor: Annotated[
            str | None,
            Query(description="The `next_cursor` of the previous page, to get the next one."),
        ] = None,
        before: Annotated[
            str | None,
            Query(description="The `previous_cursor` of a page, to get the one before it."),
        ] = None,
        sort: Annotated[str | None, parser.sort_query()] = None,
        filters: Annotated[Any, parser.filters_query()] = None,
    ) -> CursorParams:
        del filters  # documentation only: read from the query string with the others
        order_by, values = parser.parse(request, sort, {"cursor": cursor, "before": before})
        return CursorParams(
            limit=limit, cursor=cursor, before=before, order_by=order_by, filters=values
        )

    dependency.__name__ = dependency.__qualname__ = f"{repository.__name__}_cursor_params"
    return dependency
