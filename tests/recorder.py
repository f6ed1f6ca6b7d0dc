"""Record the statements a block of code sends to the database."""

from __future__ import annotations

from sqlalchemy import event


class StatementLog:
    def __init__(self, session):
        self.statements: list[str] = []
        self._engine = session.sync_session.get_bind()

    def __enter__(self):
        event.listen(self._engine, "before_cursor_execute", self._log)
        return self

    def __exit__(self, *exc):
        event.remove(self._engine, "before_cursor_execute", self._log)

    def _log(self, _conn, _cursor, statement, *_args):
        self.statements.append(statement.split()[0].upper())

    @property
    def dml(self) -> list[str]:
        return [s for s in self.statements if s in {"SELECT", "INSERT", "UPDATE", "DELETE"}]
