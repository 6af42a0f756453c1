"""``securepay calls list|show|stats``: call logs for auditors and staff.

Times are kept in UTC and shown in the utility's zone; dates given on the command line
are days in that zone (``--until`` included). Account numbers are shown by their last
four only, in every format, because auditors' screens are shared; filter with the full
number. What a caller keyed is shown as a label ("pay full balance", "PIN entered,
4 digits, wrong"): the trail holds no secret digits, and nothing here could print one.
Bad input is a one-line reason and a non-zero exit (2; 1 for an unknown call).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from callcapture import InvalidPhoneNumber, normalize_on_file
from db.autopay import SqlAutopay
from db.call_reports import (
    OUTCOMES,
    AttemptLine,
    CallLine,
    CallTrail,
    TrailEvent,
    call_trail,
    call_trails,
    calls_started,
)
from db.models import Account
from db.payment_reports import DayWindow
from ivr.cli.call_stats import CallStats, compute
from ivr.cli.report_window import day_window, fail, window_options
from ivr.flows.call_flow import CALL_FLOW
from ivr.services import current_services

__all__ = ["calls_group", "event_label"]

LIST_COLUMNS = ("call_sid", "started_at", "started_local", "duration_seconds", "caller",
                "account_last4", "outcome", "amount_paid")


# --- formatting -----------------------------------------------------------------------


def dollars(cents: int) -> str:
    """``12345`` -> ``"123.45"``: integer arithmetic, no float anywhere."""
    sign = "-" if cents < 0 else ""
    whole, rest = divmod(abs(cents), 100)
    return f"{sign}{whole}.{rest:02d}"


def span(delta: timedelta) -> str:
    """``1h 02m 03s``, ``3m 05s``, ``45s``."""
    seconds = max(int(delta.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


def _offset(delta: timedelta) -> str:
    """``+1:05`` (minutes:seconds), ``+1:02:03`` past an hour."""
    seconds = max(int(delta.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"+{hours}:{minutes:02d}:{seconds:02d}" if hours else f"+{minutes}:{seconds:02d}"


def _local(instant: datetime, zone: tzinfo, fmt: str = "%Y-%m-%d %H:%M:%S %Z") -> str:
    return instant.astimezone(zone).strftime(fmt)


def _utc(instant: datetime) -> str:
    return instant.isoformat(timespec="seconds").replace("+00:00", "Z")


def _last4(number: str | None) -> str:
    return number[-4:] if number else ""


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in (header, *rows)]
    return "\n".join(lines)


# --- what each trail event says, as a label (never a digit the caller keyed) -----------

_CHOICES = {
    "pay_full_balance": "pay full balance",
    "pay_now_stored_method": "pay now as offered, with the stored method",
    "pay_other_amount": "pay another amount",
    "last_payment": "hear the last payment",
    "autopay_in_portal": "Auto Pay (told: set it up in the portal)",
}
_LANGUAGES = {"en": "English", "es": "Spanish"}
_REJECTIONS = {
    "mismatch": "wrong",
    "locked": "refused, the account is locked",
    "caller_throttled": "refused, too many failures from this number",
    "unknown_account": "refused, no account selected",
}
_SECRETS = {"pin": "PIN", "ssn": "SSN last four"}


def _entered(kind: str, detail: Mapping[str, Any], verdict: str) -> str:
    length = detail.get("entry_length")
    digits = f"{length} digit{'' if length == 1 else 's'}" if isinstance(length, int) else "digits"
    return f"{_SECRETS[kind]} entered, {digits}, {verdict}"


def _plain(name: str) -> str:
    return name.replace("_", " ")


def event_label(event: TrailEvent) -> str:
    """What happened, in words: menu keys as the option chosen, secrets as their length."""
    name, detail = event.event, event.detail
    if name.endswith(("_verified", "_rejected")) and name.split("_")[0] in _SECRETS:
        kind, _, verdict = name.partition("_")
        if verdict == "verified":
            return _entered(kind, detail, "correct")
        reason = str(detail.get("reason", ""))
        return _entered(kind, detail, _REJECTIONS.get(reason, f"refused ({_plain(reason)})"))
    amount = detail.get("amount_cents")
    money = f"${dollars(amount)}" if isinstance(amount, int) else ""
    match name:
        case "call_started":
            return "call answered"
        case "language_chosen":
            language = _LANGUAGES.get(str(detail.get("language")), str(detail.get("language")))
            return f"{language} chosen" if detail.get("by") == "key" else f"{language} (no key: default)"
        case "call_capture":
            matches = detail.get("matches")
            if matches == "caller_id_unusable":
                return "caller ID withheld or unusable: account to be keyed"
            if isinstance(matches, int):
                return f"caller ID matched {matches} account{'' if matches == 1 else 's'} on file"
            return f"caller ID matched too many accounts ({_plain(str(matches))})"
        case "account_identified":
            if not detail.get("known"):
                return "account not found"
            via = {"caller_id": "by caller ID", "keyed": "keyed"}.get(str(detail.get("via")), "")
            ending = f", ending {detail['account_last4']}" if detail.get("account_last4") else ""
            return f"account identified {via}".rstrip() + ending
        case "account_entry_invalid":
            return f"account number entered, {detail.get('entry_length')} digits, not found"
        case "state_entered":
            return f"-> {detail.get('to_state')}"
        case "input_missed":
            return "no input" if detail.get("kind") == "no_input" else "invalid key"
        case "menu_abandoned":
            return f"{detail.get('misses')} misses in a row: call ends"
        case "menu_chosen":
            choice = str(detail.get("choice"))
            return _CHOICES.get(choice, _plain(choice))
        case "amount_entered":
            return f"amount entered: {money}"
        case "method_chosen":
            kind = "bank account" if detail.get("kind") == "bank" else "card"
            return f"stored {kind}" if detail.get("stored") else f"new {kind}"
        case "card_entry_started":
            return "new card, save it" if detail.get("save") else "new card, do not save"
        case "card_tokenized":
            return f"card taken by Twilio <Pay> ({detail.get('brand')})"
        case "card_not_collected":
            return f"card not collected ({_plain(str(detail.get('result')))})"
        case "method_saved":
            return f"{detail.get('kind')} saved for future payments"
        case "payment_attempt_opened":
            return f"confirm: attempt {detail.get('attempt_no')} for {money}"
        case "payment_succeeded":
            return f"payment taken: {money}, {detail.get('processor_id')}"
        case "payment_declined":
            return f"payment declined ({detail.get('decline_code')})"
        case "payment_cancelled":
            return "cancel: not charged"
        case "payment_outcome_unknown":
            return f"payment outcome unknown ({_plain(str(detail.get('reason')))})"
        case "payment_not_charged" | "payment_refused":
            return f"{_plain(name)} ({_plain(str(detail.get('reason')))})"
        case "pin_forgotten":
            return "forgot PIN"
        case "pin_choice_refused":
            return f"new PIN entered, refused ({_plain(str(detail.get('reason')))})"
        case "pin_confirmation_mismatch":
            return "new PIN confirmation did not match"
        case "pin_created":
            return "new PIN confirmed and set"
        case "pin_locked":
            return f"account locked after {detail.get('failures')} failed entries"
        case "transfer_requested":
            return "member services: transferred"
        case "transfer_closed":
            return "member services: closed, hours said"
        case "call_ended":
            return f"call ended: {detail.get('outcome')}"
        case "step_refused":
            return f"request refused ({_plain(str(detail.get('reason')))})"
    label = _plain(name)
    why = detail.get("reason")
    return f"{label} ({_plain(why)})" if isinstance(why, str) else label


# --- options --------------------------------------------------------------------------


@click.group("calls")
def calls_group() -> None:
    """Call logs for auditors: list calls, show one call's timeline, figures."""


# --- list -----------------------------------------------------------------------------


def _duration(line: CallLine) -> timedelta | None:
    return None if line.ended_at is None else line.ended_at - line.started_at


def _record(line: CallLine, zone: tzinfo) -> dict[str, Any]:
    duration = _duration(line)
    return {
        "call_sid": line.call_sid,
        "started_at": _utc(line.started_at),
        "started_local": line.started_at.astimezone(zone).isoformat(timespec="seconds"),
        "duration_seconds": None if duration is None else int(duration.total_seconds()),
        "caller": line.caller or "withheld",
        "account_last4": _last4(line.account_number) or None,
        "outcome": line.outcome or "active",
        "amount_paid": dollars(line.paid_cents) if line.paid_cents else None,
    }


@calls_group.command("list")
@window_options
@click.option("--account", metavar="NUMBER", help="Only calls about this account (the full number).")
@click.option("--caller", metavar="NUMBER", help="Only calls from this phone number, in any common format.")
@click.option("--outcome", metavar="OUTCOME", help="Only calls that ended so: paid, declined, abandoned, ...")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True
)
@with_appcontext
def list_command(
    since: str | None, until: str | None, account: str | None, caller: str | None,
    outcome: str | None, fmt: str,
) -> None:
    """List the calls started in the window, oldest first.

    Columns: call SID, started (the utility's time), duration, caller, account (last
    four only), outcome, amount paid. JSON and CSV add the start in UTC and give the
    duration in seconds and amounts in dollars (e.g. 123.45).
    """
    services = current_services()
    window = day_window(services, since, until)
    if outcome is not None and outcome not in OUTCOMES:
        fail(f"--outcome must be one of {', '.join(OUTCOMES)}; got {outcome!r}")
    number = None
    if caller is not None:
        try:
            number = normalize_on_file(caller, "US")
        except InvalidPhoneNumber as exc:
            fail(f"--caller {caller!r}: {exc}")
    if account is not None:
        account = account.strip()
        if not account.isdigit():
            fail(f"--account must be an account number (digits), got {account!r}")
    with services.sessions() as session:
        known = select(Account.id).where(Account.account_number == account)
        if account is not None and session.scalar(known) is None:
            fail(f"no account {account}")
        lines = calls_started(session, window, account_number=account, caller=number, outcome=outcome)
    zone = services.settings.timezone
    records = [_record(line, zone) for line in lines]
    if fmt == "json":
        click.echo(json.dumps(records, indent=2))
        return
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=LIST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        click.echo(out.getvalue(), nl=False)
        return
    if not lines:
        click.echo(f"No calls in {window}.")
        return
    rows = []
    for line in lines:
        duration = _duration(line)
        rows.append((
            line.call_sid,
            _local(line.started_at, zone),
            "active" if duration is None else span(duration),
            line.caller or "withheld",
            f"...{_last4(line.account_number)}" if line.account_number else "-",
            line.outcome or "active",
            f"${dollars(line.paid_cents)}" if line.paid_cents else "",
        ))
    header = ("CALL SID", "STARTED", "DURATION", "CALLER", "ACCOUNT", "OUTCOME", "PAID")
    click.echo(_table(header, rows))
    click.echo(f"{len(lines)} call{'' if len(lines) == 1 else 's'} in {window}; accounts by last four.")


# --- show -----------------------------------------------------------------------------


def _state_times(trail: CallTrail, now: datetime) -> list[tuple[str, timedelta]]:
    """Time spent in each state, in the order first entered (repeat visits added up)."""
    spent: dict[str, timedelta] = {}
    state, since = CALL_FLOW.start, trail.call.started_at
    for event in trail.events:
        target = event.detail.get("to_state") if event.event == "state_entered" else None
        if isinstance(target, str):
            spent[state] = spent.get(state, timedelta()) + (event.occurred_at - since)
            state, since = target, event.occurred_at
    end = trail.call.ended_at or now
    spent[state] = spent.get(state, timedelta()) + (end - since)
    return list(spent.items())


def _attempt_line(attempt: AttemptLine) -> str:
    parts = [
        f"attempt {attempt.attempt_no}",
        f"${dollars(attempt.amount_cents)}",
        attempt.status,
        f"{attempt.method_brand} ending {attempt.method_last4}",
    ]
    if attempt.processor_id:
        parts.append(f"processor {attempt.processor_id}")
    if attempt.decline_code:
        parts.append(f"decline code {attempt.decline_code}")
    if attempt.confirmation:
        parts.append(f"confirmation {attempt.confirmation}")
    return f"{', '.join(parts)} [{attempt.attempt_id}]"


@calls_group.command("show")
@click.argument("call_sid")
@with_appcontext
def show_command(call_sid: str) -> None:
    """Show one call's timeline, from its audit trail.

    Each event with the utility's time and the offset from the start, the state it
    happened in, keys as labels (never PIN or SSN digits), the time spent in each
    state, and the payment attempts with their processor ids."""
    services = current_services()
    zone = services.settings.timezone
    sid = call_sid.strip()
    with services.sessions() as session:
        trail = call_trail(session, sid)
    if trail is None:
        fail(f"no call {sid}", 1)
    call = trail.call
    click.echo(f"Call {call.call_sid}")
    click.echo(f"  started   {_local(call.started_at, zone)} ({_utc(call.started_at)})")
    if call.ended_at is not None:
        length = span(call.ended_at - call.started_at)
        click.echo(f"  ended     {_local(call.ended_at, zone)}, after {length}")
    else:
        click.echo(f"  ended     not yet (active, in {call.state})")
    click.echo(f"  caller    {call.caller or 'withheld'}")
    accounts = trail.accounts_last4
    if len(accounts) > 1:  # another account paid in the same call (key 5)
        click.echo(f"  accounts  {', '.join('ending ' + last4 for last4 in accounts)}")
    else:
        click.echo(f"  account   {'ending ' + accounts[0] if accounts else 'none'}")
    click.echo(f"  outcome   {call.outcome or 'active'}")
    click.echo(f"  paid      {'$' + dollars(call.paid_cents) if call.paid_cents else 'nothing'}")
    click.echo("")
    click.echo(f"Timeline ({getattr(zone, 'key', zone)})")
    rows = [
        (
            _offset(event.occurred_at - call.started_at),
            _local(event.occurred_at, zone, "%H:%M:%S"),
            event.state or "",
            event_label(event) + ("" if event.success or event.event == "call_ended" else "  [failed]"),
        )
        for event in trail.events
    ]
    if rows:
        click.echo(_indent(_table(("AT", "TIME", "STATE", "WHAT"), rows)))
    else:
        click.echo("  (no trail events for this call)")
    click.echo("")
    click.echo("Time in each state")
    times = [(state, span(spent)) for state, spent in _state_times(trail, services.clock.now())]
    click.echo(_indent(_table(("STATE", "TIME"), times)))
    click.echo("")
    click.echo("Payment attempts")
    if trail.attempts:
        for attempt in trail.attempts:
            click.echo(f"  {_attempt_line(attempt)}")
    else:
        click.echo("  none")


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


# --- stats ----------------------------------------------------------------------------


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def _report(stats: CallStats, window: DayWindow, autopay: str | None = None) -> list[str]:
    def plural(count: int, word: str) -> str:
        return f"{count} {word}{'' if count == 1 else 's'}"

    wait = "n/a" if stats.average_time_to_pay is None else span(stats.average_time_to_pay)
    figures = [
        ("calls", str(stats.calls)),
        ("outcomes", ", ".join(f"{name} {count}" for name, count in stats.outcomes) or "none"),
        ("containment", f"{_share(stats.contained, stats.calls)} "
                        f"({stats.contained} paid without a transfer)"),
        ("payments", f"{stats.payments} in {plural(stats.paid_calls, 'call')}"),
        ("average time to pay", f"{wait} (call start to payment taken, {stats.paid_calls} paid)"),
        ("PIN failures", f"{stats.pin_failures} in {plural(stats.calls_with_pin_failures, 'call')}; "
                         f"SSN failures: {stats.ssn_failures}"),
        ("lockouts", f"{plural(stats.lockouts, 'account')} locked; "
                     f"{plural(stats.locked_out_calls, 'call')} ended locked out"),
    ]
    if autopay is not None:
        figures.append(("Auto Pay", autopay))
    lines = [f"Calls {window}"]
    lines.extend(f"  {name + ':':<21}{value}" for name, value in figures)
    lines.append("")
    lines.append("Where callers gave up (abandoned or no input, by the last state reached)")
    if stats.gave_up:
        lines.extend(f"  {state:<18} {count}" for state, count in stats.gave_up)
    else:
        lines.append("  nowhere")
    lines.append("")
    lines.append("Funnel")
    started = stats.funnel[0].calls if stats.funnel else 0
    lines.extend(
        f"  {stage.name:<18} {stage.calls:>5}  {_share(stage.calls, started):>6}" for stage in stats.funnel
    )
    lines.append("")
    lines.append(f"Calls per hour ({window.zone.key})")
    busy = [(hour, count) for hour, count in enumerate(stats.per_hour) if count]
    if busy:
        widest = max(count for _, count in busy)
        for hour, count in busy:
            bar = "#" * max(1, round(30 * count / widest))
            lines.append(f"  {hour:02d}:00  {count:>5}  {bar}")
    else:
        lines.append("  none")
    return lines


def _autopay_figure(changes: dict[str, int], live: dict[str, int]) -> str:
    """Auto Pay changes made in the window (every channel), and agreements standing now."""
    made = ", ".join(
        f"{action.replace('_', ' ')} {changes.get(action, 0)}"
        for action in ("enrolled", "method_changed", "cancelled", "suspended")
    )
    return f"{made}; now active {live['active']}, suspended {live['suspended']}"


@calls_group.command("stats")
@window_options
@click.option("--plot", type=click.Path(dir_okay=False, writable=True, path_type=Path), metavar="FILE.png",
              help="Also draw the funnel and calls per hour into this PNG.")
@with_appcontext
def stats_command(since: str | None, until: str | None, plot: Path | None) -> None:
    """Figures for the calls started in the window.

    Outcomes, containment (paid without a transfer, as a share of calls), where
    callers gave up, average time to pay, PIN failures and lockouts, the funnel, and
    calls per hour; --plot draws the funnel and calls per hour."""
    services = current_services()
    window = day_window(services, since, until)
    if plot is not None and plot.suffix.lower() != ".png":
        fail(f"--plot must name a .png file, got {str(plot)!r}")
    if plot is not None:
        try:
            from ivr.cli.call_plot import draw  # matplotlib is loaded only when drawing
        except ImportError:
            fail("--plot needs matplotlib, an extra: pip install 'securepay[plot]'", 1)
    with services.sessions() as session:
        trails = call_trails(session, window)
        autopay = SqlAutopay(session)
        changes, live = autopay.count_changes(window.start, window.end), autopay.count_live()
    stats = compute(trails, window.zone)
    click.echo("\n".join(_report(stats, window, _autopay_figure(changes, live))))
    if plot is not None:
        try:
            draw(stats, plot, title=f"{services.settings.utility_name}: calls {window}")
        except OSError as exc:
            fail(f"cannot write {plot}: {exc.strerror or exc}", 1)
        click.echo(f"\nPlot written to {plot}")
