"""Five minutes: a model, a repository, a FastAPI endpoint with search.

Serve it with ``uvicorn five_minutes:app``. ``python five_minutes.py``
sends the page's curl requests in-process and prints what curl prints.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI
from pydantic import BaseModel, ConfigDict
from sqlalchemy import String
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column

from sqla_repo import Base, TimestampedBase
from sqla_repo.ext.fastapi import (
    PageModel,
    SearchParams,
    install_exception_handlers,
    provide_repository,
    search_params,
    session_dependency,
)
from sqla_repo.repository import BaseRepository


# --8<-- [start:model]
class Book(TimestampedBase):  # id, created_at, updated_at
    __tablename__ = "books"

    title: Mapped[str] = mapped_column(String(200))
    author: Mapped[str] = mapped_column(String(100))
    year: Mapped[int]


# --8<-- [end:model]


# --8<-- [start:repository]
class BookRepository(BaseRepository[Book]):
    filterable_fields = ("title", "author", "year")  # what clients may filter on
    sortable_fields = ("title", "year")  # and sort on


# --8<-- [end:repository]


# --8<-- [start:app]
class BookIn(BaseModel):
    title: str
    author: str
    year: int


class BookOut(BookIn):
    model_config = ConfigDict(from_attributes=True)

    id: int


engine = create_async_engine("sqlite+aiosqlite:///books.db")
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
get_session = session_dependency(SessionLocal)  # one transaction per request
get_books = provide_repository(BookRepository, session=get_session)
Books = Annotated[BookRepository, Depends(get_books)]
Search = Annotated[SearchParams, Depends(search_params(BookRepository))]


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    async with (
        engine.begin() as conn
    ):  # a demonstration: a fresh table on every start
        await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)
install_exception_handlers(
    app
)  # NotFoundError -> 404, InvalidFilterError -> 422, ...


@app.post("/books", status_code=201)
async def add_book(data: BookIn, books: Books) -> BookOut:
    return BookOut.model_validate(await books.create(data.model_dump()))


@app.get("/books")
async def find_books(params: Search, books: Books) -> PageModel[BookOut]:
    return PageModel[BookOut].from_result(await books.search(**params.as_kwargs()))


# --8<-- [end:app]

NEW_BOOKS = [
    {"title": "Dune", "author": "Frank Herbert", "year": 1965},
    {"title": "Hyperion", "author": "Dan Simmons", "year": 1989},
    {"title": "Children of Dune", "author": "Frank Herbert", "year": 1976},
]


JSON = "-H 'content-type: application/json'"


def show(command: str, response: httpx.Response) -> None:
    """Print a curl command and the body curl prints (compact JSON)."""
    print(f"$ {command}")
    print(json.dumps(response.json(), separators=(",", ":")))


async def main() -> None:
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(
        transport=transport, base_url="http://127.0.0.1:8000"
    )
    async with lifespan(app), client:
        for book in NEW_BOOKS:
            body = json.dumps(book, separators=(",", ":"))
            response = await client.post("/books", json=book)
            show(f"curl -s localhost:8000/books {JSON} -d '{body}'", response)
        query = "author__ilike=%25herbert&sort=-year&limit=10"
        show(
            f"curl -s 'localhost:8000/books?{query}'",
            await client.get(f"/books?{query}"),
        )
        query = "year__between=1970,1990&sort=title"
        response = await client.get(f"/books?{query}")
        print(
            f"$ curl -s 'localhost:8000/books?{query}' | jq -c '[.items[].title]'"
        )
        print(
            json.dumps(
                [item["title"] for item in response.json()["items"]],
                separators=(",", ":"),
            )
        )
        query = "isbn=123"
        show(
            f"curl -s 'localhost:8000/books?{query}'",
            await client.get(f"/books?{query}"),
        )


if __name__ == "__main__":
    asyncio.run(main())
