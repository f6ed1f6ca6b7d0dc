"""The application factory; ``uvicorn examples.blog.app.main:app`` serves it.

Start it from the repository root::

    pip install -e ".[fastapi,sqlite]" uvicorn
    uvicorn examples.blog.app.main:app --reload

and open http://127.0.0.1:8000/docs. Set ``DATABASE_URL`` for another database.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from sqla_repo.ext.fastapi import install_exception_handlers

from . import db
from .api import posts_router, reminders_router, users_router
from .dependencies import set_actor


def create_app(engine: AsyncEngine | None = None, *, create_tables: bool = True) -> FastAPI:
    """Build the application on *engine* (by default one for ``DATABASE_URL``)."""
    owns_engine = engine is None
    bound = db.create_engine() if engine is None else engine
    db.SessionLocal.configure(bind=bound)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if create_tables:
            await db.create_tables(bound)  # a real service would run migrations instead
        yield
        if owns_engine:
            await bound.dispose()

    app = FastAPI(
        title="sqla_repo blog example",
        lifespan=lifespan,
        dependencies=[Depends(set_actor)],  # X-User stamps created_by / updated_by
    )
    install_exception_handlers(app)  # 404, 409, 422, 403 as JSON: {"error", "message", "detail"}
    app.include_router(users_router)
    app.include_router(posts_router)
    app.include_router(reminders_router)
    return app


app = create_app()
