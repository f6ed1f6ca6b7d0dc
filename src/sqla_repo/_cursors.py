"""The cursor codec: a page boundary, encrypted, authenticated and bound to its query.

The public names are re-exported from [`sqla_repo.pagination`][sqla_repo.pagination], which
also holds what a cursor is bound to (``cursor_spec``, ``cursor_scope``);
``docs/explanation/cursors.md`` gives the design, the threat model and the costs.

A cursor is URL-safe base64 (no padding) of the bytes

```text
version (1) | nonce (16) | ciphertext | tag (16)
```

The ciphertext is the plaintext XOR a keystream of 64-byte keyed BLAKE2b blocks
``BLAKE2b(nonce | counter, key=k_enc)`` (counter mode); the tag is the 16-byte
``BLAKE2b(version | nonce | ciphertext, key=k_mac)`` (encrypt-then-MAC). The plaintext is
``issued at (6 bytes, ms since the epoch) | sort digest (8) | scope digest (8) | values``,
where the digests are the 8-byte ``BLAKE2b(..., key=k_bind)`` of the sort specification
and of the scope, and the values are type-tagged JSON. ``k_enc``, ``k_mac`` and ``k_bind``
are derived from the secret with HKDF-SHA256 under distinct labels, once per secret.
"""

from __future__ import annotations

import binascii
import datetime as dt
import enum
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from sqla_repo.exceptions import ConfigurationError, InvalidFilterError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "CURSOR_SECRET_ENV",
    "MAX_CURSOR_LENGTH",
    "cursor_secret_is_ephemeral",
    "decode_cursor",
    "encode_cursor",
    "set_cursor_secret",
]

MAX_CURSOR_LENGTH: Final = 4096
"""The longest cursor accepted, in characters."""

CURSOR_SECRET_ENV: Final = "SQLA_REPO_CURSOR_SECRET"  # noqa: S105 - a name, not a secret
"""The environment variable read for the cursor secret when none was set in code."""

_MIN_SECRET = 16
_VERSION = b"\x03"
_NONCE = 16
_TAG = 16
_DIGEST = 8
_STAMP = 6  # milliseconds since the epoch: enough until the year 10889
_HEADER = _STAMP + 2 * _DIGEST
_START = len(_VERSION) + _NONCE  # where the ciphertext starts
_BLOCK = 64  # bytes of keystream per BLAKE2b block: one block holds most plaintexts
# The shortest cursor that can be well formed: the values are at least "[]".
_MIN_RAW = _START + _HEADER + 2 + _TAG
_MAX_BLOCKS = MAX_CURSOR_LENGTH * 3 // 4 // _BLOCK + 1
_COUNTERS = tuple(i.to_bytes(4, "big") for i in range(_MAX_BLOCKS))
_DIGEST_CACHE = 1024  # entries
_CACHED_TEXT = 512  # characters
_KDF_SALT = b"sqla_repo cursor keys"

# base64url without padding, through binascii: the translation tables, the padding to
# restore by length modulo 4, and the last characters that spell the bytes the one
# canonical way (their spare low bits clear; none when the length leaves 1).
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_URL = bytes.maketrans(b"+/", b"-_")
_FROM_URL = bytes.maketrans(b"-_", b"+/")
_PADDING = (b"", b"", b"==", b"=")
_LAST = (_ALPHABET, b"", _ALPHABET[::16], _ALPHABET[::4])
# Bound once: each is one C call per use.
_blake2b = hashlib.blake2b
_compare = hmac.compare_digest
_urandom = os.urandom
_a2b = binascii.a2b_base64
_b2a = binascii.b2a_base64


@dataclass(frozen=True, eq=False, slots=True)
class _Keys:
    """The keys derived from one secret (32 bytes each), with the cache of binding digests."""

    enc: bytes = field(repr=False)
    mac: bytes = field(repr=False)
    bind: bytes = field(repr=False)
    digests: dict[str, bytes] = field(default_factory=dict, repr=False)

    def digest(self, text: str) -> bytes:
        """Return the binding digest of *text* (short texts cached: specs and scopes repeat)."""
        found = self.digests.get(text)
        if found is None:
            data = text.encode("utf-8", "surrogatepass")
            found = _blake2b(data, key=self.bind, digest_size=_DIGEST).digest()
            if len(text) <= _CACHED_TEXT:  # scopes hold client input: bound the memory
                if len(self.digests) >= _DIGEST_CACHE:
                    self.digests.clear()
                self.digests[text] = found
        return found

    def keystream_xor(self, nonce: bytes, data: bytes) -> bytes:
        """Encrypt or decrypt *data* in counter mode with keyed BLAKE2b as the PRF."""
        size, key = len(data), self.enc
        if size <= _BLOCK:  # most cursors: one block
            stream = _blake2b(nonce + _COUNTERS[0], key=key, digest_size=_BLOCK).digest()
        else:
            blocks = _COUNTERS[: -(-size // _BLOCK)]
            stream = b"".join(
                [_blake2b(nonce + n, key=key, digest_size=_BLOCK).digest() for n in blocks]
            )
        # Byte by byte, so the byte order is free: little endian copies the bytes as they are.
        mixed = int.from_bytes(data, "little") ^ int.from_bytes(stream[:size], "little")
        return mixed.to_bytes(size, "little")

    def tag(self, message: bytes) -> bytes:
        """Return the 128-bit tag of *message*."""
        return _blake2b(message, key=self.mac, digest_size=_TAG).digest()


@functools.lru_cache(maxsize=16)
def _derive(secret: bytes) -> _Keys:
    """Derive the three keys of *secret* with HKDF-SHA256 (RFC 5869), once per secret."""
    prk = hmac.digest(_KDF_SALT, secret, "sha256")

    def expand(label: bytes) -> bytes:
        return hmac.digest(prk, b"sqla_repo cursor v3 " + label + b"\x01", "sha256")

    return _Keys(enc=expand(b"encryption"), mac=expand(b"authentication"), bind=expand(b"binding"))


# -- The secret ---------------------------------------------------------------------------

_lock = threading.Lock()
_keyring: tuple[_Keys, ...] | None = None  # the current secret's keys first
_ephemeral = False


def _as_key(secret: bytes | str) -> bytes:
    key: object = secret.encode() if isinstance(secret, str) else secret
    if not isinstance(key, bytes) or len(key) < _MIN_SECRET:
        msg = f"The cursor secret must be at least {_MIN_SECRET} bytes (32 random bytes advised)."
        raise ValueError(msg)
    return key


def set_cursor_secret(secret: bytes | str, *, previous: Iterable[bytes | str] = ()) -> None:
    """Set the process-wide secret that encrypts and authenticates cursors.

    It takes precedence over the ``SQLA_REPO_CURSOR_SECRET`` environment variable.
    Every process that may receive a cursor made by another must use the same secret.
    Changing it invalidates the cursors already handed out, unless the old secret is
    kept in *previous* for a while.

    Args:
        secret: At least 16 bytes (a ``str`` is UTF-8 encoded); 32 random bytes advised,
            e.g. ``secrets.token_hex(32)`` stored in the deployment's configuration.
            New cursors are made with it.
        previous: Earlier secrets whose cursors are still accepted, to rotate the
            secret without breaking the walks in progress. Drop them after the longest
            time a client may hold a cursor.

    Raises:
        ValueError: A secret is too short.
    """
    global _keyring, _ephemeral
    keyring = tuple(_derive(_as_key(key)) for key in (secret, *previous))
    with _lock:
        _keyring, _ephemeral = keyring, False


def _resolve() -> tuple[_Keys, ...]:
    global _keyring, _ephemeral
    with _lock:
        if _keyring is None:
            text = os.environ.get(CURSOR_SECRET_ENV)
            if text is None:
                _keyring, _ephemeral = (_derive(secrets.token_bytes(32)),), True
            else:
                try:
                    # Undecodable bytes in the environment come back as they were.
                    key = _as_key(text.encode("utf-8", "surrogateescape"))
                except ValueError:
                    msg = f"{CURSOR_SECRET_ENV} must hold at least {_MIN_SECRET} bytes."
                    raise ConfigurationError(msg) from None
                _keyring, _ephemeral = (_derive(key),), False
        return _keyring


def cursor_secret_is_ephemeral() -> bool:
    """Return whether cursors use a random secret made by this process.

    That is the case when neither [`set_cursor_secret()`][sqla_repo.pagination.set_cursor_secret]
    was called nor ``SQLA_REPO_CURSOR_SECRET`` is set: a cursor is then valid only in the
    process that made it, which breaks pagination behind a load balancer, with several
    workers or across a restart. Calling this reads the environment variable if it was
    not read yet.

    Raises:
        ConfigurationError: ``SQLA_REPO_CURSOR_SECRET`` is set but shorter than 16 bytes.
    """
    if _keyring is None:
        _resolve()
    return _ephemeral


# One encoder for every dump: json.dumps() with options builds a new one per call.
_dump = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


# -- Values -------------------------------------------------------------------------------


def _float_bits(value: float) -> str:
    return struct.pack(">d", value).hex()


def _with_offset(tag: str, value: dt.datetime | dt.time) -> dict[str, Any]:
    offset = value.utcoffset()
    if offset is None or not offset.microseconds:
        return {tag: value.isoformat()}
    # fromisoformat() drops an offset's microseconds: keep them apart.
    return {tag.upper(): [value.replace(tzinfo=None).isoformat(), offset // _MICROSECOND]}


_MICROSECOND = dt.timedelta(microseconds=1)
_ENCODERS: tuple[tuple[type[Any], Any], ...] = (
    (float, lambda value: {"f": _float_bits(value)}),  # bit-exact: -0.0, NaN, infinities
    (Decimal, lambda value: {"n": str(value)}),
    (dt.datetime, functools.partial(_with_offset, "t")),  # before date: a datetime is a date
    (dt.date, lambda value: {"d": value.isoformat()}),
    (dt.time, functools.partial(_with_offset, "h")),
    (uuid.UUID, lambda value: {"u": value.hex}),
)


def _cursor_error(*, message: str, reason: str) -> InvalidFilterError:
    return InvalidFilterError(message, detail={"field": "cursor", "reason": reason})


def _encode_value(value: object) -> Any:
    if isinstance(value, enum.Enum):
        return _encode_value(value.value)
    if value is None or isinstance(value, (bool, str, int)):
        return value
    for type_, encode in _ENCODERS:
        if isinstance(value, type_):
            return encode(value)
    msg = f"Cannot paginate with a cursor over values of type {type(value).__name__}."
    raise _cursor_error(message=msg, reason="unsupported_cursor_value")


def _float_of(text: str) -> float:
    if len(text) != 16:  # noqa: PLR2004 - hex digits of 8 bytes
        raise ValueError(text)
    value: float = struct.unpack(">d", bytes.fromhex(text))[0]
    return value


def _offset_of(parse: Any, payload: object) -> Any:
    if not isinstance(payload, list) or len(payload) != 2:  # noqa: PLR2004 - value, offset
        raise TypeError
    text, offset = payload
    if not isinstance(text, str) or not isinstance(offset, int):
        raise TypeError
    return parse(text).replace(tzinfo=dt.timezone(offset * _MICROSECOND))


_DECODERS: dict[str, Any] = {
    "f": _float_of,
    "n": Decimal,
    "t": dt.datetime.fromisoformat,
    "T": functools.partial(_offset_of, dt.datetime.fromisoformat),
    "d": dt.date.fromisoformat,
    "h": dt.time.fromisoformat,
    "H": functools.partial(_offset_of, dt.time.fromisoformat),
    "u": uuid.UUID,
}


def _decode_value(value: object) -> Any:
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((tag, payload),) = value.items()
        decode = _DECODERS.get(tag)
        if decode is not None and (isinstance(payload, str) or tag in {"T", "H"}):
            return decode(payload)
    msg = "malformed value"
    raise ValueError(msg)


# -- The codec ----------------------------------------------------------------------------

_clock = time.time  # a module global, so that tests can move the clock
_TOO_LONG = "The sort values are too large to make a cursor; sort on shorter fields."

# Printable ASCII but '"' and '\': the strings JSON writes as they are, between quotes.
_is_plain_text = re.compile(r"[ !#-\[\]-~]*").fullmatch
_AS_IS = frozenset({int, str, bool, type(None)})  # JSON values that are not type-tagged
_raw_decode = json.JSONDecoder().raw_decode


def _plain_json(values: Sequence[Any]) -> str | None:
    """``_dump(values)`` if each is a plain ``int`` or ASCII ``str`` JSON keeps, else None."""
    parts = []
    for value in values:
        kind = type(value)
        if kind is int:
            parts.append(f"{value}")
        elif kind is str and _is_plain_text(value):
            parts.append(f'"{value}"')
        else:
            return None
    return f"[{','.join(parts)}]"


def _values_of(text: str) -> list[Any]:
    """The values of a plaintext's JSON; ``ValueError`` or ``TypeError`` if it is malformed."""
    try:  # json.loads() in fewer steps when the text is one value and nothing else
        values, end = _raw_decode(text)
    except ValueError:
        end = -1
    if end != len(text):  # leading or trailing space, or an error: the general path
        values = json.loads(text)
    if type(values) is not list:
        raise TypeError
    if _AS_IS.issuperset(map(type, values)):
        return values  # no type-tagged value
    return [_decode_value(value) for value in values]


def encode_cursor(
    values: Sequence[Any],
    *,
    spec: str,
    scope: str | None = None,
    secret: bytes | str | None = None,
    now: float | None = None,
) -> str:
    """Encrypt the sort-key values of a boundary row into an opaque, authenticated cursor.

    Args:
        values: The row's sort-key values, in key order (see
            [`row_values`][sqla_repo.pagination.row_values]).
        spec: The model and sort order the cursor is for (see
            [`cursor_spec`][sqla_repo.pagination.cursor_spec]).
        scope: Where the cursor may be used (see
            [`cursor_scope`][sqla_repo.pagination.cursor_scope]); ``None`` is the
            empty scope ``""``.
        secret: The secret; ``None`` uses the process-wide one.
        now: The issue time in seconds since the epoch; ``None`` reads the clock.

    Returns:
        A URL-safe string.

    Raises:
        InvalidFilterError: A value has an unsupported type, or the cursor would be
            longer than [`MAX_CURSOR_LENGTH`][sqla_repo.pagination.MAX_CURSOR_LENGTH].
    """
    keys = (_keyring or _resolve())[0] if secret is None else _derive(_as_key(secret))
    values = values if type(values) is list else list(values)  # the fast path reads twice
    try:
        text = _plain_json(values) or _dump([_encode_value(value) for value in values])
    except InvalidFilterError:
        raise
    except ValueError:  # an int with more digits than str() writes: far too long anyway
        raise _cursor_error(message=_TOO_LONG, reason="cursor_too_long") from None
    issued = int((_clock() if now is None else now) * 1000)
    if not 0 <= issued < 1 << (8 * _STAMP):
        msg = "The cursor issue time is out of range."
        raise ValueError(msg)
    scope = scope or ""
    digests = keys.digests
    plain = (
        issued.to_bytes(_STAMP, "big")
        + (digests.get(spec) or keys.digest(spec))
        + (digests.get(scope) or keys.digest(scope))
        + text.encode("utf-8", "surrogatepass")
    )
    if (len(plain) + _START + _TAG) * 4 > MAX_CURSOR_LENGTH * 3:
        raise _cursor_error(message=_TOO_LONG, reason="cursor_too_long")
    nonce = _urandom(_NONCE)
    sealed = _VERSION + nonce + keys.keystream_xor(nonce, plain)
    raw = sealed + _blake2b(sealed, key=keys.mac, digest_size=_TAG).digest()
    return _b2a(raw, newline=False).translate(_TO_URL, b"=").decode("ascii")


def _unwrap(cursor: object) -> bytes:
    """The raw bytes of a cursor, checked for shape only."""
    if not isinstance(cursor, str) or not cursor:
        raise _cursor_error(
            message="The cursor must be a non-empty string.", reason="malformed_cursor"
        )
    size = len(cursor)
    if size > MAX_CURSOR_LENGTH:
        raise _cursor_error(message="The cursor is too long.", reason="cursor_too_long")
    # Only base64url characters, and a last character with its spare bits clear: one
    # spelling only, so that a changed character is always a refused cursor.
    data = cursor.encode("ascii", "replace")
    if data.translate(None, _ALPHABET) or data[-1:] not in _LAST[size % 4]:
        raise _cursor_error(message="The cursor is malformed.", reason="malformed_cursor")
    raw = _a2b(data.translate(_FROM_URL) + _PADDING[size % 4])
    if raw[:1] != _VERSION:
        # Another format version (or not a cursor): it cannot be authenticated.
        msg = "The cursor is invalid or has expired; start again from the first page."
        raise _cursor_error(message=msg, reason="invalid_cursor")
    if len(raw) < _MIN_RAW:
        raise _cursor_error(message="The cursor is malformed.", reason="malformed_cursor")
    return raw


def _check_max_age(max_age: object) -> None:
    if isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or not max_age > 0:
        msg = "The cursor max_age must be a positive number of seconds, or None."
        raise ConfigurationError(msg)


def decode_cursor(
    cursor: str,
    *,
    spec: str,
    scope: str | None = None,
    secret: bytes | str | None = None,
    max_age: float | None = None,
    now: float | None = None,
) -> list[Any]:
    """Authenticate and decrypt a cursor from [`encode_cursor`][sqla_repo.pagination.encode_cursor].

    Args:
        cursor: The cursor from untrusted input.
        spec: The model and sort order the cursor must have been made for.
        scope: The scope it must have been made for; ``None`` skips that check (a
            pre-check of the sort order, as the FastAPI helpers make, must be followed
            by ``paginate()``, which checks the scope).
        secret: The secret; ``None`` uses the process-wide ones (the current one and
            those kept for rotation).
        max_age: The oldest cursor accepted, in seconds; ``None`` accepts any age. A
            cursor issued more than *max_age* in the future (clocks apart) is refused
            too.
        now: The current time in seconds since the epoch; ``None`` reads the clock.

    Returns:
        The sort-key values, with their types restored (enum members come back as their
        values; [`keyset_predicate`][sqla_repo.pagination.keyset_predicate] converts them).

    Raises:
        InvalidFilterError: The cursor is not a string, too long, malformed, truncated,
            tampered with, made with another secret or format version
            (``invalid_cursor``), made for another model, sort order or scope
            (``cursor_mismatch``), or older than *max_age* (``cursor_expired``).
        ConfigurationError: *max_age* is not a positive number.
    """
    if max_age is not None:
        _check_max_age(max_age)
    raw = _unwrap(cursor)
    sealed, tag = raw[:-_TAG], raw[-_TAG:]
    for keys in (_keyring or _resolve()) if secret is None else (_derive(_as_key(secret)),):
        if _compare(tag, _blake2b(sealed, key=keys.mac, digest_size=_TAG).digest()):
            break
    else:
        msg = "The cursor is invalid or has expired; start again from the first page."
        raise _cursor_error(message=msg, reason="invalid_cursor")
    plain = keys.keystream_xor(sealed[len(_VERSION) : _START], sealed[_START:])
    digests = keys.digests
    if not _compare(plain[_STAMP : _STAMP + _DIGEST], digests.get(spec) or keys.digest(spec)):
        msg = "The cursor was made for another sort order; start again from the first page."
        raise _cursor_error(message=msg, reason="cursor_mismatch")
    if scope is not None and not _compare(
        plain[_STAMP + _DIGEST : _HEADER], digests.get(scope) or keys.digest(scope)
    ):
        msg = (
            "The cursor was made for other filters, another listing or another tenant; "
            "start again from the first page."
        )
        raise _cursor_error(message=msg, reason="cursor_mismatch")
    if max_age is not None:
        age = (_clock() if now is None else now) - int.from_bytes(plain[:_STAMP], "big") / 1000
        if not -max_age <= age <= max_age:
            msg = "The cursor has expired; start again from the first page."
            raise _cursor_error(message=msg, reason="cursor_expired")
    try:
        return _values_of(plain[_HEADER:].decode("utf-8", "surrogatepass"))
    except (ValueError, TypeError, ArithmeticError, RecursionError, struct.error):
        raise _cursor_error(message="The cursor is malformed.", reason="malformed_cursor") from None
