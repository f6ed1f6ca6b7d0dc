"""Foreign keys into tenant-scoped tables, checked against the current tenant.

A database foreign key only asks whether the referenced row exists, in any tenant. Left
alone, a write referencing another tenant's row would succeed where a random id fails,
so a tenant could learn which ids exist elsewhere and link its rows to them. Before a
write stores a value in such a foreign key, the database is asked, in one query per
foreign key and write, whether each referenced row exists under the current tenant;
when one does not, the write raises
[`ForeignKeyViolationError`][sqla_repo.exceptions.ForeignKeyViolationError], the same
error, message and detail for another tenant's row as for a missing one. The database
compares the values, so its collations and type conversions decide what matches, as
they do for the foreign key itself.

Objects linked through relationships (many-to-one and many-to-many) are refused when
their ``tenant_id`` is another tenant's, and otherwise looked up like key values unless
the same flush inserts them (an object's ``tenant_id`` in memory can be made up, e.g.
with ``merge(load=False)``). Soft-deleted rows of the current tenant stay referenceable, as the
database allows. Inside [`all_tenants()`][sqla_repo.context.all_tenants] nothing is
checked. Values given as SQL expressions are left to the database.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, ForeignKeyConstraint, and_, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapper, RelationshipDirection
from sqlalchemy.orm.exc import UnmappedColumnError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.visitors import iterate

from sqla_repo._coerce import UNSUPPORTED, CoercionError, coerce, python_type
from sqla_repo.context import tenant_scope
from sqla_repo.exceptions import ForeignKeyViolationError, TenantRequiredError
from sqla_repo.mixins.tenant import TenantMixin

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from sqlalchemy.orm import InstrumentedAttribute, Session

__all__ = ["check_objects", "check_rows", "forget", "tenant_references"]

# Values per query. Each becomes one EXISTS with its key and tenant parameters (the
# tenant twice: explicit and from the session hooks), which keeps a chunk of keys of up
# to five columns under SQLite's historical limit of 999 parameters. Chunks are padded to
# a power of two so that the compiled-statement cache holds at most eight shapes.
_CHUNK = 128

_Key = tuple[Any, ...]
_UNCHECKABLE = object()


@dataclass(frozen=True, eq=False)
class TenantReference:
    """Something a write can point at in a tenant-scoped table.

    A foreign key, or the primary key of the objects a relationship links (a
    many-to-many relationship has no local key).
    """

    model: type[Any]
    """The referencing model."""
    constraint: ForeignKeyConstraint | None
    keys: tuple[str, ...]
    """Attribute keys of the local columns, in constraint order (empty for a link)."""
    columns: tuple[Column[Any], ...]
    """The local columns (their types coerce the values)."""
    target: type[Any]
    """The tenant-scoped model referred to."""
    target_attrs: tuple[InstrumentedAttribute[Any], ...]
    """Its attributes for the referred columns, in key order."""
    relationships: tuple[str, ...] = ()
    """Writable many-to-one relationships that set exactly these columns at flush."""

    def refusal(self) -> ForeignKeyViolationError:
        """The error for a value that references no visible row."""
        name = None if self.constraint is None else self.constraint.name
        return ForeignKeyViolationError(
            model=self.model,
            constraint=name if isinstance(name, str) else None,
            column=self.keys[0] if len(self.keys) == 1 else None,
        )


@dataclass(frozen=True)
class _Links:
    """What a mapper's writes can reference in tenant-scoped tables."""

    references: tuple[TenantReference, ...]
    related: tuple[tuple[str, TenantReference], ...]
    """Writable many-to-one and many-to-many relationships to tenant-scoped models, each
    with what identifies the objects it links."""


def forget() -> None:
    """Drop the cached analysis (new mappers or relationships were configured)."""
    _links.cache_clear()


def tenant_references(mapper: Mapper[Any]) -> tuple[TenantReference, ...]:
    """The foreign keys of *mapper*'s tables that point into tenant-scoped tables."""
    return _links(mapper).references


@functools.cache
def _links(mapper: Mapper[Any]) -> _Links:
    targets = _tenant_tables()
    references: list[TenantReference] = []
    for table in {m.local_table for m in mapper.iterate_to_root()}:
        for constraint in getattr(table, "foreign_key_constraints", ()):
            target = targets.get(constraint.referred_table)
            if target is None or _is_inheritance_link(mapper, constraint):
                continue
            try:
                keys = tuple(mapper.get_property_by_column(c).key for c in constraint.columns)
                target_keys = tuple(
                    target.get_property_by_column(e.column).key for e in constraint.elements
                )
            except UnmappedColumnError:
                continue  # a column excluded from the mapping: nothing writes it
            references.append(
                TenantReference(
                    model=mapper.class_,
                    constraint=constraint,
                    keys=keys,
                    columns=tuple(constraint.columns),
                    target=target.class_,
                    target_attrs=tuple(getattr(target.class_, k) for k in target_keys),
                    relationships=_relationships_setting(mapper, keys),
                )
            )
    related = []
    for rel in mapper.relationships:
        if (
            rel.viewonly
            or rel.direction is RelationshipDirection.ONETOMANY
            or not issubclass(rel.mapper.class_, TenantMixin)
        ):
            continue
        ref = next((r for r in references if rel.key in r.relationships), None)
        if ref is None:  # many-to-many: the association row holds the primary key
            ref = TenantReference(
                model=mapper.class_,
                constraint=None,
                keys=(),
                columns=(),
                target=rel.mapper.class_,
                target_attrs=tuple(getattr(rel.mapper.class_, k) for k in _pk_keys(rel.mapper)),
            )
        related.append((rel.key, ref))
    return _Links(tuple(references), tuple(related))


def _pk_keys(mapper: Mapper[Any]) -> tuple[str, ...]:
    return tuple(mapper.get_property_by_column(c).key for c in mapper.primary_key)


def _tenant_tables() -> dict[Any, Mapper[Any]]:
    """Every table of a tenant-scoped model, in any registry, with its topmost mapper."""
    out: dict[Any, Mapper[Any]] = {}
    for cls in _subclasses(TenantMixin):
        mapper = sa_inspect(cls, raiseerr=False)
        if not isinstance(mapper, Mapper):
            continue
        table = mapper.local_table
        # A query on the topmost mapper of a table covers every subclass stored in it.
        if table not in out or out[table].isa(mapper):
            out[table] = mapper
    return out


def _subclasses(cls: type[Any]) -> Iterator[type[Any]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _is_inheritance_link(mapper: Mapper[Any], constraint: ForeignKeyConstraint) -> bool:
    """Whether *constraint* is the join of a subclass table to its parent (joined inheritance)."""
    for m in mapper.iterate_to_root():
        if m.inherit_condition is None or constraint.table is not m.local_table:
            continue
        joined = {e for e in iterate(m.inherit_condition) if isinstance(e, Column)}
        referred = {e.column for e in constraint.elements}
        if set(constraint.columns) <= joined and referred <= joined:
            return True
    return False


def _relationships_setting(mapper: Mapper[Any], keys: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for rel in mapper.relationships:
        if rel.viewonly or rel.direction is not RelationshipDirection.MANYTOONE:
            continue
        local = {mapper.get_property_by_column(c).key for c in rel.local_columns}
        if local == set(keys):
            out.append(rel.key)
    return tuple(out)


def _value(ref: TenantReference, row: Mapping[str, Any]) -> Any:
    """The referenced key in *row*, coerced to the local and the referred columns' types.

    ``None`` when there is nothing to check, ``_UNCHECKABLE`` for a value either column
    type cannot hold exactly.
    """
    out = []
    for key, column, attr in zip(ref.keys, ref.columns, ref.target_attrs, strict=True):
        value = row.get(key)
        if value is None or isinstance(value, ClauseElement):
            # A NULL part means the key references nothing (MATCH SIMPLE).
            return None
        for type_ in (column.type, attr.type):
            if python_type(type_) is UNSUPPORTED:
                continue
            try:
                value = coerce(value, type_, max_length=None)
            except CoercionError:
                # The database might convert it (1.0, True, "1.0") and store a link to
                # a row nobody checked: refuse it like any reference to nothing.
                return _UNCHECKABLE
        out.append(value)
    return tuple(out)


def _collect(
    wanted: dict[TenantReference, set[_Key]], ref: TenantReference, row: Mapping[str, Any]
) -> None:
    value = _value(ref, row)
    if value is _UNCHECKABLE:
        raise ref.refusal()
    if value is not None:
        wanted.setdefault(ref, set()).add(value)


def check_rows(session: Session, mapper: Mapper[Any], rows: Iterable[Mapping[str, Any]]) -> None:
    """Refuse *rows* (attribute-keyed values) that reference a row the tenant cannot see."""
    refs = tenant_references(mapper)
    if not refs or tenant_scope().all_tenants:
        return
    wanted: dict[TenantReference, set[_Key]] = {}
    for row in rows:
        for ref in refs:
            _collect(wanted, ref, row)
    _verify(session, wanted, pending={}, tenant_id=tenant_scope().tenant)


def check_objects(session: Session, objects: Iterable[object], flushed: Iterable[object]) -> None:
    """Refuse pending or changed *objects* that reference a row the tenant cannot see.

    Runs before a flush, whose new objects are among *flushed*. A foreign key set
    through a many-to-one relationship is copied to its columns only during the flush,
    so the related object is checked instead; rows this flush inserts count as existing.
    """
    scope = tenant_scope()
    if scope.all_tenants:
        return
    current = scope.tenant
    inserted = {id(obj) for obj in flushed}
    wanted: dict[TenantReference, set[_Key]] = {}
    for obj in objects:
        state = sa_inspect(obj)
        links = _links(state.mapper)
        if not links.references and not links.related:
            continue
        linked = _collect_related(wanted, state, links, inserted, current)
        new = state.key is None
        for ref in links.references:
            if any(rel in linked for rel in ref.relationships):
                continue  # the relationship overwrites the columns at flush; checked above
            if new or any(state.attrs[key].history.added for key in ref.keys):
                _collect(wanted, ref, state.dict)
    if wanted:
        pending = _pending_keys(session, wanted, inserted, current)
        _verify(session, wanted, pending=pending, tenant_id=current)


def _collect_related(
    wanted: dict[TenantReference, set[_Key]],
    state: Any,
    links: _Links,
    inserted: set[int],
    current: str | None,
) -> set[str]:
    """Check the objects newly linked through relationships; return those relationships.

    Another tenant's object is refused at once. An object this flush inserts is
    checked by the tenant hook itself; any other is looked up like a key value, since
    its ``tenant_id`` in memory proves nothing (``merge(load=False)`` can make one up).
    """
    linked = set()
    for key, ref in links.related:
        added = [o for o in state.attrs[key].history.added or () if o is not None]
        if not added:
            continue
        linked.add(key)
        for related in added:
            if getattr(related, "tenant_id", None) not in (None, current):
                raise ref.refusal()
            if id(related) not in inserted:
                value = tuple(getattr(related, a.key) for a in ref.target_attrs)
                if None not in value:
                    wanted.setdefault(ref, set()).add(value)
    return linked


def _pending_keys(
    session: Session,
    wanted: Mapping[TenantReference, set[_Key]],
    inserted: set[int],
    current: str | None,
) -> dict[TenantReference, set[_Key]]:
    """Keys of the referenced rows that this flush inserts for the current tenant."""
    out: dict[TenantReference, set[_Key]] = {}
    for obj in session.new:
        if id(obj) not in inserted:
            continue
        for ref in wanted:
            if isinstance(obj, ref.target) and getattr(obj, "tenant_id", None) in (None, current):
                out.setdefault(ref, set()).add(tuple(getattr(obj, a.key) for a in ref.target_attrs))
    return out


def _verify(
    session: Session,
    wanted: Mapping[TenantReference, set[_Key]],
    *,
    pending: Mapping[TenantReference, set[_Key]],
    tenant_id: str | None,
) -> None:
    for ref, values in wanted.items():
        remaining = list(values - pending.get(ref, set()))
        if not remaining:
            continue
        if tenant_id is None:
            raise TenantRequiredError(model=ref.target)
        for start in range(0, len(remaining), _CHUNK):
            if not all(_exist(session, ref, remaining[start : start + _CHUNK], tenant_id)):
                raise ref.refusal()


def _exist(session: Session, ref: TenantReference, chunk: list[_Key], tenant_id: str) -> Any:
    """One row of booleans: whether each key names a row of *tenant_id*.

    One ``EXISTS`` per key rather than a count over ``IN``: the database compares each
    value under the column's collation, so values that name the same row ('abc' and
    'ABC' under a case-insensitive collation) or a non-unique referred column cannot
    make one missing row look present.
    """
    size = 1 << (len(chunk) - 1).bit_length()  # padded with repeats: few statement shapes
    keys = chunk + chunk[-1:] * (size - len(chunk))
    target = ref.target
    probes = [
        select(ref.target_attrs[0])
        .where(
            and_(*(attr == value for attr, value in zip(ref.target_attrs, key, strict=True))),
            target.tenant_id == tenant_id,
        )
        .exists()
        for key in keys
    ]
    # The tenant criterion is explicit above; soft-deleted rows stay referenceable.
    stmt = select(*probes).execution_options(include_deleted=True)
    return session.execute(stmt).one()
