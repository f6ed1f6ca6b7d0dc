r"""A filter and sort language that is safe on untrusted input.

[`compile_filters`][sqla_repo.filters.compile_filters] turns a mapping such as
``{"email__ilike": "%@example.org", "status__in": ["active"], "age__between": [25, 35]}``
(or a sequence of ``(field, operator, value)`` tuples) into SQLAlchemy boolean expressions;
[`compile_order_by`][sqla_repo.filters.compile_order_by] turns ``"-created_at,name"`` into
[`SortKey`][sqla_repo.filters.SortKey]s. Only whitelisted fields are accepted, values are
coerced to the column's Python type, and every value reaches the database as a bound
parameter: no SQL is ever built from the input. Anything that is not understood raises
[`InvalidFilterError`][sqla_repo.exceptions.InvalidFilterError]; nothing is ignored.

Whitelists are deny-by-default. Without one (``allowed=None``) no field may be named, which
raises [`ConfigurationError`][sqla_repo.exceptions.ConfigurationError]: a programming error,
not the client's. A whitelist is a collection of field names, a mapping from field name to
the operators it allows (``{"email": ("eq", "iexact"), "created_at": ("ge", "le")}``), or
[`ALL_COLUMNS`][sqla_repo.filters.ALL_COLUMNS], the explicit opt-in to every column
attribute. Hybrid properties and relationship paths are only ever accepted when listed.

A key is ``field`` or ``field__operator`` (split at the last ``__`` that names an operator,
so field names may contain underscores); a field without operator means ``eq``.

| Operator | Value | Matches rows where the field |
| --- | --- | --- |
| ``eq`` | scalar or ``None`` | equals the value (``None``: is NULL) |
| ``ne`` | scalar or ``None`` | differs from the value, **NULL included** (``None``: is not NULL) |
| ``lt``, ``le`` (``lte``) | scalar | is less than (or equal to) the value |
| ``gt``, ``ge`` (``gte``) | scalar | is greater than (or equal to) the value |
| ``in`` | list or ``"a,b"`` | equals one of the values (an empty list matches nothing) |
| ``not_in`` | list or ``"a,b"`` | equals none of the values, **NULL included** |
| ``between`` | ``[low, high]`` or ``"low,high"`` | lies between both bounds, inclusive |
| ``is_null`` | ``true`` / ``false`` | is NULL (or is not NULL) |
| ``like`` | pattern | matches the LIKE pattern, **case-sensitively** |
| ``ilike`` | pattern | matches the LIKE pattern, case-insensitively |
| ``iexact`` | text | equals the text, case-insensitively (``%`` and ``_`` are literal) |
| ``contains`` | text | contains the text (case-sensitive, ``%`` and ``_`` are literal) |
| ``startswith`` | text | starts with the text (same rules) |
| ``endswith`` | text | ends with the text (same rules) |
| ``icontains``, ``istartswith``, ``iendswith`` | text | the same, case-insensitively |

Values:

* Strings from a query string are coerced: ``"42"`` to ``int``, ``"true"``/``"0"``/``"yes"``
  to ``bool``, ``"2024-05-01"`` to a date, ``"2024-05-01T12:00:00Z"`` to a datetime,
  UUIDs, enum members by value or by name, ``Decimal`` and ``float``. A naive datetime is
  read as UTC (a client's wall time has no zone to convert from); an aware one is
  converted to UTC. Values the column cannot hold are refused rather than sent: integers
  beyond its width, numbers with more decimal places than its ``NUMERIC(p, s)`` scale,
  non-finite floats, strings longer than
  [`MAX_VALUE_LENGTH`][sqla_repo.filters.MAX_VALUE_LENGTH] or holding a NUL character.
* ``in``, ``not_in`` and ``between`` take a list, or a comma-separated string (``"a,b"``):
  a value that itself contains a comma needs the list form. ``""`` is the empty list.
  Items of text fields are taken as they are (spaces kept).
* In ``like``/``ilike`` patterns, ``%`` matches any run of characters, ``_`` one character
  and a backslash makes the next character literal (``50\%``); a pattern may not end with
  a lone backslash. The ``like``-family operators apply to text fields only, and
  ``lt``/``le``/``gt``/``ge``/``between`` do not apply to true/false fields.

Semantics on every backend:

* ``like``, ``contains``, ``startswith`` and ``endswith`` compare case- and
  accent-sensitively on SQLite (through ``GLOB``), PostgreSQL and MariaDB/MySQL (through
  a binary collation), whatever the column's collation.
* ``ilike`` and the other ``i``-operators fold ASCII letters on every backend. Other
  letters (``É``/``é``) are folded on PostgreSQL (per the database's ``LC_CTYPE``) and
  MariaDB/MySQL, not on SQLite, whose ``lower()`` knows ASCII only. Accents are
  significant on all three.
* ``eq``, ``in``, ranges and sorting follow the column's collation: with MariaDB's
  default ``*_ci`` collations, ``"Bob"`` equals ``"bob"`` (and ``"e"`` equals ``"é"``).
* Sorting puts NULL as the smallest value: first in ascending order, last in descending
  order (``NULLS FIRST``/``NULLS LAST`` is spelled out on PostgreSQL only). Enum columns
  sort in the database's order: declaration order for native enums (PostgreSQL,
  MariaDB/MySQL), name order on SQLite. Keyset pages follow the same order (on
  MariaDB/MySQL, whose ``ENUM`` compares with a string as text, the cursor condition
  compares declaration indexes, which no index on the column serves).
* Relationship paths (``"author.email"``, when whitelisted) compile to ``EXISTS``
  (``has()``/``any()``), so rows never repeat; a condition on a path means "some related
  row satisfies it". Conditions through the same relationship share one ``EXISTS``: they
  must hold for the *same* related row (``accounts.provider`` and ``accounts.account_id``
  match a user with one account having both, not two accounts having one each).

Errors carry ``detail = {"field": ..., "operator": ..., "reason": ...}`` with one of the
reason codes ``invalid_filters``, ``too_many_conditions``, ``invalid_field``,
``unknown_field``, ``unknown_operator``, ``operator_not_allowed``,
``unsupported_operator``, ``unsupported_type``,
``expected_list``, ``expected_scalar``, ``wrong_number_of_values``, ``too_many_values``,
``null_not_allowed``, ``invalid_value``, ``invalid_pattern``, ``value_too_long``,
``out_of_range``, ``not_sortable`` and ``duplicate_sort_field``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.orm.exc import UnmappedColumnError
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnClause, ColumnElement, UnaryExpression

from sqla_repo._conditions import compile_condition, through_paths, triples
from sqla_repo._filter_limits import (
    MAX_CONDITIONS,
    MAX_SORT_KEYS,
    MAX_VALUE_LENGTH,
    echo,
    input_error,
)
from sqla_repo._sql import NullsSmallest, hybrid_names, is_query_expression, mapper_of, resolve
from sqla_repo._whitelist import (
    ALIASES,
    ALL_COLUMNS,
    OPERATORS,
    AllColumns,
    FilterWhitelist,
    SortWhitelist,
    Whitelist,
    filter_whitelist,
    names_sort_field,
    not_set,
    sort_whitelist,
    unorderable,
)
from sqla_repo.exceptions import ConfigurationError, InvalidFilterError

if TYPE_CHECKING:
    from sqlalchemy.orm import InstrumentedAttribute

__all__ = [
    "ALIASES",
    "ALL_COLUMNS",
    "MAX_CONDITIONS",
    "MAX_SORT_KEYS",
    "MAX_VALUE_LENGTH",
    "OPERATORS",
    "AllColumns",
    "FilterWhitelist",
    "SortKey",
    "SortWhitelist",
    "compile_filters",
    "compile_order_by",
]


# -- Filters ----------------------------------------------------------------------------------


def compile_filters(
    model: type[Any],
    filters: Mapping[str, Any] | Sequence[tuple[str, str, Any]] | None,
    *,
    allowed: FilterWhitelist | None = None,
    max_in: int = 500,
) -> list[ColumnElement[bool]]:
    """Compile untrusted filter input into SQLAlchemy boolean expressions.

    Args:
        model: The mapped class being queried.
        filters: ``{"field__operator": value}`` or ``[(field, operator, value), ...]``;
            ``None`` means no filter.
        allowed: The fields a client may filter on: column attribute names, hybrid
            properties and dotted relationship paths (``"author.email"``), each with every
            operator; or a mapping from such a name to the operators it allows
            (``{"email": ("eq", "iexact"), "age": ("ge", "le")}``, aliases accepted,
            [`OPERATORS`][sqla_repo.filters.OPERATORS] for all of them); or
            [`ALL_COLUMNS`][sqla_repo.filters.ALL_COLUMNS], every column attribute with
            every operator. ``None`` (the default) is no whitelist: empty *filters* are
            accepted, any condition raises ``ConfigurationError``.
        max_in: The most values ``in`` and ``not_in`` accept.

    Returns:
        The expressions to pass to ``select(...).where(*conditions)``: one per condition
        on the model's own fields, and one ``EXISTS`` per relationship combining every
        condition reached through it (``{"accounts.provider": "google",
        "accounts.account_id": "acc-9"}`` matches rows having *one* account with both).

    Raises:
        InvalidFilterError: The input names an unknown field or operator, an operator the
            field does not allow, or a value does not fit the field.
        ConfigurationError: *allowed* is ``None`` and *filters* holds a condition, or
            *allowed* is malformed or names something the model does not have.

    Example:
        ```python
        conditions = compile_filters(
            User, {"age__gte": "18", "status__in": "active,new"}, allowed=["age", "status"]
        )
        users = await session.scalars(select(User).where(*conditions))
        ```
    """
    if filters is None:
        return []
    if allowed is None:
        if isinstance(filters, (Mapping, list, tuple)) and not filters:
            return []  # nothing named: nothing to allow
        raise not_set("allowed=", "filters", model=model)
    whitelist = filter_whitelist(model, allowed, setting=f"{model.__name__} filter whitelist")
    compiled = [
        compile_condition(model, name, op, value, whitelist=whitelist, max_in=max_in)
        for name, op, value in triples(model, filters, whitelist)
    ]
    return through_paths(compiled)


# -- Sorting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SortKey:
    """One ``ORDER BY`` key, with its direction and NULL placement.

    NULL sorts as the smallest value on every backend: first in ascending order, last in
    descending order (PostgreSQL's own default is the opposite, so the key says so there).

    Attributes:
        expression: The column expression sorted on.
        descending: Whether the order is descending.
        name: The field name, or a stable rendering of an expression.
        nullable: Whether the expression may be NULL (``False`` keeps index-friendly SQL).
        attribute: The mapped attribute holding the value on a loaded object, when the key
            is a column of the model itself; ``None`` for expressions.
    """

    expression: ColumnElement[Any]
    descending: bool
    name: str
    nullable: bool = field(default=True, kw_only=True)
    attribute: str | None = field(default=None, kw_only=True)

    def clause(self) -> ColumnElement[Any]:
        """Return the ``ORDER BY`` element, with NULLs placed the same on every backend."""
        built: ColumnElement[Any] | None = self.__dict__.get("_clause")
        if built is None:
            ordered = self.expression.desc() if self.descending else self.expression.asc()
            built = NullsSmallest(ordered) if self.nullable else ordered
            # Built once: SQL elements are immutable, and a key is reused across calls.
            object.__setattr__(self, "_clause", built)
        return built

    def reversed(self) -> SortKey:
        """Return the same key in the opposite direction (for backward keyset pages)."""
        return replace(self, descending=not self.descending)


def compile_order_by(
    model: type[Any],
    order_by: str | Sequence[str | ColumnElement[Any] | InstrumentedAttribute[Any]] | None,
    *,
    allowed: SortWhitelist | None = None,
    default: str | Sequence[str | ColumnElement[Any] | InstrumentedAttribute[Any]] | None = None,
) -> list[SortKey]:
    """Compile a sort specification into sort keys ending with the primary key.

    Args:
        model: The mapped class being queried.
        order_by: ``"-created_at,name"`` or ``["-created_at", "name"]`` (a leading ``-``
            means descending, ``+`` or nothing ascending), or SQLAlchemy expressions from
            trusted code (``User.name.desc()``), which skip the whitelist. ``None`` or an
            empty value means *default*.
        allowed: The field names a client may sort on (column attributes and hybrid
            properties), or [`ALL_COLUMNS`][sqla_repo.filters.ALL_COLUMNS] for every
            column attribute. ``None`` (the default) is no whitelist: expressions are
            accepted, any field name raises ``ConfigurationError``.
        default: The trusted order used when *order_by* is empty; its names may be any
            column attribute or hybrid property, whitelisted or not.

    Returns:
        The keys, followed by the primary-key columns not already among them (ascending),
        so the order is total and pages are deterministic. Pass
        ``[key.clause() for key in keys]`` to ``order_by()``.

    Raises:
        InvalidFilterError: A field is unknown, not whitelisted or given twice, or there
            are more than [`MAX_SORT_KEYS`][sqla_repo.filters.MAX_SORT_KEYS] of them.
        ConfigurationError: *allowed* is ``None`` and *order_by* names a field, or
            *default* or *allowed* names something the model lacks.

    Example:
        ```python
        keys = compile_order_by(User, "-created_at,name", allowed=["created_at", "name"])
        users = await session.scalars(select(User).order_by(*[k.clause() for k in keys]))
        ```
    """
    if allowed is None and names_sort_field(order_by):
        raise not_set("allowed=", "sorts", model=model)
    items = _sort_items(model, order_by)
    if items:
        whitelist = (
            Whitelist({})  # expressions only
            if allowed is None
            else sort_whitelist(model, allowed, setting=f"{model.__name__} sort whitelist")
        )
        keys = _sort_keys(model, items, whitelist)
    else:
        try:
            keys = _sort_keys(model, _sort_items(model, default), None)
        except InvalidFilterError as exc:
            msg = f"{model.__name__}: invalid default order: {exc}"
            raise ConfigurationError(msg, model=model) from exc
    mapper = mapper_of(model)
    names = {key.name for key in keys}
    for column in mapper.primary_key:
        name = mapper.get_property_by_column(column).key
        if name not in names:
            expression = getattr(model, name).__clause_element__()
            keys.append(
                SortKey(expression, descending=False, name=name, nullable=False, attribute=name)
            )
    return keys


def _sort_items(model: type[Any], order_by: object) -> list[Any]:
    if order_by is None:
        return []
    if isinstance(order_by, str):
        if len(order_by) > MAX_VALUE_LENGTH:
            msg = "The sort specification is too long."
            raise input_error(model, message=msg, reason="value_too_long")
        return [part.strip() for part in order_by.split(",")] if order_by.strip() else []
    if isinstance(order_by, (list, tuple)):
        return list(order_by)
    msg = "The sort order must be a string or a list."
    raise input_error(model, message=msg, reason="invalid_filters")


def _sort_keys(model: type[Any], items: list[Any], whitelist: Whitelist | None) -> list[SortKey]:
    if len(items) > MAX_SORT_KEYS:
        msg = f"At most {MAX_SORT_KEYS} sort fields are accepted."
        raise input_error(model, message=msg, reason="too_many_conditions")
    keys: list[SortKey] = []
    for item in items:
        key = _sort_key(model, item, whitelist)
        if any(existing.name == key.name for existing in keys):
            msg = f"The sort field {echo(key.name)!r} is given twice."
            raise input_error(model, message=msg, reason="duplicate_sort_field", field=key.name)
        keys.append(key)
    return keys


def _sort_key(model: type[Any], item: object, whitelist: Whitelist | None) -> SortKey:
    if isinstance(item, str):
        return _named_sort_key(model, item, whitelist)
    if isinstance(item, UnaryExpression) and item.modifier in {
        operators.asc_op,
        operators.desc_op,
    }:
        key = _sort_key(model, item.element, whitelist)
        return replace(key, descending=item.modifier is operators.desc_op)
    if isinstance(item, QueryableAttribute):
        item = item.__clause_element__()
    if isinstance(item, ColumnElement):
        _refuse_query_expression(model, item)
        attribute = _attribute_of(model, item)
        if attribute is None:
            return SortKey(item, descending=False, name=_render(item))
        nullable = resolve(model, attribute).nullable
        return SortKey(
            item, descending=False, name=attribute, nullable=nullable, attribute=attribute
        )
    msg = "Sort fields must be names or SQLAlchemy expressions."
    raise input_error(model, message=msg, reason="invalid_field", field=item)


def _named_sort_key(model: type[Any], item: str, whitelist: Whitelist | None) -> SortKey:
    name = item[1:] if item[:1] in {"-", "+"} else item
    if not name:
        msg = "The sort field name is empty."
        raise input_error(model, message=msg, reason="invalid_field", field=name)
    if whitelist is None:  # the trusted default order: any column or hybrid
        trusted = name in mapper_of(model).column_attrs or name in hybrid_names(model)
    else:
        trusted = name in whitelist
    if not trusted:
        msg = f"Cannot sort on {echo(name)!r}."
        raise input_error(model, message=msg, reason="not_sortable", field=name)
    target = resolve(model, name)
    if target.path:
        msg = f"{model.__name__}: cannot sort on the relationship path {name!r}."
        raise ConfigurationError(msg, model=model)
    if unorderable(target.expression.type):
        msg = f"{model.__name__}: cannot sort on {name!r}, a JSON column (no order on PostgreSQL)."
        raise ConfigurationError(msg, model=model)
    descending = item.startswith("-")
    return SortKey(target.expression, descending, name, nullable=target.nullable, attribute=name)


def _refuse_query_expression(model: type[Any], expression: ColumnElement[Any]) -> None:
    """Refuse a ``query_expression()`` attribute: in ORDER BY it is its NULL placeholder."""
    annotations: Mapping[str, Any] = getattr(expression, "_annotations", {})
    mapper, key = annotations.get("parentmapper"), annotations.get("proxy_key")
    props = getattr(mapper, "column_attrs", {})
    if isinstance(key, str) and key in props and is_query_expression(props[key]):
        msg = (
            f"{model.__name__}: cannot sort on {key!r}, a query_expression(): ORDER BY "
            "would see its NULL placeholder; sort on the expression given to "
            "with_expression() instead."
        )
        raise ConfigurationError(msg, model=model)


def _attribute_of(model: type[Any], expression: ColumnElement[Any]) -> str | None:
    if not isinstance(expression, ColumnClause):
        return None
    try:
        return mapper_of(model).get_property_by_column(expression).key
    except (UnmappedColumnError, KeyError):
        return None


def _render(expression: ColumnElement[Any]) -> str:
    try:
        return str(expression)
    except Exception:  # noqa: BLE001 - some constructs compile on their own dialect only
        return f"{type(expression).__name__}@{id(expression):x}"
