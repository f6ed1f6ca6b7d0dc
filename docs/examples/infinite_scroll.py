"""Keyset pagination for an infinite-scroll feed: cursors, secret and limits."""

import asyncio
import os
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import String
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column

from sqla_repo import (
    Base,
    InvalidFilterError,
    TimestampMixin,
    UUIDv7PKMixin,
    set_cursor_secret,
)
from sqla_repo.repository import BaseRepository

# --8<-- [start:secret]
# At start-up, in every process that serves the API: the same secret everywhere.
set_cursor_secret(os.environ.get("CURSOR_SECRET") or secrets.token_hex(32))
# --8<-- [end:secret]


# --8<-- [start:repository]
class Post(UUIDv7PKMixin, TimestampMixin, Base):
    __tablename__ = "posts"

    title: Mapped[str] = mapped_column(String(200))
    score: Mapped[int | None]


class PostRepository(BaseRepository[Post]):
    sortable_fields = ("created_at", "score")
    default_order_by = ("-created_at",)  # newest first
    max_page_size = 50


# --8<-- [end:repository]
# --8<-- [start:refusal]
async def refusal(posts: PostRepository, **arguments: Any) -> str:
    """Return why paginate() refuses *arguments*."""
    try:
        await posts.paginate(limit=4, **arguments)
    except InvalidFilterError as exc:
        return str(exc.detail["reason"])
    return "accepted"


# --8<-- [end:refusal]
START = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    new_session = async_sessionmaker(engine, expire_on_commit=False)

    async with new_session() as session, session.begin():
        await PostRepository(session).bulk_create(
            {
                "title": f"post {n}",
                "score": n % 4 or None,
                "created_at": START + timedelta(minutes=n),
            }
            for n in range(1, 11)
        )

    async with new_session() as session:
        posts = PostRepository(session)
        # --8<-- [start:scroll]
        first = await posts.paginate(limit=4)
        print(
            "page 1:", [p.title for p in first.items], "has_next:", first.has_next
        )

        # Meanwhile, two new posts arrive at the top of the feed.
        await posts.bulk_create(
            {
                "title": f"new {n}",
                "created_at": START + timedelta(hours=1, minutes=n),
            }
            for n in (1, 2)
        )

        second = await posts.paginate(limit=4, after=first.next_cursor)
        print("page 2:", [p.title for p in second.items])
        third = await posts.paginate(limit=4, after=second.next_cursor)
        print(
            "page 3:", [p.title for p in third.items], "has_next:", third.has_next
        )
        back = await posts.paginate(limit=4, before=third.previous_cursor)
        print("back to page 2:", [p.title for p in back.items])
        # --8<-- [end:scroll]

        # --8<-- [start:nulls]
        order = ["-score", "-created_at"]
        top = await posts.paginate(order_by=order, limit=6)
        rest = await posts.paginate(order_by=order, limit=6, after=top.next_cursor)
        print(
            "by score:", [p.score for p in top.items], [p.score for p in rest.items]
        )
        # --8<-- [end:nulls]

        # --8<-- [start:refused]
        cursor = first.next_cursor
        print(
            "another sort order:",
            await refusal(posts, order_by=["score"], after=cursor),
        )
        print("edited by hand:", await refusal(posts, after=cursor[:-4] + "AAAA"))
        # As if in another process, with another secret:
        set_cursor_secret(secrets.token_hex(32))
        print("another secret:", await refusal(posts, after=cursor))
        # --8<-- [end:refused]

    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
