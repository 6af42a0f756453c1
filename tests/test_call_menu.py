"""Contract 2.4 and 2.8: the balance as spoken, the account menu, member services."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask import Flask

from ivr.softphone import Dialed, Softphone
from tests.fakes import FakeClock
from tests.members import PIN, Member, add_members

CALLER = "+12025550143"
MENU = "Press 1 to pay the full balance."
OPTIONS = (
    "Or press 2 for another amount or method, 3 last payment, 4 Auto Pay, 5 another account, "
    "0 member services."
)


def menu_call(app: Flask, phone: Softphone, member: Member, *keys: str, lang: str = "1") -> str:
    add_members(app, member)
    return phone.call(CALLER, [lang, PIN, *keys]).said_text()


@pytest.mark.parametrize("member, lang, expected", [
    (Member("10004821", phones=[CALLER], balance="123.45", due_date="2026-11-30"), "1",
     "Your balance is 123 dollars and 45 cents, due November 30."),
    (Member("10004821", phones=[CALLER], balance="123.45", due_date="2026-11-30"), "2",
     "Su saldo es de 123 dólares con 45 centavos, con vencimiento el 30 de noviembre."),
    (Member("10004821", phones=[CALLER], balance="80.00", past_due="30.25", due_date="2026-12-05"), "1",
     "Your balance is 80 dollars, due December 5.\n30 dollars and 25 cents of it is past due."),
    (Member("10004821", phones=[CALLER], balance="-15.50"), "1",
     "You have a credit balance of 15 dollars and 50 cents. No payment is due."),
    (Member("10004821", phones=[CALLER], balance="-15.50"), "2",
     "Tiene un saldo a favor de 15 dólares con 50 centavos. No tiene pagos pendientes."),
    (Member("10004821", phones=[CALLER], balance="0.00"), "1",
     "Your balance is zero. No payment is due."),
    (Member("10004821", phones=[CALLER], balance="42.10", due_date="2026-11-01"), "1",
     "Your balance is 42 dollars and 10 cents, which was due November 1."),
])
def test_the_balance_is_read_first(
    app: Flask, phone: Softphone, member: Member, lang: str, expected: str
) -> None:
    assert expected in menu_call(app, phone, member, lang=lang)


def test_the_due_date_is_said_in_the_utilitys_zone(
    app: Flask, phone: Softphone, clock: FakeClock
) -> None:
    # 02:00 UTC on Dec 1 is still Nov 30 in Chicago: the bill is not overdue yet there.
    clock.current = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    text = menu_call(app, phone, Member("10004821", phones=[CALLER], due_date="2026-11-30"))
    assert "due November 30." in text and "which was due" not in text


def test_nine_repeats_the_balance_and_the_menu(app: Flask, phone: Softphone) -> None:
    text = menu_call(app, phone, Member("10004821", phones=[CALLER]), "9")
    assert text.count("Your balance is 123 dollars and 45 cents") == 2


def test_auto_pay_explains_itself_and_star_returns_to_the_menu(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, ["1", PIN, "4", "*"])
    intro = "Auto Pay pays each new bill in full on its due date"  # issue 10
    assert intro in call.said_text()
    assert call.said_text().split(intro, 1)[1].endswith(f"\n{MENU}\n{OPTIONS}")  # `*`: the menu again


def test_member_services_in_business_hours_dials_the_configured_number(
    app: Flask, phone: Softphone
) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, ["1", PIN, "0"])
    assert [e.number for e in call.events if isinstance(e, Dialed)] == ["+12025550100"]
    assert "Transferring you to member services." in call.said_text()


@pytest.mark.parametrize("lang, hours", [
    ("1", "Member services is closed now. Hours are Monday through Friday, from 8 AM to 5 PM. "
          "The number is 2 0 2, 5 5 5, 0 1 0 0."),
    ("2", "Servicio al socio está cerrado ahora. El horario es de lunes a viernes, de 8:00 a 17:00. "
          "El número es 2 0 2, 5 5 5, 0 1 0 0."),
])
def test_member_services_outside_hours_says_the_hours_and_returns_to_the_menu(
    app: Flask, phone: Softphone, clock: FakeClock, lang: str, hours: str
) -> None:
    clock.current = datetime(2026, 11, 28, 16, 0, tzinfo=UTC)  # a Saturday
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, [lang, PIN, "0"])
    assert hours in call.said_text()
    assert not [e for e in call.events if isinstance(e, Dialed)]
    assert call.last_said().startswith(("Or press 2", "O oprima 2"))


def test_three_misses_at_the_menu_end_the_call_politely(app: Flask, phone: Softphone) -> None:
    add_members(app, Member("10004821", phones=[CALLER]))
    call = phone.call(CALLER, ["1", PIN, "-", "7", "-"])
    assert call.last_said() == "We did not get a valid entry. Goodbye."
    assert call.hung_up_by == "ivr"
