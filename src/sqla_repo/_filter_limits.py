"""The limits on untrusted filter and sort input, and the error that refuses input.

``sqla_repo.filters`` publishes the limits; the error names the field and the operator
(each echoed back shortened) and a stable reason code, never the value.
"""

from __future__ import annotations

from typing import Any, Final

from sqla_repo.exceptions import InvalidFilterError

__all__ = ["MAX_CONDITIONS", "MAX_SORT_KEYS", "MAX_VALUE_LENGTH", "echo", "input_error"]

MAX_VALUE_LENGTH: Final = 10_000
"""The longest string value accepted, in characters."""

MAX_CONDITIONS: Final = 100
"""The most conditions one filter input may hold."""

MAX_SORT_KEYS: Final = 16
"""The most sort fields one ``order_by`` input may hold."""

_ECHO = 64  # longest name echoed back in an error


def echo(name: object) -> str:
    """Return *name* as an error may show it: shortened, or its type's name if not text."""
    text = name if isinstance(name, str) else type(name).__name__
    return text if len(text) <= _ECHO else text[: _ECHO - 3] + "..."


def input_error(
    model: type[Any], *, message: str, reason: str, field: object = None, operator: object = None
) -> InvalidFilterError:
    """Return the error refusing filter or sort input; ``detail`` names no value."""
    detail = {
        "field": None if field is None else echo(field),
        "operator": None if operator is None else echo(operator),
        "reason": reason,
    }
    return InvalidFilterError(message, model=model, detail=detail)
