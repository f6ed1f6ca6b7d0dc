"""PostgreSQL row-level security: a database-enforced second layer of tenant isolation.

The session hooks of [`TenantMixin`][sqla_repo.mixins.TenantMixin] scope ORM statements.
This module adds policies that the database itself enforces, so textual SQL, Core
statements on ``Table`` objects and other clients using the application's role are
confined to the current tenant too:

```python
from sqla_repo import rls

rls.install(Base.metadata)  # before metadata.create_all(); a no-op off PostgreSQL
```

Which tables get a policy:

- the table of every mapped [`TenantMixin`][sqla_repo.mixins.TenantMixin] model whose
  ``tenant_id`` column lives in it: ``tenant_id`` must equal the transaction's setting
  ``sqla_repo.tenant``;
- the own table of a joined-table subclass of such a model (it has no ``tenant_id``):
  a row is visible and writable when its row in the parent table is, checked with an
  ``EXISTS`` on the parent table, which is itself subject to its policy.

Tables of other models, Core tables and association (``secondary``) tables get none.

Every transaction a session runs on PostgreSQL starts with one statement that copies the
tenant context into transaction-local settings (``set_config(..., true)``), so the value
never outlives the transaction and is safe behind PgBouncer's transaction pooling.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from sqlalchemy import DDL, Table, event, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, SessionTransaction
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.elements import BinaryExpression, ColumnClause

from sqla_repo.context import TenantScope, tenant_scope
from sqla_repo.exceptions import ConfigurationError
from sqla_repo.mixins.tenant import TenantMixin

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy import MetaData
    from sqlalchemy.engine import Connection

__all__ = [
    "ALL_TENANTS_SETTING",
    "POLICY_NAME",
    "TENANT_SETTING",
    "drop_policy_ddl",
    "install",
    "policy_ddl",
]

TENANT_SETTING: Final = "sqla_repo.tenant"
"""The transaction-local setting that holds the current tenant id ('' when none)."""

ALL_TENANTS_SETTING: Final = "sqla_repo.all_tenants"
"""The transaction-local setting that is ``'on'`` inside ``all_tenants()``."""

POLICY_NAME: Final = "sqla_repo_tenant_isolation"
"""The name of the policy created on each tenant-scoped table."""

_INFO_KEY: Final = "sqla_repo.rls"
_PARENT_ALIAS: Final = "sqla_repo_parent"
_DIALECT: Final = postgresql.dialect()  # type: ignore[no-untyped-call]
_SET_CONFIG: Final = text(
    f"SELECT set_config('{TENANT_SETTING}', :tenant, true), "
    f"set_config('{ALL_TENANTS_SETTING}', :all_tenants, true)"
)

_lock = threading.Lock()


class _Applied(NamedTuple):
    """The scope last written to a connection's settings in the current transaction."""

    scope: TenantScope | None
    """``None`` when unknown (a savepoint that may have reverted it has ended)."""
    in_savepoint: bool
    """Whether it was written inside a savepoint, where a rollback would revert it."""


# root session transaction -> connection -> what its settings hold
_applied: weakref.WeakKeyDictionary[SessionTransaction, dict[Connection, _Applied]] = (
    weakref.WeakKeyDictionary()
)


def install(metadata: MetaData) -> None:
    """Enable row-level security for the tenant-scoped tables of *metadata*.

    Attaches ``after_create`` DDL to each tenant-scoped table (see the module
    documentation for which tables qualify) that enables and forces row-level security
    and creates the [`POLICY_NAME`][sqla_repo.rls.POLICY_NAME] policy, so a later
    ``metadata.create_all()`` on PostgreSQL creates them with the tables. Tables of models
    declared after this call are picked up when ``create_all()`` runs. Existing tables
    are not altered: use [`policy_ddl()`][sqla_repo.rls.policy_ddl] in a migration.

    Also registers, once, the session hooks that copy the tenant context into the
    transaction's settings (on the ``Session`` class, so every session, ``AsyncSession``
    included, gets them). On other backends the DDL is skipped and the hooks do nothing.

    Calling it again for the same metadata registers nothing twice.

    Args:
        metadata: The metadata whose tables should be protected.

    Raises:
        ConfigurationError: When a joined-table subclass table cannot be related to
            its parent table by column equality.
    """
    with _lock:
        _attach(metadata)
        if not event.contains(metadata, "before_create", _before_create):
            event.listen(metadata, "before_create", _before_create)
        _register_session_hooks()


def policy_ddl(table: Table) -> list[str]:
    """Return the statements that protect *table* with row-level security.

    The same statements [`install()`][sqla_repo.rls.install] runs after ``CREATE
    TABLE``, rendered for PostgreSQL whatever the current backend, with identifiers
    quoted and the table schema-qualified when it has a schema. For Alembic::

        for statement in rls.policy_ddl(Document.__table__):
            op.execute(statement)

    Args:
        table: A table with a ``tenant_id`` column, or the own table of a joined-table
            subclass of a [`TenantMixin`][sqla_repo.mixins.TenantMixin] model.

    Returns:
        ``ALTER TABLE … ENABLE ROW LEVEL SECURITY``, ``ALTER TABLE … FORCE ROW LEVEL
        SECURITY`` and ``CREATE POLICY …``, in that order.

    Raises:
        ConfigurationError: When *table* is not tenant-scoped.
    """
    name = _qualified(table)
    condition = _condition(table)
    return [
        f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY",
        (
            f"CREATE POLICY {_quote(POLICY_NAME)} ON {name} "
            f"USING ({condition}) WITH CHECK ({condition})"
        ),
    ]


def drop_policy_ddl(table: Table) -> list[str]:
    """Return the statements that undo [`policy_ddl()`][sqla_repo.rls.policy_ddl].

    For an Alembic ``downgrade()``.

    Args:
        table: A table protected by ``policy_ddl()``.

    Returns:
        ``DROP POLICY IF EXISTS …``, ``ALTER TABLE … NO FORCE ROW LEVEL SECURITY`` and
        ``ALTER TABLE … DISABLE ROW LEVEL SECURITY``.
    """
    name = _qualified(table)
    return [
        f"DROP POLICY IF EXISTS {_quote(POLICY_NAME)} ON {name}",
        f"ALTER TABLE {name} NO FORCE ROW LEVEL SECURITY",
        f"ALTER TABLE {name} DISABLE ROW LEVEL SECURITY",
    ]


# -- which tables, and their conditions -------------------------------------------------


def _quote(name: str) -> str:
    return _DIALECT.identifier_preparer.quote(name)


def _qualified(table: Table) -> str:
    return _DIALECT.identifier_preparer.format_table(table)


def _subclasses(cls: type[Any]) -> Iterator[type[Any]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _tenant_mappers() -> Iterator[Mapper[Any]]:
    for cls in _subclasses(TenantMixin):
        mapper = sa_inspect(cls, raiseerr=False)
        if isinstance(mapper, Mapper):
            yield mapper


def _tenant_tables(metadata: MetaData) -> list[Table]:
    """The tables of *metadata* that hold rows of mapped ``TenantMixin`` models."""
    found: dict[Table, None] = {}
    for mapper in _tenant_mappers():
        table = mapper.local_table
        if isinstance(table, Table) and table.metadata is metadata:
            found[table] = None
    return list(found)


def _child_mapper(table: Table) -> Mapper[Any] | None:
    """The joined-table subclass mapper whose own table is *table*, if any."""
    for mapper in _tenant_mappers():
        parent = mapper.inherits
        if mapper.local_table is table and parent is not None and parent.local_table is not table:
            return mapper
    return None


def _condition(table: Table) -> str:
    if "tenant_id" in table.c:
        return (
            f"{_quote('tenant_id')} = NULLIF(current_setting('{TENANT_SETTING}', true), '') "
            f"OR current_setting('{ALL_TENANTS_SETTING}', true) = 'on'"
        )
    mapper = _child_mapper(table)
    if mapper is None or mapper.inherits is None:
        msg = "This table is not tenant-scoped: it has no tenant_id column."
        raise ConfigurationError(msg, detail={"table": table.name})
    parent = mapper.inherits.local_table
    pairs = _join_pairs(mapper.inherit_condition, table, parent)
    if not pairs or not isinstance(parent, Table):
        msg = "A joined-table subclass table must join its parent table on column equality."
        raise ConfigurationError(msg, model=mapper.class_, detail={"table": table.name})
    own = _quote(table.name)
    alias = _quote(_PARENT_ALIAS)
    where = " AND ".join(f"{alias}.{_quote(p.name)} = {own}.{_quote(c.name)}" for c, p in pairs)
    # Identifiers only, each quoted by the PostgreSQL identifier preparer: no values.
    return f"EXISTS (SELECT 1 FROM {_qualified(parent)} AS {alias} WHERE {where})"  # noqa: S608


def _join_pairs(
    condition: Any, table: Table, parent: Any
) -> list[tuple[ColumnClause[Any], ColumnClause[Any]]]:
    """(own column, parent column) pairs of an inherit condition made of equalities."""
    pairs: list[tuple[ColumnClause[Any], ColumnClause[Any]]] = []
    for element in visitors.iterate(condition):
        if not isinstance(element, BinaryExpression):
            continue
        left, right = element.left, element.right
        if element.operator is not operators.eq:
            return []
        if not (isinstance(left, ColumnClause) and isinstance(right, ColumnClause)):
            return []
        if left.table is parent and right.table is table:
            left, right = right, left
        if not (left.table is table and right.table is parent):
            return []
        pairs.append((left, right))
    return pairs


def _attach(metadata: MetaData) -> None:
    for table in _tenant_tables(metadata):
        if table.info.get(_INFO_KEY):
            continue
        for statement in policy_ddl(table):
            ddl = DDL(statement.replace("%", "%%"))  # type: ignore[no-untyped-call]
            ddl = ddl.execute_if(dialect="postgresql")
            event.listen(table, "after_create", ddl)
        table.info[_INFO_KEY] = True


def _before_create(metadata: MetaData, _connection: Connection, **_kw: Any) -> None:
    # Models declared after install(): attach their DDL before their tables are created.
    with _lock:
        _attach(metadata)


# -- the session hooks ------------------------------------------------------------------


def _register_session_hooks() -> None:
    for name, listener in (
        ("after_begin", _after_begin),
        ("do_orm_execute", _on_execute),
        ("before_flush", _before_flush),
        ("after_soft_rollback", _after_soft_rollback),
    ):
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)


def _write(connection: Connection, scope: TenantScope) -> None:
    tenant_id = "" if scope.all_tenants or scope.tenant is None else scope.tenant
    all_tenants = "on" if scope.all_tenants else ""
    connection.execute(_SET_CONFIG, {"tenant": tenant_id, "all_tenants": all_tenants})


def _after_begin(
    _session: Session, transaction: SessionTransaction, connection: Connection
) -> None:
    # A savepoint reuses the connection of the root transaction, set already.
    if transaction.nested or transaction.parent is not None:
        return
    if connection.dialect.name != "postgresql":
        return
    scope = tenant_scope()
    _write(connection, scope)
    # Written at the start of the session's own transaction: even when that is a
    # SAVEPOINT inside an external transaction, only its own end can revert it.
    _applied.setdefault(transaction, {})[connection] = _Applied(scope, in_savepoint=False)


def _sync(session: Session) -> None:
    """Rewrite the settings of the session's connections whose scope has changed."""
    root = session.get_transaction()
    applied = _applied.get(root) if root is not None else None
    if not applied:
        return
    scope = tenant_scope()
    in_savepoint = session.in_nested_transaction()
    for connection, state in applied.items():
        if state.scope != scope:
            _write(connection, scope)
            applied[connection] = _Applied(scope, in_savepoint=in_savepoint)


def _on_execute(state: ORMExecuteState) -> None:
    _sync(state.session)


def _before_flush(session: Session, _ctx: object, _instances: object) -> None:
    _sync(session)


def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
    if not previous.nested:
        return
    # A rolled-back SAVEPOINT reverts settings written inside it: write them again
    # before the next statement. A released one keeps them.
    root = session.get_transaction()
    applied = _applied.get(root) if root is not None else None
    if applied:
        for connection, state in applied.items():
            if state.in_savepoint:
                applied[connection] = _Applied(None, in_savepoint=False)
