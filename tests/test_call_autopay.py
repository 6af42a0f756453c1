"""Contract 2.10 and issue 10, point 2: Auto Pay by phone, through signed webhooks and
the walker (``securepay call``'s), in both languages: enroll with a stored card and a
new card, the terms said and written, declined, the bill already issued offered,
change, cancel, a removed method suspending.

A new card is saved for off-session use (Stripe: "save a card and charge it later" with
the customer absent, https://docs.stripe.com/payments/save-and-reuse); the member is
told so in the terms.
"""

from __future__ import annotations

from collections.abc import Callable

import stripe
from flask import Flask
from sqlalchemy import select

from db.models import AutopayChange, AutopayEnrollment, AutopayNotice, PaymentMethod
from ivr.portal import wallet
from ivr.services import current_services
from ivr.softphone import Softphone
from tests.autopay_setup import enroll, live, save_card
from tests.ledger_checks import VISA, books, processor_charges
from tests.members import PIN, Member, add_members
from tests.twilio_requests import RawCall, signed_post

PayPhone = Callable[..., Softphone]
CALLER = "+12025550143"
ACCOUNT = "10004821"
EN = ["1", PIN]
ES = ["2", PIN]
MASTERCARD = "5555555555554444 12/30 123"


def member(**kwargs: str) -> Member:
    return Member(ACCOUNT, phones=[CALLER], email="maria.rivera@example.com", **kwargs)  # type: ignore[arg-type]


def rows(app: Flask, model: type) -> list:  # type: ignore[type-arg]
    with app.app_context(), current_services().sessions() as session:
        found = list(session.scalars(select(model).order_by(model.id)))  # type: ignore[attr-defined]
        session.expunge_all()
        return found


def test_not_enrolled_hears_what_auto_pay_is_and_star_goes_back(app: Flask, phone: Softphone) -> None:
    add_members(app, member())
    call = phone.call(CALLER, [*EN, "4", "*"])
    text = call.said_text()
    intro = "Auto Pay pays each new bill in full on its due date"
    assert intro in text
    back = text.split(intro, 1)[1]  # `*`: the account menu again, the last thing said
    assert back.endswith("\nPress 1 to pay the full balance.\nOr press 2 for another amount or method, "
                         "3 last payment, 4 Auto Pay, 5 another account, 0 member services.")


def test_enrolling_with_a_new_card_reads_the_terms_saves_it_and_offers_the_current_bill(
    app: Flask, card_phone: PayPhone, stripe_client: stripe.StripeClient
) -> None:
    (account_id,) = add_members(app, member())
    call = card_phone(VISA).call(CALLER, [*EN, "4", "1", "1", "1"])
    text = call.said_text()
    assert "It will be saved on your account for these payments." in text
    assert (
        "On the due date of each bill, starting with the first bill due after November 30, "
        "Test Valley Electric will charge the full balance of that bill to your Visa ending in 4 2 4 2."
    ) in text
    assert "to keep this card on file and to charge it for these payments without calling you first" in text
    assert "by calling member services at 2 0 2, 5 5 5, 0 1 0 0" in text
    assert "Thank you. You are enrolled in Auto Pay with the Visa ending in 4 2 4 2." in text
    assert (
        "Your current bill of 123 dollars and 45 cents, due November 30, is not covered by Auto Pay."
    ) in text
    assert (
        "To pay 123 dollars and 45 cents on the account ending in 4 8 2 1 now with the Visa "
        "ending in 4 2 4 2, press 1."
    ) in text
    assert "Paid, thank you. Your confirmation number is" in text  # `1` paid the bill already issued
    (enrollment,) = rows(app, AutopayEnrollment)
    assert (enrollment.status, enrollment.channel, enrollment.method_last4) == ("active", "ivr", "4242")
    assert enrollment.agreed_by.startswith("CA") and enrollment.terms_version == "2026-12-01"
    assert str(enrollment.first_due_after) == "2026-11-30"
    ledger = books(app)
    assert [m.created_via for m in ledger.methods] == ["ivr"]  # saved, for later drafts
    (payment,) = ledger.payments
    (charge,) = processor_charges(stripe_client)
    assert payment.processor_id == charge.id and charge.amount == 12345
    (notice,) = rows(app, AutopayNotice)  # the terms in writing, kept as sent
    assert notice.kind == "enrolled" and "full balance of each bill" in notice.body
    assert "ending in 4242" in notice.body and ACCOUNT not in notice.body
    assert live(app, account_id) is not None


def test_enrolling_in_spanish_with_a_stored_card(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, member())
    save_card(app, stripe_client, ACCOUNT, MASTERCARD)
    call = phone.call(CALLER, [*ES, "4", "1", "1", "1", "2"])
    text = call.said_text()
    # (localstripe names every test card a Visa; the brand is the processor's word)
    assert "terminada en 4 4 4 4 para el Pago Automático, oprima 1." in text
    assert "a partir de la primera factura que vence después del 30 de noviembre" in text
    assert "Gracias. Está inscrito en el Pago Automático con la tarjeta" in text
    assert "no está cubierta por el Pago Automático" in text
    assert not books(app).payments  # `2`: back to the menu, nothing charged
    (enrollment,) = rows(app, AutopayEnrollment)
    assert enrollment.method_last4 == "4444"


def test_declining_the_terms_enrolls_nothing(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient
) -> None:
    add_members(app, member())
    save_card(app, stripe_client, ACCOUNT)
    call = phone.call(CALLER, [*EN, "4", "1", "1", "2"])
    assert "You have not been enrolled in Auto Pay." in call.said_text()
    assert not rows(app, AutopayEnrollment)


def test_enrolled_hears_the_method_and_next_draft_changes_it_and_cancels(
    app: Flask, card_phone: PayPhone, stripe_client: stripe.StripeClient
) -> None:
    (account_id,) = add_members(app, member())
    enroll(app, save_card(app, stripe_client, ACCOUNT))  # covers the November bill
    text = card_phone(MASTERCARD).call(CALLER, [*EN, "4", "1", "8", "1"]).said_text()
    assert "You are enrolled in Auto Pay with the Visa ending in 4 2 4 2." in text
    assert "Your next Auto Pay payment, of 123 dollars and 45 cents, will be charged on November 30." in text
    assert "starting with the first bill due after October 31" in text  # coverage kept
    assert "Thank you. Auto Pay will now use the" in text and "ending in 4 4 4 4." in text
    assert "is not covered" not in text
    enrollment = live(app, account_id)
    assert enrollment is not None and enrollment.method_last4 == "4444"
    cancelled = card_phone().call(CALLER, [*EN, "4", "2", "1"]).said_text()
    assert "To confirm that you want to cancel Auto Pay, press 1." in cancelled
    assert "Auto Pay is cancelled." in cancelled
    assert live(app, account_id) is None
    actions = [c.action for c in rows(app, AutopayChange)]
    assert actions == ["enrolled", "method_changed", "cancelled"]
    assert [e.method_last4 for e in rows(app, AutopayEnrollment)] == ["4242", "4444"]  # nothing erased
    assert [n.kind for n in rows(app, AutopayNotice)] == ["method_changed", "cancelled"]


def test_keeping_auto_pay_at_the_cancel_confirmation(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient
) -> None:
    (account_id,) = add_members(app, member())
    enroll(app, save_card(app, stripe_client, ACCOUNT))
    text = phone.call(CALLER, [*EN, "4", "2", "2", "*"]).said_text()
    assert text.count("You are enrolled in Auto Pay with the Visa ending in 4 2 4 2.") == 2
    assert live(app, account_id) is not None


def test_a_removed_method_suspends_auto_pay_and_the_next_call_says_so_once(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient
) -> None:
    (account_id,) = add_members(app, member(language="es"))
    method = save_card(app, stripe_client, ACCOUNT)
    enroll(app, method)
    with app.app_context():
        services = current_services()
        with services.unit_of_work() as uow:
            account = uow.accounts.get(account_id)
        assert services.gateway is not None
        wallet.remove_method(services, services.gateway, account, method.id)
    enrollment = live(app, account_id)
    assert enrollment is not None and enrollment.status == "suspended"
    first = phone.call(CALLER, [*EN]).said_text()
    assert "Your Auto Pay is suspended because its payment method was removed from your account." in first
    second = phone.call(CALLER, [*EN, "4"]).said_text()
    assert second.count("Your Auto Pay is suspended") == 1  # at key 4 only, not at the menu again
    spanish = phone.call(CALLER, [*ES, "4"]).said_text()
    assert "Su Pago Automático está suspendido porque su método de pago se retiró de su cuenta." in spanish


def test_bank_accounts_are_pointed_to_the_portal_and_a_card_asked_for(
    app: Flask, card_phone: PayPhone
) -> None:
    (account_id,) = add_members(app, member())
    _bank_on_file(app, account_id)
    text = card_phone(VISA).call(CALLER, [*EN, "4", "1"]).said_text()
    assert "Bank accounts can be set up for Auto Pay in our online member portal." in text
    assert "6 7 8 9" not in text  # not offered by phone: its authorization is not recorded here
    assert "Please have the card you want to use for Auto Pay ready." in text


def _bank_on_file(app: Flask, account_id: int) -> None:
    """A bank account saved in the portal, which saves one through a SetupIntent with its
    mandate (a bank account without one is not offered by phone at all); no processor
    call is made by these calls."""
    from db.stored_methods import SqlStoredMethods
    from payments.gateway import MethodInfo

    with app.app_context():
        services = current_services()
        with services.unit_of_work() as uow:
            SqlStoredMethods(uow.session).add(
                account_id, MethodInfo(
                    "pm_bank_6789", "bank", "STRIPE TEST BANK", "6789", None, None, mandate_id="mandate_1",
                ),
                created_via="portal", now=services.clock.now(),
            )
            uow.commit()


def test_with_record_consent_on_a_bank_account_is_enrolled_with_its_spoken_authorization(
    app: Flask, phone: Softphone
) -> None:
    # Twilio <Record> posts RecordingSid, RecordingUrl, RecordingDuration and Digits to
    # its action (https://www.twilio.com/docs/voice/twiml/record#attributes-action).
    import dataclasses

    services = app.extensions["securepay"]
    services.flow_config = dataclasses.replace(services.flow_config, autopay_record_consent=True)
    (account_id,) = add_members(app, member(balance="0.00"))
    _bank_on_file(app, account_id)
    text = (call := phone.call(CALLER, [*EN, "4", "1", "1", "1"])).said_text()
    assert "To use the bank account ending in 6 7 8 9 for Auto Pay, press 1." in text
    assert "to debit this bank account for these payments. Your authorization will be recorded." in (
        text
    )
    assert "after the tone please say your name and the words I agree, then press pound." in text
    assert "Thank you. You are enrolled in Auto Pay with the bank account ending in 6 7 8 9." in text
    record = next(e for e in call.exchanges if "<Record " in e.body).body
    assert "<Pay" not in record and 'finishOnKey="#"' in record  # never during <Pay>
    enrollment = live(app, account_id)
    assert enrollment is not None and enrollment.method_kind == "bank"
    assert enrollment.recording_sid is not None and enrollment.recording_sid.startswith("RE")
    spanish = phone.call(CALLER, [*ES, "4", "2", "1"]).said_text()  # cancelled, in Spanish
    assert "Está inscrito en el Pago Automático con la cuenta bancaria terminada en 6 7 8 9." in spanish
    assert "El Pago Automático está cancelado." in spanish
    assert live(app, account_id) is None


def test_no_audio_or_a_forged_record_callback_enrolls_nothing(app: Flask) -> None:
    import dataclasses

    from tests.twilio_requests import RawCall, signed_post

    services = app.extensions["securepay"]
    services.flow_config = dataclasses.replace(services.flow_config, autopay_record_consent=True)
    (account_id,) = add_members(app, member(balance="0.00"))
    _bank_on_file(app, account_id)
    call = RawCall(app, CALLER)
    call.start()
    keys = [*EN, "4", "1", "1", "1"]  # to the <Record> step
    for n, digits in enumerate(keys, start=1):
        assert call.step(n, digits).status_code == 200
    silent = call.step(len(keys) + 1, None)  # no audio: Twilio skips the action and follows the Redirect
    assert b"after the tone please say your name" in silent.data and live(app, account_id) is None
    forged = call.step(len(keys) + 2, "#")  # keys alone are no recording
    assert b"We did not hear your authorization." in forged.data and live(app, account_id) is None
    sid = "RE" + "ab" * 16
    params = {
        **call.base, "CallStatus": "in-progress", "RecordingSid": sid, "RecordingDuration": "5",
        "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/{sid}", "Digits": "#",
    }
    done = signed_post(app, f"/ivr/step?n={len(keys) + 3}", params)
    assert b"You are enrolled in Auto Pay with the bank account ending in 6 7 8 9." in done.data
    enrollment = live(app, account_id)
    assert enrollment is not None and enrollment.recording_sid == sid


def test_the_bill_already_issued_is_offered_only_where_the_fast_lane_would_offer_it(
    app: Flask, phone: Softphone
) -> None:
    # One rule for a one-press charge (ivr/flows/fast_lane.py): a bank account is never
    # debited on one press, its recorded authorization being for Auto Pay's drafts.
    import dataclasses

    services = app.extensions["securepay"]
    services.flow_config = dataclasses.replace(services.flow_config, autopay_record_consent=True)
    (account_id,) = add_members(app, member())  # 123.45 due November 30: not covered
    _bank_on_file(app, account_id)
    with app.app_context(), services.unit_of_work() as uow:
        uow.methods.set_customer_id(account_id, "cus_bank_holder")  # a processor customer on file
        uow.commit()
    call = RawCall(app, CALLER)
    call.start()
    keys = [*EN, "4", "1", "1", "1"]  # to the <Record> step
    for n, digits in enumerate(keys, start=1):
        assert call.step(n, digits).status_code == 200
    sid = "RE" + "cd" * 16
    done = signed_post(app, f"/ivr/step?n={len(keys) + 1}", {
        **call.base, "CallStatus": "in-progress", "RecordingSid": sid, "RecordingDuration": "4",
        "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/{sid}", "Digits": "#",
    })
    assert b"You are enrolled in Auto Pay with the bank account ending in 6 7 8 9." in done.data
    assert b"is not covered by Auto Pay." in done.data  # said all the same
    assert b"now with the" not in done.data  # no one-press offer of the bank account
    assert b"Press 1 to pay the full balance." in done.data  # the menu, as the fast lane has it
    assert not books(app).payments


def _expire(app: Flask, method_id: int, year: int, month: int) -> None:
    """The card's expiry as the processor reports it after the card ran out (the store
    keeps what the processor says; the card was saved while still valid)."""
    with app.app_context(), current_services().sessions() as session:
        stored = session.get(PaymentMethod, method_id)
        assert stored is not None
        stored.exp_year, stored.exp_month = year, month
        session.commit()


def test_an_expired_card_is_not_offered_for_auto_pay(
    app: Flask, phone: Softphone, stripe_client: stripe.StripeClient
) -> None:
    # Every draft on it would be declined (Stripe: "expired_card",
    # https://docs.stripe.com/declines/codes): the phone offers only cards that can pay.
    add_members(app, member())
    expired = save_card(app, stripe_client, ACCOUNT, MASTERCARD)
    save_card(app, stripe_client, ACCOUNT)  # the Visa, valid
    _expire(app, expired.id, 2026, 10)  # the test clock says November 2026
    text = phone.call(CALLER, [*EN, "4", "1"]).said_text()
    assert "To use the Visa ending in 4 2 4 2 for Auto Pay, press 1." in text
    assert "4 4 4 4" not in text
    assert "To use a new card, press 8." in text
    again = phone.call(CALLER, [*EN, "4", "1", "2"]).said_text()  # no second card on the list
    assert again.count("To use the Visa ending in 4 2 4 2 for Auto Pay, press 1.") == 2
    assert rows(app, AutopayEnrollment) == []
