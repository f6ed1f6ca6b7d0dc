"""Every filter operator and sort order gives the same rows on every backend."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, ClassVar

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import joinedload
from typing_extensions import Self

from models import Post, Status, Tag, User
from oracle import ACCOUNTS, Account, OpenAccounts, OracleBase, PublicAccounts, UnsetAccounts
from sqla_repo.exceptions import ConfigurationError, InvalidFilterError
from sqla_repo.filters import (
    ALL_COLUMNS,
    MAX_VALUE_LENGTH,
    OPERATORS,
    compile_filters,
    compile_order_by,
)
from sqla_repo.repository import BaseRepository
from sqla_repo.types import utcnow

UTC = dt.timezone.utc
U1 = uuid.UUID("00000000-0000-4000-8000-000000000001")
U2 = uuid.UUID("00000000-0000-4000-8000-000000000002")
T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)

# Each row: name, age, score, balance, is_active, status, birthday, external_id and
# created_at (hours after T0), keyed by the local part of its email.
ROWS: dict[str, tuple[Any, ...]] = {
    "alice": ("Alice", 30, 1.5, Decimal("10.00"), True, Status.ACTIVE, dt.date(1990, 1, 1), U1, 0),
    "alice2": ("alice", 25, None, Decimal("-3.25"), True, Status.ACTIVE, None, None, 1),
    "bob": ("bob", None, 0.0, None, False, Status.DISABLED, dt.date(1985, 6, 15), U2, 2),
    "sale": ("50% off_sale", 41, -2.0, Decimal("0.00"), True, Status.DISABLED, None, None, 3),
    "items": ("500 offxsale", 18, 99.5, Decimal("999.99"), False, Status.ACTIVE, None, None, 4),
    "upper": ("Émile", None, None, None, True, Status.ACTIVE, dt.date(2000, 2, 29), None, 5),
    "lower": ("émile", 35, 3.25, Decimal("1.50"), True, Status.ACTIVE, None, None, 6),
    "plain": ("emile", 35, 3.25, Decimal("1.50"), False, Status.ACTIVE, None, None, 7),
    "slash": ("back\\slash", 60, None, None, True, Status.DISABLED, None, None, 8),
    "empty": ("", 0, None, None, True, Status.ACTIVE, None, None, 9),
}
ALL = set(ROWS)


@pytest.fixture
async def users(session: AsyncSession) -> dict[str, User]:
    """The rows above, plus one soft-deleted row that must never show up."""
    objects = {}
    for key, (name, age, score, balance, active, status, birthday, ext, hours) in ROWS.items():
        objects[key] = User(
            email=f"{key}@example.org",
            name=name,
            age=age,
            score=score,
            balance=balance,
            is_active=active,
            status=status,
            birthday=birthday,
            external_id=ext,
            created_at=T0 + dt.timedelta(hours=hours),
        )
    ghost = User(email="ghost@example.org", name="Alice", age=30, deleted_at=utcnow())
    session.add_all([*objects.values(), ghost])
    await session.flush()
    session.expunge_all()
    return objects


async def keys_of(session: AsyncSession, filters: Any, order_by: Any = None, **kw: Any) -> Any:
    """Return the matching row keys: a set, or a list when an order is given.

    Every column is filterable and sortable (``ALL_COLUMNS``) unless *allowed* says otherwise.
    """
    kw.setdefault("allowed", ALL_COLUMNS)
    stmt = select(User).where(*compile_filters(User, filters, **kw))
    if order_by is None:
        rows = (await session.scalars(stmt)).all()
        return {user.email.split("@")[0] for user in rows}
    keys = compile_order_by(User, order_by, allowed=ALL_COLUMNS)
    rows = (await session.scalars(stmt.order_by(*[k.clause() for k in keys]))).all()
    return [user.email.split("@")[0] for user in rows]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"age": "35"}, {"lower", "plain"}),
        ({"age__eq": 30}, {"alice"}),
        ({"age__ne": "35"}, ALL - {"lower", "plain"}),
        ({"age__lt": 25}, {"items", "empty"}),
        ({"age__le": "25"}, {"alice2", "items", "empty"}),
        ({"age__lte": 25}, {"alice2", "items", "empty"}),
        ({"age__gt": "41"}, {"slash"}),
        ({"age__ge": 41}, {"sale", "slash"}),
        ({"age__gte": "41"}, {"sale", "slash"}),
        ({"age__in": "30,60"}, {"alice", "slash"}),
        ({"age__in": []}, set()),
        ({"age__not_in": [30, 35, 0]}, ALL - {"alice", "lower", "plain", "empty"}),
        ({"age__not_in": []}, ALL),
        ({"age__between": "25,35"}, {"alice", "alice2", "lower", "plain"}),
        ({"age__between": [35, 25]}, set()),
        ({"age__is_null": "true"}, {"bob", "upper"}),
        ({"age__is_null": False}, ALL - {"bob", "upper"}),
        ({"age__eq": None}, {"bob", "upper"}),
        ({"age__ne": None}, ALL - {"bob", "upper"}),
        ({"age": 0}, {"empty"}),
    ],
)
async def test_comparisons(session, users, filters, expected):
    """Comparison, list and null operators match exactly; ne/not_in keep NULLs."""
    assert await keys_of(session, filters) == expected


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"score__gt": "0"}, {"alice", "items", "lower", "plain"}),
        ({"score__le": -2}, {"sale"}),
        ({"score": "3.25"}, {"lower", "plain"}),
        ({"balance__between": ["-5", "1.5"]}, {"alice2", "sale", "lower", "plain"}),
        ({"balance__gt": "999.98"}, {"items"}),
        ({"balance": 0}, {"sale"}),
        ({"is_active": "no"}, {"bob", "items", "plain"}),
        ({"is_active__ne": "TRUE"}, {"bob", "items", "plain"}),
        ({"status": "disabled"}, {"bob", "sale", "slash"}),
        ({"status__in": "DISABLED"}, {"bob", "sale", "slash"}),
        ({"status__not_in": ["active"]}, {"bob", "sale", "slash"}),
        ({"birthday__lt": "1990-01-02"}, {"alice", "bob"}),
        ({"birthday": "2000-02-29"}, {"upper"}),
        ({"external_id": str(U2)}, {"bob"}),
        ({"external_id__in": [U1.hex, str(U2)]}, {"alice", "bob"}),
        ({"external_id__ne": str(U1)}, ALL - {"alice"}),
        ({"created_at__gte": "2024-01-01T08:00:00Z"}, {"slash", "empty"}),
        ({"created_at__gte": "2024-01-01T10:00:00+02:00"}, {"slash", "empty"}),
        ({"created_at__lt": "2024-01-01T01:00:00"}, {"alice"}),
        ({"created_at": "2024-01-01T02:00:00.000000Z"}, {"bob"}),
        ({"created_at__between": ["2024-01-01T01:00:00Z", "2024-01-01"]}, set()),
        ({"created_at__between": "2024-01-01T00:30:00Z,2024-01-01T02:00:00Z"}, {"alice2", "bob"}),
    ],
)
async def test_types(session, users, filters, expected):
    """Values of every column type are coerced and compared correctly."""
    assert await keys_of(session, filters) == expected


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"name__contains": "50%"}, {"sale"}),
        ({"name__contains": "f_s"}, {"sale"}),
        ({"name__startswith": "50%"}, {"sale"}),
        ({"name__endswith": "_sale"}, {"sale"}),
        ({"name__contains": "\\"}, {"slash"}),
        ({"name__contains": "k\\s"}, {"slash"}),
        ({"name__contains": "%"}, {"sale"}),
        ({"name__contains": "_"}, {"sale"}),
        ({"name__contains": ""}, ALL),
        ({"name__startswith": ""}, ALL),
        ({"name__contains": "ali"}, {"alice2"}),
        ({"name__startswith": "A"}, {"alice"}),
        ({"name__contains": "mil"}, {"upper", "lower", "plain"}),
        ({"name__startswith": "É"}, {"upper"}),
        ({"name__startswith": "é"}, {"lower"}),
        ({"name__startswith": "e"}, {"plain"}),
        ({"name__contains": "x" * MAX_VALUE_LENGTH}, set()),
        ({"name__like": "50%"}, {"sale", "items"}),
        ({"name__like": "50\\%%"}, {"sale"}),
        ({"name__like": "%off_sale"}, {"sale", "items"}),
        ({"name__like": "%off\\_sale"}, {"sale"}),
        ({"name__like": "A%"}, {"alice"}),
        ({"name__like": "a%"}, {"alice2"}),
        ({"name__like": "_mile"}, {"upper", "lower", "plain"}),
        ({"name__like": "émile"}, {"lower"}),
        ({"name__like": "back\\\\slash"}, {"slash"}),
        ({"name__like": "*"}, set()),
        ({"name__like": "[ab]%"}, set()),
        ({"name__like": ""}, {"empty"}),
        ({"name__ilike": "a%"}, {"alice", "alice2"}),
        ({"name__ilike": "ALICE"}, {"alice", "alice2"}),
        ({"name__ilike": "%SALE"}, {"sale", "items"}),
        ({"name__ilike": "%F\\_S%"}, {"sale"}),
        ({"name__ilike": "emile"}, {"plain"}),
        ({"name__ilike": "%MILE"}, {"upper", "lower", "plain"}),
        ({"name__iexact": "ALICE"}, {"alice", "alice2"}),
        ({"name__iexact": "alic"}, set()),
        ({"name__iexact": "50% OFF_SALE"}, {"sale"}),
        ({"name__iexact": "500 off%"}, set()),
        ({"name__iexact": "BACK\\SLASH"}, {"slash"}),
        ({"name__iexact": ""}, {"empty"}),
        ({"name__iexact": "emile"}, {"plain"}),
        ({"name__icontains": "% OFF_"}, {"sale"}),
        ({"name__icontains": "LIC"}, {"alice", "alice2"}),
        ({"name__icontains": "_"}, {"sale"}),
        ({"name__istartswith": "50%"}, {"sale"}),
        ({"name__istartswith": "a"}, {"alice", "alice2"}),
        ({"name__iendswith": "_SALE"}, {"sale"}),
        ({"name__iendswith": "SALE"}, {"sale", "items"}),
        ({"name__iendswith": "\\slash"}, {"slash"}),
        ({"name__iendswith": "\\\\SLASH"}, set()),
        ({"name__iendswith": "K\\SLASH"}, {"slash"}),
    ],
)
async def test_text_operators(session, users, filters, expected):
    """LIKE-family operators: exact case and accents, escaped wildcards, on every backend."""
    assert await keys_of(session, filters) == expected


async def test_ilike_non_ascii_never_ignores_accents(session, users):
    """The ilike operator keeps accents significant on every backend."""
    for pattern, exact in [("émile", "lower"), ("Émile", "upper"), ("%MILE", "plain")]:
        found = await keys_of(session, {"name__ilike": pattern})
        assert exact in found
        assert found <= {"upper", "lower"} or pattern == "%MILE"
    assert await keys_of(session, {"name__ilike": "EMILE"}) == {"plain"}


async def test_ilike_folds_non_ascii_case(session, users, requires):
    """Where the database folds Unicode case, ilike matches É and é alike."""
    requires("unicode_case_folding")
    assert await keys_of(session, {"name__ilike": "ÉMILE"}) == {"upper", "lower"}
    assert await keys_of(session, {"name__ilike": "émile"}) == {"upper", "lower"}


async def test_cached_statement_with_new_values(session, users):
    """The same statement shape re-executed with other values uses the new values."""
    for pattern, expected in [("A%", {"alice"}), ("bo%", {"bob"}), ("%sale", {"sale", "items"})]:
        assert await keys_of(session, {"name__like": pattern}) == expected
        assert await keys_of(session, [("name", "contains", pattern.strip("%"))]) == expected


async def test_conditions_combine(session, users):
    """Several conditions are ANDed; triples and mappings are the same language."""
    filters = {"is_active": "true", "age__gte": "30", "status__in": ["active", "DISABLED"]}
    assert await keys_of(session, filters) == {"alice", "sale", "lower", "slash"}
    triples = [("is_active", "eq", True), ("age", "gte", 30), ("status", "in", "active,DISABLED")]
    assert await keys_of(session, triples) == {"alice", "sale", "lower", "slash"}


async def test_injection_strings_are_values(session, users):
    """Hostile strings are plain values: they match nothing and change nothing."""
    for value in ["'; DROP TABLE users; --", "name) OR 1=1 --", "' OR '1'='1", '" OR ""="']:
        assert await keys_of(session, {"name": value}) == set()
        assert await keys_of(session, {"name__contains": value}) == set()
        assert await keys_of(session, {"name__like": value}) == set()
    assert await session.scalar(select(func.count()).select_from(User)) == len(ROWS)


async def test_relationship_paths(session, users):
    """Relationship paths compile to EXISTS: no duplicate rows, soft delete respected."""
    alice = await session.get(User, users["alice"].id)
    bob = await session.get(User, users["bob"].id)
    tag = Tag(name="python")
    session.add_all(
        [
            Post(title="one", author=alice, tags=[tag]),
            Post(title="two", author=alice, tags=[tag]),
            Post(title="gone", author=bob, deleted_at=utcnow()),
            Post(title="orphan"),
        ]
    )
    await session.flush()
    allowed = {"posts.title", "posts.tags.name", "name"}
    stmt = select(User).where(*compile_filters(User, {"posts.title__ne": "x"}, allowed=allowed))
    assert [u.id for u in (await session.scalars(stmt)).all()] == [alice.id]
    assert await keys_of(session, {"posts.tags.name": "python"}, allowed=allowed) == {"alice"}
    assert await keys_of(session, {"posts.title": "gone"}, allowed=allowed) == set()
    conditions = compile_filters(Post, {"author.name__ilike": "ALICE"}, allowed={"author.name"})
    titles = (await session.scalars(select(Post.title).where(*conditions))).all()
    assert sorted(titles) == ["one", "two"]


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        (
            "age",
            [
                "bob",
                "upper",
                "empty",
                "items",
                "alice2",
                "alice",
                "lower",
                "plain",
                "sale",
                "slash",
            ],
        ),
        (
            "-age",
            [
                "slash",
                "sale",
                "lower",
                "plain",
                "alice",
                "alice2",
                "items",
                "empty",
                "bob",
                "upper",
            ],
        ),
        (
            "-score,age",
            [
                "items",
                "lower",
                "plain",
                "alice",
                "bob",
                "sale",
                "upper",
                "empty",
                "alice2",
                "slash",
            ],
        ),
        (
            "birthday,-created_at",
            [
                "empty",
                "slash",
                "plain",
                "lower",
                "items",
                "sale",
                "alice2",
                "bob",
                "alice",
                "upper",
            ],
        ),
        (
            "-balance",
            [
                "items",
                "alice",
                "lower",
                "plain",
                "sale",
                "alice2",
                "bob",
                "upper",
                "slash",
                "empty",
            ],
        ),
        (
            ["-is_active", "-age"],
            [
                "slash",
                "sale",
                "lower",
                "alice",
                "alice2",
                "empty",
                "upper",
                "plain",
                "items",
                "bob",
            ],
        ),
        (
            ["status", "-created_at"],
            [
                "empty",
                "plain",
                "lower",
                "upper",
                "items",
                "alice2",
                "alice",
                "slash",
                "sale",
                "bob",
            ],
        ),
    ],
)
async def test_order_with_nulls(session, users, order_by, expected):
    """NULL sorts smallest on every backend, with mixed directions and a PK tiebreaker."""
    assert await keys_of(session, {}, order_by=order_by) == expected


async def test_order_with_eager_collection_and_limit(session, users):
    """Nullable sort keys survive the ORM's subquery wrapping for eager loads."""
    keys = compile_order_by(User, "-age", allowed=ALL_COLUMNS)
    stmt = (
        select(User).options(joinedload(User.posts)).order_by(*[k.clause() for k in keys]).limit(3)
    )
    rows = (await session.scalars(stmt)).unique().all()
    assert [u.email.split("@")[0] for u in rows] == ["slash", "sale", "lower"]


INJECTION = ["id; DROP TABLE users", "name) OR 1=1 --", "' OR '1'='1", "\\", "%", "_"]
TEXTS = st.one_of(st.text(max_size=40), st.sampled_from(INJECTION), st.just("x" * 10_000))
# Values that mostly fit their field: numbers at type limits, dates, datetimes, UUIDs...
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": TEXTS,
    "age": st.one_of(
        st.integers(min_value=-(2**32), max_value=2**32),
        st.sampled_from([2**31 - 1, 2**31, -(2**31), 2**63]),
    ).map(str),
    "score": st.one_of(
        st.floats(allow_nan=False),
        st.from_regex(r"-?[0-9]{1,25}(\.[0-9]{0,40})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
    ),
    "balance": st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False, places=2),
        st.from_regex(r"-?[0-9]{1,40}(\.[0-9]{0,40})?([eE][+-]?[0-9]{1,2})?", fullmatch=True),
    ),
    "is_active": st.sampled_from(["true", "false", "1", "0", "yes", "no", "maybe"]),
    "status": st.sampled_from(["active", "DISABLED", "ACTIVE", "disabled", "other"]),
    "birthday": st.dates().map(str),
    "external_id": st.uuids().map(str),
    "created_at": st.one_of(
        st.datetimes(timezones=st.one_of(st.none(), st.timezones())).map(dt.datetime.isoformat),
        st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999", "2024-01-01"]),
    ),
}
ORDERED = ["lt", "le", "gt", "ge", "lte", "gte"]
LIKE = ["like", "ilike", "contains", "startswith", "endswith"]


@st.composite
def plausible_condition(draw: st.DrawFn) -> tuple[str, Any]:
    field = draw(st.sampled_from(sorted(FIELD_VALUES)))
    ops = ["eq", "ne", "in", "not_in", "is_null"]
    ops += [] if field == "is_active" else [*ORDERED, "between"]
    ops += LIKE if field == "name" else []
    op = draw(st.sampled_from(ops))
    values = FIELD_VALUES[field]
    if op == "is_null":
        value: Any = draw(st.sampled_from(["true", "false", True, False]))
    elif op == "between":
        value = draw(st.lists(values, min_size=2, max_size=2))
    elif op in {"in", "not_in"}:
        items = draw(st.lists(values, max_size=4))
        comma_free = all("," not in str(item) for item in items)
        value = ",".join(map(str, items)) if comma_free and draw(st.booleans()) else items
    else:
        value = draw(values)
    return f"{field}__{op}", value


plausible_filters = st.lists(plausible_condition(), max_size=3).map(dict)
scalars = st.one_of(
    TEXTS,
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.decimals(),
    st.dates(),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())),
    st.uuids(),
)
junk_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=2)
    ),
    max_leaves=5,
)
junk_filters = st.dictionaries(
    st.builds(
        lambda field, op: f"{field}__{op}" if op else field,
        st.one_of(st.sampled_from([*FIELD_VALUES, *INJECTION]), st.text(max_size=10)),
        st.one_of(st.sampled_from([*OPERATORS, "gte", "lte", "", "nope"]), st.text(max_size=5)),
    ),
    junk_values,
    max_size=4,
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(filters=st.one_of(plausible_filters, junk_filters))
async def test_junk_input_never_reaches_the_driver_as_an_error(session, users, filters):
    """Random input either runs or raises InvalidFilterError; the table is unchanged."""
    try:
        conditions = compile_filters(User, filters, allowed=ALL_COLUMNS)
    except InvalidFilterError as exc:
        event(f"refused: {exc.detail['reason']}")
        return
    event("executed")
    keys = compile_order_by(User, "-age,name", allowed=ALL_COLUMNS)
    stmt = select(User.id).where(*conditions).order_by(*[k.clause() for k in keys])
    async with session.begin_nested():
        await session.execute(stmt)
    assert await session.scalar(select(func.count()).select_from(User)) == len(ROWS)


# -- whitelists: deny by default, per-field operators, the password_hash oracle ---------------


@pytest_asyncio.fixture
async def account_table(engine: AsyncEngine) -> AsyncIterator[None]:
    """The oracle model's table, dropped after the test's session ends.

    Tests name ``accounts`` before ``session`` so that the table is made first (SQLite
    cannot drop a table while the session's transaction still holds the database).
    """
    async with engine.begin() as conn:
        await conn.run_sync(OracleBase.metadata.drop_all)
        await conn.run_sync(OracleBase.metadata.create_all)
    yield
    async with engine.begin() as conn:
        await conn.run_sync(OracleBase.metadata.drop_all)


@pytest_asyncio.fixture
async def accounts(account_table: None, session: AsyncSession) -> list[Account]:
    """Two accounts, rolled back with the test's session."""
    rows = [Account(**row) for row in ACCOUNTS]
    session.add_all(rows)
    await session.flush()
    return rows


class Statements:
    """Counts the statements a session sends while it is active."""

    def __init__(self, session: AsyncSession) -> None:
        self.count = 0
        self._engine = session.bind.engine.sync_engine  # type: ignore[union-attr]

    def _count(self, *_args: Any) -> None:
        self.count += 1

    def __enter__(self) -> Self:
        sa_event.listen(self._engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *_exc: object) -> None:
        sa_event.remove(self._engine, "before_cursor_execute", self._count)


HIDDEN_FILTERS = [
    {"password_hash__startswith": "$2b"},
    {"password_hash__like": "$2b%"},
    {"password_hash__gt": "$2a"},
    {"password_hash": "$2b$12$aaaa"},
    {"password_hash__in": "$2b$12$aaaa"},
    {"password_hash__is_null": "false"},
]
HIDDEN_SORTS = ["password_hash", "-password_hash", ["name", "-password_hash"]]


def _calls(repo: BaseRepository[Any], **kwargs: Any) -> list[Any]:
    """Every read that takes untrusted input, with *kwargs* (filters and/or order_by)."""
    filters_only = {k: v for k, v in kwargs.items() if k == "filters"}
    calls = [repo.search(limit=5, **kwargs), repo.paginate(limit=5, **kwargs)]
    calls.append(repo.list(**kwargs))
    if filters_only:
        calls += [repo.count(**filters_only), repo.exists(**filters_only)]
    return calls


@pytest.mark.parametrize("filters", HIDDEN_FILTERS)
async def test_unset_filter_whitelist_is_a_configuration_error(accounts, session, filters):
    """With filterable_fields unset, any named field is refused before any SQL is sent."""
    repo = UnsetAccounts(session)
    with Statements(session) as sent:
        for call in _calls(repo, filters=filters):
            with pytest.raises(ConfigurationError) as info:
                await call
            assert "UnsetAccounts.filterable_fields is not set" in str(info.value)
            assert "ALL_COLUMNS" in str(info.value)
        with pytest.raises(ConfigurationError):
            [row async for row in repo.stream(filters=filters)]
    assert sent.count == 0


@pytest.mark.parametrize("order_by", HIDDEN_SORTS)
async def test_unset_sort_whitelist_is_a_configuration_error(accounts, session, order_by):
    """With sortable_fields unset, a sort field name is refused before any SQL is sent."""
    repo = UnsetAccounts(session)
    with Statements(session) as sent:
        for call in _calls(repo, order_by=order_by):
            with pytest.raises(ConfigurationError) as info:
                await call
            assert "UnsetAccounts.sortable_fields is not set" in str(info.value)
    assert sent.count == 0


async def test_unset_whitelists_keep_trusted_input(accounts, session):
    """Empty filters, *where, **eq, expressions and the default order need no whitelist."""
    repo = UnsetAccounts(session)
    assert len(await repo.list(filters={})) == 2
    assert len((await repo.search(filters=None, order_by="", limit=5)).items) == 2
    assert [a.name for a in await repo.list(Account.password_hash.startswith("$2b"))] == ["Ada"]
    assert [a.name for a in await repo.list(name="Bob")] == ["Bob"]
    found = await repo.paginate(order_by=[Account.password_hash.desc()], limit=5)
    assert [a.name for a in found.items] == ["Bob", "Ada"]


@pytest.mark.parametrize("filters", HIDDEN_FILTERS)
async def test_hidden_column_cannot_be_filtered(accounts, session, filters):
    """A column missing from the whitelist is refused like a column that does not exist."""
    repo = PublicAccounts(session)
    with Statements(session) as sent:
        for call in _calls(repo, filters=filters):
            with pytest.raises(InvalidFilterError) as info:
                await call
            assert info.value.detail["field"] == "password_hash"
            assert info.value.detail["reason"] == "unknown_field"
            assert "$2" not in str(info.value)
    assert sent.count == 0


@pytest.mark.parametrize("order_by", HIDDEN_SORTS)
async def test_hidden_column_cannot_be_sorted(accounts, session, order_by):
    """Sorting by a hidden column (an ordering oracle) is refused before any SQL is sent."""
    repo = PublicAccounts(session)
    with Statements(session) as sent:
        for call in _calls(repo, order_by=order_by):
            with pytest.raises(InvalidFilterError) as info:
                await call
            assert info.value.detail["reason"] == "not_sortable"
    assert sent.count == 0


async def test_per_field_operators(accounts, session):
    """Listed operators answer; any other operator on the field is refused, naming both."""
    repo = PublicAccounts(session)
    assert [a.name for a in await repo.list(filters={"email__iexact": "ADA@X.ORG"})] == ["Ada"]
    assert [a.name for a in await repo.list(filters={"name__icontains": "O"})] == ["Bob"]
    page = await repo.paginate(filters={"email": "bob@x.org"}, order_by="-name", limit=5)
    assert [a.name for a in page.items] == ["Bob"]
    with Statements(session) as sent:
        for filters in ({"email__startswith": "a"}, {"name__ne": "Ada"}, {"email__gt": "a"}):
            with pytest.raises(InvalidFilterError) as info:
                await repo.search(filters=filters, limit=5)
            field, _, op = next(iter(filters)).partition("__")
            assert (info.value.detail["field"], info.value.detail["operator"]) == (field, op)
            assert info.value.detail["reason"] == "operator_not_allowed"
    assert sent.count == 0


async def test_all_columns_is_an_explicit_opt_in(accounts, session):
    """ALL_COLUMNS opens every column, the secret one included: the developer's choice."""
    repo = OpenAccounts(session)
    found = await repo.list(filters={"password_hash__startswith": "$2b"}, order_by="password_hash")
    assert [a.name for a in found] == ["Ada"]


async def test_relationship_path_whitelist(session, users):
    """A path with its own operator list: listed operators answer, others are refused."""

    class Posts(BaseRepository[Post]):
        filterable_fields: ClassVar = {"author.name": ("eq", "iexact"), "title": ("eq",)}
        sortable_fields = ALL_COLUMNS

    alice = await session.get(User, users["alice"].id)
    session.add_all([Post(title="one", author=alice), Post(title="two")])
    await session.flush()
    repo = Posts(session)
    found = await repo.list(filters={"author.name__iexact": "ALICE"}, order_by="title")
    assert [p.title for p in found] == ["one"]
    with pytest.raises(InvalidFilterError) as info:
        await repo.list(filters={"author.name__contains": "A"})
    assert info.value.detail["reason"] == "operator_not_allowed"
    with pytest.raises(InvalidFilterError) as info:
        await repo.list(filters={"author.email": "alice@example.org"})
    assert info.value.detail["reason"] == "unknown_field"
