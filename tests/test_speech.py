"""Numbers as the caller hears them, in English and Spanish (CONTRACT section 2)."""

from __future__ import annotations

from datetime import date

import pytest

from ivr.flows.speech import (
    Lang,
    language_tag,
    say_amount,
    say_card_types,
    say_date,
    say_digits,
    say_hours,
    say_method,
)
from ivr.settings import BusinessHours


def test_account_endings_are_read_digit_by_digit() -> None:
    assert say_digits("4821") == "4 8 2 1"
    assert say_digits("0007") == "0 0 0 7"


@pytest.mark.parametrize("text", ["", "48a1", "4 8", "٤٨٢١"])
def test_only_ascii_digits_can_be_read_digit_by_digit(text: str) -> None:
    with pytest.raises(ValueError):
        say_digits(text)


@pytest.mark.parametrize(
    ("cents", "english", "spanish"),
    [
        (12345, "123 dollars and 45 cents", "123 dólares con 45 centavos"),
        (100, "1 dollar", "1 dólar"),
        (101, "1 dollar and 1 cent", "1 dólar con 1 centavo"),
        (5, "5 cents", "5 centavos"),
        (1, "1 cent", "1 centavo"),
        (0, "0 dollars", "0 dólares"),
        (200000, "2,000 dollars", "2000 dólares"),
        (123456789, "1,234,567 dollars and 89 cents", "1234567 dólares con 89 centavos"),
    ],
)
def test_amounts_are_said_in_dollars_and_cents(cents: int, english: str, spanish: str) -> None:
    assert say_amount(cents, "en") == english
    assert say_amount(cents, "es") == spanish


def test_negative_amounts_are_refused_so_credits_are_worded_by_the_caller() -> None:
    with pytest.raises(ValueError, match="negative"):
        say_amount(-500, "en")


def test_unknown_languages_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported language 'fr'"):
        say_amount(100, "fr")
    with pytest.raises(ValueError):
        language_tag("de")


def test_dates_are_said_in_each_languages_order() -> None:
    due = date(2026, 11, 30)
    assert say_date(due, "en") == "November 30"
    assert say_date(due, "es") == "30 de noviembre"
    assert say_date(due, "en", with_year=True) == "November 30, 2026"
    assert say_date(due, "es", with_year=True) == "30 de noviembre de 2026"
    assert say_date(date(2027, 1, 1), "es") == "1 de enero"


@pytest.mark.parametrize(
    ("spec", "english", "spanish"),
    [
        (
            "Mon-Fri 08:00-17:00",
            "Monday through Friday, from 8 AM to 5 PM",
            "de lunes a viernes, de 8:00 a 17:00",
        ),
        (
            "Mon-Fri 08:30-16:45",
            "Monday through Friday, from 8:30 AM to 4:45 PM",
            "de lunes a viernes, de 8:30 a 16:45",
        ),
        (
            "Mon,Wed,Fri 07:00-12:00",
            "Monday, Wednesday and Friday, from 7 AM to 12 PM",
            "lunes, miércoles y viernes, de 7:00 a 12:00",
        ),
        (
            "Mon-Wed,Fri 09:00-18:00",
            "Monday through Wednesday and Friday, from 9 AM to 6 PM",
            "de lunes a miércoles y viernes, de 9:00 a 18:00",
        ),
        ("Sat-Sun 00:00-12:30", "Saturday and Sunday, from 12 AM to 12:30 PM",
         "sábado y domingo, de 0:00 a 12:30"),
        ("Sat-Mon 10:00-14:00", "Saturday through Monday, from 10 AM to 2 PM",
         "de sábado a lunes, de 10:00 a 14:00"),
        ("Mon-Sun 06:00-22:00", "every day, from 6 AM to 10 PM",
         "todos los días, de 6:00 a 22:00"),
    ],
)
def test_business_hours_are_said_with_day_ranges_and_lists(
    spec: str, english: str, spanish: str
) -> None:
    hours = BusinessHours.parse(spec)
    assert say_hours(hours, "en") == english
    assert say_hours(hours, "es") == spanish


@pytest.mark.parametrize(("lang", "tag"), [("en", "en-US"), ("es", "es-US")])
def test_languages_map_to_twilio_say_tags(lang: Lang, tag: str) -> None:
    assert language_tag(lang) == tag



@pytest.mark.parametrize("brand, en, es", [
    # Every PaymentCardType Twilio posts (https://www.twilio.com/docs/voice/twiml/pay).
    ("visa", "Visa", "tarjeta Visa"),
    ("mastercard", "Mastercard", "tarjeta Mastercard"),
    ("amex", "American Express", "tarjeta American Express"),
    ("maestro", "Maestro", "tarjeta Maestro"),
    ("discover", "Discover", "tarjeta Discover"),
    ("optima", "Optima", "tarjeta Optima"),
    ("jcb", "JCB", "tarjeta JCB"),
    ("diners-club", "Diners Club", "tarjeta Diners Club"),
    ("enroute", "enRoute", "tarjeta enRoute"),
])
def test_every_card_type_twilio_names_is_said_by_name(brand: str, en: str, es: str) -> None:
    assert (say_method("card", brand, "en"), say_method("card", brand, "es")) == (en, es)


def test_the_card_types_taken_are_said_as_a_list() -> None:
    types = ("visa", "mastercard", "amex", "discover")
    assert say_card_types(types, "en") == "Visa, Mastercard, American Express and Discover"
    assert say_card_types(("visa", "diners-club"), "es") == "Visa y Diners Club"
