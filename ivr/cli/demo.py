"""``securepay demo``: a whole pay-by-phone call on this machine, with no Twilio or Stripe account.

It starts localstripe (the Stripe API emulator) on 127.0.0.1, makes a fresh SQLite
database (``demo.db`` in the instance folder, recreated each run), migrates it, imports
the demo members of ``ivr/demo_data/accounts.csv`` and sets their PINs, builds the app with
demo settings, and places one call with the softphone, which plays Twilio: it signs
every webhook as Twilio would and plays ``<Pay>`` with the Stripe connector's part
(``ivr.softphone.pay``). The call is printed as it goes, then a summary.

By default the caller follows ``DEMO_SCRIPT``; ``--interactive`` lets you press the keys
and type the card yourself. Nothing here touches the environment of the process: the
settings are built directly, and every secret in them is a demo value.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click
from flask import Flask
from sqlalchemy import select

from db import migrate
from db.importer import import_accounts
from db.models import Payment, PaymentAttempt
from ivr import create_app
from ivr.cli.minute import Minute, measure, render
from ivr.secrets import Secret
from ivr.services import Services, current_services
from ivr.settings import Settings
from ivr.softphone import (
    CallTranscript,
    FlaskTransport,
    InteractiveKeys,
    KeySource,
    Paid,
    ScriptedKeys,
    TerminalPrinter,
    walk,
)
from ivr.softphone.pay import CardSource, InteractiveCards, ScriptedCards, TwilioPayEmulator
from payments.card_tokenizer import tokenize_card
from payments.gateway import customer_idempotency_key
from payments.stripe_gateway import build_stripe_client

if TYPE_CHECKING:
    import stripe

    from payments.emulator import LocalStripe

__all__ = [
    "DEMO_CALLER",
    "DEMO_MEMBERS",
    "DEMO_SCRIPT",
    "MAIN_PATHS",
    "NEWCOMER",
    "DemoMember",
    "KeyCard",
    "MainPath",
    "Press",
    "caller_minute",
    "demo_command",
    "demo_settings",
    "load_demo_members",
]

# Demo values, printed on purpose: they protect nothing.
DEMO_PEPPER: Final = "securepay-demo-pepper-not-a-secret"
DEMO_TWILIO_TOKEN: Final = "securepay-demo-twilio-token"  # noqa: S105 - a demo value, printed
DEMO_STRIPE_KEY: Final = "sk_test_demo"
DEMO_PUBLIC_URL: Final = "https://ivr.cli.demo.test"
DEMO_CALLER: Final = "+12025550142"
NEWCOMER: Final = "+12025550143"  # no stored card: `--interactive` types one at <Pay>
TEST_VISA: Final = "4242424242424242 12/30 123"


@dataclass(frozen=True)
class Press:
    """The caller presses ``keys`` at one menu (``-``: nothing, the menu times out)."""

    keys: str
    meaning: str


@dataclass(frozen=True)
class KeyCard:
    """The caller keys a card at one ``<Pay>`` attempt (``NUMBER MM/YY CVC``; test cards only).

    ``meaning`` is what the demo prints: never the digits.
    """

    card: str
    meaning: str


# The scripted call, in order: one Press per <Gather> the IVR asks, one KeyCard per
# <Pay> attempt. The demo caller is a returning member with a stored Visa, found by
# caller ID: the fast lane (contract 2.4), the PIN and one key.
DEMO_SCRIPT: Final[tuple[Press | KeyCard, ...]] = (
    Press("-", "nothing at the language prompt: English after 2 seconds"),
    Press("4739", "the PIN of the account found for this number"),
    Press("1", "pay the full balance with the stored Visa ending in 4242, as offered"),
    Press("-", "nothing more: the IVR says goodbye"),
)


@dataclass(frozen=True)
class DemoMember:
    """A member of ``ivr/demo_data/accounts.csv``, and what the intro tells about them."""

    account_number: str
    phone: str
    pin: str | None  # None: no PIN on file, the caller creates one
    ssn_last4: str
    about: str
    stored_card: bool = False  # a Visa ending in 4242 on file, as the portal would add it


DEMO_MEMBERS: Final = (
    DemoMember("700104821", DEMO_CALLER, "4739", "6187", "the demo caller: $123.45, stored Visa", True),
    DemoMember("700205533", NEWCOMER, "5821", "2954", "$245.10, $80.00 past due, no card on file"),
    DemoMember("700306712", "+12025550144", "6154", "8362", "Spanish on file, stored Visa", True),
    DemoMember("700407390", "+12025550145", None, "5306", "no PIN yet: creates one with the SSN last four"),
    DemoMember("700508264", "+12025550146", "3958", "7195", "a business: $1,210.00"),
)


@dataclass(frozen=True)
class MainPath:
    """A path whose caller's minute the demo and ``make bench`` print (issue 9)."""

    name: str
    caller: str
    keys: tuple[str, ...]
    target_seconds: int | None
    cards: tuple[str, ...] = ()


MAIN_PATHS: Final = (
    MainPath("returning caller, stored card (English)", DEMO_CALLER, ("-", "4739", "1"), 45),
    MainPath("returning caller, stored card (Spanish)", "+12025550144", ("-", "6154", "1"), 55),
    MainPath("new card, caller ID found (English)", NEWCOMER, ("-", "5821", "1", "2", "1"), 90, (TEST_VISA,)),
    MainPath(
        "keyed account, new card (English)", "+12025550177",
        ("-", "700508264#", "3958", "1", "2", "1"), 90, (TEST_VISA,),
    ),
)


def demo_settings(database_url: str, stripe_api_base: str) -> Settings:
    """The app's settings for the demo: demo secrets, the emulator as Stripe."""
    return Settings(
        pepper=Secret(DEMO_PEPPER),
        database_url=Secret(database_url),
        twilio_auth_token=Secret(DEMO_TWILIO_TOKEN),
        public_url=DEMO_PUBLIC_URL,
        stripe_api_key=Secret(DEMO_STRIPE_KEY),
        stripe_api_base=stripe_api_base,
    )


def accounts_csv() -> str:
    """The demo accounts file shipped with the package."""
    return files("ivr").joinpath("demo_data", "accounts.csv").read_text(encoding="utf-8")


def load_demo_members(app: Flask, stripe_client: stripe.StripeClient | None = None) -> int:
    """Import the demo accounts and set the demo PINs; with the processor's client, put
    the demo Visa on file for the members that have one. Returns how many accounts."""
    with app.app_context():
        services: Services = current_services()
        now = services.clock.now()
        with services.unit_of_work() as uow:
            report = import_accounts(uow.session, accounts_csv(), services.hasher, now)
            if report.errors:
                reasons = "; ".join(f"line {error.line}: {error.reason}" for error in report.errors)
                raise click.ClickException(f"the demo accounts file was refused: {reasons}")
            for member in DEMO_MEMBERS:
                account = uow.accounts.by_number(member.account_number)
                if account is None:
                    raise click.ClickException(f"demo account {member.account_number} is not in the file")
                if member.pin is not None:
                    uow.credentials.set_pin(account.id, services.hasher.hash(member.pin), "member", now)
            uow.commit()
        if stripe_client is not None:
            for member in DEMO_MEMBERS:
                if member.stored_card:
                    _store_demo_card(services, stripe_client, member.account_number)
    return report.created + report.updated


def _store_demo_card(services: Services, client: stripe.StripeClient, account_number: str) -> None:
    """The test Visa attached to the account's processor customer and stored, as the
    portal's ``POST /payment-methods`` does."""
    gateway = services.gateway
    if gateway is None:
        raise click.ClickException("the demo needs its processor to store a card")
    token = tokenize_card(client, number="4242424242424242", exp_month=12, exp_year=2030, cvc="123")
    with services.unit_of_work() as uow:
        account = uow.accounts.by_number(account_number)
        if account is None:
            raise click.ClickException(f"demo account {account_number} is not in the file")
        key = customer_idempotency_key(account_number)
        created = gateway.create_customer(account_number, idempotency_key=key)
        customer = uow.methods.set_customer_id(account.id, created)
        info = gateway.attach_method(customer, token.processor_id)
        uow.methods.add(account.id, info, created_via="portal", now=services.clock.now())
        uow.commit()


def caller_minute(stripe_api_base: str, folder: Path) -> list[Minute]:
    """Each of ``MAIN_PATHS`` called once on a fresh demo database (``folder/minute.db``),
    and measured: the words said up to the confirmation number, the timeouts waited."""
    database = folder / "minute.db"
    fresh_database(folder, database.name)
    app = create_app(demo_settings(f"sqlite:///{database}", stripe_api_base))
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.WARNING)
    try:
        client = build_stripe_client(DEMO_STRIPE_KEY, stripe_api_base)
        load_demo_members(app, client)
        minutes = []
        for path in MAIN_PATHS:
            transcript = walk(
                FlaskTransport(app, base_url=DEMO_PUBLIC_URL),
                auth_token=DEMO_TWILIO_TOKEN,
                public_url=DEMO_PUBLIC_URL,
                from_number=path.caller,
                keys=ScriptedKeys(list(path.keys)),
                pay=TwilioPayEmulator(client, ScriptedCards(list(path.cards))),
            )
            minutes.append(measure(path.name, transcript, path.target_seconds))
        return minutes
    finally:
        logging.getLogger().setLevel(quiet)
        with app.app_context():
            current_services().engine.dispose()


def fresh_database(folder: Path, name: str = "demo.db") -> Path:
    """``folder/name``, deleted if it was there, and migrated to the newest schema."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    for leftover in (path, *(path.with_name(path.name + suffix) for suffix in ("-journal", "-wal", "-shm"))):
        leftover.unlink(missing_ok=True)
    migrate.upgrade(f"sqlite:///{path}")
    return path


def confirmations(app: Flask, call_sid: str) -> list[tuple[str, int]]:
    """The payments the ledger holds for this call: (confirmation number, cents)."""
    with app.app_context(), current_services().sessions() as session:
        rows = session.execute(
            select(Payment.confirmation, Payment.amount_cents)
            .join(PaymentAttempt, Payment.attempt_id == PaymentAttempt.id)
            .where(PaymentAttempt.call_sid == call_sid)
            .order_by(Payment.id)
        )
        return [(confirmation, cents) for confirmation, cents in rows]


@contextmanager
def _quiet_logs(show: bool) -> Iterator[None]:
    """The app logs each step to stderr; a newcomer reading the call needs only warnings."""
    root = logging.getLogger()
    level = root.level
    if not show:
        root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(level)


def _intro(caller: str, scripted: bool, keys: Sequence[str], stripe_url: str, database: Path) -> None:
    echo = click.echo
    echo("SecurePay demo: one pay-by-phone call, start to finish, on this machine.")
    echo(f"  Stripe:   localstripe, the Stripe API emulator, at {stripe_url} (nothing leaves this machine)")
    echo(f"  Database: {database} (fresh, {len(DEMO_MEMBERS)} demo members)")
    echo("  Twilio:   played by the softphone: signed webhooks, and the card step (<Pay>)")
    echo("")
    echo("Demo members (fictional 202-555-01xx numbers):")
    for member in DEMO_MEMBERS:
        pin = member.pin or f"none (SSN last four: {member.ssn_last4})"
        echo(f"  account {member.account_number}  phone {member.phone}  PIN {pin:<28}  {member.about}")
    echo("")
    if scripted:
        echo(f"The caller ({caller}) will press, menu by menu:")
        for step in DEMO_SCRIPT:
            if isinstance(step, Press):
                echo(f"  {step.keys:<5} {step.meaning}")
            else:
                echo(f"  card  {step.meaning}")
        if [step.keys for step in DEMO_SCRIPT if isinstance(step, Press)] != list(keys):
            echo(f"  (keys replaced by --keys: {','.join(keys) or 'none'})")
    else:
        echo(f"You are calling from {caller}. Press keys when asked; at <Pay>, type a Stripe test card")
        echo("(4242 4242 4242 4242, any future expiry, any 3-digit code). The digits are not shown.")
    echo("")


def _summary(
    transcript: CallTranscript, payments: list[tuple[str, int]], completed: bool, database: Path, caller: str
) -> None:
    echo = click.echo
    echo("")
    echo("Summary")
    ending = {"ivr": "the IVR hung up", "caller": "the caller hung up", None: "the call ended"}
    status = "completed as scripted" if completed else "did NOT complete as scripted"
    echo(f"  The call {transcript.call_sid}: {status}; {ending[transcript.hung_up_by]}.")
    for error in transcript.errors:
        echo(f"  Error: {error.message}")
    pays = [event.params.get("Result", "") for event in transcript.events if isinstance(event, Paid)]
    if pays:
        echo(f"  <Pay>: {', '.join(pays)} (the card went to localstripe; the IVR got a PaymentMethod id)")
    for confirmation, cents in payments:
        echo(f"  Payment taken: ${cents // 100:,}.{cents % 100:02d}, confirmation number {confirmation}")
    if not payments:
        echo("  No payment was taken.")
    echo(f"  Database: {database} (kept until the next demo; every call and step is in it)")
    echo("  Try it yourself: securepay demo --interactive   (you press the keys and type the card)")
    echo(f"  Another member: securepay demo --interactive --from {DEMO_MEMBERS[2].phone}")
    echo(
        f"  Or this database with securepay call: SECUREPAY_DATABASE_URL=sqlite:///{database} "
        f"SECUREPAY_PEPPER={DEMO_PEPPER} TWILIO_AUTH_TOKEN={DEMO_TWILIO_TOKEN} "
        f"securepay call --from {caller}"
    )
    echo("    (its <Pay> needs STRIPE_API_KEY, and STRIPE_API_BASE for an emulator:")
    echo("    the demo's localstripe stops with the demo)")


def _emulator() -> LocalStripe:
    """localstripe comes with the ``demo`` extra; the rest of ``securepay`` runs without it."""
    try:
        from payments.emulator import LocalStripe
    except ImportError:
        raise click.ClickException(
            "securepay demo needs the Stripe emulator: pip install 'securepay[demo]'"
        ) from None
    return LocalStripe()


def _script_keys(keys: str | None) -> list[str]:
    if keys is None:
        return [step.keys for step in DEMO_SCRIPT if isinstance(step, Press)]
    return keys.split(",") if keys.strip() else []


def _completed(transcript: CallTranscript, keys: KeySource, payments: list[tuple[str, int]]) -> bool:
    """No error, every scripted key used, and a <Pay> reached ends in a payment taken."""
    if not transcript.ok:
        return False
    if isinstance(keys, ScriptedKeys) and keys.remaining:
        return False
    paid = [event for event in transcript.events if isinstance(event, Paid)]
    return not paid or bool(payments)


@click.command("demo")
@click.option("--interactive", is_flag=True, help="Press the keys and type the card yourself.")
@click.option(
    "--from",
    "caller",
    default=None,
    help=f"The caller ID of the call (default: {DEMO_CALLER}, with a stored card; "
    f"--interactive: {NEWCOMER}, with none, to type a test card).",
)
@click.option(
    "--keys", default=None, help="Replace the scripted keys, e.g. -,4739,1,- ('-': no input)."
)
@click.option(
    "--card",
    "cards",
    multiple=True,
    help="Replace the scripted card: 'NUMBER MM/YY CVC' (a Stripe test card; repeat: one per attempt).",
)
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for demo.db, which is recreated (default: the app's instance folder).",
)
@click.option("--logs", is_flag=True, help="Show the app's log lines (stderr) during the call.")
@click.pass_context
def demo_command(
    ctx: click.Context,
    interactive: bool,
    caller: str,
    keys: str | None,
    cards: tuple[str, ...],
    folder: Path | None,
    logs: bool,
) -> None:
    """A whole pay-by-phone call on this machine: local Stripe emulator, fresh database, demo members."""
    caller = caller or (NEWCOMER if interactive else DEMO_CALLER)
    scripted_keys = _script_keys(keys)
    try:
        key_source: KeySource = InteractiveKeys() if interactive else ScriptedKeys(scripted_keys)
        card_source: CardSource = (
            InteractiveCards()
            if interactive and not cards
            else ScriptedCards(cards or [step.card for step in DEMO_SCRIPT if isinstance(step, KeyCard)])
        )
    except ValueError as exc:  # neither message repeats what was typed
        raise click.BadParameter(str(exc)) from None
    database = (folder or Path(Flask("ivr").instance_path)) / "demo.db"
    with _emulator() as emulator, _quiet_logs(logs):
        _intro(caller, not interactive, scripted_keys, emulator.base_url, database)
        fresh_database(database.parent)
        app = create_app(demo_settings(f"sqlite:///{database}", emulator.base_url))
        if not logs:
            logging.getLogger().setLevel(logging.WARNING)  # create_app set INFO
        try:
            client = build_stripe_client(DEMO_STRIPE_KEY, emulator.base_url)
            load_demo_members(app, client)
            transcript = walk(
                FlaskTransport(app, base_url=DEMO_PUBLIC_URL),
                auth_token=DEMO_TWILIO_TOKEN,
                public_url=DEMO_PUBLIC_URL,
                from_number=caller,
                keys=key_source,
                pay=TwilioPayEmulator(client, card_source),
                observer=TerminalPrinter(show_keys=not interactive),
            )
            payments = confirmations(app, transcript.call_sid)
        finally:
            with app.app_context():
                current_services().engine.dispose()
        minutes = caller_minute(emulator.base_url, database.parent)
    completed = _completed(transcript, key_source, payments)
    _summary(transcript, payments, completed, database, caller)
    click.echo("")
    click.echo("The caller's minute (each main path called once on a fresh copy of the demo members)")
    for line in render(minutes):
        click.echo(line)
    if not completed:
        ctx.exit(1)
