"""Set-based writes on joined-table inheritance: one row of the class spans several tables.

A single ``UPDATE``/``DELETE`` of a joined subclass cannot be written portably (SQLite has
no multi-table ``DELETE``, MariaDB's multi-table ``UPDATE`` has no ``RETURNING``, and the
criteria on a base table need the inherit condition). Every path here therefore takes two
steps:

1. the keys of the target rows are read with one scoped, locking ``SELECT`` of the
   mapped class (``FOR UPDATE`` where the backend has it): tenant, soft-delete and
   single-table criteria are written into it explicitly;
2. each table is then changed by primary key, subclass tables first, every statement
   carrying its own tenant/soft-delete criteria (on a table that does not hold them, a
   correlated ``EXISTS`` over the inherit conditions).

Each table gets the values of its own columns; ``onupdate`` columns (``updated_at``,
``updated_by``) and the version counter are maintained on the table that holds them.
A delete removes the row from every table of the hierarchy, so no base row is left
behind whatever the foreign keys' ``ON DELETE`` says.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Table, and_, bindparam, delete, exists, or_, select, update
from sqlalchemy.sql.expression import ClauseElement, ColumnClause, TableClause
from sqlalchemy.sql.visitors import iterate, replacement_traverse

from sqla_repo._hooks import INCLUDE_DELETED
from sqla_repo.context import tenant_scope
from sqla_repo.exceptions import RepositoryError, TenantRequiredError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Mapper

    from sqla_repo._statements import ModelInfo

_NO_OPTIONS: dict[str, Any] = {}

__all__ = [
    "bulk_update",
    "delete_keys",
    "refuse_joined_upsert",
    "split_values",
    "target_keys",
    "update_keys",
    "update_one",
]

_CHUNK = 500
"""Keys per ``IN`` list (well under every backend's bound-parameter limit)."""

Key = tuple[Any, ...]


def _write_tables(info: ModelInfo) -> list[tuple[Table, Mapper[Any]]]:
    """The tables of the class itself (not of its subclasses), subclass tables first."""
    own = set(info.mapper.tables)
    return [(table, owner) for table, owner in info.delete_tables if table in own]


def _pk_columns(info: ModelInfo, table: Table, owner: Mapper[Any]) -> list[Any]:
    """The columns of *table* that hold the class's primary key, in key order."""
    out = []
    for key in info.pk_keys:
        prop: Any = owner.get_property(key)
        out.append(next(c for c in prop.columns if c.table is table))
    return out


def _key_in(columns: Sequence[Any], keys: Sequence[Key]) -> ColumnElement[bool]:
    if len(columns) == 1:
        return columns[0].in_([k[0] for k in keys])  # type: ignore[no-any-return]
    return or_(*(and_(*(c == v for c, v in zip(columns, k, strict=True))) for k in keys))


def _chunks(keys: Sequence[Key]) -> Iterable[Sequence[Key]]:
    for start in range(0, len(keys), _CHUNK):
        yield keys[start : start + _CHUNK]


def _tenant_id(info: ModelInfo) -> str | None:
    """The tenant every statement is limited to; ``None`` inside ``all_tenants()``."""
    if not info.tenant:
        return None
    scope = tenant_scope()
    if scope.all_tenants:
        return None
    if scope.tenant is None:
        raise TenantRequiredError(model=info.model)
    return scope.tenant


def entity_guard(info: ModelInfo, *, include_deleted: bool) -> list[ColumnElement[bool]]:
    """Tenant, soft-delete and single-table criteria on the mapped class's attributes."""
    out: list[ColumnElement[bool]] = []
    tenant_id = _tenant_id(info)
    if tenant_id is not None:
        out.append(info.columns["tenant_id"] == tenant_id)
    if info.soft_delete and not include_deleted:
        out.append(info.columns["deleted_at"].is_(None))
    if info.single_criterion is not None:
        out.append(info.single_criterion)
    return out


def table_guard(
    info: ModelInfo, table: Table, owner: Mapper[Any], *, include_deleted: bool
) -> list[ColumnElement[bool]]:
    """Criteria for a statement on one *table*, written in that table's terms.

    Criteria on columns of another table of the hierarchy become one correlated
    ``EXISTS`` joined along the inherit conditions (from *owner*, the mapper *table* is
    local to, when it is the class or a subclass; otherwise from the class) up to the
    root.

    Raises:
        RepositoryError: The criteria cannot be tied to *table* (fail closed).
    """
    local: list[ColumnElement[bool]] = []
    remote: list[ColumnElement[bool]] = []
    needed: set[Any] = set()
    for criterion in entity_guard(info, include_deleted=include_deleted):
        tables = {getattr(c, "table", None) for c in _columns(criterion)}
        if tables <= {table}:
            local.append(criterion)
        else:
            remote.append(criterion)
            needed |= tables - {table}
    if not remote:
        return local
    start = owner if owner.isa(info.mapper) else info.mapper
    conditions: list[ColumnElement[bool]] = []
    joined: set[Any] = set()
    for mapper in start.iterate_to_root():
        parent = mapper.inherits
        if parent is None:
            break
        if mapper.local_table is not parent.local_table and mapper.inherit_condition is not None:
            conditions.append(mapper.inherit_condition)
            joined |= {mapper.local_table, parent.local_table}
    if table not in joined or not needed <= joined:
        msg = f"cannot scope a statement on table {table.name} of {info.model.__name__}"
        raise RepositoryError(msg, model=info.model)
    return [*local, exists().where(*conditions, *remote)]


def _columns(criterion: ColumnElement[Any]) -> list[Any]:
    return [e for e in iterate(criterion) if getattr(e, "table", None) is not None]


def _touch(info: ModelInfo, table: Table, has_values: bool) -> dict[Any, Any]:  # noqa: FBT001
    """What an UPDATE of *table* sets besides the caller's values.

    The version counter is incremented where it lives. ``onupdate`` defaults fire by
    themselves once a statement sets anything; a table that gets no value of its own is
    touched by computing its first ``onupdate`` column (the others then follow).
    """
    out: dict[Any, Any] = {}
    version = info.mapper.version_id_col if info.versioned else None
    if version is not None and version.table is table:
        out[version] = version + 1
    if has_values or out:
        return out
    touched = [column for column in table.columns if column.onupdate is not None]
    for column in touched:
        default: Any = column.onupdate
        if getattr(default, "is_scalar", False) or getattr(default, "is_clause_element", False):
            return {column: default.arg}
        if getattr(default, "is_callable", False):
            try:
                return {column: default.arg(None)}  # the mixins' defaults take no context
            except Exception:  # noqa: BLE001, S112 - a default that needs the statement
                continue
    if touched:
        # A no-op assignment of the key: every onupdate default then fires as usual.
        key = next(iter(table.primary_key.columns))
        return {key: key}
    return out


def split_values(info: ModelInfo, values: Mapping[str, Any]) -> dict[Table, dict[Any, Any]]:
    """Spread ``{attribute: value}`` over the tables holding each attribute's columns.

    A SQL expression may read columns of the table it is written to
    (``{"name": Client.name + "!"}``), not of another table of the hierarchy: one
    ``UPDATE`` per table cannot see the others.

    Raises:
        RepositoryError: A value reads a column of another table.
    """
    own = set(info.mapper.tables)
    out: dict[Table, dict[Any, Any]] = {}
    for key, value in values.items():
        if info.versioned and key == "version":
            continue  # managed: incremented per table below
        prop: Any = info.mapper.get_property(key)
        for column in prop.columns:
            if column.table in own:
                out.setdefault(column.table, {})[column] = _local(info, key, value, column.table)
    return out


def _local(info: ModelInfo, key: str, value: Any, table: Table) -> Any:
    """*value* with ORM attributes turned into *table*'s plain columns."""
    if hasattr(value, "__clause_element__"):
        value = value.__clause_element__()  # an attribute such as Client.name
    if not isinstance(value, ClauseElement):
        return value
    foreign: list[str] = []

    def plain(element: Any, **_kw: Any) -> Any:
        if isinstance(element, ColumnClause) and isinstance(element.table, TableClause):
            column = element._deannotate()  # noqa: SLF001 - the table's own column
            if column.table is not table:
                foreign.append(key)
            return column
        return None

    out = replacement_traverse(value, _NO_OPTIONS, plain)
    if foreign:
        msg = (
            f"the value of {key} reads a column of another table of "
            f"{info.model.__name__}'s hierarchy; set it from the object instead"
        )
        raise RepositoryError(msg, model=info.model, detail={"fields": [key]})
    return out


async def target_keys(
    session: AsyncSession,
    info: ModelInfo,
    where: Iterable[ColumnElement[bool]],
    *,
    include_deleted: bool,
) -> list[Key]:
    """Lock and return the keys of the visible rows matching *where*."""
    stmt = (
        select(*info.pk_attrs)
        .where(*where, *entity_guard(info, include_deleted=include_deleted))
        .with_for_update()
        .execution_options(**{INCLUDE_DELETED: include_deleted})
    )
    return [tuple(row) for row in (await session.execute(stmt)).all()]


async def update_keys(
    session: AsyncSession,
    info: ModelInfo,
    keys: Sequence[Key],
    split: Mapping[Table, Mapping[Any, Any]],
    *,
    include_deleted: bool,
) -> None:
    """Write *split* (from :func:`split_values`) to the rows with *keys*.

    One ``UPDATE`` per table (subclass tables first) and chunk of keys.
    """
    if not keys:
        return
    bind = {"mapper": info.mapper}
    for table, owner in _write_tables(info):
        assign = {**split.get(table, {}), **_touch(info, table, table in split)}
        if not assign:
            continue
        guard = table_guard(info, table, owner, include_deleted=include_deleted)
        pk = _pk_columns(info, table, owner)
        for chunk in _chunks(keys):
            stmt = (
                update(table)
                .where(_key_in(pk, chunk), *guard)
                .values(assign)
                .execution_options(**{INCLUDE_DELETED: include_deleted})
            )
            await session.execute(stmt, bind_arguments=bind)


async def reload(session: AsyncSession, info: ModelInfo, keys: Sequence[Key]) -> list[Any]:
    """Select the rows with *keys* again (soft-deleted ones included), refreshing them."""
    out: list[Any] = []
    for chunk in _chunks(keys):
        stmt = (
            select(info.model)
            .where(_key_in(info.pk_attrs, chunk))
            .execution_options(populate_existing=True, **{INCLUDE_DELETED: True})
        )
        out.extend((await session.scalars(stmt)).unique().all())
    return out


async def update_one(
    session: AsyncSession,
    info: ModelInfo,
    criterion: ColumnElement[bool],
    values: Mapping[str, Any],
    *,
    include_deleted: bool,
) -> Any:
    """Update the one visible row matching *criterion*; return it, or ``None``."""
    split = split_values(info, values)
    keys = await target_keys(session, info, (criterion,), include_deleted=include_deleted)
    if not keys:
        return None
    await update_keys(session, info, keys, split, include_deleted=include_deleted)
    found = await reload(session, info, keys)
    return found[0] if found else None


async def bulk_update(
    session: AsyncSession,
    info: ModelInfo,
    rows: Mapping[Key, Mapping[str, Any]],
    *,
    include_deleted: bool,
) -> int:
    """Update rows by key (one executemany per table and column set); return how many."""
    # Keys as the database returns them ("3" -> 3), without the key columns themselves.
    rows = {
        tuple(info.coerce_value(k, v) for k, v in zip(info.pk_keys, ident, strict=True)): {
            k: v for k, v in row.items() if k not in info.pk_keys
        }
        for ident, row in rows.items()
    }
    idents = list(rows)
    visible: set[Key] = set()
    for chunk in _chunks(idents):
        visible.update(
            await target_keys(
                session, info, (_key_in(info.pk_attrs, chunk),), include_deleted=include_deleted
            )
        )
    targets = [ident for ident in idents if ident in visible]
    bind = {"mapper": info.mapper}
    for table, owner in _write_tables(info):
        pk = _pk_columns(info, table, owner)
        guard = table_guard(info, table, owner, include_deleted=include_deleted)
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for ident in targets:
            split = split_values(info, rows[ident]).get(table, {})
            names = tuple(sorted(c.key for c in split))
            params = {f"_pk_{i}": v for i, v in enumerate(ident)}
            params.update({f"_v_{c.key}": v for c, v in split.items()})
            groups.setdefault(names, []).append(params)
        for names, group in groups.items():
            assign: dict[Any, Any] = {table.c[n]: bindparam(f"_v_{n}") for n in names}
            assign.update(_touch(info, table, bool(names)))
            if not assign:
                continue
            stmt = (
                update(table)
                .where(*(c == bindparam(f"_pk_{i}") for i, c in enumerate(pk)), *guard)
                .values(assign)
                .execution_options(**{INCLUDE_DELETED: include_deleted})
            )
            await session.execute(stmt, group, bind_arguments=bind)
    return len(targets)


async def delete_keys(
    session: AsyncSession,
    info: ModelInfo,
    keys: Sequence[Key],
    *,
    include_deleted: bool,
) -> None:
    """Delete the rows with *keys* from every table of the hierarchy, subclass tables first.

    Objects of those rows loaded in the session are expunged, as the session does for
    objects it deletes.
    """
    if not keys:
        return
    bind = {"mapper": info.mapper}
    for table, owner in info.delete_tables:
        guard = table_guard(info, table, owner, include_deleted=include_deleted)
        pk = _pk_columns(info, table, owner)
        for chunk in _chunks(keys):
            stmt = (
                delete(table)
                .where(_key_in(pk, chunk), *guard)
                .execution_options(**{INCLUDE_DELETED: include_deleted})
            )
            await session.execute(stmt, bind_arguments=bind)
    identity_map = session.identity_map
    for ident in keys:
        obj = identity_map.get(info.mapper.identity_key_from_primary_key(ident))
        if obj is not None:
            session.expunge(obj)


def refuse_joined_upsert(info: ModelInfo) -> None:
    """Refuse an upsert on a class whose rows span several tables.

    ``ON CONFLICT``/``ON DUPLICATE KEY`` applies to one table: on a joined subclass the
    conflicting base row would be updated or left while its subclass row is not.
    """
    if info.joined:
        msg = (
            f"upsert is not supported on {info.model.__name__}: its rows span several "
            "tables (joined-table inheritance); use get_or_create() or update()"
        )
        raise RepositoryError(msg, model=info.model, detail={"reason": "joined_inheritance"})
