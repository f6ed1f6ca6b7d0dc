"""Execution of the repository's set-based writes (bulk INSERT, UPDATE, DELETE, upsert).

These statements bypass the unit of work. Statement shapes come from
:mod:`sqla_repo._statements` and :mod:`sqla_repo._upsert`; this module runs them in
batches and maps the returned rows back to the caller's input order. The rows are
prepared by :mod:`sqla_repo._row_prep`; the single-row writes run on a synchronous
``Session`` live in :mod:`sqla_repo._statement_writes`.
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, func, insert, select, tuple_, update
from sqlalchemy.orm import lazyload

from sqla_repo import _io, _joined
from sqla_repo._hooks import INCLUDE_DELETED
from sqla_repo._new_objects import record_new
from sqla_repo._row_prep import (
    batches,
    chunks,
    conflict_keys,
    first_rows,
    group_rows,
    match_folded,
    merge_by_key,
)
from sqla_repo._statement_writes import (
    bulk_update_statement,
    delete_statement,
    plain_params,
    reread_statement,
    table_insert,
    table_params,
    update_statement,
)
from sqla_repo._statements import ModelInfo, guard_criteria
from sqla_repo._upsert import binds_after_values, update_keys, upsert_statement
from sqla_repo.exceptions import ConflictError, RepositoryError
from sqla_repo.types import utcnow

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from sqlalchemy.engine import Dialect
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "bulk_update",
    "connected_dialect",
    "delete_where",
    "get_or_insert",
    "insert_many",
    "insert_returning",
    "refresh_loaded",
    "update_returning",
    "update_where",
    "upsert",
    "utcnow",
]


async def connected_dialect(session: AsyncSession, info: ModelInfo) -> Dialect:
    """Return the dialect of the session's connection for *info*'s model.

    Capabilities such as ``insert_returning`` depend on the server version and are known
    only once the engine's first connection has initialised the dialect.
    """
    conn = await session.connection(bind_arguments={"mapper": info.mapper})
    return conn.dialect


async def insert_returning(
    session: AsyncSession,
    info: ModelInfo,
    groups: Sequence[Sequence[dict[str, Any]]],
    indexes: Sequence[Sequence[int]],
    *,
    batch_size: int | None,
    dialect: str,
    loaded: list[Any],
) -> list[Any]:
    """Insert rows with multi-row ``INSERT … RETURNING``; return objects in input order.

    The ORM batches only consecutive rows with the same keys, so the rows come grouped
    by key set (*groups*, each at the input positions *indexes* of
    [`group_indexes()`][sqla_repo._row_prep.group_indexes]): one multi-row INSERT per
    group, the objects put back in input order afterwards. ``None`` values are sent as
    NULL (``render_nulls``) rather than dropped, which would split a group by which
    columns happen to be ``None``. Each batch's objects are appended to *loaded* as they
    arrive, for the caller to forget if the write fails.
    """
    out: list[Any] = [None] * sum(map(len, groups))
    for group, positions in zip(groups, indexes, strict=True):
        objs = await _insert_uniform(session, info, group, batch_size, dialect, loaded)
        if len(objs) != len(group):  # the ORM loaded rows that share an identity as one
            msg = "rows share their mapped primary key, which the table does not enforce"
            raise RepositoryError(msg, model=info.model, detail={"reason": "duplicate_identity"})
        if len(groups) == 1:
            out = objs
        else:
            for index, obj in zip(positions, objs, strict=True):
                out[index] = obj
    await _io.run_sync(session, record_new, out)
    return out


async def insert_many(
    session: AsyncSession,
    info: ModelInfo,
    rows: Sequence[dict[str, Any]],
    *,
    batch_size: int | None,
) -> int:
    """Insert *rows* with ORM bulk ``INSERT`` (executemany, no ``RETURNING``).

    Column defaults, the version's first value and the hooks' tenant check apply as for
    every ORM ``INSERT``; no object is built or added to the session. Rows are grouped by
    key set; with no *batch_size* each group is one ``execute()`` (the driver's
    executemany, or SQLAlchemy's insertmanyvalues, splits it).
    """
    if info.insert_statement_ok:
        # One table and nothing the ORM statement would add but the version: the
        # table's own INSERT costs about half as much Python per row.
        stmt: Any = table_insert(info)
        bind: dict[str, Any] | None = {"mapper": info.mapper}
        params = rows if plain_params(info) else [table_params(info, row) for row in rows]
    else:
        stmt = insert(info.model).execution_options(render_nulls=True)
        bind = None
        params = rows
    for group in group_rows(params):
        for batch in batches(group, batch_size):
            await session.execute(stmt, batch, bind_arguments=bind)
    return len(rows)


async def _insert_uniform(  # noqa: PLR0917 - private, called once
    session: AsyncSession,
    info: ModelInfo,
    rows: Sequence[dict[str, Any]],
    batch_size: int | None,
    dialect: str,
    loaded: list[Any],
) -> list[Any]:
    """Insert rows with the same keys; append each batch's objects to *loaded* too."""
    out: list[Any] = []
    if not (await connected_dialect(session, info)).insert_returning:
        # MySQL has no INSERT … RETURNING: let the unit of work insert row by row, reading
        # each generated key back.
        objs = [info.model(**row) for row in rows]
        session.add_all(objs)
        await session.flush()
        return objs
    sortable_by_key = (
        dialect == "sqlite" and info.single_int_autoincrement_pk and info.pk_keys[0] not in rows[0]
    )
    if sortable_by_key:
        # SQLite's RETURNING order is unspecified, and SQLAlchemy's sort_by_parameter_order
        # falls back to one INSERT per row for integer keys. Within one connection the
        # rowids of uniform rows are assigned in VALUES order, so sorting by the key
        # restores input order while keeping the multi-row INSERT.
        stmt = insert(info.model).returning(info.model).execution_options(render_nulls=True)
        by_key = attrgetter(info.pk_keys[0])
        for batch in batches(rows, batch_size):
            objs = list((await session.execute(stmt, batch)).scalars().unique().all())
            loaded.extend(objs)
            objs.sort(key=by_key)
            out.extend(objs)
        return out
    stmt = (
        insert(info.model)
        .returning(info.model, sort_by_parameter_order=True)
        .execution_options(render_nulls=True)
    )
    for batch in batches(rows, batch_size):
        returned = (await session.execute(stmt, batch)).scalars().unique().all()
        loaded.extend(returned)
        out.extend(returned)
    return out


async def update_returning(
    session: AsyncSession,
    info: ModelInfo,
    criterion: ColumnElement[bool],
    values: Mapping[str, Any],
    *,
    update_returning: bool,
    include_deleted: bool = False,
    identity: ColumnElement[bool] | None = None,
) -> Any:
    """Run one ``UPDATE`` and return the updated object (``None`` when nothing matched).

    Without ``UPDATE … RETURNING`` the row is read back by *identity* (default:
    *criterion*), which must still match after the update. A joined subclass is updated
    table by table (see :mod:`sqla_repo._joined`).
    """
    if info.joined:
        return await _joined.update_one(
            session, info, criterion, values, include_deleted=include_deleted
        )
    stmt = update_statement(
        info, criterion, values, include_deleted=include_deleted, returning=update_returning
    )
    if update_returning:
        return (await session.execute(stmt)).scalars().unique().one_or_none()
    result = await session.execute(stmt)
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    reread = reread_statement(info, criterion if identity is None else identity)
    return (await session.scalars(reread)).unique().one_or_none()


async def update_where(
    session: AsyncSession,
    info: ModelInfo,
    where: Iterable[ColumnElement[bool]],
    values: Mapping[str, Any],
    include_deleted: bool,  # noqa: FBT001
) -> int:
    """Run ``UPDATE … WHERE``; return the number of rows matched."""
    if info.joined:
        split = _joined.split_values(info, values)
        keys = await _joined.target_keys(session, info, where, include_deleted=include_deleted)
        await _joined.update_keys(session, info, keys, split, include_deleted=include_deleted)
        await refresh_loaded(session, info, keys)
        return len(keys)
    stmt = (
        update(info.model)
        .where(*where, *guard_criteria(info, include_deleted=include_deleted))
        .values(values)
        .execution_options(**{INCLUDE_DELETED: include_deleted})
    )
    result = await session.execute(stmt)
    # "evaluate" synchronisation cannot compute SQL expressions such as version + 1 and
    # expires them instead: reading them later would need lazy IO (MissingGreenlet).
    expired = [
        state.identity
        for state in session.identity_map.all_states()
        if isinstance(state.obj(), info.model)
        and state.identity is not None
        and state.expired_attributes
        and not state.expired
    ]
    await refresh_loaded(session, info, expired)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def delete_where(
    session: AsyncSession,
    info: ModelInfo,
    where: Iterable[ColumnElement[bool]],
    include_deleted: bool,  # noqa: FBT001
) -> int:
    """Run ``DELETE … WHERE``; return the number of rows deleted.

    Where the class's rows may span several tables (joined-table inheritance, on the
    class or a subclass), the whole polymorphic row is deleted from every table.
    """
    if len(info.delete_tables) > 1:
        keys = await _joined.target_keys(session, info, where, include_deleted=include_deleted)
        await _joined.delete_keys(session, info, keys, include_deleted=include_deleted)
        return len(keys)
    # The scope is written into the statement, not left to the session hooks alone.
    stmt = delete_statement(info, where, include_deleted)
    result = await session.execute(stmt)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def bulk_update(
    session: AsyncSession,
    info: ModelInfo,
    rows: Sequence[Mapping[str, Any]],
    *,
    include_deleted: bool,
) -> int:
    """Update rows by primary key with one executemany per set of columns."""
    merged, groups = merge_by_key(info, rows)
    idents = list(merged)
    if not idents:
        return 0
    if info.joined:
        total = await _joined.bulk_update(session, info, merged, include_deleted=include_deleted)
        await refresh_loaded(session, info, idents)
        return total
    dialect = await connected_dialect(session, info)
    bind = {"mapper": info.mapper}
    matched: int | None = None
    if not dialect.supports_sane_multi_rowcount:
        # The driver cannot count executemany rows (asyncpg): count the visible targets.
        pk = tuple_(*info.pk_columns) if len(info.pk_columns) > 1 else info.pk_columns[0]
        keys_in = idents if len(info.pk_columns) > 1 else [i[0] for i in idents]
        counter = select(func.count()).where(
            pk.in_(keys_in), *guard_criteria(info, include_deleted=include_deleted)
        )
        matched = int(await session.scalar(counter, bind_arguments=bind) or 0)
    total = 0
    for keys, group in groups.items():
        stmt = bulk_update_statement(info, keys, include_deleted=include_deleted)
        result = await session.execute(stmt, group, bind_arguments=bind)
        total += max(int(result.rowcount), 0)  # type: ignore[attr-defined]
    await refresh_loaded(session, info, idents)
    return matched if matched is not None else total


async def refresh_loaded(
    session: AsyncSession, info: ModelInfo, idents: Iterable[tuple[Any, ...]]
) -> None:
    """Reload the objects of *idents* that are in the session, one ``SELECT`` per 500.

    Core statements leave loaded objects stale; reloading them rather than expiring
    them spares lazy IO (an expired attribute would need it).
    """
    identity_map = session.identity_map
    loaded = [
        ident
        for ident in idents
        if info.mapper.identity_key_from_primary_key(ident) in identity_map
    ]
    if not loaded:
        return
    composite = len(info.pk_attrs) > 1
    target = tuple_(*info.pk_attrs) if composite else info.pk_attrs[0]
    for start in range(0, len(loaded), 500):
        chunk = loaded[start : start + 500]
        stmt = select(info.model).where(target.in_(chunk if composite else [i[0] for i in chunk]))
        opts = {"populate_existing": True, INCLUDE_DELETED: True}
        # Consumed: a sync Session loads the rows only as they are fetched.
        (await session.scalars(stmt.execution_options(**opts))).unique().all()


async def _read_back(
    session: AsyncSession,
    info: ModelInfo,
    conflict_on: Sequence[str],
    wanted: Sequence[tuple[Any, ...]],
    batch_size: int,
    *,
    loaded: list[Any],
) -> dict[tuple[Any, ...], Any]:
    """Select the visible rows whose *conflict_on* values are in *wanted* (to *loaded* too)."""
    attrs = [getattr(info.model, k) for k in conflict_on]
    target = tuple_(*attrs) if len(attrs) > 1 else attrs[0]
    found: dict[tuple[Any, ...], Any] = {}
    for start in range(0, len(wanted), batch_size):
        chunk = wanted[start : start + batch_size]
        values = chunk if len(attrs) > 1 else [w[0] for w in chunk]
        # A locking read sees the latest committed row: under REPEATABLE READ a plain
        # read misses a row committed after the snapshot that the upsert left unchanged.
        stmt = select(info.model).where(target.in_(values)).with_for_update(read=True)
        # No eager JOIN under the lock: PostgreSQL refuses FOR SHARE on the nullable side
        # of an outer join. The repository loads the relationships afterwards.
        stmt = stmt.options(lazyload("*")).execution_options(populate_existing=True)
        objs = (await session.scalars(stmt)).all()
        loaded.extend(objs)
        for obj in objs:
            found[tuple(getattr(obj, k) for k in conflict_on)] = obj
    return found


async def _read_back_by_key(
    session: AsyncSession,
    info: ModelInfo,
    conflict_on: Sequence[str],
    wanted: Sequence[tuple[Any, ...]],
    batch_size: int,
    *,
    loaded: list[Any],
) -> dict[tuple[Any, ...], Any]:
    """Like :func:`_read_back`, for MySQL/MariaDB, without scanning under a lock.

    InnoDB may read a small table's ``IN`` list by a full scan, and a locking scan waits
    for the rows concurrent inserters hold while they wait for this transaction's keys: a
    deadlock. A plain read finds the rows this transaction's snapshot can see; each key
    it misses (committed by another transaction since the snapshot) is then read with a
    locking equality lookup, which touches that key's index entry only.
    """
    attrs = [getattr(info.model, k) for k in conflict_on]
    target = tuple_(*attrs) if len(attrs) > 1 else attrs[0]
    found: dict[tuple[Any, ...], Any] = {}
    for start in range(0, len(wanted), batch_size):
        chunk = wanted[start : start + batch_size]
        values = chunk if len(attrs) > 1 else [w[0] for w in chunk]
        stmt = select(info.model).where(target.in_(values)).options(lazyload("*"))
        objs = (await session.scalars(stmt)).all()
        loaded.extend(objs)
        for obj in objs:
            found[tuple(getattr(obj, k) for k in conflict_on)] = obj
    match_folded(found, wanted)
    for key in [w for w in wanted if w not in found]:
        stmt = (
            select(info.model)
            .where(*(attr == value for attr, value in zip(attrs, key, strict=True)))
            .options(lazyload("*"))
            .with_for_update(read=True)
            .execution_options(populate_existing=True)
        )
        objs = (await session.scalars(stmt)).all()
        loaded.extend(objs)
        for obj in objs:
            found[tuple(getattr(obj, k) for k in conflict_on)] = obj
    return found


async def get_or_insert(
    session: AsyncSession,
    info: ModelInfo,
    rows: Sequence[dict[str, Any]],
    *,
    conflict_on: Sequence[str],
    batch_size: int,
    dialect: str,
    loaded: list[Any],
) -> list[Any]:
    """Insert the rows whose *conflict_on* key is not taken; return every key's row in order.

    Existing rows are left exactly as they are (``ON CONFLICT DO NOTHING``; on
    MySQL/MariaDB ``ON DUPLICATE KEY UPDATE key = key``, a no-op that, unlike
    ``INSERT IGNORE``, keeps other errors errors). The distinct keys are inserted in
    sorted order, so concurrent callers lock them in the same order whatever order they
    list them in, and cannot deadlock on each other. The rows are then read back with a
    locking ``SELECT`` (which sees rows committed by concurrent callers even under
    REPEATABLE READ).
    """
    # Dialect packages are imported on first use: each costs tens of ms at import time.
    from sqlalchemy.dialects import postgresql, sqlite  # noqa: PLC0415

    _joined.refuse_joined_upsert(info)
    rows, wanted = conflict_keys(info, rows, conflict_on, duplicates=True)
    first, ordered = first_rows(info, rows, wanted, conflict_on)
    columns = [info.columns[k] for k in conflict_on]
    if dialect in {"postgresql", "sqlite"}:
        module: Any = postgresql if dialect == "postgresql" else sqlite
        stmt = module.insert(info.model).on_conflict_do_nothing(index_elements=columns)
    else:
        stmt = upsert_statement(dialect, info, conflict_on, [])
    # Rows with different key sets are sent separately, each group still in key order.
    for group in group_rows(ordered):
        for batch in chunks(group, batch_size):
            await session.execute(stmt, batch)
    if dialect in {"postgresql", "sqlite"}:
        found = await _read_back(session, info, conflict_on, list(first), batch_size, loaded=loaded)
    else:
        found = await _read_back_by_key(
            session, info, conflict_on, list(first), batch_size, loaded=loaded
        )
        match_folded(found, wanted)
    if any(w not in found for w in wanted):
        # The key is taken by a row this call may not see: soft-deleted or another tenant's.
        raise ConflictError(model=info.model, detail={"fields": list(conflict_on)})
    return [found[w] for w in wanted]


async def upsert(
    session: AsyncSession,
    info: ModelInfo,
    rows: Sequence[dict[str, Any]],
    *,
    conflict_on: Sequence[str],
    update: Sequence[str] | None,
    batch_size: int,
    dialect: str,
    loaded: list[Any],
) -> list[Any]:
    """Run the portable upsert; return resulting objects in input order (to *loaded* too)."""
    _joined.refuse_joined_upsert(info)
    rows, wanted = conflict_keys(info, rows, conflict_on)
    keys = update_keys(info, rows, conflict_on, update)
    stmt = upsert_statement(dialect, info, conflict_on, keys)
    if dialect in {"postgresql", "sqlite"}:
        stmt = stmt.returning(info.model).execution_options(populate_existing=True)
        found: dict[tuple[Any, ...], Any] = {}
        for batch in chunks(rows, batch_size):
            objs = (await session.execute(stmt, batch)).scalars().unique().all()
            loaded.extend(objs)
            for obj in objs:
                found[tuple(getattr(obj, k) for k in conflict_on)] = obj
    else:
        one_by_one = binds_after_values(info)
        for batch in chunks(rows, batch_size):
            if one_by_one:
                for row in batch:
                    await session.execute(stmt, [row])
            else:
                await session.execute(stmt, batch)
        found = await _read_back(session, info, conflict_on, wanted, batch_size, loaded=loaded)
        match_folded(found, wanted)
    if any(w not in found for w in wanted):
        # The conflicting row exists but is soft-deleted or another tenant's.
        raise ConflictError(model=info.model, detail={"fields": list(conflict_on)})
    return [found[w] for w in wanted]
