"""Preparation of the rows that set-based writes send: pure, shared by both flavours.

Row dicts from mappings or transient instances, ``None`` left out where a column has a
default, conflict keys checked and coerced, rows grouped by key set (the ORM batches only
consecutive rows with the same keys) and split into batches. Nothing here runs a
statement: :mod:`sqla_repo._bulk` and its generated twin execute what this prepares.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import inspect as sa_inspect

from sqla_repo.context import tenant_scope
from sqla_repo.exceptions import RepositoryError
from sqla_repo.mixins.timestamps import same_as_created_at
from sqla_repo.types import utcnow

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement

    from sqla_repo._statements import ModelInfo

RowT = TypeVar("RowT", bound=Mapping[str, Any])

__all__ = [
    "batches",
    "chunks",
    "conflict_keys",
    "drop_defaulted_none",
    "first_rows",
    "group_indexes",
    "group_rows",
    "insert_rows",
    "match_folded",
    "merge_by_key",
    "row_dicts",
    "stamp_write_time",
    "write_time_keys",
]


def chunks(rows: Sequence[dict[str, Any]], size: int) -> Iterator[Sequence[dict[str, Any]]]:
    if size <= 0:
        msg = "batch_size must be positive"
        raise RepositoryError(msg)
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def batches(rows: Sequence[dict[str, Any]], size: int | None) -> Iterable[Sequence[dict[str, Any]]]:
    """*rows* in batches of *size*, or all in one (SQLAlchemy's insertmanyvalues splits it)."""
    return [rows] if size is None else chunks(rows, size)


def row_dicts(info: ModelInfo, rows: Iterable[Any]) -> list[dict[str, Any]]:
    """Return column-value dicts for mappings or transient instances of the model."""
    return [_row_dict(info, row) for row in rows]


def insert_rows(
    info: ModelInfo, rows: Iterable[Any]
) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]], list[list[int]]]:
    """The rows of an ``INSERT`` of many rows, grouped by key set, and the groups' positions.

    [`row_dicts()`][sqla_repo._row_prep.row_dicts] then
    [`drop_defaulted_none()`][sqla_repo._row_prep.drop_defaulted_none] and
    [`group_indexes()`][sqla_repo._row_prep.group_indexes], in one pass where the rows
    are plain dicts with the first row's keys, none of them defaulted (the common case):
    each such row costs one length and one set test, which also proves its keys are the
    first row's. Any other row takes the general path, and the rows are then grouped.
    """
    defaulted = info.defaulted_keys
    plain = info.writable_keys - defaulted
    out: list[dict[str, Any]] = []
    first: frozenset[str] | None = None
    size = -1
    uniform = True
    for row in rows:
        if type(row) is dict:
            if len(row) == size and row.keys() <= first:  # type: ignore[operator]
                out.append(row.copy())
                continue
            if first is None and uniform and row.keys() <= plain:
                first, size = frozenset(row), len(row)
                out.append(row.copy())
                continue
        uniform = False
        out.append(_without_defaulted_none(_row_dict(info, row), defaulted))
    if uniform:
        return out, [out] if out else [], [list(range(len(out)))] if out else []
    indexes = group_indexes(out)
    return out, [[out[i] for i in group] for group in indexes], indexes


WriteTimes = tuple[tuple[str, str | None], ...]
"""``(key, source)`` pairs of :func:`write_time_keys`."""


def write_time_keys(columns: Mapping[str, ColumnElement[Any]]) -> WriteTimes:
    """The columns whose default is the time of the write, for :func:`stamp_write_time`.

    Each is ``(key, source)``: *source* ``None`` for a column whose default is
    [`utcnow()`][sqla_repo.types.utcnow] (``created_at``), ``"created_at"`` for
    ``TimestampMixin``'s ``updated_at``, whose default repeats the row's ``created_at``.
    The ``utcnow`` columns come first: a follower reads their stamp.
    """
    now: list[tuple[str, str | None]] = []
    followers: list[tuple[str, str | None]] = []
    for key, column in columns.items():
        default = getattr(column, "default", None)
        if default is None or not default.is_callable:
            continue
        fn = getattr(default, "arg", None)
        fn = getattr(fn, "__wrapped__", fn)  # SQLAlchemy wraps a function without context
        if fn is utcnow:
            now.append((key, None))
        elif fn is same_as_created_at and "created_at" in columns:
            followers.append((key, "created_at"))
    return (*now, *followers)


def stamp_write_time(info: ModelInfo, groups: Iterable[Sequence[dict[str, Any]]]) -> None:
    """Give the rows' write-time columns one instant, the time of this write.

    SQLAlchemy calls a column's Python default once per row: for ``created_at`` and
    ``updated_at`` that is two Python calls a row, one of them reading the row's
    parameters back. A write of many rows stamps them itself, as the defaults would
    (``utcnow()``, and ``updated_at`` equal to the row's ``created_at``), with one
    instant for every row of the call, as a transaction's ``now()`` is one instant.
    Values given win. The rows of a group share their keys (*groups* as
    [`insert_rows()`][sqla_repo._row_prep.insert_rows] returns them), so which columns
    a group lacks is read from its first row.
    """
    write_times = info.write_times
    if not write_times:
        return
    now = utcnow()
    for group in groups:
        if not group:
            continue
        missing = [(key, source) for key, source in write_times if key not in group[0]]
        if not missing:
            continue
        if all(source is None or source not in group[0] for _, source in missing):
            stamp = dict.fromkeys((key for key, _ in missing), now)
            for row in group:
                row.update(stamp)
            continue
        for row in group:  # a follower of a value given: each row's own
            for key, source in missing:
                given = row.get(source) if source is not None else None
                row[key] = given if isinstance(given, dt.datetime) else now


def _row_dict(info: ModelInfo, row: Any) -> dict[str, Any]:
    """The column-value dict of one mapping or transient instance of the model."""
    if type(row) is dict and row.keys() <= info.writable_keys:
        return row.copy()
    if isinstance(row, info.model):
        state = sa_inspect(row)
        if state.session_id is not None or state.key is not None:
            msg = "bulk operations take new (transient) instances or mappings"
            raise RepositoryError(msg, model=info.model)
        related = sorted(k for k in info.relationship_keys if state.dict.get(k) not in (None, []))
        if related:
            msg = (
                "bulk operations ignore relationships; set the foreign key instead "
                f"({', '.join(related)})"
            )
            raise RepositoryError(msg, model=info.model, detail={"fields": related})
        return {k: v for k, v in state.dict.items() if k in info.column_keys}
    if isinstance(row, Mapping):
        if not row.keys() <= info.writable_keys:  # one set test in the common case
            info.check_keys(row, what="field")
        return dict(row)
    msg = f"expected {info.model.__name__} instances or mappings"
    raise RepositoryError(msg, model=info.model)


def _without_defaulted_none(row: Mapping[str, Any], defaulted: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if v is not None or k not in defaulted}


def drop_defaulted_none(info: ModelInfo, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Leave out ``None`` for columns with a default, as the unit of work does on INSERT.

    ``create({"id": None})`` inserts a generated key and ``{"name": None}`` the column's
    default; a bulk INSERT that rendered them as NULL would refuse or store a different row.
    """
    defaulted = info.defaulted_keys
    out = []
    for row in rows:
        for key in defaulted:
            if key in row and row[key] is None:
                row = _without_defaulted_none(row, defaulted)  # noqa: PLW2901
                break
        out.append(row)
    return out


def group_indexes(rows: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """The positions of *rows*, grouped by key set (first appearance order)."""
    groups: dict[frozenset[str], list[int]] = {}
    last: Any = None
    group: list[int] = []
    for index, row in enumerate(rows):
        keys = row.keys()
        if keys != last:  # a row with the keys of the one before costs one comparison
            last, group = keys, groups.setdefault(frozenset(keys), [])
        group.append(index)
    return list(groups.values())


def group_rows(rows: Iterable[RowT]) -> list[list[RowT]]:
    """*rows* grouped by key set (first appearance order), each group in input order."""
    groups: dict[frozenset[str], list[RowT]] = {}
    last: Any = None
    group: list[RowT] = []
    for row in rows:
        keys = row.keys()
        if keys != last:
            last, group = keys, groups.setdefault(frozenset(keys), [])
        group.append(row)
    return list(groups.values())


def merge_by_key(
    info: ModelInfo, rows: Sequence[Mapping[str, Any]]
) -> tuple[dict[tuple[Any, ...], dict[str, Any]], dict[tuple[str, ...], list[dict[str, Any]]]]:
    """Merge ``bulk_update()`` rows per primary key; group their parameters by column set.

    Returns the merged rows by key and, per sorted tuple of changed columns, the
    executemany parameters (``_pk_<i>`` for the key, ``_v_<column>`` for each value).
    """
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        missing = [k for k in info.pk_keys if k not in row]
        if missing:
            msg = f"bulk_update rows need the primary key ({', '.join(missing)} missing)"
            raise RepositoryError(msg, model=info.model)
        info.check_keys(row, what="field")
        # Several rows for one key merge (later values win): each row is updated once.
        merged.setdefault(tuple(row[k] for k in info.pk_keys), {}).update(row)
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for ident, row in merged.items():
        keys = tuple(sorted(k for k in row if k not in info.pk_keys))
        params = {f"_pk_{i}": v for i, v in enumerate(ident)}
        params.update({f"_v_{k}": row[k] for k in keys})
        groups.setdefault(keys, []).append(params)
    return merged, groups


def conflict_keys(
    info: ModelInfo,
    rows: Sequence[dict[str, Any]],
    conflict_on: Sequence[str],
    *,
    duplicates: bool = False,
) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """Validate *conflict_on* against *rows*; return the rows and their key tuples."""
    if not conflict_on:
        msg = "conflict_on must name at least one column"
        raise RepositoryError(msg, model=info.model)
    info.check_keys(conflict_on, what="conflict column")
    scope = tenant_scope()
    out = [dict(row) for row in rows]
    if info.tenant and "tenant_id" in conflict_on and scope.tenant is not None:
        out = [{"tenant_id": scope.tenant, **row} for row in out]
    wanted: list[tuple[Any, ...]] = []
    for row in out:
        missing = [k for k in conflict_on if k not in row]
        if missing:
            msg = f"every row needs the conflict_on columns ({', '.join(missing)} missing)"
            raise RepositoryError(msg, model=info.model)
        # Compare keys as the database returns them ("3" -> 3, str -> UUID).
        row.update({k: info.coerce_value(k, row[k]) for k in conflict_on})
        wanted.append(tuple(row[k] for k in conflict_on))
    if not duplicates and len(set(wanted)) != len(wanted):
        msg = "two rows have the same conflict_on values"
        raise RepositoryError(msg, model=info.model, detail={"fields": list(conflict_on)})
    return out, wanted


def first_rows(
    info: ModelInfo,
    rows: Sequence[dict[str, Any]],
    wanted: Sequence[tuple[Any, ...]],
    conflict_on: Sequence[str],
) -> tuple[dict[tuple[Any, ...], dict[str, Any]], list[dict[str, Any]]]:
    """The first row given for each key, and those rows in sorted key order, for inserting.

    Keys of mixed types cannot be ordered: the rows then keep their input order.

    Raises:
        RepositoryError: A key value is ``None``.
    """
    if any(value is None for key in wanted for value in key):
        msg = "conflict_on values must not be None"
        raise RepositoryError(msg, model=info.model, detail={"fields": list(conflict_on)})
    first: dict[tuple[Any, ...], dict[str, Any]] = {}
    for key, row in zip(wanted, rows, strict=True):
        first.setdefault(key, row)
    try:
        ordered = [first[key] for key in sorted(first)]
    except TypeError:  # keys of mixed types cannot be ordered: keep the input order
        ordered = list(first.values())
    return first, drop_defaulted_none(info, ordered)


def _fold(value: Any) -> Any:
    return value.casefold().rstrip(" ") if isinstance(value, str) else value


def match_folded(found: dict[tuple[Any, ...], Any], wanted: Sequence[tuple[Any, ...]]) -> None:
    """Map keys MariaDB/MySQL matched through their collation to the rows found.

    They compare with the column collation (case-insensitive, PAD SPACE by default): the
    row found for ``"Bob@x.org "`` may hold ``"bob@x.org"``.
    """
    folded = {tuple(map(_fold, key)): obj for key, obj in found.items()}
    for w in wanted:
        if w not in found and tuple(map(_fold, w)) in folded:
            found[w] = folded[tuple(map(_fold, w))]
