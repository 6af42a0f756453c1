"""``securepay audit verify|seal|anchor|export|scan-secrets``, for auditors (SECURITY 17-20).

``verify`` walks the trail's hash chain (``db.audit_chain``) and exits 0 with a one-line
summary, 1 naming the first changed, removed or inserted event, or events left unsealed
longer than ``--grace`` (no sealer has run). ``seal`` seals what is committed and
unsealed, once (``db.audit_sealer``; for operators and a timer). ``anchor`` prints the
chain's head as a JSON line, to be kept where the database's administrator cannot write;
``verify --anchor`` then also proves the anchored events are still there, unchanged.
``export`` writes the sealed trail as JSON lines for a SIEM (an event that cannot be
read is written as stored, and named on stderr: exit 1). ``scan-secrets`` looks for card
numbers, security codes and given secrets in the database, logs and exports; the exact
secrets come from a file, never from the command line (``ps`` shows arguments).

Exit status: 0 fine, 1 a problem found, 2 bad input (a one-line reason on stderr).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from flask.cli import with_appcontext
from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from db.audit_chain import (
    UNSEALED_GRACE,
    AnchorFileError,
    StoredEvent,
    make_anchor,
    read_anchors,
    read_head,
    read_stored,
    verify,
)
from db.audit_sealer import seal_pending, unsealed_count
from db.models import AuditEvent
from ivr.cli.report_window import fail, parse_day
from ivr.secret_scan import scan_database, scan_files
from ivr.services import current_services

__all__ = ["audit_group"]

EXPORT_FIELDS = (
    "seq", "id", "occurred_at", "occurred_at_local", "event", "success", "call_sid",
    "account_id", "actor", "os_user", "host", "process", "detail", "prev_hash", "hash",
)


@click.group("audit")
def audit_group() -> None:
    """Auditors: prove the call trail is complete and untampered; export it; scan for secrets."""


# --- verify and anchor ----------------------------------------------------------------


@audit_group.command("verify")
@click.option(
    "--anchor", "anchor_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
    help="A file of anchors (from `audit anchor`): each anchored event must still be in the chain.",
)
@click.option(
    "--grace", type=click.IntRange(min=0), default=int(UNSEALED_GRACE.total_seconds()), show_default=True,
    metavar="SECONDS", help="Name events left unsealed longer than this (then exit 1).",
)
@with_appcontext
def verify_command(anchor_files: tuple[Path, ...], grace: int) -> None:
    """Walk the trail's hash chain; name the first changed, removed or inserted event,
    and events left unsealed longer than the grace."""
    anchors = []
    for path in anchor_files:
        try:
            anchors.extend(read_anchors(path.read_text(encoding="utf-8").splitlines(), str(path)))
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror}")
        except AnchorFileError as exc:
            fail(str(exc))
    services = current_services()
    with services.sessions() as session:
        report = verify(session, anchors, now=services.clock.now(), grace=timedelta(seconds=grace))
    if report.problem is not None:
        click.echo(f"{report.problem} ({report.count} events read)", err=True)
    for event in report.overdue:
        click.echo(f"{event} (grace {grace} s)", err=True)
    if report.overdue_count > len(report.overdue):
        more = report.overdue_count - len(report.overdue)
        click.echo(f"... and {more} more unsealed past the grace", err=True)
    if report.overdue_count:
        click.echo(
            f"{report.overdue_count} event(s) unsealed longer than {grace} s: is a sealer running? "
            "(`securepay audit seal`)",
            err=True,
        )
    if not report.sound:
        raise click.exceptions.Exit(1)
    checked = report.anchors_checked
    matched = f", {checked} anchor{'' if checked == 1 else 's'} matched" if anchor_files else ""
    waiting = f", {report.unsealed} not sealed yet (within {grace} s)" if report.unsealed else ""
    click.echo(
        f"{report.count} events, chain intact, head seq {report.head.seq} "
        f"hash {report.head.hash[:16]}…{matched}{waiting}"
    )


@audit_group.command("seal")
@with_appcontext
def seal_command() -> None:
    """Seal the events written and not yet sealed (number and hash them after the head).

    The web workers' sealers do this moments after each commit; this is for operators
    and a timer. When another sealer holds the lock, it leaves the work to that one.
    """
    services = current_services()
    sealed = seal_pending(services.engine)
    with services.sessions() as session:
        head, left = read_head(session), unsealed_count(session)
    rest = f", {left} left to the sealer at work" if left else ""
    click.echo(f"{sealed} event(s) sealed, head seq {head.seq}{rest}")


@audit_group.command("anchor")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path),
    help="Append the anchor line to this file (default: print it).",
)
@with_appcontext
def anchor_command(out: Path | None) -> None:
    """Record the chain's head (count, seq, hash, time) as one JSON line.

    Ship the line somewhere the database's administrator cannot write (a WORM bucket, a
    ticket, an e-mail to the auditor): a rewritten or truncated trail then fails
    ``securepay audit verify --anchor FILE``.
    """
    services = current_services()
    with services.sessions() as session:
        line = make_anchor(session, services.clock.now()).to_json()
    if out is None:
        click.echo(line)
        return
    try:
        with out.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror}")
    click.echo(f"anchor appended to {out}: {line}")


# --- export ---------------------------------------------------------------------------


def _start_of(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, zone).astimezone(UTC)


def export_line(event: StoredEvent, zone: ZoneInfo) -> dict[str, Any]:
    """One event as the SIEM gets it: every field, the time in UTC and in the utility's zone.

    An event whose content cannot be read is written as the database holds it: each
    field's raw text, ``occurred_at_local`` null, and ``unreadable`` saying which field
    and why (``verify`` names it as changed).
    """
    if event.content is None:
        return {
            "seq": event.raw["seq"],
            "id": event.id,
            "occurred_at": event.raw["occurred_at"],
            "occurred_at_local": None,
            "timezone": zone.key,
            **{name: event.raw[name] for name in ("event", "success", "call_sid", "account_id", "actor",
                                                  "os_user", "host", "process", "detail")},
            "prev_hash": event.prev_hash,
            "hash": event.hash,
            "unreadable": list(event.unreadable),
        }
    content = event.content
    occurred_at: datetime = content["occurred_at"]
    return {
        "seq": content["seq"],
        "id": event.id,
        "occurred_at": occurred_at.astimezone(UTC).isoformat(),
        "occurred_at_local": occurred_at.astimezone(zone).isoformat(),
        "timezone": zone.key,
        "event": content["event"],
        "success": content["success"],
        "call_sid": content["call_sid"],
        "account_id": content["account_id"],
        "actor": content["actor"],
        "os_user": content["os_user"],
        "host": content["host"],
        "process": content["process"],
        "detail": content["detail"],
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def _events(session: Session, start: datetime | None, end: datetime | None) -> Iterator[StoredEvent]:
    """The sealed events of the window, in chain order."""
    occurred_at = AuditEvent.__table__.c.occurred_at
    where: list[ColumnElement[bool]] = [AuditEvent.__table__.c.seq.is_not(None)]
    if start is not None:
        where.append(occurred_at >= start)
    if end is not None:
        where.append(occurred_at < end)
    yield from read_stored(session, *where)


@audit_group.command("export")
@click.option("--since", metavar="YYYY-MM-DD", help="First day, in the utility's zone (default: the start).")
@click.option("--until", metavar="YYYY-MM-DD", help="Last day, included (default: now).")
@with_appcontext
def export_command(since: str | None, until: str | None) -> None:
    """Print the sealed trail as JSON lines for a SIEM, in chain order (one event per line).

    Events not sealed yet are left for the next export (stderr says how many). An event
    whose content cannot be read is written raw, with an ``unreadable`` field, and named
    on stderr; the exit status is then 1.
    """
    services = current_services()
    zone = services.settings.timezone
    first, last = parse_day("--since", since), parse_day("--until", until)
    if first is not None and last is not None and last < first:
        fail(f"--since ({first}) is after --until ({last})")
    start = None if first is None else _start_of(first, zone)
    end = None if last is None else _start_of(last + timedelta(days=1), zone)
    unreadable = 0
    with services.sessions() as session:
        for event in _events(session, start, end):
            click.echo(json.dumps(export_line(event, zone), sort_keys=False, ensure_ascii=False))
            if event.content is None:
                unreadable += 1
                where = f"seq {event.seq}" if event.seq is not None else f"seq {event.raw['seq']!r}"
                click.echo(
                    f"{where} (row id {event.id}) written as stored: its content cannot be read "
                    f"({event.why_unreadable})",
                    err=True,
                )
        left = unsealed_count(session)
    if left:
        click.echo(f"{left} event(s) not sealed yet are not in this export", err=True)
    if unreadable:
        click.echo(f"{unreadable} event(s) could not be read and were written raw", err=True)
        raise click.exceptions.Exit(1)


# --- scan-secrets ---------------------------------------------------------------------


def _secrets(path: Path | None) -> list[str]:
    if path is None:
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


@audit_group.command("scan-secrets")
@click.option("--log", "logs", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A log file to scan (repeatable).")
@click.option("--export", "exports", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An export (payments, trail) to scan (repeatable).")
@click.option("--secrets-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Exact secrets to look for (PINs, SSN digits), one per line; never on the command line.")
@with_appcontext
def scan_secrets_command(
    logs: tuple[Path, ...], exports: tuple[Path, ...], secrets_file: Path | None
) -> None:
    """Look for card numbers, security codes and given secrets in the database, logs and exports.

    Each finding names where it is and masks what it found. Exit 1 when anything is found.
    """
    secrets = _secrets(secrets_file)
    services = current_services()
    findings = scan_database(services.engine, secrets) + scan_files([*logs, *exports], secrets)
    for finding in findings:
        click.echo(str(finding))
    scanned = f"the database, {len(logs)} log(s), {len(exports)} export(s)"
    looked_for = "card numbers, security codes" + (f" and {len(secrets)} given secret(s)" if secrets else "")
    if findings:
        click.echo(f"{len(findings)} finding(s) in {scanned}", err=True)
        raise click.exceptions.Exit(1)
    click.echo(f"clean: no {looked_for} in {scanned}")
