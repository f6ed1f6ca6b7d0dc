"""Writes made of statements only, run on a synchronous ``Session`` by both flavours.

The async repository runs each of these in one ``run_sync()`` call (one greenlet switch
for the whole write, SAVEPOINT included); the synchronous twin calls them directly. The
statement shapes they share with :mod:`sqla_repo._bulk` are built here too.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, bindparam, delete, insert, select, update
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.base import instance_state

from sqla_repo._coerce import SQL_VALUES
from sqla_repo._hooks import INCLUDE_DELETED
from sqla_repo._new_objects import record_new
from sqla_repo._references import check_rows, tenant_references
from sqla_repo._statements import ModelInfo, guard_criteria, update_values

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from sqlalchemy.orm import Session

__all__ = [
    "bulk_update_statement",
    "delete_one",
    "delete_statement",
    "insert_one",
    "plain_params",
    "reread_statement",
    "table_insert",
    "table_params",
    "table_pk_criterion",
    "update_one",
    "update_statement",
]

T = TypeVar("T")


def update_statement(
    info: ModelInfo,
    criterion: ColumnElement[bool],
    values: Mapping[str, Any],
    *,
    include_deleted: bool,
    returning: bool,
) -> Any:
    """``UPDATE`` the visible rows matching *criterion*, returning them when *returning*."""
    stmt = (
        update(info.model)
        .where(criterion, *guard_criteria(info, include_deleted=include_deleted))
        .values(values)
        .execution_options(synchronize_session=False, **{INCLUDE_DELETED: include_deleted})
    )
    if returning:
        stmt = stmt.returning(info.model).execution_options(populate_existing=True)
    return stmt


def reread_statement(info: ModelInfo, criterion: ColumnElement[bool]) -> Select[Any]:
    """Read the row matching *criterion* again, overwriting what the session holds."""
    return (
        select(info.model)
        .where(criterion)
        .execution_options(populate_existing=True, **{INCLUDE_DELETED: True})
    )


def delete_statement(
    info: ModelInfo,
    where: Iterable[ColumnElement[bool]],
    include_deleted: bool,  # noqa: FBT001
) -> Any:
    """``DELETE`` the visible rows matching *where* (the scope is in the statement)."""
    return (
        delete(info.model)
        .where(*where, *guard_criteria(info, include_deleted=include_deleted))
        .execution_options(**{INCLUDE_DELETED: include_deleted})
    )


def table_pk_criterion(info: ModelInfo, ident: Any) -> ColumnElement[bool]:
    """``pk == ident`` over the table's own key columns, for the table's own statements.

    [`pk_criterion`][sqla_repo._statements.pk_criterion] compares mapped attributes,
    whose ORM annotations make any statement holding them ORM-enabled (a Core ``UPDATE``
    would take SQLAlchemy's ORM bulk path); these columns leave a Core statement Core.
    """
    values = info.identity(ident)
    return and_(*(column == value for column, value in zip(info.pk_columns, values, strict=True)))


def bulk_update_statement(info: ModelInfo, keys: Sequence[str], *, include_deleted: bool) -> Any:
    """Return a Core ``UPDATE`` by primary key for executemany, guard predicates included."""
    table = info.table
    where = [
        column == bindparam(f"_pk_{i}") for i, column in enumerate(info.pk_columns)
    ] + guard_criteria(info, include_deleted=include_deleted)
    values: dict[Any, Any] = {info.columns[k]: bindparam(f"_v_{k}") for k in keys}
    if info.versioned:
        version = info.columns["version"]
        values[version] = version + 1
    return table.update().where(*where).values(values)


_INSERT_ONE: dict[type[Any], tuple[Any, tuple[str, ...], dict[str, str] | None]] = {}
"""Per class: the table's ``INSERT … RETURNING`` every column, the attribute key of each
returned column, and the attribute-to-column key renames (``None`` when there are none)."""


def _insert_parts(info: ModelInfo) -> tuple[Any, tuple[str, ...], dict[str, str] | None]:
    parts = _INSERT_ONE.get(info.model)
    if parts is None:
        table = info.table
        pairs = [
            (prop.key, column)
            for prop in info.mapper.column_attrs
            for column in prop.columns[:1]
            if column.table is table
        ]
        renames = {key: column.key for key, column in pairs if key != column.key}
        parts = (
            insert(table).returning(*(column for _, column in pairs)),
            tuple(key for key, _ in pairs),
            renames or None,
        )
        _INSERT_ONE[info.model] = parts
    return parts


def table_insert(info: ModelInfo) -> Any:
    """The table's own ``INSERT``, for rows made by :func:`table_params`."""
    return insert(info.table)


def plain_params(info: ModelInfo) -> bool:
    """Whether rows by attribute key are already :func:`table_params` (no version, no renames)."""
    return info.mapper.version_id_col is None and _insert_parts(info)[2] is None


def table_params(info: ModelInfo, row: Mapping[str, Any]) -> dict[str, Any]:
    """*row* (by attribute key) as the parameters of the table's own ``INSERT``.

    What an ORM ``INSERT`` adds is added: the version's first value. The keys become
    column keys where an attribute is named otherwise than its column.
    """
    params = dict(row)
    version = info.mapper.version_id_col
    if version is not None:
        version_key = info.mapper.get_property_by_column(version).key
        generator = info.mapper.version_id_generator
        if params.get(version_key) is None and callable(generator):
            params[version_key] = generator(None)
    renames = _insert_parts(info)[2]
    if renames is not None:
        params = {renames.get(key, key): value for key, value in params.items()}
    return params


def insert_one(session: Session, info: ModelInfo, row: Mapping[str, Any], obj: Any = None) -> Any:
    """Insert one row with ``INSERT … RETURNING``; return the persistent object.

    The statement is the table's own (Core), which costs about half of what SQLAlchemy's
    ORM-enabled ``insert(Model).returning(Model)`` costs in Python; it still goes
    through ``Session.execute()``, so the hooks check it as any INSERT. The caller
    vouches for what the ORM statement would add: one table, no polymorphic identity,
    and [`insert_statement_ok`][sqla_repo._statements.ModelInfo]. Foreign keys into
    tenant tables are checked first (the ``before_flush`` check does not run for
    statements). Column defaults and the version's first value apply as for a flush.
    The returned columns are set on *obj*, a transient instance carrying *row*, or on a
    new instance built as a loaded one is (no constructor); it is added to the session
    as the persistent object of the row.
    """
    if tenant_references(info.mapper):
        check_rows(session, info.mapper, [row])
    if obj is None and not _loads_plainly(info):
        # A @reconstructor or load listener runs for objects the ORM loads: let it load.
        entity_stmt = insert(info.model).returning(info.model)
        obj = session.execute(entity_stmt.execution_options(populate_existing=True), dict(row))
        obj = obj.scalars().unique().one()
        record_new(session, (obj,))
        return obj
    stmt, keys, _ = _insert_parts(info)
    params = table_params(info, row)
    returned = session.execute(stmt, params, bind_arguments={"mapper": info.mapper}).one()
    if obj is None:
        obj = info.mapper.class_manager.new_instance()
    for key, value in zip(keys, returned, strict=True):
        set_committed_value(obj, key, value)
    make_transient_to_detached(obj)
    _attach(session, obj)
    record_new(session, (obj,))
    return obj


def _attach(session: Session, obj: Any) -> None:
    """Add *obj*, now holding a row just inserted, to the session as that row's object.

    An object under the same key in the identity map stands for a row that was deleted
    behind the session (the INSERT succeeded): it is stale, and gives way.
    """
    try:
        session.add(obj)
    except InvalidRequestError:
        stale = session.identity_map.get(instance_state(obj).key)  # type: ignore[arg-type]
        if stale is None or stale is obj:
            raise
        session.expunge(stale)
        session.add(obj)


def delete_one(
    session: Session,
    info: ModelInfo,
    criterion: ColumnElement[bool],
    include_deleted: bool,  # noqa: FBT001
) -> int:
    """Run one ``DELETE`` of a single-table class's row; return the number deleted."""
    stmt = delete_statement(info, (criterion,), include_deleted)
    return int(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


def update_one(
    session: Session,
    info: ModelInfo,
    ident: tuple[Any, ...],
    values: Mapping[str, Any],
    new_ident: tuple[Any, ...] | None,
    *,
    update_returning: bool,
    include_deleted: bool = False,
) -> Any:
    """[`update_returning()`][sqla_repo._bulk.update_returning] of the row keyed *ident*.

    Foreign keys into tenant tables in *values* are checked first. Where the class is
    [`insert_statement_ok`][sqla_repo._statements.ModelInfo] (one table, no polymorphic
    identity) the table's own ``UPDATE … RETURNING`` runs and the row is put into the
    session by hand (:func:`_load_row`), as the ORM statement's ``populate_existing``
    would; without ``RETURNING`` (MariaDB) the row is read back by its key, *new_ident*
    where the key changes.
    """
    if tenant_references(info.mapper):
        check_rows(session, info.mapper, [values])
    changes = update_values(info, values)
    if not (info.insert_statement_ok and _loads_plainly(info)):
        criterion = table_pk_criterion(info, ident)
        stmt = update_statement(
            info, criterion, changes, include_deleted=include_deleted, returning=update_returning
        )
        if update_returning:
            return session.execute(stmt).scalars().unique().one_or_none()
        if not session.execute(stmt).rowcount:  # type: ignore[attr-defined]
            return None
        reread = reread_statement(
            info, criterion if new_ident is None else table_pk_criterion(info, new_ident)
        )
        return session.scalars(reread).unique().one_or_none()
    _, keys, renames = _insert_parts(info)
    if renames is not None:
        changes = {renames.get(key, key): value for key, value in changes.items()}
    bind = {"mapper": info.mapper}
    if (
        info.tenant
        or len(ident) > len(_KEY_PARAMS)
        or any(isinstance(v, SQL_VALUES) for v in values.values())
    ):
        # The session hooks check the tenant a statement writes from its values: they
        # stay in the statement. So do a caller's SQL expressions.
        returning, plain, read = _update_parts(info)
        stmt = (
            (returning if update_returning else plain)
            .where(
                table_pk_criterion(info, ident),
                *guard_criteria(info, include_deleted=include_deleted),
            )
            .values(changes)
        )
        params: dict[str, Any] | None = None
        reread = read.where(table_pk_criterion(info, ident if new_ident is None else new_ident))
        reread_params = None
    else:
        # The values as parameters; the SQL update_values() adds (the version) is the
        # statement's own.
        columns = tuple(sorted(k for k, v in changes.items() if not isinstance(v, SQL_VALUES)))
        stmt, reread = _keyed_update(
            info, columns, update_returning=update_returning, include_deleted=include_deleted
        )
        params = {_KEY_PARAMS[i]: value for i, value in enumerate(ident)}
        params.update({key: changes[key] for key in columns})
        reread_params = (
            params
            if new_ident is None
            else {_KEY_PARAMS[i]: value for i, value in enumerate(new_ident)}
        )
    if update_returning:
        row = session.execute(stmt, params, bind_arguments=bind).one_or_none()
    else:
        if not session.execute(stmt, params, bind_arguments=bind).rowcount:  # type: ignore[attr-defined]
            return None
        row = session.execute(reread, reread_params, bind_arguments=bind).one_or_none()
    return None if row is None else _load_row(session, info, keys, row, frozenset(changes))


# Parameter names of the keyed UPDATE, with a per-process random part: a caller's own
# bindparam() cannot take one by chance (execution parameters are matched by name).
_PARAM = f"sqla_repo_w{secrets.token_hex(4)}_"
_KEY_PARAMS = tuple(f"{_PARAM}k{i}" for i in range(16))
_KEYED_UPDATES: dict[tuple[Any, ...], tuple[Any, Any]] = {}
_MAX_KEYED_UPDATES = 1024


def _keyed_update(
    info: ModelInfo, columns: tuple[str, ...], *, update_returning: bool, include_deleted: bool
) -> tuple[Any, Any]:
    """The ``UPDATE`` of *columns* by key and the ``SELECT`` reading the row back by key.

    Built once per class, column set and options, with bound parameters for the key
    (``_KEY_PARAMS``) and the values (named by column): an update
    by key then builds no SQL expression, and SQLAlchemy finds its compiled form by the
    statement's own cache key, computed once. Only for classes without a tenant, whose
    guard predicates hold no per-call value.
    """
    found = _KEYED_UPDATES.get((info.model, columns, update_returning, include_deleted))
    if found is None:
        returning, plain, read = _update_parts(info)
        table = info.table
        by_key = [
            column == bindparam(_KEY_PARAMS[i], type_=column.type)
            for i, column in enumerate(info.pk_columns)
        ]
        # Named by column, as values given to .values() are: a context-sensitive default
        # finds them under the column's key in get_current_parameters().
        values: dict[str, Any] = {
            name: bindparam(name, type_=table.c[name].type) for name in columns
        }
        if info.versioned:
            version = info.columns["version"]
            values[version.key] = version + 1
        stmt = (
            (returning if update_returning else plain)
            .where(*by_key, *guard_criteria(info, include_deleted=include_deleted))
            .values(values)
        )
        found = (stmt, read.where(*by_key))
        if len(_KEYED_UPDATES) >= _MAX_KEYED_UPDATES:
            _KEYED_UPDATES.clear()
        _KEYED_UPDATES[info.model, columns, update_returning, include_deleted] = found
    return found


_UPDATE_ONE: dict[type[Any], tuple[Any, Any, Any]] = {}
"""Per class: the table's ``UPDATE … RETURNING`` every column, its plain ``UPDATE``, and
the ``SELECT`` of every column that reads the row back where there is no ``RETURNING``
(statements are immutable: each call adds its criteria and values to a copy)."""


def _update_parts(info: ModelInfo) -> tuple[Any, Any, Any]:
    parts = _UPDATE_ONE.get(info.model)
    if parts is None:
        columns = _insert_parts(info)[0].exported_columns
        plain = update(info.table)
        parts = (plain.returning(*columns), plain, select(*columns))
        _UPDATE_ONE[info.model] = parts
    return parts


def _loads_plainly(info: ModelInfo) -> bool:
    """Whether no ``load`` or ``refresh`` listener (a ``@reconstructor`` is one) exists.

    Objects are then built or refreshed by hand from a row; otherwise the ORM statement
    runs, whose loading fires them. Listeners can be added at any time: asked per call.
    """
    dispatch = info.mapper.class_manager.dispatch
    return not (dispatch.load or dispatch.refresh)


def _load_row(
    session: Session, info: ModelInfo, keys: tuple[str, ...], row: Any, changed: frozenset[str]
) -> Any:
    """The object of a row just written or read, with its returned values, in the session.

    The object already in the identity map under the row's key gets the values as its
    committed state (what ``populate_existing`` does), and what the row's columns do not
    hold is loaded again where it was loaded: a ``column_property()`` computed from the
    row, and a relationship whose foreign key is among the *changed* columns. Otherwise
    a new instance is built as a loaded one is, and added as the row's persistent object.
    """
    values = dict(zip(keys, row, strict=True))
    key = info.mapper.identity_key_from_primary_key(tuple(values[k] for k in info.pk_keys))
    obj = session.identity_map.get(key)
    if obj is None:
        obj = info.mapper.class_manager.new_instance()
        for name, value in values.items():
            set_committed_value(obj, name, value)
        make_transient_to_detached(obj)
        _attach(session, obj)
        return obj
    for name, value in values.items():
        set_committed_value(obj, name, value)
    loaded = instance_state(obj).dict
    stale = [
        prop.key
        for prop in info.mapper.column_attrs  # a column_property() the RETURNING left out
        if prop.key in loaded and prop.key not in values
    ]
    stale += [
        rel.key
        for rel in info.mapper.relationships
        if rel.key in loaded and any(column.key in changed for column in rel.local_columns)
    ]
    if stale:
        session.refresh(obj, attribute_names=stale)
    return obj
