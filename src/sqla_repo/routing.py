"""Read replicas and transaction poolers: where each statement of a session goes.

```python
from sqla_repo.routing import replica_sessionmaker, use_primary

primary = create_async_engine("postgresql+asyncpg://app@db-primary/app")
replica = create_async_engine("postgresql+asyncpg://app@db-replica/app")
sessionmaker = replica_sessionmaker(primary, [replica], expire_on_commit=False)

async with sessionmaker() as session, session.begin():
    users = await UserRepository(session).list()  # answered by the replica
    await UserRepository(session).create({"email": "ada@example.org"})  # primary
    await UserRepository(session).get(1)  # primary: this transaction has written
```

Routing rules, decided per statement by
[`RoutingSession.get_bind()`][sqla_repo.routing.RoutingSession.get_bind]:

- A plain ``SELECT`` goes to a replica while the current transaction has written
  nothing; one replica is chosen per transaction, so its reads share one connection.
- Everything else goes to the primary: flushes, ``INSERT``/``UPDATE``/``DELETE``,
  ``SELECT … FOR UPDATE``/``FOR SHARE``, a ``SELECT`` holding one of those in a subquery
  or CTE (PostgreSQL's data-modifying ``WITH``) or a sequence's next value, textual SQL
  (whose effect cannot be known), and requests for a connection without a statement.
  A ``SELECT`` calling a function that writes (``select(func.my_procedure())``) cannot
  be told from a read: run it inside ``use_primary()``.
- After the first statement sent to the primary, every later statement of the same
  transaction goes there too (read-your-writes); the next transaction starts over.
- Inside ``with use_primary():`` every statement goes to the primary.
- A replica is checked (a ping on a pooled connection) when a transaction picks it; one
  that cannot be reached is skipped for ``retry_after`` seconds and the statement goes
  to the primary, the failure logged, not raised. A replica lost later, during the
  transaction, fails that transaction's statement or its commit.

Replicas lag: a row committed by one transaction may be missing from a replica read that
starts right after. Read through ``use_primary()`` when a read must see a commit that
just happened.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import time
import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.sql import Select, visitors
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.functions import next_value

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

__all__ = [
    "RoutingSession",
    "replica_sessionmaker",
    "transaction_pooling_options",
    "use_primary",
]

logger = logging.getLogger(__name__)

_force_primary: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "sqla_repo_force_primary", default=False
)


@contextmanager
def use_primary() -> Iterator[None]:
    """Send every statement made inside the block to the primary.

    For reads that must see a commit that just happened (replicas lag), and for reads
    whose result decides a write.
    """
    token = _force_primary.set(True)
    try:
        yield
    finally:
        _force_primary.reset(token)


class _Replicas:
    """The replica engines of one sessionmaker, taken in turn, with their health."""

    def __init__(self, engines: Sequence[Engine], retry_after: float, ping_after: float) -> None:
        self.engines = tuple(engines)
        self.retry_after = retry_after
        self.ping_after = ping_after
        for engine in self.engines:
            if not event.contains(engine, "checkin", _mark_idle):
                event.listen(engine, "checkin", _mark_idle)
        self._turn = itertools.cycle(range(len(self.engines))) if self.engines else None
        self._down_until: dict[int, float] = {}

    def pick(self) -> Engine | None:
        """Return the next reachable replica, or ``None`` when none answers."""
        if self._turn is None:
            return None
        now = time.monotonic()
        for _ in range(len(self.engines)):
            index = next(self._turn)
            if self._down_until.get(index, 0.0) > now:
                continue
            engine = self.engines[index]
            if self._reachable(engine, index):
                return engine
        return None

    def _reachable(self, engine: Engine, index: int) -> bool:
        try:
            _ping(engine, self.ping_after)
        except (exc.DBAPIError, OSError, engine.dialect.loaded_dbapi.Error) as error:
            self._down_until[index] = time.monotonic() + self.retry_after
            logger.warning(
                "replica %s unreachable (%s); reading from the primary for %.0f s",
                engine.url.render_as_string(hide_password=True),
                type(error).__name__,
                self.retry_after,
            )
            return False
        self._down_until.pop(index, None)
        return True


_IDLE_SINCE = "sqla_repo_idle_since"


def _mark_idle(_dbapi_connection: Any, record: Any) -> None:
    record.info[_IDLE_SINCE] = time.monotonic()


def _ping(engine: Engine, ping_after: float) -> None:
    """Check out a replica connection and prove the server still answers on it.

    A pooled connection whose server went away (restart, failover, an idle timeout)
    checks out fine and fails on its first statement, inside the caller's transaction.
    A connection idle for *ping_after* seconds or more is pinged (the dialect's ping,
    below the statement events) first; one found dead is discarded and one more is
    tried, so a replica that restarted is used again at once. A connection just made,
    or used less than *ping_after* seconds ago, is trusted without a round trip.
    """
    for attempt in range(2):
        with engine.connect() as conn:
            proxied = conn.connection
            dbapi_connection = proxied.dbapi_connection
            if dbapi_connection is None:  # invalidated meanwhile: take another
                continue
            idle_since = proxied.info.get(_IDLE_SINCE)
            if idle_since is None or time.monotonic() - idle_since < ping_after:
                return
            try:
                engine.dialect.do_ping(dbapi_connection)
            except engine.dialect.loaded_dbapi.Error as error:
                conn.invalidate(error)
                if attempt or not engine.dialect.is_disconnect(error, dbapi_connection, None):
                    raise
            else:
                return


class RoutingSession(Session):
    """A ``Session`` that reads from replicas and writes to the primary.

    Made by [`replica_sessionmaker()`][sqla_repo.routing.replica_sessionmaker]; use it as
    the ``sync_session_class`` of an ``AsyncSession``.
    """

    _primary: Engine
    _replicas: _Replicas

    def __init__(self, *args: Any, routing: tuple[Engine, _Replicas], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._primary, self._replicas = routing
        self._on_primary = False
        self._replica: Engine | None = None

    def get_bind(
        self,
        mapper: Any = None,  # noqa: ARG002 - every mapper shares the same servers
        *,
        clause: Any = None,
        **kw: Any,  # noqa: ARG002
    ) -> Engine:
        """Return the engine for the next statement (see the module's routing rules)."""
        if self._on_primary or not self._is_plain_read(clause) or _force_primary.get():
            self._on_primary = True
            return self._primary
        if self._replica is None:
            self._replica = self._replicas.pick()
            if self._replica is None:
                self._on_primary = True
                return self._primary
        return self._replica

    def _is_plain_read(self, clause: Any) -> bool:
        return not self._flushing and isinstance(clause, Select) and not _writes_or_locks(clause)

    @property
    def routed_to_primary(self) -> bool:
        """Whether the current transaction has been sent to the primary."""
        return self._on_primary


def _writes_or_locks(statement: Select[Any]) -> bool:
    """Whether a ``SELECT`` writes or locks anywhere inside (subqueries and CTEs included).

    Catches ``FOR UPDATE`` / ``FOR SHARE`` at any level, ``INSERT``/``UPDATE``/``DELETE``
    in a CTE (PostgreSQL's data-modifying ``WITH``) and a sequence's next value.
    """
    for element in visitors.iterate(statement):
        if isinstance(element, (UpdateBase, next_value)):
            return True
        if isinstance(element, Select) and element._for_update_arg is not None:  # noqa: SLF001 - FOR UPDATE / FOR SHARE
            return True
    return False


@event.listens_for(RoutingSession, "after_transaction_end")
def _forget_route(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None and isinstance(session, RoutingSession):
        session._on_primary = False  # noqa: SLF001
        session._replica = None  # noqa: SLF001


def replica_sessionmaker(
    primary: AsyncEngine,
    replicas: Sequence[AsyncEngine],
    *,
    retry_after: float = 5.0,
    ping_after: float = 1.0,
    **session_kw: Any,
) -> async_sessionmaker[AsyncSession]:
    """Return an ``async_sessionmaker`` whose sessions read from *replicas*.

    Args:
        primary: The engine of the primary server: every write and every read of a
            transaction that has written goes there.
        replicas: Engines of streaming replicas, taken in turn per transaction. Empty:
            everything goes to the primary.
        retry_after: Seconds a replica that could not be reached is left out before it
            is tried again.
        ping_after: A pooled replica connection idle this many seconds is pinged (one
            round trip) before a transaction uses it, so that a replica that restarted
            meanwhile is noticed rather than failing the transaction. ``0`` pings
            every time; ``float("inf")`` never.
        session_kw: Passed to ``async_sessionmaker``. ``expire_on_commit`` defaults to
            ``False`` here: expired attributes would be re-read from a replica that may not
            have replayed the commit yet.

    Raises:
        TypeError: *session_kw* holds ``bind``/``binds`` (the routing chooses the bind)
            or ``twophase=True`` (a standby cannot prepare a transaction).
    """
    if "bind" in session_kw or "binds" in session_kw:
        msg = "replica_sessionmaker() chooses the bind itself; do not pass bind/binds"
        raise TypeError(msg)
    if session_kw.get("twophase"):
        # A replica cannot PREPARE TRANSACTION (a standby is read-only), and its reads
        # have nothing to commit atomically with the primary's writes.
        msg = "replica_sessionmaker() does not support twophase=True"
        raise TypeError(msg)
    # Expiring on commit would make the next attribute access re-read the row from a
    # replica that may not have replayed the commit yet: keep the loaded values.
    session_kw.setdefault("expire_on_commit", False)
    routing = (
        primary.sync_engine,
        _Replicas([r.sync_engine for r in replicas], retry_after, ping_after),
    )
    return async_sessionmaker(sync_session_class=RoutingSession, routing=routing, **session_kw)


def transaction_pooling_options(url: str | URL) -> dict[str, Any]:
    """Return ``create_async_engine`` keyword arguments for a transaction-mode pooler.

    Behind PgBouncer's ``pool_mode = transaction`` consecutive transactions of one client
    connection run on different server connections, so a prepared statement made in one
    may be missing (or already taken) in the next. The options turn the drivers'
    statement caches off and give asyncpg's remaining prepared statements unique names:

    ```python
    engine = create_async_engine(url, **transaction_pooling_options(url))
    ```

    Supports ``postgresql+asyncpg`` and ``postgresql+psycopg``. Merge your own
    ``connect_args`` into the returned dict rather than passing them beside it.
    """
    driver = make_url(url).get_driver_name()
    if driver == "asyncpg":
        connect_args: Mapping[str, Any] = {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": _unique_statement_name,
        }
    elif driver in ("psycopg", "psycopg_async"):
        connect_args = {"prepare_threshold": None}
    else:
        msg = f"transaction_pooling_options() supports asyncpg and psycopg, not {driver!r}"
        raise ValueError(msg)
    return {"connect_args": dict(connect_args)}


def _unique_statement_name() -> str:
    # Unique across every client process sharing the pooler's server connections.
    return f"__sqla_repo_{uuid.uuid4().hex}__"
