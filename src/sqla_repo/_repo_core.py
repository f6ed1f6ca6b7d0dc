"""The part of the repository that is the same for both flavours, and never waits on IO.

[`BaseRepository`][sqla_repo.repository.BaseRepository] and the generated
``SyncBaseRepository`` both derive from [`RepositoryCore`][sqla_repo._repo_core.RepositoryCore]:
class settings and their checks, mapper facts, statement building (``base_select()``,
criteria, order, page checks) and the handling of rows once read. The flavours add only
the calls that reach the database (awaited in one, called in the other).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, TypeVar, get_args, get_origin

from sqlalchemy import ColumnElement, Select, select, true, tuple_
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapper, QueryableAttribute

from sqla_repo import _hooks, rls
from sqla_repo._hooks import INCLUDE_DELETED
from sqla_repo._read_shapes import by_key, count_statement, fans_out, has_join
from sqla_repo._statements import ModelInfo
from sqla_repo._whitelist import (
    ALL_COLUMNS,
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
    NotFoundError,
    RepositoryError,
    TenantMismatchError,
    TenantRequiredError,
)
from sqla_repo.filters import compile_filters, compile_order_by

if TYPE_CHECKING:
    from sqlalchemy.engine import ScalarResult
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session
    from sqlalchemy.sql.base import ExecutableOption

__all__ = ["MAX_OFFSET", "Filters", "ModelT", "OrderBy", "RepositoryCore"]

ModelT = TypeVar("ModelT")
"""The mapped class a repository manages."""
SessionT = TypeVar("SessionT", bound="AsyncSession | Session")
"""The session a repository flavour works with."""

Filters = Mapping[str, Any] | Sequence[tuple[str, str, Any]]
OrderBy = str | ColumnElement[Any] | QueryableAttribute[Any] | Sequence[Any]


MAX_OFFSET: Final = 2**63 - 1
"""The largest ``offset`` accepted: the largest value every backend's OFFSET takes."""


def _is_int(value: object) -> bool:
    """Whether *value* is a real ``int`` (``True`` is not a page size)."""
    return isinstance(value, int) and not isinstance(value, bool)


_BASE_SELECTS: dict[type[Any], Select[Any]] = {}
"""``select(model)`` by mapped class: what ``base_select()`` returns unless overridden."""
_ORDERS: dict[tuple[Any, ...], tuple[Any, ...]] = {}
"""Compiled sort keys by what they depend on (see ``RepositoryCore._order_cache_key``)."""
_MAX_ORDERS: Final = 512

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


class RepositoryCore(Generic[ModelT, SessionT]):
    """Settings, statement building and row handling shared by both repository flavours.

    The settings are documented on [`BaseRepository`][sqla_repo.repository.BaseRepository].
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

    def __init__(self, session: SessionT) -> None:
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
            if isinstance(origin, type) and issubclass(origin, RepositoryCore):
                for arg in get_args(base):
                    if _is_mapped(arg):
                        return arg  # type: ignore[no-any-return]
        return None

    @property
    def _info(self) -> ModelInfo:
        """Mapper facts about ``model`` (primary key, mixins), computed once per class."""
        cls = type(self)
        if cls._info_cache is None:
            cls._info_cache = ModelInfo(self.model)
        return cls._info_cache

    @property
    def dialect_name(self) -> str:
        """The name of the dialect the session's bind uses for ``model``."""
        if self._dialect_name is None:
            self._dialect_name = self.session.get_bind(mapper=self._info.mapper).dialect.name
        return self._dialect_name

    def _joins(self, stmt: Select[Any]) -> bool:
        # Finding the FROM list compiles an ORM statement: only an override can join.
        return type(self).base_select is not RepositoryCore.base_select and has_join(stmt)

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
        # Built once per class: a statement is immutable, its methods return copies.
        found = _BASE_SELECTS.get(self.model)
        if found is None:
            found = _BASE_SELECTS[self.model] = select(self.model)
        return found

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

    def _count_statement(self, stmt: Select[Any], *, include_deleted: bool) -> Select[Any]:
        """Count the rows of *stmt* (distinct rows when ``base_select()`` joins)."""
        counter = count_statement(stmt, self._info, joined=self._joins(stmt))
        if include_deleted:
            counter = counter.execution_options(**{INCLUDE_DELETED: True})
        return counter

    def _exists_statement(
        self,
        where: Iterable[ColumnElement[bool]],
        filters: Filters | None,
        eq: Mapping[str, Any],
        *,
        include_deleted: bool,
    ) -> Select[Any]:
        """``SELECT EXISTS`` over the matching rows, never a full count."""
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
        return stmt

    def _order(self, order_by: OrderBy | None) -> list[Any]:
        key = self._order_cache_key(order_by)
        if key is None:
            return self._compile_order(order_by)
        keys = _ORDERS.get(key)
        if keys is None:
            keys = tuple(self._compile_order(order_by))
            if len(_ORDERS) >= _MAX_ORDERS:
                _ORDERS.clear()
            _ORDERS[key] = keys
        return list(keys)

    def _order_cache_key(self, order_by: OrderBy | None) -> tuple[Any, ...] | None:
        """What the sort keys of *order_by* depend on, where it can be told by value.

        That is text (a query string's sort, or none) compiled against whitelists and a
        default order made of names: the same text compiles to the same keys, which are
        immutable. Anything holding expressions is compiled every time.
        """
        if order_by is not None and not isinstance(order_by, str):
            return None
        allowed, default = self.sortable_fields, self.default_order_by
        if isinstance(default, str):
            default_key: Any = default
        elif all(isinstance(name, str) for name in default):
            default_key = tuple(default)
        else:
            return None
        if allowed is None or allowed is ALL_COLUMNS or isinstance(allowed, str):
            allowed_key: Any = allowed
        elif all(isinstance(name, str) for name in allowed):
            allowed_key = frozenset(allowed)
        else:
            return None
        return (type(self), self.model, order_by, allowed_key, default_key)

    def _compile_order(self, order_by: OrderBy | None) -> list[Any]:
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

    def _protect(self) -> bool:
        return self.use_savepoints if self._savepoints is None else self._savepoints

    def _rows(self, result: ScalarResult[Any], stmt: Select[Any]) -> builtins.list[ModelT]:
        """All entities of *result*, each once.

        A joined eager collection (``lazy="joined"`` on the model, or ``joinedload()`` in
        the options) repeats the entity: SQLAlchemy then requires ``unique()``, which
        costs about 8% of the ORM's per-row work and is skipped when no option can join.
        """
        if self._info.joined_collections or stmt._with_options:  # noqa: SLF001
            return builtins.list(result.unique().all())
        return builtins.list(result.all())

    def _ready_statements(
        self, objs: Sequence[Any], options: Sequence[ExecutableOption], *, expired: bool = False
    ) -> builtins.list[Select[Any]]:
        """The ``SELECT``s by key that load what the returned *objs* must have (maybe none).

        That is the relationships the model declares eager and those named by
        ``default_options`` and *options*, and with *expired* the columns a flush expired
        (written as SQL expressions), for the objects that miss something.
        """
        loaders = (*self.default_options, *options)
        eager = self._info.eager_keys
        if not objs or not (loaders or eager or expired):
            return []
        states = [
            st
            for st in map(sa_inspect, objs)
            if st.persistent
            and (
                loaders or not eager.isdisjoint(st.unloaded) or (expired and st.expired_attributes)
            )
        ]
        if not states:
            return []
        info = self._info
        composite = len(info.pk_attrs) > 1
        target = tuple_(*info.pk_attrs) if composite else info.pk_attrs[0]
        idents = [st.identity if composite else st.identity[0] for st in states]
        statements = []
        for start in range(0, len(idents), 500):
            stmt = select(self.model).where(target.in_(idents[start : start + 500]))
            statements.append(stmt.options(*loaders).execution_options(**{INCLUDE_DELETED: True}))
        return statements

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
