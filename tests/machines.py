"""A base for hypothesis state machines that drive an async session from sync rules."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis.stateful import RuleBasedStateMachine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.pool import NullPool


class SessionMachine(RuleBasedStateMachine):
    """Runs each example in its own event loop, inside a transaction rolled back at teardown.

    Subclasses set ``backend`` (the test's backend fixture value) before running.
    """

    backend: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.engine = self.backend.engine(poolclass=NullPool)
        self.conn = self.run(self.engine.connect())
        self.outer = self.run(self.conn.begin())
        self.session = AsyncSession(
            bind=self.conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.session.close())
        self.run(self.outer.rollback())
        self.run(self.conn.close())
        self.run(self.engine.dispose())
        self.loop.close()
