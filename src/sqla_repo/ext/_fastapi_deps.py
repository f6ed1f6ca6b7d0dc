"""Per-request dependencies: the session, repositories, the actor and the tenant."""

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from sqla_repo._translate import translate_errors
from sqla_repo.context import actor, tenant
from sqla_repo.repository import BaseRepository

__all__ = ["actor_dependency", "provide_repository", "session_dependency", "tenant_dependency"]

RepositoryT = TypeVar("RepositoryT", bound=BaseRepository[Any])


def _function_scoped(dependency: Callable[..., Any]) -> Any:
    # A "function" scope ends when the endpoint has returned, before the response is
    # sent; the default "request" scope of a dependency with yield ends after the
    # response is sent, too late to report a failed commit.
    return Depends(dependency, scope="function")


def session_dependency(
    sessionmaker: Callable[[], AsyncSession],
) -> Callable[..., Awaitable[AsyncSession]]:
    """Make a dependency that gives each request one session and owns its transaction.

    The transaction is committed when the endpoint returns normally and rolled back
    when anything raises: the endpoint (an `HTTPException` included), another
    dependency, response validation, or the commit itself. The session is closed in
    every case, also when the request is cancelled, so its connection always returns
    to the pool.

    The commit runs after the endpoint has returned and its response has been
    serialized, but **before the response is sent**: a commit that fails (a deferred
    constraint, a unique violation found by the final flush, a stale version) becomes
    an error response through
    [`install_exception_handlers`][sqla_repo.ext.fastapi.install_exception_handlers]
    instead of a success response for lost data. Integrity and stale-version errors at
    commit are translated like repository errors
    ([`ConflictError`][sqla_repo.exceptions.ConflictError],
    [`ConcurrencyError`][sqla_repo.exceptions.ConcurrencyError]).

    Every use of the returned dependency in one request shares the same session. It
    relies on FastAPI's dependency scopes (FastAPI 0.121 or newer); the session is
    closed before the response is sent, so a streaming response or a background task
    cannot use it.

    Args:
        sessionmaker: An ``async_sessionmaker`` (it may be bound later with
            ``configure(bind=engine)``) or any callable returning a new ``AsyncSession``.

    Returns:
        The dependency, to use as ``Depends(get_session)`` or with
        [`provide_repository`][sqla_repo.ext.fastapi.provide_repository].

    Example:
        ```python
        SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
        get_session = session_dependency(SessionLocal)


        @app.post("/users", status_code=201)
        async def create_user(
            data: UserIn, session: AsyncSession = Depends(get_session)
        ) -> UserOut:
            user = await UserRepository(session).create(data.model_dump())
            return UserOut.model_validate(user)
        ```
    """

    async def sqla_repo_transaction() -> AsyncIterator[AsyncSession]:
        session = sessionmaker()
        try:
            yield session
            with translate_errors():
                await session.commit()
        finally:
            # close() rolls back whatever was not committed: after an error in the
            # endpoint, in another dependency or at commit, and after a cancellation.
            await session.close()

    async def get_session(
        session: Annotated[AsyncSession, _function_scoped(sqla_repo_transaction)],
    ) -> AsyncSession:
        return session

    return get_session


def _snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def provide_repository(
    repository: type[RepositoryT], *, session: Callable[..., Any]
) -> Callable[..., Awaitable[RepositoryT]]:
    """Make a dependency that gives a repository bound to the request's session.

    Args:
        repository: The repository class.
        session: The session dependency, usually made by
            [`session_dependency`][sqla_repo.ext.fastapi.session_dependency]. Every
            repository of a request built from the same dependency shares one session,
            so their writes commit or roll back together.

    Returns:
        The dependency, to use as ``Depends(get_user_repository)``.

    Example:
        ```python
        get_user_repository = provide_repository(UserRepository, session=get_session)


        @app.get("/users/{user_id}")
        async def read_user(
            user_id: int, users: UserRepository = Depends(get_user_repository)
        ) -> UserOut:
            return UserOut.model_validate(await users.get_by_id(user_id))
        ```
    """

    async def get_repository(
        request_session: Annotated[AsyncSession, Depends(session)],
    ) -> RepositoryT:
        return repository(request_session)

    name = f"get_{_snake_case(repository.__name__)}"
    get_repository.__name__ = get_repository.__qualname__ = name
    return get_repository


def actor_dependency(
    get_actor: Callable[..., str | None] | Callable[..., Awaitable[str | None]],
) -> Callable[..., AsyncIterator[str | None]]:
    """Make a dependency that sets the audit actor for the request.

    ``created_by`` and ``updated_by`` of [`AuditColumnsMixin`][sqla_repo.mixins.AuditColumnsMixin]
    are stamped with the value *get_actor* returns, until the response has been sent:
    the commit of [`session_dependency`][sqla_repo.ext.fastapi.session_dependency],
    which runs earlier, sees it too. The value is reset afterwards, and concurrent
    requests never see each other's actor.

    Args:
        get_actor: A function, sync or async, returning the actor (a user id, a service
            name) or ``None``. It is itself a dependency: its parameters may be a
            ``Request``, headers, or other dependencies (the authenticated user).

    Returns:
        The dependency. It yields the actor, so an endpoint may also receive it as a
        parameter; declare it for a whole application or router with
        ``dependencies=[Depends(...)]``.

    Example:
        ```python
        def username(x_user: str | None = Header(default=None)) -> str | None:
            return x_user


        app = FastAPI(dependencies=[Depends(actor_dependency(username))])
        ```
    """

    async def sqla_repo_actor(
        value: Annotated[str | None, Depends(get_actor)],
    ) -> AsyncIterator[str | None]:
        with actor(value):
            yield value

    return sqla_repo_actor


def tenant_dependency(
    get_tenant: Callable[..., str | None] | Callable[..., Awaitable[str | None]],
) -> Callable[..., AsyncIterator[str | None]]:
    """Make a dependency that scopes the request to a tenant.

    Every ORM statement on a [`TenantMixin`][sqla_repo.mixins.TenantMixin] model made
    while handling the request, the commit included, is restricted to the tenant
    *get_tenant* returns, and new rows are stamped with it. When it returns ``None`` or
    an empty string, no tenant is set: tenant models then raise
    [`TenantRequiredError`][sqla_repo.exceptions.TenantRequiredError] (403 with
    [`install_exception_handlers`][sqla_repo.ext.fastapi.install_exception_handlers]),
    while other models work as usual.

    Args:
        get_tenant: A function, sync or async, returning the tenant id or ``None``; like
            *get_actor* of [`actor_dependency`][sqla_repo.ext.fastapi.actor_dependency],
            it may take FastAPI parameters and dependencies. Make sure the caller may act
            for that tenant: the header of an untrusted client is not enough.

    Returns:
        The dependency; it yields the tenant id in force (or ``None``).

    Example:
        ```python
        def workspace(user: User = Depends(current_user)) -> str:
            return user.workspace_id


        router = APIRouter(dependencies=[Depends(tenant_dependency(workspace))])
        ```
    """

    async def sqla_repo_tenant(
        value: Annotated[str | None, Depends(get_tenant)],
    ) -> AsyncIterator[str | None]:
        if not value:
            yield None
            return
        with tenant(value):
            yield value

    return sqla_repo_tenant
