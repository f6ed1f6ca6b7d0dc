"""Static checks: users' repositories get precise types (checked by mypy, never run)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, MappedAsDataclass, Session, mapped_column
from typing_extensions import assert_type

from sqla_repo import (
    BaseRepository,
    CursorPage,
    IntegerPKMixin,
    SearchResult,
    SyncBaseRepository,
    TimestampMixin,
)


class PlainBase(DeclarativeBase):
    pass


class Author(IntegerPKMixin, TimestampMixin, PlainBase):
    __tablename__ = "typing_authors"
    name: Mapped[str] = mapped_column(String(50))


class DataclassBase(MappedAsDataclass, DeclarativeBase):
    pass


class Book(DataclassBase):
    __tablename__ = "typing_books"
    id: Mapped[int] = mapped_column(primary_key=True, init=False)
    title: Mapped[str] = mapped_column(String(50))


T = TypeVar("T")


class AppRepository(BaseRepository[T]):
    max_page_size = 50


class AuthorRepository(AppRepository[Author]):
    async def find(self, name: str) -> Author | None:
        return await self.get_one_or_none(name=name)


class BookRepository(BaseRepository[Book]):
    pass


async def check(session: AsyncSession) -> None:
    authors = AuthorRepository(session)
    assert_type(await authors.get(1), Author | None)
    assert_type(await authors.get_by_id(1), Author)
    assert_type(await authors.get_one(name="x"), Author)
    assert_type(await authors.list(), list[Author])
    assert_type(await authors.search(), SearchResult[Author])
    assert_type(await authors.paginate(), CursorPage[Author])
    assert_type(await authors.create({"name": "x"}), Author)
    assert_type(await authors.create(Author(name="x")), Author)
    assert_type(await authors.get_or_create(name="x"), tuple[Author, bool])
    assert_type(await authors.bulk_create([{"name": "x"}]), list[Author])
    assert_type(await authors.update(1, name="y"), Author)
    assert_type(await authors.upsert({"name": "x"}, conflict_on=["name"]), Author)
    assert_type(await authors.soft_delete(1), Author)
    assert_type(await authors.count(), int)
    assert_type(await authors.exists(), bool)
    assert_type(await authors.find("x"), Author | None)
    async for author in authors.stream():
        assert_type(author, Author)
    books = BookRepository(session)
    assert_type(await books.get_by_id(1), Book)
    assert_type((await books.search()).items, Sequence[Book])


async def models_known_at_run_time(session: AsyncSession, model: type[Author]) -> None:
    repo_class = BaseRepository.for_model(model)
    assert_type(repo_class, type[BaseRepository[Author]])
    repo = repo_class(session)
    assert_type(repo, BaseRepository[Author])
    assert_type(await repo.get(1, populate_existing=True), Author | None)
    assert_type(await repo.bulk_get_or_create([{"name": "x"}], conflict_on=["name"]), list[Author])
    assert_type(AppRepository.for_model(Book)(session), BaseRepository[Book])


class SyncAppRepository(SyncBaseRepository[T]):
    max_page_size = 50


class SyncAuthorRepository(SyncAppRepository[Author]):
    def find(self, name: str) -> Author | None:
        return self.get_one_or_none(name=name)


def check_sync(session: Session, model: type[Book]) -> None:
    authors = SyncAuthorRepository(session)
    assert_type(authors.get(1), Author | None)
    assert_type(authors.get_by_id(1), Author)
    assert_type(authors.get_one(name="x"), Author)
    assert_type(authors.get_one_or_none(name="x"), Author | None)
    assert_type(authors.list(), list[Author])
    assert_type(authors.search(), SearchResult[Author])
    assert_type(authors.paginate(), CursorPage[Author])
    assert_type(authors.stream(), Iterator[Author])
    assert_type(authors.create({"name": "x"}), Author)
    assert_type(authors.create(Author(name="x")), Author)
    assert_type(authors.get_or_create(name="x"), tuple[Author, bool])
    assert_type(authors.bulk_create([{"name": "x"}]), list[Author])
    assert_type(authors.bulk_upsert([{"name": "x"}], conflict_on=["name"]), list[Author])
    assert_type(authors.bulk_get_or_create([{"name": "x"}], conflict_on=["name"]), list[Author])
    assert_type(authors.update(1, name="y"), Author)
    assert_type(authors.update_where(Author.name == "x", values={"name": "y"}), int)
    assert_type(authors.bulk_update([{"id": 1, "name": "y"}]), int)
    assert_type(authors.upsert({"name": "x"}, conflict_on=["name"]), Author)
    assert_type(authors.soft_delete(1), Author)
    assert_type(authors.restore(1), Author)
    assert_type(authors.delete(1), None)
    assert_type(authors.delete_where(Author.name == "x"), int)
    assert_type(authors.count(), int)
    assert_type(authors.exists(), bool)
    with authors.atomic(flush=True) as entered:  # a plain (sync) context manager
        assert_type(entered, None)
    assert_type(authors.find("x"), Author | None)
    for author in authors.stream():
        assert_type(author, Author)
    repo_class = SyncBaseRepository.for_model(model)
    assert_type(repo_class, type[SyncBaseRepository[Book]])
    assert_type(repo_class(session).get_by_id(1), Book)
    assert_type(SyncAppRepository.for_model(Author)(session), SyncBaseRepository[Author])
