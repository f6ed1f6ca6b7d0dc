"""The single-row and set-based writes of the async repository.

Create, get-or-create, update and delete, by instance, key or criteria. Rows are checked
and statements built by the flavour-neutral modules; this module guards and runs them.
The synchronous twin is generated from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, and_
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import lazyload

from sqla_repo import _bulk, _reads, _row_prep, _statement_writes, _transactions
from sqla_repo._coerce import SQL_VALUES
from sqla_repo._repo_core import ModelT, _foreign_flush_listeners
from sqla_repo._statements import pk_criterion, update_values
from sqla_repo._translate import translate_read_errors
from sqla_repo.exceptions import RepositoryError, UniqueViolationError
from sqla_repo.types import utcnow

if TYPE_CHECKING:
    from sqlalchemy.sql.base import ExecutableOption

__all__ = ["Writes"]


class Writes(_reads.Reads[ModelT], _transactions.Transactions[ModelT]):
    """The write methods of the async repository that take one row or criteria."""

    async def create(
        self,
        obj_or_mapping: ModelT | Mapping[str, Any],
        /,
        *,
        options: Sequence[ExecutableOption] = (),
    ) -> ModelT:
        """Insert one row and return it with its key and defaults.

        The returned object has the relationships the model declares eager loaded, and
        those named by ``default_options`` and *options* (loader options, as for the
        reads): touching them needs no IO. That costs one ``SELECT`` after the INSERT
        when there is something to load.

        Prefer a mapping when the row links to objects already loaded
        (``{"title": "t", "author": user}``): the repository then builds the object inside
        its SAVEPOINT. An instance built beforehand with such a link is already pending
        in the session (cascaded from the loaded object's collection), so it is flushed
        with the changes already pending, before the SAVEPOINT opens (see ``atomic()``):
        a conflict it causes leaves the session needing a rollback.

        Where the dialect has ``INSERT … RETURNING`` and the row is one plain row (a
        mapping or a new instance without relationship values, of a class mapped to one
        table without a polymorphic identity), it is written by one ORM
        ``INSERT … RETURNING`` instead of a flush (not when ``before_insert`` or
        ``after_insert`` mapper events are listened to; a mapping still goes through the
        model's constructor and ``@validates`` methods when it has them, and the values
        are checked again after them): no SAVEPOINT on SQLite and
        MySQL/MariaDB (a failed statement is rolled back alone), a plain one on
        PostgreSQL. A given instance becomes the persistent object, so
        ``create(obj) is obj`` holds on both paths.

        Raises:
            ConflictError: An integrity constraint refused the row (the subclass names
                which kind); the session stays usable.
            InvalidValueError: A value its column cannot hold exactly on every backend
                (a backend would round, truncate, reinterpret or refuse it).
            RepositoryError: The mapping names an attribute the model does not have.
        """
        self._check_new(obj_or_mapping)
        info = self._info
        is_mapping = isinstance(obj_or_mapping, Mapping)
        values = (
            dict(obj_or_mapping)
            if isinstance(obj_or_mapping, Mapping)
            else info.instance_values(obj_or_mapping)
        )
        info.check_values(values, sql="constant")
        if await self._insert_statement_fits(obj_or_mapping, values, is_mapping=is_mapping):
            if is_mapping and not info.builds_plainly(values):
                # The model's own constructor or validators run, as on the flush path.
                obj_or_mapping = self.model(**values)
                values = info.instance_values(obj_or_mapping)
                info.check_values(values, sql="constant")
                is_mapping = False
            row = _row_prep.drop_defaulted_none(info, [values])[0]
            self._check_tenant_value(row, insert=True)
            obj = await self._run_statement(
                _statement_writes.insert_one, info, row, None if is_mapping else obj_or_mapping
            )
            await self._ready([obj], options)
            return obj  # type: ignore[no-any-return]
        async with self.atomic(flush=True):
            # Built after the SAVEPOINT's own flush: an object linked by a backref to a
            # loaded one would otherwise be cascaded into that flush, unprotected.
            obj = (
                self.model(**obj_or_mapping)
                if isinstance(obj_or_mapping, Mapping)
                else obj_or_mapping
            )
            self.session.add(obj)
            await self.session.flush()
        await self._ready([obj], options, expired=True)
        return obj

    async def _insert_statement_fits(
        self, obj_or_mapping: object, values: Mapping[str, Any], *, is_mapping: bool
    ) -> bool:
        """Whether ``create()`` may write the row with one ORM ``INSERT … RETURNING``."""
        info = self._info
        if not info.insert_statement_ok:
            return False
        dispatch = info.mapper.dispatch
        if (
            dispatch.before_insert
            or dispatch.after_insert
            or _foreign_flush_listeners(self.session)
            # A SQL expression is evaluated by the flush, not bound as a value.
            or any(isinstance(value, SQL_VALUES) for value in values.values())
        ):
            return False  # or the application listens to the unit of work: let it see this row
        if is_mapping:
            if not info.relationship_keys.isdisjoint(values):
                return False
        else:
            state = sa_inspect(obj_or_mapping)
            if not state.transient:
                return False  # pending in a session: cascades may come with it
            state_dict = state.dict
            if any(state_dict.get(k) not in (None, []) for k in info.relationship_keys):
                return False
        return await self._inserts_returning()

    async def get_or_create(
        self,
        defaults: Mapping[str, Any] | None = None,
        *,
        options: Sequence[ExecutableOption] = (),
        **unique_eq: Any,
    ) -> tuple[ModelT, bool]:
        """Return the row matching *unique_eq*, creating it from *unique_eq* and *defaults*.

        Race-safe: *unique_eq* must name a unique constraint. When a concurrent
        transaction inserts the same key first, the INSERT fails inside a SAVEPOINT and
        the row is read again with a locking read (which sees the latest committed row
        even under MySQL's REPEATABLE READ). Returns ``(row, created)``; the row has
        its eager relationships and those of *options* loaded, as ``create()``'s has.

        Raises:
            ConflictError: The key is taken by a row this call may not see (soft-deleted
                or, with a global unique key, another tenant's).
        """
        if not unique_eq:
            msg = "get_or_create() needs at least one key=value"
            raise RepositoryError(msg, model=self.model)
        # Keys are compared as the column's type ("5" is 5), as get_one() compares them;
        # then checked before the read: a value no row could hold is not looked up.
        info = self._info
        unique_eq = info.coerce_keys(unique_eq, unique_eq)
        info.check_values({**(defaults or {}), **unique_eq}, sql="constant")
        found = await self.get_one_or_none(options=options, **unique_eq)
        if found is not None:
            return found, False
        try:
            return await self.create({**(defaults or {}), **unique_eq}, options=options), True
        except RepositoryError as conflict:
            if not isinstance(conflict, UniqueViolationError):
                raise
            stmt = self._select((), None, unique_eq, (), include_deleted=False)
            # No eager JOIN under the lock: PostgreSQL refuses FOR SHARE on the nullable
            # side of an outer join. The relationships are loaded afterwards.
            stmt = stmt.options(lazyload("*")).with_for_update(read=True)
            stmt = stmt.execution_options(populate_existing=True)
            with translate_read_errors(self.model):
                found = (await self.session.scalars(stmt)).one_or_none()
            if found is None:
                raise
            await self._ready([found], options)
            return found, False

    async def update(
        self,
        obj_or_id: Any,
        values: Mapping[str, Any] | None = None,
        /,
        *,
        options: Sequence[ExecutableOption] = (),
        **changes: Any,
    ) -> ModelT:
        """Change attributes of one row and return it.

        Given an instance, the attributes are set and flushed (with the version check of
        [`VersionMixin`][sqla_repo.mixins.VersionMixin]). Given a key, one
        ``UPDATE … RETURNING`` runs without loading the row first (``UPDATE`` then a
        ``SELECT`` where the dialect has no ``UPDATE … RETURNING``); the version is
        incremented without a check. On a joined-table subclass, whose row spans several
        tables, the key is first read with a locking ``SELECT``, then each table is
        updated with its own columns and the row is read back.

        Raises:
            NotFoundError: No visible row has that key.
            ConcurrencyError: The instance's version is stale.
            ConflictError: The change breaks a constraint.
        """
        merged = {**(values or {}), **changes}
        instance = isinstance(obj_or_id, self.model)
        self._info.check_keys(merged, what="field", relationships=instance)
        self._info.check_values(merged)
        self._check_tenant_value(merged)
        if isinstance(obj_or_id, self.model):
            try:
                async with self.atomic(flush=True):
                    for key, value in merged.items():
                        setattr(obj_or_id, key, value)
                    await self.session.flush()
            except RepositoryError:
                # The SAVEPOINT rollback expired the object; reload it now, while IO is
                # allowed, so that reading it after the error needs no lazy load.
                await self._reload(obj_or_id)
                raise
            await self._ready([obj_or_id], options)
            return obj_or_id
        if not merged:
            return await self.get_by_id(obj_or_id, options=options)
        info = self._info
        old = info.identity(obj_or_id)
        # Where the key changes and the row is read back after the UPDATE (no RETURNING),
        # it is found by its new key.
        new = (
            None
            if info.pk_keys_set.isdisjoint(merged)
            else tuple(merged.get(k, v) for k, v in zip(info.pk_keys, old, strict=True))
        )
        if info.joined:
            identity = None if new is None else pk_criterion(info, new)
            async with self._guard():
                await self._check_references([merged])
                obj = await _bulk.update_returning(
                    self.session,
                    info,
                    pk_criterion(info, old),
                    update_values(info, merged),
                    update_returning=await self._update_returning(),
                    identity=identity,
                )
        else:
            # One table: its own UPDATE, by the table's own key columns (a Core statement).
            update_returning = await self._update_returning()
            obj = await self._run_statement(
                _statement_writes.update_one,
                info,
                old,
                merged,
                new,
                update_returning=update_returning,
            )
        if obj is None:
            raise self._not_found(obj_or_id)
        await self._ready([obj], options)
        return obj  # type: ignore[no-any-return]

    async def update_where(
        self,
        *where: ColumnElement[bool],
        values: Mapping[str, Any],
        include_deleted: bool = False,
    ) -> int:
        """Update every visible row matching *where*; return how many rows changed.

        ``updated_at``/``updated_by`` are stamped and ``version`` is incremented.
        """
        self._info.check_keys(values, what="field")
        self._info.check_values(values)
        self._check_tenant_value(values)
        async with self._guard():
            await self._check_references([values])
            return await _bulk.update_where(
                self.session, self._info, where, update_values(self._info, values), include_deleted
            )

    async def delete(self, obj_or_id: Any, *, include_deleted: bool = False) -> None:
        """Delete one row for good (a hard delete), by instance or primary key.

        By key, one ``DELETE`` runs without loading the row. Where rows of the model
        span several tables (joined-table inheritance, on the model or a subclass), the
        key is read with a locking ``SELECT`` and the row is deleted from every table,
        subclass tables first, as deleting the instance does.

        Raises:
            NotFoundError: No visible row has that key.
            ConflictError: Other rows still reference it.
        """
        if isinstance(obj_or_id, self.model):
            async with self.atomic(flush=True):
                await self.session.delete(obj_or_id)
                await self.session.flush()
            return
        info = self._info
        if len(info.delete_tables) > 1:
            async with self._guard():
                count = await _bulk.delete_where(
                    self.session, info, (pk_criterion(info, obj_or_id),), include_deleted
                )
        else:
            count = await self._run_statement(
                _statement_writes.delete_one, info, pk_criterion(info, obj_or_id), include_deleted
            )
        if count == 0:
            raise self._not_found(obj_or_id)

    async def delete_where(self, *where: ColumnElement[bool], include_deleted: bool = False) -> int:
        """Delete every visible row matching *where* for good; return how many."""
        async with self._guard():
            return await _bulk.delete_where(self.session, self._info, where, include_deleted)

    def _require_soft_delete(self) -> None:
        if not self._info.soft_delete:
            msg = f"{self.model.__name__} does not use SoftDeleteMixin"
            raise RepositoryError(msg, model=self.model)

    async def soft_delete(self, obj_or_id: Any) -> ModelT:
        """Mark one row deleted (``deleted_at`` = now) and return it.

        Deleting an already soft-deleted row raises ``NotFoundError``, like any other
        invisible row.

        Raises:
            RepositoryError: The model has no ``SoftDeleteMixin``.
            NotFoundError: No visible row has that key.
        """
        self._require_soft_delete()
        return await self._set_deleted(obj_or_id, deleted=True)

    async def restore(self, obj_or_id: Any) -> ModelT:
        """Clear ``deleted_at`` of one row and return it (a live row is returned as is).

        Raises:
            RepositoryError: The model has no ``SoftDeleteMixin``.
            NotFoundError: No row (deleted or not) has that key.
        """
        self._require_soft_delete()
        return await self._set_deleted(obj_or_id, deleted=False)

    async def _set_deleted(self, obj_or_id: Any, *, deleted: bool) -> ModelT:
        value = utcnow() if deleted else None
        if isinstance(obj_or_id, self.model):
            if deleted and obj_or_id.deleted_at is not None:  # type: ignore[attr-defined]
                raise self._not_found(sa_inspect(obj_or_id).identity)
            return await self.update(obj_or_id, deleted_at=value)
        identity = criterion = pk_criterion(self._info, obj_or_id)
        if not deleted:
            # Only a deleted row changes: restoring a live row leaves updated_at and
            # version alone, as restoring a live instance does.
            criterion = and_(criterion, self._info.columns["deleted_at"].is_not(None))
        async with self._guard():
            obj = await _bulk.update_returning(
                self.session,
                self._info,
                criterion,
                update_values(self._info, {"deleted_at": value}),
                update_returning=await self._update_returning(),
                include_deleted=not deleted,
                identity=identity,
            )
        if obj is None and not deleted:
            obj = await self.get(obj_or_id)
        if obj is None:
            raise self._not_found(obj_or_id)
        return obj  # type: ignore[no-any-return]
