"""Contract 2.1 and 2.2: language, Call Capture, keyed account entry."""

from __future__ import annotations

import pytest
from flask import Flask

from ivr.softphone import Dialed, Softphone
from tests.members import PIN, Member, add_members

CALLER = "+12025550143"


def test_caller_id_match_offers_the_account_by_its_last_four(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=["(202) 555-0143"]))
    call = phone.call(CALLER, ["1", "1"])
    text = call.said_text()
    assert "We found the account ending in 4 8 2 1. To continue with this account, press 1." in text
    assert call.last_said() == "Please enter your 4-digit Personal Identification Number."
    assert "Rivera" not in text and "123" not in text  # nothing about the holder before the PIN


@pytest.mark.parametrize("language, key, expected", [
    ("en", "1", "We found the account ending in 4 8 2 1."),
    ("es", "2", "Encontramos la cuenta que termina en 4 8 2 1."),
])
def test_language_choice_sets_the_words_and_the_voice(
    app: Flask, phone: Softphone, language: str, key: str, expected: str
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, [key])
    said = [e for e in call.events if type(e).__name__ == "Said"]
    assert said[-1].text.startswith(expected)
    assert said[-1].language == ("es-US" if language == "es" else "en-US")


def test_no_input_at_the_language_menu_means_english(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, ["-"])
    assert call.last_said().startswith("We found the account ending in 4 8 2 1.")


def test_three_wrong_keys_at_the_language_menu_end_the_call_politely(
    app: Flask, phone: Softphone
) -> None:
    call = phone.call(CALLER, ["7", "8", "#"])
    assert call.last_said() == "We did not receive a valid entry. Thank you for calling. Goodbye."
    assert call.hung_up_by == "ivr"
    assert call.said_text().count("I'm sorry, that is not a valid entry.") == 2


def test_press_two_to_enter_a_different_account(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, ["1", "2"])
    assert call.last_said() == "Please enter your account number, followed by the pound key."


def test_nine_repeats_the_found_account_menu(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, ["1", "9"])
    assert call.said_text().count("We found the account ending in 4 8 2 1.") == 2


def test_several_accounts_are_offered_in_ascending_account_number_order(
    app: Flask, phone: Softphone
) -> None:
    add_members(
        app,
        Member("900017", phones=[CALLER]),
        Member("10004821", phones=[CALLER]),
        Member("20003355", phones=[CALLER]),
    )
    call = phone.call(CALLER, ["1", "2"])
    text = call.said_text()
    assert (
        "For the account ending in 0 0 1 7, press 1.\n"
        "For the account ending in 4 8 2 1, press 2.\n"
        "For the account ending in 3 3 5 5, press 3.\n"
        "To enter a different account number, press 9."
    ) in text
    assert call.last_said() == "Please enter your 4-digit Personal Identification Number."


def test_nine_at_the_account_list_goes_to_keyed_entry(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER]), Member("20003355", phones=[CALLER]))
    call = phone.call(CALLER, ["1", "9"])
    assert call.last_said() == "Please enter your account number, followed by the pound key."


def test_a_key_beyond_the_list_is_a_miss(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER]), Member("20003355", phones=[CALLER]))
    call = phone.call(CALLER, ["1", "5"])
    assert "I'm sorry, that is not a valid entry." in call.said_text()
    assert call.last_said() == "To enter a different account number, press 9."


def test_more_than_eight_accounts_on_one_number_fall_back_to_keyed_entry(
    app: Flask, phone: Softphone
) -> None:
    add_members(app, *[Member(f"3000{i:04d}", phones=[CALLER], pin=None) for i in range(9)])
    call = phone.call(CALLER, ["1"])
    assert call.last_said() == "Please enter your account number, followed by the pound key."
    assert "ending in" not in call.said_text()


@pytest.mark.parametrize("caller_id", ["anonymous", "+266696687", "Restricted", "+442079460018", "12"])
def test_withheld_or_foreign_caller_ids_go_to_keyed_entry(
    app: Flask, phone: Softphone, caller_id: str
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(caller_id, ["1"])
    assert call.last_said() == "Please enter your account number, followed by the pound key."


def test_keyed_account_number_leads_to_the_pin(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821"))
    call = phone.call("+12025550177", ["1", "10004821#", PIN])
    assert "Your balance is 123 dollars and 45 cents, due November 30." in call.said_text()


def test_an_unknown_account_number_is_not_revealed_before_the_pin(
    app: Flask, phone: Softphone
) -> None:
    add_members(app, Member("10004821"))
    known = phone.call("+12025550177", ["1", "10004821#", "9999"])
    unknown = phone.call("+12025550177", ["1", "55550000#", "9999"])
    assert unknown.said_text() == known.said_text()
    assert "does not match our records" in unknown.last_said()


def test_three_malformed_account_numbers_end_the_call(app: Flask, phone: Softphone) -> None:
    call = phone.call("+12025550177", ["1", "12#", "123#", "1*2#"])
    text = call.said_text()
    assert text.count("That account number is not valid.") == 2
    assert call.last_said().startswith("We are unable to find that account.")
    assert call.hung_up_by == "ivr"


def test_star_at_keyed_entry_goes_back_to_the_found_account(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, ["1", "2", "*"])
    assert call.last_said().startswith("We found the account ending in 4 8 2 1.")


def test_no_transfer_is_offered_to_an_unidentified_caller(app: Flask, phone: Softphone) -> None:
    call = phone.call("+12025550177", ["1", "0#"])
    assert not [e for e in call.events if isinstance(e, Dialed)]


def test_three_timeouts_at_keyed_entry_end_the_call(app: Flask, phone: Softphone) -> None:
    call = phone.call("+12025550177", ["1", "-", "#", "-"])
    assert call.said_text().count("Please enter your account number") == 3
    assert call.last_said() == "We did not receive a valid entry. Thank you for calling. Goodbye."
