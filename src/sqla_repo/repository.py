"""The generic async repository.

```python
class UserRepository(BaseRepository[User]):
    filterable_fields = {"email": ("eq", "ilike")}
    sortable_fields = ("created_at", "name")


async with sessionmaker() as session, session.begin():
    repo = UserRepository(session)
    user = await repo.create({"email": "ada@example.org"})
    page = await repo.search(filters={"email__ilike": "%@example.org"}, order_by=["-created_at"])
```

The repository **flushes, never commits**: the caller owns the transaction. Statements
that may violate a constraint run inside a SAVEPOINT where a failure would otherwise
poison the transaction, so a [`ConflictError`][sqla_repo.exceptions.ConflictError]
leaves the caller's session usable. Every read honours soft delete and tenant scoping;
``include_deleted=True`` is the only opt-in.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, TypeVar, get_args, get_origin

from sqlalchemy import ColumnElement, Select, and_, select, true, tuple_
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapper, QueryableAttribute, lazyload, selectinload

from sqla_repo import _bulk, _hooks, _io, _paging, rls
from sqla_repo._hooks import INCLUDE_DELETED
from sqla_repo._references import check_rows, tenant_references
from sqla_repo._statements import (
    ModelInfo,
    by_key,
    count_statement,
    fans_out,
    has_join,
    pk_criterion,
    update_values,
)
from sqla_repo._translate import translate_errors, translate_read_errors
from sqla_repo._whitelist import (
    FilterWhitelist,
    SortWhitelist,
    check_settings,
    names_sort_field,
    not_set,
)
from sqla_repo.context import tenant_scope
from sqla_repo.exceptions import (
    ConfigurationError,
    InvalidFilterError,
    MultipleResultsFoundError,
    NotFoundError,
    RepositoryError,
    TenantMismatchError,
    TenantRequiredError,
    UniqueViolationError,
)
from sqla_repo.filters import compile_filters, compile_order_by
from sqla_repo.pagination import CursorPage, SearchResult, keyset_predicate, row_values
from sqla_repo.routing import use_primary
from sqla_repo.types import utcnow

if TYPE_CHECKING:
    from sqlalchemy.engine import ScalarResult
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.sql.base import ExecutableOption

__all__ = ["BaseRepository"]

ModelT = TypeVar("ModelT")
"""The mapped class a repository manages."""
T = TypeVar("T")
OtherModelT = TypeVar("OtherModelT")

_FOR_MODEL: dict[tuple[type[Any], type[Any]], type[Any]] = {}
"""Repository classes made by ``for_model()``, per (repository class, model)."""

Filters = Mapping[str, Any] | Sequence[tuple[str, str, Any]]
OrderBy = str | ColumnElement[Any] | QueryableAttribute[Any] | Sequence[Any]


MAX_OFFSET: Final = 2**63 - 1
"""The largest ``offset`` accepted: the largest value every backend's OFFSET takes."""

_SAVEPOINT_DEPTH: ContextVar[int] = ContextVar("sqla_repo_savepoint_depth", default=0)
"""How many of the repositories' own SAVEPOINTs are open: names them per nesting depth."""


def _is_int(value: object) -> bool:
    """Whether *value* is a real ``int`` (``True`` is not a page size)."""
    return isinstance(value, int) and not isinstance(value, bool)


_OWN_FLUSH_LISTENERS: Final = frozenset({_hooks._on_before_flush, rls._before_flush})  # noqa: SLF001
"""The library's own flush listeners: the INSERT statement path does their work itself."""


def _foreign_flush_listeners(session: Any) -> bool:
    """Whether flush listeners other than the library's own watch *session*."""
    sync_session = getattr(session, "sync_session", session)
    dispatch = sync_session.dispatch
    return any(
        listener not in _OWN_FLUSH_LISTENERS
        for listeners in (
            dispatch.before_flush,
            dispatch.after_flush,
            dispatch.after_flush_postexec,
        )
        for listener in listeners
    )


def _is_mapped(value: object) -> bool:
    return isinstance(value, type) and isinstance(sa_inspect(value, raiseerr=False), Mapper)


class BaseRepository(Generic[ModelT]):
    """CRUD, search, pagination and bulk operations for one mapped class.

    Subclass it with the model as the generic argument (or set ``model``); construct it
    with an ``AsyncSession``. Class-level settings:

    Attributes:
        session: The ``AsyncSession`` given to the constructor; custom methods use it.
        model: The mapped class, inferred from ``BaseRepository[Model]``.
        filterable_fields: Fields untrusted ``filters=`` may name: column attributes,
            hybrid properties and relationship paths such as ``"author.email"``, as a
            collection (every operator) or a mapping to the allowed operators
            (``{"email": ("eq", "iexact")}``); or
            [`ALL_COLUMNS`][sqla_repo.filters.ALL_COLUMNS] for every column attribute.
            ``None`` (the default) accepts no field: naming one raises
            [`ConfigurationError`][sqla_repo.exceptions.ConfigurationError].
        sortable_fields: Fields untrusted ``order_by=`` strings may name, or
            ``ALL_COLUMNS``; ``None`` (the default) accepts no name. SQLAlchemy
            expressions and ``default_order_by`` are trusted and need no listing.
        default_order_by: Order used when a call gives none; the primary key is always
            appended as the final tiebreaker.
        max_page_size: Largest ``limit`` that ``search()`` and ``paginate()`` accept.
        cursor_max_age: Seconds after which ``paginate()`` refuses a cursor
            (``cursor_expired``); ``None``, the default, lets cursors live forever.
        max_in_values: Largest list an ``in``/``not_in`` filter accepts.
        default_options: Loader options (eager loads) added to every read.
        use_savepoints: Wrap writes that may fail in a SAVEPOINT where needed so that a
            failure leaves the transaction usable. Turn off only when you never continue
            a transaction after a [`ConflictError`][sqla_repo.exceptions.ConflictError].
            [`savepoints()`][sqla_repo.repository.BaseRepository.savepoints] overrides it
            for a block of calls.
    """

    model: type[ModelT]
    filterable_fields: ClassVar[FilterWhitelist | None] = None
    sortable_fields: ClassVar[SortWhitelist | None] = None
    default_order_by: ClassVar[Sequence[Any]] = ()
    max_page_size: ClassVar[int] = 100
    cursor_max_age: ClassVar[float | None] = None
    max_in_values: ClassVar[int] = 500
    default_options: ClassVar[Sequence[ExecutableOption]] = ()
    use_savepoints: ClassVar[bool] = True
    _info_cache: ClassVar[ModelInfo | None] = None

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._dialect_name: str | None = None
        self._savepoints: bool | None = None
        self._insert_returning: bool | None = None
        self._can_update_returning: bool | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_settings(cls)  # a malformed whitelist fails here, not on a request
        cls._info_cache = None
        model = cls.__dict__.get("model") or cls._model_from_generic()
        if model is None:
            model = getattr(cls, "model", None)
        if model is None:
            if getattr(cls, "__parameters__", ()):
                return  # still generic: a base for other repositories
            msg = f"{cls.__name__} has no model: subclass BaseRepository[Model] or set model"
            raise ConfigurationError(msg)
        if not _is_mapped(model):
            msg = f"{cls.__name__}.model must be a mapped class, got {model!r}"
            raise ConfigurationError(msg)
        cls.model = model

    @classmethod
    def _model_from_generic(cls) -> type[Any] | None:
        for base in cls.__dict__.get("__orig_bases__", ()):
            origin = get_origin(base)
            if isinstance(origin, type) and issubclass(origin, BaseRepository):
                for arg in get_args(base):
                    if _is_mapped(arg):
                        return arg  # type: ignore[no-any-return]
        return None

    @classmethod
    def for_model(cls, model: type[OtherModelT]) -> type[BaseRepository[OtherModelT]]:
        """Return a repository class for *model*, a mapped class known only at run time.

        For adapters and plugins that receive the model as an argument:

        ```python
        repo = BaseRepository.for_model(user_model)(session)
        ```

        The class derives from the class it is called on, so
        ``AppRepository.for_model(User)`` keeps ``AppRepository``'s settings and
        methods. It is created once per (class, model): repeated calls return the same
        class object.

        Raises:
            ConfigurationError: *model* is not a mapped class.
        """
        key = (cls, model)
        found = _FOR_MODEL.get(key)
        if found is None:
            if not _is_mapped(model):
                msg = f"{cls.__name__}.for_model() needs a mapped class, got {model!r}"
                raise ConfigurationError(msg)
            name = f"{cls.__name__}[{model.__name__}]"
            namespace = {"model": model, "__module__": cls.__module__, "__qualname__": name}
            found = _FOR_MODEL.setdefault(key, type(name, (cls,), namespace))
        return found

    # -- helpers -------------------------------------------------------------------

    @property
    def _info(self) -> ModelInfo:
        """Mapper facts about ``model`` (primary key, mixins), computed once per class."""
        cls = type(self)
        if cls._info_cache is None:
            cls._info_cache = ModelInfo(self.model)
        return cls._info_cache

    async def _reload(self, obj: Any) -> None:
        state = sa_inspect(obj)
        if state.persistent and state.expired_attributes:
            # The row may be gone (deleted concurrently): then it stays expired.
            with suppress(sa_exc.InvalidRequestError):
                await self.session.refresh(obj)

    async def _update_returning(self) -> bool:
        if self._can_update_returning is None:
            dialect = await _bulk.connected_dialect(self.session, self._info)
            self._can_update_returning = bool(dialect.update_returning)
        return self._can_update_returning

    @property
    def dialect_name(self) -> str:
        """The name of the dialect the session's bind uses for ``model``."""
        if self._dialect_name is None:
            self._dialect_name = self.session.get_bind(mapper=self._info.mapper).dialect.name
        return self._dialect_name

    def _joins(self, stmt: Select[Any]) -> bool:
        # Finding the FROM list compiles an ORM statement: only an override can join.
        return type(self).base_select is not BaseRepository.base_select and has_join(stmt)

    def base_select(self) -> Select[Any]:
        """Return the statement that queries start from; override to add joins or conditions.

        ``list()``, ``search()``, ``paginate()``, ``stream()``, ``count()``, ``exists()``
        and ``get_one*()`` build on it. A join that may repeat rows (along a collection,
        or given as a table and an ON clause) is deduplicated by primary key: the reads
        run ``SELECT model WHERE pk IN (SELECT pk FROM <this statement>)``, so ORDER BY
        must name the model's own columns; a join along a many-to-one relationship is
        kept as it is. A statement with loader options of its own (``contains_eager()``)
        keeps its join and is made ``DISTINCT`` instead. ``get()`` and ``get_by_id()``
        look rows up by key and never use it.
        """
        return select(self.model)

    def _criteria(
        self, where: Iterable[ColumnElement[bool]], filters: Filters | None, eq: Mapping[str, Any]
    ) -> list[ColumnElement[bool]]:
        criteria = list(where)
        if filters:
            if self.filterable_fields is None:
                raise not_set(
                    f"{type(self).__name__}.filterable_fields", "filters", model=self.model
                )
            criteria += compile_filters(
                self.model, filters, allowed=self.filterable_fields, max_in=self.max_in_values
            )
        if eq:
            info = self._info
            unknown = sorted(set(eq) - info.column_keys)
            if unknown:
                msg = f"{self.model.__name__} has no column attribute(s) {', '.join(unknown)}"
                raise InvalidFilterError(
                    msg, model=self.model, detail={"field": unknown[0], "reason": "unknown_field"}
                )
            # Coerced like untrusted input: **eq values often come from a path or a form.
            criteria += [
                info.columns[k].is_(None)
                if v is None
                else info.columns[k] == info.coerce_value(k, v)
                for k, v in eq.items()
            ]
        return criteria

    def _select(
        self,
        where: Iterable[ColumnElement[bool]],
        filters: Filters | None,
        eq: Mapping[str, Any],
        options: Sequence[ExecutableOption],
        *,
        include_deleted: bool,
    ) -> Select[Any]:
        stmt = self.base_select()
        criteria = self._criteria(where, filters, eq)
        if criteria:
            stmt = stmt.where(*criteria)
        if self._joins(stmt) and not stmt._distinct and fans_out(stmt):  # noqa: SLF001
            # A joined collection repeats the entity: one row per entity, so that LIMIT,
            # the page-proves-the-total shortcut and MultipleResultsFound stay right.
            # contains_eager() reads the joined rows: they must stay in the statement.
            own_options = bool(stmt._with_options)  # noqa: SLF001
            stmt = stmt.distinct() if own_options else by_key(stmt, self._info)
        loader_options = (*self.default_options, *options)
        if loader_options:
            stmt = stmt.options(*loader_options)
        if include_deleted:
            stmt = stmt.execution_options(**{INCLUDE_DELETED: True})
        return stmt

    def _order(self, order_by: OrderBy | None) -> list[Any]:
        if order_by is not None and not isinstance(order_by, (str, Sequence)):
            order_by = [order_by]  # one SQLAlchemy expression
        if self.sortable_fields is None and names_sort_field(order_by):
            raise not_set(f"{type(self).__name__}.sortable_fields", "sorts", model=self.model)
        return compile_order_by(
            self.model,
            order_by,
            allowed=self.sortable_fields,
            default=self.default_order_by,
        )

    def _check_page(self, limit: int, offset: int = 0) -> None:
        if not _is_int(limit) or limit <= 0:
            raise InvalidFilterError(
                "limit must be a positive integer",
                model=self.model,
                detail={"field": "limit", "reason": "invalid_value"},
            )
        if limit > self.max_page_size:
            raise InvalidFilterError(
                f"limit must not exceed {self.max_page_size}",
                model=self.model,
                detail={"field": "limit", "reason": "out_of_range", "max": self.max_page_size},
            )
        if not _is_int(offset) or offset < 0:
            raise InvalidFilterError(
                "offset must be a non-negative integer",
                model=self.model,
                detail={"field": "offset", "reason": "invalid_value"},
            )
        if offset > MAX_OFFSET:
            raise InvalidFilterError(
                f"offset must not exceed {MAX_OFFSET}",
                model=self.model,
                detail={"field": "offset", "reason": "out_of_range", "max": MAX_OFFSET},
            )

    def _aborts_on_error(self) -> bool:
        # PostgreSQL aborts the whole transaction on any error; MySQL and SQLite roll back
        # only the failed statement.
        return self.dialect_name == "postgresql"

    @asynccontextmanager
    async def atomic(self, *, flush: bool = False) -> AsyncIterator[None]:
        """Guard a write: database errors become typed errors and spare the transaction.

        Every write method runs inside it; custom write methods should too:

        ```python
        async def rename_all(self, old: str, new: str) -> None:
            async with self.atomic():
                await self.session.execute(update(User).where(User.name == old).values(name=new))
        ```

        Args:
            flush: The block flushes the unit of work. A failed flush rolls the session's
                transaction back unless it ran inside a SAVEPOINT, so ``flush=True``
                always opens one; single statements get one only where an error aborts
                the whole transaction (PostgreSQL). ``use_savepoints = False`` turns the
                SAVEPOINTs off. Changes already pending in the session are flushed
                first, before the SAVEPOINT opens (SQLAlchemy would flush them as it
                opens one, outside its protection): a failure there is raised naming no
                model, since it is not this write's, and like any failed flush it leaves
                the session needing a rollback.

        Raises:
            ConflictError: An integrity constraint refused the write.
            ConcurrencyError: A stale version or a lock conflict.
            InvalidValueError: The database refused a value.
        """
        # Every statement of a write goes to the primary under a routed session, its
        # reads (foreign-key checks, re-reads) included.
        with use_primary(), translate_errors(self.model):
            if self._protect() and (flush or self._aborts_on_error()):
                await self._flush_pending()
                if self.dialect_name == "sqlite":
                    await self._begin_sqlite()
                async with self.session.begin_nested():
                    yield
            else:
                yield

    def _protect(self) -> bool:
        return self.use_savepoints if self._savepoints is None else self._savepoints

    @contextmanager
    def savepoints(self, enabled: bool) -> Iterator[None]:  # noqa: FBT001
        """Turn this repository's SAVEPOINTs on or off for the calls made inside the block.

        Overrides the class-wide ``use_savepoints`` for this instance, for writes and
        ``atomic()`` alike; blocks nest, and the previous setting comes back on exit.

        ```python
        with repo.savepoints(False):  # a failure here ends the transaction anyway
            for row in rows:
                await repo.create(row)
        ```

        With SAVEPOINTs off, a [`ConflictError`][sqla_repo.exceptions.ConflictError] on
        PostgreSQL, or from a unit-of-work flush on any backend, leaves the transaction
        needing a rollback; single-statement writes on SQLite and MySQL/MariaDB stay
        safe, since those roll back only the failed statement.
        """
        previous = self._savepoints
        self._savepoints = bool(enabled)
        try:
            yield
        finally:
            self._savepoints = previous

    @asynccontextmanager
    async def _guard(self, *, several: bool = False) -> AsyncIterator[None]:
        """Guard a write made of statements only (no unit-of-work flush in the block).

        SQLite and MySQL/MariaDB roll back only a failed statement, so one writing
        statement needs no SAVEPOINT there; PostgreSQL aborts the whole transaction, so
        the block runs inside a plain ``SAVEPOINT`` sent on the connection, which costs
        far less than ``begin_nested()`` and is safe because a failed statement changes
        no ORM state. Pending changes are flushed first, outside it. With *several*
        writing statements (all or nothing), the other backends get ``atomic()``'s
        SAVEPOINT.
        """
        protect = self._protect()
        if not (protect and self._aborts_on_error()):
            if protect and several:
                async with self.atomic(flush=True):
                    yield
                return
            with use_primary(), translate_errors(self.model):
                if protect:
                    await self._flush_pending()
                yield
            return
        with use_primary(), translate_errors(self.model):
            await self._flush_pending()
            conn = await self.session.connection(bind_arguments={"mapper": self._info.mapper})
            depth = _SAVEPOINT_DEPTH.get() + 1
            name = f"sqla_repo_sp{depth}"
            token = _SAVEPOINT_DEPTH.set(depth)
            try:
                await conn.exec_driver_sql(f"SAVEPOINT {name}")
                try:
                    yield
                except BaseException:
                    # A lost connection took the transaction with it: its error is the
                    # one to see. On cancellation the ROLLBACK TO may fail too: its
                    # error then propagates and the driver discards the connection.
                    if not conn.invalidated:
                        await conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {name}")
                    raise
                await conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")
            finally:
                _SAVEPOINT_DEPTH.reset(token)

    async def _run_statement(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run the sync ``work(session, *args, **kwargs)``: a write made of statements only.

        The whole write (SAVEPOINT, statements, result handling) runs in one
        ``run_sync()`` call, which costs one greenlet switch instead of one per
        statement. The SAVEPOINT rules are ``_guard()``'s: a plain one on PostgreSQL,
        none on SQLite and MySQL/MariaDB, pending changes flushed first.
        """
        protect = self._protect()
        with use_primary(), translate_errors(self.model):
            if protect:
                await self._flush_pending()
            if not (protect and self._aborts_on_error()):
                out: T = await _io.run_sync(
                    self.session, _bulk.guarded, self._info, None, work, *args, **kwargs
                )
                return out
            depth = _SAVEPOINT_DEPTH.get() + 1
            token = _SAVEPOINT_DEPTH.set(depth)
            try:
                out = await _io.run_sync(
                    self.session,
                    _bulk.guarded,
                    self._info,
                    f"sqla_repo_sp{depth}",
                    work,
                    *args,
                    **kwargs,
                )
            finally:
                _SAVEPOINT_DEPTH.reset(token)
            return out

    async def _flush_pending(self) -> None:
        session = self.session
        if session.new or session.dirty or session.deleted:
            with translate_errors(None):
                await session.flush()

    async def _begin_sqlite(self) -> None:
        # In its default mode Python's sqlite3 opens a transaction only before DML, so a
        # SAVEPOINT issued first would open the transaction itself and its RELEASE would
        # commit the caller's work. Start the transaction explicitly in that case.
        conn = await self.session.connection(bind_arguments={"mapper": self._info.mapper})
        driver = await _io.driver_connection(conn)
        if getattr(driver, "in_transaction", True) is False:
            await conn.exec_driver_sql("BEGIN")

    def _rows(self, result: ScalarResult[Any], stmt: Select[Any]) -> builtins.list[ModelT]:
        """All entities of *result*, each once.

        A joined eager collection (``lazy="joined"`` on the model, or ``joinedload()`` in
        the options) repeats the entity: SQLAlchemy then requires ``unique()``, which
        costs about 8% of the ORM's per-row work and is skipped when no option can join.
        """
        if self._info.joined_collections or stmt._with_options:  # noqa: SLF001
            return builtins.list(result.unique().all())
        return builtins.list(result.all())

    def _not_found(self, ident: Any) -> NotFoundError:
        return NotFoundError(
            f"{self.model.__name__} not found",
            model=self.model,
            detail={"identity": str(ident)},
        )

    def _visible(self, obj: ModelT | None, *, include_deleted: bool) -> ModelT | None:
        """Apply soft-delete and tenant rules to an object the identity map returned."""
        if obj is None:
            return None
        info = self._info
        if info.soft_delete and not include_deleted and obj.deleted_at is not None:  # type: ignore[attr-defined]
            return None
        if info.tenant:
            scope = tenant_scope()
            if scope.all_tenants:
                return obj
            if scope.tenant is None:
                raise TenantRequiredError(model=self.model)
            if obj.tenant_id != scope.tenant:  # type: ignore[attr-defined]
                return None
        return obj

    def _check_new(self, obj_or_mapping: object) -> None:
        if isinstance(obj_or_mapping, self.model):
            return
        if not isinstance(obj_or_mapping, Mapping):
            msg = f"expected a {self.model.__name__} or a mapping"
            raise RepositoryError(msg, model=self.model)
        self._info.check_keys(obj_or_mapping, what="field", relationships=True)

    def _check_tenant_value(self, values: Mapping[str, Any], *, insert: bool = False) -> None:
        if not self._info.tenant:
            return
        scope = tenant_scope()
        if "tenant_id" not in values:
            if insert and scope.all_tenants:
                raise TenantRequiredError(
                    "Rows written inside all_tenants() need an explicit tenant_id.",
                    model=self.model,
                )
            return
        if not scope.all_tenants and values["tenant_id"] != scope.tenant:
            raise TenantMismatchError(model=self.model)

    async def _check_references(self, rows: Sequence[Mapping[str, Any]]) -> None:
        # Statements that bypass the unit of work get the before_flush check by hand.
        if tenant_references(self._info.mapper):
            await _io.run_sync(self.session, check_rows, self._info.mapper, rows)

    # -- reads ---------------------------------------------------------------------

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
                obj = await self.session.get(
                    self.model,
                    identity,
                    execution_options=execution_options,
                    populate_existing=populate_existing,
                )
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
        counter = count_statement(stmt, self._info, joined=self._joins(stmt))
        if include_deleted:
            counter = counter.execution_options(**{INCLUDE_DELETED: True})
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
        # Through base_select(), like count(): an override that narrows the rows counts.
        inner = self.base_select()
        criteria = self._criteria(where, filters, eq)
        if criteria:
            inner = inner.where(*criteria)
        stmt = select(
            inner.with_only_columns(true(), maintain_column_froms=True).order_by(None).exists()
        )
        if include_deleted:
            stmt = stmt.execution_options(**{INCLUDE_DELETED: True})
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
                counter = count_statement(stmt, self._info, joined=self._joins(stmt))
                if include_deleted:
                    counter = counter.execution_options(**{INCLUDE_DELETED: True})
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

    # -- writes --------------------------------------------------------------------

    async def _ready(self, objs: Sequence[Any], options: Sequence[ExecutableOption]) -> None:
        """Load what a returned object must have, so that touching it needs no lazy IO.

        That is the relationships the model declares eager (``lazy="joined"``,
        ``"selectin"``…) and those named by ``default_options`` and *options*. One
        ``SELECT`` by key loads whatever is not loaded yet (loaded attributes are kept),
        and is skipped when nothing is missing.
        """
        loaders = (*self.default_options, *options)
        eager = self._info.eager_keys
        if not objs or not (loaders or eager):
            return
        states = [sa_inspect(o) for o in objs]
        states = [
            st for st in states if st.persistent and (loaders or not eager.isdisjoint(st.unloaded))
        ]
        if not states:
            return
        info = self._info
        composite = len(info.pk_attrs) > 1
        target = tuple_(*info.pk_attrs) if composite else info.pk_attrs[0]
        idents = [st.identity if composite else st.identity[0] for st in states]
        for start in range(0, len(idents), 500):
            stmt = select(self.model).where(target.in_(idents[start : start + 500]))
            stmt = stmt.options(*loaders).execution_options(**{INCLUDE_DELETED: True})
            with translate_read_errors(self.model):
                (await self.session.scalars(stmt)).unique().all()

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
        info.check_values(values)
        if await self._insert_statement_fits(obj_or_mapping, values, is_mapping=is_mapping):
            if is_mapping and not info.plain_init:
                # The model's own constructor or validators run, as on the flush path.
                obj_or_mapping = self.model(**values)
                values = info.instance_values(obj_or_mapping)
                info.check_values(values)
                is_mapping = False
            row = _bulk.drop_defaulted_none(info, [values])[0]
            self._check_tenant_value(row, insert=True)
            obj = await self._run_statement(
                _bulk.insert_one, info, row, None if is_mapping else obj_or_mapping
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
        await self._ready([obj], options)
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
        ):
            return False  # the application listens to the unit of work: let it see this row
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
        if self._insert_returning is None:
            dialect = await _bulk.connected_dialect(self.session, info)
            self._insert_returning = bool(dialect.insert_returning)
        return self._insert_returning

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
        # Checked before the read: a value no row could hold is refused, not looked up.
        self._info.check_values({**(defaults or {}), **unique_eq})
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

    async def bulk_create(
        self,
        rows: Iterable[ModelT | Mapping[str, Any]],
        *,
        batch_size: int = 1000,
        options: Sequence[ExecutableOption] = (),
    ) -> builtins.list[ModelT]:
        """Insert many rows with multi-row ``INSERT … RETURNING`` and return them in order.

        All or nothing: the batches run inside one SAVEPOINT. Instances given are used as
        value carriers; the returned objects are the persistent ones, ready to use as
        ``create()``'s are (eager relationships and *options* loaded, with one more
        ``SELECT`` per 500 rows when there is something to load). A ``None`` value
        behaves as in ``create()``: a column with a default (Python, server-side or an
        autoincrement key) gets the default.

        Raises:
            ConflictError: A row broke a constraint; nothing was inserted.
        """
        values = _bulk.drop_defaulted_none(self._info, _bulk.row_dicts(self._info, rows))
        if not values:
            return []
        self._info.check_rows(values)
        for row in values:
            self._check_tenant_value(row, insert=True)
        async with self._guard(several=True):
            await self._check_references(values)
            objs = await _bulk.insert_returning(
                self.session, self._info, values, batch_size=batch_size, dialect=self.dialect_name
            )
        await self._ready(objs, options)
        return objs

    async def bulk_insert(
        self, rows: Iterable[ModelT | Mapping[str, Any]], *, batch_size: int = 1000
    ) -> int:
        """Insert many rows without building objects; return how many rows were inserted.

        The same validation as [`bulk_create()`][sqla_repo.repository.BaseRepository.bulk_create]
        (keys, tenant, foreign keys into tenant tables), the same defaults and stamping
        (timestamps, audit columns, tenant, the version's first value) and the same
        atomicity, but one multi-row ``INSERT`` per batch without ``RETURNING`` and
        nothing added to the session: the fast path for imports.

        Raises:
            ConflictError: A row broke a constraint; nothing was inserted.
        """
        values = _bulk.drop_defaulted_none(self._info, _bulk.row_dicts(self._info, rows))
        if not values:
            return 0
        self._info.check_rows(values)
        if self._info.tenant:
            for row in values:
                self._check_tenant_value(row, insert=True)
        # Without RETURNING the driver may run the rows one by one (executemany): only a
        # single row is atomic by itself.
        async with self._guard(several=len(values) > 1):
            await self._check_references(values)
            return await _bulk.insert_many(self.session, self._info, values, batch_size=batch_size)

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
        identity = None
        if not info.pk_keys_set.isdisjoint(merged):
            # The key changes: where the row is read back after the UPDATE (no RETURNING),
            # it is found by its new key.
            old = info.identity(obj_or_id)
            identity = pk_criterion(
                info, tuple(merged.get(k, v) for k, v in zip(info.pk_keys, old, strict=True))
            )
        if info.joined:
            async with self._guard():
                await self._check_references([merged])
                obj = await _bulk.update_returning(
                    self.session,
                    info,
                    pk_criterion(info, obj_or_id),
                    update_values(info, merged),
                    update_returning=await self._update_returning(),
                    identity=identity,
                )
        else:
            update_returning = await self._update_returning()
            obj = await self._run_statement(
                _bulk.update_one,
                info,
                pk_criterion(info, obj_or_id),
                merged,
                identity,
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

    async def bulk_update(
        self, rows: Iterable[Mapping[str, Any]], *, include_deleted: bool = False
    ) -> int:
        """Update rows by primary key (each mapping holds the key and new values).

        Rows of another tenant and soft-deleted rows are skipped; returns how many rows
        were updated. ``updated_at``, ``updated_by`` and ``version`` are maintained.
        """
        rows = builtins.list(rows)
        for row in rows:
            if isinstance(row, Mapping):
                self._info.check_values(row)
            self._check_tenant_value(row)
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
        values = _bulk.row_dicts(self._info, rows)
        if not values:
            return []
        self._info.check_rows(values)
        for row in values:
            self._check_tenant_value(row, insert=True)
        async with self._guard(several=True):
            await self._check_references(values)
            objs: builtins.list[ModelT] = await write(
                self.session, self._info, values, dialect=self.dialect_name, **kwargs
            )
        await self._ready(objs, options)
        return objs

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
                _bulk.delete_one, info, pk_criterion(info, obj_or_id), include_deleted
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
