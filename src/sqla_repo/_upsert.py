"""Portable upsert statements: ``ON CONFLICT`` (PostgreSQL, SQLite) and ``ON DUPLICATE KEY``.

Upserts bypass the unit of work, so the statement itself sets what ORM events would:
``updated_at``/``updated_by`` come from the proposed row (computed by the column defaults
at INSERT), ``version`` is incremented, and a guard keeps the UPDATE off rows of another
tenant and off soft-deleted rows. A guarded conflict updates nothing, and the repository
reports it as a conflict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, literal_column
from sqlalchemy.sql.expression import BindParameter
from sqlalchemy.sql.visitors import replacement_traverse

from sqla_repo._statements import ModelInfo, guard_criteria
from sqla_repo.context import tenant_scope
from sqla_repo.exceptions import RepositoryError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

_NO_OPTIONS: dict[str, Any] = {}

__all__ = ["binds_after_values", "update_keys", "upsert_statement"]

_NEVER_UPDATED = frozenset({"created_at", "created_by", "tenant_id", "version", "deleted_at"})


def update_keys(
    info: ModelInfo,
    rows: Sequence[Mapping[str, Any]],
    conflict_on: Sequence[str],
    update: Sequence[str] | None,
) -> list[str]:
    """Return the columns a conflicting row gets from the proposed row.

    ``update=[]`` means "keep the existing row as it is": nothing is stamped or bumped.
    """
    if update is not None and not update:
        return []
    if update is not None:
        info.check_keys(update, what="update column")
        bad = sorted(set(update) & (set(info.pk_keys) | set(conflict_on) | _NEVER_UPDATED))
        if bad:
            msg = f"cannot update {', '.join(bad)} on conflict"
            raise RepositoryError(msg, model=info.model, detail={"fields": bad})
        keys = list(update)
    else:
        given: dict[str, None] = {}
        for row in rows:
            given.update(dict.fromkeys(row))
        skip = set(info.pk_keys) | set(conflict_on) | _NEVER_UPDATED
        keys = [k for k in given if k not in skip]
    for automatic in ("updated_at", "updated_by"):
        if automatic in info.column_keys and automatic not in keys:
            keys.append(automatic)
    return keys


def _inline(condition: Any, dialect: Any) -> Any:
    """*condition* with its bound values (discriminator identities) written as literals.

    The MySQL drivers run a multi-row ``INSERT … ON DUPLICATE KEY UPDATE`` by rewriting
    its ``VALUES`` list, and cannot bind parameters that follow it (see
    :func:`binds_after_values`). The identities come from the mappers, not from input;
    they are quoted by the dialect's literal processor. A value it cannot render, or one
    holding ``%`` (which the driver would read as a placeholder in one path and not the
    other), refuses the upsert.
    """

    def literal(element: Any, **_kw: Any) -> Any:
        if not isinstance(element, BindParameter):
            return None
        processor = element.type.literal_processor(dialect)
        value = element.effective_value
        if processor is None or "%" in str(value):
            msg = "upsert cannot guard this value on MySQL/MariaDB"
            raise RepositoryError(msg)
        return literal_column(processor(value), element.type)

    return replacement_traverse(condition, _NO_OPTIONS, literal)


def binds_after_values(info: ModelInfo) -> bool:
    """Whether the MySQL upsert's UPDATE clause binds a parameter (the tenant id).

    The MySQL drivers' ``executemany`` rewrites the ``VALUES`` list of such a statement
    and cannot bind it, so those rows are sent one statement each.
    """
    return info.tenant and not tenant_scope().all_tenants


def upsert_statement(
    dialect_name: str,
    info: ModelInfo,
    conflict_on: Sequence[str],
    keys: Sequence[str],
) -> Any:
    """Return the ORM-enabled upsert ``Insert`` for *dialect_name*, without values."""
    # Dialect packages are imported on first use: each costs tens of ms at import time.
    from sqlalchemy.dialects import mysql, postgresql, sqlite  # noqa: PLC0415

    columns = info.columns
    guard = guard_criteria(info)
    if dialect_name in {"postgresql", "sqlite"}:
        module: Any = postgresql if dialect_name == "postgresql" else sqlite
        stmt = module.insert(info.model)
        # With nothing to update, a no-op assignment still lets RETURNING yield the row.
        assign: dict[str, Any] = {k: stmt.excluded[columns[k].name] for k in keys} or {
            conflict_on[0]: stmt.excluded[columns[conflict_on[0]].name]
        }
        if info.versioned and keys:
            assign["version"] = columns["version"] + 1
        return stmt.on_conflict_do_update(
            index_elements=[columns[k] for k in conflict_on],
            set_=assign,
            where=and_(*guard) if guard else None,
        )
    if dialect_name in {"mysql", "mariadb"}:
        stmt = mysql.insert(info.model)
        if info.single_criterion is not None:
            single = _inline(info.single_criterion, mysql.dialect())
            guard = [c for c in guard if c is not info.single_criterion] + [single]
        condition = and_(*guard) if guard else None

        def guarded(new: Any, old: Any) -> Any:
            return new if condition is None else case((condition, new), else_=old)

        assign = {
            columns[k].name: guarded(stmt.inserted[columns[k].name], columns[k]) for k in keys
        } or {columns[conflict_on[0]].name: columns[conflict_on[0]]}
        if info.versioned and keys:
            version = columns["version"]
            # MySQL applies assignments left to right; the guard reads columns never assigned.
            assign[version.name] = guarded(version + 1, version)
        return stmt.on_duplicate_key_update(assign)
    msg = f"upsert is not supported on {dialect_name}"
    raise RepositoryError(msg, model=info.model)
