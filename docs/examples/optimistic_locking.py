"""Optimistic locking: detect lost updates with a version column, and retry."""

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import String
from sqlalchemy.ext.asyncio import (
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Mapped, mapped_column

from sqla_repo import (
    Base,
    ConcurrencyError,
    NotFoundError,
    TimestampMixin,
    UUIDv7PKMixin,
    VersionMixin,
)
from sqla_repo.repository import BaseRepository

T = TypeVar("T")


# --8<-- [start:model]
class Ticket(UUIDv7PKMixin, VersionMixin, TimestampMixin, Base):
    __tablename__ = "tickets"

    title: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(20), default="open")


class TicketRepository(BaseRepository[Ticket]):
    pass


# --8<-- [end:model]
# --8<-- [start:retry]
async def in_transaction(
    new_session: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    attempts: int = 3,
) -> T:
    """Run *work* in a transaction; start again if it loses a race."""
    for attempt in range(1, attempts):
        try:
            async with new_session() as session, session.begin():
                return await work(session)
        except ConcurrencyError:  # noqa: PERF203 - retrying is the point
            delay = random.uniform(0, 0.05 * 2**attempt)  # noqa: S311 - jitter
            await asyncio.sleep(delay)
    # The last attempt lets the error propagate.
    async with new_session() as session, session.begin():
        return await work(session)


# --8<-- [end:retry]
# --8<-- [start:compare-and-set]
async def close_ticket(
    tickets: TicketRepository, ticket_id: uuid.UUID, seen_version: int
) -> None:
    """Close the ticket if it is still at the version the client saw."""
    changed = await tickets.update_where(
        Ticket.id == ticket_id,
        Ticket.version == seen_version,
        values={"state": "closed"},
    )
    if changed == 0:
        if not await tickets.exists(id=ticket_id):
            raise NotFoundError(model=Ticket)
        raise ConcurrencyError(model=Ticket)


# --8<-- [end:compare-and-set]
async def main() -> None:
    engine = create_async_engine("sqlite+aiosqlite:///tickets.db")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    new_session = async_sessionmaker(engine, expire_on_commit=False)

    async with new_session() as session, session.begin():
        ticket = await TicketRepository(session).create(
            {"title": "Printer on fire"}
        )
    print("new ticket, version", ticket.version)

    # --8<-- [start:lost-update]
    async with new_session() as alice, new_session() as bob:
        async with alice.begin():  # Alice opens the ticket...
            alices = await TicketRepository(alice).get_by_id(ticket.id)

        async with bob.begin():  # ...Bob opens it too, and saves first
            bobs = await TicketRepository(bob).get_by_id(ticket.id)
            await TicketRepository(bob).update(bobs, state="in progress")
        print("bob saved, version", bobs.version)

        try:
            async with alice.begin():  # Alice saves the copy she read at version 1
                await TicketRepository(alice).update(alices, state="closed")
        except ConcurrencyError as exc:
            print("alice:", exc.code)
    # --8<-- [end:lost-update]

    # --8<-- [start:use-retry]
    async def escalate(session: AsyncSession) -> Ticket:
        tickets = TicketRepository(session)
        current = await tickets.get_by_id(ticket.id)
        return await tickets.update(current, title=current.title + " (urgent)")

    escalated = await in_transaction(new_session, escalate)
    print("escalated:", escalated.title, "version", escalated.version)
    # --8<-- [end:use-retry]

    async with new_session() as session, session.begin():
        try:
            await close_ticket(TicketRepository(session), ticket.id, seen_version=1)
        except ConcurrencyError:
            print("closing with version 1: ConcurrencyError")
        await close_ticket(
            TicketRepository(session), ticket.id, seen_version=escalated.version
        )
        closed = await TicketRepository(session).get_by_id(ticket.id)
        print(
            "closed with version",
            escalated.version,
            "->",
            closed.state,
            closed.version,
        )

    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
