"""The keyset condition: the rows after (or before) a boundary row, in any sort order.

[`keyset_predicate`][sqla_repo.pagination.keyset_predicate] (public, from
:mod:`sqla_repo.pagination`) builds it with the boundary values inlined as bound
literals; [`keyset_condition`][sqla_repo._keyset.keyset_condition], which keyset pages
use, builds it once per sort order and NULL pattern with named parameters.
"""

from __future__ import annotations

import math
import secrets
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, bindparam, false, literal, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import sqltypes
from sqlalchemy.sql.functions import FunctionElement

from sqla_repo._coerce import UNSUPPORTED, CoercionError, coerce, python_type, unwrap
from sqla_repo._cursors import _cursor_error

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.sql.compiler import SQLCompiler
    from sqlalchemy.sql.elements import ColumnElement

    from sqla_repo.filters import SortKey

__all__ = ["is_single_precision", "keyset_condition", "keyset_predicate", "lossy_indexes"]


def _is_finite(value: object) -> bool:
    """Whether a float or Decimal is finite (other values count as finite)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Decimal):
        return value.is_finite()
    return True


_FACTS: dict[int, tuple[Any, Any, bool]] = {}
"""Per sort expression (by id, kept alive with its entry): the Python type its values
are coerced to and whether MariaDB/MySQL store it as a 4-byte ``FLOAT``."""
_MAX_FACTS = 1024


def _facts(key: SortKey) -> tuple[Any, bool]:
    expression = key.expression
    found = _FACTS.get(id(expression))
    if found is None or found[0] is not expression:
        type_ = expression.type
        found = (expression, python_type(type_), is_single_precision(type_))
        if len(_FACTS) >= _MAX_FACTS:
            _FACTS.clear()
        _FACTS[id(expression)] = found
    return found[1], found[2]


def lossy_indexes(keys: Sequence[SortKey]) -> list[int]:
    """The positions of the keys MariaDB/MySQL store as 4-byte ``FLOAT``s."""
    return [i for i, key in enumerate(keys) if _facts(key)[1]]


def _coerce_key(key: SortKey, value: object) -> Any:
    target = _facts(key)[0]
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
        None if raw is None else _boundary(key, literal(raw, key.expression.type))
        for key, raw in zip(keys, map(_coerce_key, keys, values), strict=True)
    ]
    return _assemble(keys, bound, forward=forward)


# Named per process with a random part: a caller's own bindparam() or text() parameter
# cannot take the name by chance (execution parameters are matched by name).
_KEYSET_PARAM = f"sqla_repo_keyset_{secrets.token_hex(4)}_"
_TEMPLATES: dict[tuple[Any, ...], tuple[tuple[Any, ...], ColumnElement[bool]]] = {}
_MAX_TEMPLATES = 256


def keyset_condition(
    keys: Sequence[SortKey], values: Sequence[Any], *, forward: bool
) -> tuple[ColumnElement[bool], dict[str, Any]]:
    """[`keyset_predicate`][sqla_repo.pagination.keyset_predicate] with named parameters.

    The same condition, built once per sort order, direction and NULL pattern of the
    boundary, with the boundary values returned apart: pass them as the execution's
    parameters. A page at depth then builds no SQL expression beyond the statement's.

    Raises:
        InvalidFilterError: The values do not fit the keys.
    """
    if not keys or len(keys) != len(values):
        raise _cursor_error(
            message="The cursor does not fit the sort order.", reason="cursor_mismatch"
        )
    coerced = list(map(_coerce_key, keys, values))
    shape = (
        forward,
        *(
            (id(key.expression), key.descending, key.nullable, value is None)
            for key, value in zip(keys, coerced, strict=True)
        ),
    )
    found = _TEMPLATES.get(shape)
    # The expressions are kept: an id is unique only while its object is alive.
    if found is None or any(a is not k.expression for a, k in zip(found[0], keys, strict=True)):
        bound = [
            None
            if value is None
            else _boundary(key, bindparam(f"{_KEYSET_PARAM}{i}", type_=key.expression.type))
            for i, (key, value) in enumerate(zip(keys, coerced, strict=True))
        ]
        found = (tuple(k.expression for k in keys), _assemble(keys, bound, forward=forward))
        if len(_TEMPLATES) >= _MAX_TEMPLATES:
            _TEMPLATES.clear()
        _TEMPLATES[shape] = found
    params = {f"{_KEYSET_PARAM}{i}": v for i, v in enumerate(coerced) if v is not None}
    return found[1], params


def _assemble(
    keys: Sequence[SortKey], bound: Sequence[ColumnElement[Any] | None], *, forward: bool
) -> ColumnElement[bool]:
    """The keyset condition of *keys* past the *bound* values (``None``: NULL)."""
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


def _boundary(key: SortKey, value: ColumnElement[Any]) -> ColumnElement[Any]:
    """The bound boundary *value* of *key*, compared as ``ORDER BY`` orders the column."""
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
