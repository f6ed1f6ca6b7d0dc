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

import contextlib
import datetime as dt
import enum
import math
import re
import uuid
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING, Any

from sqlalchemy import types as sqltypes

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

UTC = dt.timezone.utc

UNSUPPORTED = object()
"""Returned by [`python_type`][sqla_repo._coerce.python_type] for types it cannot coerce to."""

_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NUMBER_CHARS = 100  # longer numeric strings are rejected before parsing them
_MAX_DIGITS = 38  # DECIMAL(38) is what every backend compares without loss or error
_FLOAT32_MAX = 3.4028234663852886e38  # the largest finite single-precision float
_SINGLE_PRECISION = 24  # Float(precision) up to 24 binary digits is a float32 column
# MySQL/MariaDB character sets that hold fewer characters than Unicode, and the Python
# codec that encodes exactly the characters each holds.
_CHARSET_CODECS = {"utf8mb3": "utf-8", "utf8": "utf-8", "latin1": "cp1252", "ascii": "ascii"}
_BMP_ONLY = frozenset({"utf8mb3", "utf8"})
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class CoercionError(ValueError):
    """A value cannot be coerced; ``reason`` is a stable code, the message is client-safe."""

    def __init__(self, *, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def unwrap(type_: sqltypes.TypeEngine[Any]) -> sqltypes.TypeEngine[Any]:
    """Return the SQL type under any ``TypeDecorator`` layers."""
    while isinstance(type_, sqltypes.TypeDecorator):
        type_ = type_.impl_instance
    return type_


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
    if result in _COERCERS or issubclass(result, enum.Enum):
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
        return _to_enum(value, target)
    inner = unwrap(type_)
    result = _COERCERS[target](value, inner)
    if target is str:
        _check_charset(result, type_)
    if target is uuid.UUID and isinstance(inner, sqltypes.Uuid) and not inner.as_uuid:
        return str(result)
    return result


def _invalid(*, expected: str) -> CoercionError:
    return CoercionError(reason="invalid_value", message=f"The value is not a valid {expected}.")


def _to_str(value: object, inner: sqltypes.TypeEngine[Any]) -> str:
    if not isinstance(value, str):
        raise _invalid(expected="string")
    if "\x00" in value:
        raise CoercionError(reason="invalid_value", message="The value contains a NUL character.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CoercionError(
            reason="invalid_value", message="The value is not valid Unicode text."
        ) from None
    if isinstance(inner, sqltypes.Enum) and value not in inner.enums:
        raise _invalid(expected="choice")
    return value


_CHARSETS: dict[Any, frozenset[str]] = {}
"""``_charsets()`` per type object (by identity): every written string asks, the answer
never changes. Bounded: types made on the fly are not all kept alive."""
_CHARSETS_KEPT = 4096


def _charsets(type_: sqltypes.TypeEngine[Any]) -> frozenset[str]:
    """The MySQL/MariaDB character sets *type_* declares, by charset or collation name.

    Read from the type itself and from its ``with_variant()`` types for MySQL/MariaDB.
    A charset set on the table or the database is not visible here; the server's
    "illegal mix of collations" error is translated for those.
    """
    found = _CHARSETS.get(type_)
    if found is None:
        found = frozenset(_find_charsets(type_))
        if len(_CHARSETS) < _CHARSETS_KEPT:
            _CHARSETS[type_] = found
    return found


def _find_charsets(type_: sqltypes.TypeEngine[Any]) -> set[str]:
    found: set[str] = set()
    candidates = [type_, unwrap(type_)]
    for candidate in list(candidates):
        mapping = getattr(candidate, "_variant_mapping", None) or {}
        candidates += [mapping[name] for name in ("mysql", "mariadb") if name in mapping]
    for candidate in candidates:
        inner = unwrap(candidate)
        charset = getattr(inner, "charset", None)
        collation = getattr(inner, "collation", None)
        if isinstance(charset, str):
            found.add(charset.lower())
        if isinstance(collation, str):
            found.add(collation.lower().split("_", 1)[0])
    return found


def _check_charset(value: str, type_: sqltypes.TypeEngine[Any]) -> None:
    """Refuse text a column's MySQL/MariaDB character set cannot hold.

    MariaDB compares such a column with the value in the column's character set, and a
    character it lacks (a 4-byte emoji for ``utf8mb3``) fails the statement with
    "illegal mix of collations"; refusing it keeps every backend alike.
    """
    for charset in _charsets(type_):
        codec = _CHARSET_CODECS.get(charset)
        if codec is None:
            continue
        if charset in _BMP_ONLY and any(ord(c) > 0xFFFF for c in value):  # noqa: PLR2004
            msg = "The value contains a character this field cannot hold."
            raise CoercionError(reason="invalid_value", message=msg)
        try:
            value.encode(codec)
        except UnicodeEncodeError:
            msg = "The value contains a character this field cannot hold."
            raise CoercionError(reason="invalid_value", message=msg) from None


def _to_bool(value: object, _inner: sqltypes.TypeEngine[Any]) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in {0, 1}:
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _invalid(expected="boolean (true/false, 1/0, yes/no)")


def _int_bits(inner: sqltypes.TypeEngine[Any]) -> int:
    if isinstance(inner, sqltypes.SmallInteger):
        return 16
    if isinstance(inner, sqltypes.BigInteger) or not isinstance(inner, sqltypes.Integer):
        return 64
    return 32


def _to_int(value: object, inner: sqltypes.TypeEngine[Any]) -> int:
    if isinstance(value, str):
        text = value.strip()
        if len(text) > _NUMBER_CHARS or not _INTEGER.fullmatch(text):
            raise _invalid(expected="integer")
        result = int(text)
    elif isinstance(value, int) and not isinstance(value, bool):
        result = value
    else:
        raise _invalid(expected="integer")
    bound = 1 << (_int_bits(inner) - 1)
    if not -bound <= result < bound:
        raise CoercionError(
            reason="out_of_range", message="The integer is out of range for this field."
        )
    return result


def _to_decimal(value: object, inner: sqltypes.TypeEngine[Any]) -> Decimal:
    result = _decimal_of(value)
    if result is None or not result.is_finite():
        raise _invalid(expected="finite number")
    if result.is_zero():
        return Decimal(0)
    if len(result.as_tuple().digits) > _MAX_DIGITS or abs(result.adjusted()) > _MAX_DIGITS:
        msg = "The number is out of range for this field."
        raise CoercionError(reason="out_of_range", message=msg)
    precision = getattr(inner, "precision", None)
    scale = getattr(inner, "scale", None)
    if scale is None and isinstance(precision, int) and not isinstance(inner, sqltypes.Float):
        scale = 0  # NUMERIC(p) is NUMERIC(p, 0) on PostgreSQL and MySQL/MariaDB
    if isinstance(inner, sqltypes.Numeric) and isinstance(scale, int):
        # Drivers may cast the parameter to the column's NUMERIC(p, s) (asyncpg does),
        # which would round it or overflow: only values the column can hold are exact.
        if isinstance(precision, int) and abs(result) >= Decimal(1).scaleb(precision - scale):
            msg = "The number is out of range for this field."
            raise CoercionError(reason="out_of_range", message=msg)
        with localcontext() as context:
            context.prec = 4 * _MAX_DIGITS  # digits are bounded above: no overflow
            exact = result == result.quantize(Decimal(1).scaleb(-scale))
        if not exact:
            msg = f"The number has more than {scale} decimal places."
            raise CoercionError(reason="invalid_value", message=msg)
    return result


def _decimal_of(value: object) -> Decimal | None:
    if isinstance(value, str):
        text = value.strip()
        return Decimal(text) if len(text) <= _NUMBER_CHARS and _NUMBER.fullmatch(text) else None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    return None


def _single_precision(inner: sqltypes.TypeEngine[Any]) -> bool:
    """Whether *inner* is a float32 column (``REAL``, ``Float(precision<=24)``)."""
    if isinstance(inner, sqltypes.REAL):
        return True
    precision = getattr(inner, "precision", None)
    return (
        isinstance(inner, sqltypes.Float)
        and isinstance(precision, int)
        and precision <= _SINGLE_PRECISION
    )


def _to_float(value: object, inner: sqltypes.TypeEngine[Any]) -> float:
    # NaN and infinity: PostgreSQL and SQLite accept them, MySQL/MariaDB cannot bind them.
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _invalid(expected="finite number")
        result = value
    else:
        number = _decimal_of(value)
        if number is None or not number.is_finite():
            raise _invalid(expected="finite number")
        result = float(number)
    # asyncpg encodes a float4 parameter itself and refuses one beyond the float32 range.
    bound = _FLOAT32_MAX if _single_precision(inner) else math.inf
    if not -bound <= result <= bound or math.isinf(result):
        msg = "The number is out of range for this field."
        raise CoercionError(reason="out_of_range", message=msg)
    return result


def _to_date(value: object, _inner: sqltypes.TypeEngine[Any]) -> dt.date:
    if isinstance(value, dt.datetime):
        raise _invalid(expected="date (YYYY-MM-DD)")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise _invalid(expected="date (YYYY-MM-DD)")


def _to_datetime(value: object, inner: sqltypes.TypeEngine[Any]) -> dt.datetime:
    if isinstance(value, dt.datetime):
        result = value
    elif isinstance(value, dt.date):
        result = dt.datetime.combine(value, dt.time(), tzinfo=UTC)
    elif isinstance(value, str):
        text = value.strip()
        if text[-1:] in {"Z", "z"}:  # Python < 3.11 does not read the "Z" suffix
            text = text[:-1] + "+00:00"
        try:
            result = dt.datetime.fromisoformat(text)
        except ValueError:
            raise _invalid(expected="ISO 8601 datetime") from None
    else:
        raise _invalid(expected="ISO 8601 datetime")
    try:
        if result.tzinfo is None or result.utcoffset() is None:
            # A naive value from a client has no zone to convert from: it is read as UTC.
            result = result.replace(tzinfo=UTC)
        else:
            result = result.astimezone(UTC)
    except OverflowError:
        raise CoercionError(
            reason="out_of_range", message="The datetime is out of range."
        ) from None
    if not getattr(inner, "timezone", False):
        # A column without time zone holds naive UTC wall time.
        result = result.replace(tzinfo=None)
    return result


def _to_time(value: object, _inner: sqltypes.TypeEngine[Any]) -> dt.time:
    result: dt.time | None = None
    if isinstance(value, dt.time):
        result = value
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            result = dt.time.fromisoformat(value.strip())
    if result is None or result.tzinfo is not None:
        raise _invalid(expected="time (HH:MM[:SS])")
    return result


def _to_uuid(value: object, _inner: sqltypes.TypeEngine[Any]) -> uuid.UUID:
    result: uuid.UUID | None = None
    if isinstance(value, uuid.UUID):
        result = value
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            result = uuid.UUID(value.strip())
    if result is None:
        raise _invalid(expected="UUID")
    if result.bytes[6] >= 0x80 and result.bytes[8] < 0x80:  # noqa: PLR2004
        # Version 8-15 with the NCS variant (0xxx): MariaDB's native UUID type refuses it
        # (a comparison then matches NULL, silently); no RFC 9562 UUID looks like this.
        raise _invalid(expected="UUID (RFC 9562 variant)")
    return result


def _to_enum(value: object, enum_class: type[enum.Enum]) -> enum.Enum:
    if isinstance(value, enum_class):
        return value
    if isinstance(value, str):
        # By value first, then by the value's text (for int-valued enums), then by name.
        text = value.strip()
        candidates = [m for m in enum_class if m.value == value]
        candidates += [
            m for m in enum_class if not isinstance(m.value, str) and str(m.value) == text
        ]
        candidates += [m for name, m in enum_class.__members__.items() if name == value]
    elif isinstance(value, int) and not isinstance(value, bool):
        candidates = [m for m in enum_class if isinstance(m.value, int) and m.value == value]
    else:
        candidates = []
    if not candidates:
        raise _invalid(expected="choice")
    return candidates[0]


_COERCERS: dict[type[Any], Callable[[Any, sqltypes.TypeEngine[Any]], Any]] = {
    str: _to_str,
    bool: _to_bool,
    int: _to_int,
    float: _to_float,
    Decimal: _to_decimal,
    dt.datetime: _to_datetime,
    dt.date: _to_date,
    dt.time: _to_time,
    uuid.UUID: _to_uuid,
}


# -- written values ----------------------------------------------------------------------------

_JSON_DEPTH = 64  # deeper documents are refused rather than walked


def check_value(value: object, type_: sqltypes.TypeEngine[Any]) -> None:
    """Refuse a value to be *written* to a column of *type_* that a backend would refuse or change.

    Unlike [`coerce`][sqla_repo._coerce.coerce], nothing is converted: a value of the
    column's Python type is checked against the column's domain on every backend (the
    union of what any of them refuses or changes), and a value of another type is left
    to the column type and the driver, whose errors are translated. Refused: integers
    beyond the column's width; numbers that are not finite, beyond a ``Numeric``
    column's precision or with more decimal places than its scale (PostgreSQL and
    MariaDB would round them, SQLite would store them as given); floats beyond float32
    range for a single-precision column; strings longer than the column, holding a NUL
    character, a lone surrogate or a character the column's MySQL/MariaDB character set
    lacks; enum values that are not members (SQLite would store them, and every later
    read of the row would fail); aware datetimes for a column without time zone
    (PostgreSQL refuses them, MariaDB and SQLite would drop the offset); UUIDs MariaDB's
    ``UUID`` type refuses; JSON documents holding NaN, infinity, NUL or lone surrogates.

    Raises:
        CoercionError: The value is one the column cannot hold on some backend.
    """
    if value is None:
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
            isinstance(value, str) and value in inner.enums
        ):
            return
        raise _invalid(expected="choice")
    checker = _WRITE_CHECKS.get(target)
    if checker is not None:
        checker(value, type_, inner)


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
    if checker is None:
        return None
    return lambda value: checker(value, type_, inner)


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
    _to_str(value, inner)
    length = getattr(inner, "length", None)
    if isinstance(length, int) and len(value) > length:
        msg = f"The value is longer than {length} characters."
        raise CoercionError(reason="value_too_long", message=msg)
    _check_charset(value, type_)


def _check_int(value: object, _type: sqltypes.TypeEngine[Any], inner: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        _to_int(value, inner)


def _check_decimal(value: object, _type: sqltypes.TypeEngine[Any], inner: Any) -> None:
    if _is_number(value):
        _to_decimal(value, inner)


def _check_float(value: object, _type: sqltypes.TypeEngine[Any], inner: Any) -> None:
    if _is_number(value):
        _to_float(value, inner)


def _check_datetime(value: object, _type: sqltypes.TypeEngine[Any], inner: Any) -> None:
    if (
        isinstance(value, dt.datetime)
        and value.tzinfo is not None
        and not getattr(inner, "timezone", False)
    ):
        msg = "The datetime has a time zone; this field stores none."
        raise CoercionError(reason="invalid_value", message=msg)


def _check_uuid(value: object, _type: sqltypes.TypeEngine[Any], inner: Any) -> None:
    if isinstance(value, uuid.UUID):
        _to_uuid(value, inner)


def _check_json(value: object, depth: int) -> None:
    if depth > _JSON_DEPTH:
        raise CoercionError(reason="invalid_value", message="The document is nested too deeply.")
    if isinstance(value, float) and not math.isfinite(value):
        raise CoercionError(reason="invalid_value", message="The document holds NaN or infinity.")
    if isinstance(value, Decimal) and not value.is_finite():
        raise CoercionError(reason="invalid_value", message="The document holds NaN or infinity.")
    if isinstance(value, str):
        _to_str(value, sqltypes.NullType())
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
