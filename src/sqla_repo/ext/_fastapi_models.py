"""Pydantic response models for pages of results."""

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import Self

from sqla_repo.pagination import CursorPage, SearchResult

__all__ = ["CursorPageModel", "PageModel"]

ItemT = TypeVar("ItemT")


class PageModel(BaseModel, Generic[ItemT]):
    """An offset page of items: the response model for a repository's ``search()``.

    It describes a [`SearchResult`][sqla_repo.pagination.SearchResult] to clients.

    Parametrize it with the item schema (``PageModel[UserOut]``) and build it with
    [`from_result`][sqla_repo.ext.fastapi.PageModel.from_result]; the item schema reads
    ORM objects by attribute.

    Example:
        ```python
        @app.get("/users", response_model=PageModel[UserOut])
        async def list_users(
            params: SearchParams = Depends(user_search),
            users: UserRepository = Depends(get_user_repository),
        ) -> PageModel[UserOut]:
            result = await users.search(**params.as_kwargs())
            return PageModel[UserOut].from_result(result)
        ```
    """

    model_config = ConfigDict(from_attributes=True)

    items: list[ItemT] = Field(description="The items of this page.")
    total: int | None = Field(description="How many items match in all; null when not counted.")
    limit: int = Field(description="The page size asked for.")
    offset: int = Field(description="How many matching items come before this page.")
    page: int = Field(description="The 1-based page number.")
    page_size: int = Field(description="The page size; the same as limit.")
    total_pages: int | None = Field(
        description="How many pages the total fills; null when not counted."
    )
    has_next: bool = Field(description="Whether items follow this page.")
    has_previous: bool = Field(description="Whether items come before this page.")

    @classmethod
    def from_result(cls, result: SearchResult[Any]) -> Self:
        """Build the page from a repository's ``search()`` result.

        Args:
            result: The result; its items are validated into the item schema from their
                attributes.

        Returns:
            The page.
        """
        return cls.model_validate(result, from_attributes=True)


class CursorPageModel(BaseModel, Generic[ItemT]):
    """A keyset page of items: the response model for a repository's ``paginate()``.

    It describes a [`CursorPage`][sqla_repo.pagination.CursorPage] to clients.

    Clients pass ``next_cursor`` as the ``cursor`` query parameter for the next page and
    ``previous_cursor`` as ``before`` for the previous one (see
    [`cursor_params`][sqla_repo.ext.fastapi.cursor_params]).
    """

    model_config = ConfigDict(from_attributes=True)

    items: list[ItemT] = Field(description="The items of this page.")
    next_cursor: str | None = Field(
        description="Pass it as `cursor` to get the next page; null on the last page."
    )
    previous_cursor: str | None = Field(
        description="Pass it as `before` to get the previous page; null on the first page."
    )
    has_next: bool = Field(description="Whether a page follows.")
    has_previous: bool = Field(description="Whether a page comes before.")

    @classmethod
    def from_page(cls, page: CursorPage[Any]) -> Self:
        """Build the page from a repository's ``paginate()`` result.

        Args:
            page: The keyset page; its items are validated into the item schema from
                their attributes.

        Returns:
            The page.
        """
        return cls.model_validate(page, from_attributes=True)
