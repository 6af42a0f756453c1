"""How numbers, amounts, dates and hours are written for text-to-speech.

The text goes inside ``<Say language="en-US">`` or ``<Say language="es-US">``; the
TTS engine then reads it. Numerals are left as numerals (the engine reads "123" as
"one hundred twenty-three" in either language), and we add the words that make them
unambiguous: "dollars and ... cents", "4 8 2 1" digit by digit, "November 30" rather
than "11/30", whose order differs between the two languages.

Month and day names come from tables here, never from ``strftime``: ``%B`` follows the
server's locale, which would make an English call say "noviembre" on a Spanish server.
"""

from __future__ import annotations

from datetime import date, time
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ivr.settings import BusinessHours

__all__ = [
    "Lang", "language_tag", "say_amount", "say_card_types", "say_date", "say_digits", "say_hours",
    "say_method",
]

# The languages we speak. Functions take a plain ``str`` (a call's language comes from
# the database as one) and raise ``ValueError`` for anything else.
Lang = Literal["en", "es"]

_TAGS: dict[str, str] = {"en": "en-US", "es": "es-US"}

_MONTHS: dict[str, tuple[str, ...]] = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
    "es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
           "septiembre", "octubre", "noviembre", "diciembre"),
}  # fmt: skip

_WEEKDAYS: dict[str, tuple[str, ...]] = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "es": ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
}


def _check(lang: str) -> str:
    if lang not in _TAGS:
        raise ValueError(f"unsupported language {lang!r}: expected one of {sorted(_TAGS)}")
    return lang


def language_tag(lang: str) -> str:
    """The ``<Say language=...>`` tag: ``"en"`` -> ``"en-US"``, ``"es"`` -> ``"es-US"``."""
    return _TAGS[_check(lang)]


def say_digits(digits: str) -> str:
    """``"4821"`` -> ``"4 8 2 1"``: account and card endings are read digit by digit,
    not as "four thousand eight hundred twenty-one"."""
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f"expected digits only, got {digits!r}")
    return " ".join(digits)


def say_amount(cents: int, lang: str) -> str:
    """``12345`` -> ``"123 dollars and 45 cents"`` / ``"123 dólares con 45 centavos"``.

    Negative amounts are refused: a credit balance is worded by the caller of this
    function ("you have a credit of ..."), which passes ``abs()``. English gets a
    thousands comma ("2,000 dollars"); Spanish none, since es-US voices read "2000"
    correctly and would read "2,000" as two numbers.
    """
    _check(lang)
    if cents < 0:
        raise ValueError(f"amount must not be negative, got {cents} cents")
    dollars, rest = divmod(cents, 100)
    if lang == "en":
        main = f"{dollars:,} dollar" + ("" if dollars == 1 else "s")
        small = f"{rest} cent" + ("" if rest == 1 else "s")
        joiner = " and "
    else:
        main = f"{dollars} dólar" + ("" if dollars == 1 else "es")
        small = f"{rest} centavo" + ("" if rest == 1 else "s")
        joiner = " con "
    if rest == 0:
        return main
    if dollars == 0:
        return small
    return main + joiner + small


def say_date(d: date, lang: str, *, with_year: bool = False) -> str:
    """``"November 30"`` / ``"30 de noviembre"``; the year only when asked for, since a
    due date is almost always this year's and the year only lengthens the prompt."""
    month = _MONTHS[_check(lang)][d.month - 1]
    if lang == "en":
        return f"{month} {d.day}, {d.year}" if with_year else f"{month} {d.day}"
    return f"{d.day} de {month} de {d.year}" if with_year else f"{d.day} de {month}"


def _day_runs(days: frozenset[int]) -> list[list[int]]:
    """Consecutive weekdays grouped; a run may wrap from Sunday to Monday (``Sat-Mon``).

    The week is read from the first day that follows a closed day, so a wrapping run
    stays whole ("Saturday through Monday") instead of being cut at Sunday night.
    """
    start = min(day for day in days if (day - 1) % 7 not in days)
    runs: list[list[int]] = []
    for day in sorted(days, key=lambda day: (day - start) % 7):
        if runs and (day - runs[-1][-1]) % 7 == 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def _join(items: list[str], conjunction: str) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + f" {conjunction} " + items[-1]


def _say_days(days: frozenset[int], lang: str) -> str:
    names = _WEEKDAYS[lang]
    if not days:
        raise ValueError("business hours name no day")
    if len(days) == 7:
        return "every day" if lang == "en" else "todos los días"
    items: list[str] = []
    for run in _day_runs(days):
        if len(run) >= 3:
            first, last = names[run[0]], names[run[-1]]
            items.append(f"{first} through {last}" if lang == "en" else f"de {first} a {last}")
        else:
            items.extend(names[day] for day in run)
    return _join(items, "and" if lang == "en" else "y")


def _say_time(t: time, lang: str) -> str:
    if lang == "es":
        return f"{t.hour}:{t.minute:02d}"
    hour = t.hour % 12 or 12
    suffix = "AM" if t.hour < 12 else "PM"
    return f"{hour} {suffix}" if t.minute == 0 else f"{hour}:{t.minute:02d} {suffix}"


def say_hours(hours: BusinessHours, lang: str) -> str:
    """``"Monday through Friday, from 8 AM to 5 PM"`` /
    ``"de lunes a viernes, de 8:00 a 17:00"``: said when member services is closed.

    English uses the 12-hour clock callers expect; Spanish the 24-hour clock usual in
    written Spanish, which es-US voices read naturally.
    """
    _check(lang)
    days = _say_days(hours.days, lang)
    opens, closes = _say_time(hours.opens, lang), _say_time(hours.closes, lang)
    if lang == "en":
        return f"{days}, from {opens} to {closes}"
    return f"{days}, de {opens} a {closes}"


# Every PaymentCardType Twilio posts (https://www.twilio.com/docs/voice/twiml/pay), and
# the names Stripe and the portal use for the same brands.
_BRANDS: dict[str, str] = {
    "visa": "Visa",
    "mastercard": "Mastercard",
    "master-card": "Mastercard",
    "amex": "American Express",
    "american express": "American Express",
    "maestro": "Maestro",
    "discover": "Discover",
    "optima": "Optima",
    "jcb": "JCB",
    "diners": "Diners Club",
    "diners-club": "Diners Club",
    "enroute": "enRoute",
    "unionpay": "UnionPay",
}


def say_card_types(types: tuple[str, ...], lang: str) -> str:
    """``("visa", "amex")`` -> ``"Visa and American Express"`` / ``"Visa y American Express"``."""
    lang = _check(lang)
    names = list(dict.fromkeys(_BRANDS.get(kind.lower(), kind) for kind in types))
    if not names:
        raise ValueError("no card type to say")
    return _join(names, "and" if lang == "en" else "y")


def say_method(kind: str, brand: str, lang: str) -> str:
    """How a payment method is named: "Visa" / "tarjeta Visa", "bank account" / "cuenta bancaria"."""
    lang = _check(lang)
    if kind == "bank":
        return "bank account" if lang == "en" else "cuenta bancaria"
    name = _BRANDS.get(brand.lower(), "card")
    if name == "card":
        return "card" if lang == "en" else "tarjeta"
    return name if lang == "en" else f"tarjeta {name}"
