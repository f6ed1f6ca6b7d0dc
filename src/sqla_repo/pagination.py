"""Pages of results: offset pages, keyset (cursor) pages and the cursor codec.

[`SearchResult`][sqla_repo.pagination.SearchResult] is an offset page with its total;
[`CursorPage`][sqla_repo.pagination.CursorPage] is a keyset page with opaque cursors.

A cursor holds the sort-key values of the row at a page boundary, a fingerprint of the
sort specification it was made for, and an HMAC-SHA256 tag (truncated to 128 bits), all
in URL-safe base64 without padding. Values are stored as JSON with type tags (never
pickle), so ``int``, ``float``, ``Decimal``, ``str``, ``bool``, ``None``, ``datetime``,
``date``, ``time``, ``UUID`` and enum members (stored by value) round-trip. A cursor
that is malformed, truncated, longer than
[`MAX_CURSOR_LENGTH`][sqla_repo.pagination.MAX_CURSOR_LENGTH], signed with another
secret or made for another sort order raises
[`InvalidFilterError`][sqla_repo.exceptions.InvalidFilterError] with
``detail["field"] == "cursor"``.

The signing secret is random per process by default, which is safe but means a cursor is
only valid in the process that made it. Deployments with several processes or hosts must
share one secret (for example from an environment variable) at start-up:

```python
set_cursor_secret(os.environ["CURSOR_SECRET"])
```

[`keyset_predicate`][sqla_repo.pagination.keyset_predicate] builds the ``WHERE`` clause
that selects the rows after (or before) a cursor, for any mix of ascending and
descending keys, with NULL sorting as the smallest value as
[`SortKey.clause()`][sqla_repo.filters.SortKey.clause] orders it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import functools
import hashlib
import hmac
import json
import math
import re
import secrets
import uuid
from collections.abc import Sequence  # noqa: TC003 - dataclass fields: get_type_hints() works
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from sqlalchemy import and_, false, literal, or_

from sqla_repo._coerce import UNSUPPORTED, CoercionError, coerce, python_type
from sqla_repo.exceptions import ConfigurationError, InvalidFilterError

if TYPE_CHECKING:
    from sqlalchemy.sql.elements import ColumnElement

    from sqla_repo.filters import SortKey

__all__ = [
    "MAX_CURSOR_LENGTH",
    "CursorPage",
    "SearchResult",
    "cursor_spec",
    "decode_cursor",
    "encode_cursor",
    "keyset_predicate",
    "row_values",
    "set_cursor_secret",
]

T = TypeVar("T")

MAX_CURSOR_LENGTH: Final = 4096
"""The longest cursor accepted, in characters."""

_MIN_SECRET = 16
_TAG = 16  # bytes of the HMAC-SHA256 kept in a cursor
_VERSION = b"\x01"
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_secret: bytes = secrets.token_bytes(32)


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


# -- Cursor codec -----------------------------------------------------------------------------


def _as_key(secret: bytes | str) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    if len(key) < _MIN_SECRET:
        msg = f"The cursor secret must be at least {_MIN_SECRET} bytes (32 random bytes advised)."
        raise ValueError(msg)
    return key


def set_cursor_secret(secret: bytes | str) -> None:
    """Set the process-wide secret that signs cursors.

    Every process that may receive a cursor made by another must use the same secret.
    Changing it invalidates the cursors already handed out.

    Args:
        secret: At least 16 bytes (a ``str`` is UTF-8 encoded); 32 random bytes advised,
            e.g. ``secrets.token_hex(32)`` stored in the deployment's configuration.

    Raises:
        ValueError: The secret is too short.
    """
    global _secret  # noqa: PLW0603 - one process-wide setting
    _secret = _as_key(secret)


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


def _cursor_error(*, message: str, reason: str) -> InvalidFilterError:
    return InvalidFilterError(message, detail={"field": "cursor", "reason": reason})


@functools.lru_cache(maxsize=256)
def _fingerprint(spec: str) -> str:
    return hashlib.sha256(spec.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _tag(key: bytes, body: bytes) -> bytes:
    return hmac.digest(key, body, "sha256")[:_TAG]


_ENCODERS: tuple[tuple[type[Any], str, Any], ...] = (
    (float, "f", float.hex),
    (Decimal, "n", str),
    (dt.datetime, "t", dt.datetime.isoformat),  # before date: a datetime is a date
    (dt.date, "d", dt.date.isoformat),
    (dt.time, "h", dt.time.isoformat),
    (uuid.UUID, "u", lambda value: value.hex),
)


def _encode_value(value: object) -> Any:
    if isinstance(value, enum.Enum):
        return _encode_value(value.value)
    if value is None or isinstance(value, (bool, str, int)):
        return value
    for type_, tag, encode in _ENCODERS:
        if isinstance(value, type_):
            return {tag: encode(value)}
    msg = f"Cannot paginate with a cursor over values of type {type(value).__name__}."
    raise _cursor_error(message=msg, reason="unsupported_cursor_value")


_DECODERS: dict[str, Any] = {
    "f": float.fromhex,
    "n": Decimal,
    "t": dt.datetime.fromisoformat,
    "d": dt.date.fromisoformat,
    "h": dt.time.fromisoformat,
    "u": uuid.UUID,
}


def _decode_value(value: object) -> Any:
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((tag, text),) = value.items()
        if tag in _DECODERS and isinstance(text, str):
            return _DECODERS[tag](text)
    msg = "malformed value"
    raise ValueError(msg)


def encode_cursor(values: Sequence[Any], *, spec: str, secret: bytes | str | None = None) -> str:
    """Encode the sort-key values of a boundary row as a signed, opaque cursor.

    Args:
        values: The row's sort-key values, in key order (see
            [`row_values`][sqla_repo.pagination.row_values]).
        spec: What the cursor is bound to (see
            [`cursor_spec`][sqla_repo.pagination.cursor_spec]); decoding with another
            spec fails.
        secret: The signing secret; ``None`` uses the process-wide one.

    Returns:
        A URL-safe string.

    Raises:
        InvalidFilterError: A value has an unsupported type, or the cursor would be
            longer than [`MAX_CURSOR_LENGTH`][sqla_repo.pagination.MAX_CURSOR_LENGTH].
    """
    key = _secret if secret is None else _as_key(secret)
    payload = [_fingerprint(spec), [_encode_value(value) for value in values]]
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    body = _VERSION + text.encode()
    cursor = base64.urlsafe_b64encode(body + _tag(key, body)).rstrip(b"=").decode("ascii")
    if len(cursor) > MAX_CURSOR_LENGTH:
        msg = "The sort values are too large to make a cursor; sort on shorter fields."
        raise _cursor_error(message=msg, reason="cursor_too_long")
    return cursor


def decode_cursor(cursor: str, *, spec: str, secret: bytes | str | None = None) -> list[Any]:
    """Decode and verify a cursor made by [`encode_cursor`][sqla_repo.pagination.encode_cursor].

    Args:
        cursor: The cursor from untrusted input.
        spec: The spec the cursor must have been made for.
        secret: The signing secret; ``None`` uses the process-wide one.

    Returns:
        The sort-key values, with their types restored (enum members come back as their
        values; [`keyset_predicate`][sqla_repo.pagination.keyset_predicate] converts them).

    Raises:
        InvalidFilterError: The cursor is not a string, too long, malformed, truncated,
            tampered with, signed with another secret, or made for another spec.
    """
    key = _secret if secret is None else _as_key(secret)
    untrusted: object = cursor
    if not isinstance(untrusted, str) or not untrusted:
        raise _cursor_error(
            message="The cursor must be a non-empty string.", reason="malformed_cursor"
        )
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise _cursor_error(message="The cursor is too long.", reason="cursor_too_long")
    if not _BASE64URL.fullmatch(cursor):
        raise _cursor_error(message="The cursor is malformed.", reason="malformed_cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise _cursor_error(message="The cursor is malformed.", reason="malformed_cursor") from None
    body, tag = raw[:-_TAG], raw[-_TAG:]
    if len(raw) <= _TAG + len(_VERSION) or not body.startswith(_VERSION):
        raise _cursor_error(message="The cursor is malformed.", reason="malformed_cursor")
    if not hmac.compare_digest(tag, _tag(key, body)):
        raise _cursor_error(
            message="The cursor is invalid or has expired.", reason="invalid_cursor"
        )
    try:
        fingerprint, values = json.loads(body[len(_VERSION) :].decode())
        if not isinstance(values, list):
            raise TypeError  # noqa: TRY301 - one handler for every malformed shape
        decoded = [_decode_value(value) for value in values]
    except (ValueError, TypeError, ArithmeticError, RecursionError):
        raise _cursor_error(message="The cursor is malformed.", reason="malformed_cursor") from None
    if fingerprint != _fingerprint(spec):
        msg = "The cursor was made for another sort order; start again from the first page."
        raise _cursor_error(message=msg, reason="cursor_mismatch")
    return decoded


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


def _coerce_key(key: SortKey, value: object) -> Any:
    if value is None or python_type(key.expression.type) is UNSUPPORTED:
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
        upward = key.descending != forward  # the rows past the boundary hold larger values
        past: ColumnElement[bool] | None
        if value is None:
            past = column.is_not(None) if upward else None
        elif upward:
            past = column > value
        else:
            past = or_(column < value, column.is_(None)) if key.nullable else column < value
        if past is not None:
            disjuncts.append(and_(*equal, past))
        equal.append(column.is_(None) if value is None else column == value)
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
        None if raw is None else literal(raw, key.expression.type)
        for key, raw in zip(keys, map(_coerce_key, keys, values), strict=True)
    ]
    if len(keys) == 1 and bound[0] is not None and not keys[0].nullable:
        # The common case, a unique non-null key (the primary key): one comparison.
        column = keys[0].expression
        return column > bound[0] if keys[0].descending != forward else column < bound[0]
    predicate = _expanded(keys, bound, forward=forward)
    first, value = keys[0], bound[0]
    if len(keys) > 1 and value is not None:
        if first.descending != forward:
            predicate = and_(first.expression >= value, predicate)
        elif not first.nullable:
            predicate = and_(first.expression <= value, predicate)
    return predicate
