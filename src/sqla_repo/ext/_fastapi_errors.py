"""HTTP responses for repository errors."""

import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from sqla_repo.exceptions import (
    ConcurrencyError,
    ConflictError,
    InvalidFilterError,
    InvalidValueError,
    NotFoundError,
    RepositoryError,
    StatementTimeoutError,
    TenantMismatchError,
    TenantRequiredError,
)
from sqla_repo.ext._fastapi_query import QueryValidationError

__all__ = ["DEFAULT_STATUS_CODES", "error_body", "install_exception_handlers", "status_code_for"]

logger = logging.getLogger("sqla_repo.ext.fastapi")

DEFAULT_STATUS_CODES: Final[Mapping[type[RepositoryError], int]] = MappingProxyType(
    {
        NotFoundError: 404,
        ConflictError: 409,
        ConcurrencyError: 409,
        InvalidFilterError: 422,
        InvalidValueError: 422,
        StatementTimeoutError: 503,
        TenantRequiredError: 403,
        TenantMismatchError: 403,
        RepositoryError: 500,
    }
)
"""The HTTP status of each error class; a subclass takes the status of its nearest listed base.

Any other [`RepositoryError`][sqla_repo.exceptions.RepositoryError]
(``MultipleResultsFoundError``, ``ConfigurationError``, a write naming an unknown field,
soft delete on a model without ``SoftDeleteMixin``) reveals a defect of the application
rather than of the request, so it is a 500: a client cannot fix it by changing the request.
"""


def status_code_for(
    exc: RepositoryError, status_codes: Mapping[type[RepositoryError], int] = DEFAULT_STATUS_CODES
) -> int:
    """Return the HTTP status for *exc*: the entry of its nearest class in *status_codes*.

    Args:
        exc: The error.
        status_codes: Status codes by error class.

    Returns:
        The status code; 500 when no class of *exc* is listed.
    """
    for cls in type(exc).__mro__:
        status = status_codes.get(cls)
        if status is not None:
            return status
    return 500


def error_body(exc: RepositoryError) -> dict[str, Any]:
    """Return the JSON body describing *exc* to a client.

    The body is ``{"error": code, "message": message, "detail": {...}}``: the class's
    stable [`code`][sqla_repo.exceptions.RepositoryError], its message and its
    ``detail``, which never contain SQL or bound parameters.

    Args:
        exc: The error.

    Returns:
        A JSON-compatible dictionary.
    """
    return {"error": exc.code, "message": exc.message, "detail": jsonable_encoder(exc.detail)}


ErrorBody = Callable[[RepositoryError, int], Any]
"""Builds a response body from the error and the HTTP status it is answered with."""


def install_exception_handlers(
    app: FastAPI,
    *,
    status_codes: Mapping[type[RepositoryError], int] | None = None,
    body: ErrorBody | None = None,
) -> None:
    """Answer every [`RepositoryError`][sqla_repo.exceptions.RepositoryError] with a JSON error.

    | Error | Status |
    | --- | --- |
    | [`NotFoundError`][sqla_repo.exceptions.NotFoundError] | 404 |
    | [`ConflictError`][sqla_repo.exceptions.ConflictError] and its subclasses | 409 |
    | [`ConcurrencyError`][sqla_repo.exceptions.ConcurrencyError] | 409 |
    | [`InvalidFilterError`][sqla_repo.exceptions.InvalidFilterError] | 422 |
    | [`InvalidValueError`][sqla_repo.exceptions.InvalidValueError], `NaiveDatetimeError` | 422 |
    | [`StatementTimeoutError`][sqla_repo.exceptions.StatementTimeoutError] | 503 |
    | [`TenantRequiredError`][sqla_repo.exceptions.TenantRequiredError] | 403 |
    | [`TenantMismatchError`][sqla_repo.exceptions.TenantMismatchError] | 403 |
    | any other ``RepositoryError`` | 500 |

    The body is the one [`error_body`][sqla_repo.ext.fastapi.error_body] builds, for
    example ``{"error": "unique_violation", "message": "A row with the same unique
    value already exists.", "detail": {"model": "User", "constraint": "uq_users_email"}}``.
    Errors answered with a 5xx status are logged (with their traceback, which may hold
    SQL) on the ``sqla_repo.ext.fastapi`` logger; the response never holds SQL.

    A statement timeout is a 503: the server could not answer in time, and the same
    request may succeed later. Like every 5xx it is logged.

    A missing tenant is a 403 rather than a 401: the request may well be authenticated,
    and a 401 would oblige a ``WWW-Authenticate`` challenge the library cannot know.

    *body* renders the errors in an API's own format. It is called with the error and
    its status and returns the JSON-compatible body, for RealWorld
    ``lambda exc, status: {"errors": {"body": [exc.message]}}``. It applies to every
    error these handlers answer, the 422 of bad sort or filter parameters in
    [`search_params`][sqla_repo.ext.fastapi.search_params] and
    [`cursor_params`][sqla_repo.ext.fastapi.cursor_params] included: *body* then gets
    an [`InvalidFilterError`][sqla_repo.exceptions.InvalidFilterError] whose message is
    the first problem's, prefixed by its parameter (``"tag__like: The like operator is
    not allowed on 'tag'."``), and whose ``detail["errors"]`` lists every problem as
    ``{"param", "type", "msg"}``; its status is the one of ``InvalidFilterError`` (422
    unless *status_codes* says otherwise). Other validation errors of the application
    (a bad path parameter, a request body) stay FastAPI's. Without *body* the bodies
    are the ones of [`error_body`][sqla_repo.ext.fastapi.error_body] and the query
    parameters' 422 is FastAPI's own.

    Args:
        app: The application.
        status_codes: Overrides of
            [`DEFAULT_STATUS_CODES`][sqla_repo.ext.fastapi.DEFAULT_STATUS_CODES], for
            example ``{TenantRequiredError: 401}``.
        body: Builds the response body from the error and its status; ``None`` (the
            default) is [`error_body`][sqla_repo.ext.fastapi.error_body].
    """
    codes = {**DEFAULT_STATUS_CODES, **(status_codes or {})}
    render: ErrorBody = body if body is not None else lambda exc, _status: error_body(exc)

    async def handle_repository_error(request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, RepositoryError):  # pragma: no cover - registered for it
            raise exc
        status = status_code_for(exc, codes)
        if status >= 500:  # noqa: PLR2004 - the server error range
            logger.error(
                "%s %s failed: %s", request.method, request.url.path, exc.code, exc_info=exc
            )
        return JSONResponse(jsonable_encoder(render(exc, status)), status_code=status)

    app.add_exception_handler(RepositoryError, handle_repository_error)
    if body is None:
        return

    async def handle_query_error(request: Request, exc: Exception) -> JSONResponse:
        del request
        if not isinstance(exc, QueryValidationError):  # pragma: no cover - registered for it
            raise exc
        error = exc.as_repository_error()
        status = status_code_for(error, codes)
        return JSONResponse(jsonable_encoder(render(error, status)), status_code=status)

    app.add_exception_handler(QueryValidationError, handle_query_error)
