"""Wiring: repositories, services and the request context, as FastAPI dependencies."""

from typing import Annotated

from fastapi import Depends, Header

from sqla_repo.ext.fastapi import actor_dependency, provide_repository, tenant_dependency

from .db import get_session
from .repositories import PostRepository, ReminderRepository, UserRepository
from .services import PublishingService

get_user_repository = provide_repository(UserRepository, session=get_session)
get_post_repository = provide_repository(PostRepository, session=get_session)
get_reminder_repository = provide_repository(ReminderRepository, session=get_session)


def get_publishing_service(
    posts: Annotated[PostRepository, Depends(get_post_repository)],
    users: Annotated[UserRepository, Depends(get_user_repository)],
) -> PublishingService:
    return PublishingService(posts, users)


def user_header(x_user: Annotated[str | None, Header(max_length=255)] = None) -> str | None:
    # A real service takes the actor from its authentication, not from a plain header.
    return x_user


def tenant_header(x_tenant: Annotated[str | None, Header(max_length=64)] = None) -> str | None:
    # Likewise: check that the caller belongs to the team it names.
    return x_tenant


# created_by / updated_by come from X-User; reminders are scoped to the X-Tenant team.
set_actor = actor_dependency(user_header)
set_tenant = tenant_dependency(tenant_header)
