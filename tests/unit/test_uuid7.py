"""UUID version 7 generation (RFC 9562)."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from itertools import pairwise

import pytest

import sqla_repo
from sqla_repo import _uuid7 as module
from sqla_repo._uuid7 import _uuid7, uuid7

GENERATORS = [pytest.param(uuid7, id="uuid7"), pytest.param(_uuid7, id="_uuid7")]


def _ms(value: uuid.UUID) -> int:
    return value.int >> 80


def _counter(value: uuid.UUID) -> int:
    rand_a = (value.int >> 64) & 0xFFF
    counter_low = (value.int >> 32) & 0x3FFF_FFFF
    return (rand_a << 30) | counter_low


@pytest.fixture
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start from an empty sequence; the real state is restored after the test."""
    monkeypatch.setattr(module, "_last_ms", 0)
    monkeypatch.setattr(module, "_counter", 0)


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Switch threads as often as possible, so that an unlocked generator would interleave."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def _clock(monkeypatch: pytest.MonkeyPatch, *ms: int) -> None:
    readings = iter(ms)
    monkeypatch.setattr(time, "time_ns", lambda: next(readings) * 1_000_000)


@pytest.mark.parametrize("generate", GENERATORS)
class TestLayout:
    def test_version_and_variant(self, generate: Callable[[], uuid.UUID]) -> None:
        """Values carry version 7 and the RFC 9562 variant (0b10), never version 4."""
        for _ in range(1000):
            value = generate()
            assert value.version == 7
            assert value.variant == uuid.RFC_4122
            assert (value.int >> 76) & 0xF == 0x7
            assert (value.int >> 62) & 0b11 == 0b10

    def test_timestamp_is_unix_milliseconds(self, generate: Callable[[], uuid.UUID]) -> None:
        """The first 48 bits are the Unix time in milliseconds when the value was made."""
        before = time.time_ns() // 1_000_000
        value = generate()
        after = time.time_ns() // 1_000_000
        # The counter may borrow a millisecond or two after a burst of values.
        assert before <= _ms(value) <= after + 2

    def test_text_form(self, generate: Callable[[], uuid.UUID]) -> None:
        """The canonical text form shows version 7 and a variant nibble of 8, 9, a or b."""
        text = str(generate())
        assert text[14] == "7"
        assert text[19] in "89ab"


class TestOrder:
    @pytest.mark.parametrize("generate", GENERATORS)
    def test_strictly_increasing(self, generate: Callable[[], uuid.UUID]) -> None:
        """Ten thousand values made in a row are strictly increasing, as UUIDs and as text."""
        values = [generate() for _ in range(10_000)]
        assert all(a < b for a, b in pairwise(values))
        texts = [str(v) for v in values]
        assert texts == sorted(texts)
        assert len(set(values)) == len(values)

    @pytest.mark.parametrize("generate", GENERATORS)
    @pytest.mark.usefixtures("busy_switching")
    def test_threads(self, generate: Callable[[], uuid.UUID]) -> None:
        """Values made by several threads are unique and each thread's are increasing."""
        results: list[list[uuid.UUID]] = [[] for _ in range(8)]
        start = threading.Barrier(len(results))

        def work(out: list[uuid.UUID]) -> None:
            start.wait()
            out.extend(generate() for _ in range(2_500))

        threads = [threading.Thread(target=work, args=(out,)) for out in results]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for values in results:
            assert all(a < b for a, b in pairwise(values))
        merged = [v for values in results for v in values]
        assert len(set(merged)) == len(merged) == 20_000

    @pytest.mark.usefixtures("fresh_state")
    def test_same_millisecond_increments_counter(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Within one millisecond the counter goes up by one per value."""
        _clock(monkeypatch, 1_000, 1_000, 1_000)
        values = [_uuid7() for _ in range(3)]
        assert {_ms(v) for v in values} == {1_000}
        counters = [_counter(v) for v in values]
        assert counters == [counters[0], counters[0] + 1, counters[0] + 2]
        assert counters[0] < 1 << 41  # seeded with the top bit clear

    @pytest.mark.usefixtures("fresh_state")
    def test_clock_steps_back(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """When the clock steps back, values keep increasing on the last timestamp."""
        _clock(monkeypatch, 5_000, 4_000, 3_000, 5_001)
        values = [_uuid7() for _ in range(4)]
        assert all(a < b for a, b in pairwise(values))
        assert [_ms(v) for v in values] == [5_000, 5_000, 5_000, 5_001]

    @pytest.mark.usefixtures("fresh_state")
    def test_counter_exhausted(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An exhausted counter moves on to the next millisecond with a fresh counter."""
        _clock(monkeypatch, 7_000, 7_000, 7_000)
        monkeypatch.setattr(module, "_fresh_counter", lambda: module._COUNTER_MAX - 1)
        first, second = _uuid7(), _uuid7()
        assert _counter(second) == module._COUNTER_MAX
        monkeypatch.setattr(module, "_fresh_counter", lambda: 0)
        third = _uuid7()
        assert first < second < third
        assert (_ms(third), _counter(third)) == (7_001, 0)

    @pytest.mark.usefixtures("fresh_state")
    def test_fork_starts_a_new_sequence(self) -> None:
        """A forked child forgets its parent's sequence and lock."""
        _uuid7()
        assert module._last_ms != 0
        old_lock = module._lock
        try:
            module._reset_after_fork()
            assert (module._last_ms, module._counter) == (0, 0)
            assert module._lock is not old_lock
            assert _uuid7().version == 7
        finally:
            module._lock = old_lock


class TestChoice:
    def test_own_implementation_everywhere(self) -> None:
        """The public uuid7 is this module's locked implementation, not the stdlib's."""
        assert sqla_repo.uuid7 is uuid7
        assert uuid7.__module__ == "sqla_repo._uuid7"
        stdlib = getattr(uuid, "uuid7", None)
        assert uuid7 is not stdlib

    def test_ignores_stdlib_uuid7(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A stdlib ``uuid.uuid7`` (Python 3.14+) is never called, so it cannot break order."""

        def stdlib_uuid7() -> uuid.UUID:  # pragma: no cover - must not run
            raise AssertionError

        monkeypatch.setattr(uuid, "uuid7", stdlib_uuid7, raising=False)
        assert uuid7().version == 7
