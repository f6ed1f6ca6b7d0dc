"""Adversarial review of round 10: cursor format 0x03, one-pass bulk row preparation.

Cursors are now sealed with keyed BLAKE2b and spelled through ``binascii`` with a
one-spelling check; plain int and ASCII string values take a JSON fast path. Bulk rows
with the first row's keys are copied after one length and one set test, grouped by key
set once, and new objects are recorded with one ``update()``. Sort expressions cache
their Python type and single-precision flag. Three defects were found and are fixed
(rows sharing a mapped identity, a non-string row key, a huge int sort value); their
tests and the rest pin what was checked.
"""

from __future__ import annotations

import base64
import enum
import gc
import math
import string
import types
from collections import OrderedDict
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import (
    Column,
    Enum,
    Float,
    Integer,
    String,
    Table,
    func,
    literal_column,
    select,
)
from sqlalchemy.ext.asyncio import AsyncAttrs, AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import flavours
from reliability.support import own_tables
from sqla_repo import (
    ALL_COLUMNS,
    BaseRepository,
    ConflictError,
    IntegerPKMixin,
    InvalidFilterError,
    InvalidValueError,
    RepositoryError,
    TenantMismatchError,
    TenantMixin,
    TimestampMixin,
    _keyset,
    tenant,
)
from sqla_repo.pagination import MAX_CURSOR_LENGTH, decode_cursor, encode_cursor

SECRET = b"round ten cursor secret, 32 byte"


class _Base(AsyncAttrs, DeclarativeBase):
    pass


class Colour(enum.Enum):
    red = "red"
    green = "green"
    blue = "blue"


class Item(IntegerPKMixin, TimestampMixin, _Base):
    __tablename__ = "r10_items"
    code: Mapped[str] = mapped_column(String(20), unique=True)
    note: Mapped[str | None] = mapped_column(String(20))
    rank: Mapped[int] = mapped_column(Integer, default=7)
    weight: Mapped[float | None] = mapped_column(Float)
    colour: Mapped[Colour | None] = mapped_column(Enum(Colour))


class Owned(IntegerPKMixin, TenantMixin, _Base):
    __tablename__ = "r10_owned"
    code: Mapped[str] = mapped_column(String(20))


_LOOSE = Table(
    "r10_loose",
    _Base.metadata,
    Column("code", String(20), nullable=False),
    Column("n", Integer),
)


class Loose(_Base):
    """A mapped identity the table does not enforce (no primary key constraint)."""

    __table__ = _LOOSE
    __mapper_args__ = {"primary_key": [_LOOSE.c.code]}  # noqa: RUF012


class ItemRepo(BaseRepository[Item]):
    sortable_fields = ALL_COLUMNS
    filterable_fields = ALL_COLUMNS


class OwnedRepo(BaseRepository[Owned]):
    sortable_fields = ALL_COLUMNS
    filterable_fields = ALL_COLUMNS


class LooseRepo(BaseRepository[Loose]):
    pass


ITEMS = Item.__table__


@pytest_asyncio.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with own_tables(engine, _Base.metadata) as session:
        yield session


async def _codes(session: AsyncSession) -> list[str]:
    rows = await session.execute(select(ITEMS.c.code).order_by(ITEMS.c.code))
    return [row[0] for row in rows]


def _in_session(session: AsyncSession) -> list[object]:
    return [o for o in session.identity_map.values() if isinstance(o, Item)]


# -- cursor codec ------------------------------------------------------------------------


class _IntE(enum.IntEnum):
    A = 3


class _StrE(str, enum.Enum):
    A = "a"


class _MyInt(int):
    pass


class _MyStr(str):
    __slots__ = ()


EDGE_VALUES = [
    True,
    False,
    None,
    0,
    -1,
    2**63,
    10**900,
    _IntE.A,
    _StrE.A,
    _MyInt(5),
    _MyStr("q"),
    'a"b',
    "a\\b",
    "\x00\x1f\x7f",
    "é",
    "\ud800",
    "\U0001f600",
    "",
    " ",
    "~!#[]{}",
    "</script>",
    "\u2028",
]


@pytest.mark.parametrize("value", EDGE_VALUES, ids=repr)
def test_cursor_fast_path_edges_round_trip(value):
    """Values at the JSON fast path's edges decode to the value (enum members to theirs)."""
    cursor = encode_cursor([value, 1, "x"], spec="s", scope="t", secret=SECRET)
    out = decode_cursor(cursor, spec="s", scope="t", secret=SECRET)
    expected = value.value if isinstance(value, enum.Enum) else value
    assert out == [expected, 1, "x"]
    if isinstance(expected, bool):
        assert type(out[0]) is bool
    elif isinstance(expected, int):
        assert type(out[0]) is int


def test_cursor_nan_and_iterator_values():
    """NaN keeps its bits; a generator of values is not used up by the fast path."""
    cursor = encode_cursor((v for v in [float("nan"), 2]), spec="s", secret=SECRET)
    nan, two = decode_cursor(cursor, spec="s", secret=SECRET)
    assert math.isnan(nan)
    assert two == 2


def test_cursor_every_single_character_change_is_refused():
    """Each position replaced by each other base64url character: always refused."""
    alphabet = string.ascii_letters + string.digits + "-_"
    for size in (0, 1, 2):  # the three lengths modulo 4 a cursor can have
        cursor = encode_cursor([1, "a" * size], spec="s", secret=SECRET)
        for i, old in enumerate(cursor):
            for new in alphabet:
                if new == old:
                    continue
                with pytest.raises(InvalidFilterError):
                    decode_cursor(cursor[:i] + new + cursor[i + 1 :], spec="s", secret=SECRET)


def test_cursor_respellings_and_garbage_are_refused():
    """Spare bits, padding, non-ASCII look-alikes, whitespace, truncation, old format."""
    seen = set()
    for size in range(6):
        cursor = encode_cursor(["x" * size], spec="s", secret=SECRET)
        seen.add(len(cursor) % 4)
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        last = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
        spare = {2: 15, 3: 3}.get(len(cursor) % 4, 0)
        if spare:  # another spelling of the same bytes: the spare low bits set
            index = last.index(cursor[-1]) | spare
            respelt = cursor[:-1] + last[index]
            assert base64.urlsafe_b64decode(respelt + "=" * (-len(respelt) % 4)) == raw
            with pytest.raises(InvalidFilterError):
                decode_cursor(respelt, spec="s", secret=SECRET)
        fullwidth = cursor[:3] + chr(ord(cursor[3]) + 0xFEE0) + cursor[4:]
        old = base64.urlsafe_b64encode(b"\x02" + raw[1:]).rstrip(b"=").decode()
        for bad in (
            cursor + "=" * (-len(cursor) % 4 or 4),
            cursor + "\n",
            " " + cursor,
            fullwidth,
            cursor[:-1] + "\ud800",
            cursor[:-1],
            cursor[: len(cursor) // 2],
            cursor + "A",
            old,
            "A" * (MAX_CURSOR_LENGTH + 1),
            "é" * (MAX_CURSOR_LENGTH + 1),
        ):
            with pytest.raises(InvalidFilterError):
                decode_cursor(bad, spec="s", secret=SECRET)
    assert seen == {0, 2, 3}


def test_cursor_bound_to_spec_scope_and_secret():
    """A cursor replayed under another sort, scope or secret is refused."""
    cursor = encode_cursor([1, "a"], spec="s", scope="tenant=A", secret=SECRET)
    for kwargs in (
        {"spec": "t", "scope": "tenant=A", "secret": SECRET},
        {"spec": "s", "scope": "tenant=B", "secret": SECRET},
        {"spec": "s", "scope": "tenant=A", "secret": SECRET[::-1]},
    ):
        with pytest.raises(InvalidFilterError):
            decode_cursor(cursor, **kwargs)


def test_cursor_of_a_huge_int_is_refused_as_too_long():
    """A sort value too large for a cursor raises the documented InvalidFilterError.

    ``encode_cursor()`` promises ``InvalidFilterError`` (``cursor_too_long``) when the
    cursor would be too long; an int of more than 4300 digits escapes as ``ValueError``
    from Python's int-to-text limit instead.
    """
    with pytest.raises(InvalidFilterError):
        encode_cursor([10**5000], spec="s", secret=SECRET)


# -- the per-expression cache ------------------------------------------------------------


def test_facts_survive_id_reuse_and_are_bounded():
    """A new expression at a freed id gets its own type, never the cached one."""
    first = literal_column("w", Float())
    assert _keyset.lossy_indexes([types.SimpleNamespace(expression=first)]) == [0]
    ident = id(first)
    del first
    gc.collect()
    for _ in range(5000):
        other = literal_column("n", Integer())
        key = types.SimpleNamespace(expression=other)
        assert _keyset.lossy_indexes([key]) == []
        assert _keyset._facts(key)[0] is int
        if id(other) == ident:
            break
    assert len(_keyset._FACTS) <= _keyset._MAX_FACTS


# -- keyset pages on the backends ----------------------------------------------------------


@pytest.mark.usefixtures("flavour")
@pytest.mark.parametrize("order", [["weight"], ["-weight"], ["colour", "-weight"], ["code"]])
async def test_pages_over_float_and_enum_keys(db, order):
    """Pages of one row over 4-byte FLOAT and ENUM keys (with NULLs) visit every row once."""
    repo = flavours.make_repo(ItemRepo, db)
    colours = [Colour.blue, Colour.red, None, Colour.green]
    rows = [
        {"code": f"c{i:02d}", "weight": [0.1, 1 / 3, None, 0.1][i % 4], "colour": colours[i % 4]}
        for i in range(13)
    ]
    await repo.bulk_create(rows)
    everything = [o.code for o in (await repo.paginate(order_by=order, limit=100)).items]
    walked, page = [], await repo.paginate(order_by=order, limit=1)
    walked += [o.code for o in page.items]
    while page.next_cursor:
        page = await repo.paginate(order_by=order, limit=1, after=page.next_cursor)
        walked += [o.code for o in page.items]
    assert walked == everything
    assert sorted(walked) == [r["code"] for r in rows]


@pytest.mark.usefixtures("flavour")
async def test_cursor_replayed_across_filters_and_tenants(db):
    """A page cursor is refused under other filters, another order or another tenant."""
    repo = flavours.make_repo(OwnedRepo, db)
    for name in ("A", "B"):
        with tenant(name):
            await repo.bulk_create([{"code": f"{name}{i}"} for i in range(4)])
    with tenant("A"):
        page = await repo.paginate(filters={"code__ne": "zz"}, order_by=["code"], limit=2)
        assert page.next_cursor
        with pytest.raises(InvalidFilterError):
            await repo.paginate(
                filters={"code__ne": "yy"}, order_by=["code"], after=page.next_cursor
            )
        with pytest.raises(InvalidFilterError):
            await repo.paginate(
                filters={"code__ne": "zz"}, order_by=["-code"], after=page.next_cursor
            )
    with tenant("B"), pytest.raises(InvalidFilterError):
        await repo.paginate(filters={"code__ne": "zz"}, order_by=["code"], after=page.next_cursor)


# -- bulk row preparation ------------------------------------------------------------------


class _Row(dict):
    pass


@pytest.mark.usefixtures("flavour")
@pytest.mark.parametrize("op", ["bulk_create", "bulk_insert"])
async def test_odd_rows_keep_their_values_and_order(db, op):
    """Dict subclasses, OrderedDict, proxies, instances, same-length other keys, None ids."""
    repo = flavours.make_repo(ItemRepo, db)
    rows = [
        {"code": "z9", "note": "n"},
        {"code": "z8", "rank": 1},  # same length, other keys
        _Row(code="z7", note="m"),
        OrderedDict(code="z6", note=None),
        types.MappingProxyType({"code": "z5", "note": "p"}),
        Item(code="z4", note="i"),
        {"code": "z3", "note": "q", "id": None, "created_at": None, "rank": None},
        {"note": "r", "code": "z2"},
    ]
    rows += [{"code": f"y{i:03d}", "note": str(i)} for i in range(300)]
    result = await getattr(repo, op)(iter(rows))
    got = await db.execute(select(ITEMS.c.code, ITEMS.c.note, ITEMS.c.rank, ITEMS.c.created_at))
    by_code = {r.code: r for r in got}
    assert len(by_code) == len(rows)
    assert by_code["z8"].note is None
    assert by_code["z8"].rank == 1
    assert by_code["z6"].note is None
    assert by_code["z6"].rank == 7
    assert by_code["z3"].rank == 7
    assert by_code["z3"].created_at is not None
    assert by_code["z4"].note == "i"
    assert by_code["y123"].note == "123"
    if op == "bulk_create":
        codes = [
            r["code"] if isinstance(r, dict | types.MappingProxyType) else r.code for r in rows
        ]
        assert [o.code for o in result] == codes
        assert len({id(o) for o in result}) == len(rows)
    else:
        assert result == len(rows)


@pytest.mark.usefixtures("flavour")
@pytest.mark.parametrize("op", ["bulk_create", "bulk_insert"])
@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({"code": "x", "bogus": 1}, RepositoryError),  # same length as the good rows
        ({"code": "x", "version": 1}, RepositoryError),
        ({"code": "x", "note": "n" * 21}, InvalidValueError),
        ({"code": "x", "note": func.lower("X")}, RepositoryError),
        ({"code": "x", "rank": 2**40}, InvalidValueError),
        ({"code": "x", "rank": "7"}, InvalidValueError),
        ({"code": 5, "note": "n"}, InvalidValueError),
    ],
)
async def test_bad_row_after_many_good_ones_refused(db, op, bad, error):
    """An unknown key or a bad value after 500 good rows, in a later group: nothing written."""
    repo = flavours.make_repo(ItemRepo, db)
    rows = [{"code": f"g{i:04d}", "note": "n"} for i in range(500)]
    rows.insert(250, {"code": "mid", "rank": 3})
    with pytest.raises(error):
        await getattr(repo, op)([*rows, bad, {"code": "tail", "note": "t"}])
    assert await _codes(db) == []
    assert _in_session(db) == []


@pytest.mark.usefixtures("flavour")
@pytest.mark.parametrize("op", ["bulk_create", "bulk_insert"])
async def test_non_string_key_after_good_rows_is_a_repository_error(db, op):
    """A row with a non-string key is refused with RepositoryError (``unknown_field``).

    The unknown keys are joined into the message as strings: an int key escapes as a
    ``TypeError`` from ``str.join()`` instead.
    """
    repo = flavours.make_repo(ItemRepo, db)
    rows = [{"code": f"g{i}", "note": "n"} for i in range(100)]
    with pytest.raises(RepositoryError):
        await getattr(repo, op)([*rows, {1: "x", "code": "x"}])
    assert await _codes(db) == []


@pytest.mark.usefixtures("flavour")
async def test_empty_and_generator_input(db):
    """Empty input writes nothing; a generator is read once."""
    repo = flavours.make_repo(ItemRepo, db)
    assert await repo.bulk_create([]) == []
    assert await repo.bulk_create(iter(())) == []
    assert await repo.bulk_insert(x for x in ()) == 0
    objs = await repo.bulk_create({"code": f"g{i}"} for i in range(3))
    assert [o.code for o in objs] == ["g0", "g1", "g2"]


@pytest.mark.usefixtures("flavour")
async def test_tenant_row_after_good_rows_refused(db):
    """A row naming another tenant after many of the current one's: nothing written."""
    repo = flavours.make_repo(OwnedRepo, db)
    rows = [{"code": f"a{i}"} for i in range(200)] + [{"code": "b", "tenant_id": "B"}]
    with tenant("A"):
        with pytest.raises(TenantMismatchError):
            await repo.bulk_create(rows)
        with pytest.raises(TenantMismatchError):
            await repo.bulk_insert(rows)
        objs = await repo.bulk_create([{"code": "x", "tenant_id": "A"}, {"code": "y"}])
        assert [(o.code, o.tenant_id) for o in objs] == [("x", "A"), ("y", "A")]
        assert await repo.count() == 2


@pytest.mark.usefixtures("flavour")
async def test_later_group_conflict_leaves_no_ghosts(db):
    """A conflict in the second key-set group undoes the first group, rows and objects."""
    repo = flavours.make_repo(ItemRepo, db)
    dup = await repo.create({"code": "dup"})
    await db.commit()
    rows = [{"code": f"a{i}"} for i in range(50)] + [{"code": "dup", "rank": 1}]
    with pytest.raises(ConflictError):
        await repo.bulk_create(rows)
    assert sorted(o.code for o in _in_session(db)) == ["dup"]
    objs = await repo.bulk_create([{"code": "ok"}, {"code": "ok2", "rank": 2}])
    await db.rollback()
    assert all(o not in db for o in objs)
    assert await _codes(db) == ["dup"]
    del dup


@pytest.mark.usefixtures("flavour")
@pytest.mark.parametrize("keys", ["same", "mixed"])
async def test_one_object_per_row_when_identities_collide(db, keys):
    """bulk_create() never returns fewer objects than rows: it refuses, inserting nothing.

    With a mapped identity the table does not enforce, two rows share an identity and
    the ORM loads one object for both; the list would no longer match the rows.
    """
    repo = flavours.make_repo(LooseRepo, db)
    rows = [{"code": "a", "n": 1}, {"code": "a", "n": 2}, {"code": "b", "n": 3}]
    if keys == "mixed":
        rows.append({"code": "c"})
    with pytest.raises(RepositoryError) as info:
        await repo.bulk_create(rows)
    assert info.value.detail["reason"] == "duplicate_identity"
    assert await repo.count() == 0
