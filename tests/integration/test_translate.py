"""Real integrity violations on every backend become the most specific sqla_repo error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

import backends
from models import Post, Product, User
from sqla_repo import (
    CheckViolationError,
    ConflictError,
    ForeignKeyViolationError,
    NotNullViolationError,
    UniqueViolationError,
)
from sqla_repo._translate import translate_errors

PRODUCTS = Product.metadata.tables["products"]  # Core inserts skip the ORM
FK = "fk_posts_author_id_users"
CHECK = "ck_products_price_non_negative"

# The constraint name each backend reports, per violation. PostgreSQL reports every name
# in a structured field; MySQL/MariaDB name it in the message of unique, foreign-key and
# check violations (the primary key is always "PRIMARY"); SQLite names only CHECK
# constraints. No backend names a constraint for NOT NULL; all report the column.
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
    for text in (str(error), repr(error), str(error.detail)):
        assert "INSERT" not in text
        assert "DELETE" not in text
        if violation.leak is not None:
            assert violation.leak not in text

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
