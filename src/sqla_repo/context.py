"""Who is acting and for which tenant: context for audit stamping and tenant scoping.

Values live in `contextvars`, so each ``asyncio`` task (and each thread) sees its
own: two concurrent requests never stamp each other's actor or read each other's rows.

Example:
    ```python
    with actor("alice"), tenant("acme"):
        await repo.create({"title": "hello"})  # created_by="alice", tenant_id="acme"
    ```
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, NamedTuple

from sqla_repo._registry import enable

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "actor",
    "all_tenants",
    "current_actor",
    "current_tenant",
    "install",
    "is_all_tenants",
    "set_actor",
    "set_tenant",
    "tenant",
]

_actor: ContextVar[str | None] = ContextVar("sqla_repo_actor", default=None)
_tenant: ContextVar[str | None] = ContextVar("sqla_repo_tenant", default=None)
_all_tenants: ContextVar[bool] = ContextVar("sqla_repo_all_tenants", default=False)


class TenantScope(NamedTuple):
    """The tenant scope in force: a tenant id, every tenant, or neither (refused)."""

    tenant: str | None
    all_tenants: bool


def current_actor() -> str | None:
    """Return the actor set for the current context, or ``None``."""
    return _actor.get()


def current_tenant() -> str | None:
    """Return the tenant set for the current context, or ``None``."""
    return _tenant.get()


def is_all_tenants() -> bool:
    """Return whether the current context opted out of tenant scoping with ``all_tenants()``."""
    return _all_tenants.get()


def tenant_scope() -> TenantScope:
    """Return the tenant scope of the current context."""
    return TenantScope(_tenant.get(), _all_tenants.get())


def set_actor(value: str | None) -> Token[str | None]:
    """Set the actor for the rest of the current context; return a token to reset it."""
    return _actor.set(value)


def set_tenant(value: str | None) -> Token[str | None]:
    """Set the tenant for the rest of the current context; return a token to reset it."""
    if value is not None and not value:
        msg = "a tenant id must be a non-empty string"
        raise ValueError(msg)
    return _tenant.set(value)


@contextmanager
def actor(value: str | None) -> Iterator[None]:
    """Stamp ``created_by``/``updated_by`` with *value* inside the block."""
    token = _actor.set(value)
    try:
        yield
    finally:
        _actor.reset(token)


@contextmanager
def tenant(value: str) -> Iterator[None]:
    """Scope every ORM statement on tenant models to *value* inside the block.

    Inside the block an enclosing ``all_tenants()`` no longer applies.
    """
    token = set_tenant(value)
    all_token = _all_tenants.set(False)
    try:
        yield
    finally:
        _all_tenants.reset(all_token)
        _tenant.reset(token)


@contextmanager
def all_tenants() -> Iterator[None]:
    """Lift tenant scoping inside the block: statements see and write every tenant's rows.

    For administration jobs and migrations only; it is the explicit opt-out of the
    deny-by-default rule.
    """
    token = _all_tenants.set(True)
    tenant_token = _tenant.set(None)
    try:
        yield
    finally:
        _tenant.reset(tenant_token)
        _all_tenants.reset(token)


def install(target: Any = None) -> None:
    """Make sure the session hooks are registered.

    The hooks (soft-delete and tenant criteria, audit and tenant stamping) are registered
    once on SQLAlchemy's `Session` class as soon as a model using a mixin
    is mapped, so every session sees them, including a plain ``AsyncSession`` from your
    own sessionmaker. Calling ``install()`` is therefore optional; it accepts a session,
    a sessionmaker or a ``Session`` class for symmetry with other libraries and registers
    the hooks if no mixin model was mapped yet.
    """
    del target
    enable()
