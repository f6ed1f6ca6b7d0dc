"""Session hooks behind soft delete and tenant scoping.

One mechanism serves both: a ``do_orm_execute`` listener adds
:func:`~sqlalchemy.orm.with_loader_criteria` options to ORM SELECT, UPDATE and DELETE
statements, so the criteria reach every place the entity appears (top-level FROM,
joins' ON clauses, relationship loads, ``any()``/``has()``, aliases). A
``before_flush`` listener checks the tenant of rows written through the unit of work and
of the rows their foreign keys reference (see ``sqla_repo._references``).

The listeners are registered once, on the ``Session`` class, the first time a model
using ``SoftDeleteMixin`` or ``TenantMixin`` is declared; until then they cost nothing.
Per-request values (the tenant id) are closure variables of the criteria lambda, which
SQLAlchemy turns into bound parameters, so the cached SQL is shared across tenants.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import sqlalchemy
from sqlalchemy import ColumnElement, event, false
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, UOWTransaction, with_loader_criteria

from sqla_repo import _references
from sqla_repo.context import tenant_scope
from sqla_repo.exceptions import TenantMismatchError, TenantRequiredError
from sqla_repo.mixins.soft_delete import SoftDeleteMixin
from sqla_repo.mixins.tenant import TenantMixin

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["INCLUDE_DELETED", "NEEDS_EXPLICIT_EXISTS_CRITERIA", "entity_criteria", "register"]

INCLUDE_DELETED = "include_deleted"
"""The execution option that lifts the soft-delete criteria for one statement."""

NEEDS_EXPLICIT_EXISTS_CRITERIA = sqlalchemy.__version__.startswith("2.0.")
"""SQLAlchemy 2.0 leaves loader criteria out of the EXISTS that ``any()``/``has()`` build."""

_lock = threading.Lock()
_enabled = {"soft_delete": False, "tenant": False, "listeners": False}

_NOT_DELETED = with_loader_criteria(
    SoftDeleteMixin,
    lambda cls: cls.deleted_at.is_(None),
    include_aliases=True,
)
# No tenant set and not all_tenants(): a tenant entity reached only through a join or a
# relationship load matches nothing. Top-level use is refused outright instead.
_NO_TENANT = with_loader_criteria(TenantMixin, lambda _cls: false(), include_aliases=True)


def register(*, soft_delete: bool = False, tenant: bool = False) -> None:
    """Enable the hooks for the given mixins, registering the listeners once."""
    with _lock:
        _enabled["soft_delete"] |= soft_delete
        _enabled["tenant"] |= tenant
        if not _enabled["listeners"]:
            event.listen(Session, "do_orm_execute", _on_execute)
            event.listen(Session, "before_flush", _on_before_flush)
            # New mappers, relationships or backrefs change what a write can reference.
            event.listen(Mapper, "after_configured", _references.forget)
            _enabled["listeners"] = True


def entity_criteria(cls: type[Any]) -> list[ColumnElement[bool]]:
    """The criteria the hooks would add for *cls*, as plain expressions.

    For places the ``with_loader_criteria`` options do not reach (the EXISTS of
    ``any()``/``has()`` on SQLAlchemy 2.0).
    """
    out: list[ColumnElement[bool]] = []
    if issubclass(cls, SoftDeleteMixin):
        out.append(cls.deleted_at.is_(None))
    if issubclass(cls, TenantMixin):
        scope = tenant_scope()
        if not scope.all_tenants:
            out.append(false() if scope.tenant is None else cls.tenant_id == scope.tenant)
    return out


def _tenant_mapper(mappers: Iterable[Any]) -> type[Any] | None:
    for mapper in mappers:
        if issubclass(mapper.class_, TenantMixin):
            return mapper.class_  # type: ignore[no-any-return]
    return None


def _on_execute(state: ORMExecuteState) -> None:
    # Column loads refresh attributes of an object already loaded (expired attributes,
    # session.refresh): the identity is known, so filtering could only break them.
    if state.is_column_load:
        return
    is_insert = state.is_insert
    if not (state.is_select or state.is_update or state.is_delete or is_insert):
        return
    options: list[Any] = []
    if (
        _enabled["soft_delete"]
        and not is_insert
        and not state.execution_options.get(INCLUDE_DELETED, False)
    ):
        options.append(_NOT_DELETED)
    if _enabled["tenant"]:
        tenant_option = _tenant_option(state)
        if tenant_option is not None:
            options.append(tenant_option)
    if options and not is_insert:
        state.statement = state.statement.options(*options)


def _tenant_option(state: ORMExecuteState) -> Any:
    """Return the tenant criteria option for *state*, or raise when no tenant is set."""
    scope = tenant_scope()
    if scope.all_tenants:
        return None
    if scope.tenant is None:
        mappers = [*state.all_mappers]
        if state.bind_mapper is not None:
            mappers.append(state.bind_mapper)  # select(func.count()).select_from(M)
        model = _tenant_mapper(mappers)
        if model is not None:
            raise TenantRequiredError(model=model)
        return _NO_TENANT
    if state.is_insert:
        _check_insert_parameters(state, scope.tenant)
        return None
    tenant_id = scope.tenant
    return with_loader_criteria(
        TenantMixin, lambda cls: cls.tenant_id == tenant_id, include_aliases=True
    )


def _check_insert_parameters(state: ORMExecuteState, tenant_id: str) -> None:
    model = _tenant_mapper(state.all_mappers)
    if model is None:
        return
    params = state.parameters
    rows: Iterable[Any] = params if isinstance(params, list) else [params or {}]
    for row in rows:
        value = row.get("tenant_id")
        if value is not None and value != tenant_id:
            raise TenantMismatchError(model=model)


def _on_before_flush(session: Session, _ctx: UOWTransaction, instances: object) -> None:
    if not _enabled["tenant"]:
        return
    scope = tenant_scope()
    written = (*session.new, *session.dirty)
    for obj in (*written, *session.deleted):
        if not isinstance(obj, TenantMixin):
            continue
        model = type(obj)
        current: str | None = obj.tenant_id
        if scope.all_tenants:
            if current is None:
                raise TenantRequiredError(
                    "Rows written inside all_tenants() need an explicit tenant_id.", model=model
                )
            continue
        if scope.tenant is None:
            raise TenantRequiredError(model=model)
        if _moved_from_elsewhere(obj, scope.tenant):
            raise TenantMismatchError(model=model)
        if current is None:
            obj.tenant_id = scope.tenant
        elif current != scope.tenant:
            raise TenantMismatchError(model=model)
    flushed = session.new if instances is None else instances
    _references.check_objects(session, written, flushed)  # type: ignore[arg-type]


def _moved_from_elsewhere(obj: object, tenant_id: str | None) -> bool:
    """Whether a loaded row of another tenant is being given the current tenant's id."""
    before = sa_inspect(obj).attrs.tenant_id.history.deleted
    return any(value is not None and value != tenant_id for value in before)
