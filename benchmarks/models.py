"""The benchmark table and each contender's mapping of it.

Every contender reads and writes the same physical table, created once from the
hand-written model: the same columns, types and indexes for all, and the same rows in
the same cache state. Each library maps it the way its documentation suggests:

* the hand-written model is a plain ``DeclarativeBase`` subclass (FastCRUD works on it
  too, and SQLAlchemy Core uses its ``Table``);
* sqla_repo composes ``IntegerPKMixin`` and ``TimestampMixin`` on a ``DeclarativeBase``;
* advanced-alchemy uses its ``IdentityAuditBase`` (integer identity key plus
  ``created_at``/``updated_at``).

The synchronous repositories (sqla_repo's ``SyncBaseRepository``, advanced-alchemy's
``SQLAlchemySyncRepository``) work on the same mapped classes as their async forms.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, String, Table
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_repo import BaseRepository, IntegerPKMixin, SyncBaseRepository, TimestampMixin

# The competitors are optional: a contender whose library is missing is skipped.
try:
    from advanced_alchemy.base import IdentityAuditBase
    from advanced_alchemy.repository import SQLAlchemyAsyncRepository, SQLAlchemySyncRepository
except ImportError:  # pragma: no cover - depends on the environment
    IdentityAuditBase = SQLAlchemyAsyncRepository = SQLAlchemySyncRepository = None
try:
    from fastcrud import FastCRUD
    from pydantic import BaseModel
except ImportError:  # pragma: no cover - depends on the environment
    FastCRUD = BaseModel = None

UTC = dt.timezone.utc

# Timezone-aware timestamps; MySQL/MariaDB need DATETIME(6) to keep microseconds.
TIMESTAMP = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


@dataclass
class Models:
    """The mapped classes, repositories and schemas of one table."""

    table: Table
    hand: type[Any]
    repo_model: type[Any]
    repo_class: type[Any]
    repo_nosp_class: type[Any]
    repo_sync_class: type[Any]
    aa_model: type[Any] | None
    aa_repo_class: type[Any] | None
    aa_sync_repo_class: type[Any] | None
    fastcrud: Any | None
    fastcrud_create: type[Any] | None


def build(table_name: str, *, competitors: bool = True) -> Models:
    """Map *table_name* for every contender whose library is installed.

    With *competitors* false only the hand-written and sqla_repo mappings are made.
    """

    class HandBase(DeclarativeBase):
        pass

    class HandItem(HandBase):
        __tablename__ = table_name

        id: Mapped[int] = mapped_column(
            BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
        )
        name: Mapped[str] = mapped_column(String(100))
        email: Mapped[str] = mapped_column(String(255), unique=True)
        status: Mapped[str] = mapped_column(String(20), index=True)
        score: Mapped[int] = mapped_column(Integer)
        created_at: Mapped[dt.datetime] = mapped_column(TIMESTAMP, default=utcnow, index=True)
        updated_at: Mapped[dt.datetime] = mapped_column(TIMESTAMP, default=utcnow, onupdate=utcnow)

    class RepoBase(DeclarativeBase):
        pass

    class RepoItem(IntegerPKMixin, TimestampMixin, RepoBase):
        __tablename__ = table_name

        name: Mapped[str] = mapped_column(String(100))
        email: Mapped[str] = mapped_column(String(255), unique=True)
        status: Mapped[str] = mapped_column(String(20), index=True)
        score: Mapped[int] = mapped_column(Integer)

    class ItemRepository(BaseRepository[RepoItem]):  # type: ignore[valid-type]
        filterable_fields = ("status",)
        sortable_fields = ("created_at",)

    class ItemRepositoryWithoutSavepoints(ItemRepository):
        use_savepoints = False

    class SyncItemRepository(SyncBaseRepository[RepoItem]):  # type: ignore[valid-type]
        filterable_fields = ("status",)
        sortable_fields = ("created_at",)

    aa_model = aa_repo_class = aa_sync_repo_class = None
    if competitors and IdentityAuditBase is not None:

        class AAItem(IdentityAuditBase):  # type: ignore[misc, valid-type]
            __tablename__ = table_name

            name: Mapped[str] = mapped_column(String(100))
            email: Mapped[str] = mapped_column(String(255), unique=True)
            status: Mapped[str] = mapped_column(String(20), index=True)
            score: Mapped[int] = mapped_column(Integer)

        class AAItemRepository(SQLAlchemyAsyncRepository[AAItem]):  # type: ignore[misc]
            model_type = AAItem

        class AASyncItemRepository(SQLAlchemySyncRepository[AAItem]):  # type: ignore[misc]
            model_type = AAItem

        aa_model, aa_repo_class = AAItem, AAItemRepository
        aa_sync_repo_class = AASyncItemRepository

    fastcrud = fastcrud_create = None
    if competitors and FastCRUD is not None:

        class ItemCreate(BaseModel):  # type: ignore[misc, valid-type]
            name: str
            email: str
            status: str
            score: int

        fastcrud, fastcrud_create = FastCRUD(HandItem), ItemCreate

    return Models(
        table=HandItem.__table__,  # type: ignore[arg-type]
        hand=HandItem,
        repo_model=RepoItem,
        repo_class=ItemRepository,
        repo_nosp_class=ItemRepositoryWithoutSavepoints,
        repo_sync_class=SyncItemRepository,
        aa_model=aa_model,
        aa_repo_class=aa_repo_class,
        aa_sync_repo_class=aa_sync_repo_class,
        fastcrud=fastcrud,
        fastcrud_create=fastcrud_create,
    )


STATUSES = ("active",) * 10 + ("pending",) * 6 + ("disabled",) * 3 + ("archived",)
"""Status by ``i % 20``: 50 % active, 30 % pending, 15 % disabled, 5 % archived."""

EPOCH = dt.datetime(2024, 1, 1, tzinfo=UTC)


def seed_row(i: int, total: int) -> dict[str, Any]:
    """The deterministic row number *i* (1-based) of a table of *total* rows.

    Rows are inserted in order into an empty table, so row *i* gets the key *i*.
    ``created_at`` is a permutation of the row numbers, so the time order is not the key
    order and every timestamp is distinct.
    """
    # 7919 is prime and divides no power of ten, so i * 7919 mod total is a permutation
    # for the row counts used here.
    created = EPOCH + dt.timedelta(seconds=(i * 7919) % total)
    return {
        "name": f"name {i}",
        "email": f"user{i}@example.org",
        "status": STATUSES[i % 20],
        "score": (i * 31) % 1000,
        "created_at": created,
        "updated_at": created,
    }
