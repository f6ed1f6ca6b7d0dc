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
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import and_, false, literal, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import sqltypes
from sqlalchemy.sql.functions import FunctionElement

from sqla_repo._coerce import UNSUPPORTED, CoercionError, coerce, python_type, unwrap
from sqla_repo._cursors import (
    CURSOR_SECRET_ENV,
    MAX_CURSOR_LENGTH,
    _cursor_error,
    _dump,
    _encode_value,
    cursor_secret_is_ephemeral,
    decode_cursor,
    encode_cursor,
    set_cursor_secret,
)
from sqla_repo.context import tenant_scope
from sqla_repo.exceptions import ConfigurationError, InvalidFilterError

if TYPE_CHECKING:
    from sqlalchemy.sql.compiler import SQLCompiler
    from sqlalchemy.sql.elements import ColumnElement

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


def _is_finite(value: object) -> bool:
    """Whether a float or Decimal is finite (other values count as finite)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Decimal):
        return value.is_finite()
    return True


def _coerce_key(key: SortKey, value: object) -> Any:
    target = python_type(key.expression.type)
    if value is None or target is UNSUPPORTED:
        return value
    if type(value) is target and not _is_finite(value):
        # A NaN or infinite boundary read from a float or numeric column: the cursor is
        # authenticated, so the value is the row's own, which the column holds.
        return value
    try:
        return coerce(value, key.expression.type, max_length=None)
    except CoercionError:
        raise _cursor_error(
            message="The cursor does not fit the sort order.", reason="cursor_mismatch"
        ) from None


def _expanded(
    keys: Sequence[SortKey], bound: Sequence[Any], *, forward: bool
) -> ColumnElement[bool]:
    """``(k1 > v1) OR (k1 = v1 AND k2 > v2) OR ...``, NULL being the smallest value."""
    disjuncts: list[ColumnElement[bool]] = []
    equal: list[ColumnElement[bool]] = []
    for key, value in zip(keys, bound, strict=True):
        column = key.expression
        ordered = _in_sort_order(column)  # what <, > and = compare
        upward = key.descending != forward  # the rows past the boundary hold larger values
        past: ColumnElement[bool] | None
        if value is None:
            past = column.is_not(None) if upward else None
        elif upward:
            past = ordered > value
        else:
            past = or_(ordered < value, column.is_(None)) if key.nullable else ordered < value
        if past is not None:
            disjuncts.append(and_(*equal, past))
        equal.append(column.is_(None) if value is None else ordered == value)
    if not disjuncts:
        return false()
    return or_(*disjuncts)


def keyset_predicate(
    keys: Sequence[SortKey], values: Sequence[Any], *, forward: bool
) -> ColumnElement[bool]:
    """Build the condition selecting the rows after (or before) a boundary row.

    The condition is the expanded form ``(k1 > v1) OR (k1 = v1 AND k2 > v2) OR ...``,
    where each comparison follows its key's direction and NULL is the smallest value
    (for an ascending key, the rows after a NULL are the non-NULL ones; the rows after
    ``v`` in a descending key include the NULLs). Row-value comparison is not used: it
    is wrong with mixed directions and NULLs. When the first key cannot be NULL past the
    boundary, a redundant range condition on it lets the database use an index.

    Args:
        keys: The sort keys, ending with a unique one (the primary key).
        values: The boundary row's values (from
            [`decode_cursor`][sqla_repo.pagination.decode_cursor]).
        forward: ``True`` for the rows after the boundary in the keys' order; ``False``
            for the rows before it (query them in reversed order, then reverse them).

    Returns:
        A boolean expression for ``where()``.

    Raises:
        InvalidFilterError: The values do not fit the keys.
    """
    if not keys or len(keys) != len(values):
        raise _cursor_error(
            message="The cursor does not fit the sort order.", reason="cursor_mismatch"
        )
    # Bound parameters even for True/False, which SQLAlchemy would otherwise inline as
    # constants that only = and != accept.
    bound = [
        None if raw is None else _boundary(key, raw)
        for key, raw in zip(keys, map(_coerce_key, keys, values), strict=True)
    ]
    if len(keys) == 1 and bound[0] is not None and not keys[0].nullable:
        # The common case, a unique non-null key (the primary key): one comparison.
        column = _in_sort_order(keys[0].expression)
        return column > bound[0] if keys[0].descending != forward else column < bound[0]
    predicate = _expanded(keys, bound, forward=forward)
    first, value = _in_sort_order(keys[0].expression), bound[0]
    if len(keys) > 1 and value is not None:
        if keys[0].descending != forward:
            predicate = and_(first >= value, predicate)
        elif not keys[0].nullable:
            predicate = and_(first <= value, predicate)
    return predicate


class _DeclarationOrder(FunctionElement[Any]):
    """A native enum key or boundary value, compared in the enum's declaration order.

    ``ORDER BY`` sorts a native enum in declaration order on PostgreSQL and
    MariaDB/MySQL, but MariaDB/MySQL compare an ``ENUM`` with a string as text: there the
    comparison goes through ``FIELD(x, 'first', 'second', ...)``, the declaration index,
    so the keyset condition agrees with the order. Elsewhere it is *x* itself.
    """

    name = "declaration_order"
    inherit_cache = True


@compiles(_DeclarationOrder)
def _declaration_order(element: _DeclarationOrder, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(next(iter(element.clauses)), **kw)


@compiles(_DeclarationOrder, "mysql")
@compiles(_DeclarationOrder, "mariadb")
def _declaration_order_mysql(element: _DeclarationOrder, compiler: SQLCompiler, **kw: Any) -> str:
    return f"FIELD({compiler.process(element.clauses, **kw)})"


class _Float32(FunctionElement[Any]):
    """A boundary value compared with a 4-byte ``FLOAT`` column on MariaDB/MySQL.

    The driver reads such a column as text (``0.1``), while the server compares the
    column's single-precision value widened to double (``0.100000001…``) with the
    parameter: the boundary row itself would count as past the boundary, and pages would
    repeat forever. ``CAST(:value AS FLOAT)`` rounds the parameter the way the column was
    rounded. Elsewhere the value is sent as it is (PostgreSQL returns ``real`` values
    exactly; SQLite stores doubles).
    """

    name = "float32"
    inherit_cache = True


@compiles(_Float32)
def _float32(element: _Float32, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(next(iter(element.clauses)), **kw)


@compiles(_Float32, "mysql")
@compiles(_Float32, "mariadb")
def _float32_mysql(element: _Float32, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS FLOAT)"


def is_single_precision(type_: Any) -> bool:
    """Whether MariaDB/MySQL store *type_* as a 4-byte ``FLOAT``."""
    inner = unwrap(type_)
    return (
        isinstance(inner, sqltypes.Float)
        and not isinstance(inner, (sqltypes.Double, sqltypes.REAL))
        and (inner.precision is None or inner.precision <= 24)  # noqa: PLR2004
    )


def _boundary(key: SortKey, raw: Any) -> ColumnElement[Any]:
    """The bound boundary value of *key*, compared as ``ORDER BY`` orders the column."""
    value: ColumnElement[Any] = literal(raw, key.expression.type)
    if is_single_precision(key.expression.type):
        value = _Float32(value)
    return _in_sort_order(value)


def _in_sort_order(expression: ColumnElement[Any]) -> ColumnElement[Any]:
    """*expression* as ``<``, ``>`` and ``=`` must compare it to follow ``ORDER BY``."""
    inner = unwrap(expression.type)
    if not isinstance(inner, sqltypes.Enum) or not inner.native_enum or not inner.enums:
        return expression
    names = [literal(name, sqltypes.String()) for name in inner.enums]
    return _DeclarationOrder(expression, *names)
