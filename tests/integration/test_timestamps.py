"""TimestampMixin and UTCDateTime on real backends: aware UTC, microseconds, no lazy IO."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import User
from sqla_repo import NaiveDatetimeError
from sqla_repo._translate import translate_errors

UTC = dt.timezone.utc
PLUS_0530 = dt.timezone(dt.timedelta(hours=5, minutes=30))
MINUS_08 = dt.timezone(dt.timedelta(hours=-8))
PAST = dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def _assert_aware_utc(value: dt.datetime) -> None:
    assert value.tzinfo is not None
    assert value.utcoffset() == dt.timedelta(0)


def _assert_loaded(user: User, *names: str) -> None:
    """The attributes are in the object's state: reading them needs no IO."""
    state = inspect(user)
    for name in names:
        assert name not in state.expired_attributes
        assert name not in state.unloaded


async def _add(session: AsyncSession, email: str = "t@example.org", **values: object) -> User:
    user = User(email=email, **values)
    session.add(user)
    await session.flush()
    return user


async def _attempt(session: AsyncSession, *, translate: bool = False, **values: object) -> None:
    """Insert a user with *values* in a savepoint, optionally inside translate_errors()."""
    async with session.begin_nested():
        if translate:
            with translate_errors(User):
                await _add(session, "attempt@example.org", **values)
        else:
            await _add(session, "attempt@example.org", **values)


async def _reload(session: AsyncSession, user: User) -> User:
    """Forget every loaded value and read the row again from the database."""
    user_id = user.id
    session.expire_all()
    loaded = await session.scalar(select(User).where(User.id == user_id))
    assert loaded is user
    return loaded


class TestInsert:
    async def test_set_on_insert(self, session: AsyncSession) -> None:
        """A new row gets created_at == updated_at, aware UTC, loaded without IO."""
        before = dt.datetime.now(UTC)
        user = await _add(session)
        after = dt.datetime.now(UTC)
        _assert_loaded(user, "created_at", "updated_at")
        assert before <= user.created_at <= after
        assert user.created_at == user.updated_at
        _assert_aware_utc(user.created_at)

    async def test_read_back(self, session: AsyncSession) -> None:
        """Values read back from the database are the same aware UTC instants."""
        user = await _add(session)
        created, updated = user.created_at, user.updated_at
        await _reload(session, user)
        assert (user.created_at, user.updated_at) == (created, updated)
        assert user.created_at == user.updated_at
        _assert_aware_utc(user.created_at)
        _assert_aware_utc(user.updated_at)

    async def test_explicit_microseconds(self, session: AsyncSession) -> None:
        """An explicit created_at reads back exactly, microseconds included."""
        user = await _add(session, created_at=PAST)
        assert user.updated_at == PAST
        await _reload(session, user)
        assert user.created_at == PAST
        assert user.created_at.microsecond == 123456
        assert user.updated_at == PAST
        _assert_aware_utc(user.created_at)

    async def test_other_zone_same_instant(self, session: AsyncSession) -> None:
        """An aware value in another zone is stored and read back as that instant in UTC."""
        local = dt.datetime(2024, 7, 1, 23, 30, 0, 654321, tzinfo=PLUS_0530)
        user = await _add(session, created_at=local)
        await _reload(session, user)
        assert user.created_at == local
        _assert_aware_utc(user.created_at)
        assert user.created_at == dt.datetime(2024, 7, 1, 18, 0, 0, 654321, tzinfo=UTC)


class TestUpdate:
    async def test_orm_flush_bumps_updated_at(self, session: AsyncSession) -> None:
        """An ORM update bumps updated_at, keeps created_at, and leaves both loaded."""
        user = await _add(session, created_at=PAST)
        before = dt.datetime.now(UTC)
        user.name = "renamed"
        await session.flush()
        _assert_loaded(user, "created_at", "updated_at", "name")
        bumped = user.updated_at  # no lazy load, so no MissingGreenlet
        assert bumped >= before
        assert user.created_at == PAST
        await _reload(session, user)
        assert user.updated_at == bumped
        assert user.created_at == PAST
        _assert_aware_utc(user.updated_at)

    async def test_every_flush_bumps(self, session: AsyncSession) -> None:
        """Each UPDATE flush moves updated_at forward again."""
        user = await _add(session, created_at=PAST)
        seen = [user.updated_at]
        for name in ("a", "b", "c"):
            user.name = name
            await session.flush()
            seen.append(user.updated_at)
        assert seen == sorted(seen)
        assert seen[1] > seen[0]

    async def test_update_statement_bumps_updated_at(self, session: AsyncSession) -> None:
        """An ORM-enabled update() statement bumps updated_at too."""
        user = await _add(session, created_at=PAST)
        before = dt.datetime.now(UTC)
        await session.execute(update(User).where(User.id == user.id).values(name="bulk"))
        # The session synchronised the object: reading the value needs no IO.
        _assert_loaded(user, "updated_at", "name")
        in_session = user.updated_at
        assert user.name == "bulk"
        await _reload(session, user)
        assert user.updated_at >= before
        assert user.updated_at == in_session
        assert user.created_at == PAST
        _assert_aware_utc(user.updated_at)

    async def test_explicit_updated_at_wins(self, session: AsyncSession) -> None:
        """An updated_at given with the change is stored as given."""
        user = await _add(session)
        chosen = dt.datetime(2030, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
        user.name = "renamed"
        user.updated_at = chosen
        await session.flush()
        await _reload(session, user)
        assert user.updated_at == chosen


class TestNaive:
    async def test_naive_on_insert(self, session: AsyncSession) -> None:
        """A naive created_at fails the flush: SQLAlchemy wraps NaiveDatetimeError."""
        naive = dt.datetime(2024, 1, 2, 3, 4, 5)  # noqa: DTZ001 - the point of the test
        with pytest.raises(sa_exc.StatementError) as info:
            await _attempt(session, created_at=naive)
        assert not isinstance(info.value, sa_exc.DBAPIError)  # never reached the database
        assert isinstance(info.value.orig, NaiveDatetimeError)
        assert isinstance(info.value.__cause__, NaiveDatetimeError)
        assert await session.scalar(select(func.count()).select_from(User)) == 0

    async def test_naive_on_update(self, session: AsyncSession) -> None:
        """A naive value assigned to a loaded row fails the flush the same way."""
        user = await _add(session)
        user.created_at = dt.datetime(2024, 1, 2)  # noqa: DTZ001 - the point of the test
        with pytest.raises(sa_exc.StatementError) as info:
            await session.flush()
        assert isinstance(info.value.orig, NaiveDatetimeError)

    async def test_naive_through_translate_errors(self, session: AsyncSession) -> None:
        """Inside translate_errors() the NaiveDatetimeError itself surfaces, chained."""
        naive = dt.datetime(2024, 1, 2)  # noqa: DTZ001 - the point of the test
        with pytest.raises(NaiveDatetimeError) as info:
            await _attempt(session, translate=True, created_at=naive)
        assert isinstance(info.value, ValueError)
        assert isinstance(info.value.__cause__, sa_exc.StatementError)
        assert "INSERT" not in str(info.value)
        # The savepoint was rolled back and the session still works.
        user = await _add(session, "after@example.org")
        _assert_aware_utc(user.created_at)

    async def test_naive_in_where_clause(self, session: AsyncSession) -> None:
        """Comparing a column with a naive datetime is refused too."""
        await _add(session)
        naive = dt.datetime(2024, 1, 2)  # noqa: DTZ001 - the point of the test
        with pytest.raises(sa_exc.StatementError) as info:
            await session.scalars(select(User).where(User.created_at > naive))
        assert isinstance(info.value.orig, NaiveDatetimeError)


class TestOrder:
    INSTANTS = (
        dt.datetime(2024, 1, 1, 1, 0, 0, 500000, tzinfo=MINUS_08),  # 09:00:00.5Z
        dt.datetime(2024, 1, 1, 9, 0, 0, 1, tzinfo=UTC),  # 09:00:00.000001Z
        dt.datetime(2024, 1, 1, 10, 0, tzinfo=PLUS_0530),  # 04:30Z
        dt.datetime(2024, 1, 1, 9, 0, tzinfo=UTC),  # 09:00:00Z, no fraction
        dt.datetime(2023, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        dt.datetime(2024, 1, 1, 6, 0, tzinfo=UTC),
    )

    async def _insert_all(self, session: AsyncSession) -> list[dt.datetime]:
        for index, instant in enumerate(self.INSTANTS):
            await _add(session, f"u{index}@example.org", created_at=instant)
        session.expire_all()
        return sorted(self.INSTANTS)

    async def test_order_by_is_chronological(self, session: AsyncSession) -> None:
        """ORDER BY created_at sorts by instant, whatever zone the values were given in."""
        expected = await self._insert_all(session)
        rows = (await session.scalars(select(User.created_at).order_by(User.created_at))).all()
        assert rows == expected
        for value in rows:
            _assert_aware_utc(value)

    async def test_range_filter(self, session: AsyncSession) -> None:
        """Comparisons with aware values in any zone select by instant."""
        expected = await self._insert_all(session)
        lower = dt.datetime(2024, 1, 1, 1, 0, tzinfo=MINUS_08)  # 09:00Z, in another zone
        rows = (
            await session.scalars(
                select(User.created_at)
                .where(User.created_at >= lower)
                .order_by(User.created_at.desc())
            )
        ).all()
        assert rows == [value for value in reversed(expected) if value >= lower]
        assert len(rows) == 3

    async def test_min_max(self, session: AsyncSession) -> None:
        """MIN and MAX over the column pick the earliest and latest instants."""
        expected = await self._insert_all(session)
        earliest = await session.scalar(select(func.min(User.created_at)))
        latest = await session.scalar(select(func.max(User.created_at)))
        assert (earliest, latest) == (expected[0], expected[-1])
