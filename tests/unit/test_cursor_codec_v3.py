"""The cursor format 0x03: its construction pinned by known answers, and its fast paths.

The known answers are computed here from the construction documented in
``docs/explanation/cursors.md``, with ``hashlib`` and ``hmac`` directly, so a change to the
codec that changes a single byte of a cursor fails here, not only in a round trip.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import Status
from sqla_repo import _cursors
from sqla_repo.exceptions import InvalidFilterError
from sqla_repo.pagination import decode_cursor, encode_cursor

SECRET = b"a known-answer secret, 32 bytes."
SPEC = "app.models.User:-created_at,id"
SCOPE = "app.repositories.Users|tenant=acme"
NONCE = bytes(range(16))
ISSUED_MS = 1_700_000_000_123
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def reason(exc: pytest.ExceptionInfo[InvalidFilterError]) -> str:
    assert exc.value.detail["field"] == "cursor"
    return str(exc.value.detail["reason"])


def raw_of(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))


def text_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


# -- The documented construction, written out --------------------------------------------


def hkdf_sha256(secret: bytes, label: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869) with the codec's salt, one 32-byte block of output."""
    prk = hmac.new(b"sqla_repo cursor keys", secret, hashlib.sha256).digest()
    return hmac.new(prk, b"sqla_repo cursor v3 " + label + b"\x01", hashlib.sha256).digest()


def v3_cursor(
    secret: bytes, nonce: bytes, *, issued_ms: int, spec: str, scope: str, json_text: bytes
) -> str:
    """A version 0x03 cursor, by the formula of the explanation page."""
    k_enc = hkdf_sha256(secret, b"encryption")
    k_mac = hkdf_sha256(secret, b"authentication")
    k_bind = hkdf_sha256(secret, b"binding")
    plaintext = (
        issued_ms.to_bytes(6, "big")
        + hashlib.blake2b(spec.encode(), key=k_bind, digest_size=8).digest()
        + hashlib.blake2b(scope.encode(), key=k_bind, digest_size=8).digest()
        + json_text
    )
    keystream = b"".join(
        hashlib.blake2b(nonce + counter.to_bytes(4, "big"), key=k_enc, digest_size=64).digest()
        for counter in range(len(plaintext) // 64 + 1)
    )
    ciphertext = bytes(p ^ k for p, k in zip(plaintext, keystream, strict=False))
    sealed = b"\x03" + nonce + ciphertext
    tag = hashlib.blake2b(sealed, key=k_mac, digest_size=16).digest()
    return base64.urlsafe_b64encode(sealed + tag).rstrip(b"=").decode("ascii")


# Plaintexts of 63 bytes (one keystream block) and 85 bytes (two), and their cursors.
KNOWN_ANSWERS = [
    pytest.param(
        [dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc), 90000],
        b'[{"t":"2024-05-01T12:00:00+00:00"},90000]',
        "AwABAgMEBQYHCAkKCwwNDg-REUvTrjc83RV2j9PEUmvSJfepNEcJ7vKsIj3mD7gz-KiOfXRurdC6H8DL5mmTX6Ps"
        "xDYvl9pm1tZ2tqFY3oqgeDY5BjF-UaEvjoIwBS8_",
        id="one-block",
    ),
    pytest.param(
        ["a sort value long enough to need a second keystream block", 7],
        b'["a sort value long enough to need a second keystream block",7]',
        "AwABAgMEBQYHCAkKCwwNDg-REUvTrjc83RV2j9PEUmvSJfepNEcJ7qvvdmyzX_4jvP3POCRj8Y6ASdKUuDbcCPvn"
        "gGk1yY8hz9oupuINjbiHexe3V0ay5OyaRGV3znAMIvhcodRz7CCWnWLMR0eLTkaeHJRs-w",
        id="two-blocks",
    ),
]


class TestKnownAnswers:
    @pytest.mark.parametrize(("values", "json_text", "expected"), KNOWN_ANSWERS)
    def test_the_formula_gives_the_pinned_cursor(self, values, json_text, expected):
        """The documented construction, computed with hashlib, gives the pinned cursor."""
        del values
        assert (
            v3_cursor(
                SECRET, NONCE, issued_ms=ISSUED_MS, spec=SPEC, scope=SCOPE, json_text=json_text
            )
            == expected
        )

    @pytest.mark.parametrize(("values", "json_text", "expected"), KNOWN_ANSWERS)
    def test_encode_cursor_follows_the_formula(self, monkeypatch, values, json_text, expected):
        """With the nonce and the time fixed, encode_cursor() makes exactly that cursor."""
        del json_text
        monkeypatch.setattr(_cursors, "_urandom", lambda size: NONCE[:size])
        made = encode_cursor(values, spec=SPEC, scope=SCOPE, secret=SECRET, now=ISSUED_MS / 1000)
        assert made == expected

    @pytest.mark.parametrize(("values", "json_text", "expected"), KNOWN_ANSWERS)
    def test_decode_cursor_accepts_it(self, values, json_text, expected):
        """The pinned cursor decodes to its values, within max_age of its issue time."""
        del json_text
        decoded = decode_cursor(
            expected, spec=SPEC, scope=SCOPE, secret=SECRET, max_age=60, now=ISSUED_MS / 1000 + 59
        )
        assert decoded == values

    @pytest.mark.parametrize(("values", "json_text", "expected"), KNOWN_ANSWERS)
    def test_one_bit_changed_is_refused(self, values, json_text, expected):
        """One bit changed in the version, nonce, ciphertext or tag makes it invalid."""
        del values, json_text
        raw = raw_of(expected)
        for index in (0, 1, 16, 17, 30, len(raw) - 17, len(raw) - 16, len(raw) - 1):
            for bit in (0, 7):
                flipped = bytearray(raw)
                flipped[index] ^= 1 << bit
                with pytest.raises(InvalidFilterError) as info:
                    decode_cursor(text_of(bytes(flipped)), spec=SPEC, scope=SCOPE, secret=SECRET)
                assert reason(info) == "invalid_cursor"


def v2_cursor(secret: bytes, plaintext: bytes) -> str:
    """A cursor of the previous format, 0x02: HMAC-SHA256 in counter mode and as the tag."""
    prk = hmac.new(b"sqla_repo cursor keys", secret, hashlib.sha256).digest()

    def key(label: bytes) -> bytes:
        return hmac.new(prk, b"sqla_repo cursor v2 " + label + b"\x01", hashlib.sha256).digest()

    keystream = b"".join(
        hmac.new(key(b"encryption"), NONCE + n.to_bytes(4, "big"), hashlib.sha256).digest()
        for n in range(len(plaintext) // 32 + 1)
    )
    sealed = b"\x02" + NONCE + bytes(p ^ k for p, k in zip(plaintext, keystream, strict=False))
    return text_of(sealed + hmac.new(key(b"authentication"), sealed, hashlib.sha256).digest()[:16])


class TestOtherVersions:
    def test_a_version_2_cursor_is_refused(self):
        """A well-made cursor of format 0x02 is refused as invalid, like any unknown version."""
        bind = hmac.new(
            hmac.new(
                hmac.new(b"sqla_repo cursor keys", SECRET, hashlib.sha256).digest(),
                b"sqla_repo cursor v2 binding\x01",
                hashlib.sha256,
            ).digest(),
            digestmod=hashlib.sha256,
        )

        def digest(text: str) -> bytes:
            state = bind.copy()
            state.update(text.encode())
            return state.digest()[:8]

        plaintext = ISSUED_MS.to_bytes(6, "big") + digest(SPEC) + digest(SCOPE) + b"[90000]"
        old = v2_cursor(SECRET, plaintext)
        for scope in (SCOPE, None):
            with pytest.raises(InvalidFilterError) as info:
                decode_cursor(old, spec=SPEC, scope=scope, secret=SECRET)
            assert reason(info) == "invalid_cursor"
        relabelled = text_of(b"\x03" + raw_of(old)[1:])
        with pytest.raises(InvalidFilterError) as info:
            decode_cursor(relabelled, spec=SPEC, scope=SCOPE, secret=SECRET)
        assert reason(info) == "invalid_cursor"

    def test_the_v3_construction_under_another_version_byte_is_refused(self):
        """The version byte is authenticated: the same keys under 0x02 still fail."""
        keys = _cursors._derive(SECRET)
        plain = ISSUED_MS.to_bytes(6, "big") + keys.digest(SPEC) + keys.digest(SCOPE) + b"[1]"
        for version, expected in ((b"\x03", None), (b"\x02", "invalid_cursor")):
            sealed = version + NONCE + keys.keystream_xor(NONCE, plain)
            cursor = text_of(sealed + keys.tag(sealed))
            if expected is None:
                assert decode_cursor(cursor, spec=SPEC, scope=SCOPE, secret=SECRET) == [1]
                continue
            with pytest.raises(InvalidFilterError) as info:
                decode_cursor(cursor, spec=SPEC, scope=SCOPE, secret=SECRET)
            assert reason(info) == expected


# -- The JSON fast paths ------------------------------------------------------------------


def general_json(values: list[Any]) -> str:
    return _cursors._dump([_cursors._encode_value(value) for value in values])


def is_plain(value: object) -> bool:
    if type(value) is int:
        return True
    return type(value) is str and all(" " <= c <= "~" and c not in '"\\' for c in value)


class IntSubclass(int):
    def __repr__(self) -> str:
        return "not JSON"


VALUES = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.text(),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127)),
    st.sampled_from(["", '"', "\\", "\x7f", "\n", "é", "\ud800", "a b~[]{}/"]),
    st.booleans(),
    st.none(),
    st.sampled_from([Status.ACTIVE, Decimal("1.5"), 1.5, IntSubclass(3), dt.date(2024, 1, 2)]),
)


class TestJsonFastPath:
    @settings(max_examples=1000, deadline=None)
    @given(values=st.lists(VALUES, max_size=6))
    def test_same_text_as_the_general_encoder(self, values):
        """The fast path writes what the general encoder writes, or leaves the values to it."""
        fast = _cursors._plain_json(values)
        if all(is_plain(value) for value in values):
            assert fast is not None
        if fast is not None:
            assert fast == general_json(values)
            assert fast.encode("utf-8", "surrogatepass") == general_json(values).encode(
                "utf-8", "surrogatepass"
            )

    @settings(max_examples=300, deadline=None)
    @given(values=st.lists(VALUES, max_size=6))
    def test_round_trip(self, values):
        """Whichever path writes them, the values come back (enum members as their values)."""
        cursor = encode_cursor(values, spec=SPEC, scope=SCOPE, secret=SECRET)
        decoded = decode_cursor(cursor, spec=SPEC, scope=SCOPE, secret=SECRET)
        expected = json.loads(general_json(values))
        assert [type(value) for value in decoded] == [
            type(_cursors._decode_value(value)) for value in expected
        ]
        assert decoded == [_cursors._decode_value(value) for value in expected]

    def test_an_iterator_of_values_is_read_once(self):
        """Values given as an iterator are all kept, whichever path writes them."""
        values = [7, dt.date(2024, 1, 2), "x"]
        cursor = encode_cursor(iter(values), spec=SPEC, secret=SECRET)
        assert decode_cursor(cursor, spec=SPEC, secret=SECRET) == values

    @pytest.mark.parametrize(
        "payload", [b" [1]", b"[1] ", b"\t[1]\n", b"[ 1 ]", b'[1, "a"]', b"[true,null]"]
    )
    def test_the_decoder_reads_what_json_loads_reads(self, payload):
        """Authentic JSON with spaces around it still decodes, as json.loads() reads it."""
        keys = _cursors._derive(SECRET)
        plain = keys.digest(SPEC) + keys.digest(SCOPE) + payload
        sealed = b"\x03" + NONCE + keys.keystream_xor(NONCE, bytes(6) + plain)
        cursor = text_of(sealed + keys.tag(sealed))
        assert decode_cursor(cursor, spec=SPEC, scope=SCOPE, secret=SECRET) == json.loads(payload)


# -- One base64 spelling ------------------------------------------------------------------


class TestBase64:
    @pytest.mark.parametrize("extra", [0, 1, 2])
    def test_only_the_canonical_last_character_is_accepted(self, extra):
        """A last character with spare bits set (another spelling) is refused as malformed."""
        canonical = text_of(b"\x03" + bytes(range(60 + extra)))
        refused = set()
        for char in ALPHABET:
            variant = canonical[:-1] + char
            with pytest.raises(InvalidFilterError) as info:
                decode_cursor(variant, spec=SPEC, secret=SECRET)
            if text_of(raw_of(variant)) == variant:  # the one spelling of its own bytes
                assert reason(info) == "invalid_cursor"
            else:
                assert reason(info) == "malformed_cursor"
                refused.add(char)
        # 61, 62 and 63 bytes: 4, 16 and all 64 last characters are canonical.
        assert len(refused) == {0: 60, 1: 48, 2: 0}[extra]

    @pytest.mark.parametrize("cursor", ["A" * 81, "Aw" + "A" * 79, "AwAAA"])
    def test_a_length_of_one_more_than_a_multiple_of_four_is_malformed(self, cursor):
        """No bytes have a base64 spelling of 4n + 1 characters."""
        with pytest.raises(InvalidFilterError) as info:
            decode_cursor(cursor, spec=SPEC, secret=SECRET)
        assert reason(info) == "malformed_cursor"

    @pytest.mark.parametrize("char", ["+", "/", "=", " ", "\n", "é", "\ud800", "\x00", "\uff21"])
    def test_any_other_character_is_malformed(self, char):
        """Standard base64's characters, padding, spaces and non-ASCII are all refused."""
        cursor = encode_cursor([1], spec=SPEC, secret=SECRET)
        for index in (0, len(cursor) // 2, len(cursor) - 1):
            variant = cursor[:index] + char + cursor[index + 1 :]
            with pytest.raises(InvalidFilterError) as info:
                decode_cursor(variant, spec=SPEC, secret=SECRET)
            assert reason(info) == "malformed_cursor"


def test_the_keys_are_not_in_their_repr():
    """The derived keys stay out of logs and tracebacks that show the key set."""
    keys = _cursors._derive(SECRET)
    text = repr(keys)
    for key in (keys.enc, keys.mac, keys.bind):
        assert repr(key) not in text
        assert key.hex() not in text
