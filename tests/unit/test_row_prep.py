"""Row preparation of set-based writes: the single-pass forms equal the plain definitions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sqla_repo import IntegerPKMixin, TimestampMixin
from sqla_repo._row_prep import (
    drop_defaulted_none,
    group_indexes,
    group_rows,
    insert_rows,
    row_dicts,
    stamp_write_time,
)
from sqla_repo._statements import ModelInfo
from sqla_repo.exceptions import RepositoryError


class Base(DeclarativeBase):
    pass


class Parent(IntegerPKMixin, Base):
    __tablename__ = "row_prep_parent"


class Item(IntegerPKMixin, TimestampMixin, Base):
    __tablename__ = "row_prep_item"

    name: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(10), default="new")
    note: Mapped[str | None] = mapped_column(String(20))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("row_prep_parent.id"))


INFO = ModelInfo(Item)
KEYS = ("id", "name", "status", "note", "parent_id", "created_at", "updated_at")
VALUES = st.one_of(
    st.none(),
    st.integers(min_value=1, max_value=9),
    st.text(max_size=3),
    st.just(dt.datetime(2024, 5, 1, tzinfo=dt.UTC)),
)
ROWS = st.lists(
    st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=len(KEYS)), max_size=12
).map(lambda rows: [{"name": "x", **row} for row in rows])


def reference_groups(rows: list[dict[str, Any]]) -> list[list[int]]:
    groups: dict[frozenset[str], list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(frozenset(row), []).append(index)
    return list(groups.values())


@given(ROWS)
def test_insert_rows_in_one_pass(rows: list[dict[str, Any]]) -> None:
    """One pass gives the copies without defaulted ``None`` and their key-set groups."""
    expected = drop_defaulted_none(INFO, row_dicts(INFO, rows))
    values, groups, indexes = insert_rows(INFO, rows)
    assert values == expected
    assert indexes == reference_groups(expected)
    assert groups == [[expected[i] for i in group] for group in indexes]
    assert row_dicts(INFO, rows) == rows


@given(ROWS)
def test_rows_are_copied(rows: list[dict[str, Any]]) -> None:
    """The caller's dicts are never the ones sent (stamping must not change them)."""
    values, _, _ = insert_rows(INFO, rows)
    assert all(a is not b for a, b in zip(values, rows, strict=True))
    assert all(a is not b for a, b in zip(row_dicts(INFO, rows), rows, strict=True))


@given(ROWS)
def test_grouping_by_key_set(rows: list[dict[str, Any]]) -> None:
    """Rows are grouped by key set in order of first appearance, each group in order."""
    expected = reference_groups(rows)
    assert group_indexes(rows) == expected
    assert group_rows(rows) == [[rows[i] for i in group] for group in expected]


def test_unknown_key_refused_after_rows_with_known_keys() -> None:
    """A row with another key set is checked again, not waved through after good rows."""
    for bad in ({"name": "c", "secret": 1}, {"secret": 1}, {"name": "c", "id": 1, "secret": 1}):
        with pytest.raises(RepositoryError):
            insert_rows(INFO, [{"name": "a"}, {"name": "b"}, bad])
        with pytest.raises(RepositoryError):
            row_dicts(INFO, [{"name": "a"}, {"name": "b"}, bad])


def test_instances_and_mappings_mix() -> None:
    """Transient instances and non-dict mappings take the general path, same result."""

    class Frozen(dict[str, Any]):
        pass

    rows = [
        {"name": "a", "id": None},
        Item(name="b", note=None),
        Frozen(name="c", status=None),
        {"name": "d"},
    ]
    values, groups, indexes = insert_rows(INFO, rows)
    assert values == [{"name": "a"}, {"name": "b", "note": None}, {"name": "c"}, {"name": "d"}]
    assert indexes == [[0, 2, 3], [1]]
    assert groups == [[values[0], values[2], values[3]], [values[1]]]


def test_write_time_columns_of_the_timestamp_mixin() -> None:
    assert INFO.write_times == (("created_at", None), ("updated_at", "created_at"))
    assert ModelInfo(Parent).write_times == ()


@given(ROWS)
def test_stamp_write_time_as_the_defaults_would(rows: list[dict[str, Any]]) -> None:
    """Each row gets what the column defaults would give it, with one instant for all.

    ``created_at`` absent (or ``None``): the write's instant; ``updated_at`` absent: the
    row's own ``created_at`` where that is a datetime, else the write's instant. Values
    given, and every other column, are left as they are.
    """
    values, groups, _ = insert_rows(INFO, rows)
    given_rows = [dict(row) for row in values]
    before = dt.datetime.now(dt.UTC)
    stamp_write_time(INFO, groups)
    after = dt.datetime.now(dt.UTC)
    instants = set()
    for given_row, row in zip(given_rows, values, strict=True):
        assert {k: v for k, v in row.items() if k in given_row} == given_row
        if "created_at" in given_row:
            created = given_row["created_at"]
        else:
            created = row["created_at"]
            instants.add(created)
        if "updated_at" not in given_row:
            expected = created if isinstance(created, dt.datetime) else None
            if expected is None:
                instants.add(row["updated_at"])
            else:
                assert row["updated_at"] is expected
        assert row.keys() == given_row.keys() | {"created_at", "updated_at"}
    assert len(instants) <= 1
    assert all(before <= instant <= after for instant in instants)
