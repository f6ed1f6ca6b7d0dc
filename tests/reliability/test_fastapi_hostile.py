"""The blog example under attack over HTTP: hostile query strings, ids and bodies, concurrency.

Whatever a client sends, the service answers with a 2xx or a 4xx naming what was wrong,
never a 500, and its tables are unchanged by requests that must not write. Concurrent
requests of different tenants and actors stamp every row with their own context.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, inspect, select
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncEngine

from reliability.support import KNOWN_DEFECTS, bounded, race

pytest.importorskip("fastapi")
import httpx
from fastapi import Depends

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the example is imported as examples.blog.app
    sys.path.append(str(ROOT))

from examples.blog.app import db  # noqa: E402
from examples.blog.app.dependencies import get_reminder_repository, set_tenant  # noqa: E402
from examples.blog.app.main import create_app  # noqa: E402
from examples.blog.app.models import Base, Post, Reminder, User  # noqa: E402
from examples.blog.app.repositories import (  # noqa: E402
    PostRepository,
    ReminderRepository,
    UserRepository,
)

from sqla_repo.filters import ALIASES, OPERATORS  # noqa: E402

pytestmark = pytest.mark.fastapi

EXAMPLES = 300
QUERY_EXAMPLES = 500
MEGABYTE = 1 << 20


class Blog:
    """The app, a client for it, its engine and cursors it handed out."""

    def __init__(
        self, client: httpx.AsyncClient, engine: AsyncEngine, app: Any, cursors: list[str]
    ) -> None:
        self.client, self.engine, self.app, self.cursors = client, engine, app, cursors

    def __repr__(self) -> str:
        return f"Blog({len(self.cursors)} cursors)"


async def _dump(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    async with engine.connect() as conn:  # Core on a plain connection: no scoping hooks
        out = {}
        for table in Base.metadata.sorted_tables:
            rows = await conn.execute(select(table).order_by(*table.primary_key.columns))
            out[table.name] = [tuple(row) for row in rows]
        out["schema"] = await conn.run_sync(
            lambda sync: sorted(
                (t, c["name"])
                for t in inspect(sync).get_table_names()
                for c in inspect(sync).get_columns(t)
            )
        )
        return out


async def _seed(client: httpx.AsyncClient) -> list[str]:
    """Users, posts and reminders of two teams; return cursors the service handed out."""
    admin = {"X-User": "admin"}
    ids = []
    for name in ("ada", "alan", "grace", "linus", "émile"):
        body = {
            "email": f"{name}@example.org",
            "username": f"u_{len(ids)}",
            "full_name": name.title(),
        }
        response = await client.post("/users", json=body, headers=admin)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    for i in range(6):
        body = {"author_id": ids[i % 3], "slug": f"post-{i}", "title": f"Post {i} %_"}
        assert (await client.post("/posts", json=body, headers=admin)).status_code == 201
    for team in ("acme", "globex"):
        for i in range(3):
            body = {"text": f"{team} {i}", "due_on": f"2030-01-0{i + 1}"}
            headers = {"X-Tenant": team, "X-User": "bot"}
            assert (await client.post("/reminders", json=body, headers=headers)).status_code == 201
    cursors = []
    for sort in (None, "title", "-created_at", "published_at"):
        params = {"limit": 2, **({"sort": sort} if sort else {})}
        page = (await client.get("/posts", params=params)).json()
        cursors += [c for c in (page["next_cursor"], page["previous_cursor"]) if c]
    return cursors


@pytest_asyncio.fixture
async def blog(backend) -> AsyncIterator[Blog]:
    """The blog app on the backend, seeded; its tables must be as seeded afterwards."""
    engine = db.create_engine(backend.url)
    await db.create_tables(engine)
    app = create_app(engine, create_tables=False)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://blog") as client:
            cursors = await _seed(client)
            before = await _dump(engine)
            yield Blog(client, engine, app, cursors)
            after = await _dump(engine)
            for name in before:
                assert after[name] == before[name], name
    finally:
        async with engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                await conn.execute(delete(table))
        await engine.dispose()


# -- what a hostile client sends ------------------------------------------------------------


def _keys(repository: Any) -> list[str]:
    fields = list(repository.filterable_fields or ())
    ops = sorted(OPERATORS | set(ALIASES))
    return fields + [f"{f}__{op}" for f in fields for op in ops]


ENDPOINTS = {
    "/users": (UserRepository, ["limit", "offset", "sort"]),
    "/posts": (PostRepository, ["limit", "cursor", "before", "sort"]),
    "/reminders": (ReminderRepository, ["limit", "offset", "sort"]),
}
HOSTILE_KEYS = [
    "filters",
    "filters[email]",
    "id; DROP TABLE blog_users",
    "email) OR 1=1 --",
    "password",
    "tenant_id",
    "deleted_at",
    "author.password",
    "author.username__in",
    "__class__",
    "",
    "limit[]",
    "x-tenant",
    "é",
]
numbers = st.sampled_from(
    [
        "0",
        "-1",
        "1",
        "50",
        "51",
        "2147483648",
        "9223372036854775807",
        "1e3",
        "1.5",
        "NaN",
        "",
        " 3",
        "\uff10",
        "9223372036854775808",
        "9" * 40,
    ]
)
query_values = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=20),
    numbers,
    st.sampled_from(
        ["true", "false", "yes", "null", "a,b", ",,", "%", "_", "\\", "%25", "a\\", "' OR '1'='1"]
    ),
    st.sampled_from(
        [
            "2030-01-01",
            "2030-13-01",
            "0001-01-01",
            "9999-12-31T23:59:59Z",
            "2030-01-01T00:00:00+25:00",
        ]
    ),
    st.builds(
        lambda c, n: c * n,
        st.sampled_from(["x", "é", "%", ","]),
        st.sampled_from([5_000, 10_000, 10_001]),
    ),
    st.builds(lambda n: ",".join(map(str, range(n))), st.sampled_from([3, 500, 501, 5000])),
)


@st.composite
def query_strings(draw: st.DrawFn, cursors: list[str]) -> tuple[str, list[tuple[str, str]]]:
    path = draw(st.sampled_from(sorted(ENDPOINTS)))
    repository, reserved = ENDPOINTS[path]
    good = st.sampled_from(_keys(repository))
    sortable = list(repository.sortable_fields or ())
    sorts = st.one_of(
        st.lists(st.sampled_from(sortable + [f"-{s}" for s in sortable]), max_size=3).map(",".join),
        st.text(max_size=10),
        st.sampled_from(
            ["id", "-password", "title,title", ",", "x" * 10_000, ",".join(sortable * 6)]
        ),
    )
    cursor_values = st.one_of(
        st.sampled_from(cursors),
        st.sampled_from(cursors).map(lambda c: c[:-2] + ("AA" if not c.endswith("AA") else "BB")),
        st.text(max_size=30),
        st.sampled_from(["", "=", "x" * 5000]),
    )
    pairs = []
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        kind = draw(st.sampled_from(["filter", "filter", "filter", "reserved", "hostile"]))
        if kind == "filter":
            pairs.append((draw(good), draw(query_values)))
        elif kind == "hostile":
            pairs.append(
                (draw(st.sampled_from(HOSTILE_KEYS) | st.text(max_size=8)), draw(query_values))
            )
        else:
            name = draw(st.sampled_from(reserved))
            strategy = {"sort": sorts, "cursor": cursor_values, "before": cursor_values}.get(
                name, numbers
            )
            pairs.append((name, draw(strategy)))
    if draw(st.integers(min_value=0, max_value=30)) == 0:
        pairs += [("title__ne", str(i)) for i in range(101)]  # too many conditions
    return path, pairs


def _names_the_problem(body: Any) -> bool:
    """A 422 body names the offending parameter (FastAPI's format) or field (the library's)."""
    if isinstance(body, dict) and isinstance(body.get("detail"), list):
        return all(len(item.get("loc", ())) >= 1 and item.get("type") for item in body["detail"])
    if isinstance(body, dict) and body.get("error"):
        detail = body.get("detail") or {}
        return bool(detail.get("field") or detail.get("reason"))
    return False


def check_response(response: httpx.Response, *, allowed: set[int]) -> None:
    assert response.status_code in allowed, (response.status_code, response.text[:500])
    assert "[SQL" not in response.text
    assert "Traceback" not in response.text
    if response.status_code == 422:
        assert _names_the_problem(response.json()), response.text[:500]


@settings(
    max_examples=QUERY_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
async def test_hostile_query_strings_get_200_or_422(blog, data):
    """Random filters, sorts, cursors and page parameters: 200 or a 422 naming the problem."""
    path, pairs = data.draw(query_strings(blog.cursors), label="request")
    try:
        request = blog.client.build_request("GET", path, params=pairs, headers={"X-Tenant": "acme"})
    except httpx.InvalidURL:
        reject()  # longer than any HTTP client or server accepts (64 KiB of query)
    response = await blog.client.send(request)
    event(f"{path} {response.status_code}")
    check_response(response, allowed={200, 422})
    if response.status_code == 200 and path == "/reminders":
        assert all(item["tenant_id"] == "acme" for item in response.json()["items"])


# A NUL in /users/by-email/{email} is a 500 on PostgreSQL until test_equality_values_the_
# column_cannot_hold_are_refused passes; the fuzz sends it once that defect is fixed.
_ID_EXCLUDED = "/\x00" if "unchecked_equality" in KNOWN_DEFECTS else "/"
ids = st.one_of(
    st.integers(min_value=100_000, max_value=2**63 - 1),
    st.integers(max_value=0),
    st.sampled_from([2**63, 2**64, 10**30, -(2**63) - 1]).map(str),
    # No digits in free text: "1" or " 1.0" would name a seeded row. Starlette decodes
    # %2F, so a "/" makes another path (a redirect), and the client resolves "." and ".."
    # segments itself: neither reaches the endpoint.
    st.text(
        alphabet=st.characters(exclude_categories=("Nd", "Cs"), exclude_characters=_ID_EXCLUDED),
        min_size=1,
        max_size=10,
    ).filter(lambda t: t.strip(".") != ""),
    st.sampled_from(["100000.0", "1e5", "0x1", " 100000", "NaN", "%00", "1;DROP TABLE blog_users"]),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)  # JSON has neither
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "version": st.integers() | st.text(max_size=3),
            "title": st.text(max_size=300),
            "full_name": st.text(max_size=120),
            "is_active": st.booleans() | st.text(max_size=3),
            "author_id": st.integers(),
            "slug": st.text(max_size=10),
            "email": st.text(max_size=10),
            "username": st.text(max_size=10),
        },
    ),
)
ROUTES = [
    ("GET", "/users/{id}"),
    ("GET", "/users/{id}/posts"),
    ("PATCH", "/users/{id}"),
    ("DELETE", "/users/{id}"),
    ("POST", "/users/{id}/restore"),
    ("GET", "/users/by-email/{id}"),
    ("GET", "/users/by-username/{id}"),
    ("GET", "/posts/{id}"),
    ("PATCH", "/posts/{id}"),
    ("DELETE", "/posts/{id}"),
    ("POST", "/posts/{id}/publish"),
    ("GET", "/reminders/{id}"),
    ("POST", "/reminders/{id}/done"),
    ("DELETE", "/reminders/{id}"),
]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(ROUTES),
    ident=ids,
    body=bodies,
    team=st.sampled_from(["acme", "globex", None]),
)
async def test_hostile_ids_and_bodies_get_4xx(blog, route, ident, body, team):
    """Ids that exist nowhere, out of range or malformed, with any body: a 4xx, nothing written."""
    method, template = route
    headers = {"X-Tenant": team} if team else {}
    kwargs: dict[str, Any] = {"headers": headers}
    if method in {"PATCH", "POST"}:
        kwargs["json"] = body
    path = template.replace("{id}", quote(str(ident), safe=""))
    response = await blog.client.request(method, path, **kwargs)
    event(f"{method} {template} {response.status_code}")
    check_response(response, allowed={403, 404, 405, 409, 422})


@settings(
    max_examples=EXAMPLES // 3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies, path=st.sampled_from(["/users", "/posts", "/reminders"]))
async def test_hostile_bodies_for_creation_are_refused_or_created(blog, body, path):
    """A random body on a create endpoint is created (then removed) or refused with a 4xx."""
    response = await blog.client.post(
        path, json=body, headers={"X-Tenant": "acme", "X-User": "fuzz"}
    )
    check_response(response, allowed={201, 404, 409, 422})
    if response.status_code == 201:  # keep the tables as seeded for the final comparison
        table = {"/users": User, "/posts": Post, "/reminders": Reminder}[path].__table__
        async with blog.engine.begin() as conn:
            await conn.execute(delete(table).where(table.c.id == response.json()["id"]))


# -- concurrency through the service ---------------------------------------------------------


async def test_concurrent_requests_keep_their_own_tenant_and_actor(blog):
    """Concurrent requests of 24 tenant/actor pairs stamp every row with their own context."""
    client = blog.client

    async def team(i: int) -> int:
        headers = {"X-Tenant": f"team-{i % 6}", "X-User": f"writer-{i}"}
        created = await client.post("/reminders", json={"text": f"r{i}"}, headers=headers)
        assert created.status_code == 201, created.text
        ident = created.json()["id"]
        await asyncio.sleep(0)
        closer = {"X-Tenant": f"team-{i % 6}", "X-User": f"closer-{i}"}
        done = await client.post(f"/reminders/{ident}/done", headers=closer)
        assert done.status_code == 200, done.text
        user = await client.post(
            "/users",
            json={"email": f"c{i}@example.org", "username": f"conc_{i}"},
            headers={"X-User": f"signup-{i}"},
        )
        assert user.status_code == 201, user.text
        return ident

    results = await race(team)
    assert not [r for r in results if isinstance(r, BaseException)], results
    table = Reminder.__table__
    async with blog.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    table.c.id,
                    table.c.text,
                    table.c.tenant_id,
                    table.c.created_by,
                    table.c.updated_by,
                ).where(table.c.text.like("r%"))
            )
        ).all()
        users = (
            await conn.execute(
                select(User.__table__.c.username, User.__table__.c.created_by).where(
                    User.__table__.c.username.like("conc%")
                )
            )
        ).all()
    by_text = {row.text: row for row in rows}
    assert len(by_text) == len(results)
    for i in range(len(results)):
        row = by_text[f"r{i}"]
        assert (row.tenant_id, row.created_by, row.updated_by) == (
            f"team-{i % 6}",
            f"writer-{i}",
            f"closer-{i}",
        )
    assert sorted(users) == sorted((f"conc_{i}", f"signup-{i}") for i in range(len(results)))
    async with blog.engine.begin() as conn:  # back to the seeded state
        await conn.execute(delete(table).where(table.c.text.like("r%")))
        await conn.execute(delete(User.__table__).where(User.__table__.c.username.like("conc%")))


# -- a connection killed mid-request ---------------------------------------------------------


async def test_connection_killed_mid_request_is_a_500_and_the_next_request_succeeds(blog, faults):
    """A request whose connection dies mid-import is a 500, keeps nothing, spares the pool."""
    victim: dict[str, int] = {}
    inserts = [0]
    reached = asyncio.Event()

    @sa_event.listens_for(blog.engine.sync_engine, "after_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO BLOG_REMINDERS") and "id" in victim:
            inserts[0] += 1
            if inserts[0] >= 3:
                reached.set()

    @blog.app.post("/reminders/import", status_code=201, dependencies=[Depends(set_tenant)])
    async def import_reminders(
        count: int, reminders: Annotated[ReminderRepository, Depends(get_reminder_repository)]
    ) -> dict[str, int]:
        victim["id"] = await faults.connection_id(reminders.session)
        rows = [{"text": f"imported {i}"} for i in range(count)]
        return {"created": len(await reminders.bulk_create(rows, batch_size=100))}

    async def killer() -> None:
        await reached.wait()
        await faults.kill(victim["id"])

    team = {"X-Tenant": "acme", "X-User": "importer"}
    kill = asyncio.create_task(killer())
    response = await bounded(
        blog.client.post("/reminders/import", params={"count": 50_000}, headers=team)
    )
    await bounded(kill)
    assert response.status_code == 500
    assert "INSERT" not in response.text
    assert "[SQL" not in response.text
    table = Reminder.__table__
    async with blog.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).where(table.c.text.like("imported%"))) == 0

    async def afterwards(i: int) -> int:
        created = await blog.client.post("/reminders", json={"text": f"after {i}"}, headers=team)
        listed = await blog.client.get("/reminders", headers=team)
        return created.status_code * 1000 + listed.status_code

    assert await race(afterwards, parties=8) == [201_200] * 8
    assert blog.engine.pool.checkedout() == 0
    async with blog.engine.begin() as conn:  # back to the seeded state
        await conn.execute(delete(table).where(table.c.text.like("after%")))
