"""The benchmarked operations, written once per contender.

Each function takes the run's ``Env``, the contender's *handle* (an ``AsyncConnection``
for Core, an ``AsyncSession`` for hand-written ORM code and FastCRUD, a repository for
sqla_repo and advanced-alchemy) and one argument, and does one operation the way a user
of that library would write it. A handle is made once per timed sample, inside a fresh
session whose transaction is rolled back after the sample, so every sample starts from
the same table and an empty identity map. An operation with ``own_transaction`` set is a
whole unit of work instead: each call begins its own transaction and commits it, Core's
handle is then the ``AsyncEngine``, and the operation's ``cleanup`` deletes the committed
rows once every contender has run.

The synchronous contenders (``SYNC_CONTENDERS``: hand-written ORM code on a ``Session``,
``SyncBaseRepository`` and advanced-alchemy's ``SQLAlchemySyncRepository``) are plain
functions run on the backend's synchronous driver; the hand-written sync functions send
the same statements in the same transaction shape as the async ones, and the sync
contenders' ratios are to the hand-written sync ORM (``yardstick()``).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

from models import Models

try:
    from advanced_alchemy.filters import LimitOffset
except ImportError:  # pragma: no cover - the contender is skipped
    LimitOffset = None

ASYNC_CONTENDERS = (
    "core",
    "orm",
    "orm_guarded",
    "orm_utc",
    "orm_ordered",
    "sqla_repo",
    "sqla_repo_nosp",
    "advanced_alchemy",
    "fastcrud",
)
SYNC_CONTENDERS = ("orm_sync", "sqla_repo_sync", "advanced_alchemy_sync")
CONTENDERS = ASYNC_CONTENDERS + SYNC_CONTENDERS
LABELS = {
    "core": "SQLAlchemy Core",
    "orm": "hand-written ORM",
    "orm_guarded": "hand-written ORM, savepoint per write",
    "orm_utc": "hand-written ORM on sqla_repo's model",
    "orm_ordered": "hand-written ORM, objects in input order",
    "sqla_repo": "sqla_repo",
    "sqla_repo_nosp": "sqla_repo, no savepoints",
    "advanced_alchemy": "advanced-alchemy",
    "fastcrud": "FastCRUD",
    "orm_sync": "hand-written sync ORM",
    "sqla_repo_sync": "sqla_repo sync",
    "advanced_alchemy_sync": "advanced-alchemy sync",
}


# Each sync contender's async form, for the sync / async ratio.
ASYNC_TWIN = {
    "orm_sync": "orm",
    "sqla_repo_sync": "sqla_repo",
    "advanced_alchemy_sync": "advanced_alchemy",
}


def yardstick(contender: str) -> str:
    """The hand-written contender a contender's ratio is to: the same flavour's ORM."""
    return "orm_sync" if contender in SYNC_CONTENDERS else "orm"


PAGE = 50


@dataclass
class Env:
    """What the operations need to know about the run and the backend."""

    backend: str
    engine: AsyncEngine
    maker: async_sessionmaker[AsyncSession]
    models: Models
    rows: int
    bulk_rows: int
    upsert_rows: int
    depth: int
    boundary_id: int
    cursor: str
    active_total: int
    insert_returning: bool
    update_returning: bool
    rng: random.Random = field(default_factory=lambda: random.Random(20240501))
    # The same database through the synchronous driver; None skips the sync contenders.
    sync_engine: Engine | None = None
    sync_maker: sessionmaker[Session] | None = None

    @property
    def is_mysql(self) -> bool:
        return self.engine.dialect.name in {"mysql", "mariadb"}


async def make_handle(
    env: Env, contender: str, session: AsyncSession, *, own_transaction: bool = False
) -> Any:
    m = env.models
    if contender == "core":
        # With own_transaction, each call begins (and commits) on the engine itself.
        return env.engine if own_transaction else await session.connection()
    if contender == "sqla_repo":
        return m.repo_class(session)
    if contender == "sqla_repo_nosp":
        return m.repo_nosp_class(session)
    if contender == "advanced_alchemy":
        return m.aa_repo_class(session=session)  # type: ignore[misc]
    return session


def make_sync_handle(env: Env, contender: str, session: Session) -> Any:
    m = env.models
    if contender == "sqla_repo_sync":
        return m.repo_sync_class(session)
    if contender == "advanced_alchemy_sync":
        return m.aa_sync_repo_class(session=session)  # type: ignore[misc]
    return session


def available(env: Env) -> set[str]:
    out = {"core", "orm", "orm_utc", "orm_ordered", "sqla_repo", "sqla_repo_nosp"}
    if env.backend != "sqlite":
        # On SQLite, begin_nested() needs the pysqlite recipe (SQLAlchemy emits BEGIN),
        # which would change every contender's transactions: without it RELEASE commits.
        out.add("orm_guarded")
    if env.models.aa_repo_class is not None:
        out.add("advanced_alchemy")
    if env.models.fastcrud is not None:
        out.add("fastcrud")
    if env.sync_maker is not None:
        out |= {"orm_sync", "sqla_repo_sync"}
        if env.models.aa_sync_repo_class is not None:
            out.add("advanced_alchemy_sync")
    return out


class SyncReader:
    """Lets the checks, written for an ``AsyncSession``, query a sync ``Session``."""

    def __init__(self, session: Session) -> None:
        self.session = session

    async def scalar(self, statement: Any) -> Any:
        return self.session.scalar(statement)


def ident(value: Any) -> Any:
    """The primary key of an ORM object, a Row or a dict."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value["id"]
    return value.id


def items_and_total(result: Any) -> tuple[list[Any], int | None]:
    """Normalise each library's page shape to (items, total)."""
    if isinstance(result, dict):
        return list(result["data"]), result.get("total_count")
    if hasattr(result, "items") and hasattr(result, "next_cursor"):
        return list(result.items), None
    if hasattr(result, "items") and hasattr(result, "total"):
        return list(result.items), result.total
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], int):
        return list(result[0]), result[1]
    return list(result), None


# -- get by id ------------------------------------------------------------------------


async def get_core(env: Env, conn: Any, key: int) -> Any:
    t = env.models.table
    return (await conn.execute(select(t).where(t.c.id == key))).first()


async def get_orm(env: Env, session: AsyncSession, key: int) -> Any:
    return await session.get(env.models.hand, key)


async def get_repo(_env: Env, repo: Any, key: int) -> Any:
    return await repo.get(key)


async def get_fastcrud(env: Env, session: AsyncSession, key: int) -> Any:
    return await env.models.fastcrud.get(session, id=key)


def get_orm_sync(env: Env, session: Session, key: int) -> Any:
    return session.get(env.models.hand, key)


def get_repo_sync(_env: Env, repo: Any, key: int) -> Any:
    return repo.get(key)


# -- create ---------------------------------------------------------------------------


async def create_core(env: Env, conn: Any, values: dict[str, Any]) -> Any:
    t = env.models.table
    if env.insert_returning:
        return (await conn.execute(insert(t).returning(*t.c), values)).one()
    result = await conn.execute(insert(t), values)
    return {"id": result.inserted_primary_key[0]}


async def create_orm(env: Env, session: AsyncSession, values: dict[str, Any]) -> Any:
    obj = env.models.hand(**values)
    session.add(obj)
    await session.flush()
    return obj


async def create_orm_guarded(env: Env, session: AsyncSession, values: dict[str, Any]) -> Any:
    # The hand-written code that keeps the transaction usable after a failed write.
    obj = env.models.hand(**values)
    async with session.begin_nested():
        session.add(obj)
    return obj


async def create_repo(_env: Env, repo: Any, values: dict[str, Any]) -> Any:
    return await repo.create(values)


async def create_aa(env: Env, repo: Any, values: dict[str, Any]) -> Any:
    return await repo.add(env.models.aa_model(**values))  # type: ignore[misc]


async def create_fastcrud(env: Env, session: AsyncSession, values: dict[str, Any]) -> Any:
    m = env.models
    return await m.fastcrud.create(session, m.fastcrud_create(**values), commit=False)  # type: ignore[misc]


def create_orm_sync(env: Env, session: Session, values: dict[str, Any]) -> Any:
    obj = env.models.hand(**values)
    session.add(obj)
    session.flush()
    return obj


def create_repo_sync(_env: Env, repo: Any, values: dict[str, Any]) -> Any:
    return repo.create(values)


def create_aa_sync(env: Env, repo: Any, values: dict[str, Any]) -> Any:
    return repo.add(env.models.aa_model(**values))  # type: ignore[misc]


# -- create, one transaction per call: begin, create one row, commit --------------------
#
# A web handler's whole unit of work. The session starts with no transaction, so the
# INSERT is the first statement of each transaction.

TX_TAG = "tx"  # the tag of the rows create_tx commits: emails "tx<n>-<i>@example.net"


async def create_tx_core(env: Env, engine: Any, values: dict[str, Any]) -> Any:
    async with engine.begin() as conn:
        return await create_core(env, conn, values)


async def create_tx_orm(env: Env, session: AsyncSession, values: dict[str, Any]) -> Any:
    obj = env.models.hand(**values)
    async with session.begin():  # the commit flushes
        session.add(obj)
    return obj


async def create_tx_repo(_env: Env, repo: Any, values: dict[str, Any]) -> Any:
    async with repo.session.begin():
        return await repo.create(values)


async def create_tx_aa(env: Env, repo: Any, values: dict[str, Any]) -> Any:
    return await repo.add(env.models.aa_model(**values), auto_commit=True)  # type: ignore[misc]


async def create_tx_fastcrud(env: Env, session: AsyncSession, values: dict[str, Any]) -> Any:
    m = env.models
    return await m.fastcrud.create(session, m.fastcrud_create(**values))  # type: ignore[misc]


def create_tx_orm_sync(env: Env, session: Session, values: dict[str, Any]) -> Any:
    obj = env.models.hand(**values)
    with session.begin():
        session.add(obj)
    return obj


def create_tx_repo_sync(_env: Env, repo: Any, values: dict[str, Any]) -> Any:
    with repo.session.begin():
        return repo.create(values)


def create_tx_aa_sync(env: Env, repo: Any, values: dict[str, Any]) -> Any:
    return repo.add(env.models.aa_model(**values), auto_commit=True)  # type: ignore[misc]


async def delete_tx_rows(env: Env) -> None:
    """Delete the rows create_tx committed: the table is as before for the next operation."""
    t = env.models.table
    async with env.engine.begin() as conn:
        await conn.execute(delete(t).where(t.c.email.like(f"{TX_TAG}%@example.net")))


# -- bulk create ----------------------------------------------------------------------


async def bulk_core(env: Env, conn: Any, rows: list[dict[str, Any]]) -> Any:
    t = env.models.table
    if env.insert_returning:
        return (await conn.execute(insert(t).returning(*t.c), rows)).all()
    await conn.execute(insert(t), rows)
    return [{"id": 0}] * len(rows)  # Core without RETURNING learns no keys


async def bulk_orm(env: Env, session: AsyncSession, rows: list[dict[str, Any]]) -> Any:
    objs = [env.models.hand(**row) for row in rows]
    session.add_all(objs)
    await session.flush()
    return objs


async def bulk_orm_returning(env: Env, session: AsyncSession, rows: list[dict[str, Any]]) -> Any:
    # SQLAlchemy 2.x's own ORM bulk INSERT: insertmanyvalues batches, objects back.
    model = env.models.hand
    return (await session.scalars(insert(model).returning(model), rows)).all()


async def bulk_orm_returning_utc(
    env: Env, session: AsyncSession, rows: list[dict[str, Any]]
) -> Any:
    # The same statement on sqla_repo's mapped class: its UTCDateTime columns convert
    # every timestamp written and loaded, which the hand-written model does not.
    model = env.models.repo_model
    return (await session.scalars(insert(model).returning(model), rows)).all()


async def bulk_orm_returning_ordered(
    env: Env, session: AsyncSession, rows: list[dict[str, Any]]
) -> Any:
    # The same statement with SQLAlchemy's guarantee that the objects come back in the
    # order of the rows, as bulk_create() returns them (the statement above makes none).
    model = env.models.hand
    stmt = insert(model).returning(model, sort_by_parameter_order=True)
    return (await session.scalars(stmt, rows)).all()


async def bulk_repo(_env: Env, repo: Any, rows: list[dict[str, Any]]) -> Any:
    return await repo.bulk_create(rows)


async def bulk_aa(env: Env, repo: Any, rows: list[dict[str, Any]]) -> Any:
    model = env.models.aa_model
    return await repo.add_many([model(**row) for row in rows])  # type: ignore[misc]


# -- bulk insert: many rows, no objects back --------------------------------------------


async def bulk_insert_core(env: Env, conn: Any, rows: list[dict[str, Any]]) -> Any:
    # No RETURNING: the dialect's executemany (insertmanyvalues where it batches that way).
    await conn.execute(insert(env.models.table), rows)
    return len(rows)


async def bulk_insert_orm(env: Env, session: AsyncSession, rows: list[dict[str, Any]]) -> Any:
    # SQLAlchemy 2.x's ORM bulk INSERT without RETURNING: Python defaults, no objects.
    await session.execute(insert(env.models.hand), rows)
    return len(rows)


async def bulk_insert_repo(_env: Env, repo: Any, rows: list[dict[str, Any]]) -> Any:
    return await repo.bulk_insert(rows)


def has_bulk_insert(env: Env) -> bool:
    """Whether this version of sqla_repo has ``bulk_insert()`` (the harness predates it)."""
    return hasattr(env.models.repo_class, "bulk_insert")


# -- search: a filtered page of 50 with the total ---------------------------------------


async def search_core(env: Env, conn: Any, _: object) -> Any:
    t = env.models.table
    where = t.c.status == "active"
    page = select(t).where(where).order_by(t.c.created_at.desc(), t.c.id).limit(PAGE)
    items = (await conn.execute(page)).all()
    total = (await conn.execute(select(func.count()).select_from(t).where(where))).scalar_one()
    return items, total


async def search_orm(env: Env, session: AsyncSession, _: object) -> Any:
    model = env.models.hand
    where = model.status == "active"
    page = select(model).where(where).order_by(model.created_at.desc(), model.id).limit(PAGE)
    items = (await session.scalars(page)).all()
    total = await session.scalar(select(func.count()).select_from(model).where(where))
    return items, total


async def search_repo(env: Env, repo: Any, _: object) -> Any:
    model = env.models.repo_model
    return await repo.search(model.status == "active", order_by=["-created_at"], limit=PAGE)


async def search_repo_filters(_env: Env, repo: Any, _: object) -> Any:
    return await repo.search(filters={"status": "active"}, order_by="-created_at", limit=PAGE)


async def search_aa(env: Env, repo: Any, _: object) -> Any:
    model = env.models.aa_model
    return await repo.get_many_and_count(
        model.status == "active",  # type: ignore[union-attr]
        LimitOffset(limit=PAGE, offset=0),
        order_by=[("created_at", True), ("id", False)],
    )


async def search_fastcrud(env: Env, session: AsyncSession, _: object) -> Any:
    return await env.models.fastcrud.get_multi(
        session,
        offset=0,
        limit=PAGE,
        sort_columns=["created_at", "id"],
        sort_orders=["desc", "asc"],
        status="active",
    )


def search_orm_sync(env: Env, session: Session, _: object) -> Any:
    model = env.models.hand
    where = model.status == "active"
    page = select(model).where(where).order_by(model.created_at.desc(), model.id).limit(PAGE)
    items = session.scalars(page).all()
    total = session.scalar(select(func.count()).select_from(model).where(where))
    return items, total


def search_repo_sync(env: Env, repo: Any, _: object) -> Any:
    model = env.models.repo_model
    return repo.search(model.status == "active", order_by=["-created_at"], limit=PAGE)


def search_aa_sync(env: Env, repo: Any, _: object) -> Any:
    model = env.models.aa_model
    return repo.get_many_and_count(
        model.status == "active",  # type: ignore[union-attr]
        LimitOffset(limit=PAGE, offset=0),
        order_by=[("created_at", True), ("id", False)],
    )


# -- pages by key order: offset page 1, offset at depth, keyset at depth ----------------


def _offset_core(offset: int) -> Callable[[Env, Any, object], Awaitable[Any]]:
    async def run(env: Env, conn: Any, _: object) -> Any:
        t = env.models.table
        stmt = select(t).order_by(t.c.id).limit(PAGE).offset(offset or None)
        return (await conn.execute(stmt)).all()

    return run


def _offset_orm(offset: int) -> Callable[[Env, Any, object], Awaitable[Any]]:
    async def run(env: Env, session: AsyncSession, _: object) -> Any:
        model = env.models.hand
        stmt = select(model).order_by(model.id).limit(PAGE).offset(offset or None)
        return (await session.scalars(stmt)).all()

    return run


def _offset_repo(offset: int) -> Callable[[Env, Any, object], Awaitable[Any]]:
    async def run(_env: Env, repo: Any, _: object) -> Any:
        return await repo.list(limit=PAGE, offset=offset)

    return run


def _offset_aa(offset: int) -> Callable[[Env, Any, object], Awaitable[Any]]:
    async def run(_env: Env, repo: Any, _: object) -> Any:
        return await repo.get_many(LimitOffset(limit=PAGE, offset=offset), order_by=("id", False))

    return run


def _offset_fastcrud(offset: int) -> Callable[[Env, Any, object], Awaitable[Any]]:
    async def run(env: Env, session: AsyncSession, _: object) -> Any:
        return await env.models.fastcrud.get_multi(
            session, offset=offset, limit=PAGE, sort_columns="id", return_total_count=False
        )

    return run


def _depth(env: Env) -> int:
    return env.depth


async def offset_deep_core(env: Env, conn: Any, arg: object) -> Any:
    return await _offset_core(env.depth)(env, conn, arg)


async def offset_deep_orm(env: Env, session: AsyncSession, arg: object) -> Any:
    return await _offset_orm(env.depth)(env, session, arg)


async def offset_deep_repo(env: Env, repo: Any, arg: object) -> Any:
    return await _offset_repo(env.depth)(env, repo, arg)


async def offset_deep_aa(env: Env, repo: Any, arg: object) -> Any:
    return await _offset_aa(env.depth)(env, repo, arg)


async def offset_deep_fastcrud(env: Env, session: AsyncSession, arg: object) -> Any:
    return await _offset_fastcrud(env.depth)(env, session, arg)


async def keyset_core(env: Env, conn: Any, after: int | None) -> Any:
    # One row more than the page tells whether a next page exists.
    t = env.models.table
    stmt = select(t).order_by(t.c.id).limit(PAGE + 1)
    if after is not None:
        stmt = stmt.where(t.c.id > after)
    return (await conn.execute(stmt)).all()


async def keyset_orm(env: Env, session: AsyncSession, after: int | None) -> Any:
    model = env.models.hand
    stmt = select(model).order_by(model.id).limit(PAGE + 1)
    if after is not None:
        stmt = stmt.where(model.id > after)
    return (await session.scalars(stmt)).all()


async def keyset_orm_utc(env: Env, session: AsyncSession, after: int | None) -> Any:
    # keyset_orm on sqla_repo's mapped class (aware-UTC timestamps loaded).
    model = env.models.repo_model
    stmt = select(model).order_by(model.id).limit(PAGE + 1)
    if after is not None:
        stmt = stmt.where(model.id > after)
    return (await session.scalars(stmt)).all()


async def keyset_repo(env: Env, repo: Any, after: int | None) -> Any:
    return await repo.paginate(limit=PAGE, after=None if after is None else env.cursor)


async def keyset_fastcrud(env: Env, session: AsyncSession, after: int | None) -> Any:
    return await env.models.fastcrud.get_multi_by_cursor(
        session, cursor=after, limit=PAGE, sort_column="id"
    )


# -- update by id with values -----------------------------------------------------------


def _changes(key: int) -> dict[str, Any]:
    return {"name": f"renamed {key}", "score": 7}


async def update_core(env: Env, conn: Any, key: int) -> Any:
    t = env.models.table
    stmt = update(t).where(t.c.id == key).values(_changes(key))
    if env.update_returning:
        return (await conn.execute(stmt.returning(*t.c))).one()
    await conn.execute(stmt)
    return (await conn.execute(select(t).where(t.c.id == key))).one()


async def update_orm(env: Env, session: AsyncSession, key: int) -> Any:
    obj = await session.get(env.models.hand, key)
    for name, value in _changes(key).items():
        setattr(obj, name, value)
    await session.flush()
    return obj


async def update_orm_guarded(env: Env, session: AsyncSession, key: int) -> Any:
    obj = await session.get(env.models.hand, key)
    async with session.begin_nested():
        for name, value in _changes(key).items():
            setattr(obj, name, value)
    return obj


async def update_repo(_env: Env, repo: Any, key: int) -> Any:
    return await repo.update(key, _changes(key))


async def update_aa(env: Env, repo: Any, key: int) -> Any:
    return await repo.update(env.models.aa_model(id=key, **_changes(key)))  # type: ignore[misc]


async def update_fastcrud(env: Env, session: AsyncSession, key: int) -> Any:
    columns = [c.key for c in env.models.table.c] if env.update_returning else None
    return await env.models.fastcrud.update(
        session, _changes(key), id=key, commit=False, return_columns=columns
    )


def update_orm_sync(env: Env, session: Session, key: int) -> Any:
    obj = session.get(env.models.hand, key)
    for name, value in _changes(key).items():
        setattr(obj, name, value)
    session.flush()
    return obj


def update_repo_sync(_env: Env, repo: Any, key: int) -> Any:
    return repo.update(key, _changes(key))


def update_aa_sync(env: Env, repo: Any, key: int) -> Any:
    return repo.update(env.models.aa_model(id=key, **_changes(key)))  # type: ignore[misc]


# -- delete by id ---------------------------------------------------------------------


async def delete_core(env: Env, conn: Any, key: int) -> Any:
    t = env.models.table
    return await conn.execute(delete(t).where(t.c.id == key))


async def delete_orm(env: Env, session: AsyncSession, key: int) -> Any:
    obj = await session.get(env.models.hand, key)
    await session.delete(obj)
    await session.flush()


async def delete_orm_guarded(env: Env, session: AsyncSession, key: int) -> Any:
    obj = await session.get(env.models.hand, key)
    async with session.begin_nested():
        await session.delete(obj)


async def delete_repo(_env: Env, repo: Any, key: int) -> Any:
    return await repo.delete(key)


async def delete_fastcrud(env: Env, session: AsyncSession, key: int) -> Any:
    return await env.models.fastcrud.db_delete(session, id=key, commit=False)


def delete_orm_sync(env: Env, session: Session, key: int) -> Any:
    obj = session.get(env.models.hand, key)
    session.delete(obj)
    session.flush()


def delete_repo_sync(_env: Env, repo: Any, key: int) -> Any:
    return repo.delete(key)


# -- upsert: 1k rows, half of them conflicting on the unique email ----------------------


def _upsert_insert(env: Env, target: Any) -> Any:
    name = env.engine.dialect.name
    if name in {"mysql", "mariadb"}:
        stmt = mysql.insert(target)
        new = stmt.inserted
        return stmt.on_duplicate_key_update(
            name=new.name, status=new.status, score=new.score, updated_at=new.updated_at
        )
    module: Any = postgresql if name == "postgresql" else sqlite
    stmt = module.insert(target)
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["email"],
        set_={
            "name": new.name,
            "status": new.status,
            "score": new.score,
            "updated_at": new.updated_at,
        },
    )


async def upsert_core(env: Env, conn: Any, rows: list[dict[str, Any]]) -> Any:
    t = env.models.table
    stmt = _upsert_insert(env, t)
    if not env.is_mysql:
        return (await conn.execute(stmt.returning(*t.c), rows)).all()
    await conn.execute(stmt, rows)
    emails = [row["email"] for row in rows]
    return (await conn.execute(select(t).where(t.c.email.in_(emails)))).all()


async def upsert_orm(env: Env, session: AsyncSession, rows: list[dict[str, Any]]) -> Any:
    # The ORM-enabled INSERT ... ON CONFLICT ... RETURNING of the SQLAlchemy 2.x docs.
    model = env.models.hand
    stmt = _upsert_insert(env, model)
    if not env.is_mysql:
        stmt = stmt.returning(model).execution_options(populate_existing=True)
        return (await session.scalars(stmt, rows)).all()
    await session.execute(stmt, rows)
    emails = [row["email"] for row in rows]
    return (await session.scalars(select(model).where(model.email.in_(emails)))).all()


async def upsert_repo(_env: Env, repo: Any, rows: list[dict[str, Any]]) -> Any:
    return await repo.bulk_upsert(rows, conflict_on=["email"])


async def upsert_aa(env: Env, repo: Any, rows: list[dict[str, Any]]) -> Any:
    model = env.models.aa_model
    return await repo.upsert_many([model(**row) for row in rows], match_fields=["email"])  # type: ignore[misc]


# -- arguments --------------------------------------------------------------------------


def unique_keys(env: Env, count: int) -> list[int]:
    """Distinct existing keys: no identity-map hit within a sample."""
    return env.rng.sample(range(1, env.rows + 1), count)


def new_rows(count: int, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "name": f"new {tag} {i}",
            "email": f"{tag}-{i}@example.net",
            "status": "pending",
            "score": i % 1000,
        }
        for i in range(count)
    ]


def upsert_rows(env: Env, tag: str) -> list[dict[str, Any]]:
    half = env.upsert_rows // 2
    existing = env.rng.sample(range(1, env.rows + 1), half)
    rows = [
        {"name": f"upserted {k}", "email": f"user{k}@example.org", "status": "disabled", "score": 1}
        for k in existing
    ]
    rows += [
        {
            "name": f"upserted {tag} {i}",
            "email": f"{tag}-{i}@example.net",
            "status": "pending",
            "score": 2,
        }
        for i in range(env.upsert_rows - half)
    ]
    env.rng.shuffle(rows)
    return rows


@dataclass
class Operation:
    """One benchmarked operation: its implementations and how to feed them."""

    name: str
    label: str
    per_sample: int
    reps: int
    # Coroutine functions for the async contenders, plain functions for SYNC_CONTENDERS.
    fns: dict[str, Callable[[Env, Any, Any], Any]]
    args: Callable[[Env, int, int], list[Any]]
    check: Callable[[Env, AsyncSession, Any, Any], Awaitable[None]] | None = None
    unit_note: str = ""
    # Each call begins and commits its own transaction: the harness begins none, and
    # every call (of every contender) gets arguments of its own, since rows are committed.
    own_transaction: bool = False
    # Run once after every contender's samples, e.g. to delete committed rows.
    cleanup: Callable[[Env], Awaitable[None]] | None = None


# -- checks (run once per contender before timing: identical work, right answers) -------


async def check_get(_env: Env, _session: AsyncSession, arg: Any, result: Any) -> None:
    assert ident(result) == arg, (arg, result)


async def check_create(env: Env, session: AsyncSession, arg: Any, _result: Any) -> None:
    t = env.models.table
    found = await session.scalar(
        select(func.count()).select_from(t).where(t.c.email == arg["email"])
    )
    assert found == 1, found


async def check_bulk(env: Env, session: AsyncSession, arg: Any, result: Any) -> None:
    t = env.models.table
    assert len(result) == len(arg), len(result)
    emails = {row["email"] for row in arg}
    found = await session.scalar(
        select(func.count())
        .select_from(t)
        .where(t.c.email.like(f"{next(iter(emails)).split('-')[0]}-%"))
    )
    assert found == len(arg), found


async def check_bulk_insert(env: Env, session: AsyncSession, arg: Any, result: Any) -> None:
    t = env.models.table
    assert result == len(arg), result
    prefix = arg[0]["email"].split("-")[0]
    found = await session.scalar(
        select(func.count()).select_from(t).where(t.c.email.like(f"{prefix}-%"))
    )
    assert found == len(arg), found


async def check_search(env: Env, _session: AsyncSession, _arg: Any, result: Any) -> None:
    items, total = items_and_total(result)
    assert len(items) == PAGE, len(items)
    assert total == env.active_total, (total, env.active_total)


def check_page(
    first_id: Callable[[Env], int],
) -> Callable[[Env, AsyncSession, Any, Any], Awaitable[None]]:
    async def check(env: Env, _session: AsyncSession, _arg: Any, result: Any) -> None:
        items, _ = items_and_total(result)
        assert len(items) >= PAGE, len(items)
        assert ident(items[0]) == first_id(env), (ident(items[0]), first_id(env))

    return check


async def check_update(env: Env, session: AsyncSession, arg: Any, _result: Any) -> None:
    t = env.models.table
    name = await session.scalar(select(t.c.name).where(t.c.id == arg))
    assert name == f"renamed {arg}", name


async def check_delete(env: Env, session: AsyncSession, arg: Any, _result: Any) -> None:
    t = env.models.table
    found = await session.scalar(select(func.count()).select_from(t).where(t.c.id == arg))
    assert found == 0, found


async def check_upsert(env: Env, session: AsyncSession, arg: Any, result: Any) -> None:
    t = env.models.table
    emails = [row["email"] for row in arg]
    found = await session.scalar(
        select(func.count())
        .select_from(t)
        .where(t.c.email.in_(emails), t.c.name.like("upserted %"))
    )
    assert found == len(arg), found
    assert len(result) == len(arg), len(result)


def operations(env: Env, *, reps: int, heavy_reps: int, quick: bool) -> list[Operation]:
    """The operations in run order, with their per-sample sizes."""
    return [
        _with_nosp(op) for op in _operations(env, reps=reps, heavy_reps=heavy_reps, quick=quick)
    ]


WRITES = {
    "create",
    "create_tx",
    "update",
    "delete",
    "bulk_create",
    "bulk_create_returning",
    "bulk_insert",
    "upsert",
}


def _with_nosp(op: Operation) -> Operation:
    # use_savepoints only changes writes; reads would measure the same code twice.
    if op.name in WRITES and "sqla_repo" in op.fns:
        op.fns["sqla_repo_nosp"] = op.fns["sqla_repo"]
    return op


def _operations(env: Env, *, reps: int, heavy_reps: int, quick: bool) -> list[Operation]:
    n = 5 if quick else 1
    tx_tags = itertools.count()  # create_tx commits: every batch of rows gets a fresh tag
    return [
        Operation(
            "get",
            "get by id",
            per_sample=max(50 // n, 2),
            reps=reps,
            fns={
                "core": get_core,
                "orm": get_orm,
                "sqla_repo": get_repo,
                "advanced_alchemy": get_repo,
                "fastcrud": get_fastcrud,
                "orm_sync": get_orm_sync,
                "sqla_repo_sync": get_repo_sync,
                "advanced_alchemy_sync": get_repo_sync,
            },
            args=lambda env, _rep, k: unique_keys(env, k),
            check=check_get,
        ),
        Operation(
            "create",
            "create one row",
            per_sample=max(25 // n, 2),
            reps=reps,
            fns={
                "core": create_core,
                "orm": create_orm,
                "orm_guarded": create_orm_guarded,
                "sqla_repo": create_repo,
                "advanced_alchemy": create_aa,
                "fastcrud": create_fastcrud,
                "orm_sync": create_orm_sync,
                "sqla_repo_sync": create_repo_sync,
                "advanced_alchemy_sync": create_aa_sync,
            },
            args=lambda _env, rep, k: new_rows(k, f"c{rep}"),
            check=check_create,
        ),
        Operation(
            "create_tx",
            "create, one transaction per call",
            per_sample=max(25 // n, 2),
            reps=reps,
            fns={
                "core": create_tx_core,
                "orm": create_tx_orm,
                "sqla_repo": create_tx_repo,
                "advanced_alchemy": create_tx_aa,
                "fastcrud": create_tx_fastcrud,
                "orm_sync": create_tx_orm_sync,
                "sqla_repo_sync": create_tx_repo_sync,
                "advanced_alchemy_sync": create_tx_aa_sync,
            },
            args=lambda _env, _rep, k: new_rows(k, f"{TX_TAG}{next(tx_tags)}"),
            check=check_create,
            own_transaction=True,
            cleanup=delete_tx_rows,
        ),
        Operation(
            "update",
            "update by id with values",
            per_sample=max(25 // n, 2),
            reps=reps,
            fns={
                "core": update_core,
                "orm": update_orm,
                "orm_guarded": update_orm_guarded,
                "sqla_repo": update_repo,
                "advanced_alchemy": update_aa,
                "fastcrud": update_fastcrud,
                "orm_sync": update_orm_sync,
                "sqla_repo_sync": update_repo_sync,
                "advanced_alchemy_sync": update_aa_sync,
            },
            args=lambda env, _rep, k: unique_keys(env, k),
            check=check_update,
        ),
        Operation(
            "delete",
            "delete by id",
            per_sample=max(25 // n, 2),
            reps=reps,
            fns={
                "core": delete_core,
                "orm": delete_orm,
                "orm_guarded": delete_orm_guarded,
                "sqla_repo": delete_repo,
                "advanced_alchemy": delete_repo,
                "fastcrud": delete_fastcrud,
                "orm_sync": delete_orm_sync,
                "sqla_repo_sync": delete_repo_sync,
                "advanced_alchemy_sync": delete_repo_sync,
            },
            args=lambda env, _rep, k: unique_keys(env, k),
            check=check_delete,
        ),
        Operation(
            "bulk_create",
            f"bulk create {env.bulk_rows:,} rows",
            per_sample=1,
            reps=heavy_reps,
            fns={
                "core": bulk_core,
                "orm": bulk_orm,
                "sqla_repo": bulk_repo,
                "advanced_alchemy": bulk_aa,
            },
            args=lambda env, rep, _k: [new_rows(env.bulk_rows, f"b{rep}")],
            check=check_bulk,
        ),
        Operation(
            "bulk_create_returning",
            f"bulk create {env.bulk_rows:,} rows, ORM INSERT … RETURNING by hand",
            per_sample=1,
            reps=heavy_reps,
            fns={
                "core": bulk_core,
                "orm": bulk_orm_returning,
                "orm_utc": bulk_orm_returning_utc,
                "orm_ordered": bulk_orm_returning_ordered,
                "sqla_repo": bulk_repo,
            },
            args=lambda _env, rep, _k: [new_rows(env.bulk_rows, f"r{rep}")],
            check=check_bulk,
        ),
        Operation(
            "bulk_insert",
            f"bulk insert {env.bulk_rows:,} rows, no objects back",
            per_sample=1,
            reps=heavy_reps,
            fns={
                "core": bulk_insert_core,
                "orm": bulk_insert_orm,
                **({"sqla_repo": bulk_insert_repo} if has_bulk_insert(env) else {}),
            },
            args=lambda env, rep, _k: [new_rows(env.bulk_rows, f"i{rep}")],
            check=check_bulk_insert,
        ),
        Operation(
            "upsert",
            f"upsert {env.upsert_rows:,} rows, half conflicting",
            per_sample=1,
            reps=heavy_reps,
            fns={
                "core": upsert_core,
                "orm": upsert_orm,
                "sqla_repo": upsert_repo,
                "advanced_alchemy": upsert_aa,
            },
            args=lambda env, rep, _k: [upsert_rows(env, f"u{rep}")],
            check=check_upsert,
        ),
        Operation(
            "search",
            f"search: page of {PAGE} + total, {env.rows:,} rows filtered",
            per_sample=max(3 // n, 1),
            reps=reps,
            fns={
                "core": search_core,
                "orm": search_orm,
                "sqla_repo": search_repo,
                "advanced_alchemy": search_aa,
                "fastcrud": search_fastcrud,
                "orm_sync": search_orm_sync,
                "sqla_repo_sync": search_repo_sync,
                "advanced_alchemy_sync": search_aa_sync,
            },
            args=lambda _env, _rep, k: [None] * k,
            check=check_search,
        ),
        Operation(
            "search_filters",
            "search with filters= and order_by= strings",
            per_sample=max(3 // n, 1),
            reps=reps,
            fns={"core": search_core, "orm": search_orm, "sqla_repo": search_repo_filters},
            args=lambda _env, _rep, k: [None] * k,
            check=check_search,
        ),
        Operation(
            "page_first",
            f"offset page 1 ({PAGE} rows by key)",
            per_sample=max(10 // n, 2),
            reps=reps,
            fns={
                "core": _offset_core(0),
                "orm": _offset_orm(0),
                "sqla_repo": _offset_repo(0),
                "advanced_alchemy": _offset_aa(0),
                "fastcrud": _offset_fastcrud(0),
            },
            args=lambda _env, _rep, k: [None] * k,
            check=check_page(lambda _env: 1),
        ),
        Operation(
            "offset_deep",
            f"offset page at depth {env.depth:,}",
            per_sample=max(3 // n, 1),
            reps=reps,
            fns={
                "core": offset_deep_core,
                "orm": offset_deep_orm,
                "sqla_repo": offset_deep_repo,
                "advanced_alchemy": offset_deep_aa,
                "fastcrud": offset_deep_fastcrud,
            },
            args=lambda _env, _rep, k: [None] * k,
            check=check_page(lambda env: env.boundary_id + 1),
        ),
        Operation(
            "keyset_first",
            "keyset page 1",
            per_sample=max(10 // n, 2),
            reps=reps,
            fns={
                "core": keyset_core,
                "orm": keyset_orm,
                "sqla_repo": keyset_repo,
                "fastcrud": keyset_fastcrud,
            },
            args=lambda _env, _rep, k: [None] * k,
            check=check_page(lambda _env: 1),
        ),
        Operation(
            "keyset_deep",
            f"keyset page at depth {env.depth:,}",
            per_sample=max(10 // n, 2),
            reps=reps,
            fns={
                "core": keyset_core,
                "orm": keyset_orm,
                "orm_utc": keyset_orm_utc,
                "sqla_repo": keyset_repo,
                "fastcrud": keyset_fastcrud,
            },
            args=lambda env, _rep, k: [env.boundary_id] * k,
            check=check_page(lambda env: env.boundary_id + 1),
        ),
    ]
