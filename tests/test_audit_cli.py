"""``securepay audit verify|anchor|export|scan-secrets``: exit codes and one-line answers."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from click.testing import Result
from flask import Flask
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.orm import Session

from db.audit_chain import HASHED_FIELDS, event_hash
from db.models import AuditEvent
from ivr import create_app
from ivr.cli.audit import audit_group
from ivr.logs import configure_logging
from ivr.secret_scan import appears_alone
from ivr.services import EXTENSION_KEY, Services
from ivr.settings import Settings
from ivr.softphone import Softphone
from tests.fakes import FakeClock
from tests.members import NEW_PIN, OTHER_SSN, PIN, SSN, Member, add_members

MONDAY_NIGHT = datetime(2026, 11, 24, 3, 30, tzinfo=UTC)  # Monday 21:30 in Chicago
CARD = "4242424242424242"
CVC = "093"  # nothing else in a call looks like it (VISA's 123 could be part of an amount)


@pytest.fixture
def cli_app(test_env: dict[str, str]) -> Iterator[Flask]:
    app = create_app(Settings.from_env(test_env), cli=True)
    yield app
    app.extensions[EXTENSION_KEY].engine.dispose()


def services(app: Flask) -> Services:
    found: Services = app.extensions[EXTENSION_KEY]
    return found


def audit(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(audit_group, list(args))


def record(app: Flask, count: int, *, start: datetime = MONDAY_NIGHT, **detail: str) -> None:
    """``count`` call events, an hour apart from ``start``, each in its own transaction."""
    clock = FakeClock(start)
    services(app).clock = clock
    for n in range(count):
        with services(app).unit_of_work() as uow:
            uow.events.record(
                "call_started", call_sid=f"CA{n:032x}", actor="+12025550143", state="language", **detail
            )
            uow.commit()
        clock.advance(timedelta(hours=1))


def tamper(app: Flask, change: Callable[[Session], object]) -> None:
    with services(app).sessions.begin() as session:
        change(session)


def head_hash(app: Flask, seq: int) -> str:
    with services(app).sessions() as session:
        found = session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == seq))
        assert found is not None
        return found


# --- verify ---------------------------------------------------------------------------


def test_verify_an_intact_chain_says_so_in_one_line(cli_app: Flask) -> None:
    record(cli_app, 5)

    result = audit(cli_app, "verify")

    assert result.exit_code == 0, result.output
    assert result.output == f"5 events, chain intact, head seq 5 hash {head_hash(cli_app, 5)[:16]}…\n"


def test_verify_an_empty_trail(cli_app: Flask) -> None:
    result = audit(cli_app, "verify")
    assert (result.exit_code, result.output) == (0, f"0 events, chain intact, head seq 0 hash {'0' * 16}…\n")


def _change(session: Session) -> None:
    session.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(actor="+12025550199"))


def _delete(session: Session) -> None:
    session.execute(delete(AuditEvent).where(AuditEvent.seq == 3))


def _insert(session: Session) -> None:
    """A forged event at seq 3, hashed and linked to seq 2; the rest moved up to make room."""
    execute = session.execute
    prev = execute(select(AuditEvent).where(AuditEvent.seq == 2)).scalar_one()
    execute(update(AuditEvent).where(AuditEvent.seq >= 3).values(seq=AuditEvent.seq + 1000))
    execute(update(AuditEvent).where(AuditEvent.seq >= 1000).values(seq=AuditEvent.seq - 999))
    forged = {name: getattr(prev, name) for name in HASHED_FIELDS}
    forged.update(seq=3, prev_hash=prev.hash, event="pin_unlock", actor="nobody", detail={"reason": "x"})
    execute(insert(AuditEvent).values(**forged, hash=event_hash(forged)))


@pytest.mark.parametrize("change, reason", [
    (_change, "chain broken at seq 3: changed: its hash no longer matches its content (3 events read)"),
    (_delete, "chain broken at seq 3: removed: seq 3 missing (the chain jumps to 4) (3 events read)"),
    (_insert, "chain broken at seq 3: inserted: seq 4 is chained to seq 2, so the event at seq 3 was "
              "inserted (4 events read)"),
], ids=["changed", "deleted", "inserted"])
def test_verify_names_the_first_tampered_event_and_fails(
    cli_app: Flask, change: Callable[[Session], None], reason: str
) -> None:
    record(cli_app, 5)
    tamper(cli_app, change)

    result = audit(cli_app, "verify")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == reason + "\n"


def test_verify_names_an_event_left_unsealed_past_the_grace_and_seal_seals_it(cli_app: Flask) -> None:
    record(cli_app, 2)
    now = services(cli_app).clock.now()
    tamper(cli_app, lambda session: session.execute(insert(AuditEvent).values(  # a writer's, never sealed
        occurred_at=now - timedelta(minutes=5), event="call_started", process="gone:1", detail={},
    )))

    late = audit(cli_app, "verify")
    lenient = audit(cli_app, "verify", "--grace", "600")
    sealed = audit(cli_app, "seal")
    after = audit(cli_app, "verify")

    assert late.exit_code == 1 and late.stdout == ""
    assert late.stderr.splitlines() == [
        "unsealed: row id 3 (occurred 2026-11-24T05:25:00.000000+00:00) not sealed after 300 s (grace 60 s)",
        "1 event(s) unsealed longer than 60 s: is a sealer running? (`securepay audit seal`)",
    ]
    assert lenient.exit_code == 0
    assert lenient.output.startswith("2 events, chain intact, head seq 2 ")
    assert lenient.output.endswith("…, 1 not sealed yet (within 600 s)\n")
    assert (sealed.exit_code, sealed.output) == (0, "1 event(s) sealed, head seq 3\n")
    assert after.exit_code == 0 and after.output.startswith("3 events, chain intact, head seq 3 ")


# --- anchors --------------------------------------------------------------------------


def test_anchors_are_appended_as_json_lines_and_checked_by_verify(cli_app: Flask, tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.jsonl"
    record(cli_app, 3)
    first = audit(cli_app, "anchor", "--out", str(anchors))
    record(cli_app, 2, start=MONDAY_NIGHT + timedelta(days=1))
    second = audit(cli_app, "anchor")  # to stdout, as a cron job would pipe it away

    assert first.exit_code == 0 and first.output.startswith(f"anchor appended to {anchors}: ")
    line = json.loads(anchors.read_text())
    assert (line["count"], line["head_seq"], line["head_hash"]) == (3, 3, head_hash(cli_app, 3))
    assert datetime.fromisoformat(line["at"]).tzinfo is not None
    assert json.loads(second.output)["head_seq"] == 5
    with anchors.open("a") as handle:
        handle.write(second.output)

    ok = audit(cli_app, "verify", "--anchor", str(anchors))
    assert ok.exit_code == 0
    assert ok.output.endswith("…, 2 anchors matched\n") and ok.output.startswith("5 events, chain intact")


def test_an_anchor_catches_a_truncated_tail_that_verifies_on_its_own(cli_app: Flask, tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.jsonl"
    record(cli_app, 5)
    audit(cli_app, "anchor", "--out", str(anchors))
    tamper(cli_app, lambda session: session.execute(delete(AuditEvent).where(AuditEvent.seq >= 4)))

    assert audit(cli_app, "verify").exit_code == 0
    result = audit(cli_app, "verify", "--anchor", str(anchors))

    assert result.exit_code == 1
    assert result.stderr.startswith("chain broken at seq 5: truncated: anchored at ")
    assert result.stderr.endswith(" but the chain ends at seq 3 (3 events read)\n")


@pytest.mark.parametrize("content, message", [
    ('{"count": 1}\n', "anchors.jsonl:1: not an anchor line"),
    ("garbage\n", "anchors.jsonl:1: not an anchor line"),
])
def test_an_unreadable_anchor_file_is_bad_input(
    cli_app: Flask, tmp_path: Path, content: str, message: str
) -> None:
    anchors = tmp_path / "anchors.jsonl"
    anchors.write_text(content)
    result = audit(cli_app, "verify", "--anchor", str(anchors))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {anchors.parent}/{message}")
    assert result.stderr.count("\n") == 1


# --- export ---------------------------------------------------------------------------


def test_export_writes_every_field_with_utc_and_local_times(cli_app: Flask) -> None:
    record(cli_app, 2)

    result = audit(cli_app, "export")

    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["seq"] for line in lines] == [1, 2]
    first = lines[0]
    assert set(first) == set(HASHED_FIELDS) | {"id", "hash", "occurred_at_local", "timezone"}
    assert first["occurred_at"] == "2026-11-24T03:30:00+00:00"
    assert (first["occurred_at_local"], first["timezone"]) == ("2026-11-23T21:30:00-06:00", "America/Chicago")
    assert (first["event"], first["actor"], first["success"]) == ("call_started", "+12025550143", True)
    assert first["detail"] == {"state": "language"} and lines[1]["prev_hash"] == first["hash"]


def test_export_days_are_the_utilitys_days(cli_app: Flask) -> None:
    record(cli_app, 4)  # 21:30, 22:30, 23:30 on Monday in Chicago, 00:30 on Tuesday

    monday = audit(cli_app, "export", "--since", "2026-11-23", "--until", "2026-11-23")
    tuesday = audit(cli_app, "export", "--since", "2026-11-24")

    assert [json.loads(line)["seq"] for line in monday.output.splitlines()] == [1, 2, 3]
    assert [json.loads(line)["seq"] for line in tuesday.output.splitlines()] == [4]


@pytest.mark.parametrize("args, message", [
    (("--since", "24/11/2026"), "Error: --since must be a date as YYYY-MM-DD, got '24/11/2026'\n"),
    (("--since", "2026-11-25", "--until", "2026-11-24"),
     "Error: --since (2026-11-25) is after --until (2026-11-24)\n"),
])
def test_export_refuses_bad_dates_in_one_line(cli_app: Flask, args: tuple[str, ...], message: str) -> None:
    result = audit(cli_app, "export", *args)
    assert (result.exit_code, result.stderr) == (2, message)


# --- scan-secrets ---------------------------------------------------------------------


def test_scan_secrets_finds_a_planted_card_number_and_pin_and_never_prints_them(
    cli_app: Flask, tmp_path: Path
) -> None:
    record(cli_app, 1, note=f"card {CARD[:4]} {CARD[4:8]} {CARD[8:12]} {CARD[12:]}")
    log = tmp_path / "securepay.log"
    log.write_text('{"event": "pin_entered"}\n{"event": "debug", "value": "' + PIN + '"}\n')
    secrets = tmp_path / "secrets.txt"
    secrets.write_text(f"# typed in the test calls\n{PIN}\n\n{SSN}\n")

    result = audit(cli_app, "scan-secrets", "--log", str(log), "--secrets-file", str(secrets))

    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "audit_events.detail row 1: card_number (16 digits ending 4242)",
        f"{log}:2: typed_secret (secret #1 (4 digits))",
    ]
    assert result.stderr == "2 finding(s) in the database, 1 log(s), 0 export(s)\n"
    assert CARD not in result.output and "4242 4242" not in result.output
    assert not appears_alone(PIN, result.output)


def test_secrets_are_not_taken_from_the_command_line(cli_app: Flask) -> None:
    result = audit(cli_app, "scan-secrets", "--secret", PIN)
    assert result.exit_code == 2 and "No such option" in result.output


def test_whole_calls_then_the_trail_export_and_logs_scan_clean(
    app: Flask, card_phone: Callable[..., Softphone], tmp_path: Path
) -> None:
    stream = io.StringIO()
    configure_logging("json", stream=stream)
    try:
        add_members(app, Member("10004821", phones=["+12025550143"]), Member("20003355", pin=None))
        phone = card_phone(f"{CARD} 12/30 {CVC}")
        calls = [
            phone.call("+12025550143", ["1", "1111", "1", PIN, "1", "1", "1"]),
            phone.call("+12025550166", ["1", "20003355#", OTHER_SSN, SSN, NEW_PIN, NEW_PIN]),
        ]
        assert all(call.ok for call in calls)
        assert "Your confirmation number is" in calls[0].said_text()  # a card was charged
        structlog.get_logger().info("scan_fixture_done")
    finally:
        configure_logging("console")
    log = tmp_path / "securepay.log"
    log.write_text(stream.getvalue())
    export = tmp_path / "trail.jsonl"
    exported = audit(app, "export")
    export.write_text(exported.output)
    secrets = tmp_path / "secrets.txt"
    secrets.write_text("\n".join([PIN, SSN, OTHER_SSN, NEW_PIN, CARD, CVC]) + "\n")
    assert exported.output.count("\n") > 20  # the calls are in the trail

    result = audit(
        app, "scan-secrets", "--log", str(log), "--export", str(export), "--secrets-file", str(secrets)
    )

    assert result.exit_code == 0, result.output
    assert result.output == (
        "clean: no card numbers, security codes and 6 given secret(s)"
        " in the database, 1 log(s), 1 export(s)\n"
    )
    assert audit(app, "verify").exit_code == 0


# --- an event that cannot be read (issue 11, defect 1) ------------------------------------

# What a tamperer or a bad disk can leave in each column on SQLite (any value in any
# column), and the reason verify gives. The text columns get bytes that are not UTF-8.
NOT_UTF8 = "X'C328FF'"
SQLITE_UNREADABLE = {
    "seq": ("'third'", "seq: not a whole number ('third')"),
    "occurred_at": ("'yesterday'", "occurred_at: not a time ('yesterday')"),
    "success": ("'yes'", "success: not true or false ('yes')"),
    "account_id": ("'acct'", "account_id: not a whole number ('acct')"),
    **{name: (NOT_UTF8, f"{name}: not UTF-8 text") for name in (
        "prev_hash", "event", "call_sid", "actor", "os_user", "host", "process", "detail", "hash",
    )},
}
# PostgreSQL checks types, JSON and encoding on the way in; a time Python cannot hold
# still gets through (and used to stop both commands in psycopg's result loading).
POSTGRES_UNREADABLE = {
    "infinity": ("'infinity'", "occurred_at: not a time ('infinity')"),
    "-infinity": ("'-infinity'", "occurred_at: not a time ('-infinity')"),
    "year 10000": ("'10000-01-01 00:00:00+00'", "occurred_at: not a time ('10000-01-01 00:00:00+00')"),
}
def _cases() -> list[object]:
    cases: list[object] = []
    for column, (value, reason) in SQLITE_UNREADABLE.items():
        cases.append(pytest.param("sqlite", column, value, reason, id=f"sqlite-{column}-{value[:2]}"))
    # The dict above keeps one entry per column; the JSON column gets both kinds of damage.
    cases.append(pytest.param("sqlite", "detail", "'{\"state\": '", "detail: not JSON (Expecting value)",
                              id="sqlite-detail-json"))
    for label, (value, reason) in POSTGRES_UNREADABLE.items():
        cases.append(pytest.param("postgresql", "occurred_at", value, reason, id=f"postgresql-{label}"))
    return cases


def _damage(app: Flask, column: str, value: str, seq: int) -> None:
    # Plain SQL, as an administrator or a disk would: no ORM type stands in the way.
    tamper(app, lambda session: session.execute(
        text(f"UPDATE audit_events SET {column} = {value} WHERE seq = {seq}")  # noqa: S608
    ))


@pytest.mark.parametrize("only_backend, column, value, reason", _cases())
def test_verify_names_an_event_whose_content_cannot_be_read(
    cli_app: Flask, backend: str, only_backend: str, column: str, value: str, reason: str
) -> None:
    if backend != only_backend:
        pytest.skip(f"the damage of this case is {only_backend}'s")
    record(cli_app, 5)
    # seq orders the walk: a seq that is not a number is damaged on the last event.
    seq = 5 if column == "seq" else 3
    _damage(cli_app, column, value, seq)

    result = audit(cli_app, "verify")

    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"chain broken at seq {seq}: changed: ")
    assert f"its content cannot be read ({reason}" in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("only_backend, column, value, reason", _cases())
def test_export_writes_an_unreadable_event_raw_and_says_so(
    cli_app: Flask, backend: str, only_backend: str, column: str, value: str, reason: str
) -> None:
    if backend != only_backend:
        pytest.skip(f"the damage of this case is {only_backend}'s")
    record(cli_app, 5)
    seq = 5 if column == "seq" else 3
    _damage(cli_app, column, value, seq)

    result = audit(cli_app, "export")

    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 5 and [line["id"] for line in lines] == [1, 2, 3, 4, 5]
    damaged = lines[seq - 1]
    assert damaged["unreadable"] == [reason] or reason in damaged["unreadable"][0]
    stored = damaged["seq" if column == "seq" else column]
    assert stored is not None and stored != ""
    if value.startswith("'"):
        assert stored == value.strip("'")  # the text as the database holds it
    for n, line in enumerate(lines, start=1):
        assert ("unreadable" in line) == (n == seq)
    assert f"written as stored: its content cannot be read ({reason}" in result.stderr
    assert "1 event(s) could not be read and were written raw" in result.stderr


def test_raw_reading_verifies_what_the_orm_wrote_on_either_backend(cli_app: Flask) -> None:
    record(cli_app, 3, note="ünïcödé and \"quotes\"")
    assert audit(cli_app, "verify").exit_code == 0
    exported = [json.loads(line) for line in audit(cli_app, "export").stdout.splitlines()]
    assert exported[0]["detail"] == {"state": "language", "note": "ünïcödé and \"quotes\""}
    assert exported[0]["occurred_at"] == "2026-11-24T03:30:00+00:00"
