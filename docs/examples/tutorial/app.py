"""Tutorial step 6: the articles as an HTTP service with FastAPI."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from models import Article, Author
from sqla_repo import Base
from sqla_repo.ext.fastapi import (
    PageModel,
    SearchParams,
    actor_dependency,
    install_exception_handlers,
    provide_repository,
    search_params,
    session_dependency,
)
from sqla_repo.repository import BaseRepository


# --8<-- [start:repository]
class ArticleRepository(BaseRepository[Article]):
    filterable_fields = (
        "slug",
        "title",
        "status",
        "views",
        "created_at",
        "author.name",
    )
    sortable_fields = ("title", "views", "created_at")
    default_order_by = ("-created_at",)
    max_page_size = 50


# --8<-- [end:repository]
# --8<-- [start:schemas]
class ArticleIn(BaseModel):
    slug: str
    title: str
    author_id: int


class ArticleChange(BaseModel):
    title: str | None = None
    status: str | None = None


class ArticleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    slug: str
    title: str
    status: str
    views: int
    created_at: datetime
    created_by: str | None
    updated_by: str | None


# --8<-- [end:schemas]
# --8<-- [start:wiring]
engine = create_async_engine("sqlite+aiosqlite:///blog.db")
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)

# One session and one transaction per request:
get_session = session_dependency(SessionLocal)
get_articles = provide_repository(ArticleRepository, session=get_session)
# limit, offset, sort and the filters, from the query string:
article_search = search_params(ArticleRepository)

Articles = Annotated[ArticleRepository, Depends(get_articles)]


def current_user(x_user: Annotated[str | None, Header()] = None) -> str | None:
    return x_user  # in a real service: the authenticated user's id


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    # A demonstration: start from an empty database every time.
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    async with SessionLocal() as session, session.begin():
        session.add(Author(id=1, name="Ada"))
    yield
    await engine.dispose()


set_actor = actor_dependency(current_user)
app = FastAPI(lifespan=lifespan, dependencies=[Depends(set_actor)])
install_exception_handlers(app)  # NotFoundError -> 404, ConflictError -> 409...


# --8<-- [end:wiring]
# --8<-- [start:endpoints]
@app.post("/articles", status_code=201)
async def create_article(data: ArticleIn, articles: Articles) -> ArticleOut:
    article = await articles.create(data.model_dump())
    return ArticleOut.model_validate(article)


@app.get("/articles")
async def list_articles(
    params: Annotated[SearchParams, Depends(article_search)], articles: Articles
) -> PageModel[ArticleOut]:
    return PageModel[ArticleOut].from_result(
        await articles.search(**params.as_kwargs())
    )


@app.get("/articles/{article_id}")
async def read_article(article_id: int, articles: Articles) -> ArticleOut:
    return ArticleOut.model_validate(await articles.get_by_id(article_id))


@app.patch("/articles/{article_id}")
async def change_article(
    article_id: int, data: ArticleChange, articles: Articles
) -> ArticleOut:
    article = await articles.update(article_id, data.model_dump(exclude_unset=True))
    return ArticleOut.model_validate(article)


@app.delete("/articles/{article_id}", status_code=204)
async def delete_article(article_id: int, articles: Articles) -> None:
    await articles.soft_delete(article_id)


# --8<-- [end:endpoints]
# --8<-- [start:client]
def slugs(response: httpx.Response) -> list[str]:
    return [item["slug"] for item in response.json()["items"]]


async def main() -> None:
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://test")
    async with lifespan(app), client:
        alice, bob = {"X-User": "alice"}, {"X-User": "bob"}
        for slug, title in [("intro", "Python intro"), ("sql", "SQL tricks")]:
            new = {"slug": slug, "title": title, "author_id": 1}
            r = await client.post("/articles", json=new, headers=alice)
            print("POST", r.status_code, r.json()["created_by"])

        change = {"status": "published"}
        r = await client.patch("/articles/2", json=change, headers=bob)
        print("PATCH", r.status_code, r.json()["status"], r.json()["updated_by"])

        r = await client.get("/articles", params={"title__ilike": "%python%"})
        print("GET", r.status_code, r.json()["total"], slugs(r))

        r = await client.get("/articles?status=published&sort=-views&limit=10")
        print("GET", r.status_code, slugs(r))

        taken = {"slug": "sql", "title": "Duplicate", "author_id": 1}
        r = await client.post("/articles", json=taken)
        print("POST", r.status_code, r.json()["error"], r.json()["detail"])

        r = await client.delete("/articles/1")
        print("DELETE", r.status_code)
        r = await client.get("/articles/1")
        print("GET", r.status_code, r.json()["error"], r.json()["detail"])

        r = await client.get("/articles?titel=SQL")
        print("GET", r.status_code, r.json()["detail"][0]["loc"])


# --8<-- [end:client]
if __name__ == "__main__":
    asyncio.run(main())
