"""The audit trail as a hash chain (SECURITY 18): sealed in order, verified, anchored.

Each ``AuditEvent`` has a position ``seq`` (1, 2, 3... per deployment), the hash of the
event before it (``prev_hash``; the first event links to ``GENESIS``) and its own
``hash``: SHA-256 over the canonical JSON of its content (sorted keys, no spaces,
datetimes as ISO 8601 in UTC). The content is every column but ``hash`` and ``id``:
``id`` is the database's surrogate key, given by a sequence at insert (after the hash is
computed), and says nothing an auditor reads; ``seq`` is the position that is hashed.

Writers insert their events without ``seq``, ``prev_hash`` and ``hash`` (unsealed): no
lock, no head read. One sealer at a time (``db.audit_sealer``, under the advisory lock
``LOCK_KEY``) numbers the committed unsealed events after the head in ``id`` order,
hashes and updates them, in short batches. The chain's order is ``seq``'s, not ``id``'s:
an event committed late with a lower id is sealed after the ones sealed before it
(docs/decisions/0008-audit-sealer.md). The unique ``seq`` makes a fork impossible even
if the lock were skipped.

``verify`` walks the sealed chain by ``seq`` and names the first problem, and names
events left unsealed longer than a grace (no sealer running). An administrator who can
write the table can also recompute every hash after the one changed; anchors (the
head's ``seq`` and ``hash``, kept where that administrator cannot write) catch that.

Verify and export read the hashed columns raw (``read_stored``): the text the database
holds, decoded here column by column, not through the ORM's types. A value a tamperer or
a bad disk left that no type can read (invalid JSON in ``detail``, a word in
``occurred_at``, bytes that are not UTF-8) is then a named event ("its content cannot be
read (occurred_at: not a time ...)"), not a traceback from the result processing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Connection, LargeBinary, Select, Text, cast, func, select
from sqlalchemy.orm import Session

from db.models import AuditEvent

__all__ = [
    "GENESIS",
    "HASHED_FIELDS",
    "LOCK_KEY",
    "Anchor",
    "AnchorFileError",
    "ChainProblem",
    "UNSEALED_GRACE",
    "Head",
    "ProblemKind",
    "StoredEvent",
    "UnsealedEvent",
    "Verification",
    "canonical",
    "content_of",
    "event_hash",
    "make_anchor",
    "read_anchors",
    "read_head",
    "read_stored",
    "stored_event",
    "stored_query",
    "verify",
]

GENESIS = "0" * 64
# The key of the PostgreSQL advisory lock the sealer holds ("SEC0A0D17"); any bigint
# would do, as long as nothing else in the database uses it. It is the key the code
# before the sealer took per commit, so old chaining and a new sealer exclude each other
# (yet an old server cannot run beside a new one: its head read would find an unsealed
# event; upgrade all app servers together).
LOCK_KEY = 0x5EC0A0D17
# How long an event may stay unsealed before ``verify`` names it (a sealer seals within
# moments of a commit; its timer within seconds).
UNSEALED_GRACE = timedelta(seconds=60)
HASHED_FIELDS = (
    "seq",
    "prev_hash",
    "occurred_at",
    "event",
    "call_sid",
    "account_id",
    "actor",
    "os_user",
    "host",
    "process",
    "success",
    "detail",
)


def _iso_utc(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime in an audit event")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def content_of(event: AuditEvent) -> dict[str, Any]:
    """What ``event``'s hash covers."""
    return {name: getattr(event, name) for name in HASHED_FIELDS}


def canonical(content: Mapping[str, Any]) -> bytes:
    """The one byte string of ``content``: JSON, sorted keys, datetimes in ISO UTC."""
    values = {
        name: _iso_utc(value) if isinstance(value, datetime) else value
        for name, value in content.items()
    }
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def event_hash(content: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(content)).hexdigest()


# --- the head -------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """The last sealed event of the chain (``seq`` 0 and ``GENESIS`` when there is none)."""

    seq: int
    hash: str


_TABLE = AuditEvent.__table__
_SEALED = _TABLE.c.seq.is_not(None)
_UNSEALED = _TABLE.c.seq.is_(None)
_HEAD = select(_TABLE.c.seq, _TABLE.c.hash).where(_SEALED).order_by(_TABLE.c.seq.desc()).limit(1)


def read_head(session: Session | Connection) -> Head:
    row = session.execute(_HEAD).first()
    return Head(0, GENESIS) if row is None else Head(row.seq, row.hash)


# --- verifying ------------------------------------------------------------------------


class ProblemKind(StrEnum):
    CHANGED = "changed"  # an event's hash no longer matches its content
    REMOVED = "removed"  # a seq is missing, or an event links past the one before it
    INSERTED = "inserted"  # an event sits where none was chained (duplicate or extra)
    REWRITTEN = "rewritten"  # an anchored hash is no longer the one at its seq
    TRUNCATED = "truncated"  # an anchored seq is past the end of the chain


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    kind: ProblemKind
    reason: str

    def __str__(self) -> str:
        return f"chain broken at seq {self.seq}: {self.kind}: {self.reason}"


@dataclass(frozen=True)
class Anchor:
    """The chain's head at a moment, to be kept where the database's owner cannot write."""

    count: int
    head_seq: int
    head_hash: str
    at: datetime

    def to_json(self) -> str:
        return json.dumps(
            {"count": self.count, "head_seq": self.head_seq, "head_hash": self.head_hash,
             "at": _iso_utc(self.at)},
            sort_keys=True,
        )


class AnchorFileError(ValueError):
    """An anchor line that cannot be read: the anchors cannot be checked."""


def read_anchors(lines: Iterable[str], source: str = "anchors") -> list[Anchor]:
    anchors = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            anchor = Anchor(
                count=int(data["count"]),
                head_seq=int(data["head_seq"]),
                head_hash=str(data["head_hash"]),
                at=datetime.fromisoformat(data["at"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise AnchorFileError(f"{source}:{number}: not an anchor line ({exc})") from None
        if anchor.at.tzinfo is None or anchor.head_seq < 0 or len(anchor.head_hash) != 64:
            raise AnchorFileError(f"{source}:{number}: not an anchor line")
        anchors.append(anchor)
    return anchors


def make_anchor(session: Session, now: datetime) -> Anchor:
    """The head of the sealed chain (unsealed events are not in it yet)."""
    head = read_head(session)
    count = session.scalar(select(func.count()).select_from(_TABLE).where(_SEALED)) or 0
    return Anchor(count=count, head_seq=head.seq, head_hash=head.hash, at=now)


@dataclass(frozen=True)
class UnsealedEvent:
    """An event written but not sealed for longer than the grace: no sealer has run."""

    id: int
    occurred_at: datetime | None  # None when its time cannot be read
    age: timedelta | None

    def __str__(self) -> str:
        if self.occurred_at is None or self.age is None:
            return f"unsealed: row id {self.id}, its time cannot be read"
        return (
            f"unsealed: row id {self.id} (occurred {_iso_utc(self.occurred_at)}) "
            f"not sealed after {int(self.age.total_seconds())} s"
        )


# The most overdue unsealed events a verification names (the count says the rest).
OVERDUE_NAMED = 10


@dataclass(frozen=True)
class Verification:
    count: int  # sealed events walked
    head: Head
    anchors_checked: int
    problem: ChainProblem | None
    unsealed: int = 0  # events not sealed yet, within the grace or not
    overdue: tuple[UnsealedEvent, ...] = ()  # the first OVERDUE_NAMED past the grace
    overdue_count: int = 0

    @property
    def intact(self) -> bool:
        """The sealed chain is whole (nothing changed, removed or inserted)."""
        return self.problem is None

    @property
    def sound(self) -> bool:
        """Intact, and no event left unsealed past the grace."""
        return self.problem is None and self.overdue_count == 0


def _link_problem(seq: int, prev_seq: int, prev_hash: str, before_prev_hash: str | None,
                  own_hash_ok: bool) -> ChainProblem:
    if prev_hash == before_prev_hash:
        return ChainProblem(
            prev_seq, ProblemKind.INSERTED,
            f"seq {seq} is chained to seq {prev_seq - 1}, so the event at seq {prev_seq} was inserted",
        )
    if own_hash_ok:
        return ChainProblem(
            prev_seq, ProblemKind.CHANGED,
            f"seq {seq} is chained to another hash than seq {prev_seq}'s: seq {prev_seq} was "
            f"replaced (its hash recomputed), or seq {seq} was forged",
        )
    return ChainProblem(
        seq, ProblemKind.REMOVED,
        f"seq {seq} neither links to seq {prev_seq} nor matches its content: an event "
        "before it was removed and the rest renumbered",
    )


def verify(
    session: Session,
    anchors: Sequence[Anchor] = (),
    *,
    now: datetime | None = None,
    grace: timedelta = UNSEALED_GRACE,
) -> Verification:
    """Walk the sealed chain by ``seq``, recompute every hash, stop at the first problem;
    then count the unsealed events and name those older than ``grace`` at ``now``.

    Per event, in this order: its position (a gap is a removal, a repeated or backward
    seq an insertion), its link to the event before, its own hash (an event whose
    content cannot be read is changed), and any anchor at its seq. After the walk, an
    anchor past the head means the tail was cut off.
    """
    chain = _walk(session, anchors)
    unsealed, overdue, overdue_count = _unsealed(session, now or datetime.now(UTC), grace)
    return Verification(
        chain.count, chain.head, chain.anchors_checked, chain.problem, unsealed, overdue, overdue_count
    )


def _unsealed(
    session: Session, now: datetime, grace: timedelta
) -> tuple[int, tuple[UnsealedEvent, ...], int]:
    """How many events are unsealed, and those past ``grace`` (oldest first, by id)."""
    count = 0
    overdue: list[UnsealedEvent] = []
    overdue_count = 0
    for event in read_stored(session, _UNSEALED):
        count += 1
        occurred = None if event.content is None else event.content.get("occurred_at")
        if not isinstance(occurred, datetime):
            found = UnsealedEvent(event.id, None, None)
        elif now - occurred > grace:
            found = UnsealedEvent(event.id, occurred, now - occurred)
        else:
            continue
        overdue_count += 1
        if len(overdue) < OVERDUE_NAMED:
            overdue.append(found)
    return count, tuple(overdue), overdue_count


def _walk(session: Session, anchors: Sequence[Anchor]) -> Verification:
    anchored: dict[int, list[Anchor]] = {}
    for anchor in anchors:
        anchored.setdefault(anchor.head_seq, []).append(anchor)
    checked = 0
    count = 0
    prev = Head(0, GENESIS)
    before_prev: str | None = None
    for event in read_stored(session, _SEALED):
        count += 1
        problem = _problem_at(event, prev, before_prev)
        if problem is None and event.seq is not None:  # (an unreadable seq is a problem)
            for anchor in anchored.pop(event.seq, []):
                if anchor.head_hash != event.hash:
                    problem = ChainProblem(
                        event.seq, ProblemKind.REWRITTEN,
                        f"the anchor of {_iso_utc(anchor.at)} has another hash for it",
                    )
                    break
                checked += 1
        if problem is not None:
            return Verification(count, prev, checked, problem)
        before_prev = prev.hash
        prev = Head(event.seq or 0, event.hash)
    for seq in sorted(anchored):
        if seq == 0:  # an anchor of the empty chain: nothing to find
            checked += len(anchored[seq])
            continue
        anchor = anchored[seq][0]
        return Verification(count, prev, checked, ChainProblem(
            seq, ProblemKind.TRUNCATED,
            f"anchored at {_iso_utc(anchor.at)} but the chain ends at seq {prev.seq}",
        ))
    return Verification(count, prev, checked, None)


def _problem_at(event: StoredEvent, prev: Head, before_prev: str | None) -> ChainProblem | None:
    """What is wrong with ``event`` coming after ``prev``: its position, link, own hash."""
    if event.seq is None:
        return ChainProblem(
            prev.seq + 1, ProblemKind.CHANGED,
            f"the event after seq {prev.seq} (row id {event.id}): its content cannot be read "
            f"({event.why_unreadable})",
        )
    if event.seq <= prev.seq:
        return ChainProblem(
            event.seq, ProblemKind.INSERTED,
            f"an event (row id {event.id}) at seq {event.seq}, which already has one",
        )
    if event.seq > prev.seq + 1:
        missing = prev.seq + 1 if event.seq == prev.seq + 2 else f"{prev.seq + 1}-{event.seq - 1}"
        return ChainProblem(
            prev.seq + 1, ProblemKind.REMOVED, f"seq {missing} missing (the chain jumps to {event.seq})"
        )
    if event.content is None:  # whatever else is wrong with it, this is what an auditor sees
        return ChainProblem(
            event.seq, ProblemKind.CHANGED, f"its content cannot be read ({event.why_unreadable})"
        )
    own_hash_ok = event_hash(event.content) == event.hash
    if event.prev_hash != prev.hash:
        return _link_problem(event.seq, prev.seq, event.prev_hash, before_prev, own_hash_ok)
    if not own_hash_ok:
        return ChainProblem(event.seq, ProblemKind.CHANGED, "its hash no longer matches its content")
    return None


# --- reading raw ----------------------------------------------------------------------


@dataclass(frozen=True)
class StoredEvent:
    """An event as the database holds it: each hashed column's raw text, and its content
    decoded from that text (``None`` when a column cannot be read: ``unreadable`` says
    which and why). ``seq`` is ``None`` when the seq itself cannot be read."""

    id: int
    seq: int | None
    prev_hash: str
    hash: str
    raw: Mapping[str, str | None]
    content: Mapping[str, Any] | None
    unreadable: tuple[str, ...]

    @property
    def why_unreadable(self) -> str:
        return "; ".join(self.unreadable)


# The longest piece of a raw value quoted in a reason (an auditor needs a glimpse).
QUOTE_CHARS = 40
_INTEGER_COLUMNS = frozenset({"seq", "account_id"})
_BOOLEANS = {"1": True, "true": True, "t": True, "0": False, "false": False, "f": False}


def _quote(raw: str) -> str:
    return repr(raw if len(raw) <= QUOTE_CHARS else raw[:QUOTE_CHARS] + "…")


def _decode(name: str, raw: str) -> Any:
    """One hashed column's value from its stored text; ``ValueError`` naming what it is not."""
    if name in _INTEGER_COLUMNS:
        if not raw.strip().lstrip("-").isdigit():
            raise ValueError(f"not a whole number ({_quote(raw)})")
        return int(raw)
    if name == "success":
        if raw.strip().lower() not in _BOOLEANS:
            raise ValueError(f"not true or false ({_quote(raw)})")
        return _BOOLEANS[raw.strip().lower()]
    if name == "occurred_at":
        try:
            value = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise ValueError(f"not a time ({_quote(raw)})") from None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if name == "detail":
        try:
            return json.loads(raw)
        except ValueError as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise ValueError(f"not JSON ({reason})") from None
    return raw


def _raw_column(name: str, dialect: str) -> ColumnElement[Any]:
    column = AuditEvent.__table__.c[name]
    # SQLite: as bytes, so text that is not UTF-8 is ours to report (the driver would raise
    # while fetching); PostgreSQL validates its encoding, and its text form is exact.
    if dialect == "sqlite":
        return cast(column, LargeBinary).label(name)
    return cast(column, Text).label(name)


def stored_query(dialect: str) -> Select[Any]:
    """Every hashed column and ``hash`` of the events, read raw (see the module)."""
    columns = [_raw_column(name, dialect) for name in (*HASHED_FIELDS, "hash")]
    return select(AuditEvent.__table__.c.id, *columns)


def stored_event(row: Mapping[Any, Any]) -> StoredEvent:
    """A row of ``stored_query`` as a ``StoredEvent``."""
    raw: dict[str, str | None] = {}
    content: dict[str, Any] = {}
    unreadable: list[str] = []
    for name in (*HASHED_FIELDS, "hash"):
        value = row[name]
        if isinstance(value, bytes | memoryview):
            data = bytes(value)
            try:
                value = data.decode("utf-8")
            except UnicodeDecodeError:
                raw[name] = data.decode("utf-8", errors="backslashreplace")
                unreadable.append(f"{name}: not UTF-8 text")
                continue
        raw[name] = value
        if name == "hash":
            continue
        try:
            content[name] = None if value is None else _decode(name, value)
        except ValueError as exc:
            unreadable.append(f"{name}: {exc}")
    seq = content.get("seq")
    return StoredEvent(
        id=int(row["id"]),
        seq=seq if isinstance(seq, int) else None,
        prev_hash=raw["prev_hash"] or "",
        hash=raw["hash"] or "",
        raw=raw,
        content=None if unreadable else content,
        unreadable=tuple(unreadable),
    )


def read_stored(session: Session, *where: ColumnElement[bool]) -> Iterator[StoredEvent]:
    """The events in chain order (by ``seq``, then row id), read raw (see the module)."""
    query = stored_query(session.get_bind().dialect.name).where(*where)
    query = query.order_by(AuditEvent.__table__.c.seq, AuditEvent.__table__.c.id)
    rows = session.execute(query.execution_options(yield_per=1000))
    try:
        for row in rows.mappings():
            yield stored_event(row)
    finally:
        rows.close()
