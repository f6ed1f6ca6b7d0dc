"""Per-type converters from an untrusted scalar to a column's Python type (private).

Each converter takes the value and the column's SQL type under any ``TypeDecorator``
layers, and returns the value converted, or raises
[`CoercionError`][sqla_repo._converters.CoercionError] with a client-safe reason code and
message. ``sqla_repo._coerce`` picks the converter for a column and checks written values
with the same rules.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
import uuid
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING, Any

from sqlalchemy import types as sqltypes

if TYPE_CHECKING:
    import enum
    from collections.abc import Callable

__all__ = [
    "COERCERS",
    "CoercionError",
    "check_charset",
    "invalid",
    "to_decimal",
    "to_enum",
    "to_float",
    "to_int",
    "to_str",
    "to_uuid",
    "unwrap",
]

UTC = dt.timezone.utc


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


def invalid(*, expected: str) -> CoercionError:
    return CoercionError(reason="invalid_value", message=f"The value is not a valid {expected}.")


def to_str(value: object, inner: sqltypes.TypeEngine[Any]) -> str:
    if not isinstance(value, str):
        raise invalid(expected="string")
    if "\x00" in value:
        raise CoercionError(reason="invalid_value", message="The value contains a NUL character.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CoercionError(
            reason="invalid_value", message="The value is not valid Unicode text."
        ) from None
    if isinstance(inner, sqltypes.Enum) and value not in inner.enums:
        raise invalid(expected="choice")
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


def check_charset(value: str, type_: sqltypes.TypeEngine[Any]) -> None:
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
    raise invalid(expected="boolean (true/false, 1/0, yes/no)")


def _int_bits(inner: sqltypes.TypeEngine[Any]) -> int:
    if isinstance(inner, sqltypes.SmallInteger):
        return 16
    if isinstance(inner, sqltypes.BigInteger) or not isinstance(inner, sqltypes.Integer):
        return 64
    return 32


def to_int(value: object, inner: sqltypes.TypeEngine[Any]) -> int:
    if isinstance(value, str):
        text = value.strip()
        if len(text) > _NUMBER_CHARS or not _INTEGER.fullmatch(text):
            raise invalid(expected="integer")
        result = int(text)
    elif isinstance(value, int) and not isinstance(value, bool):
        result = value
    else:
        raise invalid(expected="integer")
    bound = 1 << (_int_bits(inner) - 1)
    if not -bound <= result < bound:
        raise CoercionError(
            reason="out_of_range", message="The integer is out of range for this field."
        )
    return result


def to_decimal(value: object, inner: sqltypes.TypeEngine[Any]) -> Decimal:
    result = _decimal_of(value)
    if result is None or not result.is_finite():
        raise invalid(expected="finite number")
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


def to_float(value: object, inner: sqltypes.TypeEngine[Any]) -> float:
    # NaN and infinity: PostgreSQL and SQLite accept them, MySQL/MariaDB cannot bind them.
    if isinstance(value, float):
        if not math.isfinite(value):
            raise invalid(expected="finite number")
        result = value
    else:
        number = _decimal_of(value)
        if number is None or not number.is_finite():
            raise invalid(expected="finite number")
        result = float(number)
    # asyncpg encodes a float4 parameter itself and refuses one beyond the float32 range.
    bound = _FLOAT32_MAX if _single_precision(inner) else math.inf
    if not -bound <= result <= bound or math.isinf(result):
        msg = "The number is out of range for this field."
        raise CoercionError(reason="out_of_range", message=msg)
    return result


def _to_date(value: object, _inner: sqltypes.TypeEngine[Any]) -> dt.date:
    if isinstance(value, dt.datetime):
        raise invalid(expected="date (YYYY-MM-DD)")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise invalid(expected="date (YYYY-MM-DD)")


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
            raise invalid(expected="ISO 8601 datetime") from None
    else:
        raise invalid(expected="ISO 8601 datetime")
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
        raise invalid(expected="time (HH:MM[:SS])")
    return result


def to_uuid(value: object, _inner: sqltypes.TypeEngine[Any]) -> uuid.UUID:
    result: uuid.UUID | None = None
    if isinstance(value, uuid.UUID):
        result = value
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            result = uuid.UUID(value.strip())
    if result is None:
        raise invalid(expected="UUID")
    if result.bytes[6] >= 0x80 and result.bytes[8] < 0x80:  # noqa: PLR2004
        # Version 8-15 with the NCS variant (0xxx): MariaDB's native UUID type refuses it
        # (a comparison then matches NULL, silently); no RFC 9562 UUID looks like this.
        raise invalid(expected="UUID (RFC 9562 variant)")
    return result


def to_enum(value: object, enum_class: type[enum.Enum]) -> enum.Enum:
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
        raise invalid(expected="choice")
    return candidates[0]


COERCERS: dict[type[Any], Callable[[Any, sqltypes.TypeEngine[Any]], Any]] = {
    str: to_str,
    bool: _to_bool,
    int: to_int,
    float: to_float,
    Decimal: to_decimal,
    dt.datetime: _to_datetime,
    dt.date: _to_date,
    dt.time: _to_time,
    uuid.UUID: to_uuid,
}
