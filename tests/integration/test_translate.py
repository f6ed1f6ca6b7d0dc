"""Real integrity violations on every backend become the most specific sqla_repo error."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Index, String, UniqueConstraint, delete, func, insert, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import backends
from models import Post, Product, User
from reliability.support import FAULT_SQL
from repositories import PostRepository, ProductRepository
from sqla_repo import (
    CheckViolationError,
    ConflictError,
    ForeignKeyViolationError,
    InvalidValueError,
    NaiveDatetimeError,
    NotNullViolationError,
    StatementTimeoutError,
    UniqueViolationError,
)
from sqla_repo._translate import translate_errors

PRODUCTS = Product.metadata.tables["products"]  # Core inserts skip the ORM
FK = "fk_posts_author_id_users"
CHECK = "ck_products_price_non_negative"

# The constraint name each backend reports, per violation. PostgreSQL reports every name
# in a structured field; MySQL/MariaDB name it in the message of unique, foreign-key and
# check violations (the primary key is always "PRIMARY"); SQLite names only CHECK
# constraints (and unique indexes on expressions), and a unique violation's columns.
# No backend names a constraint for NOT NULL; all report the column.
REPORTED: dict[str, dict[str, str | None]] = {
    "postgresql": {
        "unique_email": "uq_users_email",
        "unique_sku": "uq_products_sku",
        "primary_key": "pk_products",
        "missing_parent": FK,
        "parent_still_referenced": FK,
        "check": CHECK,
    },
    "mariadb": {
        "unique_email": "uq_users_email",
        "unique_sku": "uq_products_sku",
        "primary_key": "PRIMARY",
        "missing_parent": FK,
        "parent_still_referenced": FK,
        "check": CHECK,
    },
    "sqlite": {
        "unique_email": None,
        "unique_sku": None,
        "primary_key": None,
        "missing_parent": None,
        "parent_still_referenced": None,
        "check": CHECK,
    },
}
# MariaDB reports a violated CHECK as an OperationalError (errno 4025).
CHECK_RAISED_AS: dict[str, type[sa_exc.DBAPIError]] = {
    "postgresql": sa_exc.IntegrityError,
    "mariadb": sa_exc.OperationalError,
    "sqlite": sa_exc.IntegrityError,
}

Action = Callable[[AsyncSession], Awaitable[Any]]


async def _flush(session: AsyncSession, *objects: object) -> None:
    session.add_all(objects)
    await session.flush()


async def _user(session: AsyncSession, email: str = "taken@example.org") -> User:
    user = User(email=email)
    await _flush(session, user)
    return user


async def _user_with_post(session: AsyncSession) -> None:
    user = await _user(session, "author@example.org")
    await _flush(session, Post(title="first", author_id=user.id))


async def _delete_author(session: AsyncSession) -> None:
    author_id = await session.scalar(select(User.id).where(User.email == "author@example.org"))
    await session.execute(delete(User).where(User.id == author_id))


@dataclass(frozen=True)
class Violation:
    name: str
    model: type[Any]
    expected: type[ConflictError]
    setup: Action | None
    violate: Action
    column: str | None = None
    leak: str | None = None  # a bound value that must not appear in the error


VIOLATIONS = [
    Violation(
        "unique_email",
        User,
        UniqueViolationError,
        _user,
        lambda s: _flush(s, User(email="taken@example.org")),
        leak="taken@example.org",
    ),
    Violation(
        "unique_sku",
        Product,
        UniqueViolationError,
        lambda s: _flush(s, Product(sku="SKU-1", price=Decimal(1))),
        lambda s: _flush(s, Product(sku="SKU-1", price=Decimal(2))),
        leak="SKU-1",
    ),
    Violation(
        "primary_key",
        Product,
        UniqueViolationError,
        lambda s: _flush(s, Product(id=424242, sku="SKU-A")),
        lambda s: s.execute(insert(PRODUCTS).values(id=424242, sku="SKU-B")),
        leak="SKU-B",
    ),
    Violation(
        "missing_parent",
        Post,
        ForeignKeyViolationError,
        None,
        lambda s: _flush(s, Post(title="orphan", author_id=987654)),
        leak="orphan",
    ),
    Violation(
        "parent_still_referenced",
        User,
        ForeignKeyViolationError,
        _user_with_post,
        _delete_author,
    ),
    Violation(
        "not_null_core",
        Product,
        NotNullViolationError,
        None,
        lambda s: s.execute(insert(PRODUCTS).values(sku=None, price=Decimal(5))),
        column="sku",
    ),
    Violation(
        "not_null_orm",
        Product,
        NotNullViolationError,
        None,
        lambda s: _flush(s, Product(sku=None, price=Decimal(5))),
        column="sku",
    ),
    Violation(
        "check",
        Product,
        CheckViolationError,
        None,
        lambda s: _flush(s, Product(sku="NEG-1", price=Decimal("-1.50"))),
        leak="NEG-1",
    ),
]


async def _attempt(session: AsyncSession, model: type[Any], action: Action) -> None:
    """Run *action* in a savepoint, translating its errors for *model*."""
    async with session.begin_nested():
        with translate_errors(model):
            await action(session)


def _expected_constraint(backend: backends.Backend, violation: Violation) -> str | None:
    return REPORTED[backend.name].get(violation.name)


@pytest.mark.parametrize("violation", VIOLATIONS, ids=[v.name for v in VIOLATIONS])
async def test_violation(
    session: AsyncSession, backend: backends.Backend, violation: Violation
) -> None:
    """Each violation raises its most specific class, naming what the backend reports."""
    if violation.setup is not None:
        await violation.setup(session)
    before = await session.scalar(select(func.count()).select_from(violation.model))

    with pytest.raises(ConflictError) as info:
        await _attempt(session, violation.model, violation.violate)

    error = info.value
    assert type(error) is violation.expected
    assert error.constraint == _expected_constraint(backend, violation)
    assert error.column == violation.column
    assert error.model is violation.model
    assert error.detail["model"] == violation.model.__name__
    assert isinstance(error.__cause__, sa_exc.DBAPIError)
    for shown in (str(error), repr(error), str(error.detail)):
        assert "INSERT" not in shown
        assert "DELETE" not in shown
        if violation.leak is not None:
            assert violation.leak not in shown

    # The savepoint was rolled back; the session and the earlier rows are intact.
    assert await session.scalar(select(func.count()).select_from(violation.model)) == before
    await _flush(session, User(email="after@example.org"))
    assert await session.scalar(select(User.id).where(User.email == "after@example.org"))


async def test_check_error_class(session: AsyncSession, backend: backends.Backend) -> None:
    """A CHECK violation is an IntegrityError, except on MariaDB (OperationalError 4025)."""
    with pytest.raises(CheckViolationError) as info:
        await _attempt(
            session, Product, lambda s: _flush(s, Product(sku="NEG-2", price=Decimal(-1)))
        )
    assert type(info.value.__cause__) is CHECK_RAISED_AS[backend.name]


async def test_unchained_flush_error_is_sqlalchemys(session: AsyncSession) -> None:
    """Outside translate_errors() the flush raises SQLAlchemy's IntegrityError unchanged."""
    await _user(session)
    with pytest.raises(sa_exc.IntegrityError):
        async with session.begin_nested():
            await _flush(session, User(email="taken@example.org"))
    assert await session.scalar(select(func.count()).select_from(User)) == 1


async def test_several_violations_in_a_row(session: AsyncSession) -> None:
    """The session survives one translated violation after another."""
    await _user(session)
    for _ in range(3):
        with pytest.raises(UniqueViolationError):
            await _attempt(session, User, lambda s: _flush(s, User(email="taken@example.org")))
    with pytest.raises(ForeignKeyViolationError):
        await _attempt(session, Post, lambda s: _flush(s, Post(title="orphan", author_id=987654)))
    users = (await session.scalars(select(User.email))).all()
    assert users == ["taken@example.org"]


async def test_non_integrity_error_passes_through(session: AsyncSession) -> None:
    """A database error that is no integrity violation is re-raised as it is."""
    with pytest.raises(sa_exc.DBAPIError) as info:
        await _attempt(session, Product, lambda s: s.execute(select(func.no_such_function_xyz())))
    assert not isinstance(info.value, sa_exc.IntegrityError)
    assert await session.scalar(select(func.count()).select_from(Product)) == 0


# -- naive datetimes: NaiveDatetimeError itself, on every read and write path ---------------

NAIVE = dt.datetime(2024, 5, 1, 7)  # noqa: DTZ001 - the value under test
LEAKS = ("SELECT", "INSERT", "UPDATE", "DELETE", "posts", "2024-05-01")


async def _drain(rows: AsyncIterator[Any]) -> None:
    async for _ in rows:
        pass


READS: dict[str, Callable[[PostRepository], Awaitable[Any]]] = {
    "list": lambda repo: repo.list(Post.created_at < NAIVE),
    "get_one_or_none": lambda repo: repo.get_one_or_none(Post.created_at < NAIVE),
    "count": lambda repo: repo.count(Post.created_at < NAIVE),
    "exists": lambda repo: repo.exists(Post.created_at < NAIVE),
    "search": lambda repo: repo.search(Post.created_at < NAIVE),
    "paginate": lambda repo: repo.paginate(Post.created_at < NAIVE),
    "stream": lambda repo: _drain(repo.stream(Post.created_at < NAIVE)),
}


def _writes(post: Post) -> dict[str, Callable[[PostRepository], Awaitable[Any]]]:
    other = {"title": "other", "created_at": NAIVE}
    return {
        "create": lambda repo: repo.create({"title": "t", "created_at": NAIVE}),
        "create_instance": lambda repo: repo.create(Post(title="t", created_at=NAIVE)),
        "update_instance": lambda repo: repo.update(post, created_at=NAIVE),
        "update_by_id": lambda repo: repo.update(post.id, created_at=NAIVE),
        "update_where_value": lambda repo: repo.update_where(
            Post.id == post.id, values={"created_at": NAIVE}
        ),
        "update_where_condition": lambda repo: repo.update_where(
            Post.created_at < NAIVE, values={"title": "x"}
        ),
        "delete_where": lambda repo: repo.delete_where(Post.created_at < NAIVE),
        "bulk_create": lambda repo: repo.bulk_create([{"title": "t", "created_at": NAIVE}]),
        "bulk_update": lambda repo: repo.bulk_update([{"id": post.id, "created_at": NAIVE}]),
        "upsert": lambda repo: repo.upsert(
            {"id": post.id, "title": "t", "created_at": NAIVE}, conflict_on=["id"]
        ),
        "bulk_upsert": lambda repo: repo.bulk_upsert(
            [{"id": post.id, **other}], conflict_on=["id"]
        ),
    }


def _check_naive(error: NaiveDatetimeError) -> None:
    assert type(error) is NaiveDatetimeError
    assert isinstance(error, InvalidValueError)
    assert isinstance(error.__cause__, sa_exc.StatementError)
    assert error.detail["reason"] == "naive_datetime"
    for leak in LEAKS:
        assert leak not in str(error)


@pytest.mark.parametrize("read", sorted(READS))
async def test_naive_datetime_in_a_read(session: AsyncSession, read: str) -> None:
    """A read comparing a UTCDateTime column with a naive value raises NaiveDatetimeError."""
    repo = PostRepository(session)
    await repo.create({"title": "kept"})
    with pytest.raises(NaiveDatetimeError) as info:
        await READS[read](repo)
    _check_naive(info.value)
    # Refused while binding, before the database saw the statement: the transaction lives.
    assert await repo.count() == 1


@pytest.mark.parametrize("write", sorted(_writes(Post())))
async def test_naive_datetime_in_a_write(session: AsyncSession, write: str) -> None:
    """Every write path raises NaiveDatetimeError itself; the transaction goes on."""
    repo = PostRepository(session)
    post = await repo.create({"title": "kept"})
    with pytest.raises(NaiveDatetimeError) as info:
        await _writes(post)[write](repo)
    _check_naive(info.value)
    assert await repo.count() == 1
    assert (await repo.get_by_id(post.id)).title == "kept"


# -- statement timeouts ----------------------------------------------------------------------


def _timeouts(backend: backends.Backend) -> Any:
    sql = FAULT_SQL.get(backend.name)
    if sql is None:
        pytest.skip(f"{backend.name} has no statement timeout")
    return sql


async def _set_timeout(session: AsyncSession, sql: Any, ms: int) -> None:
    await session.execute(text(sql.statement_timeout.format(ms=ms, seconds=ms / 1000)))


async def test_statement_timeout_in_a_read(
    session: AsyncSession, backend: backends.Backend
) -> None:
    """A read cancelled by the statement timeout raises StatementTimeoutError, fast."""
    sql = _timeouts(backend)
    repo = ProductRepository(session)
    await repo.create({"sku": "slow"})
    await _set_timeout(session, sql, 50)
    try:
        started = time.perf_counter()
        with pytest.raises(StatementTimeoutError) as info:
            await repo.list(text(sql.sleep.format(seconds=2.0)))
        assert time.perf_counter() - started < 1.5
        error = info.value
        assert isinstance(error.__cause__, sa_exc.DBAPIError)
        assert error.detail == {"model": "Product", "reason": "statement_timeout"}
        assert "SELECT" not in str(error)
        assert "sleep" not in str(error).lower()
        if backend.name == "postgresql":
            # PostgreSQL aborted the transaction: nothing runs until it is rolled back.
            with pytest.raises(sa_exc.DBAPIError):
                await repo.count()
            await session.rollback()
        else:
            # MariaDB cancelled the statement only: the transaction goes on.
            assert await repo.count() == 1
    finally:
        await _set_timeout(session, sql, 0)


async def test_statement_timeout_in_a_write(
    session: AsyncSession, backend: backends.Backend
) -> None:
    """A write cancelled by the statement timeout: StatementTimeoutError; the transaction goes on.

    On PostgreSQL the write ran inside a SAVEPOINT, which is rolled back.
    """
    sql = _timeouts(backend)
    repo = ProductRepository(session)
    await repo.create({"sku": "kept"})
    await _set_timeout(session, sql, 50)
    try:
        with pytest.raises(StatementTimeoutError):
            await repo.update_where(
                text(sql.sleep.format(seconds=2.0)), values={"price": Decimal(1)}
            )
        await _set_timeout(session, sql, 0)
        assert [p.price for p in await repo.list()] == [Decimal(0)]
    finally:
        await _set_timeout(session, sql, 0)


async def test_statement_timeout_through_fastapi_is_503() -> None:
    """The FastAPI handlers answer a statement timeout with 503, and a naive datetime 422."""
    fastapi_errors = pytest.importorskip("sqla_repo.ext._fastapi_errors")
    assert fastapi_errors.status_code_for(StatementTimeoutError()) == 503
    assert fastapi_errors.status_code_for(NaiveDatetimeError("naive")) == 422


# -- SQLite names a unique violation's columns (or its index) in the message ------------------

UNIQUE_COLUMNS: dict[str, list[str]] = {
    "unique_email": ["email"],
    "unique_sku": ["sku"],
    "primary_key": ["id"],
}


@pytest.mark.parametrize("violation", VIOLATIONS[:3], ids=[v.name for v in VIOLATIONS[:3]])
async def test_unique_violation_columns(
    session: AsyncSession, backend: backends.Backend, violation: Violation
) -> None:
    """SQLite's columns go to ``detail["columns"]``; PostgreSQL and MariaDB name the constraint."""
    assert violation.setup is not None
    await violation.setup(session)
    with pytest.raises(UniqueViolationError) as info:
        await _attempt(session, violation.model, violation.violate)
    error = info.value
    if backend.name == "sqlite":
        assert error.detail["columns"] == UNIQUE_COLUMNS[violation.name]
        assert error.constraint is None
    else:
        assert "columns" not in error.detail
        assert error.constraint == _expected_constraint(backend, violation)
    assert error.column is None


class PairsBase(DeclarativeBase):
    pass


class Pair(PairsBase):
    """Its own metadata: a composite unique constraint and, off MariaDB, an expression index."""

    __tablename__ = "unique_pairs"
    __table_args__ = (UniqueConstraint("a", "b", name="uq_unique_pairs_a_b"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    a: Mapped[str] = mapped_column(String(20))
    b: Mapped[str] = mapped_column(String(20))
    label: Mapped[str] = mapped_column(String(20))


LOWER_LABEL = Index("uq_unique_pairs_lower_label", func.lower(Pair.label), unique=True)
Pair.__table__.indexes.discard(LOWER_LABEL)  # created by the fixture, where supported


@pytest_asyncio.fixture
async def pairs(engine: AsyncEngine, backend: backends.Backend) -> AsyncIterator[None]:
    """The table, made before the session and dropped after it (SQLite's locks)."""
    async with engine.begin() as conn:
        await conn.run_sync(PairsBase.metadata.drop_all)
        await conn.run_sync(PairsBase.metadata.create_all)
        if backend.name != "mariadb":  # MariaDB has no index on an expression
            await conn.run_sync(LOWER_LABEL.create)
    yield
    async with engine.begin() as conn:
        await conn.run_sync(PairsBase.metadata.drop_all)


async def test_composite_unique_columns(
    pairs: None, session: AsyncSession, backend: backends.Backend
) -> None:
    """Every column of a composite unique constraint is named, in order, on SQLite."""
    await _flush(session, Pair(a="x", b="y", label="one"))
    with pytest.raises(UniqueViolationError) as info:
        await _attempt(session, Pair, lambda s: _flush(s, Pair(a="x", b="y", label="two")))
    error = info.value
    if backend.name == "sqlite":
        assert (error.constraint, error.detail["columns"]) == (None, ["a", "b"])
    else:
        assert error.constraint == "uq_unique_pairs_a_b"
        assert "columns" not in error.detail
    assert "x" not in str(error.detail)


async def test_expression_index_name(
    pairs: None, session: AsyncSession, backend: backends.Backend
) -> None:
    """A unique index on an expression is named as the constraint (SQLite and PostgreSQL)."""
    if backend.name == "mariadb":
        pytest.skip("MariaDB has no index on an expression")
    await _flush(session, Pair(a="1", b="1", label="Same"))
    with pytest.raises(UniqueViolationError) as info:
        await _attempt(session, Pair, lambda s: _flush(s, Pair(a="2", b="2", label="SAME")))
    error = info.value
    assert error.constraint == "uq_unique_pairs_lower_label"
    assert error.detail["constraint"] == "uq_unique_pairs_lower_label"
    assert "columns" not in error.detail
    assert "Same" not in str(error.detail)
    assert "SAME" not in str(error)
