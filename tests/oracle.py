"""A model with a secret column: the filter and sort oracle tests read it through the API.

The "ORM leak" attack: a client that may filter or sort on a column it cannot read learns
its value anyway, one prefix (``?password_hash__startswith=$2b``) or one comparison
(``?sort=password_hash``) at a time. These repositories must refuse both.
"""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_repo import ALL_COLUMNS
from sqla_repo.mixins import IntegerPKMixin
from sqla_repo.repository import BaseRepository


class OracleBase(DeclarativeBase):
    pass


class Account(IntegerPKMixin, OracleBase):
    __tablename__ = "oracle_accounts"

    email: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(100))


ACCOUNTS = [
    {"email": "ada@x.org", "name": "Ada", "password_hash": "$2b$12$aaaa"},
    {"email": "bob@x.org", "name": "Bob", "password_hash": "$argon2id$bbbb"},
]


class UnsetAccounts(BaseRepository[Account]):
    """No whitelist at all: untrusted filters and sorts are a configuration error."""


class PublicAccounts(BaseRepository[Account]):
    """The public fields are listed; password_hash is not."""

    filterable_fields: ClassVar = {"email": ("eq", "iexact"), "name": ("eq", "icontains")}
    sortable_fields = ("name", "email")


class OpenAccounts(BaseRepository[Account]):
    """Every column opted in explicitly: password_hash included, by the developer's choice."""

    filterable_fields = ALL_COLUMNS
    sortable_fields = ALL_COLUMNS
