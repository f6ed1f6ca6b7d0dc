"""What the API accepts and returns."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class UserCreate(BaseModel):
    email: str = Field(max_length=255, pattern=r"^[^@\s]+@[^@\s]+$")
    username: str = Field(pattern=r"^[a-z0-9_]{3,50}$")
    full_name: str = Field(default="", max_length=100)
    is_superuser: bool = False


class UserUpdate(BaseModel):
    full_name: str | None = Field(default=None, max_length=100)
    is_active: bool | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    username: str
    full_name: str
    is_active: bool
    is_superuser: bool
    post_count: int
    created_at: dt.datetime
    updated_at: dt.datetime
    created_by: str | None
    updated_by: str | None


class PostCreate(BaseModel):
    author_id: int
    slug: str = Field(pattern=r"^[a-z0-9-]{1,120}$")
    title: str = Field(max_length=200)
    body: str = ""


class PostUpdate(BaseModel):
    version: int = Field(description="The version the change was made from.")
    title: str | None = Field(default=None, max_length=200)
    body: str | None = None


class PostOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    author_id: int
    slug: str
    title: str
    body: str
    status: Literal["draft", "published"]
    published_at: dt.datetime | None
    version: int
    created_at: dt.datetime
    created_by: str | None
    updated_by: str | None


class UserWithPosts(UserOut):
    posts: list[PostOut]


class Availability(BaseModel):
    email_taken: bool | None = None
    username_taken: bool | None = None


class ReminderCreate(BaseModel):
    text: str = Field(max_length=200)
    due_on: dt.date | None = None


class ReminderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    tenant_id: str
    text: str
    due_on: dt.date | None
    done: bool
    created_by: str | None
    updated_by: str | None
