"""The session hooks are installed whatever order a program imports and declares things in.

Each import order runs in a fresh interpreter, where the hooks start uninstalled: the
mixins only enable them in ``sqla_repo._registry``, and ``sqla_repo._hooks`` installs the
listeners when both it is imported and a hook is enabled, whichever comes first.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import ModuleType

import pytest

import sqla_repo

REGISTRY = Path(sqla_repo.__file__).parent / "_registry.py"

MODEL = """
class Base(DeclarativeBase):
    pass


class Note(IntegerPKMixin, TenantMixin, SoftDeleteMixin, Base):
    __tablename__ = "note"

    title: Mapped[str] = mapped_column(String(50))
"""

# How the program reaches the mixins and declares its model, before anything else runs.
PRELUDES = {
    "package first": """
        import sqla_repo
        from sqlalchemy import String
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

        IntegerPKMixin = sqla_repo.IntegerPKMixin
        SoftDeleteMixin = sqla_repo.SoftDeleteMixin
        TenantMixin = sqla_repo.TenantMixin
    """,
    "mixins package first": """
        import sqla_repo.mixins
        from sqlalchemy import String
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

        IntegerPKMixin = sqla_repo.mixins.IntegerPKMixin
        SoftDeleteMixin = sqla_repo.mixins.SoftDeleteMixin
        TenantMixin = sqla_repo.mixins.TenantMixin
    """,
    "mixin modules directly": """
        from sqla_repo.mixins.tenant import TenantMixin
        from sqla_repo.mixins.soft_delete import SoftDeleteMixin
        from sqla_repo.mixins.pk import IntegerPKMixin
        from sqlalchemy import String
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
    """,
    "hooks module first": """
        import sqla_repo._hooks
        from sqla_repo.mixins.tenant import TenantMixin
        from sqla_repo.mixins.soft_delete import SoftDeleteMixin
        from sqla_repo.mixins.pk import IntegerPKMixin
        from sqlalchemy import String
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
    """,
    "install() first": """
        from sqla_repo.context import install

        install()
        from sqla_repo.mixins import IntegerPKMixin, SoftDeleteMixin, TenantMixin
        from sqlalchemy import String
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
    """,
}

# Runs after the prelude and the model: only now are the session, the context and the
# exceptions imported.
CHECK = """
import datetime as dt

from sqlalchemy import create_engine, event, select
from sqlalchemy.orm import Session

from sqla_repo import _hooks
from sqla_repo.context import all_tenants, tenant
from sqla_repo.exceptions import TenantRequiredError

engine = create_engine("sqlite://")
Base.metadata.create_all(engine)
statements = []
event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
with Session(engine) as session:
    assert list(session.dispatch.do_orm_execute) == [_hooks._on_execute]
    assert list(session.dispatch.before_flush) == [_hooks._on_before_flush]
    try:
        session.execute(select(Note))
    except TenantRequiredError:
        pass
    else:
        raise AssertionError("a select with no tenant set ran")
    deleted = dt.datetime.now(dt.timezone.utc)
    with all_tenants():
        session.add_all(
            [
                Note(id=1, tenant_id="a", title="a live"),
                Note(id=2, tenant_id="a", title="a deleted", deleted_at=deleted),
                Note(id=3, tenant_id="b", title="b live"),
            ]
        )
        session.commit()
    statements.clear()
    with tenant("a"):
        titles = session.scalars(select(Note.title).order_by(Note.id)).all()
    assert titles == ["a live"], titles
    (sql,) = statements
    assert "note.deleted_at IS NULL" in sql, sql
    assert "note.tenant_id = ?" in sql, sql
print("scoped")
"""


def _run(code: str) -> str:
    completed = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


@pytest.mark.parametrize("order", list(PRELUDES))
def test_import_order(order: str) -> None:
    """A SoftDelete and Tenant model is scoped on its first statement, whatever the order."""
    code = textwrap.dedent(PRELUDES[order]) + MODEL + CHECK
    assert _run(code).split() == ["scoped"]


def test_listeners_wait_for_a_mixin_model() -> None:
    """Importing the package installs nothing; the first mixin model installs each listener once."""
    code = textwrap.dedent(
        """
        import sqla_repo
        from sqlalchemy.orm import DeclarativeBase, Session
        from sqla_repo import _hooks, context
        from sqla_repo.mixins import IntegerPKMixin, SoftDeleteMixin, TenantMixin

        def installed():
            return list(Session().dispatch.do_orm_execute).count(_hooks._on_execute)

        class Base(DeclarativeBase):
            pass

        class Plain(IntegerPKMixin, Base):
            __tablename__ = "plain"

        print(installed())

        class Deleted(IntegerPKMixin, SoftDeleteMixin, Base):
            __tablename__ = "deleted"

        class Owned(IntegerPKMixin, TenantMixin, Base):
            __tablename__ = "owned"

        context.install()
        context.install(Session)
        print(installed())
        """
    )
    assert _run(code).split() == ["0", "1"]


def test_concurrent_declarations_install_once() -> None:
    """Threads declaring mixin models and calling install() at once install the listeners once."""
    code = textwrap.dedent(
        """
        import threading

        import sqla_repo
        from sqlalchemy.orm import DeclarativeBase, Session
        from sqla_repo import _hooks, context
        from sqla_repo.mixins import IntegerPKMixin, SoftDeleteMixin, TenantMixin

        class Base(DeclarativeBase):
            pass

        barrier = threading.Barrier(8)

        def declare(number):
            barrier.wait()
            if number % 3 == 0:
                context.install()
                return
            mixin = TenantMixin if number % 3 == 1 else SoftDeleteMixin
            type(f"M{number}", (IntegerPKMixin, mixin, Base), {"__tablename__": f"m{number}"})

        threads = [threading.Thread(target=declare, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        session = Session()
        print(list(session.dispatch.do_orm_execute).count(_hooks._on_execute))
        print(list(session.dispatch.before_flush).count(_hooks._on_before_flush))
        """
    )
    assert _run(code).split() == ["1", "1"]


def _fresh_registry() -> ModuleType:
    """Load a private copy of ``_registry.py``, with state of its own."""
    spec = importlib.util.spec_from_file_location("registry_under_test", REGISTRY)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestRegistry:
    def test_imports_nothing_from_the_package(self) -> None:
        """The registry is a leaf: it imports nothing from sqla_repo."""
        tree = ast.parse(REGISTRY.read_text(encoding="utf-8"))
        imported = [
            alias.name if isinstance(node, ast.Import) else node.module or "."
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        ]
        assert not [name for name in imported if name.startswith(("sqla_repo", "."))]

    def test_enabled_before_the_installer(self) -> None:
        """Hooks enabled before the installer is set are installed when it is set."""
        registry = _fresh_registry()
        calls: list[str] = []
        registry.enable(tenant=True)
        assert registry.ENABLED == {"soft_delete": False, "tenant": True}
        assert calls == []
        registry.set_installer(lambda: calls.append("installed"))
        registry.enable(soft_delete=True)
        assert calls == ["installed"]
        assert registry.ENABLED == {"soft_delete": True, "tenant": True}

    def test_installer_before_enabled(self) -> None:
        """An installer set first runs only when a hook is enabled, and only once."""
        registry = _fresh_registry()
        calls: list[str] = []
        registry.set_installer(lambda: calls.append("installed"))
        assert calls == []
        registry.enable()
        registry.enable(soft_delete=True)
        assert calls == ["installed"]
        assert registry.ENABLED == {"soft_delete": True, "tenant": False}

    def test_concurrent_enable(self) -> None:
        """Many threads enabling at once run the installer once."""
        registry = _fresh_registry()
        calls: list[str] = []
        barrier = threading.Barrier(16)

        def installer() -> None:
            calls.append("installed")

        def enable(number: int) -> None:
            barrier.wait()
            if number == 0:
                registry.set_installer(installer)
            registry.enable(tenant=number % 2 == 0, soft_delete=number % 2 == 1)

        threads = [threading.Thread(target=enable, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert calls == ["installed"]
        assert registry.ENABLED == {"soft_delete": True, "tenant": True}
