"""The pytest plugin, run in a pytest of its own on the sample project in ``sample/``."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

import backends
from sqla_repo.testing import _databases

SAMPLE = Path(__file__).parent / "sample"
SAMPLE_TESTS = 11


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "sqla_repo.testing",
            "-p",
            "no:cacheprovider",
            *args,
        ],
        cwd=SAMPLE,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def _outcomes(output: str) -> dict[str, str]:
    """``test name[id]`` -> ``PASSED``/``FAILED``/... from a ``-v`` run."""
    found = re.findall(
        r"^test_sample\.py::(\S+) (PASSED|FAILED|ERROR|SKIPPED)", output, re.MULTILINE
    )
    return dict(found)


def _server_url(name: str) -> str:
    """The test server's URL without a driver: the plugin picks the async default."""
    url = make_url(backends.env_url(name))
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=False)


def test_three_backends_isolated_and_named():
    """Every sample test passes once per backend, ids naming it; commits do not leak."""
    result = _run(
        "-v",
        "--sqla-url",
        "sqlite://",
        "--sqla-url",
        _server_url("postgresql"),
        "--sqla-url",
        _server_url("mariadb"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    outcomes = _outcomes(result.stdout)
    assert len(outcomes) == 3 * SAMPLE_TESTS
    assert set(outcomes.values()) == {"PASSED"}
    ids = {name.partition("[")[2].rstrip("]") for name in outcomes}
    assert ids == {"sqlite", "postgresql", "mariadb"}
    # The second test asserts the first one's commit is gone, on each backend.
    for backend in ids:
        assert f"test_previous_commit_is_gone[{backend}]" in outcomes
    assert "sqla_repo: sqlite (" in result.stdout


def test_databases_are_dropped_at_the_end():
    """The databases the run made on the servers are gone after it."""
    result = _run(
        "-v", "--sqla-url", _server_url("postgresql"), "--sqla-url", _server_url("mariadb")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    made = re.findall(r"/(sqla_test_\d+_[0-9a-f]+)", result.stdout)
    assert len(made) == 2

    async def names(url: str, query: str) -> set[str]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return set((await conn.execute(text(query))).scalars())
        finally:
            await engine.dispose()

    left = asyncio.run(
        names(backends.env_url("postgresql"), "SELECT datname FROM pg_database")
    ) | asyncio.run(names(backends.env_url("mariadb"), "SHOW DATABASES"))
    assert not set(made) & left


def test_default_is_sqlite_without_parametrisation():
    """With no URL configured the tests run once, on SQLite, with plain ids."""
    result = _run("-v", "-o", "asyncio_default_test_loop_scope=function")
    assert result.returncode == 0, result.stdout + result.stderr
    outcomes = _outcomes(result.stdout)
    assert len(outcomes) == SAMPLE_TESTS
    assert all("[" not in name for name in outcomes)


def test_duplicate_backends_get_distinct_ids():
    """Two URLs of one backend are told apart by driver."""
    pg = make_url(backends.env_url("postgresql"))
    psycopg = pg.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    asyncpg = pg.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    result = _run("-v", "-k", "previous_commit", "--sqla-url", asyncpg, "--sqla-url", psycopg)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(_outcomes(result.stdout)) == {
        "test_previous_commit_is_gone[postgresql-asyncpg]",
        "test_previous_commit_is_gone[postgresql-psycopg]",
    }


def test_unreachable_server_fails_the_run():
    """A server that cannot be reached stops the run with a usage error naming it."""
    result = _run(
        "-q", "--sqla-url", "sqlite://", "--sqla-url", "postgresql://postgres:secret@127.0.0.1:1/x"
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert "127.0.0.1:1/x" in result.stderr
    assert "unreachable" in result.stderr
    assert "secret" not in result.stderr + result.stdout
    assert "passed" not in result.stdout


def test_ini_urls(tmp_path):
    """``sqla_urls`` in the ini file is read when no --sqla-url is given."""
    ini = (SAMPLE / "pytest.ini").read_text()
    config = tmp_path / "pytest.ini"
    config.write_text(ini + "sqla_urls =\n    sqlite://\n    " + _server_url("postgresql") + "\n")
    result = _run("-v", "-c", str(config), "--rootdir", str(SAMPLE), "-k", "previous_commit")
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(_outcomes(result.stdout)) == {
        "test_previous_commit_is_gone[sqlite]",
        "test_previous_commit_is_gone[postgresql]",
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sample_app.models", "is not of the form"),
        ("sample_app.nowhere:Base.metadata", "cannot import 'sample_app.nowhere'"),
        ("sample_app.models:Base.nothing", "no attribute 'nothing'"),
        ("sample_app.models:Base", "not a MetaData"),
    ],
)
def test_bad_metadata_spec(spec, message):
    """A wrong ``sqla_metadata`` is a usage error that says what is wrong."""
    result = _run("-q", "-o", f"sqla_metadata={spec}")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr


def test_not_loaded_by_import():
    """``import sqla_repo`` imports neither the plugin nor pytest."""
    code = (
        "import sys, sqla_repo\n"
        "names = ('pytest', '_pytest', 'sqla_repo.testing')\n"
        "print(sorted(m for m in sys.modules if m.startswith(names)))\n"
    )
    completed = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "[]"


_FAMILY_DRIVERS = {
    "sqlite": ["aiosqlite"],
    "postgresql": ["asyncpg", "psycopg"],
    "mariadb": ["asyncmy", "aiomysql"],
}


@given(
    st.lists(
        st.sampled_from(
            [(family, driver) for family, drivers in _FAMILY_DRIVERS.items() for driver in drivers]
        ),
        min_size=1,
        max_size=8,
    )
)
def test_ids_are_unique_and_name_the_backend(pairs):
    """Ids are unique and start with the backend; a backend that appears once is named alone."""
    databases = []
    for family, driver in pairs:
        dialect = "mysql" if family == "mariadb" else family
        url = make_url(f"{dialect}+{driver}://h/db")
        databases.append(_databases.TestDatabase(family, url, family))
    ids = _databases.ids(databases)
    assert len(set(ids)) == len(ids)
    families = [family for family, _ in pairs]
    for id_, family in zip(ids, families, strict=True):
        assert id_.startswith(family)
        if families.count(family) == 1:
            assert id_ == family


@pytest.mark.parametrize(
    ("given_url", "expected"),
    [
        ("postgresql://u@h/d", "postgresql+asyncpg"),
        ("mysql://u@h/d", "mysql+asyncmy"),
        ("mariadb://u@h/d", "mariadb+asyncmy"),
        ("sqlite://", "sqlite+aiosqlite"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg"),
    ],
)
def test_urls_without_a_driver_get_the_async_one(given_url, expected):
    assert _databases.normalise(given_url).drivername == expected
