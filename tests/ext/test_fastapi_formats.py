"""sqla_repo.ext.fastapi for real APIs: public names for filters and sorts, own error bodies.

RealWorld's ``GET /api/articles?tag=sql`` filters on ``tags.name`` under a public name,
and every error is ``{"errors": {"body": [message]}}``.
"""

from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Post, Tag, User, post_tags
from sqla_repo import ConfigurationError, InvalidFilterError, RepositoryError
from sqla_repo.ext.fastapi import (
    CursorParams,
    SearchParams,
    cursor_params,
    install_exception_handlers,
    search_params,
    session_dependency,
)
from sqla_repo.repository import BaseRepository

pytestmark = pytest.mark.fastapi


class ArticleRepository(BaseRepository[Post]):
    filterable_fields = {  # noqa: RUF012 - a whitelist, read only
        "title": ("eq", "icontains"),
        "tags.name": ("eq", "in"),
        "author.email": ("eq",),
    }
    sortable_fields = ("title", "created_at")


ALIASES = {"tag": "tags.name", "author": "author.email", "newest": "created_at"}


def realworld(exc: RepositoryError, status: int) -> dict[str, Any]:
    del status
    return {"errors": {"body": [exc.message]}}


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def build_app(
    sessionmaker: async_sessionmaker[AsyncSession], *, aliases: Any = ALIASES, **handlers: Any
) -> FastAPI:
    get_session = session_dependency(sessionmaker)
    search = search_params(ArticleRepository, aliases=aliases)
    pages = cursor_params(ArticleRepository, aliases=aliases)
    app = FastAPI()
    install_exception_handlers(app, **handlers)

    @app.get("/articles")
    async def articles(
        params: Annotated[SearchParams, Depends(search)],
        session: Annotated[AsyncSession, Depends(get_session)],
    ) -> dict[str, Any]:
        result = await ArticleRepository(session).search(**params.as_kwargs())
        return {
            "titles": [post.title for post in result.items],
            "filters": params.filters,
            "order_by": params.order_by,
        }

    @app.get("/feed")
    async def feed(
        params: Annotated[CursorParams, Depends(pages)],
        session: Annotated[AsyncSession, Depends(get_session)],
    ) -> dict[str, Any]:
        page = await ArticleRepository(session).paginate(**params.as_kwargs())
        return {"titles": [post.title for post in page.items], "next": page.next_cursor}

    @app.get("/articles/{article_id}")
    async def article(
        article_id: int, session: Annotated[AsyncSession, Depends(get_session)]
    ) -> str:
        return (await ArticleRepository(session).get_by_id(article_id)).title

    return app


@pytest.fixture
async def seeded(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Posts p1 (sql, orm), p2 (sql), p3 (web) by ada, bob, ada."""
    async with sessionmaker() as session, session.begin():
        ada, bob = User(email="ada@example.org"), User(email="bob@example.org")
        tags = {name: Tag(name=name) for name in ("sql", "orm", "web")}
        session.add_all([ada, bob, *tags.values()])
        await session.flush()
        posts = [
            Post(title="p1", author_id=ada.id),
            Post(title="p2", author_id=bob.id),
            Post(title="p3", author_id=ada.id),
        ]
        session.add_all(posts)
        await session.flush()
        links = [(0, "sql"), (0, "orm"), (1, "sql"), (2, "web")]
        await session.execute(
            insert(post_tags),
            [{"post_id": posts[i].id, "tag_id": tags[name].id} for i, name in links],
        )


# -- aliases -------------------------------------------------------------------------------


@pytest.mark.usefixtures("seeded")
class TestAliases:
    @pytest.mark.parametrize(
        ("query", "titles", "filters"),
        [
            ("tag=sql", ["p1", "p2"], {"tags.name": "sql"}),
            ("tag__eq=orm", ["p1"], {"tags.name__eq": "orm"}),
            ("tag__in=orm,web", ["p1", "p3"], {"tags.name__in": "orm,web"}),
            ("tag=sql&author=ada@example.org", ["p1"], None),
            ("title__icontains=P&tag=web", ["p3"], None),
        ],
    )
    async def test_public_names_filter(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        query: str,
        titles: list[str],
        filters: dict[str, str] | None,
    ) -> None:
        """A public name filters on its target; the parameters hold the target's name."""
        async with _client(build_app(sessionmaker)) as client:
            response = await client.get(f"/articles?{query}&sort=title")
        assert response.status_code == 200, response.text
        assert response.json()["titles"] == titles
        if filters is not None:
            assert response.json()["filters"] == filters

    async def test_sort_alias(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        """?sort=-newest sorts on created_at, in search and keyset pages alike."""
        async with _client(build_app(sessionmaker)) as client:
            newest = await client.get("/articles?sort=-newest,title")
            oldest = await client.get("/articles?sort=newest,title")
            feed = await client.get("/feed?sort=-newest,title&tag=sql&limit=1")
            second = await client.get(
                "/feed", params={"sort": "-newest,title", "tag": "sql", "limit": 1,
                                 "cursor": feed.json()["next"]},
            )  # fmt: skip
        assert newest.json()["order_by"] == ["-created_at", "title"]
        assert newest.json()["titles"] == list(reversed(oldest.json()["titles"]))
        assert feed.status_code == second.status_code == 200
        assert sorted(feed.json()["titles"] + second.json()["titles"]) == ["p1", "p2"]

    @pytest.mark.parametrize(
        ("query", "param", "kind", "hidden"),
        [
            ("tags.name=sql", "tags.name", "unknown_field", None),
            ("tags.name__in=sql", "tags.name__in", "unknown_field", None),
            ("tag__icontains=s", "tag__icontains", "operator_not_allowed", "tags.name"),
            ("author__ne=x", "author__ne", "operator_not_allowed", "author.email"),
            ("tag__nope=s", "tag__nope", "unknown_operator", "tags.name"),
            ("sort=created_at", "sort", "not_sortable", None),
            ("sort=newest,-newest", "sort", "duplicate_sort_field", "created_at"),
            ("sort=-nope", "sort", "not_sortable", None),
        ],
    )
    async def test_only_public_names_are_accepted(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        query: str,
        param: str,
        kind: str,
        hidden: str | None,
    ) -> None:
        """The target's own name is unknown to clients; errors never name it."""
        async with _client(build_app(sessionmaker)) as client:
            response = await client.get(f"/articles?{query}")
        assert response.status_code == 422, response.text
        (error,) = response.json()["detail"]
        assert (error["loc"], error["type"]) == (["query", param], kind)
        if hidden is not None:
            assert hidden not in response.text

    async def test_identity_alias_keeps_the_name(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Mapping a name to itself accepts it next to its alias."""
        aliases = {**ALIASES, "tags.name": "tags.name"}
        async with _client(build_app(sessionmaker, aliases=aliases)) as client:
            one = await client.get("/articles?tags.name=orm")
            other = await client.get("/articles?tag=orm")
        assert one.json()["titles"] == other.json()["titles"] == ["p1"]

    async def test_openapi_lists_public_names(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """The descriptions and the key pattern name the public fields, not their targets."""
        schema = build_app(sessionmaker).openapi()
        for path in ("/articles", "/feed"):
            parameters = {p["name"]: p for p in schema["paths"][path]["get"]["parameters"]}
            filters, sort = parameters["filters"], parameters["sort"]
            assert "tag: eq, in" in filters["description"]
            assert "author: eq" in filters["description"]
            assert "tags.name" not in str(filters)
            assert "author.email" not in str(filters)
            pattern = filters["schema"]["propertyNames"]["pattern"]
            assert "tag" in pattern
            assert "newest" in sort["description"]
            assert "created_at" not in sort["description"]


@pytest.mark.parametrize(
    ("aliases", "match"),
    [
        ({"tag": "tags.title"}, "neither"),
        ({"tag": "password"}, "neither"),
        ({"tag__x": "tags.name"}, "cannot be a query parameter"),
        ({"": "tags.name"}, "cannot be a query parameter"),
        ({"a b": "tags.name"}, "cannot be a query parameter"),
        ({"limit": "tags.name"}, "query parameter of its own"),
        ({"sort": "title"}, "query parameter of its own"),
        ({"title": "tags.name"}, "whitelisted field of its own"),
        ({1: "tags.name"}, "cannot be a query parameter"),
    ],
)
@pytest.mark.parametrize("factory", [search_params, cursor_params])
def test_bad_aliases_fail_at_creation(aliases: Any, match: str, factory: Any) -> None:
    """An alias must stand for a whitelisted field under a usable, unclaimed name."""
    with pytest.raises(ConfigurationError, match=match):
        factory(ArticleRepository, aliases=aliases)


def test_swapped_names_are_allowed() -> None:
    """An alias may reuse a name another alias hides."""
    search_params(ArticleRepository, aliases={"title": "tags.name", "tag_title": "title"})


# -- body= ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("seeded")
class TestBody:
    async def test_repository_errors_use_the_body(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A repository error is rendered by body(), with its status."""
        seen: list[tuple[type[RepositoryError], int]] = []

        def body(exc: RepositoryError, status: int) -> Any:
            seen.append((type(exc), status))
            return realworld(exc, status)

        async with _client(build_app(sessionmaker, body=body)) as client:
            response = await client.get("/articles/987654")
        assert response.status_code == 404
        assert response.json() == {"errors": {"body": ["Post not found"]}}
        assert seen[0][1] == 404

    async def test_query_errors_use_the_body(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """The 422 of bad query parameters goes through body() too, as one InvalidFilterError."""
        seen: list[RepositoryError] = []

        def body(exc: RepositoryError, status: int) -> Any:
            seen.append(exc)
            return {"errors": {"body": [exc.message]}, "status": status}

        async with _client(build_app(sessionmaker, body=body)) as client:
            response = await client.get("/articles?tag__icontains=s&nope=1&sort=-newest")
            cursor = await client.get("/feed?cursor=garbage")
        assert response.status_code == 422
        assert response.json() == {
            "errors": {"body": ["tag__icontains: The icontains operator is not allowed on 'tag'."]},
            "status": 422,
        }
        error = seen[0]
        assert isinstance(error, InvalidFilterError)
        assert error.detail["reason"] == "invalid_query"
        assert [(e["param"], e["type"]) for e in error.detail["errors"]] == [
            ("tag__icontains", "operator_not_allowed"),
            ("nope", "unknown_field"),
        ]
        assert cursor.status_code == 422
        assert cursor.json()["errors"]["body"][0].startswith("cursor: ")

    async def test_query_status_follows_status_codes(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """The query 422 is InvalidFilterError's status, so status_codes can change it."""
        app = build_app(sessionmaker, body=realworld, status_codes={InvalidFilterError: 400})
        async with _client(app) as client:
            response = await client.get("/articles?nope=1")
        assert response.status_code == 400
        assert list(response.json()) == ["errors"]

    async def test_other_validation_errors_stay_fastapis(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A bad path parameter is the application's validation, answered by FastAPI."""
        async with _client(build_app(sessionmaker, body=realworld)) as client:
            response = await client.get("/articles/not-a-number")
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["path", "article_id"]

    async def test_default_is_unchanged(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Without body=, errors use error_body() and the query 422 is FastAPI's own."""
        async with _client(build_app(sessionmaker)) as client:
            missing = await client.get("/articles/987654")
            bad = await client.get("/articles?nope=1")
        assert missing.json()["error"] == "not_found"
        assert set(missing.json()) == {"error", "message", "detail"}
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["query", "nope"]
