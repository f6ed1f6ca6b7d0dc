"""Statement building for the repository, kept apart from execution.

Everything here is pure: it takes a mapped class and arguments and returns SQLAlchemy
constructs. The async [`BaseRepository`][sqla_repo.repository.BaseRepository] executes
them; a synchronous twin can share them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Literal

from sqlalchemy import (
    Column,
    ColumnElement,
    Table,
    and_,
    or_,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapper
from sqlalchemy.orm.decl_base import _declarative_constructor
from sqlalchemy.orm.mapper import _event_on_init as _mapper_on_init

from sqla_repo._coerce import (
    SQL_VALUES,
    UNSUPPORTED,
    CoercionError,
    coerce,
    column_fast_check,
    python_type,
    value_checker,
    value_fast_check,
)
from sqla_repo._row_prep import group_rows, write_time_keys
from sqla_repo._sql import is_query_expression
from sqla_repo.context import tenant_scope
from sqla_repo.exceptions import (
    ConfigurationError,
    InvalidFilterError,
    InvalidValueError,
    RepositoryError,
    TenantRequiredError,
)
from sqla_repo.mixins.soft_delete import SoftDeleteMixin
from sqla_repo.mixins.tenant import TenantMixin
from sqla_repo.mixins.version import VersionMixin
from sqla_repo.types import utcnow

__all__ = [
    "ModelInfo",
    "pk_criterion",
]

_MANAGED = frozenset({"version"})

_EAGER = frozenset({"joined", "selectin", "subquery", "immediate"})


class ModelInfo:
    """What the repository needs to know about a mapped class, computed once."""

    __slots__ = (
        "_checkers",
        "_fast_checks",
        "_int_key_glance",
        "column_keys",
        "columns",
        "defaulted_keys",
        "delete_tables",
        "eager_keys",
        "insert_statement_ok",
        "joined",
        "joined_collections",
        "mapper",
        "model",
        "pk_attrs",
        "pk_columns",
        "pk_keys",
        "pk_keys_set",
        "plain_init",
        "relationship_keys",
        "single_criterion",
        "soft_delete",
        "table",
        "tenant",
        "versioned",
        "writable_keys",
        "write_times",
    )

    def __init__(self, model: type[Any]) -> None:
        mapper: Mapper[Any] | None = sa_inspect(model, raiseerr=False)
        if mapper is None or not isinstance(mapper, Mapper):
            msg = f"{model!r} is not a mapped class"
            raise ConfigurationError(msg)
        self.model = model
        self.mapper = mapper
        if not isinstance(mapper.local_table, Table):
            msg = f"{model.__name__} is not mapped to a table"
            raise ConfigurationError(msg)
        self.table: Table = mapper.local_table
        self.pk_columns = tuple(mapper.primary_key)
        self.pk_keys = tuple(mapper.get_property_by_column(c).key for c in self.pk_columns)
        self.pk_keys_set = frozenset(self.pk_keys)
        self.pk_attrs = tuple(getattr(model, k) for k in self.pk_keys)
        # Stored columns only: a query_expression() or a column_property() of an
        # expression is computed by a SELECT and can neither be written nor defaulted.
        stored = [
            p
            for p in mapper.column_attrs
            if not is_query_expression(p) and isinstance(p.columns[0], Column)
        ]
        self.column_keys = frozenset(p.key for p in stored)
        self.columns = {p.key: p.columns[0] for p in stored}
        # Where the unit of work reads an explicit None as "not given" and lets a default
        # (Python, server or autoincrement) fill the column; bulk INSERTs do the same.
        self.defaulted_keys = frozenset(
            key
            for key, column in self.columns.items()
            if not column.type.should_evaluate_none
            and (
                column.default is not None
                or column.server_default is not None
                or column is getattr(column.table, "autoincrement_column", None)
            )
        )
        self.write_times = write_time_keys(self.columns)
        self.relationship_keys = frozenset(r.key for r in mapper.relationships)
        # Relationships the mapper loads with the row (``lazy="joined"``/``"selectin"``…):
        # a returned object must have them loaded, or touching one needs lazy IO.
        self.eager_keys = frozenset(r.key for r in mapper.relationships if r.lazy in _EAGER)
        # A joined eager collection repeats the entity row: results need ``unique()`` and
        # cannot be streamed with ``yield_per``.
        self.joined_collections = tuple(
            r for r in mapper.relationships if r.lazy == "joined" and r.uselist
        )
        self.soft_delete = issubclass(model, SoftDeleteMixin)
        self.tenant = issubclass(model, TenantMixin)
        self.versioned = issubclass(model, VersionMixin) and mapper.version_id_col is not None
        self.writable_keys = self.column_keys - _MANAGED if self.versioned else self.column_keys
        # Single-table inheritance: the discriminator test a subclass's rows must pass.
        self.single_criterion = _discriminator_criterion(mapper)
        # Joined-table inheritance: a row of this class spans several tables.
        self.joined = len(mapper.tables) > 1
        self.delete_tables = _hierarchy_tables(mapper)
        # Whether one ORM ``INSERT … RETURNING`` writes a new row exactly as the unit of
        # work would: one table, no polymorphic identity to set, a version the mapper
        # generates in Python.
        self.insert_statement_ok = (
            not self.joined
            and mapper.polymorphic_on is None
            and mapper.inherits is None
            and (mapper.version_id_col is None or callable(mapper.version_id_generator))
        )
        # Whether the constructor is the declarative one and no @validates exists; see
        # builds_plainly() for what can change after the class is mapped.
        self.plain_init = (
            mapper.class_manager.original_init is _declarative_constructor and not mapper.validators
        )
        self._checkers = {
            key: checker
            for key, column in self.columns.items()
            if (checker := value_checker(column.type)) is not None
        }
        # A single integer key passed as an int in range needs no coercion (get(3)).
        pk_type = self.pk_columns[0].type if len(self.pk_columns) == 1 else None
        self._int_key_glance = (
            value_fast_check(pk_type)
            if pk_type is not None and python_type(pk_type) is int
            else None
        )
        self._fast_checks = {
            key: fine
            for key, column in self.columns.items()
            if key in self._checkers and (fine := column_fast_check(column.type)) is not None
        }

    def builds_plainly(self, keys: Iterable[str]) -> bool:
        """Whether building an object from a mapping with *keys* runs no application code.

        That is the declarative constructor, no ``@validates``, no ``init`` listener on
        the class and no ``set`` listener on the attributes: a statement may then take
        the mapping as it is. Listeners can be added at any time, so they are looked
        at on every call.
        """
        if not self.plain_init:
            return False
        manager = self.mapper.class_manager
        # Every mapped class has the mapper's own init listener: only others count.
        if any(fn is not _mapper_on_init for fn in manager.dispatch.init):
            return False
        return not any(key in manager and manager[key].dispatch.set for key in keys)

    def check_values(
        self,
        values: Mapping[str, Any],
        *,
        keys: Iterable[str] = (),
        sql: Literal["any", "constant", "none"] = "any",
    ) -> None:
        """Refuse a written value its column cannot hold exactly on every backend.

        The write-side twin of the filters' coercion (see
        [`check_value`][sqla_repo._coerce.check_value]): a value a backend would round,
        truncate, store as NULL or reinterpret is refused before anything is sent. Keys
        naming no column (relationships) are left alone. Each column's type is examined
        once per class, not per value.

        The *keys* identify the row rather than being written (a primary key in
        ``bulk_update()``): they are coerced like filter values instead, and skipped here.
        SQL expressions are the statement's business where *sql* is ``"any"`` (one
        UPDATE); ``"constant"`` (an INSERT) refuses those that read a column, ``"none"``
        (writes of many rows, sent as parameters) refuses them all.

        Raises:
            InvalidValueError: A value the column cannot hold; ``detail`` names the
                ``field`` and the ``reason``, never the value.
        """
        checkers = self._checkers
        for key, value in values.items():
            if value is None:
                continue
            if isinstance(value, SQL_VALUES):
                if sql != "any":
                    self._check_sql(key, value, constant=sql == "constant")
                continue
            checker = checkers.get(key)
            if checker is None or (keys and key in keys):
                continue
            try:
                checker(value)
            except CoercionError as exc:
                raise InvalidValueError(
                    exc.message, model=self.model, detail={"field": key, "reason": exc.reason}
                ) from None

    def _check_sql(self, key: str, value: Any, *, constant: bool) -> None:
        expression = value.__clause_element__() if hasattr(value, "__clause_element__") else value
        if constant and not expression._from_objects:  # noqa: SLF001
            return
        msg = (
            "An inserted value cannot read a column."
            if constant
            else "A SQL expression cannot be written by a write of many rows."
        )
        raise InvalidValueError(
            msg, model=self.model, detail={"field": key, "reason": "sql_expression"}
        )

    def check_rows(
        self,
        rows: Iterable[Mapping[str, Any]],
        *,
        keys: Iterable[str] = (),
        groups: Iterable[Sequence[Mapping[str, Any]]] | None = None,
    ) -> None:
        """[`check_values()`][sqla_repo._statements.ModelInfo.check_values] for each row.

        The rows are sent as parameters of one statement: SQL expressions are refused.
        *groups*, when the caller has them, are the *rows* grouped by key set.
        """
        keys = frozenset(keys)
        fast = self._fast_checks
        # Rows with the same keys are glanced at column by column, each column's values
        # in one test; a group holding anything but the common case (a column without
        # such a test, a value the glance cannot pass) is checked row by row.
        for group in group_rows(rows) if groups is None else groups:
            for key in group[0]:
                fine = fast.get(key)
                if fine is None or not fine(list(map(itemgetter(key), group))):
                    for row in group:
                        self.check_values(row, keys=keys, sql="none")
                    break

    def instance_values(self, obj: Any) -> dict[str, Any]:
        """The column values set on *obj*, by attribute key."""
        state_dict = sa_inspect(obj).dict
        return {k: v for k, v in state_dict.items() if k in self.column_keys}

    @property
    def single_int_autoincrement_pk(self) -> bool:
        """Whether the key is one database-assigned integer column."""
        if len(self.pk_columns) != 1:
            return False
        column = self.pk_columns[0]
        return column is column.table.autoincrement_column

    def identity(self, ident: Any) -> tuple[Any, ...]:
        """Normalise a primary-key value (scalar, tuple or mapping) to a tuple."""
        glance = self._int_key_glance
        if glance is not None and glance(ident):
            return (ident,)
        if isinstance(ident, Mapping):
            try:
                values = tuple(ident[k] for k in self.pk_keys)
            except KeyError as exc:
                msg = f"identity must name every primary key column: {self.pk_keys}"
                raise RepositoryError(msg, model=self.model) from exc
        elif isinstance(ident, tuple):
            if len(ident) != len(self.pk_keys):
                msg = f"identity must have {len(self.pk_keys)} values"
                raise RepositoryError(msg, model=self.model)
            values = ident
        elif len(self.pk_keys) != 1:
            msg = f"identity must have {len(self.pk_keys)} values"
            raise RepositoryError(msg, model=self.model)
        else:
            values = (ident,)
        return tuple(self.coerce_value(k, v) for k, v in zip(self.pk_keys, values, strict=True))

    def coerce_keys(self, values: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
        """*values* with those of *keys* that name columns coerced as key values.

        For values that find a row rather than being written (a primary key in
        ``bulk_update()``, a ``get_or_create()`` lookup): ``"3"`` finds row 3.
        """
        out = dict(values)
        for key in keys:
            if key in out and key in self.columns:
                out[key] = self.coerce_value(key, out[key])
        return out

    def coerce_value(self, key: str, value: Any) -> Any:
        """Coerce a key value (often a path parameter) to the column's Python type.

        A value the column cannot hold never reaches the driver: asyncpg and psycopg
        would raise a raw ``DataError`` (psycopg aborting the transaction), MariaDB would
        compare ``'1abc'`` as ``1``.
        """
        column = self.columns[key]
        if value is None or python_type(column.type) is UNSUPPORTED:
            return value
        try:
            return coerce(value, column.type, max_length=None)
        except CoercionError as exc:
            raise InvalidFilterError(
                exc.message, model=self.model, detail={"field": key, "reason": exc.reason}
            ) from None

    def check_keys(self, keys: Iterable[object], *, what: str, relationships: bool = False) -> None:
        """Raise a clear error when *keys* name no writable column of the model.

        Relationship names are accepted only where the unit of work applies them
        (``relationships=True``); a Core statement would turn ``author=None`` into
        ``SET id = (author_id IS NULL)``.
        """
        if isinstance(keys, str):
            msg = f"expected a collection of {what} names, not one string"
            raise RepositoryError(msg, model=self.model)
        allowed = self.writable_keys | (self.relationship_keys if relationships else frozenset())
        # Keys made by code may be of any type: named by their repr, never a TypeError.
        unknown = sorted(k if isinstance(k, str) else repr(k) for k in set(keys) - allowed)
        if unknown:
            msg = f"{self.model.__name__} has no writable attribute(s) {', '.join(unknown)}"
            raise RepositoryError(
                msg, model=self.model, detail={"fields": unknown, "reason": "unknown_field"}
            )


def _discriminator_criterion(mapper: Mapper[Any]) -> ColumnElement[bool] | None:
    """``kind IN (identities of the class and its subclasses)`` for a single-table subclass.

    Built on the plain table column: the hooks refuse Core statements that name ORM
    attributes, since no loader criteria reach them.
    """
    column = mapper.polymorphic_on
    if not mapper.single or mapper.inherits is None or column is None:
        return None
    identities = [m.polymorphic_identity for m in mapper.self_and_descendants]
    # Plain comparisons rather than an expanding IN: executemany cannot expand a list.
    return or_(*(column == identity for identity in identities))


def _depth(mapper: Mapper[Any]) -> int:
    return sum(1 for _ in mapper.iterate_to_root())


def _hierarchy_tables(mapper: Mapper[Any]) -> tuple[tuple[Table, Mapper[Any]], ...]:
    """Every table a row of *mapper*'s class (or of a joined subclass) may occupy.

    Each table comes with the mapper it is local to, deepest first: the order in which
    a whole polymorphic row is deleted (rows referencing the base row go first).
    """
    owners: dict[Table, Mapper[Any]] = {}
    for m in (*mapper.iterate_to_root(), *mapper.self_and_descendants):
        table = m.local_table
        if isinstance(table, Table) and (table not in owners or _depth(m) < _depth(owners[table])):
            owners[table] = m
    ordered = sorted(owners.items(), key=lambda item: -_depth(item[1]))
    return tuple(ordered)


def pk_criterion(info: ModelInfo, ident: Any) -> ColumnElement[bool]:
    """Return ``pk == ident`` for a scalar or composite identity."""
    values = info.identity(ident)
    return and_(*(attr == value for attr, value in zip(info.pk_attrs, values, strict=True)))


def update_values(info: ModelInfo, values: Mapping[str, Any]) -> dict[str, Any]:
    """Return *values* plus what bulk statements must set themselves (the version bump).

    ``updated_at``/``updated_by`` need nothing here: their ``onupdate`` defaults fire for
    every UPDATE statement, ORM or Core.
    """
    out = dict(values)
    if info.versioned:
        out["version"] = info.columns["version"] + 1
    return out


def guard_criteria(info: ModelInfo, *, include_deleted: bool = False) -> list[ColumnElement[bool]]:
    """Soft-delete, tenant and discriminator predicates for statements that bypass the hooks.

    The columns are the mapped ones: for a joined subclass they may live on a base table,
    so only statements over the whole class (or a single table) use these.
    """
    columns = info.columns
    out: list[ColumnElement[bool]] = []
    if info.soft_delete and not include_deleted:
        out.append(columns["deleted_at"].is_(None))
    if info.tenant:
        scope = tenant_scope()
        if not scope.all_tenants:
            if scope.tenant is None:
                raise TenantRequiredError(model=info.model)
            out.append(columns["tenant_id"] == scope.tenant)
    if info.single_criterion is not None:
        # A single-table subclass sees only rows of its own polymorphic identities.
        out.append(info.single_criterion)
    return out


def soft_delete_values() -> dict[str, Any]:
    """Values that mark a row deleted now."""
    return {"deleted_at": utcnow()}
