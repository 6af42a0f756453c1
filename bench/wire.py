"""Statements and round trips to PostgreSQL, counted where they happen.

``SqlCounter`` listens on the app's engine (SQLAlchemy's ``before_cursor_execute`` /
``after_cursor_execute``, ``commit`` and ``rollback`` events) for the statements the
app runs and the time each takes. Some round trips never pass those hooks: psycopg's
own ``BEGIN`` before a transaction's first statement, the pool's pre-ping, the
rollback of a connection given back to the pool. So ``RoundTripProxy`` sits on the
wire: a TCP relay on 127.0.0.1 between the app and PostgreSQL that counts *turns*,
each time the client speaks again after the server has answered. A turn is one round
trip: pipelined messages sent without waiting count once, as they cost once.

Both are used only in the counting pass that runs without valgrind: their own Python
would otherwise be in the instruction counts.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from sqlalchemy import Engine, event

LOOPBACK = "127.0.0.1"


@dataclass
class SqlTally:
    statements: int = 0
    commits: int = 0
    rollbacks: int = 0
    sql_seconds: float = 0.0


class SqlCounter:
    """Statements, commits, rollbacks and time in ``execute`` on one engine, so far."""

    def __init__(self, engine: Engine) -> None:
        self.tally = SqlTally()
        self._started: dict[int, float] = {}
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "rollback", self._rollback)

    def _before(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        self.tally.statements += 1
        self._started[id(cursor)] = time.perf_counter()

    def _after(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        started = self._started.pop(id(cursor), None)
        if started is not None:
            self.tally.sql_seconds += time.perf_counter() - started

    def _commit(self, conn: Any) -> None:
        self.tally.commits += 1

    def _rollback(self, conn: Any) -> None:
        self.tally.rollbacks += 1

    def snapshot(self) -> SqlTally:
        t = self.tally
        return SqlTally(t.statements, t.commits, t.rollbacks, t.sql_seconds)


class RoundTripProxy:
    """A relay to ``upstream`` on a free 127.0.0.1 port, counting the client's turns.

    One thread relays every connection (``selectors``); ``turns`` is read between
    requests, when the app is waiting for nothing, so reading it needs no lock.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self.turns = 0
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="round-trip-proxy", daemon=True)

    def __enter__(self) -> RoundTripProxy:
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(5)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()

    def _serve(self) -> None:
        # Per client socket: [peer socket, is_client, client's last word was answered?]
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.2):
                if key.data is None:
                    self._accept()
                    continue
                self._relay(key.fileobj, key.data)  # type: ignore[arg-type]

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        server = socket.create_connection(self._upstream, timeout=5)
        state = {"answered": True}
        client.setblocking(False)
        server.setblocking(False)
        self._selector.register(client, selectors.EVENT_READ, (server, True, state))
        self._selector.register(server, selectors.EVENT_READ, (client, False, state))

    def _relay(self, source: socket.socket, data: tuple[socket.socket, bool, dict[str, bool]]) -> None:
        peer, from_client, state = data
        try:
            chunk = source.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            for sock in (source, peer):
                try:
                    self._selector.unregister(sock)
                except (KeyError, ValueError):
                    pass
                sock.close()
            return
        if from_client:
            if state["answered"]:
                self.turns += 1
                state["answered"] = False
        else:
            state["answered"] = True
        peer.setblocking(True)
        try:
            peer.sendall(chunk)
        finally:
            peer.setblocking(False)
