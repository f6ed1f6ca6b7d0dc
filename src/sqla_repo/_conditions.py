"""Compiling filter conditions: parsing the input, checking and coercing each condition.

[`compile_filters`][sqla_repo.filters.compile_filters] reads its input into
``(field, operator, value)`` triples, compiles each into a boolean expression on its
field, and wraps the conditions on relationship paths in one ``EXISTS`` per relationship.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, and_, false, or_, true

from sqla_repo._coerce import CoercionError, coerce, is_text, python_type
from sqla_repo._filter_limits import MAX_CONDITIONS, MAX_VALUE_LENGTH, echo, input_error
from sqla_repo._hooks import NEEDS_EXPLICIT_EXISTS_CRITERIA, entity_criteria
from sqla_repo._sql import ESCAPE, Field, Like, resolve
from sqla_repo._whitelist import ALIASES, OPERATORS, Whitelist

if TYPE_CHECKING:
    from sqlalchemy.sql.elements import ColumnElement

    from sqla_repo.exceptions import InvalidFilterError

__all__ = ["compile_condition", "through_paths", "triples"]

_LIST_OPERATORS = frozenset({"in", "not_in", "between"})
_LIKE_OPERATORS = frozenset(
    {
        "like", "ilike", "iexact", "contains", "icontains", "startswith", "istartswith",
        "endswith", "iendswith",
    }
)  # fmt: skip
_CASE_INSENSITIVE = frozenset({"ilike", "iexact", "icontains", "istartswith", "iendswith"})
_ORDER_OPERATORS = frozenset({"lt", "le", "gt", "ge", "between"})
_TOO_MANY = f"At most {MAX_CONDITIONS} filter conditions are accepted."


def triples(
    model: type[Any], filters: object, whitelist: Whitelist
) -> list[tuple[object, str, object]]:
    """Read filter input into ``(field, operator, value)`` triples, operators canonical."""
    if not isinstance(filters, (Mapping, list, tuple)):
        msg = "Filters must be a mapping or a list of (field, operator, value) triples."
        raise input_error(model, message=msg, reason="invalid_filters")
    if len(filters) > MAX_CONDITIONS:
        raise input_error(model, message=_TOO_MANY, reason="too_many_conditions")
    result: list[tuple[object, str, object]] = []
    if isinstance(filters, Mapping):
        for key, value in filters.items():
            if not isinstance(key, str):
                msg = "Filter keys must be strings."
                raise input_error(model, message=msg, reason="invalid_field", field=key)
            name, op = _split(model, key, whitelist)
            result.append((name, op, value))
        return result
    for item in filters:
        if not isinstance(item, (list, tuple)) or len(item) != 3:  # noqa: PLR2004 - a triple
            msg = "Each filter condition must be a (field, operator, value) triple."
            raise input_error(model, message=msg, reason="invalid_filters")
        name, op, value = item
        result.append((name, _operator(model, name, op), value))
    return result


def _operator(model: type[Any], name: object, op: object) -> str:
    canonical = ALIASES.get(op, op) if isinstance(op, str) else None
    if canonical not in OPERATORS:
        msg = f"Unknown filter operator {echo(op)!r}."
        raise input_error(model, message=msg, reason="unknown_operator", field=name, operator=op)
    return canonical


def _split(model: type[Any], key: str, whitelist: Whitelist) -> tuple[str, str]:
    head, sep, tail = key.rpartition("__")
    if sep:
        if ALIASES.get(tail, tail) in OPERATORS:
            return head, ALIASES.get(tail, tail)
        if key not in whitelist and head in whitelist:
            return head, _operator(model, head, tail)  # raises: unknown operator
    return key, "eq"


class _Condition:
    """One condition being compiled: its field, operator, and a client-safe error maker."""

    def __init__(self, model: type[Any], name: object, op: str, whitelist: Whitelist) -> None:
        self.model, self.name, self.op = model, name, op
        if not isinstance(name, str) or not name:
            msg = "The field name must be a non-empty string."
            raise self.fail(message=msg, reason="invalid_field")
        if name not in whitelist:
            # The same answer whether the field exists or not: no existence oracle.
            raise self.fail(message=f"Unknown filter field {echo(name)!r}.", reason="unknown_field")
        if op not in whitelist.operators(name):
            msg = f"The {op} operator is not allowed on {echo(name)!r}."
            raise self.fail(message=msg, reason="operator_not_allowed")
        self.target = resolve(model, name)
        self.column = self.target.expression
        if op in _ORDER_OPERATORS and python_type(self.column.type) is bool:
            msg = f"The {op} operator does not apply to true/false fields."
            raise self.fail(message=msg, reason="unsupported_operator")

    def fail(self, *, message: str, reason: str) -> InvalidFilterError:
        return input_error(
            self.model, message=message, reason=reason, field=self.name, operator=self.op
        )

    def value(self, item: object, *, null: bool = False) -> Any:
        if item is None:
            if null:
                return None
            msg = "Null is not a valid value here; use is_null."
            raise self.fail(message=msg, reason="null_not_allowed")
        if isinstance(item, (Mapping, list, tuple, set, frozenset)):
            raise self.fail(message="A single value is expected.", reason="expected_scalar")
        try:
            return coerce(item, self.column.type, max_length=MAX_VALUE_LENGTH)
        except CoercionError as exc:
            raise self.fail(message=exc.message, reason=exc.reason) from None

    def values(self, value: object, max_in: int) -> list[Any]:
        if isinstance(value, str):
            if len(value) > MAX_VALUE_LENGTH:
                raise self.fail(message="The value is too long.", reason="value_too_long")
            items: list[Any] = value.split(",") if value else []
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            msg = "A list of values (or a comma-separated string) is expected."
            raise self.fail(message=msg, reason="expected_list")
        if self.op == "between" and len(items) != 2:  # noqa: PLR2004 - two bounds
            msg = "between takes exactly two values."
            raise self.fail(message=msg, reason="wrong_number_of_values")
        if len(items) > max_in:
            msg = f"At most {max_in} values are accepted."
            raise self.fail(message=msg, reason="too_many_values")
        return [self.value(item) for item in items]

    def pattern(self, value: object) -> str:
        if not is_text(self.column.type):
            msg = f"The {self.op} operator applies to text fields only."
            raise self.fail(message=msg, reason="unsupported_operator")
        text: str = self.value(value)
        if self.op in {"like", "ilike"}:
            escaped = False
            for char in text:
                escaped = not escaped and char == ESCAPE
            if escaped:
                msg = "The pattern ends with a lone escape character."
                raise self.fail(message=msg, reason="invalid_pattern")
            return text
        literal_text = "".join(ESCAPE + c if c in {"%", "_", ESCAPE} else c for c in text)
        op = self.op.removeprefix("i")
        if op == "exact":
            return literal_text
        if op == "contains":
            return f"%{literal_text}%"
        return f"{literal_text}%" if op == "startswith" else f"%{literal_text}"

    def is_null(self, value: object) -> bool:
        try:
            return bool(coerce(value, Boolean(), max_length=MAX_VALUE_LENGTH))
        except CoercionError:
            raise self.fail(
                message="is_null takes true or false.", reason="invalid_value"
            ) from None


def compile_condition(
    model: type[Any],
    name: object,
    op: str,
    value: object,
    *,
    whitelist: Whitelist,
    max_in: int,
) -> tuple[Field, ColumnElement[bool]]:
    """Compile one condition: its field, and the boolean expression on it."""
    condition = _Condition(model, name, op, whitelist)
    target, column = condition.target, condition.column
    clause: ColumnElement[bool]
    if op == "is_null":
        clause = column.is_(None) if condition.is_null(value) else column.is_not(None)
    elif op in _LIKE_OPERATORS:
        clause = Like(column, condition.pattern(value), case_insensitive=op in _CASE_INSENSITIVE)
    elif op in _LIST_OPERATORS:
        clause = _BUILDERS[op](target, condition.values(value, max_in))
    else:
        clause = _BUILDERS[op](target, condition.value(value, null=op in {"eq", "ne"}))
    return target, clause


class _PathGroup:
    """The conditions reached through one relationship, and the relationships below it."""

    def __init__(self, attribute: Any, uselist: bool) -> None:  # noqa: FBT001
        self.attribute, self.uselist = attribute, uselist
        self.items: list[ColumnElement[bool] | _PathGroup] = []
        self.children: dict[str, _PathGroup] = {}

    def exists(self) -> ColumnElement[bool]:
        """Return the one ``EXISTS`` for this relationship, its conditions combined."""
        conditions = [
            item.exists() if isinstance(item, _PathGroup) else item for item in self.items
        ]
        if NEEDS_EXPLICIT_EXISTS_CRITERIA:
            conditions += entity_criteria(self.attribute.property.mapper.class_)
        condition = and_(*conditions)
        exists: ColumnElement[bool] = (
            self.attribute.any(condition) if self.uselist else self.attribute.has(condition)
        )
        return exists


def through_paths(compiled: list[tuple[Field, ColumnElement[bool]]]) -> list[ColumnElement[bool]]:
    """Wrap conditions on related columns in EXISTS subqueries, one per relationship path.

    Conditions sharing a relationship (a prefix of their paths) are combined inside the
    same ``EXISTS``, so they must hold for the *same* related row: ``accounts.provider``
    and ``accounts.account_id`` match an account having both, and ``posts.title`` with
    ``posts.tags.name`` a post having that title and that tag.
    """
    result: list[ColumnElement[bool] | _PathGroup] = []
    roots: dict[str, _PathGroup] = {}
    for target, clause in compiled:
        if not target.path:
            result.append(clause)
            continue
        items, groups = result, roots
        for attribute, uselist in target.path:
            key = attribute.key
            group = groups.get(key)
            if group is None:
                group = groups[key] = _PathGroup(attribute, uselist)
                items.append(group)
            items, groups = group.items, group.children
        items.append(clause)
    return [item.exists() if isinstance(item, _PathGroup) else item for item in result]


def _or_null(target: Field, condition: ColumnElement[bool]) -> ColumnElement[bool]:
    return or_(condition, target.expression.is_(None)) if target.nullable else condition


def _eq(target: Field, value: object) -> ColumnElement[bool]:
    column = target.expression
    return column.is_(None) if value is None else column == value


def _ne(target: Field, value: object) -> ColumnElement[bool]:
    column = target.expression
    return column.is_not(None) if value is None else _or_null(target, column != value)


def _in(target: Field, values: list[Any]) -> ColumnElement[bool]:
    return target.expression.in_(values) if values else false()


def _not_in(target: Field, values: list[Any]) -> ColumnElement[bool]:
    return _or_null(target, target.expression.not_in(values)) if values else true()


_BUILDERS: dict[str, Callable[[Field, Any], ColumnElement[bool]]] = {
    "eq": _eq,
    "ne": _ne,
    "lt": lambda t, v: t.expression < v,
    "le": lambda t, v: t.expression <= v,
    "gt": lambda t, v: t.expression > v,
    "ge": lambda t, v: t.expression >= v,
    "in": _in,
    "not_in": _not_in,
    "between": lambda t, v: t.expression.between(v[0], v[1]),
}
