"""Reference repositories: subclassing is short, and custom methods read like the domain."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.orm import selectinload

from models import Document, Post, Product, Ticket, User, Widget
from sqla_repo import ALL_COLUMNS
from sqla_repo.pagination import SearchResult
from sqla_repo.repository import BaseRepository

T = TypeVar("T")


class AppRepository(BaseRepository[T]):
    """A still-generic intermediate base, as an application would have."""

    max_page_size = 200


class UserRepository(AppRepository[User]):
    filterable_fields = ("email", "name", "username", "age", "is_active", "status", "created_at")
    sortable_fields = ("created_at", "name", "email", "age")

    async def find_by_email(self, email: str) -> User | None:
        return await self.get_one_or_none(email=email)

    async def find_by_username(self, username: str) -> User | None:
        return await self.get_one_or_none(username=username)

    async def find_active_users(self, *, limit: int = 100) -> list[User]:
        return await self.list(is_active=True, limit=limit)

    async def find_superusers(self) -> list[User]:
        return await self.list(User.is_superuser.is_(True))

    async def find_with_posts(self, user_id: int) -> User:
        return await self.get_by_id(user_id, options=[selectinload(User.posts)])

    async def search_by_name(
        self, fragment: str, *, limit: int = 20, offset: int = 0
    ) -> SearchResult[User]:
        return await self.search(
            filters={"name__contains": fragment}, order_by=["name"], limit=limit, offset=offset
        )

    async def email_exists(self, email: str) -> bool:
        return await self.exists(email=email)

    async def username_exists(self, username: str) -> bool:
        return await self.exists(username=username)


class PostRepository(BaseRepository[Post]):
    filterable_fields = ("title", "author_id", "author.email")
    sortable_fields = ALL_COLUMNS


class ProductRepository(BaseRepository[Product]):
    pass


class DocumentRepository(BaseRepository[Document]):
    filterable_fields = ALL_COLUMNS
    sortable_fields = ALL_COLUMNS


class TicketRepository(BaseRepository[Ticket]):
    pass


class WidgetRepository(BaseRepository[Widget]):
    model = Widget
