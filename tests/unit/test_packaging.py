"""The distributions install as the README says, and the quickstart runs from each.

The wheel and the sdist are built from this tree with ``python -m build`` (the sdist first,
then the wheel from the unpacked sdist, so the sdist is proven complete enough to build).
One fresh virtual environment installs each in turn with the ``sqlite`` extra, from PyPI
like a user's would, and runs ``examples/quickstart.py`` outside the source tree.
"""

from __future__ import annotations

import email.parser
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.py"
REPOSITORY = "https://github.com/sqla-repo/sqla_repo"

# Files CONTRIBUTING.md and DEVELOPERS.md tell a contributor to use, which an sdist must hold.
SDIST_FILES = (
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "CHANGELOG.md",
    "CONTRIBUTING.md",
    "DEVELOPERS.md",
    "noxfile.py",
    "mkdocs.yml",
    ".ci/run",
    "src/sqla_repo/__init__.py",
    "src/sqla_repo/py.typed",
    "tests/conftest.py",
    "tests/unit/test_docs.py",
    "docs/index.md",
    "docs/examples/five_minutes.py",
    "examples/quickstart.py",
    "benchmarks/run.py",
)


def _run(*args: str | Path, cwd: Path | None = None, timeout: float = 300) -> str:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(  # noqa: S603 - runs this interpreter and the test's own venv
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built from this tree."""
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    return out


@pytest.fixture(scope="module")
def sdist(dist: Path) -> Path:
    (path,) = dist.glob("sqla_repo-*.tar.gz")
    return path


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    (path,) = dist.glob("sqla_repo-*.whl")
    return path


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment, without this project's packages."""
    venv = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", venv)
    return venv / ("Scripts" if sys.platform == "win32" else "bin") / "python"


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(archive.read(name).decode("utf-8"))


def test_sdist_holds_what_contributors_need(sdist: Path):
    """The sdist holds the files CONTRIBUTING.md and DEVELOPERS.md refer to."""
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    missing = [name for name in SDIST_FILES if name not in names]
    assert missing == []
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_wheel_metadata(wheel: Path):
    """The metadata links source, issues and documentation, and states the licence once."""
    metadata = _metadata(wheel)
    urls = dict(value.split(", ", 1) for value in metadata.get_all("Project-URL") or [])
    assert urls["Source"] == REPOSITORY
    assert urls["Issues"] == f"{REPOSITORY}/issues"
    assert urls["Documentation"].startswith("https://")
    assert metadata["License-Expression"] == "MIT"
    classifiers = metadata.get_all("Classifier") or []
    assert not [c for c in classifiers if c.startswith("License ::")]


def test_readme_links_work_on_pypi(wheel: Path):
    """Every link in the long description is absolute, so it works on the PyPI project page."""
    description = _metadata(wheel).get_payload()
    assert isinstance(description, str)
    assert "# sqla_repo" in description
    targets = [
        target
        for line in description.splitlines()
        for target in _link_targets(line)
        if not target.startswith(("https://", "#"))
    ]
    assert targets == []


def _link_targets(line: str) -> list[str]:
    targets, start = [], 0
    while (found := line.find("](", start)) != -1:
        end = line.find(")", found + 2)
        targets.append(line[found + 2 : end])
        start = end
    return targets


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_quickstart_runs_from_installed_distribution(
    kind: str, request: pytest.FixtureRequest, venv_python: Path, tmp_path: Path
):
    """The distribution installs with the sqlite extra and runs the README's quickstart."""
    archive: Path = request.getfixturevalue(kind)
    _run(venv_python, "-m", "pip", "uninstall", "--yes", "--quiet", "sqla_repo")
    _run(venv_python, "-m", "pip", "install", "--quiet", f"sqla_repo[sqlite] @ {archive.as_uri()}")
    # Run from an empty directory so that nothing of the source tree can be imported.
    where = _run(venv_python, "-c", "import sqla_repo; print(sqla_repo.__file__)", cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(venv_python.parent.parent)
    output = _run(venv_python, QUICKSTART, cwd=tmp_path, timeout=120)
    assert output.startswith("Database: sqlite\n")
    assert "== Mixins" in output
