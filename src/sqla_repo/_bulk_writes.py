"""The many-row writes of the async repository: bulk inserts, updates and upserts.

Rows are prepared by :mod:`sqla_repo._row_prep` and run by :mod:`sqla_repo._bulk`; this
module checks them and guards the write. The synchronous twin is generated from it.
"""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect as sa_inspect

from sqla_repo import _bulk, _reads, _row_prep, _transactions
from sqla_repo._repo_core import ModelT
from sqla_repo.routing import use_primary

if TYPE_CHECKING:
    import builtins
    from collections.abc import Iterable, Mapping, Sequence

    from sqlalchemy.sql.base import ExecutableOption

__all__ = ["BulkWrites"]


class BulkWrites(_reads.Reads[ModelT], _transactions.Transactions[ModelT]):
    """The write methods of the async repository that take many rows."""

    async def bulk_create(
        self,
        rows: Iterable[ModelT | Mapping[str, Any]],
        *,
        batch_size: int | None = None,
        options: Sequence[ExecutableOption] = (),
    ) -> builtins.list[ModelT]:
        """Insert many rows with multi-row ``INSERT … RETURNING`` and return them in order.

        All or nothing: the batches run inside one SAVEPOINT. By default the rows with
        the same keys go in one ``execute()``, which SQLAlchemy's insertmanyvalues splits
        into statements of ``insertmanyvalues_page_size`` rows (1000 unless the engine
        sets it); *batch_size* sets the rows per ``execute()`` instead. Instances given
        are used as value carriers; the returned objects are the persistent ones, ready to
        use as ``create()``'s are (eager relationships and *options* loaded, with one more
        ``SELECT`` per 500 rows when there is something to load). A ``None`` value
        behaves as in ``create()``: a column with a default (Python, server-side or an
        autoincrement key) gets the default. ``created_at`` and ``updated_at`` (any column
        whose default is [`utcnow()`][sqla_repo.types.utcnow]) get one instant for all
        the rows of the call, the time of the write.

        Raises:
            ConflictError: A row broke a constraint; nothing was inserted.
        """
        values, groups, indexes = self._insert_values(rows)
        if not values:
            return []
        # Without INSERT … RETURNING the unit of work inserts the rows (a flush).
        flushes = not await self._inserts_returning()
        loaded: builtins.list[Any] = []
        try:
            async with self._guard(several=True, flushes=flushes):
                await self._check_references(values)
                objs = await _bulk.insert_returning(
                    self.session,
                    self._info,
                    groups,
                    indexes,
                    batch_size=batch_size,
                    dialect=self.dialect_name,
                    loaded=loaded,
                )
        except BaseException:
            # The batches sent before the failure were rolled back with it. Their rows
            # are new: nothing of them was in the session before (no snapshot needed).
            if self._protect():
                await self._restore_loaded(loaded, set(), reload=False)
            raise
        await self._ready(objs, options)
        return objs

    async def bulk_insert(
        self, rows: Iterable[ModelT | Mapping[str, Any]], *, batch_size: int | None = None
    ) -> int:
        """Insert many rows without building objects; return how many rows were inserted.

        The same validation as [`bulk_create()`][sqla_repo.repository.BaseRepository.bulk_create]
        (keys, tenant, foreign keys into tenant tables), the same defaults and stamping
        (timestamps, audit columns, tenant, the version's first value) and the same
        atomicity, but ``INSERT`` without ``RETURNING`` and nothing added to the
        session: the fast path for imports.

        Args:
            rows: Mappings or transient instances of the model.
            batch_size: Rows per ``execute()``. By default all rows with the same keys
                go in one call, which the driver's executemany (or SQLAlchemy's
                insertmanyvalues) splits as the server's limits require.

        Raises:
            ConflictError: A row broke a constraint; nothing was inserted.
        """
        values, _, _ = self._insert_values(rows)
        if not values:
            return 0
        # Without RETURNING the driver may run the rows one by one (executemany): only a
        # single row is atomic by itself.
        async with self._guard(several=len(values) > 1):
            await self._check_references(values)
            return await _bulk.insert_many(self.session, self._info, values, batch_size=batch_size)

    def _insert_values(
        self, rows: Iterable[ModelT | Mapping[str, Any]]
    ) -> tuple[
        builtins.list[dict[str, Any]],
        builtins.list[builtins.list[dict[str, Any]]],
        builtins.list[builtins.list[int]],
    ]:
        """The rows of an ``INSERT`` of many rows: copied, grouped, checked and stamped.

        Returns the rows, the rows grouped by key set (the checks and the statements go
        group by group) and the groups' input positions. The write-time columns are
        stamped after the value checks: the stamp is the repository's own value.
        """
        values, groups, indexes = _row_prep.insert_rows(self._info, rows)
        self._info.check_rows(values, groups=groups)
        if self._info.tenant:
            for row in values:
                self._check_tenant_value(row, insert=True)
        _row_prep.stamp_write_time(self._info, groups)
        return values, groups, indexes

    async def bulk_update(
        self, rows: Iterable[Mapping[str, Any]], *, include_deleted: bool = False
    ) -> int:
        """Update rows by primary key (each mapping holds the key and new values).

        Rows of another tenant and soft-deleted rows are skipped; returns how many rows
        were updated. ``updated_at``, ``updated_by`` and ``version`` are maintained.
        """
        info = self._info
        keyed: builtins.list[dict[str, Any]] = []
        for row in rows:
            values = info.coerce_keys(row, info.pk_keys)  # the key finds the row: "3" is 3
            info.check_values(values, keys=info.pk_keys_set, sql="none")
            self._check_tenant_value(values)
            keyed.append(values)
        rows = keyed
        async with self._guard(several=len(rows) > 1):
            await self._check_references(rows)
            return await _bulk.bulk_update(
                self.session, self._info, rows, include_deleted=include_deleted
            )

    async def upsert(
        self,
        values: Mapping[str, Any],
        *,
        conflict_on: Sequence[str],
        update: Sequence[str] | None = None,
        options: Sequence[ExecutableOption] = (),
    ) -> ModelT:
        """Insert a row or, when *conflict_on* matches an existing row, update it.

        The returned object is ready to use as ``create()``'s is (eager relationships
        and *options* loaded).

        Args:
            values: The row.
            conflict_on: The columns of the unique constraint that decides a conflict
                (on MySQL/MariaDB the server checks every unique key; these columns are
                used to read the row back).
            update: Columns to take from *values* on conflict (default: every given
                column except the key, ``conflict_on`` and ``created_*``).
            options: Loader options for the returned object.

        Raises:
            ConflictError: The conflicting row is soft-deleted, another tenant's or (on
                a single-table subclass) a row of another class of the hierarchy.
            RepositoryError: The model is a joined-table subclass: ``ON CONFLICT`` and
                ``ON DUPLICATE KEY`` act on one table, so its upsert is refused.
        """
        rows = await self.bulk_upsert(
            [values], conflict_on=conflict_on, update=update, options=options
        )
        return rows[0]

    async def bulk_upsert(
        self,
        rows: Iterable[Mapping[str, Any]],
        *,
        conflict_on: Sequence[str],
        update: Sequence[str] | None = None,
        batch_size: int = 1000,
        options: Sequence[ExecutableOption] = (),
    ) -> builtins.list[ModelT]:
        """Upsert many rows atomically; return the resulting rows in input order.

        See [`upsert()`][sqla_repo.repository.BaseRepository.upsert]. Two rows with the
        same *conflict_on* values are refused before anything runs.
        """
        return await self._write_keyed(
            rows,
            _bulk.upsert,
            options,
            conflict_on=conflict_on,
            update=update,
            batch_size=batch_size,
        )

    async def bulk_get_or_create(
        self,
        rows: Iterable[Mapping[str, Any]],
        *,
        conflict_on: Sequence[str],
        batch_size: int = 1000,
        options: Sequence[ExecutableOption] = (),
    ) -> builtins.list[ModelT]:
        """Ensure a row exists for each *conflict_on* key; return the rows in input order.

        Rows whose key is taken are not written at all: existing rows keep their values,
        ``updated_at`` and ``version``. The same key may appear several times (the same
        object is returned for each). Race-safe and deadlock-free under concurrent
        callers: keys are inserted in sorted order with ``INSERT … ON CONFLICT DO
        NOTHING`` (``ON DUPLICATE KEY UPDATE key = key`` on MySQL/MariaDB), then every
        row is read back with one locking ``SELECT`` per *batch_size* keys. Atomic: the
        writes run inside one SAVEPOINT.

        ```python
        tags = await TagRepository(session).bulk_get_or_create(
            [{"name": n} for n in article_tags], conflict_on=["name"]
        )
        ```

        Args:
            rows: Mappings, each holding the *conflict_on* columns; the other values
                are used only when the row is inserted.
            conflict_on: The columns of a unique constraint (``ON CONFLICT`` names it
                on PostgreSQL and SQLite).
            batch_size: Rows per INSERT statement and keys per read-back.
            options: Loader options for the returned objects.

        Raises:
            ConflictError: A key is taken by a row this call may not see (soft-deleted
                or another tenant's), as for ``upsert()``; or a row broke another
                constraint.
            RepositoryError: A key value is ``None``, a column is unknown, or the model
                is a joined-table subclass.
        """
        return await self._write_keyed(
            rows, _bulk.get_or_insert, options, conflict_on=conflict_on, batch_size=batch_size
        )

    async def _write_keyed(
        self,
        rows: Iterable[Mapping[str, Any]],
        write: Any,
        options: Sequence[ExecutableOption],
        **kwargs: Any,
    ) -> builtins.list[ModelT]:
        """Check *rows* as inserts, then run the keyed bulk *write* atomically."""
        values = _row_prep.row_dicts(self._info, rows)
        if not values:
            return []
        # Conflict keys are compared as the column's type ("3" is 3): coerced, not refused.
        self._info.check_rows(values, keys=kwargs["conflict_on"])
        for row in values:
            self._check_tenant_value(row, insert=True)
        # The write loads rows into the session (populate_existing): if it fails, what
        # it loaded from rows its rollback undid must not stay there. Pending changes
        # are flushed first (as the guard would): they are the caller's, and kept.
        present = None
        if self._protect():
            with use_primary():
                await self._flush_pending()
            present = set(self.session.identity_map.keys())
        loaded: builtins.list[Any] = []
        try:
            async with self._guard(several=True):
                await self._check_references(values)
                objs: builtins.list[ModelT] = await write(
                    self.session,
                    self._info,
                    values,
                    dialect=self.dialect_name,
                    loaded=loaded,
                    **kwargs,
                )
        except BaseException as exc:
            if present is not None:
                await self._restore_loaded(loaded, present, reload=isinstance(exc, Exception))
            raise
        await self._ready(objs, options)
        return objs

    async def _restore_loaded(
        self, loaded: builtins.list[Any], present: set[Any], *, reload: bool
    ) -> None:
        """Undo in the session what a rolled-back write loaded into it (*loaded*).

        Objects of rows that were not in the session before (*present* holds the
        identity keys from before the write) are expunged; the others are read again,
        since the write overwrote their values with rolled-back ones (expired instead
        when *reload* is false, on cancellation, or when reading fails). Objects the
        write did not load are left as they are.
        """
        session = self.session
        new: builtins.list[Any] = []
        old: builtins.list[Any] = []
        for obj in {id(obj): obj for obj in loaded}.values():
            state = sa_inspect(obj)
            if state.key in present:
                old.append(obj)
            elif obj in session:
                new.append(obj)
        for obj in new:
            session.expunge(obj)
        if not old:
            return
        reloaded = False
        if reload:
            idents = [sa_inspect(obj).identity for obj in old]
            # The write's own error is the one to raise, not this read's.
            with suppress(Exception), use_primary():
                await _bulk.refresh_loaded(session, self._info, idents)
                reloaded = True
        if not reloaded:
            for obj in old:
                session.expire(obj)
