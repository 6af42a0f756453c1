"""Contract 2.1 and 2.2: language, Call Capture, keyed account entry."""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - parses only the IVR's own replies

import pytest
from flask import Flask

from ivr.softphone import CallTranscript, Dialed, Said, Softphone
from tests.members import PIN, Member, add_members

CALLER = "+12025550143"


ENTER_ACCOUNT = "Enter your account number, then press pound."
PIN_PROMPT = "Enter your 4-digit PIN."
NOT_AN_OPTION = "That is not an option."
GOODBYE_NO_INPUT = "We did not get a valid entry. Goodbye."


def gathers(call: CallTranscript) -> list[ET.Element]:
    """Every <Gather> the IVR answered, in order (what Twilio would wait on)."""
    found = []
    for exchange in call.exchanges:
        if exchange.body.startswith("<?xml"):
            found.extend(ET.fromstring(exchange.body).iter("Gather"))  # noqa: S314 - our own replies
    return found


def test_one_account_found_goes_straight_to_its_pin_with_star_for_another(
    app: Flask, phone: Softphone
) -> None:
    add_members(app, Member("10004821", phones=["(202) 555-0143"]))
    call = phone.call(CALLER, ["1"])
    said = [e.text for e in call.events if isinstance(e, Said)]
    assert said[-3:] == [
        "We found the account ending in 4 8 2 1.", PIN_PROMPT, "For a different account, press star.",
    ]
    text = call.said_text()
    assert "Rivera" not in text and "123" not in text  # nothing about the holder before the PIN
    assert "press 1 to continue" not in text.lower()


def test_the_language_prompt_waits_two_seconds_and_offers_spanish_only(
    app: Flask, phone: Softphone
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, ["-"])
    first = gathers(call)[0]
    assert first.get("timeout") == "2"
    assert [(s.text, s.get("language")) for s in first.iter("Say")] == [
        ("Welcome to Test Valley Electric Secure Pay.", "en-US"), ("Para español, oprima 2.", "es-US"),
    ]


@pytest.mark.parametrize("language, key, expected", [
    ("en", "1", "We found the account ending in 4 8 2 1."),
    ("es", "2", "Encontramos la cuenta que termina en 4 8 2 1."),
])
def test_language_choice_sets_the_words_and_the_voice(
    app: Flask, phone: Softphone, language: str, key: str, expected: str
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, [key])
    said = [e for e in call.events if isinstance(e, Said)]
    assert said[-3].text == expected
    assert {s.language for s in said[-3:]} == {"es-US" if language == "es" else "en-US"}


def test_no_input_at_the_language_menu_means_english(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, ["-"])
    assert "We found the account ending in 4 8 2 1." in call.said_text()
    assert call.last_said() == "For a different account, press star."


def test_every_account_found_in_spanish_greets_in_spanish_and_no_input_keeps_it(
    app: Flask, phone: Softphone
) -> None:
    add_members(
        app,
        Member("10004821", phones=[CALLER], language="es"),
        Member("20003355", phones=[CALLER], language="es"),
    )
    call = phone.call(CALLER, ["-"])
    said = [e for e in call.events if isinstance(e, Said)]
    assert said[0] == Said("Bienvenido a Secure Pay de Test Valley Electric.", "es-US")
    assert said[1] == Said("For English, press 1.", "en-US")
    assert said[2] == Said("Oprima 1 para la cuenta que termina en 4 8 2 1.", "es-US")


def test_a_spanish_greeting_still_takes_one_for_english(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER], language="es"))
    call = phone.call(CALLER, ["1"])
    assert call.said_text().endswith(
        "We found the account ending in 4 8 2 1.\nEnter your 4-digit PIN.\n"
        "For a different account, press star."
    )


def test_one_account_in_english_among_spanish_ones_keeps_the_english_greeting(
    app: Flask, phone: Softphone
) -> None:
    add_members(
        app,
        Member("10004821", phones=[CALLER], language="es"),
        Member("20003355", phones=[CALLER], language="en"),
    )
    call = phone.call(CALLER, ["-"])
    assert call.events[0] == Said("Welcome to Test Valley Electric Secure Pay.", "en-US")
    assert "Press 1 for the account ending in 4 8 2 1." in call.said_text()


def test_three_wrong_keys_at_the_language_menu_end_the_call_politely(
    app: Flask, phone: Softphone
) -> None:
    call = phone.call(CALLER, ["7", "8", "#"])
    assert call.last_said() == GOODBYE_NO_INPUT
    assert call.hung_up_by == "ivr"
    assert call.said_text().count(NOT_AN_OPTION) == 2


def test_star_at_the_pin_step_leads_to_keyed_entry(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER]), Member("20003355", balance="55.00"))
    call = phone.call(CALLER, ["1", "*", "20003355#", PIN])
    text = call.said_text()
    assert ENTER_ACCOUNT in text
    assert "Your balance is 55 dollars" in text  # the keyed account's, not the one found


def test_star_at_the_pin_step_in_spanish(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, ["2", "*"])
    assert call.last_said() == "Marque su número de cuenta y luego numeral."


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
        "Press 1 for the account ending in 0 0 1 7.\n"
        "Press 2 for the account ending in 4 8 2 1.\n"
        "Press 3 for the account ending in 3 3 5 5.\n"
        "Press 9 for another account number."
    ) in text
    assert call.last_said() == PIN_PROMPT


def test_nine_at_the_account_list_goes_to_keyed_entry(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER]), Member("20003355", phones=[CALLER]))
    call = phone.call(CALLER, ["1", "9"])
    assert call.last_said() == ENTER_ACCOUNT


def test_a_key_beyond_the_list_is_a_miss(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER]), Member("20003355", phones=[CALLER]))
    call = phone.call(CALLER, ["1", "5"])
    assert NOT_AN_OPTION in call.said_text()
    assert call.last_said() == "Press 9 for another account number."


def test_more_than_eight_accounts_on_one_number_fall_back_to_keyed_entry(
    app: Flask, phone: Softphone
) -> None:
    add_members(app, *[Member(f"3000{i:04d}", phones=[CALLER], pin=None) for i in range(9)])
    call = phone.call(CALLER, ["1"])
    assert call.last_said() == ENTER_ACCOUNT
    assert "ending in" not in call.said_text()


@pytest.mark.parametrize("caller_id", ["anonymous", "+266696687", "Restricted", "+442079460018", "12"])
def test_withheld_or_foreign_caller_ids_go_to_keyed_entry(
    app: Flask, phone: Softphone, caller_id: str
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(caller_id, ["1"])
    assert call.last_said() == ENTER_ACCOUNT


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
    assert call.last_said().startswith("We cannot find that account.")
    assert call.hung_up_by == "ivr"


def test_star_at_keyed_entry_goes_back_to_the_found_account(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, ["1", "*", "*"])
    said = [e.text for e in call.events if isinstance(e, Said)]
    assert said[-4:] == [
        ENTER_ACCOUNT, "We found the account ending in 4 8 2 1.", PIN_PROMPT,
        "For a different account, press star.",
    ]


def test_no_transfer_is_offered_to_an_unidentified_caller(app: Flask, phone: Softphone) -> None:
    call = phone.call("+12025550177", ["1", "0#"])
    assert not [e for e in call.events if isinstance(e, Dialed)]


def test_three_timeouts_at_keyed_entry_end_the_call(app: Flask, phone: Softphone) -> None:
    call = phone.call("+12025550177", ["1", "-", "#", "-"])
    assert call.said_text().count(ENTER_ACCOUNT) == 3
    assert call.last_said() == GOODBYE_NO_INPUT


def test_one_account_found_without_a_pin_goes_straight_to_creating_one(
    app: Flask, phone: Softphone
) -> None:
    add_members(app, Member("10004821", phones=[CALLER], pin=None))
    call = phone.call(CALLER, ["1", "*"])
    said = [e.text for e in call.events if isinstance(e, Said)]
    assert said[2:7] == [
        "We found the account ending in 4 8 2 1.",
        "This account has no PIN yet. Let's create one.",
        "To verify your identity, enter the last 4 digits of the main account holder's "
        "Social Security number.",
        "For a different account, press star.",
        ENTER_ACCOUNT,  # star: a different account, keyed
    ]
