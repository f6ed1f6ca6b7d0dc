"""Operations spanning several repositories.

A service never commits: the request's session does, once, when the endpoint has
returned. If any step fails, the steps before it are rolled back with it.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .models import Post
    from .repositories import PostRepository, UserRepository


class PublishingService:
    """Writing and publishing posts, keeping each author's post count right."""

    def __init__(self, posts: PostRepository, users: UserRepository) -> None:
        self.posts = posts
        self.users = users

    async def write_draft(self, author_id: int, values: Mapping[str, Any]) -> Post:
        await self.users.get_by_id(author_id)  # NotFoundError for a missing or deleted author
        return await self.posts.create({**values, "author_id": author_id})

    async def publish(self, post_id: int) -> Post:
        post = await self.posts.get_by_id(post_id)
        if post.status == "published":
            return post
        # Step 1: the post. Step 2: its author's count. When step 2 fails (the author
        # was deleted meanwhile), the request's transaction is rolled back, step 1 too.
        now = dt.datetime.now(dt.timezone.utc)
        post = await self.posts.update(post, status="published", published_at=now)
        await self.users.add_to_post_count(post.author_id, 1)
        return post
