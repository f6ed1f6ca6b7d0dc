"""The generic async repository.

```python
class UserRepository(BaseRepository[User]):
    filterable_fields = {"email": ("eq", "ilike")}
    sortable_fields = ("created_at", "name")


async with sessionmaker() as session, session.begin():
    repo = UserRepository(session)
    user = await repo.create({"email": "ada@example.org"})
    page = await repo.search(filters={"email__ilike": "%@example.org"}, order_by=["-created_at"])
```

The repository **flushes, never commits**: the caller owns the transaction. Statements
that may violate a constraint run inside a SAVEPOINT where a failure would otherwise
poison the transaction, so a [`ConflictError`][sqla_repo.exceptions.ConflictError]
leaves the caller's session usable. Every read honours soft delete and tenant scoping;
``include_deleted=True`` is the only opt-in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from sqla_repo import _bulk_writes, _writes
from sqla_repo._repo_core import ModelT, _is_mapped
from sqla_repo.exceptions import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["BaseRepository"]

OtherModelT = TypeVar("OtherModelT")

_FOR_MODEL: dict[tuple[type[Any], type[Any]], type[Any]] = {}
"""Repository classes made by ``for_model()``, per (repository class, model)."""


class BaseRepository(_writes.Writes[ModelT], _bulk_writes.BulkWrites[ModelT]):
    """CRUD, search, pagination and bulk operations for one mapped class.

    Subclass it with the model as the generic argument (or set ``model``); construct it
    with an ``AsyncSession``. Class-level settings:

    Attributes:
        session: The ``AsyncSession`` given to the constructor; custom methods use it.
        model: The mapped class, inferred from ``BaseRepository[Model]``.
        filterable_fields: Fields untrusted ``filters=`` may name: column attributes,
            hybrid properties and relationship paths such as ``"author.email"``, as a
            collection (every operator) or a mapping to the allowed operators
            (``{"email": ("eq", "iexact")}``); or
            [`ALL_COLUMNS`][sqla_repo.filters.ALL_COLUMNS] for every column attribute.
            ``None`` (the default) accepts no field: naming one raises
            [`ConfigurationError`][sqla_repo.exceptions.ConfigurationError].
        sortable_fields: Fields untrusted ``order_by=`` strings may name, or
            ``ALL_COLUMNS``; ``None`` (the default) accepts no name. SQLAlchemy
            expressions and ``default_order_by`` are trusted and need no listing.
        default_order_by: Order used when a call gives none; the primary key is always
            appended as the final tiebreaker.
        max_page_size: Largest ``limit`` that ``search()`` and ``paginate()`` accept.
        cursor_max_age: Seconds after which ``paginate()`` refuses a cursor
            (``cursor_expired``); ``None``, the default, lets cursors live forever.
        max_in_values: Largest list an ``in``/``not_in`` filter accepts.
        default_options: Loader options (eager loads) added to every read.
        use_savepoints: Wrap writes that may fail in a SAVEPOINT where needed so that a
            failure leaves the transaction usable. Turn off only when you never continue
            a transaction after a [`ConflictError`][sqla_repo.exceptions.ConflictError].
            [`savepoints()`][sqla_repo.repository.BaseRepository.savepoints] overrides it
            for a block of calls.
    """

    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session)

    @classmethod
    def for_model(cls, model: type[OtherModelT]) -> type[BaseRepository[OtherModelT]]:
        """Return a repository class for *model*, a mapped class known only at run time.

        For adapters and plugins that receive the model as an argument:

        ```python
        repo = BaseRepository.for_model(user_model)(session)
        ```

        The class derives from the class it is called on, so
        ``AppRepository.for_model(User)`` keeps ``AppRepository``'s settings and
        methods. It is created once per (class, model): repeated calls return the same
        class object.

        Raises:
            ConfigurationError: *model* is not a mapped class.
        """
        key = (cls, model)
        found = _FOR_MODEL.get(key)
        if found is None:
            if not _is_mapped(model):
                msg = f"{cls.__name__}.for_model() needs a mapped class, got {model!r}"
                raise ConfigurationError(msg)
            name = f"{cls.__name__}[{model.__name__}]"
            namespace = {"model": model, "__module__": cls.__module__, "__qualname__": name}
            found = _FOR_MODEL.setdefault(key, type(name, (cls,), namespace))
        return found
