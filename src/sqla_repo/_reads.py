"""The reads of the async repository: by key, by criteria, pages and streams.

Statements are built by [`RepositoryCore`][sqla_repo._repo_core.RepositoryCore]; this
module runs them on the ``AsyncSession``. The synchronous twin is generated from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from sqla_repo import _io, _paging
from sqla_repo._hooks import INCLUDE_DELETED
from sqla_repo._repo_core import Filters, ModelT, OrderBy, RepositoryCore, _is_int
from sqla_repo._statements import pk_criterion
from sqla_repo._translate import translate_read_errors
from sqla_repo.exceptions import (
    ConfigurationError,
    MultipleResultsFoundError,
    NotFoundError,
    RepositoryError,
)
from sqla_repo.pagination import CursorPage, SearchResult, keyset_predicate, row_values

if TYPE_CHECKING:
    import builtins
    from collections.abc import AsyncIterator, Sequence

    from sqlalchemy.sql.base import ExecutableOption

__all__ = ["Reads"]


class Reads(RepositoryCore[ModelT, AsyncSession]):
    """The read methods of the async repository."""

    async def get(
        self,
        ident: Any,
        *,
        options: Sequence[ExecutableOption] = (),
        include_deleted: bool = False,
        populate_existing: bool = False,
    ) -> ModelT | None:
        """Return the row with primary key *ident*, or ``None``.

        An identity lookup never goes through ``base_select()``: it finds the row by key
        in the model's table, with soft-delete and tenant rules applied. Without loader
        options (``default_options`` plus *options*), an object already in the session's
        identity map is returned without a query. With loader options, one ``SELECT``
        by key runs and loads the relationships they name that are not loaded yet;
        attributes already loaded keep their in-memory state. Relationships the model
        declares eager (``lazy="joined"``/``"selectin"``) are loaded either way.

        Args:
            ident: The primary key: a scalar, or a tuple/mapping for composite keys.
            options: Loader options (e.g. ``selectinload(User.posts)``), added to
                ``default_options``.
            include_deleted: Also return a soft-deleted row.
            populate_existing: Read the row even when it is in the identity map, and
                overwrite its loaded attributes and the relationships loaded with it
                (discarding unflushed changes to them).
        """
        loader_options = (*self.default_options, *options)
        execution_options: dict[str, Any] = {INCLUDE_DELETED: True} if include_deleted else {}
        if loader_options:
            # session.get() skips loader options for objects already in the identity map;
            # a SELECT fills in whatever relationship is not loaded yet.
            stmt = select(self.model).where(pk_criterion(self._info, ident))
            stmt = stmt.options(*loader_options)
            if populate_existing:
                execution_options["populate_existing"] = True
            with translate_read_errors(self.model):
                result = await self.session.scalars(stmt.execution_options(**execution_options))
                obj = result.unique().one_or_none()
        else:
            identity = self._info.identity(ident)
            with translate_read_errors(self.model):
                if execution_options or populate_existing:
                    obj = await self.session.get(
                        self.model,
                        identity,
                        execution_options=execution_options,
                        populate_existing=populate_existing,
                    )
                else:  # SQLAlchemy's own defaults: no options to merge
                    obj = await self.session.get(self.model, identity)
        return self._visible(obj, include_deleted=include_deleted)

    async def get_by_id(
        self,
        ident: Any,
        *,
        options: Sequence[ExecutableOption] = (),
        include_deleted: bool = False,
        populate_existing: bool = False,
    ) -> ModelT:
        """Return the row with primary key *ident* (same lookup rules as ``get()``).

        Raises:
            NotFoundError: No visible row has that key (a soft-deleted row or another
                tenant's row counts as missing).
        """
        obj = await self.get(
            ident,
            options=options,
            include_deleted=include_deleted,
            populate_existing=populate_existing,
        )
        if obj is None:
            raise self._not_found(ident)
        return obj

    async def get_one_or_none(
        self,
        *where: ColumnElement[bool],
        options: Sequence[ExecutableOption] = (),
        include_deleted: bool = False,
        populate_existing: bool = False,
        **eq: Any,
    ) -> ModelT | None:
        """Return the single row matching *where* and *eq*, or ``None``.

        ``populate_existing=True`` overwrites an object already in the identity map with
        the row read (see ``get()``).

        Raises:
            MultipleResultsFoundError: More than one row matches.
        """
        stmt = self._select(where, None, eq, options, include_deleted=include_deleted).limit(2)
        if populate_existing:
            stmt = stmt.execution_options(populate_existing=True)
        with translate_read_errors(self.model):
            rows = (await self.session.scalars(stmt)).unique().all()
        if len(rows) > 1:
            raise MultipleResultsFoundError(model=self.model)
        return rows[0] if rows else None

    async def get_one(
        self,
        *where: ColumnElement[bool],
        options: Sequence[ExecutableOption] = (),
        include_deleted: bool = False,
        populate_existing: bool = False,
        **eq: Any,
    ) -> ModelT:
        """Return the single row matching *where* and *eq*.

        Raises:
            NotFoundError: No row matches.
            MultipleResultsFoundError: More than one row matches.
        """
        obj = await self.get_one_or_none(
            *where,
            options=options,
            include_deleted=include_deleted,
            populate_existing=populate_existing,
            **eq,
        )
        if obj is None:
            raise NotFoundError(f"{self.model.__name__} not found", model=self.model)
        return obj

    async def list(
        self,
        *where: ColumnElement[bool],
        filters: Filters | None = None,
        order_by: OrderBy | None = None,
        limit: int | None = None,
        offset: int | None = None,
        options: Sequence[ExecutableOption] = (),
        include_deleted: bool = False,
        populate_existing: bool = False,
        **eq: Any,
    ) -> builtins.list[ModelT]:
        """Return the rows matching *where*, *filters* and *eq*, in a deterministic order.

        Args:
            where: SQLAlchemy boolean expressions (trusted code).
            filters: Untrusted filters, checked against ``filterable_fields``.
            order_by: Sort fields (``"-created_at"``) or expressions; the primary key
                is appended as the final tiebreaker.
            limit: At most this many rows (not capped: ``list()`` is for trusted code).
            offset: Skip this many rows.
            options: Loader options.
            include_deleted: Also return soft-deleted rows.
            populate_existing: Overwrite objects already in the identity map with the
                rows read, and reload the relationships loaded with them.
            eq: Equality criteria on column attributes.
        """
        stmt = self._select(where, filters, eq, options, include_deleted=include_deleted)
        stmt = stmt.order_by(*(key.clause() for key in self._order(order_by)))
        if limit is not None:
            stmt = stmt.limit(limit)
        if offset:
            stmt = stmt.offset(offset)
        if populate_existing:
            stmt = stmt.execution_options(populate_existing=True)
        with translate_read_errors(self.model):
            result = await self.session.scalars(stmt)
            return self._rows(result, stmt)

    async def count(
        self,
        *where: ColumnElement[bool],
        filters: Filters | None = None,
        include_deleted: bool = False,
        **eq: Any,
    ) -> int:
        """Return how many rows match (distinct rows when ``base_select()`` joins)."""
        stmt = self._select(where, filters, eq, (), include_deleted=include_deleted)
        counter = self._count_statement(stmt, include_deleted=include_deleted)
        with translate_read_errors(self.model):
            return int(await self.session.scalar(counter) or 0)

    async def exists(
        self,
        *where: ColumnElement[bool],
        filters: Filters | None = None,
        include_deleted: bool = False,
        **eq: Any,
    ) -> bool:
        """Return whether any row matches, with an ``EXISTS`` query (never a full count)."""
        stmt = self._exists_statement(where, filters, eq, include_deleted=include_deleted)
        with translate_read_errors(self.model):
            return bool(await self.session.scalar(stmt))

    async def search(
        self,
        *where: ColumnElement[bool],
        filters: Filters | None = None,
        order_by: OrderBy | None = None,
        limit: int = 20,
        offset: int = 0,
        options: Sequence[ExecutableOption] = (),
        include_deleted: bool = False,
        include_total: bool = True,
    ) -> SearchResult[ModelT]:
        """Return one offset page of matching rows and, unless skipped, the total.

        The total comes from a separate ``COUNT`` over the filtered statement without
        ORDER BY or loader options (a window ``COUNT(*) OVER ()`` would make the database
        materialise every matching row, and reports 0 past the last page). It is skipped
        when the page itself proves the total: a short page reached from offset 0 or from
        within the rows.

        Raises:
            InvalidFilterError: Bad filter or sort input, ``limit`` outside
                ``1..max_page_size`` or a negative ``offset``.
        """
        self._check_page(limit, offset)
        stmt = self._select(where, filters, {}, options, include_deleted=include_deleted)
        page = stmt.order_by(*(key.clause() for key in self._order(order_by)))
        page = page.limit(limit if include_total else limit + 1).offset(offset or None)
        with translate_read_errors(self.model):
            result = await self.session.scalars(page)
            items = self._rows(result, page)
        total: int | None = None
        has_more = False
        if include_total:
            if len(items) < limit and (items or offset == 0):
                total = offset + len(items)
            else:
                counter = self._count_statement(stmt, include_deleted=include_deleted)
                with translate_read_errors(self.model):
                    total = int(await self.session.scalar(counter) or 0)
            has_more = offset + len(items) < total
        else:
            has_more = len(items) > limit
            del items[limit:]
        return SearchResult(items=items, total=total, limit=limit, offset=offset, has_more=has_more)

    async def paginate(
        self,
        *where: ColumnElement[bool],
        filters: Filters | None = None,
        order_by: OrderBy | None = None,
        limit: int = 20,
        after: str | None = None,
        before: str | None = None,
        options: Sequence[ExecutableOption] = (),
        include_deleted: bool = False,
    ) -> CursorPage[ModelT]:
        """Return one keyset page: cost independent of depth, stable under inserts.

        Rows are compared on the sort keys plus the primary key, so a page never skips or
        repeats a row when rows are inserted or deleted before the cursor.

        Cursors are encrypted and authenticated: they reveal no value and cannot be
        forged. Each is bound to this repository class, the model, the sort order, the
        untrusted ``filters``, ``include_deleted`` and the tenant in force, and refused
        elsewhere; the trusted ``where`` expressions are not bound. A cursor expires
        after ``cursor_max_age`` seconds when that is set.

        Args:
            where: SQLAlchemy boolean expressions (trusted code).
            filters: Untrusted filters, checked against ``filterable_fields``.
            order_by: Sort fields or expressions; cursors are bound to this order.
            limit: Page size, ``1..max_page_size``.
            after: Cursor from a previous page's ``next_cursor``.
            before: Cursor from a previous page's ``previous_cursor``.
            options: Loader options.
            include_deleted: Also return soft-deleted rows.

        Raises:
            InvalidFilterError: Bad filter/sort input, a bad ``limit``, both cursors
                given, or a malformed, tampered, mismatched or expired cursor
                (``detail["reason"]`` says which).
        """
        self._check_page(limit)
        stmt = self._select(where, filters, {}, options, include_deleted=include_deleted)
        with translate_read_errors(self.model):
            return await _paging.keyset_page(
                self.session,
                stmt,
                self.model,
                self._order(order_by),
                limit=limit,
                after=after,
                before=before,
                repository=type(self),
                filters=filters,
                include_deleted=include_deleted,
                max_age=self.cursor_max_age,
            )

    async def stream(
        self,
        *where: ColumnElement[bool],
        filters: Filters | None = None,
        order_by: OrderBy | None = None,
        batch_size: int = 1000,
        options: Sequence[ExecutableOption] = (),
        include_deleted: bool = False,
        **eq: Any,
    ) -> AsyncIterator[ModelT]:
        """Yield matching rows in constant memory, fetching *batch_size* rows at a time.

        Uses a server-side cursor where the driver has one (``yield_per``). Keep the
        transaction open while iterating.

        ``yield_per`` cannot load a collection by joining it (the rows of one object
        could straddle two batches), so collections the model declares
        ``lazy="joined"`` are loaded with ``selectinload()`` instead, one ``SELECT … IN``
        per batch. A ``joinedload()`` of a collection in *options* is refused.

        The MySQL/MariaDB drivers cannot run a query while a server-side cursor is open,
        so there, when relationships are loaded eagerly (declared on the model or in
        ``default_options``/*options*), the rows are read in keyset batches of
        *batch_size* instead (ORDER BY must then name columns of the model).

        Raises:
            ConfigurationError: *options* join-load a collection (use ``selectinload()``),
                or keyset batches are needed and ORDER BY has an expression.
        """
        joined = self._info.joined_collections
        if joined:
            options = (*(selectinload(getattr(self.model, r.key)) for r in joined), *options)
        try:
            stmt = self._select(where, filters, eq, options, include_deleted=include_deleted)
            keys = self._order(order_by)
            if self.dialect_name in {"mysql", "mariadb"} and (
                self._info.eager_keys or self.default_options or options
            ):
                async for obj in self._stream_by_key(stmt, keys, batch_size):
                    yield obj
                return
            stmt = stmt.order_by(*(key.clause() for key in keys))
            with translate_read_errors(self.model):
                result = await _io.stream_scalars(
                    self.session, stmt.execution_options(yield_per=batch_size)
                )
        except sa_exc.InvalidRequestError as exc:
            # Raised before any row is read: yield_per with a joined collection, or a
            # joinedload() of a collection the model declares lazy="joined".
            if "yield_per" not in str(exc) and "in conflict" not in str(exc):
                raise
            msg = "stream() cannot join-load a collection: use selectinload()"
            raise ConfigurationError(msg, model=self.model) from None
        async for obj in result:
            yield obj

    async def _stream_by_key(
        self, stmt: Select[Any], keys: Sequence[Any], batch_size: int
    ) -> AsyncIterator[ModelT]:
        """Yield the rows of *stmt* in *keys* order, one buffered keyset batch at a time."""
        if not _is_int(batch_size) or batch_size <= 0:
            msg = "batch_size must be a positive integer"
            raise RepositoryError(msg, model=self.model)
        after: builtins.list[Any] | None = None
        while True:
            batch = (
                stmt if after is None else stmt.where(keyset_predicate(keys, after, forward=True))
            )
            batch = batch.order_by(*(key.clause() for key in keys)).limit(batch_size)
            with translate_read_errors(self.model):
                rows = (await self.session.scalars(batch)).unique().all()
            if len(rows) == batch_size:
                after = row_values(rows[-1], keys)
            for obj in rows:
                yield obj
            if len(rows) < batch_size:
                return

    async def _ready(
        self, objs: Sequence[Any], options: Sequence[ExecutableOption], *, expired: bool = False
    ) -> None:
        """Load what a returned object must have, so that touching it needs no lazy IO.

        That is the relationships the model declares eager (``lazy="joined"``,
        ``"selectin"``…) and those named by ``default_options`` and *options*. One
        ``SELECT`` by key loads whatever is not loaded yet (loaded attributes are kept),
        and is skipped when nothing is missing. With *expired*, columns the flush expired
        (written as SQL expressions) are loaded too.
        """
        for stmt in self._ready_statements(objs, options, expired=expired):
            with translate_read_errors(self.model):
                (await self.session.scalars(stmt)).unique().all()
