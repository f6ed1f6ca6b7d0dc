"""The names ``sqla_repo`` exports, and what importing it costs."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import subprocess
import sys
from types import ModuleType

import pytest

import sqla_repo
from sqla_repo import base, context, exceptions, mixins, types

# Modules whose every public name is part of the core API.
FULLY_EXPORTED = [base, exceptions, mixins]
# Names of other modules exported at the top level as well.
ALSO_EXPORTED = {
    types: {"NaiveDatetimeError", "UTCDateTime"},
    context: {
        "actor",
        "all_tenants",
        "current_actor",
        "current_tenant",
        "install",
        "set_actor",
        "set_tenant",
        "tenant",
    },
}


def _isort_key(name: str) -> tuple[int, str]:
    """Ruff's RUF022 isort-style order: CONSTANTS, then Classes, then everything else."""
    if name.upper() == name and name.lower() != name:
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def _public_modules() -> list[ModuleType]:
    """Every public submodule of the package, optional extras excluded."""
    found = []
    for info in pkgutil.walk_packages(sqla_repo.__path__, prefix="sqla_repo."):
        parts = info.name.split(".")
        if any(part.startswith("_") for part in parts) or parts[1] == "ext":
            continue
        found.append(importlib.import_module(info.name))
    return found


class TestAll:
    def test_sorted(self) -> None:
        """``__all__`` is in isort style: constants, then classes, then the rest, each A-Z."""
        assert sqla_repo.__all__ == sorted(sqla_repo.__all__, key=_isort_key)

    def test_no_duplicates(self) -> None:
        """No name is listed twice."""
        assert len(sqla_repo.__all__) == len(set(sqla_repo.__all__))

    @pytest.mark.parametrize("name", sqla_repo.__all__)
    def test_resolves(self, name: str) -> None:
        """Every exported name is an attribute of the package."""
        assert getattr(sqla_repo, name) is not None

    def test_star_import(self) -> None:
        """``from sqla_repo import *`` binds exactly ``__all__``."""
        namespace: dict[str, object] = {}
        exec("from sqla_repo import *", namespace)  # noqa: S102 - a fixed statement
        assert set(namespace) - {"__builtins__"} == set(sqla_repo.__all__)

    @pytest.mark.parametrize("module", FULLY_EXPORTED, ids=lambda module: module.__name__)
    def test_core_modules_fully_exported(self, module: ModuleType) -> None:
        """Every public name of the base, exceptions and mixins modules is exported."""
        missing = set(module.__all__) - set(sqla_repo.__all__)
        assert not missing
        for name in module.__all__:
            assert getattr(sqla_repo, name) is getattr(module, name)

    @pytest.mark.parametrize("module", list(ALSO_EXPORTED), ids=lambda module: module.__name__)
    def test_core_names_of_topic_modules(self, module: ModuleType) -> None:
        """The core names of the types and context modules are exported, the same objects."""
        names = ALSO_EXPORTED[module]
        assert names <= set(module.__all__)
        assert names <= set(sqla_repo.__all__)
        for name in names:
            assert getattr(sqla_repo, name) is getattr(module, name)

    def test_every_exception_exported(self) -> None:
        """Every exception class a public module defines is exported from the package."""
        for module in _public_modules():
            for name, obj in vars(module).items():
                if (
                    inspect.isclass(obj)
                    and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__
                    and not name.startswith("_")
                ):
                    assert name in sqla_repo.__all__, f"{module.__name__}.{name}"
                    assert getattr(sqla_repo, name) is obj

    def test_submodule_all_resolves(self) -> None:
        """Every name a public module lists in ``__all__`` exists in it."""
        for module in _public_modules():
            for name in getattr(module, "__all__", ()):
                assert hasattr(module, name), f"{module.__name__}.{name}"

    def test_all_columns(self) -> None:
        """ALL_COLUMNS is exported, the same object as in sqla_repo.filters, with a plain repr."""
        from sqla_repo import filters  # noqa: PLC0415 - the module under test

        assert sqla_repo.ALL_COLUMNS is filters.ALL_COLUMNS
        assert repr(sqla_repo.ALL_COLUMNS) == str(sqla_repo.ALL_COLUMNS) == "ALL_COLUMNS"
        assert isinstance(sqla_repo.ALL_COLUMNS, filters.AllColumns)
        assert list(filters.AllColumns) == [sqla_repo.ALL_COLUMNS]

    def test_uuid7_and_version(self) -> None:
        """uuid7 and ``__version__`` are exported."""
        assert callable(sqla_repo.uuid7)
        assert isinstance(sqla_repo.__version__, str)
        assert sqla_repo.__version__


class TestImportCost:
    def test_no_optional_dependencies(self) -> None:
        """``import sqla_repo`` imports neither FastAPI nor Pydantic (nor Starlette)."""
        code = (
            "import json, sys\n"
            "import sqla_repo\n"
            "heavy = {'fastapi', 'pydantic', 'pydantic_core', 'starlette'}\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
        )
        completed = subprocess.run(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert json.loads(completed.stdout) == []

    def test_no_driver_imported(self) -> None:
        """``import sqla_repo`` imports no database driver: they are extras."""
        code = (
            "import json, sys\n"
            "import sqla_repo\n"
            "drivers = {'asyncpg', 'psycopg', 'asyncmy', 'aiomysql', 'aiosqlite'}\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in drivers)))\n"
        )
        completed = subprocess.run(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert json.loads(completed.stdout) == []
