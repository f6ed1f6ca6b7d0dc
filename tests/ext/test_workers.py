"""Keyset cursors across application workers: the blog example under ``uvicorn --workers 2``.

Every request opens a new connection, so the two worker processes take turns; each page's
cursor is often made by one worker and read by the other. With the secret shared through
``SQLA_REPO_CURSOR_SECRET`` every page is served; paging ends at the last row.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the example is imported as examples.blog.app
    sys.path.append(str(ROOT))

from examples.blog.app.models import Base, Post, User  # noqa: E402

POSTS = 60
PAGE = 7
# How long to keep asking for a page until the other worker answers. The kernel may hand
# a burst of connections to one process, and under load uvicorn's supervisor may be
# restarting the other one: wait for it rather than counting attempts.
OTHER_WORKER_SECONDS = 20.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _seed(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            await conn.execute(insert(User), [{"email": "w@example.org", "username": "w"}])
            user_id = (await conn.exec_driver_sql("SELECT id FROM blog_users")).scalar_one()
            await conn.execute(
                insert(Post),
                [
                    {"author_id": user_id, "slug": f"post-{i}", "title": f"Post {i}", "version": 1}
                    for i in range(POSTS)
                ],
            )
    finally:
        await engine.dispose()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'blog.db'}"
    asyncio.run(_seed(url))
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "SQLA_REPO_CURSOR_SECRET": "a secret every worker shares",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "ext")]),
    }
    log = tmp_path / "uvicorn.log"
    output = log.open("wb")
    process = subprocess.Popen(  # noqa: S603 - fixed arguments
        [
            sys.executable,
            "-m",
            "uvicorn",
            "workers_app:app",
            "--workers",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(base, process, log)
        yield base, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        output.close()


def _wait_until_serving(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    workers: set[str] = set()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"uvicorn exited with {process.returncode}:\n{log.read_text()}")
        try:
            response = httpx.get(f"{base}/posts?limit=1", timeout=2)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        workers.add(response.headers.get("X-Worker", ""))
        if len(workers) == 2:
            return
    pytest.fail("uvicorn did not start two answering workers within 30 s")


def test_cursors_made_by_one_worker_are_accepted_by_the_other(server: tuple[str, Path]) -> None:
    base, log = server
    seen: list[int] = []
    makers: list[str] = []
    crossings = 0
    cursor: str | None = None
    with httpx.Client(base_url=base, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        for _ in range(POSTS):  # a bound: the loop must end
            params: dict[str, str | int] = {"limit": PAGE}
            if cursor is not None:
                params["cursor"] = cursor
            # Reading a page changes nothing: ask again (a new connection each time)
            # until the other worker answers, so that its cursor crosses workers.
            deadline = time.monotonic() + OTHER_WORKER_SECONDS
            while True:
                response = client.get("/posts", params=params)
                assert response.status_code == 200, response.text
                worker = response.headers["X-Worker"]
                if not makers or makers[-1] != worker or time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            if makers and makers[-1] != worker:
                crossings += 1
            makers.append(worker)
            page = response.json()
            seen += [item["id"] for item in page["items"]]
            if not page["has_next"]:
                break
            cursor = page["next_cursor"]
    assert sorted(seen) == list(range(1, POSTS + 1))
    assert len(seen) == POSTS
    # Cursors did cross between the workers: most pages were read by the other one.
    assert len(set(makers)) >= 2, log.read_text()
    assert crossings >= len(makers) // 2, (makers, log.read_text())
