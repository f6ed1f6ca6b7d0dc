"""Foreign keys into tenant-scoped tables, checked against the current tenant.

A database foreign key only asks whether the referenced row exists, in any tenant. Left
alone, a write referencing another tenant's row would succeed where a random id fails,
so a tenant could learn which ids exist elsewhere and link its rows to them. Before a
write stores a value in such a foreign key, the referenced rows are counted with the
current tenant's criteria (one ``SELECT count(*) … IN (…)`` per foreign key and write);
when one is not visible the write raises
[`ForeignKeyViolationError`][sqla_repo.exceptions.ForeignKeyViolationError], the same
error, message and detail for another tenant's row as for a missing one.

Soft-deleted rows of the current tenant stay referenceable, as the database allows.
Inside [`all_tenants()`][sqla_repo.context.all_tenants] nothing is checked. Values given
as SQL expressions are left to the database.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKeyConstraint, func, select, tuple_
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapper, RelationshipDirection
from sqlalchemy.orm.exc import UnmappedColumnError
from sqlalchemy.sql import ClauseElement

from sqla_repo._coerce import UNSUPPORTED, CoercionError, coerce, collation_key, python_type
from sqla_repo.context import tenant_scope
from sqla_repo.exceptions import ForeignKeyViolationError
from sqla_repo.mixins.tenant import TenantMixin

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from sqlalchemy import Column
    from sqlalchemy.orm import InstrumentedAttribute, Session

__all__ = ["check_objects", "check_rows", "tenant_references"]

_CHUNK = 500  # values per IN list: far below every backend's bound-parameter limit


@dataclass(frozen=True, eq=False)
class TenantReference:
    """One foreign key of a model whose referred table belongs to a tenant-scoped model."""

    model: type[Any]
    """The referencing model."""
    constraint: ForeignKeyConstraint
    keys: tuple[str, ...]
    """Attribute keys of the local columns, in constraint order."""
    columns: tuple[Column[Any], ...]
    """The local columns (their types coerce the values)."""
    target: type[Any]
    """The tenant-scoped model referred to."""
    target_attrs: tuple[InstrumentedAttribute[Any], ...]
    """Its attributes for the referred columns, in constraint order."""
    relationship: str | None
    """A many-to-one relationship that sets exactly these columns, if the model has one."""

    def refusal(self) -> ForeignKeyViolationError:
        """The error for a value that references no visible row."""
        name = self.constraint.name
        return ForeignKeyViolationError(
            model=self.model,
            constraint=name if isinstance(name, str) else None,
            column=self.keys[0] if len(self.keys) == 1 else None,
        )


@functools.cache
def tenant_references(mapper: Mapper[Any]) -> tuple[TenantReference, ...]:
    """The foreign keys of *mapper*'s table that point into tenant-scoped tables."""
    out: list[TenantReference] = []
    tables = {m.local_table for m in mapper.iterate_to_root()}
    for table in tables:
        for constraint in getattr(table, "foreign_key_constraints", ()):
            target = _tenant_mapper_of(mapper, constraint)
            if target is None:
                continue
            try:
                keys = tuple(mapper.get_property_by_column(c).key for c in constraint.columns)
                target_keys = tuple(
                    target.get_property_by_column(e.column).key for e in constraint.elements
                )
            except UnmappedColumnError:
                continue  # a column excluded from the mapping: nothing writes it
            out.append(
                TenantReference(
                    model=mapper.class_,
                    constraint=constraint,
                    keys=keys,
                    columns=tuple(constraint.columns),
                    target=target.class_,
                    target_attrs=tuple(getattr(target.class_, k) for k in target_keys),
                    relationship=_relationship_for(mapper, keys),
                )
            )
    return tuple(out)


def _tenant_mapper_of(mapper: Mapper[Any], constraint: ForeignKeyConstraint) -> Mapper[Any] | None:
    referred = constraint.referred_table
    candidates = [
        m
        for m in mapper.registry.mappers
        if m.local_table is referred and issubclass(m.class_, TenantMixin)
    ]
    # The topmost mapper of the table: a query on it covers every subclass.
    for candidate in candidates:
        if candidate.inherits is None or candidate.inherits.local_table is not referred:
            return candidate
    return None


def _relationship_for(mapper: Mapper[Any], keys: tuple[str, ...]) -> str | None:
    for rel in mapper.relationships:
        if rel.direction is not RelationshipDirection.MANYTOONE:
            continue
        local = {mapper.get_property_by_column(c).key for c in rel.local_columns}
        if local == set(keys):
            return rel.key
    return None


def _value(ref: TenantReference, row: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The referenced key in *row*, coerced; ``None`` when there is nothing to check."""
    out = []
    for key, column in zip(ref.keys, ref.columns, strict=True):
        value = row.get(key)
        if value is None or isinstance(value, ClauseElement):
            # A NULL part means the key references nothing (MATCH SIMPLE).
            return None
        if python_type(column.type) is not UNSUPPORTED:
            try:
                value = coerce(value, column.type, max_length=None)
            except CoercionError:
                return None  # the database refuses it with a typed error of its own
        out.append(value)
    return tuple(out)


def _needs_check() -> bool:
    return not tenant_scope().all_tenants


def check_rows(session: Session, mapper: Mapper[Any], rows: Iterable[Mapping[str, Any]]) -> None:
    """Refuse *rows* (attribute-keyed values) that reference a row the tenant cannot see."""
    refs = tenant_references(mapper)
    if not refs or not _needs_check():
        return
    wanted: dict[TenantReference, set[tuple[Any, ...]]] = {}
    for row in rows:
        for ref in refs:
            value = _value(ref, row)
            if value is not None:
                wanted.setdefault(ref, set()).add(value)
    _verify(session, wanted)


def check_objects(session: Session, objects: Iterable[object]) -> None:
    """Refuse pending or changed *objects* that reference a row the tenant cannot see.

    Runs before a flush, when a foreign key set through a many-to-one relationship has
    not been copied to its columns yet: the related object is checked instead (it is
    in the session, so it was loaded under the tenant's criteria or is new).
    """
    if not _needs_check():
        return
    current = tenant_scope().tenant
    wanted: dict[TenantReference, set[tuple[Any, ...]]] = {}
    for obj in objects:
        state = sa_inspect(obj)
        refs = tenant_references(state.mapper)
        if not refs:
            continue
        new = state.key is None
        for ref in refs:
            if ref.relationship is not None and ref.relationship in state.dict:
                related = state.dict[ref.relationship]
                if related is not None and (new or _changed(state, ref.relationship)):
                    tenant_id = getattr(related, "tenant_id", None)
                    if tenant_id is not None and tenant_id != current:
                        raise ref.refusal()
                    continue
            if new or any(_changed(state, key) for key in ref.keys):
                value = _value(ref, state.dict)
                if value is not None:
                    wanted.setdefault(ref, set()).add(value)
    _verify(session, wanted)


def _changed(state: Any, key: str) -> bool:
    return bool(state.attrs[key].history.added)


def _verify(session: Session, wanted: Mapping[TenantReference, set[tuple[Any, ...]]]) -> None:
    for ref, values in wanted.items():
        ordered = list(values)
        if session.get_bind(mapper=sa_inspect(ref.target)).dialect.name == "mysql":
            # 'abc' and 'ABC ' name one row under the default collations: count it once.
            ordered = list({tuple(map(collation_key, v)): v for v in ordered}.values())
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            attrs = ref.target_attrs
            match = (
                attrs[0].in_([v[0] for v in chunk])
                if len(attrs) == 1
                else tuple_(*attrs).in_(chunk)
            )
            # The session hooks add the tenant criteria (and refuse when no tenant is
            # set); soft-deleted rows are lifted back in, as the database accepts them.
            stmt = (
                select(func.count())
                .select_from(ref.target)
                .where(match)
                .execution_options(include_deleted=True)
            )
            with session.no_autoflush:
                found = session.execute(stmt).scalar_one()
            if found < len(chunk):
                raise ref.refusal()
