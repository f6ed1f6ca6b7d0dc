"""Audit stamping, optimistic locking and primary-key mixins on every backend."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm.exc import StaleDataError

from models import Product, Ticket, User, Widget
from sqla_repo import ConcurrencyError, actor
from sqla_repo._translate import translate_errors


async def test_created_by_and_updated_by(session):
    """Inserts stamp both columns; updates stamp updated_by only."""
    with actor("alice"):
        user = User(email="a@x.org")
        session.add(user)
        await session.flush()
    assert (user.created_by, user.updated_by) == ("alice", "alice")
    with actor("bob"):
        user.name = "changed"
        await session.flush()
    assert (user.created_by, user.updated_by) == ("alice", "bob")


async def test_explicit_audit_values_win(session):
    """An explicit created_by/updated_by is kept."""
    with actor("alice"):
        user = User(email="a@x.org", created_by="importer")
        session.add(user)
        await session.flush()
        assert user.created_by == "importer"
        user.name = "x"
        user.updated_by = "migration"
        await session.flush()
    assert user.updated_by == "migration"


async def test_update_statement_stamps_updated_by(session):
    """An ORM-enabled update() statement stamps updated_by from the actor."""
    session.add(User(email="a@x.org"))
    await session.flush()
    with actor("carol"):
        await session.execute(update(User).values(name="n"))
    session.expire_all()
    assert (await session.scalars(select(User.updated_by))).one() == "carol"


async def test_no_actor_records_null(session):
    """Without an actor, created_by is NULL and an update records updated_by NULL."""
    with actor("alice"):
        user = User(email="a@x.org")
        session.add(user)
        await session.flush()
    user.name = "anon"
    await session.flush()
    assert user.updated_by is None


async def test_concurrent_actors_do_not_bleed(session, sessionmaker):
    """Concurrent tasks each stamp their own actor."""

    async def work(i: int) -> None:
        with actor(f"user-{i}"):
            async with sessionmaker() as s, s.begin():
                s.add(User(email=f"{i}@x.org"))
                await asyncio.sleep(0)

    await asyncio.gather(*(work(i) for i in range(20)))
    async with sessionmaker() as s:
        rows = (await s.execute(select(User.email, User.created_by))).all()
    assert sorted(rows) == sorted((f"{i}@x.org", f"user-{i}") for i in range(20))


async def test_version_starts_at_one_and_increments(session):
    """Version is 1 on insert and increments on each update."""
    ticket = Ticket(title="t")
    session.add(ticket)
    await session.flush()
    assert ticket.version == 1
    ticket.state = "closed"
    await session.flush()
    assert ticket.version == 2


async def test_stale_write_raises_concurrency_error(sessionmaker):
    """Two sessions updating the same version: the second raises ConcurrencyError."""
    async with sessionmaker() as s, s.begin():
        ticket = Ticket(title="t")
        s.add(ticket)
    async with sessionmaker() as first, sessionmaker() as second:
        b = await second.get(Ticket, ticket.id)
        await second.commit()  # end the read; SQLite would otherwise block the writer
        a = await first.get(Ticket, ticket.id)
        assert a is not None
        assert b is not None
        a.state = "a"
        await first.commit()
        b.state = "b"
        with pytest.raises(ConcurrencyError) as info, translate_errors(Ticket):
            await second.flush()
        assert isinstance(info.value.__cause__, StaleDataError)
        await second.rollback()
    async with sessionmaker() as s:
        final = await s.get(Ticket, ticket.id)
        assert final is not None
        assert (final.state, final.version) == ("a", 2)


async def test_uuid_keys_assigned_at_construction(session):
    """UUID v4 and v7 keys exist before flush and survive the round trip."""
    ticket, widget = Ticket(title="t"), Widget(name="w")
    assert isinstance(ticket.id, uuid.UUID)
    assert ticket.id.version == 4
    assert widget.id.version == 7
    given = uuid.uuid4()
    assert Ticket(title="x", id=given).id == given
    session.add_all([ticket, widget])
    await session.flush()
    session.expunge_all()
    assert (await session.get(Ticket, ticket.id)) is not None
    assert (await session.get(Widget, widget.id)) is not None


async def test_uuid_v7_keys_sort_by_creation(session):
    """UUID v7 keys made in sequence come back in insertion order when sorted by id."""
    names = [f"w{i:03d}" for i in range(50)]
    session.add_all([Widget(name=n) for n in names])
    await session.flush()
    assert (await session.scalars(select(Widget.name).order_by(Widget.id))).all() == names


async def test_integer_key_is_autoincrement(session):
    """Integer keys are assigned by the database."""
    a, b = Product(sku="a"), Product(sku="b")
    session.add_all([a, b])
    await session.flush()
    assert isinstance(a.id, int)
    assert b.id > a.id


async def test_core_insert_gets_python_defaults(session):
    """Core inserts on mixin tables get UUID, timestamps and version defaults."""
    await session.execute(Widget.__table__.insert(), [{"name": "core", "version": 1}])
    widget = (await session.scalars(select(Widget))).one()
    assert widget.id.version == 7
    assert widget.created_at == widget.updated_at
