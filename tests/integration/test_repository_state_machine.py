"""Random sequences of repository operations agree with a plain in-memory model."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    consumes,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from machines import SessionMachine
from models import User
from repositories import UserRepository
from sqla_repo import NotFoundError

names = st.text(alphabet="abcxyz", min_size=0, max_size=6)
ages = st.none() | st.integers(min_value=0, max_value=99)


class RepositoryMachine(SessionMachine):
    """Each step runs on the repository and on ``self.expected``; they must agree."""

    users = Bundle("users")

    def __init__(self) -> None:
        super().__init__()
        self.repo = UserRepository(self.session)
        # id -> (email, name, age, deleted)
        self.expected: dict[int, dict[str, Any]] = {}
        self.counter = 0

    def _email(self) -> str:
        self.counter += 1
        return f"u{self.counter}@x.org"

    def _live(self) -> dict[int, dict[str, Any]]:
        return {k: v for k, v in self.expected.items() if not v["deleted"]}

    @rule(target=users, name=names, age=ages)
    def create(self, name: str, age: int | None) -> int:
        email = self._email()
        user = self.run(self.repo.create({"email": email, "name": name, "age": age}))
        self.expected[user.id] = {"email": email, "name": name, "age": age, "deleted": False}
        return user.id

    @rule(target=users, rows=st.lists(st.tuples(names, ages), min_size=1, max_size=5))
    def bulk_create(self, rows: list[tuple[str, int | None]]) -> Any:
        values = [{"email": self._email(), "name": n, "age": a} for n, a in rows]
        created = self.run(self.repo.bulk_create(values))
        assert [u.email for u in created] == [v["email"] for v in values]
        for user, value in zip(created, values, strict=True):
            self.expected[user.id] = {**value, "deleted": False}
        return multiple(*(u.id for u in created))

    @rule(ident=users, name=names)
    def update_by_id(self, ident: int, name: str) -> None:
        row = self.expected.get(ident)
        if row is None or row["deleted"]:
            with pytest.raises(NotFoundError):
                self.run(self.repo.update(ident, name=name))
            return
        user = self.run(self.repo.update(ident, name=name))
        assert user.name == name
        row["name"] = name

    @rule(idents=st.lists(users, max_size=4, unique=True), age=ages)
    def bulk_update(self, idents: list[int], age: int | None) -> None:
        count = self.run(self.repo.bulk_update([{"id": i, "age": age} for i in idents]))
        live = [i for i in idents if i in self._live()]
        assert count == len(live)
        for ident in live:
            self.expected[ident]["age"] = age

    @rule(threshold=st.integers(min_value=0, max_value=99), name=names)
    def update_where(self, threshold: int, name: str) -> None:
        count = self.run(self.repo.update_where(User.age >= threshold, values={"name": name}))
        hit = [k for k, v in self._live().items() if v["age"] is not None and v["age"] >= threshold]
        assert count == len(hit)
        for ident in hit:
            self.expected[ident]["name"] = name

    @rule(ident=users)
    def soft_delete(self, ident: int) -> None:
        row = self.expected.get(ident)
        if row is None or row["deleted"]:
            with pytest.raises(NotFoundError):
                self.run(self.repo.soft_delete(ident))
            return
        assert self.run(self.repo.soft_delete(ident)).is_deleted
        row["deleted"] = True

    @rule(ident=users)
    def restore(self, ident: int) -> None:
        if ident not in self.expected:
            with pytest.raises(NotFoundError):
                self.run(self.repo.restore(ident))
            return
        assert not self.run(self.repo.restore(ident)).is_deleted
        self.expected[ident]["deleted"] = False

    @rule(ident=consumes(users))
    def delete(self, ident: int) -> None:
        row = self.expected.get(ident)
        if row is None or row["deleted"]:
            with pytest.raises(NotFoundError):
                self.run(self.repo.delete(ident))
            if row is not None:
                self.run(self.repo.delete(ident, include_deleted=True))
        else:
            self.run(self.repo.delete(ident))
        self.expected.pop(ident, None)

    @invariant()
    def agrees(self) -> None:
        live = self.run(self.repo.list())
        assert {u.id: (u.email, u.name, u.age) for u in live} == {
            k: (v["email"], v["name"], v["age"]) for k, v in self._live().items()
        }
        assert self.run(self.repo.count(include_deleted=True)) == len(self.expected)
        assert self.run(self.repo.count()) == len(live)


def test_repository_state_machine(backend, engine):
    """Random create/update/bulk/soft-delete/restore/delete sequences agree with a model."""
    del engine  # requested for its tables only; the machine runs its own event loop
    machine = type("Machine", (RepositoryMachine,), {"backend": backend})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=40,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
