"""Whitelists of the filter and sort language (private; re-exported by ``sqla_repo.filters``).

A whitelist says which fields untrusted input may name and, for filters, with which
operators. There is no implicit whitelist: ``None`` means "not configured" and accepts
nothing, and every column is opted into explicitly with
[`ALL_COLUMNS`][sqla_repo.filters.ALL_COLUMNS].
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from typing import Any, Final, Literal, TypeAlias

from sqlalchemy.sql import sqltypes

from sqla_repo._coerce import unwrap
from sqla_repo._sql import is_query_expression, mapper_of
from sqla_repo.exceptions import ConfigurationError

__all__ = [
    "ALIASES",
    "ALL_COLUMNS",
    "OPERATORS",
    "AllColumns",
    "FilterWhitelist",
    "SortWhitelist",
    "Whitelist",
    "check_settings",
    "filter_whitelist",
    "names_sort_field",
    "not_set",
    "sort_whitelist",
]

OPERATORS: Final = frozenset(
    {
        "eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "like", "ilike",
        "iexact", "contains", "icontains", "startswith", "istartswith", "endswith",
        "iendswith", "is_null", "between",
    }
)  # fmt: skip
"""The operator names, without aliases.

Also usable as a value of a ``filterable_fields`` mapping, to allow a field every operator.
"""

ALIASES: Final[Mapping[str, str]] = {"lte": "le", "gte": "ge"}
"""Accepted alternative spellings of operators."""


class AllColumns(enum.Enum):
    """The type of [`ALL_COLUMNS`][sqla_repo.filters.ALL_COLUMNS] (its only member)."""

    ALL_COLUMNS = "ALL_COLUMNS"

    def __repr__(self) -> str:
        return "ALL_COLUMNS"

    def __str__(self) -> str:
        return "ALL_COLUMNS"


ALL_COLUMNS: Final = AllColumns.ALL_COLUMNS
"""A whitelist naming every column attribute of the model, with every operator.

The explicit opt-in for ``filterable_fields``/``sortable_fields`` (and the ``allowed=``
argument of [`compile_filters`][sqla_repo.filters.compile_filters] and
[`compile_order_by`][sqla_repo.filters.compile_order_by]). It covers the model's own
column attributes only: hybrid properties and relationship paths (``"author.name"``) must
still be listed. Every column a client can filter or sort on can be probed by that
client (see the security page), so prefer listing fields on models holding secrets.
"""

FilterWhitelist: TypeAlias = Collection[str] | Mapping[str, Collection[str]] | AllColumns
"""Fields untrusted filters may name: names (every operator), names to operators, or all."""

SortWhitelist: TypeAlias = Collection[str] | AllColumns
"""Fields untrusted sort orders may name."""

_Kind = Literal["filters", "sorts"]


class Whitelist:
    """A checked whitelist: the allowed fields, each with its allowed operators."""

    __slots__ = ("fields",)

    def __init__(self, fields: Mapping[str, frozenset[str]]) -> None:
        self.fields = fields

    def __contains__(self, name: object) -> bool:
        return name in self.fields

    def operators(self, name: str) -> frozenset[str]:
        """Return the operators allowed on *name* (a whitelisted field)."""
        return self.fields[name]


def not_set(setting: str, kind: _Kind, *, model: type[Any] | None = None) -> ConfigurationError:
    """Return the error for untrusted input reaching a channel with no whitelist.

    Args:
        setting: What should have been set, e.g. ``"UserRepository.filterable_fields"``.
        kind: ``"filters"`` or ``"sorts"``, for the message.
        model: The model, for the error's detail.
    """
    if setting.endswith("="):
        fix = f"pass {setting} the fields untrusted {kind} may use, or {setting}ALL_COLUMNS"
        msg = f"No whitelist was given: {fix}."
    else:
        fix = f"list the fields untrusted {kind} may use, or set it to ALL_COLUMNS"
        msg = f"{setting} is not set: {fix}."
    return ConfigurationError(msg, model=model)


def _operators(setting: str, name: str, ops: object) -> frozenset[str]:
    if isinstance(ops, (AllColumns, str)) or not isinstance(ops, Collection):
        msg = (
            f"{setting}[{name!r}] must be a collection of operator names "
            f"(one operator is written as a one-item tuple), got {ops!r}."
        )
        raise ConfigurationError(msg)
    result: set[str] = set()
    for op in ops:
        canonical = ALIASES.get(op, op) if isinstance(op, str) else None
        if canonical not in OPERATORS:
            msg = f"{setting}[{name!r}] names the unknown operator {op!r}."
            raise ConfigurationError(msg)
        result.add(canonical)
    if not result:
        msg = f"{setting}[{name!r}] allows no operator: leave the field out instead."
        raise ConfigurationError(msg)
    return frozenset(result)


def _names(setting: str, allowed: object) -> Collection[str]:
    if isinstance(allowed, str) or not isinstance(allowed, Collection):
        msg = f"{setting} must be a collection of field names or ALL_COLUMNS, got {allowed!r}."
        raise ConfigurationError(msg)
    for name in allowed:
        if not isinstance(name, str) or not name:
            msg = f"{setting} holds {name!r}, which is not a field name."
            raise ConfigurationError(msg)
    return allowed


def filter_whitelist(
    model: type[Any] | None, allowed: FilterWhitelist, *, setting: str
) -> Whitelist:
    """Check and normalise a filter whitelist (operator aliases become canonical names).

    Args:
        model: The model, to expand ``ALL_COLUMNS``; ``None`` only checks the shape (a
            repository class before its model's mapper is configured).
        allowed: The whitelist as configured (not ``None``).
        setting: Where it comes from, for error messages.

    Raises:
        ConfigurationError: The whitelist is malformed or names an unknown operator.
    """
    if isinstance(allowed, AllColumns):
        columns = () if model is None else _stored_columns(model)
        return Whitelist(dict.fromkeys(columns, OPERATORS))
    names = _names(setting, allowed)
    if isinstance(allowed, Mapping):
        return Whitelist({name: _operators(setting, name, allowed[name]) for name in names})
    return Whitelist(dict.fromkeys(names, OPERATORS))


def sort_whitelist(model: type[Any] | None, allowed: SortWhitelist, *, setting: str) -> Whitelist:
    """Check and normalise a sort whitelist (operators play no part in it).

    Raises:
        ConfigurationError: The whitelist is not a collection of field names.
    """
    if isinstance(allowed, AllColumns):
        attrs = () if model is None else mapper_of(model).column_attrs
        names = [
            attr.key
            for attr in attrs
            if not unorderable(attr.columns[0].type) and not is_query_expression(attr)
        ]
        return Whitelist(dict.fromkeys(names, frozenset()))
    return Whitelist(dict.fromkeys(_names(setting, allowed), frozenset()))


def _stored_columns(model: type[Any]) -> list[str]:
    """The column attributes of *model*, ``query_expression()`` placeholders left out."""
    attrs = mapper_of(model).column_attrs
    return [attr.key for attr in attrs if not is_query_expression(attr)]


def unorderable(type_: Any) -> bool:
    """Whether values of *type_* have no order on some backend (PostgreSQL's ``json``)."""
    return isinstance(unwrap(type_), sqltypes.JSON)


def check_settings(cls: type[Any]) -> None:
    """Check the shape of the whitelists a repository class declares (no mapper needed).

    Meant for class creation: a bare string, an unknown operator name or an empty operator
    list fails there rather than on the first request. Field names are checked against
    the model later, once its mapper is configured.

    Raises:
        ConfigurationError: A whitelist the class declares is malformed.
    """
    filterable = cls.__dict__.get("filterable_fields")
    if filterable is not None:
        filter_whitelist(None, filterable, setting=f"{cls.__name__}.filterable_fields")
    sortable = cls.__dict__.get("sortable_fields")
    if sortable is not None:
        sort_whitelist(None, sortable, setting=f"{cls.__name__}.sortable_fields")


def names_sort_field(order_by: object) -> bool:
    """Whether *order_by* holds a field name (untrusted input) rather than expressions only."""
    if isinstance(order_by, str):
        return bool(order_by.strip())
    if isinstance(order_by, (list, tuple)):
        return any(isinstance(item, str) for item in order_by)
    return False
