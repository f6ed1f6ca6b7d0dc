"""Run the async repository contract tests against the synchronous twin as well.

The repository test modules build their repositories with ``make_repo(RepoCls, session)``
and mark themselves ``pytest.mark.usefixtures("flavour")``. For the ``async`` flavour
that is ``RepoCls(session)``; for ``sync`` it is a [`SyncFacade`][]: an awaitable front
over a [`SyncBaseRepository`][sqla_repo.SyncBaseRepository] built with the same settings,
on the async session's own ``Session``. Each call runs the sync method inside
``AsyncSession.run_sync()``, so on the same connection and in the same transaction,
and every assertion of the async test then holds for the sync code.
"""

from __future__ import annotations

import inspect
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from sqla_repo import BaseRepository, SyncBaseRepository

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from sqlalchemy.ext.asyncio import AsyncSession

FLAVOURS = ("async", "sync")

current = {"flavour": "async"}
"""The flavour of the running test, set by the ``flavour`` fixture."""

_TWINS: dict[type[Any], type[SyncBaseRepository[Any]]] = {}
_SKIPPED = frozenset({"__dict__", "__weakref__", "__orig_bases__", "__parameters__"})


def sync_twin(cls: type[BaseRepository[Any]]) -> type[SyncBaseRepository[Any]]:
    """The ``SyncBaseRepository`` subclass with *cls*'s settings and sync methods.

    Class attributes and plain methods (``base_select()`` overrides) are copied; async
    methods are not: [`SyncFacade`][] runs a subclass's own async methods itself.
    """
    twin = _TWINS.get(cls)
    if twin is None:
        namespace: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            if not issubclass(klass, BaseRepository) or klass is BaseRepository:
                continue
            for key, value in vars(klass).items():
                if key in _SKIPPED or _is_async(value):
                    continue
                namespace[key] = value
        namespace["model"] = cls.model
        namespace["__qualname__"] = f"Sync{cls.__qualname__}"
        twin = type(f"Sync{cls.__name__}", (SyncBaseRepository,), namespace)
        _TWINS[cls] = twin
    return twin


def _is_async(value: object) -> bool:
    func = getattr(value, "__func__", value)
    return inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)


class SyncFacade:
    """The async repository interface, served by the synchronous twin of *cls*."""

    def __init__(self, cls: type[BaseRepository[Any]], session: AsyncSession) -> None:
        self._cls = cls
        self.session = session
        self.sync = sync_twin(cls)(session.sync_session)

    def _run(self, fn: Callable[[], Any]) -> Any:
        return self.session.run_sync(lambda _session: fn())

    def __getattr__(self, name: str) -> Any:
        own = inspect.getattr_static(self._cls, name, None)
        base = inspect.getattr_static(BaseRepository, name, None)
        if own is not None and own is not base and _is_async(own):
            # A subclass's own async method (find_by_email…): it calls back into us.
            return own.__get__(self, type(self))
        if base is not None and inspect.iscoroutinefunction(base):
            method = getattr(self.sync, name)

            async def call(*args: Any, **kwargs: Any) -> Any:
                return await self._run(lambda: method(*args, **kwargs))

            return call
        return getattr(self.sync, name)

    async def stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """Step the sync generator one row per ``run_sync()``: rows still arrive lazily."""
        rows = self.sync.stream(*args, **kwargs)
        done = object()
        try:
            while (row := await self._run(lambda: next(rows, done))) is not done:
                yield row
        finally:
            await self._run(rows.close)

    @asynccontextmanager
    async def atomic(self, *, flush: bool = False) -> AsyncIterator[None]:
        """Enter and leave the sync ``atomic()`` in two ``run_sync()`` calls."""
        block = self.sync.atomic(flush=flush)
        await self._run(block.__enter__)
        try:
            yield
        except BaseException as exc:
            error = exc
            if not await self._run(lambda: block.__exit__(type(error), error, error.__traceback__)):
                raise
        else:
            await self._run(lambda: block.__exit__(None, None, None))


def make_repo(cls: type[BaseRepository[Any]], session: AsyncSession) -> Any:
    """``cls(session)``, or its synchronous twin behind a [`SyncFacade`][]."""
    if current["flavour"] == "sync":
        return SyncFacade(cls, session)
    return cls(session)
