"""The blog example, with each response naming the worker process that served it.

``tests/ext/test_workers.py`` serves it with ``uvicorn --workers 2``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

from examples.blog.app.main import create_app
from fastapi import Request, Response

app = create_app(create_tables=False)


@app.middleware("http")
async def _name_the_worker(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    response.headers["X-Worker"] = str(os.getpid())
    return response
