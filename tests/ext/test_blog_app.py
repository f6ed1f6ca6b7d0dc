"""The example blog service, end to end over HTTP, on every backend."""

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import delete, func, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the example is imported as examples.blog.app
    sys.path.append(str(ROOT))

from examples.blog.app import db  # noqa: E402
from examples.blog.app.main import create_app  # noqa: E402
from examples.blog.app.models import Base, Post, Reminder, User  # noqa: E402

pytestmark = pytest.mark.fastapi


@pytest_asyncio.fixture(scope="session")
async def blog_engine(backend) -> AsyncIterator[AsyncEngine]:
    """The blog's own tables in the backend's database, made the way the app makes them."""
    engine = db.create_engine(backend.url)
    await db.drop_tables(engine)
    await db.create_tables(engine)
    yield engine
    await db.drop_tables(engine)
    await engine.dispose()


@pytest_asyncio.fixture
async def client(blog_engine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(blog_engine, create_tables=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://blog") as http:
        yield http
    async with blog_engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(delete(table))


async def _user(client: httpx.AsyncClient, username: str, **fields: object) -> dict:
    body = {"email": f"{username}@example.org", "username": username, **fields}
    response = await client.post("/users", json=body, headers={"X-User": "admin"})
    assert response.status_code == 201, response.text
    return response.json()


async def _post(client: httpx.AsyncClient, author_id: int, slug: str) -> dict:
    body = {"author_id": author_id, "slug": slug, "title": slug.title()}
    response = await client.post("/posts", json=body, headers={"X-User": "editor"})
    assert response.status_code == 201, response.text
    return response.json()


class TestUsers:
    async def test_crud_and_audit(self, client):
        """Users are created, read and updated; X-User stamps the audit columns."""
        ada = await _user(client, "ada", full_name="Ada Lovelace")
        assert (ada["created_by"], ada["updated_by"]) == ("admin", "admin")
        read = await client.get(f"/users/{ada['id']}")
        assert read.json() == ada
        updated = await client.patch(
            f"/users/{ada['id']}", json={"full_name": "Ada King"}, headers={"X-User": "ada"}
        )
        assert updated.json()["full_name"] == "Ada King"
        assert (updated.json()["created_by"], updated.json()["updated_by"]) == ("admin", "ada")

    async def test_duplicate_is_a_conflict(self, client):
        """A taken email or username is a 409 with a JSON error body."""
        await _user(client, "ada")
        response = await client.post(
            "/users", json={"email": "ada@example.org", "username": "other"}
        )
        assert response.status_code == 409
        body = response.json()
        assert body["error"] == "unique_violation"
        assert set(body) == {"error", "message", "detail"}
        assert "ada@example.org" not in response.text

    async def test_missing_is_not_found(self, client):
        """An unknown id is a 404 in the library's error format."""
        response = await client.get("/users/123456")
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"

    async def test_bad_body_is_unprocessable(self, client):
        """A body that fails validation is FastAPI's usual 422."""
        response = await client.post("/users", json={"email": "nope", "username": "A!"})
        assert response.status_code == 422

    async def test_finders(self, client):
        """The repository's finders are reachable over HTTP."""
        ada = await _user(client, "ada", full_name="Ada Lovelace", is_superuser=True)
        await _user(client, "alan", full_name="Alan Turing")
        grace = await _user(client, "grace", full_name="Grace Hopper")
        await client.patch(f"/users/{grace['id']}", json={"is_active": False})

        by_email = await client.get("/users/by-email/ada@example.org")
        by_username = await client.get("/users/by-username/alan")
        unknown = await client.get("/users/by-username/nobody")
        active = await client.get("/users/active")
        superusers = await client.get("/users/superusers")
        by_name = await client.get("/users/by-name", params={"q": "TURING"})
        literal = await client.get("/users/by-name", params={"q": "%"})
        availability = await client.get(
            "/users/availability", params={"email": "ada@example.org", "username": "free"}
        )

        assert by_email.json()["id"] == ada["id"]
        assert by_username.json()["username"] == "alan"
        assert unknown.status_code == 404
        assert [u["username"] for u in active.json()] == ["ada", "alan"]
        assert [u["username"] for u in superusers.json()] == ["ada"]
        assert [u["username"] for u in by_name.json()["items"]] == ["alan"]
        assert literal.json()["total"] == 0
        assert availability.json() == {"email_taken": True, "username_taken": False}

    async def test_user_with_posts(self, client):
        """find_with_posts loads a user's posts eagerly."""
        ada = await _user(client, "ada")
        await _post(client, ada["id"], "first")
        await _post(client, ada["id"], "second")
        response = await client.get(f"/users/{ada['id']}/posts")
        assert [p["slug"] for p in response.json()["posts"]] == ["first", "second"]

    async def test_search_with_filters_and_sort(self, client):
        """Query-string filters and sort narrow and order the users; typos are refused."""
        for name in ("ada", "alan", "grace", "linus"):
            await _user(client, name, full_name=name.title())
        response = await client.get(
            "/users",
            params={"username__in": "ada,grace,linus", "sort": "-username", "limit": 2},
        )
        page = response.json()
        assert [u["username"] for u in page["items"]] == ["linus", "grace"]
        assert (page["total"], page["total_pages"], page["has_next"]) == (3, 2, True)
        second = await client.get(
            "/users",
            params={"username__in": "ada,grace,linus", "sort": "-username", "offset": 2},
        )
        assert [u["username"] for u in second.json()["items"]] == ["ada"]
        everything = await client.get("/users")
        assert everything.json()["total"] == 4

        typo = await client.get("/users", params={"usrname": "ada"})
        not_filterable = await client.get("/users", params={"updated_by": "x"})
        too_big = await client.get("/users", params={"limit": 51})
        bad_sort = await client.get("/users", params={"sort": "email"})
        for response in (typo, not_filterable, too_big, bad_sort):
            assert response.status_code == 422
        assert typo.json()["detail"][0]["loc"] == ["query", "usrname"]
        assert bad_sort.json()["detail"][0]["loc"] == ["query", "sort"]

    async def test_soft_delete_and_restore(self, client):
        """A deleted user disappears from reads and comes back when restored."""
        ada = await _user(client, "ada")
        assert (await client.delete(f"/users/{ada['id']}")).status_code == 204
        assert (await client.get(f"/users/{ada['id']}")).status_code == 404
        assert (await client.delete(f"/users/{ada['id']}")).status_code == 404
        assert (await client.get("/users")).json()["total"] == 0
        restored = await client.post(f"/users/{ada['id']}/restore")
        assert restored.status_code == 200
        assert (await client.get(f"/users/{ada['id']}")).status_code == 200
        assert (await client.post("/users/999999/restore")).status_code == 404


class TestPosts:
    async def test_keyset_listing(self, client):
        """Posts are listed page by page with opaque cursors, forwards and backwards."""
        ada = await _user(client, "ada")
        for i in range(5):
            await _post(client, ada["id"], f"post-{i}")
        first = (await client.get("/posts", params={"limit": 2, "sort": "title"})).json()
        second = (
            await client.get(
                "/posts", params={"limit": 2, "sort": "title", "cursor": first["next_cursor"]}
            )
        ).json()
        third = (
            await client.get(
                "/posts", params={"limit": 2, "sort": "title", "cursor": second["next_cursor"]}
            )
        ).json()
        back = (
            await client.get(
                "/posts",
                params={"limit": 2, "sort": "title", "before": second["previous_cursor"]},
            )
        ).json()
        assert [p["slug"] for p in first["items"]] == ["post-0", "post-1"]
        assert [p["slug"] for p in second["items"]] == ["post-2", "post-3"]
        assert [p["slug"] for p in third["items"]] == ["post-4"]
        assert (third["has_next"], third["next_cursor"]) == (False, None)
        assert back["items"] == first["items"]
        newest = (await client.get("/posts", params={"limit": 1})).json()
        assert newest["items"][0]["slug"] == "post-4"  # default order: newest first

        by_author = await client.get("/posts", params={"author.username": "ada", "limit": 10})
        assert len(by_author.json()["items"]) == 5
        tampered = await client.get("/posts", params={"cursor": first["next_cursor"] + "x"})
        assert tampered.status_code == 422
        assert tampered.json()["detail"][0]["loc"] == ["query", "cursor"]

    async def test_draft_needs_an_author(self, client):
        """A draft for a missing author is a 404 and creates nothing."""
        response = await client.post(
            "/posts", json={"author_id": 4242, "slug": "orphan", "title": "Orphan"}
        )
        assert response.status_code == 404
        assert response.json()["detail"]["model"] == "User"

    async def test_slug_conflict(self, client):
        """A taken slug is a 409."""
        ada = await _user(client, "ada")
        await _post(client, ada["id"], "hello")
        response = await client.post(
            "/posts", json={"author_id": ada["id"], "slug": "hello", "title": "Again"}
        )
        assert response.status_code == 409

    async def test_update_checks_the_version(self, client):
        """An update made from a stale version is a 409; a current one succeeds."""
        ada = await _user(client, "ada")
        post = await _post(client, ada["id"], "hello")
        ok = await client.patch(f"/posts/{post['id']}", json={"version": 1, "title": "Hi"})
        stale = await client.patch(f"/posts/{post['id']}", json={"version": 1, "title": "Yo"})
        assert (ok.status_code, ok.json()["version"], ok.json()["title"]) == (200, 2, "Hi")
        assert stale.status_code == 409
        assert stale.json()["error"] == "concurrency_conflict"
        assert stale.json()["detail"]["current_version"] == 2

    async def test_publish_touches_two_repositories(self, client):
        """Publishing marks the post and counts it for its author, in one transaction."""
        ada = await _user(client, "ada")
        post = await _post(client, ada["id"], "hello")
        published = await client.post(f"/posts/{post['id']}/publish", headers={"X-User": "ed"})
        again = await client.post(f"/posts/{post['id']}/publish")
        author = (await client.get(f"/users/{ada['id']}")).json()
        assert published.json()["status"] == "published"
        assert published.json()["published_at"] is not None
        assert published.json()["updated_by"] == "ed"
        assert again.json()["version"] == published.json()["version"]
        assert (author["post_count"], author["updated_by"]) == (1, "ed")

    async def test_failed_second_step_rolls_back_the_first(self, client, blog_engine):
        """When the author is gone, publishing fails and the post stays a draft."""
        ada = await _user(client, "ada")
        post = await _post(client, ada["id"], "hello")
        await client.delete(f"/users/{ada['id']}")
        response = await client.post(f"/posts/{post['id']}/publish")
        assert response.status_code == 404
        assert response.json()["detail"]["model"] == "User"
        after = (await client.get(f"/posts/{post['id']}")).json()
        assert (after["status"], after["version"], after["published_at"]) == ("draft", 1, None)
        async with blog_engine.connect() as conn:
            count = await conn.scalar(select(User.post_count).where(User.id == ada["id"]))
        assert count == 0

    async def test_delete(self, client):
        """A post is deleted for good; deleting it again is a 404."""
        ada = await _user(client, "ada")
        post = await _post(client, ada["id"], "hello")
        assert (await client.delete(f"/posts/{post['id']}")).status_code == 204
        assert (await client.get(f"/posts/{post['id']}")).status_code == 404
        assert (await client.delete(f"/posts/{post['id']}")).status_code == 404


class TestReminders:
    async def test_scoped_to_the_tenant(self, client):
        """Each team sees and changes only its own reminders; no team is a 403."""
        acme = {"X-Tenant": "acme", "X-User": "wile"}
        created = await client.post("/reminders", json={"text": "Buy rockets"}, headers=acme)
        reminder = created.json()
        assert (reminder["tenant_id"], reminder["created_by"]) == ("acme", "wile")

        globex = {"X-Tenant": "globex"}
        assert (await client.get(f"/reminders/{reminder['id']}", headers=globex)).status_code == 404
        assert (
            await client.post(f"/reminders/{reminder['id']}/done", headers=globex)
        ).status_code == 404
        assert (
            await client.delete(f"/reminders/{reminder['id']}", headers=globex)
        ).status_code == 404
        assert (await client.get("/reminders", headers=globex)).json()["total"] == 0

        done = await client.post(f"/reminders/{reminder['id']}/done", headers=acme)
        assert done.json()["done"] is True
        listed = await client.get("/reminders", params={"done": "true"}, headers=acme)
        assert [r["text"] for r in listed.json()["items"]] == ["Buy rockets"]

        missing = await client.get("/reminders")
        assert missing.status_code == 403
        assert missing.json()["error"] == "tenant_required"
        assert (
            await client.delete(f"/reminders/{reminder['id']}", headers=acme)
        ).status_code == 204

    async def test_concurrent_teams_stay_apart(self, client, blog_engine):
        """Concurrent requests of two teams never read or stamp each other's rows."""
        teams = ["acme", "globex"] * 5
        created = await asyncio.gather(
            *(
                client.post(
                    "/reminders",
                    json={"text": f"{team} {i}"},
                    headers={"X-Tenant": team, "X-User": f"{team}-bot"},
                )
                for i, team in enumerate(teams)
            )
        )
        listed = await asyncio.gather(
            *(
                client.get("/reminders", params={"limit": 50}, headers={"X-Tenant": team})
                for team in teams
            )
        )
        for team, response in zip(teams, created, strict=True):
            assert response.status_code == 201
            body = response.json()
            assert (body["tenant_id"], body["created_by"]) == (team, f"{team}-bot")
        for team, response in zip(teams, listed, strict=True):
            texts = [r["text"] for r in response.json()["items"]]
            assert len(texts) == 5
            assert all(text.startswith(f"{team} ") for text in texts)
        async with blog_engine.connect() as conn:  # Core: no tenant scoping
            total = await conn.scalar(select(func.count()).select_from(Reminder))
        assert total == 10


class TestService:
    async def test_openapi_documents_the_query_parameters(self, client):
        """The schema lists pagination, sort and filter parameters."""
        schema = (await client.get("/openapi.json")).json()

        def names(path: str) -> set[str]:
            return {p["name"] for p in schema["paths"][path]["get"]["parameters"]}

        assert {"limit", "offset", "sort", "filters", "x-user"} <= names("/users")
        assert {"limit", "cursor", "before", "sort", "filters"} <= names("/posts")
        assert {"limit", "offset", "sort", "x-tenant"} <= names("/reminders")
        limit = next(
            p for p in schema["paths"]["/users"]["get"]["parameters"] if p["name"] == "limit"
        )
        assert limit["schema"]["maximum"] == 50
        page = schema["paths"]["/users"]["get"]["responses"]["200"]["content"]["application/json"]
        assert page["schema"]["$ref"].startswith("#/components/schemas/PageModel")

    async def test_connections_return_to_the_pool(self, client, blog_engine):
        """After many requests, failing ones included, no connection is left checked out."""
        ada = await _user(client, "ada")
        post = await _post(client, ada["id"], "hello")
        statuses = set()
        for i in range(8):
            responses = await asyncio.gather(
                client.get(f"/users/{ada['id']}"),
                client.get("/users/999999"),
                client.post("/users", json={"email": "ada@example.org", "username": f"a{i}"}),
                client.get("/users", params={"nope": "1"}),
                client.get("/reminders"),
                client.patch(f"/posts/{post['id']}", json={"version": 99}),
                client.get("/posts", params={"cursor": "garbage"}),
            )
            statuses |= {r.status_code for r in responses}
        assert statuses == {200, 404, 409, 422, 403}
        assert blog_engine.pool.checkedout() == 0


async def test_lifespan_creates_the_tables(tmp_path):
    """At start-up the app creates its tables."""
    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'blog.db'}")
    app = create_app(engine, create_tables=True)
    async with app.router.lifespan_context(app):
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        assert {"blog_users", "blog_posts", "blog_reminders"} <= set(tables)
        assert {Post.__tablename__, Reminder.__tablename__} <= set(tables)
    await engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_runs_under_uvicorn(tmp_path):
    """``uvicorn examples.blog.app.main:app`` serves the API on a fresh SQLite file."""
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'blog.db'}"}
    command = [sys.executable, "-m", "uvicorn", "examples.blog.app.main:app", "--port", str(port)]
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.post(
                    f"{base}/users", json={"email": "ada@example.org", "username": "ada"}
                )
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        assert response.status_code == 201
        assert httpx.get(f"{base}/users").json()["total"] == 1
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert b"Application startup complete" in output
