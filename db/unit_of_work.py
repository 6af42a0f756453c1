"""One transaction over every repository: what a webhook step or a command reads and writes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from types import TracebackType
from typing import Self

from sqlalchemy.orm import Session, sessionmaker

from db.ledger import SqlLedger
from db.repositories import CallNotFound, SqlAccounts, SqlCalls, SqlCredentials, SqlEvents, utcnow
from db.stored_methods import SqlStoredMethods
from ivr.flows.ports import CallRecord
from payments.autopay_enrollment import SqlFlowAutopay


class SqlUnitOfWork:
    """Implements ``ivr.flows.ports.UnitOfWork``: one session, one transaction.

    Nothing is written unless ``commit()`` is called. As a context manager it rolls back
    when the block raises, and always closes the session.

    A unit of work is built for every webhook: the repositories a step does not use are
    never built (each is made on first use).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        process: str = "securepay",
        os_user: str | None = None,
        host: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.session = sessions()
        self._clock = clock
        self.events = SqlEvents(self.session, process, os_user, host, clock)

    @cached_property
    def accounts(self) -> SqlAccounts:
        return SqlAccounts(self.session)

    @cached_property
    def credentials(self) -> SqlCredentials:
        return SqlCredentials(self.session)

    @cached_property
    def calls(self) -> SqlCalls:
        return SqlCalls(self.session, self._clock)

    @cached_property
    def ledger(self) -> SqlLedger:
        return SqlLedger(self.session)

    @cached_property
    def methods(self) -> SqlStoredMethods:
        return SqlStoredMethods(self.session, by_phone=True)  # the IVR's view

    @cached_property
    def autopay(self) -> SqlFlowAutopay:
        return SqlFlowAutopay(self.session)

    def commit(self) -> None:
        """Write the trail events recorded so far (unsealed) and commit everything.

        No lock and no head read: the events are one INSERT, and the process's sealer
        (``db.audit_sealer``) numbers and hashes them once this commit is done, so
        concurrent requests never wait for each other on the trail.
        """
        self.events.write_pending()
        self.session.commit()

    def commit_step(self, call: CallRecord) -> None:
        """Save ``call`` and commit, with the trail events recorded so far.

        On PostgreSQL a changed call and its events are one statement
        (``db.step_commit``): a step that only moves the call is then ``BEGIN``, the
        locked read, this statement and ``COMMIT``. Elsewhere, ``save`` then ``commit``.
        """
        changes = self.calls.changes(call) if self.events.pending else None
        if changes is None or self.session.get_bind().dialect.name != "postgresql":
            self.calls.save(call)
            self.commit()
            return
        if not self.events.write_pending_moving(changes):
            raise CallNotFound(f"no call {call.call_sid}")
        self.calls.saved(call)
        self.session.commit()

    def rollback(self) -> None:
        """Undo the transaction; the trail events recorded in it are dropped too."""
        self.events.discard_pending()
        self.session.rollback()

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc_type is not None:
                self.rollback()
        finally:
            self.close()
