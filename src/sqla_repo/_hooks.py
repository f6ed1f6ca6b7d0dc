"""Session hooks behind soft delete and tenant scoping.

One mechanism serves both: a ``do_orm_execute`` listener adds
:func:`~sqlalchemy.orm.with_loader_criteria` options to ORM SELECT, UPDATE and DELETE
statements, so the criteria reach every place the entity appears (top-level FROM,
joins' ON clauses, relationship loads, ``any()``/``has()``, aliases). A
``before_flush`` listener checks the tenant of rows written through the unit of work and
of the rows their foreign keys reference (see ``sqla_repo._references``).

Loader criteria do not reach every statement form: ``sqla_repo._scoping`` finds tenant
tables anywhere in a statement, checks the ``tenant_id`` it writes, correlates joined
subclasses with their base tables, scopes ORM bulk UPDATE by primary key and Core
UPDATE/DELETE, and refuses what it cannot prove scoped (INSERT … FROM SELECT, unguarded
upserts, Core statements naming scoped models through ORM attributes).

The listeners are registered once, on the ``Session`` class, the first time a model
using ``SoftDeleteMixin`` or ``TenantMixin`` is declared (or ``context.install()`` is
called); until then they cost nothing. The mixins do not import this module: they enable
the hooks in ``sqla_repo._registry``, to which this module hands its installer when it is
imported, so whichever happens first, the listeners are in place before any statement.
Per-request values (the tenant id) are closure variables of the criteria lambda, which
SQLAlchemy turns into bound parameters, so the cached SQL is shared across tenants.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy
from sqlalchemy import ColumnElement, event, false
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, UOWTransaction, with_loader_criteria

from sqla_repo import _references, _registry, _scoping
from sqla_repo._plain_tables import RELATIONSHIP_LOAD
from sqla_repo._registry import ENABLED
from sqla_repo.context import TenantScope, tenant_scope
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
    _registry.enable(soft_delete=soft_delete, tenant=tenant)


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
        return  # text() and other statements: out of reach (see the docs)
    scope = tenant_scope()
    if (
        state.parameters
        and ENABLED["tenant"]
        and not scope.all_tenants
        and _scoping.overrides_criteria(state.parameters)
    ):
        model = state.bind_mapper.class_ if state.bind_mapper is not None else None
        msg = "An execution parameter would replace a bound value of the tenant criteria."
        raise _scoping.unscoped(model, msg)
    if is_insert:
        _check_insert(state, scope)
        return
    soft = ENABLED["soft_delete"] and not state.execution_options.get(INCLUDE_DELETED, False)
    if not state.is_orm_statement:
        _scope_core(state, scope, soft=soft)
        return
    _scope_orm(state, scope, soft=soft)


def _scope_orm(state: ORMExecuteState, scope: TenantScope, *, soft: bool) -> None:
    """Add the soft-delete and tenant criteria to an ORM SELECT, UPDATE or DELETE."""
    options: list[Any] = [_NOT_DELETED] if soft else []
    tenant_id: str | None = None
    no_tenant = False
    if ENABLED["tenant"] and not scope.all_tenants:
        tenant_id = scope.tenant
        if tenant_id is None:
            no_tenant = True
            _require_tenant(state)
            options.append(_NO_TENANT)
        else:
            options.append(_tenant_criteria(tenant_id))
    statement = state.statement
    if state.is_update or state.is_delete:
        statement = _scope_orm_dml(state, tenant_id, soft=soft, no_tenant=no_tenant)
    if options:
        statement = statement.options(*options)
    if tenant_id is not None and state.is_relationship_load:
        # The ORM's own load may read a tenant table as a relationship's ``secondary``.
        statement = statement.execution_options(**{RELATIONSHIP_LOAD: True})
    elif statement._execution_options.get(RELATIONSHIP_LOAD):  # noqa: SLF001
        # Only the hooks say what is a relationship load: the application cannot.
        statement = statement.execution_options(**{RELATIONSHIP_LOAD: False})
    state.statement = statement


def _tenant_criteria(tenant_id: str) -> Any:
    return with_loader_criteria(
        TenantMixin, lambda cls: cls.tenant_id == tenant_id, include_aliases=True
    )


def _require_tenant(state: ORMExecuteState) -> None:
    """Raise when a statement run with no tenant set reads or writes a tenant model."""
    mappers = [*state.all_mappers]
    if state.bind_mapper is not None:
        mappers.append(state.bind_mapper)  # select(func.count()).select_from(M)
    model = _tenant_mapper(mappers) or _scoping.required_tenant_model(state.statement)
    if model is not None:
        raise TenantRequiredError(model=model)


def _scope_orm_dml(
    state: ORMExecuteState, tenant_id: str | None, *, soft: bool, no_tenant: bool
) -> Any:
    """Check and complete an ORM UPDATE or DELETE beyond what loader criteria do."""
    statement: Any = state.statement
    mapper = state.bind_mapper
    if mapper is None:
        return statement
    extra = _scoping.extra_from_criteria(
        statement,
        set(mapper.tables),
        tenant_id=tenant_id,
        no_tenant=no_tenant,
        soft=soft,
    )
    if extra:
        statement = statement.where(*extra)
    cls = mapper.class_
    tenant_model = tenant_id is not None and issubclass(cls, TenantMixin)
    if state.is_update and tenant_id is not None and tenant_model:
        _scoping.check_written_tenant(statement, state.parameters, tenant_id, cls, allow_none=False)
    if state.is_update and isinstance(state.parameters, list):
        # ORM bulk UPDATE by primary key ignores loader criteria: give it explicit WHERE
        # criteria. SQLAlchemy cannot synchronise loaded objects for such a statement.
        criteria = _scoping.bulk_criteria(mapper, tenant_id, soft=soft)
        if criteria:
            statement = statement.where(*criteria).execution_options(synchronize_session=False)
    if mapper.inherits is None:
        return statement
    criteria_tables = []
    if tenant_model:
        criteria_tables.append(_scoping.tenant_column_table(mapper, "tenant_id"))
    if soft and issubclass(cls, SoftDeleteMixin):
        criteria_tables.append(_scoping.tenant_column_table(mapper, "deleted_at"))
    dialect = state.session.get_bind(mapper=mapper).dialect.name
    return _scoping.correlate_inherited(
        statement, mapper, [t for t in criteria_tables if t is not None], dialect
    )


def _scope_core(state: ORMExecuteState, scope: TenantScope, *, soft: bool) -> None:
    """Scope a Core SELECT, UPDATE or DELETE (on ``Table`` objects) run through a session."""
    statement: Any = state.statement
    tenant_on = ENABLED["tenant"] and not scope.all_tenants
    if tenant_on and scope.tenant is None:
        model = _scoping.required_tenant_model(statement)
        if model is not None:
            raise TenantRequiredError(model=model)
        return
    model = _scoping.unfiltered_orm_model(statement, tenant=tenant_on, soft_delete=soft)
    if model is not None:
        msg = (
            "A Core statement reaches a scoped model where no criteria apply (through its "
            "attributes, or a data-modifying CTE); select an ORM entity or attribute at "
            "the top level instead, and run writes as statements of their own."
        )
        raise _scoping.unscoped(model, msg)
    if not tenant_on or state.is_select or scope.tenant is None:
        return  # Core SELECTs of Table objects are not scoped (see the docs)
    table = _scoping.table_of(statement.table)
    # Tables read beside the target (UPDATE … FROM): soft delete is an ORM notion.
    extra = _scoping.extra_from_criteria(
        statement,
        {table} if table is not None else set(),
        tenant_id=scope.tenant,
        no_tenant=False,
        soft=False,
    )
    if extra:
        statement = statement.where(*extra)
        state.statement = statement
    mapper = _scoping.tenant_tables().get(table)  # type: ignore[arg-type]
    if table is None or mapper is None:
        return
    model = mapper.class_
    if state.is_update:
        _scoping.check_written_tenant(
            statement, state.parameters, scope.tenant, model, allow_none=False
        )
    criterion = _scoping.core_criteria(table, scope.tenant)
    if criterion is None:
        msg = "This statement on a tenant-scoped table cannot be scoped to the tenant."
        raise _scoping.unscoped(model, msg)
    state.statement = statement.where(criterion)


def _check_insert(state: ORMExecuteState, scope: TenantScope) -> None:
    """Check the tenant an INSERT writes; refuse INSERTs fed by SELECTs of scoped models."""
    statement: Any = state.statement
    if ENABLED["tenant"] and not scope.all_tenants and scope.tenant is None:
        required = _scoping.required_tenant_model(statement)
        if required is not None:
            raise TenantRequiredError(model=required)
    if not scope.all_tenants:
        source = _scoping.insert_source_model(statement)
        if source is not None:
            msg = (
                "An INSERT fed by a SELECT of a tenant-scoped or soft-delete model "
                "is only allowed inside all_tenants()."
            )
            raise _scoping.unscoped(source, msg)
    if ENABLED["tenant"] and not scope.all_tenants and scope.tenant is not None:
        _check_inserted_tenant(state, scope.tenant)
    soft = ENABLED["soft_delete"] and not state.execution_options.get(INCLUDE_DELETED, False)
    target = state.bind_mapper or _scoping.scoped_mapper(_scoping.table_of(statement.table))
    if target is not None and (soft or (ENABLED["tenant"] and not scope.all_tenants)):
        tenant_id = None if scope.all_tenants else scope.tenant
        _scoping.check_conflict_branch(
            statement, target.class_, tenant_id, soft=soft, params=state.parameters
        )


def _check_inserted_tenant(state: ORMExecuteState, tenant_id: str) -> None:
    """Refuse an INSERT that names another tenant (or cannot be checked)."""
    statement: Any = state.statement
    table = _scoping.table_of(statement.table)
    mapper = _scoping.tenant_tables().get(table)  # type: ignore[arg-type]
    if table is None or mapper is None:
        return
    if state.is_orm_statement and state.bind_mapper is not None:
        mapper = state.bind_mapper
    elif "tenant_id" not in table.c:
        msg = "A Core INSERT into a joined subclass table cannot be scoped to the tenant."
        raise _scoping.unscoped(mapper.class_, msg)
    _scoping.check_written_tenant(
        statement, state.parameters, tenant_id, mapper.class_, allow_none=True
    )


def _on_before_flush(session: Session, _ctx: UOWTransaction, instances: object) -> None:
    if not ENABLED["tenant"]:
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


def _install_listeners() -> None:
    """Register the listeners on the ``Session`` and ``Mapper`` classes (called once)."""
    event.listen(Session, "do_orm_execute", _on_execute)
    event.listen(Session, "before_flush", _on_before_flush)
    # New mappers, relationships or backrefs change what a write can reference.
    event.listen(Mapper, "after_configured", _references.forget)
    event.listen(Mapper, "after_configured", _scoping.forget)


# Installs the listeners now if a mixin model was declared before this module was imported.
_registry.set_installer(_install_listeners)
