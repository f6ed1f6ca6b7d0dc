"""HTTP endpoints. Errors of the library become JSON responses (see main.py)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from sqla_repo import ConcurrencyError, NotFoundError
from sqla_repo.ext.fastapi import (
    CursorPageModel,
    CursorParams,
    PageModel,
    SearchParams,
    cursor_params,
    search_params,
)

from .dependencies import (
    get_post_repository,
    get_publishing_service,
    get_reminder_repository,
    get_user_repository,
    set_tenant,
)
from .models import Post, User
from .repositories import PostRepository, ReminderRepository, UserRepository
from .schemas import (
    Availability,
    PostCreate,
    PostOut,
    PostUpdate,
    ReminderCreate,
    ReminderOut,
    UserCreate,
    UserOut,
    UserUpdate,
    UserWithPosts,
)
from .services import PublishingService

Users = Annotated[UserRepository, Depends(get_user_repository)]
Posts = Annotated[PostRepository, Depends(get_post_repository)]
Reminders = Annotated[ReminderRepository, Depends(get_reminder_repository)]
Publishing = Annotated[PublishingService, Depends(get_publishing_service)]

# ?limit=&offset=&sort=&<field>__<op>=..., checked against each repository's whitelists.
UserSearch = Annotated[SearchParams, Depends(search_params(UserRepository))]
PostPages = Annotated[CursorParams, Depends(cursor_params(PostRepository))]
ReminderSearch = Annotated[SearchParams, Depends(search_params(ReminderRepository))]

users_router = APIRouter(prefix="/users", tags=["users"])
posts_router = APIRouter(prefix="/posts", tags=["posts"])
reminders_router = APIRouter(
    prefix="/reminders", tags=["reminders"], dependencies=[Depends(set_tenant)]
)


# -- users ------------------------------------------------------------------------------


@users_router.post("", status_code=201)
async def create_user(data: UserCreate, users: Users) -> UserOut:
    # No "is the email taken?" query first: it would race. The unique constraint
    # decides, and a UniqueViolationError becomes a 409.
    return UserOut.model_validate(await users.create(data.model_dump()))


@users_router.get("")
async def search_users(params: UserSearch, users: Users) -> PageModel[UserOut]:
    return PageModel[UserOut].from_result(await users.search(**params.as_kwargs()))


@users_router.get("/active")
async def list_active_users(
    users: Users, limit: Annotated[int, Query(ge=1, le=100)] = 100
) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in await users.find_active_users(limit=limit)]


@users_router.get("/superusers")
async def list_superusers(users: Users) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in await users.find_superusers()]


@users_router.get("/by-name")
async def search_users_by_name(
    users: Users,
    q: Annotated[str, Query(min_length=1, max_length=100)],
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> PageModel[UserOut]:
    result = await users.search_by_name(q, limit=limit, offset=offset)
    return PageModel[UserOut].from_result(result)


@users_router.get("/availability")
async def check_availability(
    users: Users, email: str | None = None, username: str | None = None
) -> Availability:
    return Availability(
        email_taken=None if email is None else await users.email_exists(email),
        username_taken=None if username is None else await users.username_exists(username),
    )


@users_router.get("/by-email/{email}")
async def read_user_by_email(email: str, users: Users) -> UserOut:
    user = await users.find_by_email(email)
    if user is None:
        raise NotFoundError("No user has this email.", model=User)
    return UserOut.model_validate(user)


@users_router.get("/by-username/{username}")
async def read_user_by_username(username: str, users: Users) -> UserOut:
    user = await users.find_by_username(username)
    if user is None:
        raise NotFoundError("No user has this username.", model=User)
    return UserOut.model_validate(user)


@users_router.get("/{user_id}")
async def read_user(user_id: int, users: Users) -> UserOut:
    return UserOut.model_validate(await users.get_by_id(user_id))


@users_router.get("/{user_id}/posts")
async def read_user_with_posts(user_id: int, users: Users) -> UserWithPosts:
    return UserWithPosts.model_validate(await users.find_with_posts(user_id))


@users_router.patch("/{user_id}")
async def update_user(user_id: int, data: UserUpdate, users: Users) -> UserOut:
    changes = data.model_dump(exclude_unset=True)
    return UserOut.model_validate(await users.update(user_id, changes))


@users_router.delete("/{user_id}", status_code=204)
async def delete_user(user_id: int, users: Users) -> Response:
    await users.soft_delete(user_id)
    return Response(status_code=204)


@users_router.post("/{user_id}/restore")
async def restore_user(user_id: int, users: Users) -> UserOut:
    return UserOut.model_validate(await users.restore(user_id))


# -- posts ------------------------------------------------------------------------------


@posts_router.post("", status_code=201)
async def write_draft(data: PostCreate, publishing: Publishing) -> PostOut:
    values = data.model_dump(exclude={"author_id"})
    return PostOut.model_validate(await publishing.write_draft(data.author_id, values))


@posts_router.get("")
async def list_posts(params: PostPages, posts: Posts) -> CursorPageModel[PostOut]:
    return CursorPageModel[PostOut].from_page(await posts.paginate(**params.as_kwargs()))


@posts_router.get("/{post_id}")
async def read_post(post_id: int, posts: Posts) -> PostOut:
    return PostOut.model_validate(await posts.get_by_id(post_id))


@posts_router.patch("/{post_id}")
async def update_post(post_id: int, data: PostUpdate, posts: Posts) -> PostOut:
    post = await posts.get_by_id(post_id)
    if post.version != data.version:
        # Someone saved a newer version since the client read this one.
        raise ConcurrencyError(model=Post, detail={"current_version": post.version})
    changes = data.model_dump(exclude_unset=True, exclude={"version"})
    return PostOut.model_validate(await posts.update(post, changes))


@posts_router.post("/{post_id}/publish")
async def publish_post(post_id: int, publishing: Publishing) -> PostOut:
    return PostOut.model_validate(await publishing.publish(post_id))


@posts_router.delete("/{post_id}", status_code=204)
async def delete_post(post_id: int, posts: Posts) -> Response:
    await posts.delete(post_id)
    return Response(status_code=204)


# -- reminders (scoped to the X-Tenant team) --------------------------------------------


@reminders_router.post("", status_code=201)
async def create_reminder(data: ReminderCreate, reminders: Reminders) -> ReminderOut:
    return ReminderOut.model_validate(await reminders.create(data.model_dump()))


@reminders_router.get("")
async def search_reminders(params: ReminderSearch, reminders: Reminders) -> PageModel[ReminderOut]:
    return PageModel[ReminderOut].from_result(await reminders.search(**params.as_kwargs()))


@reminders_router.get("/{reminder_id}")
async def read_reminder(reminder_id: int, reminders: Reminders) -> ReminderOut:
    return ReminderOut.model_validate(await reminders.get_by_id(reminder_id))


@reminders_router.post("/{reminder_id}/done")
async def complete_reminder(reminder_id: int, reminders: Reminders) -> ReminderOut:
    return ReminderOut.model_validate(await reminders.update(reminder_id, done=True))


@reminders_router.delete("/{reminder_id}", status_code=204)
async def delete_reminder(reminder_id: int, reminders: Reminders) -> Response:
    await reminders.delete(reminder_id)
    return Response(status_code=204)
