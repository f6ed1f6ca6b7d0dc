from sqlalchemy import select

from models import User


async def test_roundtrip(session):
    session.add(User(email="a@x.org"))
    await session.flush()
    assert (await session.scalars(select(User))).one().email == "a@x.org"
