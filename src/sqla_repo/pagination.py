"""Pages of results: offset pages, keyset (cursor) pages and the cursor codec.

[`SearchResult`][sqla_repo.pagination.SearchResult] is an offset page with its total;
[`CursorPage`][sqla_repo.pagination.CursorPage] is a keyset page with opaque cursors.

A cursor holds the sort-key values of the row at a page boundary, encrypted and
authenticated with keys derived from a secret (HMAC-SHA256 in counter mode, then an
HMAC-SHA256 tag: the standard library only). It reveals no value, cannot be forged or
altered, and is bound to the model and sort order
([`cursor_spec`][sqla_repo.pagination.cursor_spec]) and to its scope
([`cursor_scope`][sqla_repo.pagination.cursor_scope]: the repository class, the
untrusted ``filters``, ``include_deleted`` and the tenant in force). It carries its
issue time, so [`BaseRepository.cursor_max_age`][sqla_repo.repository.BaseRepository]
can make it expire. Values are stored as JSON with type tags (never pickle), so
``int``, ``float`` (bit for bit, NaN and infinities included), ``Decimal``, ``str``,
``bool``, ``None``, ``datetime``, ``date``, ``time``, ``UUID`` and enum members (stored
by value) round-trip. A cursor that is malformed, truncated, longer than
[`MAX_CURSOR_LENGTH`][sqla_repo.pagination.MAX_CURSOR_LENGTH], altered, made with
another secret, for another sort order or scope, or expired raises
[`InvalidFilterError`][sqla_repo.exceptions.InvalidFilterError] with
``detail["field"] == "cursor"`` and a ``detail["reason"]``.

The secret comes from [`set_cursor_secret()`][sqla_repo.pagination.set_cursor_secret],
else from the ``SQLA_REPO_CURSOR_SECRET`` environment variable (read at the first use),
else it is random per process: safe, but then a cursor is valid only in the process that
made it ([`cursor_secret_is_ephemeral()`][sqla_repo.pagination.cursor_secret_is_ephemeral]
tells). Deployments with several processes or hosts must share one secret:

```python
set_cursor_secret(os.environ["CURSOR_SECRET"])
```

[`keyset_predicate`][sqla_repo.pagination.keyset_predicate] builds the ``WHERE`` clause
that selects the rows after (or before) a cursor, for any mix of ascending and
descending keys, with NULL sorting as the smallest value as
[`SortKey.clause()`][sqla_repo.filters.SortKey.clause] orders it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqla_repo._cursors import (
    CURSOR_SECRET_ENV,
    MAX_CURSOR_LENGTH,
    _dump,
    _encode_value,
    cursor_secret_is_ephemeral,
    decode_cursor,
    encode_cursor,
    set_cursor_secret,
)
from sqla_repo._keyset import keyset_predicate
from sqla_repo.context import tenant_scope
from sqla_repo.exceptions import ConfigurationError, InvalidFilterError

if TYPE_CHECKING:
    from sqla_repo.filters import SortKey

__all__ = [
    "CURSOR_SECRET_ENV",
    "MAX_CURSOR_LENGTH",
    "CursorPage",
    "SearchResult",
    "cursor_scope",
    "cursor_secret_is_ephemeral",
    "cursor_spec",
    "decode_cursor",
    "encode_cursor",
    "keyset_predicate",
    "row_values",
    "set_cursor_secret",
]

T = TypeVar("T")


# Not slots=True: a frozen, slotted dataclass fails when it is built through a
# parametrised alias (``SearchResult[User](...)``) on some supported Python versions.
@dataclass(frozen=True)
class SearchResult(Generic[T]):
    """One offset page of results, with the total when it was counted.

    Attributes:
        items: The rows of this page.
        total: How many rows match in all, or ``None`` when not counted.
        limit: The page size asked for.
        offset: How many matching rows come before this page.
        has_more: Whether rows follow this page, when known without a total (a query
            fetching ``limit + 1`` rows finds out). ``None`` lets ``total`` decide.

    Raises:
        ValueError: ``limit < 1``, ``offset < 0``, ``total < 0``, or neither ``total``
            nor ``has_more`` is given.
    """

    items: Sequence[T]
    total: int | None
    limit: int
    offset: int
    has_more: bool | None = None

    def __post_init__(self) -> None:
        if self.limit < 1 or self.offset < 0 or (self.total is not None and self.total < 0):
            msg = "SearchResult needs limit >= 1, offset >= 0 and total >= 0."
            raise ValueError(msg)
        if self.total is None and self.has_more is None:
            msg = "SearchResult needs total or has_more to tell whether a next page exists."
            raise ValueError(msg)

    @property
    def page(self) -> int:
        """The 1-based page number (``offset // limit + 1``)."""
        return self.offset // self.limit + 1

    @property
    def page_size(self) -> int:
        """The page size; the same as ``limit``."""
        return self.limit

    @property
    def total_pages(self) -> int | None:
        """How many pages the total fills (``0`` when nothing matches; ``None`` uncounted)."""
        if self.total is None:
            return None
        return math.ceil(self.total / self.limit)

    @property
    def has_next(self) -> bool:
        """Whether rows follow this page."""
        if self.has_more is not None:
            return self.has_more
        return self.total is not None and self.offset + len(self.items) < self.total

    @property
    def has_previous(self) -> bool:
        """Whether rows come before this page (``offset > 0``)."""
        return self.offset > 0


@dataclass(frozen=True)
class CursorPage(Generic[T]):
    """One keyset page of results.

    Pass ``next_cursor`` as ``after=`` for the next page and ``previous_cursor`` as
    ``before=`` for the previous one.

    Attributes:
        items: The rows of this page, in the requested order.
        next_cursor: The cursor of the page after this one, or ``None`` at the end.
        previous_cursor: The cursor of the page before this one, or ``None`` at the start.
        has_next: Whether a page follows; always true when ``next_cursor`` is given.
        has_previous: Whether a page comes before; always true when ``previous_cursor``
            is given.
    """

    items: Sequence[T]
    next_cursor: str | None = None
    previous_cursor: str | None = None
    has_next: bool = False
    has_previous: bool = False

    def __post_init__(self) -> None:
        # A frozen dataclass sets its own fields through object.__setattr__ too.
        if self.next_cursor is not None:
            object.__setattr__(self, "has_next", True)
        if self.previous_cursor is not None:
            object.__setattr__(self, "has_previous", True)


# -- What a cursor is bound to ------------------------------------------------------------


def cursor_spec(model: type[Any], keys: Sequence[SortKey]) -> str:
    """Describe a model and sort order, to bind cursors to them.

    Args:
        model: The mapped class being paginated.
        keys: The sort keys, as [`compile_order_by`][sqla_repo.filters.compile_order_by]
            returns them.

    Returns:
        A string such as ``"app.models.User:-created_at,id"``.
    """
    order = ",".join(("-" if key.descending else "") + key.name for key in keys)
    return f"{model.__module__}.{model.__qualname__}:{order}"


def _canonical(value: object) -> Any:
    """A JSON-ready form of a filter value: equal for equal values, whatever the container."""
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if isinstance(value, AbstractSet):  # no order: sorted
        return {"s": sorted(_dump(_canonical(item)) for item in value)}
    if isinstance(value, Mapping):
        return {"m": sorted(_dump([_canonical(k), _canonical(v)]) for k, v in value.items())}
    try:
        return _encode_value(value)  # scalars as in a cursor, enum members by value
    except InvalidFilterError:
        # Filters refuse what they cannot coerce; anything else is compared by its text.
        return {"r": f"{type(value).__module__}.{type(value).__qualname__}:{value!r}"}


def _text_key(item: list[Any]) -> str:
    """Sort key of a filter mapping's entry: its field name, or the JSON of another key."""
    key = item[1]
    return "s" + key if isinstance(key, str) else "j" + _dump(key)


def _canonical_filters(filters: object) -> list[Any]:
    """The filters in a canonical order: conditions are ANDed, their order is irrelevant."""
    if not filters:
        return []
    if isinstance(filters, Mapping):  # keys are unique: sorting never compares values
        items = [["m", _canonical(key), _canonical(value)] for key, value in filters.items()]
        return sorted(items, key=_text_key)
    if isinstance(filters, (list, tuple)):
        return sorted((_canonical(item) for item in filters), key=_dump)
    return [_canonical(filters)]


def cursor_scope(
    repository: type[Any], *, filters: object = None, include_deleted: bool = False
) -> str:
    """Describe where a cursor may be used: repository class, filters, tenant.

    [`BaseRepository.paginate()`][sqla_repo.repository.BaseRepository.paginate] binds
    every cursor to this scope, with the tenant scope in force when it is called.

    Args:
        repository: The repository class (its module and qualified name are bound).
        filters: The untrusted ``filters=`` of the call, as given: a mapping (its order
            is irrelevant) or a sequence of ``(field, operator, value)`` (its order is
            irrelevant too). Values are compared as given, so ``5`` and ``"5"`` differ.
        include_deleted: Whether soft-deleted rows are included.

    Returns:
        A canonical string; equal scopes give equal strings.

    Raises:
        InvalidFilterError: A filter value cannot be written down (nested too deeply, or
            an integer of thousands of digits); ``filters`` validation refuses those first.
    """
    scope = tenant_scope()
    if not filters and (scope.tenant is None or type(scope.tenant) in _PLAIN_TENANTS):
        # The common case, no client filters: one text per class, flag and tenant.
        key = (repository, bool(include_deleted), scope.tenant, scope.all_tenants)
        found = _SCOPES.get(key)
        if found is None:
            found = _scope_text(repository, filters, include_deleted, scope)
            if len(_SCOPES) >= _MAX_SCOPES:
                _SCOPES.clear()
            _SCOPES[key] = found
        return found
    return _scope_text(repository, filters, include_deleted, scope)


_PLAIN_TENANTS = frozenset({str, int})
_SCOPES: dict[tuple[Any, ...], str] = {}
_MAX_SCOPES = 1024


def _scope_text(repository: type[Any], filters: object, include_deleted: bool, scope: Any) -> str:  # noqa: FBT001
    try:
        return _dump(
            [
                1,
                f"{repository.__module__}.{repository.__qualname__}",
                bool(include_deleted),
                scope.tenant,
                scope.all_tenants,
                _canonical_filters(filters),
            ]
        )
    except (ValueError, RecursionError):
        raise InvalidFilterError(
            "A filter value is too large or too deeply nested.",
            detail={"field": "filters", "reason": "invalid_value"},
        ) from None


# -- Keyset pagination --------------------------------------------------------------------


def row_values(obj: object, keys: Sequence[SortKey]) -> list[Any]:
    """Read the sort-key values of a loaded object, to make its cursor.

    Args:
        obj: An instance of the paginated model, with the sort columns loaded (a deferred
            or expired column would need IO to read).
        keys: The sort keys.

    Returns:
        One value per key.

    Raises:
        ConfigurationError: A key is an expression rather than a column of the model;
            keyset pagination needs the values on the object.
    """
    values = []
    for key in keys:
        if key.attribute is None:
            msg = f"Keyset pagination cannot sort on the expression {key.name!r}."
            raise ConfigurationError(msg)
        values.append(getattr(obj, key.attribute))
    return values
