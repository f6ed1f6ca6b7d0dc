"""sqla_repo.ext.fastapi: sessions, repositories, query parameters, errors and context."""

import asyncio
import json
import logging
import re
import subprocess
import sys
import uuid
from typing import Annotated, Any, ClassVar

import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy import event, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models import Document, Ticket, User
from oracle import PublicAccounts
from repositories import DocumentRepository, TicketRepository, UserRepository
from sqla_repo import (
    ALL_COLUMNS,
    CheckViolationError,
    ConcurrencyError,
    ConfigurationError,
    CursorPage,
    ForeignKeyViolationError,
    InvalidFilterError,
    MultipleResultsFoundError,
    NotFoundError,
    RepositoryError,
    SearchResult,
    TenantMismatchError,
    TenantRequiredError,
    UniqueViolationError,
    all_tenants,
    current_actor,
    current_tenant,
)
from sqla_repo.ext.fastapi import (
    DEFAULT_STATUS_CODES,
    CursorPageModel,
    CursorParams,
    PageModel,
    SearchParams,
    actor_dependency,
    cursor_params,
    error_body,
    install_exception_handlers,
    provide_repository,
    search_params,
    session_dependency,
    status_code_for,
    tenant_dependency,
)
from sqla_repo.repository import BaseRepository

pytestmark = pytest.mark.fastapi


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    age: int | None
    created_by: str | None
    updated_by: str | None


class DocumentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    slug: str
    tenant_id: str
    created_by: str | None


def _client(app: FastAPI, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _header_user(x_user: Annotated[str | None, Header()] = None) -> str | None:
    return x_user


async def _header_tenant(request: Request) -> str | None:
    return request.headers.get("x-tenant")


@pytest.fixture
async def app_engine(backend, engine, sessionmaker):
    """A pooled engine of its own, so the test can count checked-out connections.

    Tables come from the ``engine`` fixture; ``sessionmaker`` empties them afterwards.
    """
    own = backend.engine(pool_size=3, max_overflow=2)
    yield own
    await own.dispose()


@pytest.fixture
def factory(app_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(app_engine, expire_on_commit=False)


def build_app(  # noqa: C901 - one small endpoint per case
    factory: async_sessionmaker[AsyncSession], *, handlers: bool = True
) -> FastAPI:
    """An application exercising every helper on the test models."""
    get_session = session_dependency(factory)
    get_users = provide_repository(UserRepository, session=get_session)
    get_documents = provide_repository(DocumentRepository, session=get_session)
    get_tickets = provide_repository(TicketRepository, session=get_session)
    user_search = search_params(UserRepository)
    user_pages = cursor_params(UserRepository)
    app = FastAPI(
        dependencies=[
            Depends(actor_dependency(_header_user)),
            Depends(tenant_dependency(_header_tenant)),
        ]
    )
    if handlers:
        install_exception_handlers(app)

    @app.post("/users", status_code=201)
    async def create_user(
        email: str, users: Annotated[UserRepository, Depends(get_users)], name: str = ""
    ) -> UserOut:
        return UserOut.model_validate(await users.create({"email": email, "name": name}))

    @app.get("/users")
    async def list_users(
        params: Annotated[SearchParams, Depends(user_search)],
        users: Annotated[UserRepository, Depends(get_users)],
    ) -> PageModel[UserOut]:
        return PageModel[UserOut].from_result(await users.search(**params.as_kwargs()))

    @app.get("/user-pages")
    async def page_users(
        params: Annotated[CursorParams, Depends(user_pages)],
        users: Annotated[UserRepository, Depends(get_users)],
    ) -> CursorPageModel[UserOut]:
        return CursorPageModel[UserOut].from_page(await users.paginate(**params.as_kwargs()))

    @app.get("/users/{user_id}")
    async def read_user(
        user_id: int, users: Annotated[UserRepository, Depends(get_users)]
    ) -> UserOut:
        return UserOut.model_validate(await users.get_by_id(user_id))

    @app.post("/users/{user_id}/rename")
    async def rename_user(
        user_id: int, name: str, users: Annotated[UserRepository, Depends(get_users)]
    ) -> UserOut:
        user = await users.get_by_id(user_id)
        user.name = name  # flushed by the commit, after the endpoint has returned
        return UserOut.model_validate(user)

    @app.post("/users/then-teapot")
    async def create_then_fail(
        email: str, users: Annotated[UserRepository, Depends(get_users)]
    ) -> None:
        await users.create({"email": email})
        raise HTTPException(status_code=418, detail="no tea")

    @app.post("/users/pair")
    async def create_pair(
        first: str, second: str, users: Annotated[UserRepository, Depends(get_users)]
    ) -> None:
        await users.create({"email": first})
        await users.create({"email": second})

    @app.post("/users/at-commit")
    async def add_at_commit(
        email: str, session: Annotated[AsyncSession, Depends(get_session)]
    ) -> dict[str, bool]:
        session.add(User(email=email))  # flushed only by the commit
        return {"accepted": True}

    @app.get("/same-session")
    async def same_session(
        session: Annotated[AsyncSession, Depends(get_session)],
        users: Annotated[UserRepository, Depends(get_users)],
        documents: Annotated[DocumentRepository, Depends(get_documents)],
    ) -> dict[str, bool]:
        return {"same": users.session is session and documents.session is session}

    @app.post("/tickets/stale")
    async def stale_ticket(tickets: Annotated[TicketRepository, Depends(get_tickets)]) -> None:
        ticket = await tickets.create({"title": "t"})
        table = Ticket.__table__
        # Another writer's change, behind the back of the identity map.
        await tickets.session.execute(
            update(table).where(table.c.id == ticket.id).values(version=table.c.version + 1)
        )
        await tickets.update(ticket, title="mine")  # the instance still holds version 1

    @app.post("/documents", status_code=201)
    async def create_document(
        slug: str, documents: Annotated[DocumentRepository, Depends(get_documents)]
    ) -> DocumentOut:
        await asyncio.sleep(0)  # let concurrent requests interleave
        return DocumentOut.model_validate(await documents.create({"slug": slug}))

    @app.post("/documents/foreign")
    async def create_foreign_document(
        documents: Annotated[DocumentRepository, Depends(get_documents)],
    ) -> None:
        await documents.create({"slug": "x", "tenant_id": "someone-else"})

    @app.get("/documents")
    async def list_documents(
        documents: Annotated[DocumentRepository, Depends(get_documents)],
    ) -> list[DocumentOut]:
        await asyncio.sleep(0)
        return [DocumentOut.model_validate(d) for d in await documents.list(order_by=Document.slug)]

    @app.get("/documents/{document_id}")
    async def read_document(
        document_id: uuid.UUID, documents: Annotated[DocumentRepository, Depends(get_documents)]
    ) -> DocumentOut:
        return DocumentOut.model_validate(await documents.get_by_id(document_id))

    @app.get("/context")
    async def context() -> dict[str, str | None]:
        return {"actor": current_actor(), "tenant": current_tenant()}

    @app.get("/context-sync")
    def context_sync() -> dict[str, str | None]:
        return {"actor": current_actor(), "tenant": current_tenant()}

    return app


async def _emails(factory: async_sessionmaker[AsyncSession]) -> list[str]:
    async with factory() as session:
        return list(await session.scalars(select(User.email).order_by(User.email)))


class TestSessionDependency:
    async def test_commits_when_the_endpoint_returns(self, factory):
        """Writes of an endpoint that returns normally are committed."""
        async with _client(build_app(factory)) as client:
            response = await client.post("/users", params={"email": "a@x.org"})
        assert response.status_code == 201
        assert await _emails(factory) == ["a@x.org"]

    async def test_rolls_back_on_http_exception(self, factory):
        """An HTTPException raised after a write undoes the write."""
        async with _client(build_app(factory)) as client:
            response = await client.post("/users/then-teapot", params={"email": "t@x.org"})
        assert response.status_code == 418
        assert await _emails(factory) == []

    async def test_rolls_back_on_repository_error(self, factory):
        """A failing second write leaves nothing of the first one."""
        async with _client(build_app(factory)) as client:
            await client.post("/users", params={"email": "taken@x.org"})
            response = await client.post(
                "/users/pair", params={"first": "new@x.org", "second": "taken@x.org"}
            )
        assert response.status_code == 409
        assert await _emails(factory) == ["taken@x.org"]

    async def test_commit_failure_becomes_an_error_response(self, factory):
        """A conflict found by the commit's flush is a 409, not a 200 for lost data."""
        async with _client(build_app(factory)) as client:
            await client.post("/users", params={"email": "taken@x.org"})
            response = await client.post("/users/at-commit", params={"email": "taken@x.org"})
            accepted = await client.post("/users/at-commit", params={"email": "b@x.org"})
        assert response.status_code == 409
        assert response.json()["error"] == "unique_violation"
        assert accepted.json() == {"accepted": True}
        assert await _emails(factory) == ["b@x.org", "taken@x.org"]

    async def test_commit_failure_without_handlers_is_a_server_error(self, factory):
        """Without the handlers a failed commit is still an error, never a success."""
        app = build_app(factory, handlers=False)
        async with _client(app, raise_app_exceptions=False) as client:
            await client.post("/users", params={"email": "taken@x.org"})
            response = await client.post("/users/at-commit", params={"email": "taken@x.org"})
        assert response.status_code == 500

    async def test_commit_precedes_the_response(self, factory, app_engine):
        """The transaction is committed before the response starts."""
        events: list[str] = []
        app = build_app(factory)

        async def recording_app(scope, receive, send):
            async def recording_send(message):
                if message["type"] == "http.response.start":
                    events.append("response")
                await send(message)

            await app(scope, receive, recording_send)

        def on_commit(_conn):
            events.append("commit")

        event.listen(app_engine.sync_engine, "commit", on_commit)
        try:
            transport = httpx.ASGITransport(app=recording_app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                await client.post("/users", params={"email": "a@x.org"})
        finally:
            event.remove(app_engine.sync_engine, "commit", on_commit)
        assert events == ["commit", "response"]

    async def test_one_session_per_request(self, factory):
        """Every repository of a request shares the request's session."""
        async with _client(build_app(factory)) as client:
            response = await client.get("/same-session")
        assert response.json() == {"same": True}

    async def test_connections_return_to_the_pool(self, factory, app_engine):
        """After many requests, failing ones included, no connection stays checked out."""
        async with _client(build_app(factory)) as client:
            await client.post("/users", params={"email": "taken@x.org"})
            for i in range(10):
                responses = [
                    await client.post("/users", params={"email": f"u{i}@x.org"}),
                    await client.post("/users", params={"email": "taken@x.org"}),
                    await client.get("/users/999999"),
                    await client.post("/users/then-teapot", params={"email": f"t{i}@x.org"}),
                    await client.post("/users/at-commit", params={"email": "taken@x.org"}),
                    await client.get("/users", params={"emial": "typo"}),
                    await client.get("/documents"),
                ]
                assert [r.status_code for r in responses] == [201, 409, 404, 418, 409, 422, 403]
        assert app_engine.pool.checkedout() == 0
        assert len(await _emails(factory)) == 11

    async def test_cancelled_request_releases_its_connection(self, factory, app_engine):
        """A request cancelled mid-flight (client gone) still closes its session."""
        started = asyncio.Event()
        app = FastAPI()
        get_session = session_dependency(factory)

        @app.get("/slow")
        async def slow(session: Annotated[AsyncSession, Depends(get_session)]) -> None:
            await session.execute(text("SELECT 1"))
            started.set()
            await asyncio.sleep(60)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/slow",
            "raw_path": b"/slow",
            "root_path": "",
            "query_string": b"",
            "headers": [],
            "client": ("test", 1),
            "server": ("test", 80),
        }

        async def receive():
            await asyncio.sleep(60)
            return {"type": "http.disconnect"}

        async def send(message):
            pass

        task = asyncio.create_task(app(scope, receive, send))
        await asyncio.wait_for(started.wait(), 10)
        assert app_engine.pool.checkedout() == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert app_engine.pool.checkedout() == 0


class TestProvideRepository:
    def test_dependency_is_named_after_the_repository(self):
        """The dependency has a readable name."""
        dependency = provide_repository(UserRepository, session=lambda: None)
        assert dependency.__name__ == "get_user_repository"

    async def test_gives_a_repository_on_the_request_session(self):
        """The repository is built on whatever the session dependency gives."""
        marker = object()
        app = FastAPI()
        get_users = provide_repository(UserRepository, session=lambda: marker)

        @app.get("/")
        async def endpoint(users: Annotated[UserRepository, Depends(get_users)]) -> bool:
            return isinstance(users, UserRepository) and users.session is marker

        async with _client(app) as client:
            assert (await client.get("/")).json() is True


def _raising_app(exc: Exception, **kwargs: Any) -> FastAPI:
    app = FastAPI()
    install_exception_handlers(app, **kwargs)

    @app.get("/")
    async def endpoint() -> None:
        raise exc

    return app


class TestExceptionHandlers:
    @pytest.mark.parametrize(
        ("exc", "status"),
        [
            pytest.param(NotFoundError(model=User, detail={"identity": "7"}), 404, id="not-found"),
            pytest.param(UniqueViolationError(constraint="uq_users_email"), 409, id="unique"),
            pytest.param(ForeignKeyViolationError(), 409, id="foreign-key"),
            pytest.param(CheckViolationError(), 409, id="check"),
            pytest.param(ConcurrencyError(), 409, id="concurrency"),
            pytest.param(InvalidFilterError(detail={"field": "age"}), 422, id="invalid-filter"),
            pytest.param(TenantRequiredError(), 403, id="tenant-required"),
            pytest.param(TenantMismatchError(), 403, id="tenant-mismatch"),
            pytest.param(MultipleResultsFoundError(), 500, id="multiple-results"),
            pytest.param(ConfigurationError(), 500, id="configuration"),
            pytest.param(RepositoryError("bad call"), 500, id="other"),
        ],
    )
    async def test_status_and_body(self, exc, status):
        """Each error class gets its status and a JSON body with code, message and detail."""
        async with _client(_raising_app(exc)) as client:
            response = await client.get("/")
        assert response.status_code == status
        assert response.json() == {"error": exc.code, "message": exc.message, "detail": exc.detail}

    def test_body_of_a_not_found_error(self):
        """The body carries the class's code, its message and the detail."""
        body = error_body(NotFoundError(model=User, detail={"identity": "7"}))
        assert body == {
            "error": "not_found",
            "message": "The requested row does not exist.",
            "detail": {"identity": "7", "model": "User"},
        }

    def test_subclass_takes_the_status_of_its_nearest_base(self):
        """A class not listed takes the status of its nearest listed base."""

        class AppConflictError(UniqueViolationError):
            code = "app_conflict"

        assert status_code_for(AppConflictError()) == 409
        assert DEFAULT_STATUS_CODES[RepositoryError] == 500

    async def test_overrides(self):
        """Statuses can be overridden per class."""
        app = _raising_app(TenantRequiredError(), status_codes={TenantRequiredError: 401})
        async with _client(app) as client:
            assert (await client.get("/")).status_code == 401

    async def test_server_errors_are_logged(self, caplog):
        """A 5xx answer is logged with its traceback; a 4xx one is not."""
        with caplog.at_level(logging.ERROR, logger="sqla_repo.ext.fastapi"):
            async with _client(_raising_app(MultipleResultsFoundError())) as client:
                await client.get("/")
            async with _client(_raising_app(NotFoundError())) as client:
                await client.get("/")
        assert [r.exc_info is not None for r in caplog.records] == [True]
        assert "multiple_results" in caplog.records[0].getMessage()

    async def test_database_errors_leak_no_sql(self, factory):
        """A real integrity error is answered without SQL or bound values."""
        async with _client(build_app(factory)) as client:
            await client.post("/users", params={"email": "secret@x.org", "name": "n"})
            response = await client.post("/users", params={"email": "secret@x.org"})
        assert response.status_code == 409
        body = response.text.lower()
        assert "secret" not in body
        assert "insert" not in body
        assert "values" not in body

    async def test_not_found_on_every_backend(self, factory):
        """A missing row is a 404."""
        async with _client(build_app(factory)) as client:
            response = await client.get("/users/424242")
        assert response.status_code == 404
        assert response.json()["detail"] == {"identity": "424242", "model": "User"}

    async def test_stale_version_is_a_conflict(self, factory):
        """A write with a stale version is a 409 and nothing of the request is kept."""
        async with _client(build_app(factory)) as client:
            response = await client.post("/tickets/stale")
        assert response.status_code == 409
        assert response.json()["error"] == "concurrency_conflict"
        async with factory() as session:
            assert await session.scalar(select(func.count()).select_from(Ticket)) == 0


def _params_app(dependency: Any, **route: Any) -> FastAPI:
    app = FastAPI()
    install_exception_handlers(app)

    @app.get("/", **route)
    async def endpoint(params: Annotated[Any, Depends(dependency)]) -> dict[str, Any]:
        return params.as_kwargs()  # type: ignore[no-any-return]

    return app


async def _get(app: FastAPI, query: str) -> httpx.Response:
    async with _client(app) as client:
        return await client.get("/" + query)


class SmallPages(BaseRepository[User]):
    filterable_fields = ("email", "age", "name")
    sortable_fields = ("name", "age")
    max_page_size = 5


class PerField(BaseRepository[User]):
    filterable_fields: ClassVar = {
        "email": ("eq", "iexact"),
        "age": ("gte", "le", "between"),
        "name": ("eq", "icontains"),
    }
    sortable_fields = ("name", "email")


class TestSearchParams:
    async def test_defaults(self):
        """A request without parameters is valid: limit 20, offset 0, no order, no filter."""
        response = await _get(_params_app(search_params(UserRepository)), "")
        assert response.json() == {"filters": {}, "order_by": None, "limit": 20, "offset": 0}

    async def test_default_limit_never_exceeds_max_page_size(self):
        """The default page size is capped at the repository's max_page_size."""
        response = await _get(_params_app(search_params(SmallPages)), "")
        assert response.json()["limit"] == 5

    @pytest.mark.parametrize("query", ["?limit=6", "?limit=0", "?limit=x", "?offset=-1"])
    async def test_page_bounds(self, query):
        """A limit outside 1..max_page_size or a negative offset is a 422 naming it."""
        response = await _get(_params_app(search_params(SmallPages)), query)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", query[1:].split("=")[0]]

    async def test_sort_and_filters(self):
        """The sort and filter parameters become order_by and filters."""
        app = _params_app(search_params(UserRepository))
        query = (
            "?sort=-age,name&limit=3&offset=6&email__ilike=%25@x.org"
            "&name__in=a,b&age__between=25,35&status=active"
        )
        response = await _get(app, query)
        assert response.json() == {
            "filters": {
                "email__ilike": "%@x.org",
                "name__in": "a,b",
                "age__between": "25,35",
                "status": "active",
            },
            "order_by": ["-age", "name"],
            "limit": 3,
            "offset": 6,
        }

    async def test_repeated_list_parameter_is_a_list(self):
        """A list operator given several times takes one value per occurrence."""
        response = await _get(
            _params_app(search_params(UserRepository)), "?name__in=a&name__in=b,c"
        )
        assert response.json()["filters"] == {"name__in": ["a", "b,c"]}

    @pytest.mark.parametrize(
        ("query", "loc", "kind"),
        [
            pytest.param("?emial=a", "emial", "unknown_field", id="unknown-field"),
            pytest.param("?username=a", "username", "unknown_field", id="not-whitelisted"),
            pytest.param("?age__near=3", "age__near", "unknown_operator", id="unknown-operator"),
            pytest.param("?age=old", "age", "invalid_value", id="bad-value"),
            pytest.param("?age__between=1", "age__between", "wrong_number_of_values", id="between"),
            pytest.param("?age=1&age=2", "age", "repeated_parameter", id="repeated"),
            pytest.param("?filters=age", "filters", "unknown_field", id="filters-parameter"),
            pytest.param("?sort=-username", "sort", "not_sortable", id="not-sortable"),
            pytest.param("?sort=name,name", "sort", "duplicate_sort_field", id="duplicate-sort"),
            pytest.param("?sort=name,", "sort", "invalid_field", id="empty-sort-field"),
        ],
    )
    async def test_bad_input_is_a_422_naming_the_parameter(self, query, loc, kind):
        """Anything not understood is rejected, naming the query parameter."""
        response = await _get(_params_app(search_params(SmallPages)), query)
        assert response.status_code == 422
        (error,) = response.json()["detail"]
        assert (error["loc"], error["type"]) == (["query", loc], kind)
        assert error["msg"]

    async def test_every_problem_is_reported(self):
        """All offending parameters are listed in one response."""
        response = await _get(_params_app(search_params(SmallPages)), "?sort=x&a=1&b=2")
        locs = [e["loc"][-1] for e in response.json()["detail"]]
        assert sorted(locs) == ["a", "b", "sort"]

    async def test_too_many_filters(self):
        """More filter parameters than MAX_CONDITIONS are refused."""
        query = "?" + "&".join(f"f{i}=1" for i in range(101))
        response = await _get(_params_app(search_params(SmallPages)), query)
        assert response.json()["detail"][0]["type"] == "too_many_conditions"

    async def test_declared_route_parameters_are_not_filters(self):
        """Query parameters the route declares itself are left to the route."""

        class Flags(BaseModel):
            verbose: bool = False

        app = FastAPI()
        dependency = search_params(SmallPages, extra_params=("trace",))

        async def read_flags(flags: Annotated[Flags, Query()]) -> Flags:
            return flags

        @app.get("/")
        async def endpoint(
            params: Annotated[SearchParams, Depends(dependency)],
            flags: Annotated[Flags, Depends(read_flags)],
            q: str = "",
        ) -> dict[str, Any]:
            return {"filters": params.filters, "q": q, "verbose": flags.verbose}

        response = await _get(app, "?q=ada&verbose=true&trace=1&name=Ada")
        assert response.json() == {"filters": {"name": "Ada"}, "q": "ada", "verbose": True}

    def test_misconfigured_whitelist_fails_at_definition(self):
        """A whitelist naming a missing attribute is refused when the dependency is made."""

        class Broken(BaseRepository[User]):
            filterable_fields = ("nope",)

        with pytest.raises(ConfigurationError):
            search_params(Broken)

    async def test_empty_whitelist_allows_no_filter(self):
        """With filterable_fields = () every filter is refused, and the schema says so."""

        class NoFilters(BaseRepository[User]):
            filterable_fields = ()

        app = _params_app(search_params(NoFilters))
        assert (await _get(app, "?email=a@x.org")).status_code == 422
        (filters,) = [
            p for p in app.openapi()["paths"]["/"]["get"]["parameters"] if p["name"] == "filters"
        ]
        assert filters["schema"]["maxProperties"] == 0

    def test_openapi(self):
        """limit, offset, sort and the filters appear in the OpenAPI schema."""
        app = _params_app(search_params(SmallPages))
        parameters = {p["name"]: p for p in app.openapi()["paths"]["/"]["get"]["parameters"]}
        assert set(parameters) == {"limit", "offset", "sort", "filters"}
        assert parameters["limit"]["schema"]["maximum"] == 5
        assert parameters["limit"]["schema"]["default"] == 5
        assert parameters["offset"]["schema"]["minimum"] == 0
        assert "age, name" in parameters["sort"]["description"]
        filters = parameters["filters"]
        assert filters["in"] == "query"
        assert filters["schema"]["type"] == "object"
        pattern = filters["schema"]["propertyNames"]["pattern"]
        assert pattern.startswith("^(?:(?:age|email|name)(?:__(?:between|contains|endswith|")
        description = filters["description"]
        assert "Fields: age, email, name. Operators: between, contains, endswith," in description
        assert re.match(pattern, "email__iexact")
        assert not re.match(pattern, "username")

    async def test_search_on_every_backend(self, factory):
        """Filters and sort from the query string narrow and order real rows."""
        async with _client(build_app(factory)) as client:
            for email, name in [("a@x.org", "Ann"), ("b@y.org", "Bob"), ("c@x.org", "Cid")]:
                await client.post("/users", params={"email": email, "name": name})
            response = await client.get(
                "/users", params={"email__endswith": "@x.org", "sort": "-name", "limit": 1}
            )
            typo = await client.get("/users", params={"emial__endswith": "@x.org"})
        page = response.json()
        assert [u["name"] for u in page["items"]] == ["Cid"]
        assert page["total"] == 2
        assert (page["page"], page["total_pages"], page["has_next"]) == (1, 2, True)
        assert typo.status_code == 422

    async def test_query_string_values_are_coerced_on_every_backend(self, factory):
        """Text from the query string is coerced to each column's type."""
        async with _client(build_app(factory)) as client:
            for email, name in [("a@x.org", "Ann"), ("b@x.org", "Bob")]:
                await client.post("/users", params={"email": email, "name": name})

            async def names(**params: str) -> list[str]:
                response = await client.get("/users", params={**params, "sort": "name"})
                assert response.status_code == 200, response.text
                return [u["name"] for u in response.json()["items"]]

            assert await names(created_at__ge="2000-01-01") == ["Ann", "Bob"]
            assert await names(created_at__lt="2000-01-01T00:00:00Z") == []
            assert await names(age__is_null="true", is_active="yes") == ["Ann", "Bob"]
            assert await names(status__in="active,disabled", name__ne="Ann") == ["Bob"]
            assert await names(name__in="") == []
            assert await names(email__ilike="A%") == ["Ann"]

    def test_openapi_lists_operators_per_field(self):
        """With per-field operators, the description and pattern list each field's own."""
        app = _params_app(search_params(PerField))
        parameters = {p["name"]: p for p in app.openapi()["paths"]["/"]["get"]["parameters"]}
        description = parameters["filters"]["description"]
        assert (
            "Fields and their operators: age: between, ge, gte, le, lte; "
            "email: eq, iexact; name: eq, icontains."
        ) in description
        pattern = re.compile(parameters["filters"]["schema"]["propertyNames"]["pattern"])
        for key in ("email", "email__iexact", "age__gte", "age__lte", "name__icontains"):
            assert pattern.match(key), key
        for key in ("age", "age__eq", "email__ilike", "name__contains", "password_hash"):
            assert not pattern.match(key), key
        assert "Fields: email, name." in parameters["sort"]["description"]

    async def test_operator_not_allowed_is_a_422(self):
        """An operator the field does not list is a 422 naming the parameter."""
        app = _params_app(search_params(PerField))
        assert (await _get(app, "?email__iexact=A@x.org&age__le=3")).status_code == 200
        response = await _get(app, "?email__startswith=a&age=3")
        assert response.status_code == 422
        problems = {e["loc"][-1]: e["type"] for e in response.json()["detail"]}
        assert problems == {
            "email__startswith": "operator_not_allowed",
            "age": ("operator_not_allowed"),
        }


class TestWhitelistsAtStartUp:
    @pytest.mark.parametrize("factory", [search_params, cursor_params])
    def test_unset_whitelists_fail_when_the_dependency_is_made(self, factory):
        """A repository with neither whitelist cannot back a query-string dependency."""

        class Unset(BaseRepository[User]):
            pass

        with pytest.raises(ConfigurationError) as info:
            factory(Unset)
        message = str(info.value)
        assert "Unset.filterable_fields" in message
        assert "Unset.sortable_fields" in message
        assert "ALL_COLUMNS" in message

    @pytest.mark.parametrize("factory", [search_params, cursor_params])
    async def test_one_unset_whitelist_closes_its_channel(self, factory):
        """With only one whitelist set, the other channel refuses everything with a 422."""

        class FilterOnly(BaseRepository[User]):
            filterable_fields = ("name",)

        class SortOnly(BaseRepository[User]):
            sortable_fields = ("name",)

        filter_only = _params_app(factory(FilterOnly))
        assert (await _get(filter_only, "?name=a")).status_code == 200
        response = await _get(filter_only, "?sort=name")
        assert response.status_code == 422
        assert response.json()["detail"][0]["type"] == "not_sortable"
        sort_only = _params_app(factory(SortOnly))
        assert (await _get(sort_only, "?sort=-name")).status_code == 200
        response = await _get(sort_only, "?name=a")
        assert response.json()["detail"][0]["type"] == "unknown_field"
        parameters = {p["name"]: p for p in sort_only.openapi()["paths"]["/"]["get"]["parameters"]}
        assert (
            "Fields: none (filtering is not available)." in (parameters["filters"]["description"])
        )
        parameters = {
            p["name"]: p for p in filter_only.openapi()["paths"]["/"]["get"]["parameters"]
        }
        assert "Fields: none (sorting is not available)." in parameters["sort"]["description"]

    def test_malformed_operator_list_fails_when_the_class_is_made(self):
        """An unknown operator in filterable_fields is refused before any request."""
        with pytest.raises(ConfigurationError) as info:

            class Typo(BaseRepository[User]):
                filterable_fields: ClassVar = {"email": ("eq", "equals")}
                sortable_fields = ()

        assert "equals" in str(info.value)

    @pytest.mark.parametrize("factory", [search_params, cursor_params])
    def test_unknown_field_fails_when_the_dependency_is_made(self, factory):
        """A whitelisted name the model does not have is refused before any request."""

        class Typo(BaseRepository[User]):
            filterable_fields = ("emial",)
            sortable_fields = ()

        with pytest.raises(ConfigurationError) as info:
            factory(Typo)
        assert "emial" in str(info.value)

    @pytest.mark.parametrize("factory", [search_params, cursor_params])
    async def test_all_columns(self, factory):
        """ALL_COLUMNS lists every column attribute, for filters and sort alike."""

        class Open(BaseRepository[User]):
            filterable_fields = ALL_COLUMNS
            sortable_fields = ALL_COLUMNS

        app = _params_app(factory(Open))
        assert (await _get(app, "?username__icontains=a&sort=-created_by")).status_code == 200
        parameters = {p["name"]: p for p in app.openapi()["paths"]["/"]["get"]["parameters"]}
        assert "username" in parameters["sort"]["description"]
        assert "username" in parameters["filters"]["description"]


class TestPasswordHashOracle:
    """The ORM-leak scenario: a hidden password_hash probed through the query string."""

    @pytest.mark.parametrize("factory", [search_params, cursor_params])
    @pytest.mark.parametrize(
        ("query", "loc", "kind"),
        [
            ("?password_hash__startswith=$2b", "password_hash__startswith", "unknown_field"),
            ("?password_hash=x", "password_hash", "unknown_field"),
            ("?password_hash__gt=$2a", "password_hash__gt", "unknown_field"),
            ("?sort=password_hash", "sort", "not_sortable"),
            ("?sort=name,-password_hash", "sort", "not_sortable"),
            ("?email__startswith=a", "email__startswith", "operator_not_allowed"),
        ],
    )
    async def test_refused_with_a_422(self, factory, query, loc, kind):
        """Filtering or sorting on the hidden column is a 422, exactly like a missing one."""
        response = await _get(_params_app(factory(PublicAccounts)), query)
        assert response.status_code == 422
        (error,) = response.json()["detail"]
        assert (error["loc"], error["type"]) == (["query", loc], kind)
        assert "$2" not in error["msg"]

    async def test_hidden_and_missing_columns_answer_alike(self):
        """The 422 for a hidden column reads like the one for a column that does not exist."""
        app = _params_app(search_params(PublicAccounts))
        hidden = (await _get(app, "?password_hash__startswith=x")).json()["detail"][0]
        missing = (await _get(app, "?no_such_column__startswith=x")).json()["detail"][0]
        assert hidden["type"] == missing["type"]
        assert hidden["msg"].replace("password_hash", "?") == missing["msg"].replace(
            "no_such_column", "?"
        )

    def test_openapi_does_not_mention_the_hidden_column(self):
        """The schema lists the public fields only."""
        app = _params_app(cursor_params(PublicAccounts))
        assert "password_hash" not in json.dumps(app.openapi())


class TestCursorParams:
    async def test_defaults_and_kwargs(self):
        """The cursor and before parameters become paginate()'s after and before."""
        response = await _get(_params_app(cursor_params(SmallPages)), "?sort=name&name=a")
        assert response.json() == {
            "filters": {"name": "a"},
            "order_by": ["name"],
            "limit": 5,
            "after": None,
            "before": None,
        }

    @pytest.mark.parametrize(
        ("query", "loc", "kind"),
        [
            pytest.param("?cursor=!!!", "cursor", "malformed_cursor", id="malformed"),
            pytest.param("?before=AQ" + "A" * 40, "before", "invalid_cursor", id="tampered"),
            pytest.param("?cursor=a&before=b", "before", "both_cursors", id="both"),
            pytest.param("?offset=3", "offset", "unknown_field", id="offset"),
        ],
    )
    async def test_bad_cursor_is_a_422(self, query, loc, kind):
        """A malformed or tampered cursor, or both cursors at once, is rejected."""
        response = await _get(_params_app(cursor_params(SmallPages)), query)
        assert response.status_code == 422
        (error,) = response.json()["detail"]
        assert (error["loc"], error["type"]) == (["query", loc], kind)

    def test_openapi(self):
        """limit, cursor, before, sort and the filters appear in the OpenAPI schema."""
        app = _params_app(cursor_params(SmallPages))
        names = [p["name"] for p in app.openapi()["paths"]["/"]["get"]["parameters"]]
        assert names == ["limit", "cursor", "before", "sort", "filters"]

    async def test_keyset_walk_on_every_backend(self, factory):
        """Pages follow each other through next_cursor and back through previous_cursor."""
        async with _client(build_app(factory)) as client:
            for i in range(5):
                await client.post("/users", params={"email": f"u{i}@x.org", "name": f"n{i}"})
            first = (await client.get("/user-pages", params={"sort": "name", "limit": 2})).json()
            second = (
                await client.get(
                    "/user-pages",
                    params={"sort": "name", "limit": 2, "cursor": first["next_cursor"]},
                )
            ).json()
            back = (
                await client.get(
                    "/user-pages",
                    params={"sort": "name", "limit": 2, "before": second["previous_cursor"]},
                )
            ).json()
            other_order = await client.get(
                "/user-pages", params={"sort": "-name", "cursor": first["next_cursor"]}
            )
        assert [u["name"] for u in first["items"]] == ["n0", "n1"]
        assert (first["has_previous"], first["has_next"]) == (False, True)
        assert [u["name"] for u in second["items"]] == ["n2", "n3"]
        assert second["has_previous"] is True
        assert back["items"] == first["items"]
        assert other_order.status_code == 422
        assert other_order.json()["detail"][0]["type"] == "cursor_mismatch"


class TestModels:
    def test_page_model_from_result(self):
        """PageModel reads a SearchResult and validates its items from attributes."""

        class Row:
            def __init__(self, value: int) -> None:
                self.value = value

        class RowOut(BaseModel):
            value: int

        result = SearchResult(items=[Row(1), Row(2)], total=5, limit=2, offset=2)
        page = PageModel[RowOut].from_result(result)
        assert page.model_dump() == {
            "items": [{"value": 1}, {"value": 2}],
            "total": 5,
            "limit": 2,
            "offset": 2,
            "page": 2,
            "page_size": 2,
            "total_pages": 3,
            "has_next": True,
            "has_previous": True,
        }

    def test_cursor_page_model_from_page(self):
        """CursorPageModel reads a CursorPage."""
        page = CursorPageModel[int].from_page(CursorPage(items=[1, 2], next_cursor="n"))
        assert page.model_dump() == {
            "items": [1, 2],
            "next_cursor": "n",
            "previous_cursor": None,
            "has_next": True,
            "has_previous": False,
        }

    def test_response_schema(self):
        """The generic models give named, documented response schemas."""
        schema = PageModel[UserOut].model_json_schema()
        assert schema["properties"]["total"]["description"]
        assert schema["properties"]["items"]["items"]["$ref"].endswith("UserOut")
        assert set(schema["required"]) >= {"items", "total", "has_next"}


class TestContext:
    async def test_actor_stamps_audit_columns(self, factory):
        """The actor dependency stamps created_by and updated_by."""
        async with _client(build_app(factory)) as client:
            created = await client.post(
                "/users", params={"email": "a@x.org"}, headers={"X-User": "alice"}
            )
            renamed = await client.post(
                f"/users/{created.json()['id']}/rename",
                params={"name": "Ann"},
                headers={"X-User": "bob"},
            )
            anonymous = await client.post("/users", params={"email": "b@x.org"})
        assert (created.json()["created_by"], created.json()["updated_by"]) == ("alice", "alice")
        assert renamed.status_code == 200
        assert anonymous.json()["created_by"] is None
        async with factory() as session:
            user = await session.scalar(select(User).where(User.email == "a@x.org"))
        assert user is not None
        assert (user.name, user.created_by, user.updated_by) == ("Ann", "alice", "bob")

    async def test_context_is_set_for_the_request_only(self, factory):
        """Endpoints, sync ones included, see the request's values; nothing leaks out."""
        async with _client(build_app(factory)) as client:
            headers = {"X-User": "carol", "X-Tenant": "acme"}
            async_seen = (await client.get("/context", headers=headers)).json()
            sync_seen = (await client.get("/context-sync", headers=headers)).json()
            bare = (await client.get("/context")).json()
        assert async_seen == sync_seen == {"actor": "carol", "tenant": "acme"}
        assert bare == {"actor": None, "tenant": None}
        assert (current_actor(), current_tenant()) == (None, None)

    async def test_tenant_scopes_the_request(self, factory):
        """Rows are stamped with the request's tenant and invisible to other tenants."""
        async with _client(build_app(factory)) as client:
            created = await client.post(
                "/documents", params={"slug": "plan"}, headers={"X-Tenant": "acme"}
            )
            doc_id = created.json()["id"]
            own = await client.get(f"/documents/{doc_id}", headers={"X-Tenant": "acme"})
            foreign = await client.get(f"/documents/{doc_id}", headers={"X-Tenant": "globex"})
            missing = await client.get(f"/documents/{doc_id}")
            empty = await client.get(f"/documents/{doc_id}", headers={"X-Tenant": ""})
            mismatch = await client.post("/documents/foreign", headers={"X-Tenant": "acme"})
        assert created.json()["tenant_id"] == "acme"
        assert own.status_code == 200
        assert foreign.status_code == 404
        assert missing.status_code == empty.status_code == 403
        assert missing.json()["error"] == "tenant_required"
        assert mismatch.status_code == 403
        assert mismatch.json()["error"] == "tenant_mismatch"

    async def test_concurrent_requests_keep_their_own_context(self, factory):
        """Concurrent requests of two tenants and actors never see each other's rows."""
        tenants = ["acme", "globex"] * 4
        async with _client(build_app(factory)) as client:
            created = await asyncio.gather(
                *(
                    client.post(
                        "/documents",
                        params={"slug": f"{name}-{i}"},
                        headers={"X-Tenant": name, "X-User": f"{name}-user"},
                    )
                    for i, name in enumerate(tenants)
                )
            )
            listed = await asyncio.gather(
                *(client.get("/documents", headers={"X-Tenant": name}) for name in tenants)
            )
        for name, response in zip(tenants, created, strict=True):
            body = response.json()
            assert (body["tenant_id"], body["created_by"]) == (name, f"{name}-user")
        for name, response in zip(tenants, listed, strict=True):
            slugs = [d["slug"] for d in response.json()]
            assert len(slugs) == 4
            assert all(slug.startswith(f"{name}-") for slug in slugs)
        async with factory() as session:
            with all_tenants():
                assert await session.scalar(select(func.count()).select_from(Document)) == 8


def test_import_error_names_the_extra():
    """Without FastAPI, importing the module says which extra to install."""
    code = (
        "import sys; sys.modules['fastapi'] = None\n"
        "try:\n"
        "    import sqla_repo.ext.fastapi\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert 'pip install "sqla_repo[fastapi]"' in result.stdout


class TestEphemeralCursorSecretWarning:
    """cursor_params() warns at start-up when cursors would not survive another worker."""

    @pytest.fixture(autouse=True)
    def fresh_secret(self, monkeypatch):
        """Forget the process-wide secret and the environment variable; restored after."""
        from sqla_repo import _cursors  # noqa: PLC0415

        monkeypatch.setattr(_cursors, "_keyring", None)
        monkeypatch.setattr(_cursors, "_ephemeral", False)
        monkeypatch.delenv("SQLA_REPO_CURSOR_SECRET", raising=False)

    def test_warns_with_the_per_process_secret(self, caplog):
        with caplog.at_level(logging.WARNING, logger="sqla_repo.ext.fastapi"):
            cursor_params(UserRepository)
        (record,) = [r for r in caplog.records if r.name == "sqla_repo.ext.fastapi"]
        assert "SQLA_REPO_CURSOR_SECRET" in record.getMessage()
        assert "UserRepository" in record.getMessage()

    def test_silent_with_a_shared_secret(self, monkeypatch, caplog):
        from sqla_repo.pagination import cursor_secret_is_ephemeral  # noqa: PLC0415

        monkeypatch.setenv("SQLA_REPO_CURSOR_SECRET", "a secret shared by every worker")
        assert not cursor_secret_is_ephemeral()
        with caplog.at_level(logging.WARNING, logger="sqla_repo.ext.fastapi"):
            cursor_params(UserRepository)
            search_params(UserRepository)
        assert [r for r in caplog.records if r.name == "sqla_repo.ext.fastapi"] == []
