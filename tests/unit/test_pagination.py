"""Result pages, the cursor codec and keyset predicates (no server)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
import os
import struct
import subprocess
import sys
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func
from sqlalchemy.dialects import postgresql

from models import Status, User
from sqla_repo import _cursors
from sqla_repo.context import all_tenants, tenant
from sqla_repo.exceptions import ConfigurationError, InvalidFilterError
from sqla_repo.filters import ALL_COLUMNS, SortKey, compile_order_by
from sqla_repo.pagination import (
    CURSOR_SECRET_ENV,
    MAX_CURSOR_LENGTH,
    CursorPage,
    SearchResult,
    cursor_scope,
    cursor_secret_is_ephemeral,
    cursor_spec,
    decode_cursor,
    encode_cursor,
    keyset_predicate,
    row_values,
    set_cursor_secret,
)
from sqla_repo.repository import BaseRepository

UTC = dt.timezone.utc
PG = postgresql.psycopg2.dialect()
SPEC = "tests.User:-age,id"
SECRET = b"k" * 32
B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def sql(clause: Any) -> str:
    return str(clause.compile(dialect=PG))


def reason(exc: pytest.ExceptionInfo[InvalidFilterError]) -> str:
    assert exc.value.detail["field"] == "cursor"
    return str(exc.value.detail["reason"])


def raw_of(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))


def text_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def seal(plain: bytes, *, secret: bytes = SECRET, version: bytes = b"\x03") -> str:
    """Encrypt and authenticate any plaintext as the codec would (a forger holding the key)."""
    keys = _cursors._derive(secret)
    nonce = bytes(16)
    sealed = version + nonce + keys.keystream_xor(nonce, plain)
    return text_of(sealed + keys.tag(sealed))


def header(*, issued_ms: int = 0, spec: str = SPEC, scope: str = "") -> bytes:
    keys = _cursors._derive(SECRET)
    return issued_ms.to_bytes(6, "big") + keys.digest(spec) + keys.digest(scope)


@pytest.fixture
def fresh_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the process-wide secret and the environment variable; restored afterwards."""
    monkeypatch.setattr(_cursors, "_keyring", None)
    monkeypatch.setattr(_cursors, "_ephemeral", False)
    monkeypatch.delenv(CURSOR_SECRET_ENV, raising=False)


class TestSearchResult:
    @pytest.mark.parametrize(
        ("total", "limit", "offset", "items", "page", "pages", "has_next", "has_previous"),
        [
            (45, 20, 0, 20, 1, 3, True, False),
            (45, 20, 20, 20, 2, 3, True, True),
            (45, 20, 40, 5, 3, 3, False, True),
            (40, 20, 20, 20, 2, 2, False, True),
            (0, 20, 0, 0, 1, 0, False, False),
            (10, 20, 100, 0, 6, 1, False, True),
            (7, 3, 1, 3, 1, 3, True, True),
        ],
    )
    def test_counted(  # noqa: PLR0917 - one parameter per column of the table
        self, total, limit, offset, items, page, pages, has_next, has_previous
    ):
        """Page numbers and neighbours follow from total, limit and offset."""
        result = SearchResult(items=list(range(items)), total=total, limit=limit, offset=offset)
        assert (result.page, result.page_size, result.total_pages) == (page, limit, pages)
        assert (result.has_next, result.has_previous) == (has_next, has_previous)

    def test_uncounted(self):
        """Without a total, has_more decides has_next and total_pages is unknown."""
        result = SearchResult(items=[1, 2], total=None, limit=2, offset=0, has_more=True)
        assert (result.total_pages, result.has_next, result.has_previous) == (None, True, False)
        last = SearchResult(items=[1], total=None, limit=2, offset=2, has_more=False)
        assert (last.has_next, last.page) == (False, 2)

    def test_has_more_wins_over_total(self):
        """An observed has_more is trusted over a total counted separately."""
        result = SearchResult(items=[1], total=1, limit=1, offset=0, has_more=True)
        assert result.has_next

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"total": 1, "limit": 0, "offset": 0},
            {"total": 1, "limit": 1, "offset": -1},
            {"total": -1, "limit": 1, "offset": 0},
            {"total": None, "limit": 1, "offset": 0},
        ],
    )
    def test_invalid(self, kwargs):
        """Impossible pages are refused."""
        with pytest.raises(ValueError, match="SearchResult needs"):
            SearchResult(items=[], **kwargs)

    def test_frozen_generic(self):
        """Results are immutable and generic; a parametrised class constructs them."""
        result = SearchResult[int](items=[1], total=1, limit=1, offset=0)
        with pytest.raises(dataclasses.FrozenInstanceError):
            result.total = 2  # type: ignore[misc]
        page = CursorPage[int](items=[1], next_cursor="n")
        assert page.has_next


class TestCursorPage:
    def test_flags_follow_cursors(self):
        """A cursor implies a page that way; flags may be set without one."""
        page = CursorPage(items=[1], next_cursor="n")
        assert (page.has_next, page.has_previous) == (True, False)
        page = CursorPage(items=[], previous_cursor="p")
        assert (page.has_next, page.has_previous) == (False, True)
        assert CursorPage(items=[], has_next=True).has_next
        assert not CursorPage(items=[]).has_next


VALUES = [
    0,
    -(2**70),
    1.5,
    -0.0,
    float("inf"),
    float("-inf"),
    float("nan"),
    Decimal("12.50"),
    Decimal("-1E+3"),
    Decimal("NaN"),
    Decimal("-Infinity"),
    "",
    'Ünïcödé ✓ 😀 "quotes" \\ ,:{}',
    "\ud800",  # a lone surrogate
    True,
    False,
    None,
    dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
    dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    dt.datetime(2024, 5, 1, 12, 0, 0, 1),  # noqa: DTZ001 - naive values round-trip too
    dt.datetime(2024, 5, 1, tzinfo=dt.timezone(dt.timedelta(hours=-3, microseconds=7))),
    dt.date(1999, 12, 31),
    dt.time(23, 59, 59, 999999),
    dt.time(8, 0, tzinfo=UTC),
    dt.time(8, 0, tzinfo=dt.timezone(dt.timedelta(seconds=1, microseconds=1))),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
]


def same(expected: object, actual: object) -> bool:
    """Whether *actual* is *expected* exactly: type, bits, digits, exponent and offset."""
    if isinstance(expected, enum.Enum):
        expected = expected.value
    if type(expected) is not type(actual):
        return False
    if isinstance(expected, float):
        return struct.pack(">d", expected) == struct.pack(">d", actual)  # type: ignore[arg-type]
    if isinstance(expected, Decimal):
        return expected.as_tuple() == actual.as_tuple()  # type: ignore[attr-defined]
    if isinstance(expected, (dt.datetime, dt.time)):
        return (
            expected == actual
            and expected.utcoffset() == actual.utcoffset()  # type: ignore[attr-defined]
            and (expected.tzinfo is None) == (actual.tzinfo is None)  # type: ignore[attr-defined]
        )
    return expected == actual


OFFSETS = st.timedeltas(
    min_value=dt.timedelta(hours=-23, minutes=-59), max_value=dt.timedelta(hours=23, minutes=59)
).map(dt.timezone)
ZONES = st.none() | st.just(UTC) | OFFSETS
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(0, 2**64 - 1).map(lambda bits: struct.unpack(">d", bits.to_bytes(8, "big"))[0]),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
    st.datetimes(timezones=ZONES),
    st.dates(),
    st.times(timezones=ZONES),
    st.uuids(),
    st.sampled_from(Status),
)


class Users(BaseRepository[User]):
    filterable_fields = ALL_COLUMNS
    sortable_fields = ALL_COLUMNS


class OtherUsers(BaseRepository[User]):
    filterable_fields = ALL_COLUMNS
    sortable_fields = ALL_COLUMNS


class TestRoundTrip:
    def test_every_supported_type(self):
        """Every supported value comes back exactly: type, bits, digits and offset."""
        cursor = encode_cursor(VALUES, spec=SPEC, secret=SECRET)
        decoded = decode_cursor(cursor, spec=SPEC, secret=SECRET)
        assert len(decoded) == len(VALUES)
        for expected, actual in zip(VALUES, decoded, strict=True):
            assert same(expected, actual), (expected, actual)

    @settings(max_examples=300, deadline=None)
    @given(values=st.lists(SCALARS, max_size=6))
    def test_property(self, values):
        """Any list of supported values round-trips exactly."""
        cursor = encode_cursor(values, spec=SPEC, scope="s", secret=SECRET)
        decoded = decode_cursor(cursor, spec=SPEC, scope="s", secret=SECRET, max_age=60)
        assert all(same(e, a) for e, a in zip(values, decoded, strict=True))

    def test_nan_payload_and_sign_are_kept(self):
        """A NaN keeps its sign and payload bits; -0.0 stays negative."""
        odd_nan = struct.unpack(">d", bytes.fromhex("fff8000000000001"))[0]
        (nan, zero) = decode_cursor(encode_cursor([odd_nan, -0.0], spec=SPEC), spec=SPEC)
        assert struct.pack(">d", nan).hex() == "fff8000000000001"
        assert struct.pack(">d", zero).hex() == "8000000000000000"

    def test_enum_is_stored_by_value(self):
        """Enum members are stored by value."""
        cursor = encode_cursor([Status.DISABLED], spec=SPEC)
        assert decode_cursor(cursor, spec=SPEC) == ["disabled"]

    def test_unsupported_and_huge_values_are_refused(self):
        """Values without a cursor encoding, or too large for one, are refused."""
        with pytest.raises(InvalidFilterError) as info:
            encode_cursor([b"bytes"], spec=SPEC)
        assert reason(info) == "unsupported_cursor_value"
        with pytest.raises(InvalidFilterError) as info:
            encode_cursor(["x" * MAX_CURSOR_LENGTH], spec=SPEC)
        assert reason(info) == "cursor_too_long"

    def test_the_longest_cursor_fits_the_limit(self):
        """A cursor is made exactly when it fits MAX_CURSOR_LENGTH, and then decodes."""
        sizes = range(2980, 3060)
        made = [encode_cursor(["x" * size], spec=SPEC) for size in sizes if size <= 3013]
        assert max(map(len, made)) == MAX_CURSOR_LENGTH
        for cursor, size in zip(made, sizes, strict=False):
            assert decode_cursor(cursor, spec=SPEC) == ["x" * size]
        for size in sizes[len(made) :]:
            with pytest.raises(InvalidFilterError) as info:
                encode_cursor(["x" * size], spec=SPEC)
            assert reason(info) == "cursor_too_long"


class TestConfidentiality:
    def test_url_safe_and_length(self):
        """Cursors are URL-safe base64 without padding; an integer key makes 84 characters."""
        cursor = encode_cursor([123456], spec=SPEC)
        assert set(cursor) <= B64_ALPHABET
        assert len(cursor) == 84

    @pytest.mark.parametrize(
        "value",
        [
            "pbkdf2_sha256$600000$N3wS4lt$Zm9yZ2V0IGl0IHlvdSB3aWxsIG5ldmVyIHJlYWQgdGhpcw==",
            "alice.wonderland+secret-mailbox@example.org",
        ],
    )
    def test_no_value_can_be_read(self, value):
        """No 6-character run of a sort value appears in the cursor or in its bytes."""
        cursor = encode_cursor([value, 987654321], spec=SPEC, scope="s")
        raw = raw_of(cursor)
        data = value.encode()
        for start in range(len(value) - 5):
            assert value[start : start + 6] not in cursor
            assert data[start : start + 6] not in raw
        assert b"987654321" not in raw
        for shift in range(3):  # the value's own base64, at every alignment
            encoded = base64.urlsafe_b64encode(data[shift:]).decode()[4:12]
            assert encoded not in cursor

    def test_equal_values_make_different_cursors(self):
        """Each cursor has a fresh nonce: equal boundaries cannot be linked."""
        first, second = (encode_cursor([1], spec=SPEC) for _ in range(2))
        assert first != second
        assert raw_of(first)[17:-16] != raw_of(second)[17:-16]
        assert decode_cursor(first, spec=SPEC) == decode_cursor(second, spec=SPEC) == [1]


class TestIntegrity:
    def test_every_bit_flip_of_the_bytes_is_refused(self):
        """Flipping any one bit of a cursor's bytes makes it invalid."""
        raw = raw_of(encode_cursor([1, "abc"], spec=SPEC, secret=SECRET))
        for index in range(len(raw)):
            for bit in range(8):
                flipped = bytearray(raw)
                flipped[index] ^= 1 << bit
                with pytest.raises(InvalidFilterError) as info:
                    decode_cursor(text_of(bytes(flipped)), spec=SPEC, secret=SECRET)
                assert reason(info) == "invalid_cursor"

    def test_every_bit_flip_of_the_text_is_refused(self):
        """Flipping any one bit of any character of a cursor makes it refused."""
        cursor = encode_cursor([1, "abc"], spec=SPEC, secret=SECRET)
        for index, char in enumerate(cursor):
            for bit in range(8):
                tampered = cursor[:index] + chr(ord(char) ^ (1 << bit)) + cursor[index + 1 :]
                with pytest.raises(InvalidFilterError) as info:
                    decode_cursor(tampered, spec=SPEC, secret=SECRET)
                assert reason(info) in {"invalid_cursor", "malformed_cursor"}

    def test_every_truncation_and_extension_is_refused(self):
        """Every prefix of a cursor, and the cursor with bytes added, is refused."""
        cursor = encode_cursor([1, "abc"], spec=SPEC, secret=SECRET)
        for end in range(len(cursor)):
            with pytest.raises(InvalidFilterError):
                decode_cursor(cursor[:end], spec=SPEC, secret=SECRET)
        for extra in ("A", "AA", "AAAA", cursor):
            with pytest.raises(InvalidFilterError):
                decode_cursor(cursor + extra, spec=SPEC, secret=SECRET)

    def test_wrong_secret(self):
        """A cursor made with another secret is refused."""
        cursor = encode_cursor([1], spec=SPEC, secret=SECRET)
        with pytest.raises(InvalidFilterError) as info:
            decode_cursor(cursor, spec=SPEC, secret=b"z" * 32)
        assert reason(info) == "invalid_cursor"

    def test_other_versions_are_refused(self):
        """A cursor of an earlier format (signed only, 0x02) or of an unknown one is refused."""
        body = b'\x01["0123456789abcdef",[1]]'
        old = text_of(body + hmac.new(SECRET, body, hashlib.sha256).digest()[:16])
        with pytest.raises(InvalidFilterError) as info:
            decode_cursor(old, spec=SPEC, secret=SECRET)
        assert reason(info) == "invalid_cursor"
        for version in (b"\x02", b"\x04", b"\xff"):
            with pytest.raises(InvalidFilterError) as info:
                decode_cursor(seal(header() + b"[1]", version=version), spec=SPEC, secret=SECRET)
            assert reason(info) == "invalid_cursor"
        assert decode_cursor(seal(header() + b"[1]"), spec=SPEC, secret=SECRET) == [1]

    @pytest.mark.parametrize(
        "payload",
        [
            b"[",
            b"{}",
            b'{"a": 1}',
            b'[{"zz": "1"}]',
            b"[[]]",
            b'[{"f": "zz"}]',
            b'[{"f": "0000"}]',
            b'[{"f": "zzzzzzzzzzzzzzzz"}]',
            b'[{"n": "abc"}]',
            b'[{"t": "yesterday"}]',
            b'[{"u": "x"}]',
            b'[{"d": 5}]',
            b'[{"T": "2024-01-01"}]',
            b'[{"T": ["2024-01-01", "7"]}]',
            b'[{"H": ["08:00", 100000000000]}]',
            b"\xff\xfe[]",
            b"[" * 100_000 + b"]" * 100_000,
        ],
    )
    def test_authentic_but_malformed_plaintext(self, payload):
        """A correctly sealed but malformed payload is refused, never crashes."""
        with pytest.raises(InvalidFilterError) as info:
            decode_cursor(seal(header() + payload), spec=SPEC, secret=SECRET)
        assert reason(info) in {"malformed_cursor", "cursor_too_long"}

    @pytest.mark.parametrize(
        ("cursor", "expected"),
        [
            ("", "malformed_cursor"),
            (None, "malformed_cursor"),
            (123, "malformed_cursor"),
            ("not base64!", "malformed_cursor"),
            ("abc=", "malformed_cursor"),
            ("a", "malformed_cursor"),
            ("AwAA", "malformed_cursor"),
            ("AQ" + "A" * 40, "invalid_cursor"),
            ("AgAA", "invalid_cursor"),
            ("Ag" + "A" * 100, "invalid_cursor"),
            ("Aw" + "A" * 100, "invalid_cursor"),
            ("A" * (MAX_CURSOR_LENGTH + 1), "cursor_too_long"),
            ("A" * MAX_CURSOR_LENGTH, "invalid_cursor"),
            ("' OR 1=1 --", "malformed_cursor"),
        ],
    )
    def test_malformed(self, cursor, expected):
        """Garbage is refused with a reason."""
        with pytest.raises(InvalidFilterError) as info:
            decode_cursor(cursor, spec=SPEC, secret=SECRET)
        assert reason(info) == expected

    def test_non_canonical_base64_is_refused(self):
        """Spare low bits set in the last character make another string: it is refused."""
        cursor = encode_cursor([1], spec=SPEC, secret=SECRET)
        assert len(raw_of(cursor)) % 3  # the last character has spare bits
        index = B64_ALPHABET_ORDER.index(cursor[-1])
        variant = cursor[:-1] + B64_ALPHABET_ORDER[index | 1]
        assert raw_of(variant) == raw_of(cursor)
        with pytest.raises(InvalidFilterError) as info:
            decode_cursor(variant, spec=SPEC, secret=SECRET)
        assert reason(info) == "malformed_cursor"

    @settings(max_examples=500, deadline=None)
    @given(
        cursor=st.one_of(
            st.text(max_size=200),
            st.text(alphabet="".join(sorted(B64_ALPHABET))),
            st.binary(max_size=200).map(lambda b: base64.urlsafe_b64encode(b).decode()),
            st.binary(max_size=200).map(lambda b: text_of(b"\x03" + b)),
            st.binary(min_size=60, max_size=200).map(lambda b: text_of(b"\x03" + b)),
        )
    )
    def test_random_strings_raise_only_invalid_filter_error(self, cursor):
        """Decoding random input raises InvalidFilterError and nothing else."""
        with pytest.raises(InvalidFilterError):
            decode_cursor(cursor, spec=SPEC, secret=SECRET)


B64_ALPHABET_ORDER = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


class TestBinding:
    def test_cursor_spec(self):
        """The spec names the model and the directed sort fields."""
        keys = compile_order_by(User, "-age,name", allowed=ALL_COLUMNS)
        assert cursor_spec(User, keys) == f"{User.__module__}.User:-age,name,id"

    def test_wrong_spec(self):
        """A cursor made for another sort order or model is refused as a mismatch."""
        cursor = encode_cursor([1, 2], spec=SPEC, secret=SECRET)
        for other in ("tests.User:age,id", "tests.Post:-age,id"):
            with pytest.raises(InvalidFilterError) as info:
                decode_cursor(cursor, spec=other, secret=SECRET)
            assert reason(info) == "cursor_mismatch"

    def test_wrong_scope(self):
        """A cursor made for one scope is refused in another; None skips the scope check."""
        cursor = encode_cursor([1], spec=SPEC, scope="a", secret=SECRET)
        with pytest.raises(InvalidFilterError) as info:
            decode_cursor(cursor, spec=SPEC, scope="b", secret=SECRET)
        assert reason(info) == "cursor_mismatch"
        assert decode_cursor(cursor, spec=SPEC, scope=None, secret=SECRET) == [1]
        unscoped = encode_cursor([1], spec=SPEC, secret=SECRET)
        assert decode_cursor(unscoped, spec=SPEC, scope="", secret=SECRET) == [1]

    @pytest.mark.parametrize(
        ("made", "replayed"),
        [
            pytest.param({}, {"filters": {"name": "a"}}, id="filter-added"),
            pytest.param({"filters": {"name": "a"}}, {}, id="filter-removed"),
            pytest.param({"filters": {"name": "a"}}, {"filters": {"name": "b"}}, id="value"),
            pytest.param({"filters": {"age": 5}}, {"filters": {"age": "5"}}, id="value-type"),
            pytest.param({"filters": {"age": 1.0}}, {"filters": {"age": 1}}, id="float-int"),
            pytest.param({"filters": {"age__gt": 5}}, {"filters": {"age__ge": 5}}, id="operator"),
            pytest.param(
                {"filters": {"age__in": [1, 2]}}, {"filters": {"age__in": [1, 3]}}, id="list"
            ),
            pytest.param(
                {"filters": {"age__between": [1, 2]}},
                {"filters": {"age__between": [2, 1]}},
                id="list-order",
            ),
            pytest.param({"filters": {"name": "a"}}, {"filters": [("name", "eq", "a")]}, id="form"),
            pytest.param({}, {"include_deleted": True}, id="include-deleted"),
            pytest.param({}, {"repository": OtherUsers}, id="repository"),
        ],
    )
    def test_scope_covers_filters_deletion_and_repository(self, made, replayed):
        """A cursor replayed with other filters, include_deleted or repository is refused."""

        def scope(repository: type[Any] = Users, **kwargs: Any) -> str:
            return cursor_scope(repository, **kwargs)

        cursor = encode_cursor([1], spec=SPEC, scope=scope(**made), secret=SECRET)
        assert decode_cursor(cursor, spec=SPEC, scope=scope(**made), secret=SECRET) == [1]
        with pytest.raises(InvalidFilterError) as info:
            decode_cursor(cursor, spec=SPEC, scope=scope(**replayed), secret=SECRET)
        assert reason(info) == "cursor_mismatch"

    @pytest.mark.parametrize(
        ("first", "second"),
        [
            pytest.param(None, {}, id="none-empty"),
            pytest.param([], {}, id="list-empty"),
            pytest.param({"a": 1, "b": [2, 3]}, {"b": [2, 3], "a": 1}, id="mapping-order"),
            pytest.param(
                [("a", "eq", 1), ("b", "in", (2, 3))],
                [("b", "in", [2, 3]), ("a", "eq", 1)],
                id="tuple-order",
            ),
            pytest.param({"a__in": {3, 1, 2}}, {"a__in": frozenset({2, 1, 3})}, id="set"),
            pytest.param({"s": Status.ACTIVE}, {"s": "active"}, id="enum-by-value"),
            pytest.param(
                {"t": dt.datetime(2024, 1, 1, tzinfo=UTC)},
                {"t": dt.datetime(2024, 1, 1, tzinfo=UTC)},
                id="datetime",
            ),
        ],
    )
    def test_scope_is_canonical(self, first, second):
        """Filters that say the same thing in another order give the same scope."""
        assert cursor_scope(Users, filters=first) == cursor_scope(Users, filters=second)

    def test_scope_covers_the_tenant(self):
        """A cursor made under one tenant is refused under another, none or all tenants."""
        scopes = {}
        with tenant("a"):
            scopes["a"] = cursor_scope(Users)
        with tenant("b"):
            scopes["b"] = cursor_scope(Users)
        with all_tenants():
            scopes["all"] = cursor_scope(Users)
        scopes["none"] = cursor_scope(Users)
        assert len(set(scopes.values())) == len(scopes)
        cursor = encode_cursor([1], spec=SPEC, scope=scopes["a"], secret=SECRET)
        for name in ("b", "all", "none"):
            with pytest.raises(InvalidFilterError) as info:
                decode_cursor(cursor, spec=SPEC, scope=scopes[name], secret=SECRET)
            assert reason(info) == "cursor_mismatch"

    def test_long_scopes_are_not_cached(self):
        """Only short binding texts are cached, so client filters cannot fill the memory."""
        keys = _cursors._derive(SECRET)
        long_scope = cursor_scope(Users, filters={"name__in": ["x" * 100] * 50})
        cursor = encode_cursor([1], spec=SPEC, scope=long_scope, secret=SECRET)
        assert decode_cursor(cursor, spec=SPEC, scope=long_scope, secret=SECRET) == [1]
        assert long_scope not in keys.digests
        assert SPEC in keys.digests

    def test_scope_of_unknown_values_is_their_text(self):
        """A value of no known type is compared by its type and repr."""

        class Odd:
            def __repr__(self) -> str:
                return "Odd()"

        assert cursor_scope(Users, filters={"a": Odd()}) == cursor_scope(
            Users, filters={"a": Odd()}
        )
        assert cursor_scope(Users, filters={"a": Odd()}) != cursor_scope(
            Users, filters={"a": "Odd()"}
        )
        assert cursor_scope(Users, filters={"a": {"k": 1}}) != cursor_scope(
            Users, filters={"a": {"k": 2}}
        )


class TestMaxAge:
    NOW = 1_780_000_000.0

    def test_expiry(self):
        """A cursor is accepted up to max_age seconds after it was made, then refused."""
        cursor = encode_cursor([1], spec=SPEC, secret=SECRET, now=self.NOW)
        for later in (0, 59.999, 60):
            assert decode_cursor(
                cursor, spec=SPEC, secret=SECRET, max_age=60, now=self.NOW + later
            ) == [1]
        with pytest.raises(InvalidFilterError) as info:
            decode_cursor(cursor, spec=SPEC, secret=SECRET, max_age=60, now=self.NOW + 60.002)
        assert reason(info) == "cursor_expired"
        old = decode_cursor(cursor, spec=SPEC, secret=SECRET, now=self.NOW + 10**9)
        assert old == [1]

    def test_cursors_from_the_future_are_refused_beyond_max_age(self):
        """A cursor dated more than max_age ahead (clocks apart) is refused too."""
        cursor = encode_cursor([1], spec=SPEC, secret=SECRET, now=self.NOW + 30)
        assert decode_cursor(cursor, spec=SPEC, secret=SECRET, max_age=60, now=self.NOW) == [1]
        with pytest.raises(InvalidFilterError) as info:
            decode_cursor(cursor, spec=SPEC, secret=SECRET, max_age=10, now=self.NOW)
        assert reason(info) == "cursor_expired"

    def test_the_clock_is_read_by_default(self):
        """Without now=, the issue time is the clock's."""
        cursor = encode_cursor([1], spec=SPEC, secret=SECRET)
        assert decode_cursor(cursor, spec=SPEC, secret=SECRET, max_age=60) == [1]

    @pytest.mark.parametrize("max_age", [0, -1, True, "60", float("nan")])
    def test_bad_max_age_is_a_configuration_error(self, max_age):
        """max_age must be a positive number of seconds."""
        cursor = encode_cursor([1], spec=SPEC, secret=SECRET)
        with pytest.raises(ConfigurationError):
            decode_cursor(cursor, spec=SPEC, secret=SECRET, max_age=max_age)

    def test_issue_time_must_be_representable(self):
        """An issue time before the epoch is a programming error."""
        with pytest.raises(ValueError, match="issue time"):
            encode_cursor([1], spec=SPEC, secret=SECRET, now=-1.0)


CHILD_ENCODE = """
import datetime as dt, uuid
from decimal import Decimal
from sqla_repo.pagination import cursor_secret_is_ephemeral, encode_cursor
assert not cursor_secret_is_ephemeral()
values = [dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc), Decimal("1.50"), uuid.UUID(int=7),
          "text", 42, float("nan")]
print(encode_cursor(values, spec="tests.User:-age,id", scope="shared"))
"""

CHILD_DECODE = """
import sys
from sqla_repo.exceptions import InvalidFilterError
from sqla_repo.pagination import decode_cursor
try:
    print(repr(decode_cursor(sys.argv[1], spec="tests.User:-age,id", scope="shared")))
except InvalidFilterError as exc:
    print(exc.detail["reason"])
"""


def run_child(code: str, secret: str, *args: str) -> str:
    env = {**os.environ, CURSOR_SECRET_ENV: secret, "PYTHONWARNINGS": "error"}
    result = subprocess.run(  # noqa: S603 - this interpreter, running this package
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.usefixtures("fresh_secret")
class TestSecret:
    def test_default_secret_is_random_per_process(self):
        """With nothing configured, the secret is random and reported as ephemeral."""
        assert cursor_secret_is_ephemeral()
        cursor = encode_cursor([1], spec=SPEC)
        assert decode_cursor(cursor, spec=SPEC) == [1]
        with pytest.raises(InvalidFilterError) as info:
            decode_cursor(cursor, spec=SPEC, secret=SECRET)
        assert reason(info) == "invalid_cursor"

    def test_environment_variable(self, monkeypatch):
        """SQLA_REPO_CURSOR_SECRET is read at the first use when nothing was set in code."""
        monkeypatch.setenv(CURSOR_SECRET_ENV, "e" * 32)
        cursor = encode_cursor([1], spec=SPEC)
        assert not cursor_secret_is_ephemeral()
        assert decode_cursor(cursor, spec=SPEC, secret="e" * 32) == [1]
        monkeypatch.setenv(CURSOR_SECRET_ENV, "f" * 32)  # read once: later changes are ignored
        assert decode_cursor(encode_cursor([2], spec=SPEC), spec=SPEC, secret="e" * 32) == [2]

    def test_set_cursor_secret_wins_over_the_environment(self, monkeypatch):
        """set_cursor_secret() takes precedence over the environment variable."""
        monkeypatch.setenv(CURSOR_SECRET_ENV, "e" * 32)
        set_cursor_secret("s" * 32)
        assert not cursor_secret_is_ephemeral()
        cursor = encode_cursor([1], spec=SPEC)
        assert decode_cursor(cursor, spec=SPEC, secret="s" * 32) == [1]
        with pytest.raises(InvalidFilterError):
            decode_cursor(cursor, spec=SPEC, secret="e" * 32)

    def test_set_cursor_secret_replaces_the_random_one(self):
        """Setting a secret after the random one was used ends the ephemeral state."""
        random_cursor = encode_cursor([1], spec=SPEC)
        set_cursor_secret("a shared secret of some length")
        assert not cursor_secret_is_ephemeral()
        with pytest.raises(InvalidFilterError) as info:
            decode_cursor(random_cursor, spec=SPEC)
        assert reason(info) == "invalid_cursor"

    @pytest.mark.parametrize("value", ["", "short", "x" * 15])
    def test_short_environment_secret_is_a_configuration_error(self, monkeypatch, value):
        """A set but too short SQLA_REPO_CURSOR_SECRET fails loudly, without the value."""
        monkeypatch.setenv(CURSOR_SECRET_ENV, value)
        with pytest.raises(ConfigurationError) as info:
            cursor_secret_is_ephemeral()
        assert CURSOR_SECRET_ENV in str(info.value)
        with pytest.raises(ConfigurationError):
            encode_cursor([1], spec=SPEC)

    @pytest.mark.parametrize("secret", [b"short", "", "x" * 15])
    def test_short_secrets_are_refused(self, secret):
        """Secrets shorter than 16 bytes are refused."""
        with pytest.raises(ValueError, match="at least 16 bytes"):
            set_cursor_secret(secret)
        with pytest.raises(ValueError, match="at least 16 bytes"):
            set_cursor_secret("x" * 32, previous=[secret])
        with pytest.raises(ValueError, match="at least 16 bytes"):
            encode_cursor([1], spec=SPEC, secret=secret)

    def test_rotation(self):
        """Cursors of a previous secret stay valid while it is kept; new ones use the new."""
        old_secret, new_secret = "old secret, long enough", "new secret, long enough"
        set_cursor_secret(old_secret)
        old = encode_cursor([1], spec=SPEC)
        set_cursor_secret(new_secret, previous=[old_secret])
        assert decode_cursor(old, spec=SPEC) == [1]
        new = encode_cursor([2], spec=SPEC)
        assert decode_cursor(new, spec=SPEC, secret=new_secret) == [2]
        set_cursor_secret(new_secret)
        with pytest.raises(InvalidFilterError) as info:
            decode_cursor(old, spec=SPEC)
        assert reason(info) == "invalid_cursor"
        assert decode_cursor(new, spec=SPEC) == [2]

    def test_cursor_made_in_another_process(self):
        """A cursor made by a process reading the environment decodes here with the same secret."""
        cursor = run_child(CHILD_ENCODE, "a secret shared by every worker")
        set_cursor_secret("a secret shared by every worker")
        values = decode_cursor(cursor, spec=SPEC, scope="shared")
        expected = [
            dt.datetime(2024, 5, 1, tzinfo=UTC),
            Decimal("1.50"),
            uuid.UUID(int=7),
            "text",
            42,
            float("nan"),
        ]
        assert all(same(e, a) for e, a in zip(expected, values, strict=True))

    def test_cursor_decoded_in_another_process(self):
        """A cursor made here decodes in a process given the secret by the environment."""
        set_cursor_secret("a secret shared by every worker")
        cursor = encode_cursor([Decimal("2.5"), 7], spec=SPEC, scope="shared")
        assert run_child(CHILD_DECODE, "a secret shared by every worker", cursor) == (
            "[Decimal('2.5'), 7]"
        )
        assert run_child(CHILD_DECODE, "another secret of the same length", cursor) == (
            "invalid_cursor"
        )


class TestKeysetPredicate:
    def keys(self, order_by: str) -> list[SortKey]:
        return compile_order_by(User, order_by, allowed=ALL_COLUMNS)

    def test_single_key(self):
        """One ascending unique key is a plain comparison."""
        assert sql(keyset_predicate(self.keys("id"), [5], forward=True)) == (
            "users.id > %(param_1)s"
        )
        assert sql(keyset_predicate(self.keys("id"), [5], forward=False)) == (
            "users.id < %(param_1)s"
        )

    def test_mixed_directions(self):
        """Each key compares in its own direction; NULL sorts smallest."""
        predicate = keyset_predicate(self.keys("-age,name"), [30, "bob", 7], forward=True)
        assert sql(predicate) == (
            "users.age < %(param_1)s OR users.age IS NULL "
            "OR users.age = %(param_1)s AND users.name > %(param_2)s "
            "OR users.age = %(param_1)s AND users.name = %(param_2)s AND users.id > %(param_3)s"
        )

    def test_null_boundary(self):
        """After a NULL ascending value come the non-NULL ones; nothing is below NULL."""
        predicate = keyset_predicate(self.keys("age"), [None, 7], forward=True)
        assert sql(predicate) == (
            "users.age IS NOT NULL OR users.age IS NULL AND users.id > %(param_1)s"
        )
        predicate = keyset_predicate(self.keys("age"), [None, 7], forward=False)
        assert sql(predicate) == "users.age IS NULL AND users.id < %(param_1)s"

    def test_index_friendly_bound(self):
        """A redundant range on the first key lets an index serve the page."""
        predicate = keyset_predicate(self.keys("name"), ["bob", 7], forward=True)
        assert sql(predicate).startswith("users.name >= %(param_1)s AND (")
        predicate = keyset_predicate(self.keys("-name"), ["bob", 7], forward=True)
        assert sql(predicate).startswith("users.name <= %(param_1)s AND (")
        predicate = keyset_predicate(self.keys("-age"), [3, 7], forward=True)
        assert "users.age <=" not in sql(predicate)

    def test_booleans_are_bound(self):
        """True/False boundaries are parameters, so ordering comparisons accept them."""
        predicate = keyset_predicate(self.keys("-is_active"), [True, 3], forward=True)
        assert sql(predicate) == (
            "users.is_active <= %(param_1)s AND (users.is_active < %(param_1)s "
            "OR users.is_active = %(param_1)s AND users.id > %(param_2)s)"
        )

    def test_values_are_coerced(self):
        """Decoded values are converted back to the column types (enum by value)."""
        predicate = keyset_predicate(self.keys("status"), ["disabled", 7], forward=True)
        assert Status.DISABLED in predicate.compile(dialect=PG).params.values()
        expression = compile_order_by(User, [func.lower(User.name)])
        assert keyset_predicate(expression, ["x", 1], forward=True) is not None

    @pytest.mark.parametrize(
        ("order_by", "values"),
        [("age", [1]), ("age", [1, 2, 3]), ("age", ["abc", 1]), ("status", ["nope", 1])],
    )
    def test_mismatch(self, order_by, values):
        """Values that do not fit the keys are refused."""
        with pytest.raises(InvalidFilterError) as info:
            keyset_predicate(self.keys(order_by), values, forward=True)
        assert reason(info) == "cursor_mismatch"

    def test_no_keys(self):
        """A predicate needs keys."""
        with pytest.raises(InvalidFilterError):
            keyset_predicate([], [], forward=True)


class TestRowValues:
    def test_attributes(self):
        """Values are read from the object's attributes."""
        user = User(email="a@x.org", age=3, name="n")
        user.id = 9
        keys = compile_order_by(User, "-age,name", allowed=ALL_COLUMNS)
        assert row_values(user, keys) == [3, "n", 9]

    def test_expressions_are_refused(self):
        """Keys without an attribute cannot make a cursor."""
        keys = compile_order_by(User, [func.lower(User.name)])
        with pytest.raises(ConfigurationError):
            row_values(User(email="a@x.org"), keys)


class TestScopeLimits:
    def test_unwritable_filter_values_are_refused(self):
        """Values the scope cannot write down raise InvalidFilterError, not a raw error."""
        nested: list[Any] = []
        for _ in range(5000):
            nested = [nested]
        for value in (10**5000, nested):
            with pytest.raises(InvalidFilterError) as info:
                cursor_scope(Users, filters={"age": value})
            assert info.value.detail == {"field": "filters", "reason": "invalid_value"}
