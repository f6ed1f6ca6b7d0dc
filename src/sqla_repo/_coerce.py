"""Coerce untrusted values to the Python type of a column (private).

Everything here raises [`CoercionError`][sqla_repo._coerce.CoercionError], which carries a
client-safe reason code and message; ``sqla_repo.filters`` turns it into an
``InvalidFilterError`` that also names the field and the operator.

Values are checked against what every supported backend accepts, so a value that passes
never makes the driver fail and is never changed on its way to the database: integers
fit the column's width; numbers are finite and, for a ``Numeric(p, s)`` column, have at
most ``p - s`` integer digits and ``s`` decimal places (``Numeric(p)`` has scale 0: asyncpg
casts the parameter to the column's type, which would round ``1.5`` to ``2``);
single-precision floats stay in the float32 range; strings contain no NUL character,
encode as UTF-8 and fit the column's MySQL/MariaDB character set (``utf8mb3`` holds no
character beyond U+FFFF); datetimes stay in range; UUIDs are ones MariaDB's native
``UUID`` type can hold. The checks are the same on every backend (the union of what any
of them refuses), so a filter accepted on one backend is accepted on all.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import types as sqltypes
from sqlalchemy.orm.attributes import QueryableAttribute
from sqlalchemy.sql.elements import ClauseElement

from sqla_repo._converters import (
    COERCERS,
    CoercionError,
    _int_bits,
    check_charset,
    invalid,
    to_decimal,
    to_enum,
    to_float,
    to_int,
    to_str,
    to_uuid,
    unwrap,
)
from sqla_repo.exceptions import InvalidValueError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "UNSUPPORTED",
    "CoercionError",
    "check_value",
    "check_values",
    "coerce",
    "is_text",
    "python_type",
    "unwrap",
]

UNSUPPORTED = object()
"""Returned by [`python_type`][sqla_repo._coerce.python_type] for types it cannot coerce to."""


def python_type(type_: sqltypes.TypeEngine[Any]) -> Any:
    """Return the Python class values of *type_* are coerced to, or ``UNSUPPORTED``."""
    try:
        result = type_.python_type
    except NotImplementedError:
        return UNSUPPORTED
    inner = unwrap(type_)
    if result is str:
        # ``str`` is what many dialect-specific types report (INET, TSVECTOR...): binding an
        # arbitrary string to them would fail in the database, so only real text qualifies.
        if isinstance(inner, sqltypes.Uuid):
            return uuid.UUID
        if not isinstance(inner, sqltypes.String):
            return UNSUPPORTED
    if result in COERCERS or issubclass(result, enum.Enum):
        return result
    return UNSUPPORTED


def is_text(type_: sqltypes.TypeEngine[Any]) -> bool:
    """Whether *type_* holds free text, so the LIKE family of operators applies."""
    inner = unwrap(type_)
    return (
        python_type(type_) is str
        and isinstance(inner, sqltypes.String)
        and not isinstance(inner, sqltypes.Enum)
    )


def coerce(value: object, type_: sqltypes.TypeEngine[Any], *, max_length: int | None) -> Any:
    """Return *value* coerced to the Python type of *type_*.

    Args:
        value: A scalar from untrusted input (``None`` is not handled here).
        type_: The column's SQL type.
        max_length: The longest string accepted, or ``None`` for no limit.

    Raises:
        CoercionError: The value is not of, or convertible to, the column's type.
    """
    target = python_type(type_)
    if target is UNSUPPORTED:
        raise CoercionError(
            reason="unsupported_type", message="This field cannot be compared with a value."
        )
    if isinstance(value, str) and max_length is not None and len(value) > max_length:
        msg = f"The value is longer than {max_length} characters."
        raise CoercionError(reason="value_too_long", message=msg)
    if isinstance(target, type) and issubclass(target, enum.Enum):
        return to_enum(value, target)
    inner = unwrap(type_)
    result = COERCERS[target](value, inner)
    if target is str:
        check_charset(result, type_)
    if target is uuid.UUID and isinstance(inner, sqltypes.Uuid) and not inner.as_uuid:
        return str(result)
    return result


# -- written values ----------------------------------------------------------------------------

_JSON_DEPTH = 64  # deeper documents are refused rather than walked


def check_value(value: object, type_: sqltypes.TypeEngine[Any]) -> None:
    """Refuse a value to be *written* to a column of *type_* that a backend would refuse or change.

    Unlike [`coerce`][sqla_repo._coerce.coerce], nothing is converted: a value of the
    column's Python type is checked against the column's domain on every backend (the
    union of what any of them refuses or changes). For a column of a plain SQL type (no
    ``TypeDecorator``, whose own bind processing may accept other values), a value of
    another Python type is refused too, since backends would round it (``1.5`` into an
    integer), reinterpret it or store it as given (text in SQLite's number columns):
    integer columns take ``int``, number columns ``int``, ``float`` and ``Decimal``,
    text columns ``str``, ``Uuid`` columns ``uuid.UUID`` (text that is a UUID when
    ``as_uuid=False``). SQL expressions are left to the statement. Refused: integers
    beyond the column's width; numbers that are not finite, beyond a ``Numeric``
    column's precision or with more decimal places than its scale (PostgreSQL and
    MariaDB would round them, SQLite would store them as given); floats beyond float32
    range for a single-precision column; strings longer than the column, holding a NUL
    character, a lone surrogate or a character the column's MySQL/MariaDB character set
    lacks; enum values that are not members (SQLite would store them, and every later
    read of the row would fail); aware datetimes for a column without time zone
    (PostgreSQL refuses them, MariaDB and SQLite would drop the offset), and aware
    datetimes not in UTC for a plain ``DateTime(timezone=True)`` (MariaDB and SQLite would
    drop the offset); UUIDs MariaDB's ``UUID`` type refuses; JSON documents holding NaN,
    infinity, NUL or lone surrogates.

    Raises:
        CoercionError: The value is one the column cannot hold on some backend.
    """
    if value is None or isinstance(value, SQL_VALUES):
        return
    inner = unwrap(type_)
    if isinstance(inner, sqltypes.JSON):
        _check_json(value, 0)
        return
    target = python_type(type_)
    if target is UNSUPPORTED:
        return
    if isinstance(inner, sqltypes.Enum):
        members = inner.enum_class
        if (members is not None and isinstance(value, members)) or (
            isinstance(value, str) and (value in inner.enums or _str_member_value(members, value))
        ):
            return
        raise invalid(expected="choice")
    if type_ is inner:
        _check_python_type(value, target, inner)
    checker = _WRITE_CHECKS.get(target)
    if checker is not None:
        checker(value, type_, inner)


SQL_VALUES = (ClauseElement, QueryableAttribute)
"""Values that are SQL (``func.lower(...)``, ``Model.column + 1``): the statement's business."""

_ACCEPTED: dict[type[Any], tuple[tuple[type[Any], ...], str]] = {
    int: ((int,), "integer"),
    Decimal: ((int, Decimal, float), "number"),
    float: ((int, float, Decimal), "number"),
    str: ((str,), "string"),
    dt.date: ((dt.date,), "date"),
    dt.datetime: ((dt.date,), "datetime"),  # a date is stored as its midnight everywhere
    dt.time: ((dt.time,), "time"),
}
"""The Python types a column of a plain SQL type takes, by the type it reads back as."""


def _check_python_type(value: object, target: Any, inner: sqltypes.TypeEngine[Any]) -> None:
    """Refuse a value of another Python type than a plain column of *inner* holds."""
    if isinstance(inner, sqltypes.Uuid):
        accepted: tuple[type[Any], ...] = (uuid.UUID,) if inner.as_uuid else (str,)
        expected = "UUID"
    else:
        accepted, expected = _ACCEPTED.get(target, ((object,), ""))
    if not isinstance(value, accepted):
        raise invalid(expected=expected)
    if isinstance(value, str) and isinstance(inner, sqltypes.Uuid):
        to_uuid(value, inner)  # text in an ``as_uuid=False`` column must be a UUID
    elif target is dt.date and isinstance(value, dt.datetime):
        raise invalid(expected="date")  # a date column would drop the time
    elif isinstance(value, dt.time) and value.tzinfo and not getattr(inner, "timezone", False):
        raise invalid(expected="time without time zone")  # the offset would be dropped
    elif _NUMBERS.get(target) and isinstance(value, enum.Enum) and not _binds_as_number(value):
        # An ``(int, Enum)`` member: some drivers (asyncmy) bind its str(), 'Level.HIGH'.
        raise invalid(expected=expected)


def _str_member_value(members: type[enum.Enum] | None, value: str) -> bool:
    """Whether *value* is a member's value of a ``(str, Enum)`` class.

    SQLAlchemy finds the member by it: the member compares equal to its value.
    """
    return members is not None and issubclass(members, str) and value in members._value2member_map_


_NUMBERS = {int: True, float: True, Decimal: True}
"""The number targets, where an enum member must bind as its number."""


def _binds_as_number(member: enum.Enum) -> bool:
    """Whether a number-typed enum member's ``str()`` is its number (``IntEnum``, 3.11+)."""
    base = int if isinstance(member, int) else float if isinstance(member, float) else None
    return base is not None and str(member) == base.__repr__(member)


def value_checker(type_: sqltypes.TypeEngine[Any]) -> Callable[[object], None] | None:
    """Return [`check_value`][sqla_repo._coerce.check_value] bound to *type_*, or ``None``.

    ``None`` when values of the type are left to the column type and the driver. For
    checking many values of one column: the type is examined once, not per value.
    """
    inner = unwrap(type_)
    if isinstance(inner, sqltypes.JSON):
        return lambda value: _check_json(value, 0)
    target = python_type(type_)
    if target is UNSUPPORTED:
        return None
    if isinstance(inner, sqltypes.Enum):
        return lambda value: check_value(value, type_)
    checker = _WRITE_CHECKS.get(target)
    typed = type_ is inner and (target in _ACCEPTED or isinstance(inner, sqltypes.Uuid))
    if checker is None and not typed:
        return None

    fine = _fast_path(target, inner) if typed else None

    def check(value: object) -> None:
        if fine is not None and fine(value):
            return
        if isinstance(value, SQL_VALUES):
            return
        if typed:
            _check_python_type(value, target, inner)
        if checker is not None:
            checker(value, type_, inner)

    return check


def value_fast_check(type_: sqltypes.TypeEngine[Any]) -> Callable[[object], bool] | None:
    """The at-a-glance test of [`value_checker`][sqla_repo._coerce.value_checker] for *type_*.

    A value it passes needs no further check; ``None`` where the type has no such test.
    Writes of many rows ask it first, to spare a call per value in the common case.
    """
    inner = unwrap(type_)
    if type_ is not inner or isinstance(inner, sqltypes.JSON):
        return None
    target = python_type(type_)
    if target not in _ACCEPTED:
        return None
    return _fast_path(target, inner)


def _fast_path(target: Any, inner: sqltypes.TypeEngine[Any]) -> Callable[[object], bool] | None:
    """A test that passes the common values the full check would pass, at a glance.

    Writes of many rows check every value, so the usual case is decided first: a plain
    ``int`` within the column's range, or ASCII text (which every character set holds
    and UTF-8 encodes) without NUL within its length. Anything else, subclasses and
    enum members included, gets the full check.
    """
    if isinstance(inner, (sqltypes.Uuid, sqltypes.Enum)):
        return None
    if target is int and _WRITE_CHECKS.get(int) is _check_int:
        bound = 1 << (_int_bits(inner) - 1)
        low = -bound
        return lambda value: type(value) is int and low <= value < bound
    if target is str and _WRITE_CHECKS.get(str) is _check_text:
        length = getattr(inner, "length", None)
        if not isinstance(length, int):
            return lambda value: type(value) is str and value.isascii() and "\x00" not in value
        return lambda value: (
            type(value) is str and len(value) <= length and value.isascii() and "\x00" not in value
        )
    return None


_INT = frozenset({int})
_INT_OR_NONE = frozenset({int, type(None)})
_STR = frozenset({str})
_STR_OR_NONE = frozenset({str, type(None)})


def column_fast_check(type_: sqltypes.TypeEngine[Any]) -> Callable[[list[Any]], bool] | None:
    """[`value_fast_check`][sqla_repo._coerce.value_fast_check] for a column of values at once.

    The same test (``None`` values pass, as the full check skips them), made of calls
    into C over the whole list instead of a Python call per value: writes of many rows
    check every value of every row. ``False`` says only that some value needs the full
    check.
    """
    if value_fast_check(type_) is None:
        return None
    inner = unwrap(type_)
    if python_type(type_) is int:
        return _int_column_check(1 << (_int_bits(inner) - 1))
    length = getattr(inner, "length", None)
    return _text_column_check(length if isinstance(length, int) else None)


def _int_column_check(bound: int) -> Callable[[list[Any]], bool]:
    low = -bound

    def ints(values: list[Any]) -> bool:
        kinds = set(map(type, values))
        if kinds != _INT:
            if not kinds <= _INT_OR_NONE:
                return False
            values = [value for value in values if value is not None]
        return not values or (low <= min(values) and max(values) < bound)

    return ints


def _text_column_check(limit: int | None) -> Callable[[list[Any]], bool]:
    def texts(values: list[Any]) -> bool:
        kinds = set(map(type, values))
        if kinds != _STR:
            if not kinds <= _STR_OR_NONE:
                return False
            values = [value for value in values if value is not None]
            if not values:
                return True
        if limit is not None and max(map(len, values)) > limit:
            return False
        joined = "".join(values)
        return joined.isascii() and "\x00" not in joined

    return texts


def check_values(
    columns: Mapping[str, Any], values: Mapping[str, Any], *, model: type[Any] | None = None
) -> None:
    """Check every written value of *values* whose key names a column of *columns*.

    Args:
        columns: Column objects (anything with a ``type``) by attribute key.
        values: The values to write, by attribute key; other keys are ignored.
        model: The mapped class, named in the error.

    Raises:
        InvalidValueError: A value the column cannot hold on some backend; ``detail``
            names the ``field`` and the ``reason``, never the value.
    """
    for key, value in values.items():
        column = columns.get(key)
        if column is None or value is None:
            continue
        try:
            check_value(value, column.type)
        except CoercionError as exc:
            raise InvalidValueError(
                exc.message, model=model, detail={"field": key, "reason": exc.reason}
            ) from None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _check_text(value: object, type_: sqltypes.TypeEngine[Any], inner: Any) -> None:
    if not isinstance(value, str):
        return
    to_str(value, inner)
    length = getattr(inner, "length", None)
    if isinstance(length, int) and len(value) > length:
        msg = f"The value is longer than {length} characters."
        raise CoercionError(reason="value_too_long", message=msg)
    check_charset(value, type_)


def _check_int(value: object, _type: sqltypes.TypeEngine[Any], inner: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        to_int(value, inner)


def _check_decimal(value: object, _type: sqltypes.TypeEngine[Any], inner: Any) -> None:
    if _is_number(value):
        to_decimal(value, inner)


_EXACT_INT = 2**53
"""Integers up to this magnitude are exact in a double; larger ones may be rounded."""


def _check_float(value: object, _type: sqltypes.TypeEngine[Any], inner: Any) -> None:
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        _check_exact_in_double(value)
    if _is_number(value):
        to_float(value, inner)


def _check_exact_in_double(value: int | Decimal) -> None:
    """Refuse a whole number beyond 2**53 that a double would round."""
    if isinstance(value, Decimal) and (not value.is_finite() or value != value.to_integral_value()):
        return  # NaN and fractions: a double keeps them as close as any float would
    if -_EXACT_INT <= value <= _EXACT_INT:
        return
    try:
        exact = int(float(value)) == value
    except OverflowError:
        exact = False
    if not exact:
        msg = "The integer has more digits than this field keeps."
        raise CoercionError(reason="invalid_value", message=msg)


def _check_datetime(value: object, type_: sqltypes.TypeEngine[Any], inner: Any) -> None:
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        return
    if not getattr(inner, "timezone", False):
        msg = "The datetime has a time zone; this field stores none."
        raise CoercionError(reason="invalid_value", message=msg)
    if type_ is inner and value.utcoffset():
        # DateTime(timezone=True) keeps the offset on PostgreSQL only: MariaDB and SQLite
        # store the wall time and drop it. (UTCDateTime converts to UTC itself.)
        msg = "The datetime is not in UTC, and some databases would drop its offset."
        raise CoercionError(reason="invalid_value", message=msg)


def _check_uuid(value: object, _type: sqltypes.TypeEngine[Any], inner: Any) -> None:
    if isinstance(value, uuid.UUID):
        to_uuid(value, inner)


def _check_json(value: object, depth: int) -> None:
    if depth > _JSON_DEPTH:
        raise CoercionError(reason="invalid_value", message="The document is nested too deeply.")
    if isinstance(value, float) and not math.isfinite(value):
        raise CoercionError(reason="invalid_value", message="The document holds NaN or infinity.")
    if isinstance(value, Decimal) and not value.is_finite():
        raise CoercionError(reason="invalid_value", message="The document holds NaN or infinity.")
    if isinstance(value, str):
        to_str(value, sqltypes.NullType())
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json(key, depth + 1)
            _check_json(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_json(item, depth + 1)


_WRITE_CHECKS: dict[type[Any], Callable[[object, sqltypes.TypeEngine[Any], Any], None]] = {
    str: _check_text,
    int: _check_int,
    Decimal: _check_decimal,
    float: _check_float,
    dt.datetime: _check_datetime,
    uuid.UUID: _check_uuid,
}
