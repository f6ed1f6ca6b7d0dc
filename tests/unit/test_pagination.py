"""Result pages, the cursor codec and keyset predicates (no server)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func
from sqlalchemy.dialects import postgresql

from models import Status, User
from sqla_repo import pagination
from sqla_repo.exceptions import ConfigurationError, InvalidFilterError
from sqla_repo.filters import SortKey, compile_order_by
from sqla_repo.pagination import (
    MAX_CURSOR_LENGTH,
    CursorPage,
    SearchResult,
    cursor_spec,
    decode_cursor,
    encode_cursor,
    keyset_predicate,
    row_values,
    set_cursor_secret,
)

UTC = dt.timezone.utc
PG = postgresql.psycopg2.dialect()
SPEC = "tests.User:-age,id"
SECRET = b"k" * 32


def sql(clause: Any) -> str:
    return str(clause.compile(dialect=PG))


def reason(exc: pytest.ExceptionInfo[InvalidFilterError]) -> str:
    assert exc.value.detail["field"] == "cursor"
    return str(exc.value.detail["reason"])


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
    Decimal("12.50"),
    Decimal("-1E+3"),
    "",
    'Ünïcödé ✓ 😀 "quotes" \\ ,:{}',
    True,
    False,
    None,
    dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
    dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    dt.date(1999, 12, 31),
    dt.time(23, 59, 59, 999999),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
]


class TestCodec:
    def test_round_trip(self):
        """Every supported type comes back equal and of the same type."""
        cursor = encode_cursor(VALUES, spec=SPEC, secret=SECRET)
        decoded = decode_cursor(cursor, spec=SPEC, secret=SECRET)
        assert decoded == VALUES
        assert [type(v) for v in decoded] == [type(v) for v in VALUES]
        assert decoded[12].tzinfo is not None
        assert decoded[13].utcoffset() == dt.timedelta(hours=5, minutes=30)

    def test_nan_round_trips(self):
        """NaN survives (it is not valid JSON, so it is tagged)."""
        (value,) = decode_cursor(encode_cursor([float("nan")], spec="s"), spec="s")
        assert value != value  # noqa: PLR0124 - NaN

    def test_enum_is_stored_by_value(self):
        """Enum members are stored by value."""
        cursor = encode_cursor([Status.DISABLED], spec=SPEC)
        assert decode_cursor(cursor, spec=SPEC) == ["disabled"]

    def test_url_safe_and_opaque(self):
        """Cursors are URL-safe base64 without padding."""
        cursor = encode_cursor(VALUES, spec=SPEC)
        assert set(cursor) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )

    def test_default_secret_is_random_and_settable(self, monkeypatch):
        """The default secret is random per process; set_cursor_secret replaces it."""
        monkeypatch.setattr(pagination, "_secret", pagination._secret)
        assert len(pagination._secret) == 32
        cursor = encode_cursor([1], spec=SPEC)
        shared = "a shared secret of some length"
        set_cursor_secret(shared)
        with pytest.raises(InvalidFilterError) as info:
            decode_cursor(cursor, spec=SPEC)
        assert reason(info) == "invalid_cursor"
        again = encode_cursor([1], spec=SPEC)
        assert decode_cursor(again, spec=SPEC, secret=shared) == [1]

    @pytest.mark.parametrize("secret", [b"short", "", "x" * 15])
    def test_short_secrets_are_refused(self, secret):
        """Secrets shorter than 16 bytes are refused."""
        with pytest.raises(ValueError, match="at least 16 bytes"):
            set_cursor_secret(secret)
        with pytest.raises(ValueError, match="at least 16 bytes"):
            encode_cursor([1], spec=SPEC, secret=secret)

    def test_wrong_spec(self):
        """A cursor made for another sort order is refused as a mismatch."""
        cursor = encode_cursor([1, 2], spec=SPEC, secret=SECRET)
        with pytest.raises(InvalidFilterError) as info:
            decode_cursor(cursor, spec="tests.User:age,id", secret=SECRET)
        assert reason(info) == "cursor_mismatch"

    def test_wrong_secret(self):
        """A cursor signed with another secret is refused."""
        cursor = encode_cursor([1], spec=SPEC, secret=SECRET)
        with pytest.raises(InvalidFilterError) as info:
            decode_cursor(cursor, spec=SPEC, secret=b"z" * 32)
        assert reason(info) == "invalid_cursor"

    def test_every_tampered_character_is_detected(self):
        """Changing any character of a cursor invalidates it."""
        cursor = encode_cursor([1, "abc"], spec=SPEC, secret=SECRET)
        for index, char in enumerate(cursor):
            replacement = "A" if char != "A" else "B"
            tampered = cursor[:index] + replacement + cursor[index + 1 :]
            with pytest.raises(InvalidFilterError):
                decode_cursor(tampered, spec=SPEC, secret=SECRET)

    def test_every_truncation_is_detected(self):
        """Every prefix of a cursor is refused."""
        cursor = encode_cursor([1, "abc"], spec=SPEC, secret=SECRET)
        for end in range(len(cursor)):
            with pytest.raises(InvalidFilterError):
                decode_cursor(cursor[:end], spec=SPEC, secret=SECRET)

    def test_forged_payload_with_valid_signature_is_still_checked(self):
        """A correctly signed but malformed payload is refused, never crashes."""
        for payload in [b"[", b"{}", b'["x"]', b'["x", 5]', b'["x", [{"zz": "1"}]]', b"[1, [[]]]"]:
            body = b"\x01" + payload
            tag = hmac.new(SECRET, body, hashlib.sha256).digest()[:16]
            cursor = base64.urlsafe_b64encode(body + tag).rstrip(b"=").decode()
            with pytest.raises(InvalidFilterError) as info:
                decode_cursor(cursor, spec=SPEC, secret=SECRET)
            assert reason(info) == "malformed_cursor"

    @pytest.mark.parametrize(
        ("cursor", "expected"),
        [
            ("", "malformed_cursor"),
            (None, "malformed_cursor"),
            (123, "malformed_cursor"),
            ("not base64!", "malformed_cursor"),
            ("abc=", "malformed_cursor"),
            ("a", "malformed_cursor"),
            ("AAAA", "malformed_cursor"),
            ("A" * (MAX_CURSOR_LENGTH + 1), "cursor_too_long"),
            ("A" * MAX_CURSOR_LENGTH, "malformed_cursor"),
            ("' OR 1=1 --", "malformed_cursor"),
        ],
    )
    def test_malformed(self, cursor, expected):
        """Garbage is refused with a reason."""
        with pytest.raises(InvalidFilterError) as info:
            decode_cursor(cursor, spec=SPEC, secret=SECRET)
        assert reason(info) == expected

    def test_encode_refuses_unsupported_and_huge_values(self):
        """Values without a cursor encoding, or too large for one, are refused."""
        with pytest.raises(InvalidFilterError) as info:
            encode_cursor([b"bytes"], spec=SPEC)
        assert reason(info) == "unsupported_cursor_value"
        with pytest.raises(InvalidFilterError) as info:
            encode_cursor(["x" * MAX_CURSOR_LENGTH], spec=SPEC)
        assert reason(info) == "cursor_too_long"

    def test_cursor_spec(self):
        """The spec names the model and the directed sort fields."""
        keys = compile_order_by(User, "-age,name")
        assert cursor_spec(User, keys) == f"{User.__module__}.User:-age,name,id"

    def test_version_byte(self):
        """A cursor of an unknown format version is refused."""
        cursor = encode_cursor([1], spec=SPEC, secret=SECRET)
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = b"\x02" + raw[1:-16]
        tag = hmac.new(SECRET, body, hashlib.sha256).digest()[:16]
        forged = base64.urlsafe_b64encode(body + tag).rstrip(b"=").decode()
        with pytest.raises(InvalidFilterError):
            decode_cursor(forged, spec=SPEC, secret=SECRET)
        assert json.loads(raw[1:-16])[1] == [1]

    @settings(max_examples=500, deadline=None)
    @given(
        cursor=st.one_of(
            st.text(max_size=200),
            st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            st.binary(max_size=200).map(lambda b: base64.urlsafe_b64encode(b).decode()),
            st.binary(max_size=200).map(
                lambda b: base64.urlsafe_b64encode(b"\x01" + b).rstrip(b"=").decode()
            ),
        )
    )
    def test_random_strings_raise_only_invalid_filter_error(self, cursor):
        """Decoding random input raises InvalidFilterError and nothing else."""
        with pytest.raises(InvalidFilterError):
            decode_cursor(cursor, spec=SPEC, secret=SECRET)


class TestKeysetPredicate:
    def keys(self, order_by: str) -> list[SortKey]:
        return compile_order_by(User, order_by)

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
        assert row_values(user, compile_order_by(User, "-age,name")) == [3, "n", 9]

    def test_expressions_are_refused(self):
        """Keys without an attribute cannot make a cursor."""
        keys = compile_order_by(User, [func.lower(User.name)])
        with pytest.raises(ConfigurationError):
            row_values(User(email="a@x.org"), keys)
