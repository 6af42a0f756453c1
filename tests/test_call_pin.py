"""Contract 2.3 and SECURITY 5-9: verify, re-enter, forgot, create, legacy, lockout."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from db.models import AuditEvent, PinCredential
from ivr.services import current_services
from ivr.softphone import Softphone
from tests.fakes import FakeClock
from tests.members import NEW_PIN, OTHER_SSN, PIN, SSN, Member, add_members

CALLER = "+12025550143"
WRONG = "pin does not match"
MENU = "Press 1 to pay the full balance."
OPTIONS = "Or press 2 for another amount or method"
PIN_PROMPT = "Enter your 4-digit PIN."
WRONG_PIN = "That PIN does not match our records."
DESIRED = "Enter a new 4-digit PIN."


def at_menu(said: str, last: str, menu: str = MENU, options: str = OPTIONS) -> bool:
    """The call ended at the account menu: its pay line said, its options last."""
    return menu in said and last.startswith(options)


def credential(app: Flask, account_id: int) -> PinCredential:
    with app.app_context(), current_services().unit_of_work() as uow:
        row = uow.session.get(PinCredential, account_id)
        assert row is not None
        uow.session.expunge(row)
        return row


def events(app: Flask, name: str) -> list[AuditEvent]:
    with app.app_context(), current_services().unit_of_work() as uow:
        rows = list(uow.session.scalars(
            select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.id)
        ))
        uow.session.expunge_all()
        return rows


def test_the_right_pin_reads_the_balance_and_the_menu(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, ["1", PIN])
    assert "Your balance is 123 dollars and 45 cents, due November 30." in call.said_text()
    assert at_menu(call.said_text(), call.last_said())


@pytest.mark.parametrize("key, wrong_words, menu_words", [
    ("1", WRONG_PIN, MENU),
    ("2", "Ese PIN no coincide con nuestros registros.", "Oprima 1 para pagar el saldo total."),
])
def test_a_wrong_pin_offers_reenter_and_the_right_one_then_works(
    app: Flask, phone: Softphone, key: str, wrong_words: str, menu_words: str
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, [key, "9999", "1", PIN])
    assert wrong_words in call.said_text()
    assert menu_words in call.said_text()
    assert call.last_said().startswith(("Or press 2", "O oprima 2"))


def test_three_wrong_entries_in_one_call_end_it(app: Flask, phone: Softphone) -> None:
    (account_id,) = add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, ["1", "1111", "1", "2222", "1", "3333"])
    assert call.last_said().startswith("We cannot verify your identity.")
    assert call.hung_up_by == "ivr"
    assert credential(app, account_id).failure_count == 3
    assert credential(app, account_id).locked_at is None


def test_a_short_entry_is_asked_again_without_counting_a_failure(
    app: Flask, phone: Softphone
) -> None:
    (account_id,) = add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, ["1", "47", PIN])
    assert "Your PIN has 4 digits." in call.said_text()
    assert at_menu(call.said_text(), call.last_said())
    assert credential(app, account_id).failure_count == 0


def test_failures_across_calls_lock_the_account_until_staff_unlock(
    app: Flask, phone: Softphone
) -> None:
    (account_id,) = add_members(app, Member("10004821", phones=[CALLER]))
    phone.call(CALLER, ["1", "1111", "1", "2222", "1", "3333"])
    phone.call("+12025550166", ["1", "10004821#", "4444", "1", "5555"])
    assert credential(app, account_id).locked_at is not None
    locked = phone.call(CALLER, ["1", PIN])
    assert locked.last_said().startswith(WRONG_PIN)  # the same words as a wrong PIN
    assert [e.detail["reason"] for e in events(app, "pin_rejected")][-1] == "locked"

    with app.app_context(), current_services().unit_of_work() as uow:
        uow.credentials.unlock(account_id, current_services().clock.now())
        uow.commit()
    again = phone.call(CALLER, ["1", PIN])
    assert at_menu(again.said_text(), again.last_said())


def test_failures_older_than_the_window_do_not_count(
    app: Flask, phone: Softphone, clock: FakeClock
) -> None:
    (account_id,) = add_members(app, Member("10004821", phones=[CALLER]))
    phone.call(CALLER, ["1", "1111", "1", "2222", "1", "3333"])
    clock.advance(timedelta(hours=25))
    phone.call(CALLER, ["1", "1111", "1", "2222"])
    row = credential(app, account_id)
    assert row.failure_count == 2 and row.locked_at is None


def test_unknown_account_and_locked_account_sound_like_a_wrong_pin(
    app: Flask, phone: Softphone
) -> None:
    (account_id,) = add_members(app, Member("10004821"))
    with app.app_context(), current_services().unit_of_work() as uow:
        uow.session.get(PinCredential, account_id).locked_at = current_services().clock.now()  # type: ignore[union-attr]
        uow.commit()
    unknown = phone.call("+12025550166", ["1", "77770000#", PIN])
    locked = phone.call("+12025550166", ["1", "10004821#", PIN])
    assert unknown.said_text() == locked.said_text()
    assert unknown.last_said().startswith(WRONG_PIN)


def test_forgot_pin_proves_identity_with_the_ssn_then_sets_a_new_pin(
    app: Flask, phone: Softphone
) -> None:
    (account_id,) = add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, ["1", "9999", "2", SSN, NEW_PIN, NEW_PIN])
    text = call.said_text()
    assert "last 4 digits of the main account holder's Social Security number" in text
    assert DESIRED in text
    assert "Your new PIN is saved." in text
    assert at_menu(call.said_text(), call.last_said())
    again = phone.call(CALLER, ["1", NEW_PIN])
    assert at_menu(again.said_text(), again.last_said())
    assert phone.call(CALLER, ["1", PIN]).last_said().startswith(WRONG_PIN)
    assert credential(app, account_id).origin == "member"


def test_a_commercial_account_proves_identity_with_the_tax_id(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER], account_type="commercial", name="Acme Feed"))
    call = phone.call(CALLER, ["1", "9999", "2"])
    assert call.last_said() == (
        "To verify your identity, enter the last 4 digits of the business's federal tax ID."
    )


def test_a_wrong_ssn_is_refused_and_counts_as_a_failure(app: Flask, phone: Softphone) -> None:
    (account_id,) = add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, ["1", "9999", "2", OTHER_SSN])
    assert "Those digits do not match our records." in call.said_text()
    assert credential(app, account_id).failure_count == 2


def test_no_pin_on_file_creates_one_after_the_ssn(app: Flask, phone: Softphone) -> None:
    (account_id,) = add_members(app, Member("10004821", phones=[CALLER], pin=None))
    call = phone.call(CALLER, ["1", SSN, NEW_PIN, NEW_PIN])
    text = call.said_text()
    assert "This account has no PIN yet." in text
    assert text.index("Social Security number") < text.index(DESIRED)
    assert at_menu(call.said_text(), call.last_said())
    assert credential(app, account_id).origin == "member"


def test_without_ssn_a_matching_caller_id_may_create_a_pin(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER], pin=None, ssn_last4=""))
    call = phone.call(CALLER, ["1", NEW_PIN, NEW_PIN])
    assert "Social Security" not in call.said_text()
    assert at_menu(call.said_text(), call.last_said())


def test_without_ssn_another_caller_is_referred_to_member_services(
    app: Flask, phone: Softphone
) -> None:
    add_members(app, Member("10004821", phones=[CALLER], pin=None, ssn_last4=""))
    call = phone.call("+12025550166", ["1", "10004821#"])
    assert call.last_said().startswith(
        "We cannot create a PIN for this account by phone."
    )
    assert DESIRED not in call.said_text()


def test_a_legacy_pin_from_the_ssn_works_and_asks_for_a_pin_of_ones_own(
    app: Flask, phone: Softphone
) -> None:
    (account_id,) = add_members(app, Member("10004821", phones=[CALLER]), legacy_pin_from_ssn=True)
    assert credential(app, account_id).origin == "legacy"
    call = phone.call(CALLER, ["1", SSN, SSN, NEW_PIN, NEW_PIN])
    text = call.said_text()
    assert "For your security, choose a PIN of your own." in text
    assert "That PIN matches your Social Security or tax ID digits." in text
    assert at_menu(call.said_text(), call.last_said())
    assert credential(app, account_id).origin == "member"


@pytest.mark.parametrize("choice, reason", [
    ("1234", "That PIN is a run of digits: too easy to guess."),
    ("7777", "That PIN repeats one digit: too easy to guess."),
    ("1987", "That PIN looks like a year: too easy to guess."),
    ("4821", "That PIN matches your account number."),
    ("0143", "That PIN matches the number you are calling from."),
    ("2580", "That PIN is one of the most common: too easy to guess."),
])
def test_easily_guessed_new_pins_are_refused_with_the_reason(
    app: Flask, phone: Softphone, choice: str, reason: str
) -> None:
    add_members(app, Member("10004821", phones=[CALLER], pin=None))
    call = phone.call(CALLER, ["1", SSN, choice])
    assert reason in call.said_text()
    assert call.last_said().startswith(DESIRED)


def test_a_confirmation_that_differs_starts_the_choice_again(app: Flask, phone: Softphone) -> None:
    (account_id,) = add_members(app, Member("10004821", phones=[CALLER], pin=None))
    call = phone.call(CALLER, ["1", SSN, NEW_PIN, "0583"])
    assert "The two entries did not match." in call.said_text()
    assert call.last_said().startswith(DESIRED)
    assert credential(app, account_id).origin == "none"


def test_a_good_pin_stored_with_old_parameters_is_rehashed(app: Flask, phone: Softphone) -> None:
    from ivr.pinhash import Argon2PinHasher

    (account_id,) = add_members(app, Member("10004821", phones=[CALLER], pin=None))
    weak = Argon2PinHasher(current_services_pepper(app), time_cost=1, memory_cost=8 * 1024)
    with app.app_context(), current_services().unit_of_work() as uow:
        uow.credentials.set_pin(account_id, weak.hash(PIN), "member", current_services().clock.now())
        uow.commit()
    old_hash = credential(app, account_id).pin_hash
    again = phone.call(CALLER, ["1", PIN])
    assert at_menu(again.said_text(), again.last_said())
    new_hash = credential(app, account_id).pin_hash
    assert new_hash != old_hash and new_hash is not None
    assert "m=19456,t=2,p=1" in new_hash


def current_services_pepper(app: Flask) -> bytes:
    with app.app_context():
        return current_services().settings.require_pepper().reveal_bytes()
