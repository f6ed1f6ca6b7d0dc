"""FastAPI helpers: a session per request, repositories, query parameters, errors, context.

Install the extra with ``pip install "sqla_repo[fastapi]"``; ``import sqla_repo`` alone
never imports FastAPI or pydantic.

```python
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
get_session = session_dependency(SessionLocal)
get_user_repository = provide_repository(UserRepository, session=get_session)
user_search = search_params(UserRepository)

app = FastAPI(dependencies=[Depends(actor_dependency(current_username))])
install_exception_handlers(app)


@app.get("/users", response_model=PageModel[UserOut])
async def list_users(
    params: SearchParams = Depends(user_search),
    users: UserRepository = Depends(get_user_repository),
) -> PageModel[UserOut]:
    return PageModel[UserOut].from_result(await users.search(**params.as_kwargs()))
```

* [`session_dependency`][sqla_repo.ext.fastapi.session_dependency]: one session per
  request, committed before the response is sent, rolled back on any error.
* [`provide_repository`][sqla_repo.ext.fastapi.provide_repository]: a repository on
  that session.
* [`search_params`][sqla_repo.ext.fastapi.search_params] and
  [`cursor_params`][sqla_repo.ext.fastapi.cursor_params]: ``limit``, ``offset`` or
  ``cursor``, ``sort`` and filters from the query string, checked against the
  repository's whitelists.
* [`PageModel`][sqla_repo.ext.fastapi.PageModel] and
  [`CursorPageModel`][sqla_repo.ext.fastapi.CursorPageModel]: response models for pages.
* [`install_exception_handlers`][sqla_repo.ext.fastapi.install_exception_handlers]:
  HTTP statuses and JSON bodies for repository errors.
* [`actor_dependency`][sqla_repo.ext.fastapi.actor_dependency] and
  [`tenant_dependency`][sqla_repo.ext.fastapi.tenant_dependency]: the audit actor and
  the tenant of the request.
"""

import inspect

try:
    import fastapi
    import pydantic  # noqa: F401 - checked here, used by the modules below
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    msg = (
        "sqla_repo.ext.fastapi needs FastAPI and pydantic; install them with "
        'pip install "sqla_repo[fastapi]"'
    )
    raise ImportError(msg, name=exc.name) from exc

# Dependency scopes (FastAPI 0.121) let the session commit before the response is sent;
# without them a failed commit would follow a success response.
if "scope" not in inspect.signature(fastapi.Depends).parameters:  # pragma: no cover
    msg = (
        f"sqla_repo.ext.fastapi needs FastAPI 0.121 or newer, found {fastapi.__version__}; "
        'upgrade it with pip install -U "fastapi>=0.121"'
    )
    raise ImportError(msg)

from sqla_repo.ext._fastapi_deps import (
    actor_dependency,
    provide_repository,
    session_dependency,
    tenant_dependency,
)
from sqla_repo.ext._fastapi_errors import (
    DEFAULT_STATUS_CODES,
    error_body,
    install_exception_handlers,
    status_code_for,
)
from sqla_repo.ext._fastapi_models import CursorPageModel, PageModel
from sqla_repo.ext._fastapi_query import CursorParams, SearchParams, cursor_params, search_params

__all__ = [
    "DEFAULT_STATUS_CODES",
    "CursorPageModel",
    "CursorParams",
    "PageModel",
    "SearchParams",
    "actor_dependency",
    "cursor_params",
    "error_body",
    "install_exception_handlers",
    "provide_repository",
    "search_params",
    "session_dependency",
    "status_code_for",
    "tenant_dependency",
]
