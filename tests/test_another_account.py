"""Contract 2.11 (changed 2026-12-01): key 5 pays another account in the same call.

The caller ID's other accounts (one: its PIN step at once; several: a choice; none:
keyed entry), that account's own PIN (its failures counted on it), its balance; nothing
of the first account said again. The trail shows both; `calls show` and `calls stats`
count one call and two payments.
"""

from __future__ import annotations

import pytest
import stripe
from flask import Flask
from sqlalchemy import select

from db.models import AuditEvent, PinCredential
from ivr.cli.calls import calls_group
from ivr.services import current_services
from ivr.softphone import Said, Softphone
from tests.ledger_checks import books, processor_charges
from tests.members import PIN, Member, add_members
from tests.wallets import store_card

CALLER = "+12025550143"
SECOND_PIN = "0591"


def two_accounts(app: Flask, client: stripe.StripeClient, *, language: str = "") -> list[int]:
    ids = add_members(
        app,
        Member("10004821", phones=[CALLER], language=language),
        Member("20003355", phones=[CALLER], pin=SECOND_PIN, balance="60.00", language=language),
    )
    store_card(app, client, "10004821")
    store_card(app, client, "20003355", number="5555555555554444")
    return ids


def said_after(call_text: str, marker: str) -> str:
    return call_text.split(marker, 1)[1]


def test_five_after_a_payment_pays_the_other_account_with_its_own_pin(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient
) -> None:
    first_id, second_id = two_accounts(app, stripe_client)
    # English, the first of two accounts, its PIN, pay now; 5; the second (the only other
    # one: its PIN step at once), its PIN, pay now
    call = phone.call(CALLER, ["1", "1", PIN, "1", "5", SECOND_PIN, "1"])
    text = call.said_text()
    after = said_after(text, "5 to pay another account. Or just hang up.")
    assert after.startswith("\nWe found the account ending in 3 3 5 5.\nEnter your 4-digit PIN.")
    assert "Your balance is 60 dollars, due November 30." in after
    assert "Press 1 to pay 60 dollars on account ending 3 3 5 5 with Visa ending 4 4 4 4." in after
    assert "4 8 2 1" not in after and "123 dollars" not in after  # nothing of the first again
    ledger = books(app)
    paid = sorted((p.account_id, p.amount_cents) for p in ledger.payments)
    assert paid == [(first_id, 12345), (second_id, 6000)]
    assert len(processor_charges(stripe_client)) == 2
    with app.app_context(), current_services().sessions() as session:
        identified = session.scalars(
            select(AuditEvent.account_id)
            .where(AuditEvent.call_sid == call.call_sid, AuditEvent.event == "pin_verified")
            .order_by(AuditEvent.id)
        ).all()
    assert identified == [first_id, second_id]  # the trail shows both accounts, each verified


def test_five_in_spanish_at_the_account_menu(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient
) -> None:
    two_accounts(app, stripe_client, language="es")
    call = phone.call(CALLER, ["-", "1", PIN, "5", SECOND_PIN])
    after = said_after(call.said_text(), "5 otra cuenta")
    assert "Encontramos la cuenta que termina en 3 3 5 5." in after
    assert "Su saldo es de 60 dólares" in after
    assert "4 8 2 1" not in after
    said = [e for e in call.events if isinstance(e, Said)]
    assert said[-1].language == "es-US"


def test_the_second_accounts_pin_failures_count_on_that_account(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient
) -> None:
    first_id, second_id = two_accounts(app, stripe_client)
    call = phone.call(CALLER, ["1", "1", PIN, "5", "0000", "1", "9999"])
    assert "That PIN does not match our records." in call.said_text()
    with app.app_context(), current_services().unit_of_work() as uow:
        first = uow.session.get(PinCredential, first_id)
        second = uow.session.get(PinCredential, second_id)
        assert first is not None and second is not None
        assert (first.failure_count, second.failure_count) == (0, 2)


def test_five_with_no_other_account_on_file_goes_to_keyed_entry(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]), Member("30007788", pin=SECOND_PIN, balance="9.50"))
    call = phone.call(CALLER, ["1", PIN, "5", "30007788#", SECOND_PIN])
    after = said_after(call.said_text(), "5 another account, 0 member services.")
    assert after.startswith("\nEnter your account number, then press pound.")
    assert "Your balance is 9 dollars and 50 cents" in after


def test_five_with_several_others_offers_only_the_others(app: Flask, phone: Softphone) -> None:
    add_members(
        app,
        Member("10004821", phones=[CALLER]),
        Member("20003355", phones=[CALLER]),
        Member("40006677", phones=[CALLER]),
    )
    call = phone.call(CALLER, ["1", "2", PIN, "5"])  # the second of three, then 5
    after = said_after(call.said_text(), "5 another account, 0 member services.")
    assert after == (
        "\nPress 1 for the account ending in 4 8 2 1.\n"
        "Press 2 for the account ending in 6 6 7 7.\n"
        "Press 9 for another account number."
    )


def test_calls_show_and_stats_count_one_call_two_payments(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient
) -> None:
    two_accounts(app, stripe_client)
    call = phone.call(CALLER, ["1", "1", PIN, "1", "5", SECOND_PIN, "1"])
    runner = app.test_cli_runner()
    shown = runner.invoke(calls_group, ["show", call.call_sid])
    assert shown.exit_code == 0, shown.output
    assert "  accounts  ending 4821, ending 3355\n" in shown.output
    assert "  paid      $183.45\n" in shown.output
    assert "account identified by caller ID, ending 3355" in shown.output
    assert shown.output.count("pay now as offered, with the stored method") == 2
    assert "another account chosen" in shown.output
    assert shown.output.split("Payment attempts\n")[1].count("succeeded") == 2
    stats = runner.invoke(calls_group, ["stats", "--since", "2026-11-24", "--until", "2026-11-24"])
    assert stats.exit_code == 0, stats.output
    assert "  calls:               1\n" in stats.output
    assert "  payments:            2 in 1 call\n" in stats.output


@pytest.mark.parametrize("keys", [["1", "1", PIN, "5", "*", "20003355#"]])
def test_star_after_five_leads_to_keyed_entry(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient, keys: list[str]
) -> None:
    two_accounts(app, stripe_client)
    call = phone.call(CALLER, [*keys, SECOND_PIN])
    assert "Your balance is 60 dollars" in call.said_text()
