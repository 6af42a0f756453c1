"""Issue 10, point 5: the Auto Pay drafts. Each bill due on the day is charged once, with
the agreed method, off-session, through the phone's ledger; whatever repeats or fails.

Every case asserts the processor's record (localstripe's PaymentIntents) and the ledger.
localstripe ignores idempotency keys, so these prove that our ledger and its row lock,
not the processor, keep a bill from being drafted twice. Stripe's rules for charging a
saved card with the customer absent: https://docs.stripe.com/payments/save-and-reuse
("off_session=true ... confirm=true"); an indeterminate 500 is retried with the same
idempotency key, never a new one: https://docs.stripe.com/error-low-level#idempotency
"""

from __future__ import annotations

from datetime import date, timedelta

import stripe
from flask import Flask
from sqlalchemy import select

from db.models import AuditEvent, AutopayDraft
from ivr.services import current_services
from payments.gateway import InvalidPaymentMethod, OutcomeUnknown
from tests.autopay_setup import DUE, enroll, live, run, save_card
from tests.faulty_gateway import WorkerCrashed
from tests.ledger_checks import DECLINES_AT_CHARGE, books, processor_charges
from tests.members import Member, add_members
from tests.test_exactly_once import at_once, faulty

ACCOUNT = "10004821"


def enrolled(app: Flask, client: stripe.StripeClient, card: str | None = None, **member: str) -> int:
    (account_id,) = add_members(app, Member(ACCOUNT, **member))  # type: ignore[arg-type]
    method = save_card(app, client, ACCOUNT, card) if card else save_card(app, client, ACCOUNT)
    enroll(app, method)
    return account_id


def assert_drafted_once(app: Flask, client: stripe.StripeClient, amount: int = 12345) -> None:
    ledger = books(app)
    (charge,) = processor_charges(client)
    (attempt,) = ledger.attempts
    (payment,) = ledger.payments
    assert attempt.status == "succeeded" and attempt.call_sid.startswith("autopay-")
    assert payment.processor_id == attempt.processor_id == charge.id
    assert payment.amount_cents == charge.amount == amount
    assert charge.metadata["attempt_id"] == attempt.id  # the key is the attempt, written first


def drafts(app: Flask) -> list[AutopayDraft]:
    with app.app_context(), current_services().sessions() as session:
        rows = list(session.scalars(select(AutopayDraft).order_by(AutopayDraft.id)))
        session.expunge_all()
        return rows


def test_a_bill_is_charged_on_its_due_date_and_not_before(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    enrolled(app, stripe_client)
    before = run(app, DUE - timedelta(days=1))
    assert not before.lines and not processor_charges(stripe_client)
    report = run(app, DUE)
    assert [line.result for line in report.lines] == ["charged"]
    assert report.lines[0].amount_cents == 12345 and report.lines[0].confirmation
    assert_drafted_once(app, stripe_client)
    (draft,) = drafts(app)
    assert (draft.status, draft.due_date, draft.amount_cents) == ("succeeded", DUE, 12345)


def test_a_second_run_charges_nothing(app: Flask, stripe_client: stripe.StripeClient) -> None:
    enrolled(app, stripe_client)
    run(app)
    again = run(app)
    assert [line.result for line in again.lines] == ["skipped"]
    assert "drafted already" in again.lines[0].reason
    assert_drafted_once(app, stripe_client)


def test_two_runs_at_once_charge_the_bill_once(app: Flask, stripe_client: stripe.StripeClient) -> None:
    enrolled(app, stripe_client)
    reports = []

    class _Done:
        data = b""

    def one_run() -> _Done:
        reports.append(run(app))
        return _Done()

    at_once(one_run, one_run)  # type: ignore[arg-type]
    results = sorted(line.result for report in reports for line in report.lines)
    assert results == ["charged", "skipped"]
    assert_drafted_once(app, stripe_client)


def test_a_run_killed_before_the_charge_is_resumed_with_the_same_key(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    enrolled(app, stripe_client)
    faulty(app, "crash_before_charge")
    try:
        run(app)
    except WorkerCrashed:
        pass
    else:
        raise AssertionError("the run should have died")
    (pending,) = books(app).attempts
    assert pending.status == "pending"  # written before the processor was asked
    report = run(app)
    assert [line.result for line in report.lines] == ["charged"]
    assert_drafted_once(app, stripe_client)
    assert books(app).attempts[0].id == pending.id


def test_a_run_killed_after_the_charge_finds_it_and_does_not_charge_again(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    enrolled(app, stripe_client)
    gateway = faulty(app, "crash_after_charge")
    try:
        run(app)
    except WorkerCrashed:
        pass
    assert len(processor_charges(stripe_client)) == 1 and not books(app).payments
    report = run(app)
    assert [line.result for line in report.lines] == ["charged"]
    assert gateway.charges_sent == 1  # found at the processor
    assert_drafted_once(app, stripe_client)


def test_a_bill_paid_early_by_phone_is_not_drafted(app: Flask, stripe_client: stripe.StripeClient) -> None:
    from tests.ledger_factory import Ledger

    account_id = enrolled(app, stripe_client)
    with app.app_context():
        services = current_services()
        Ledger(services.sessions).pay(account_id, 12345, at=services.clock.now())
    report = run(app)
    assert [(line.result, line.reason) for line in report.lines] == [("skipped", "nothing due: paid already")]
    assert not processor_charges(stripe_client) and not drafts(app)


def test_a_part_paid_early_leaves_the_rest_drafted(app: Flask, stripe_client: stripe.StripeClient) -> None:
    from tests.ledger_factory import Ledger

    account_id = enrolled(app, stripe_client)
    with app.app_context():
        services = current_services()
        Ledger(services.sessions).pay(account_id, 2345, at=services.clock.now())
    report = run(app)
    assert [(line.result, line.amount_cents) for line in report.lines] == [("charged", 10000)]
    (charge,) = processor_charges(stripe_client)
    assert charge.amount == 10000


def test_a_credit_or_the_bill_already_issued_at_enrollment_is_not_drafted(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    (account_id,) = add_members(app, Member(ACCOUNT))
    enroll(app, save_card(app, stripe_client, ACCOUNT), first_due_after=DUE)  # enrolled after issue
    assert not run(app).lines
    assert not processor_charges(stripe_client)
    assert live(app, account_id) is not None


def test_a_decline_leaves_the_bill_unpaid_and_suspends_after_two(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    from db.importer import import_accounts
    from tests.members import csv_text

    account_id = enrolled(app, stripe_client, DECLINES_AT_CHARGE)
    first = run(app)
    assert [line.result for line in first.lines] == ["declined"]
    assert "Auto Pay suspended" not in first.lines[0].reason
    enrollment = live(app, account_id)
    assert enrollment is not None and enrollment.status == "active" and enrollment.consecutive_declines == 1
    # The next bill is imported and declined too: the agreement is suspended.
    nxt = date(2026, 12, 31)
    with app.app_context():
        services = current_services()
        with services.unit_of_work() as uow:
            import_accounts(uow.session, csv_text(Member(ACCOUNT, due_date=str(nxt))), services.hasher,
                            services.clock.now())
            uow.commit()
    second = run(app, nxt)
    assert [line.result for line in second.lines] == ["declined"]
    assert "Auto Pay suspended" in second.lines[0].reason
    enrollment = live(app, account_id)
    assert enrollment is not None
    assert (enrollment.status, enrollment.status_reason) == ("suspended", "declines")
    ledger = books(app)
    assert [a.status for a in ledger.attempts] == ["declined", "declined"]
    assert not ledger.payments and not processor_charges(stripe_client)
    assert [d.status for d in drafts(app)] == ["declined", "declined"]
    # A suspended agreement drafts nothing more.
    assert [line.result for line in run(app, nxt).lines] == ["skipped"]


def test_a_declined_draft_is_not_tried_again(app: Flask, stripe_client: stripe.StripeClient) -> None:
    enrolled(app, stripe_client, DECLINES_AT_CHARGE)
    run(app)
    again = run(app)
    assert [line.result for line in again.lines] == ["skipped"]
    assert [a.status for a in books(app).attempts] == ["declined"]


def test_an_unknown_outcome_is_left_for_reconcile_and_never_charged_again(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    enrolled(app, stripe_client)
    gateway = faulty(app, "timeout_before_charge")  # the adapter's word for a 5xx on a write
    report = run(app)
    assert [line.result for line in report.lines] == ["unknown"]
    assert "reconcile" in report.lines[0].reason
    later = run(app)
    assert [line.result for line in later.lines] == ["skipped"]
    assert gateway.charges_sent == 0 and not processor_charges(stripe_client)
    ledger = books(app)
    assert [a.status for a in ledger.attempts] == ["unknown"] and not ledger.payments
    assert [d.status for d in drafts(app)] == ["unknown"]


def test_a_processor_server_error_is_unknown_too(app: Flask, stripe_client: stripe.StripeClient) -> None:
    enrolled(app, stripe_client)
    services = app.extensions["securepay"]
    real = services.gateway

    class ServerError:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def charge(self, **_kwargs: object) -> object:
            raise OutcomeUnknown("the payment processor failed (HTTP 500)")

    services.gateway = ServerError()
    assert [line.result for line in run(app).lines] == ["unknown"]
    services.gateway = real
    assert [line.result for line in run(app).lines] == ["skipped"]
    assert not processor_charges(stripe_client)
    (attempt,) = books(app).attempts  # one attempt, one key: nothing retried under another
    assert attempt.status == "unknown"


def test_an_unreachable_processor_defers_the_draft_to_the_next_run_with_the_same_key(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    enrolled(app, stripe_client)
    faulty(app, "unavailable")
    report = run(app)
    assert [line.result for line in report.lines] == ["deferred"]
    (attempt,) = books(app).attempts
    assert attempt.status == "pending" and not processor_charges(stripe_client)
    assert [line.result for line in run(app).lines] == ["charged"]
    assert_drafted_once(app, stripe_client)
    assert books(app).attempts[0].id == attempt.id


def test_the_run_leaves_a_trail(app: Flask, stripe_client: stripe.StripeClient) -> None:
    enrolled(app, stripe_client)
    run(app)
    with app.app_context(), current_services().sessions() as session:
        events = list(session.scalars(
            select(AuditEvent.event).where(AuditEvent.actor == "autopay").order_by(AuditEvent.id)
        ))
    assert events == ["autopay_draft_opened", "autopay_draft_succeeded"]



def test_a_method_detached_at_the_processor_suspends_auto_pay_at_once(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    # Stripe refuses a PaymentMethod no longer attached to the customer (a 400 naming the
    # payment_method, which the adapter turns into InvalidPaymentMethod); localstripe
    # charges it anyway, so the adapter's answer is played here.
    account_id = enrolled(app, stripe_client)
    services = app.extensions["securepay"]
    real = services.gateway

    class Detached:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def charge(self, **_kwargs: object) -> object:
            raise InvalidPaymentMethod("the payment method cannot be used (detached)")

    services.gateway = Detached()
    report = run(app)
    assert [line.result for line in report.lines] == ["declined"]
    assert "Auto Pay suspended" in report.lines[0].reason
    enrollment = live(app, account_id)
    assert enrollment is not None
    assert (enrollment.status, enrollment.status_reason) == ("suspended", "method_unusable")
    assert not processor_charges(stripe_client)


def test_the_run_stops_drafting_at_its_cap_and_a_later_run_goes_on(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    import dataclasses

    add_members(app, Member(ACCOUNT), Member("10005555"))
    for number in (ACCOUNT, "10005555"):
        enroll(app, save_card(app, stripe_client, number))
    services = app.extensions["securepay"]
    capped = services.settings
    services.settings = dataclasses.replace(capped, autopay_run_cap_cents=20000)  # $200 a run
    first = run(app)
    assert sorted(line.result for line in first.lines) == ["charged", "skipped"]
    skipped = next(line for line in first.lines if line.result == "skipped")
    assert skipped.reason.startswith("the run's cap is reached") and skipped.amount_cents == 12345
    assert len(processor_charges(stripe_client)) == 1
    second = run(app)  # the next run drafts what the cap left, and only that
    assert sorted(line.result for line in second.lines) == ["charged", "skipped"]
    assert len(processor_charges(stripe_client)) == 2 and len(books(app).payments) == 2


def test_a_bill_above_the_phone_maximum_is_left_for_the_member(
    app: Flask, stripe_client: stripe.StripeClient
) -> None:
    enrolled(app, stripe_client, balance="6000.00")
    report = run(app)
    assert [(line.result, line.reason) for line in report.lines] == [
        ("skipped", "above the maximum payment: left for the member")
    ]
    assert not processor_charges(stripe_client)
