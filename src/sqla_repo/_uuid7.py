"""UUID version 7 (RFC 9562): a 48-bit Unix millisecond timestamp, then randomness.

Values made in one process are strictly increasing, across threads, within one
millisecond and when the wall clock steps back: the RFC's "fixed bit-length dedicated
counter" method (section 6.2, method 1) with a 42-bit counter in ``rand_a`` and the top
of ``rand_b``, seeded randomly each millisecond with its top bit clear so that it cannot
overflow in practice, followed by 32 fresh random bits.

The stdlib's ``uuid.uuid7`` (Python 3.14+) uses the same layout and method but keeps
its state without a lock, so concurrent threads can interleave and break the order
this module promises; this implementation is therefore used on every interpreter.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Final

__all__ = ["uuid7"]

_COUNTER_BITS: Final = 42
_COUNTER_MAX: Final = (1 << _COUNTER_BITS) - 1
_TAIL_BITS: Final = 32

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def _fresh_counter() -> int:
    # 41 random bits: the top bit of the 42-bit counter starts clear (RFC 9562 §6.2).
    return int.from_bytes(os.urandom(6), "big") >> 7


def _reset_after_fork() -> None:
    # A forked child must not continue its parent's sequence (both would draw values
    # from the same counter), nor inherit a lock another thread held at fork time.
    global _lock, _last_ms, _counter  # noqa: PLW0603 - process-wide monotonic state
    _lock = threading.Lock()
    _last_ms = 0
    _counter = 0


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_reset_after_fork)


def _uuid7() -> uuid.UUID:
    global _last_ms, _counter  # noqa: PLW0603 - process-wide monotonic state
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms = now_ms
            _counter = _fresh_counter()
        else:  # same millisecond, or the clock stepped back: keep order
            _counter += 1
            if _counter > _COUNTER_MAX:  # exhausted: borrow the next millisecond
                _last_ms += 1
                _counter = _fresh_counter()
        ms, counter = _last_ms, _counter
    tail = int.from_bytes(os.urandom(4), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= (counter >> 30) << 64  # rand_a: top 12 bits of the counter
    value |= 0b10 << 62  # variant
    value |= (counter & 0x3FFF_FFFF) << _TAIL_BITS  # 30 more counter bits
    value |= tail
    return uuid.UUID(int=value)


def uuid7() -> uuid.UUID:
    """Return a new time-ordered UUID version 7, greater than every earlier one.

    Example:
        ```python
        from sqla_repo import uuid7

        first, second = uuid7(), uuid7()
        assert first.version == 7 and first < second
        ```
    """
    return _uuid7()
