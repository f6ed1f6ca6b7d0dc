"""The quickstart runs as the README says, and the core never needs FastAPI."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.py"

# Run the quickstart with FastAPI and pydantic made unimportable: it needs the core only.
WITHOUT_FASTAPI = (
    "import runpy, sys\n"
    "sys.modules['fastapi'] = sys.modules['pydantic'] = None\n"
    f"runpy.run_path({str(QUICKSTART)!r}, run_name='__main__')\n"
)

EXPECTED_LINES = [
    "authors columns: id, email, name, age, created_at, updated_at, created_by, updated_by,",
    "created Ada (id 1) by alice, at ",
    "duplicate email refused: unique_violation, the session is still usable",
    "updated Ada: age 37, updated_by bob",
    "search: ['Grace', 'Alan'], 3 matches in all,",
    "        page 1 of 2, has_next=True",
    "typo refused: Unknown filter field 'emial'.",
    "page 1: ['Ada', 'Alan']",
    "page 2: ['Grace', 'Linus'], has_next=False",
    "soft-deleted: get() -> None, count 3",
    "with include_deleted=True: Ada, deleted_at ",
    "restored: count 4",
    "globex sees: ['Globex budget']",
    "acme sees: ['Acme roadmap']",
    "no tenant set: tenant_required (deny by default)",
]


def _run(code: str, *, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def _check_output(result: subprocess.CompletedProcess[str], dialect: str) -> None:
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Database: {dialect}"
    for expected in EXPECTED_LINES:
        assert any(line.startswith(expected) for line in lines), expected


def test_quickstart_on_sqlite(tmp_path):
    """With no DATABASE_URL the quickstart runs on a SQLite file and prints each step."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    _check_output(_run(WITHOUT_FASTAPI, env=env, cwd=tmp_path), "sqlite")


def test_quickstart_with_database_url(backend, tmp_path):
    """DATABASE_URL runs the quickstart on a server; it drops the tables it created."""
    url = backend.url.render_as_string(hide_password=False)
    env = {**os.environ, "DATABASE_URL": url}
    dialect = {"sqlite": "sqlite", "postgresql": "postgresql", "mariadb": "mysql"}[backend.name]
    _check_output(_run(WITHOUT_FASTAPI, env=env, cwd=tmp_path), dialect)
    check = (
        "import asyncio, sys\n"
        "from sqlalchemy import inspect\n"
        "from sqlalchemy.ext.asyncio import create_async_engine\n"
        "async def main():\n"
        f"    engine = create_async_engine({url!r})\n"
        "    async with engine.connect() as conn:\n"
        "        names = await conn.run_sync(lambda c: inspect(c).get_table_names())\n"
        "    await engine.dispose()\n"
        "    print(sorted(n for n in names if n.startswith('quickstart_')))\n"
        "asyncio.run(main())\n"
    )
    assert _run(check, env=env, cwd=tmp_path).stdout.strip() == "[]"


def test_core_import_does_not_import_fastapi(tmp_path):
    """Importing sqla_repo loads neither FastAPI nor pydantic."""
    code = (
        "import sys\n"
        "import sqla_repo, sqla_repo.ext\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in {'fastapi', 'pydantic'})\n"
        "print(loaded)\n"
    )
    result = _run(code, env=dict(os.environ), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
