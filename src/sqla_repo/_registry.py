"""Which session hooks are enabled, and the function that installs their listeners.

Declaring a model with ``SoftDeleteMixin`` or ``TenantMixin``, or calling
``context.install()``, enables the hooks here; ``sqla_repo._hooks`` hands over the
function that registers the session listeners when it is imported. The listeners are
registered once, as soon as both have happened, in whichever order: a model may be
declared before the hooks module is imported, and the hooks module may be imported long
before any model is declared (until then the listeners cost nothing).

This module imports nothing from the package, so the mixins, the context and the hooks
can all depend on it without an import cycle.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ENABLED", "enable", "set_installer"]

ENABLED: Final[dict[str, bool]] = {"soft_delete": False, "tenant": False}
"""The hooks enabled so far, by mixin; the listeners read it on every statement."""


class _Installation:
    """Whether the listeners are wanted, who installs them, and whether that happened."""

    requested = False
    installer: Callable[[], None] | None = None
    installed = False


_lock = threading.Lock()
_installation = _Installation()


def enable(*, soft_delete: bool = False, tenant: bool = False) -> None:
    """Enable the hooks for the given mixins, installing the listeners once.

    Called with no argument (by ``context.install()``), it only asks for the listeners.
    """
    with _lock:
        ENABLED["soft_delete"] |= soft_delete
        ENABLED["tenant"] |= tenant
        _installation.requested = True
        _install()


def set_installer(installer: Callable[[], None]) -> None:
    """Set the function that registers the listeners; run it if they are already wanted."""
    with _lock:
        _installation.installer = installer
        if _installation.requested:
            _install()


def _install() -> None:
    """Run the installer once, if there is one (the caller holds the lock)."""
    if _installation.installed or _installation.installer is None:
        return
    _installation.installer()
    _installation.installed = True
