"""Repositories: the queries the application needs, named after what they mean."""

from __future__ import annotations

from sqlalchemy.orm import selectinload

from sqla_repo import BaseRepository, SearchResult

from .models import Post, Reminder, User


class UserRepository(BaseRepository[User]):
    # What clients may filter and sort on (everything else is refused with a 422).
    filterable_fields = (
        "email",
        "username",
        "full_name",
        "is_active",
        "is_superuser",
        "post_count",
        "created_at",
    )
    sortable_fields = ("username", "full_name", "post_count", "created_at")
    default_order_by = ("username",)
    max_page_size = 50

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
        # Trusted code may pass any SQLAlchemy expression; autoescape makes % and _ literal.
        return await self.search(
            User.full_name.icontains(fragment, autoescape=True),
            order_by=["full_name"],
            limit=limit,
            offset=offset,
        )

    async def email_exists(self, email: str) -> bool:
        return await self.exists(email=email)

    async def username_exists(self, username: str) -> bool:
        return await self.exists(username=username)

    async def add_to_post_count(self, user_id: int, amount: int) -> User:
        # One UPDATE ... SET post_count = post_count + :amount, without a read first.
        return await self.update(user_id, post_count=User.post_count + amount)


class PostRepository(BaseRepository[Post]):
    filterable_fields = ("title", "status", "author_id", "author.username", "created_at")
    sortable_fields = ("created_at", "published_at", "title")
    default_order_by = ("-created_at",)


class ReminderRepository(BaseRepository[Reminder]):
    filterable_fields = ("text", "done", "due_on")
    sortable_fields = ("due_on", "created_at")
    default_order_by = ("due_on",)
