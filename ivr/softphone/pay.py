"""Twilio's part in ``<Pay>``, played by the softphone: take a card, tokenize it, post the result.

FOR THE SOFTPHONE ONLY (``securepay call``, ``securepay demo``, the tests). In a real call
SecurePay never sees card digits: Twilio collects them by DTMF and hands them to the
utility's Stripe account through its Stripe Pay Connector, and the IVR's ``action`` URL
receives only the outcome. When the softphone stands in for Twilio it must play that
part too, with the same Stripe key the connector would hold (a test key, or localstripe).

What is posted to the ``action`` follows Twilio's reference for ``<Pay>``
(https://www.twilio.com/docs/voice/twiml/pay, "Twilio's POST request to your action
URL"): ``Result``; on success ``PaymentToken`` (with ``tokenType="payment-method"``, a
Stripe PaymentMethod id), ``PaymentMethod``, ``PaymentCardNumber`` with only the last four
digits visible, ``PaymentCardType``, ``ExpirationDate`` (MMYY), ``SecurityCode`` redacted
and ``PaymentCardPostalCode`` when one was collected; on failure ``PaymentError`` (and
``ConnectorError`` when the processor failed). An input timeout is not a ``Result`` of its
own: like an invalid entry, Twilio counts it as a failed attempt and asks again.

The digits typed go to the processor once and nowhere else: a ``Card``'s ``repr`` is
masked, no message or exception here contains them, and the transcript records only the
posted parameters (``Paid``), which are masked as Twilio masks them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Final, Literal, Protocol

import click
import stripe

from ivr.softphone.verbs import PayFellThrough, WalkStopped
from payments.card_tokenizer import tokenize_card
from payments.gateway import ActionRequired, CardDeclined, MethodInfo, PaymentError

__all__ = [
    "CARD_TYPES",
    "Card",
    "CardEntry",
    "CardSource",
    "Gesture",
    "InteractiveCards",
    "PayRequest",
    "Result",
    "ScriptedCards",
    "Tokenizer",
    "TwilioPayEmulator",
    "card_type",
    "luhn_valid",
    "parse_card_entry",
]

Result = Literal[
    "success",
    "too-many-failed-attempts",
    "caller-interrupted-with-star",
    "caller-hung-up",
    "validation-error",
    "payment-connector-error",
    "internal-error",
]

CARD_TYPES: Final = (
    "visa",
    "mastercard",
    "amex",
    "maestro",
    "discover",
    "optima",
    "jcb",
    "diners-club",
    "enroute",
)
"""Twilio's card types (``validCardTypes``, ``PaymentCardType``)."""

PAY_LANGUAGES: Final = (
    "de-DE", "en-AU", "en-CA", "en-GB", "en-IN", "en-US", "es-ES", "es-MX", "fr-CA", "fr-FR", "it-IT",
)
"""The languages Twilio lists for ``<Pay language>`` with card payments (not es-US)."""

DEFAULT_VALID_CARD_TYPES: Final = frozenset({"visa", "mastercard", "amex"})
"""Twilio's default ``validCardTypes``: a Discover card is refused unless the IVR lists it."""

DECLINED: Final = "card is declined"
"""Twilio's ``PaymentError`` for a card the processor refused."""


class Gesture(Enum):
    """What a caller may do at a ``<Pay>`` attempt instead of keying a card."""

    STAR = "*"
    """Pressed ``*``: Twilio ends the ``<Pay>`` (``caller-interrupted-with-star``)."""
    TIMEOUT = "timeout"
    """Typed nothing in time: a failed attempt, as Twilio asks again."""
    HANG_UP = "hangup"
    """Hung up during the ``<Pay>`` (``caller-hung-up``)."""


@dataclass(frozen=True, repr=False)
class Card:
    """What the caller keyed, as typed: Twilio's checks decide whether it is valid.

    ``expiry`` is ``MM/YY`` (or ``MM/YYYY``). The ``repr`` shows the last four only, so a
    card in an assertion message or a debugger shows no more than a receipt would.
    """

    number: str
    expiry: str
    cvc: str = ""
    postal_code: str = ""

    def __repr__(self) -> str:
        return f"Card({_masked(self.number)}, expiry {self.expiry})"

    __str__ = __repr__


CardEntry = Card | Gesture
"""What the caller does at one attempt: keys a card, presses ``*``, waits, or hangs up."""


@dataclass(frozen=True)
class PayRequest:
    """A ``<Pay>`` element's attributes, read as Twilio reads them (with its defaults)."""

    max_attempts: int = 1
    timeout: int = 5
    security_code: bool = True
    postal_code: bool | str = True  # a string: the postal code is given, not asked
    min_postal_code_length: int = 1
    valid_card_types: frozenset[str] = DEFAULT_VALID_CARD_TYPES
    token_type: str = "reusable"  # noqa: S105 - Twilio's tokenType, not a secret
    payment_method: str = "credit-card"
    language: str = "en-US"

    @property
    def asks_postal_code(self) -> bool:
        return self.postal_code is True


class CardSource(Protocol):
    """The caller's side of a ``<Pay>``: one entry per attempt."""

    def card_for(self, request: PayRequest, attempt: int, previous_error: str | None) -> CardEntry:
        """What the caller keys at ``attempt`` (1-based); ``previous_error`` is why
        Twilio is asking again (``None`` on the first attempt)."""
        ...


class Tokenizer(Protocol):
    """``payments.card_tokenizer.tokenize_card``'s signature: what the Stripe connector does."""

    def __call__(
        self,
        client: stripe.StripeClient,
        *,
        number: str,
        exp_month: int,
        exp_year: int,
        cvc: str,
        postal_code: str | None = None,
    ) -> MethodInfo: ...


# -- Twilio's checks -------------------------------------------------------------------


def luhn_valid(number: str) -> bool:
    """The Luhn check digit test every card number passes (and a mistyped one rarely does)."""
    if not number.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


_PREFIXES: Final[tuple[tuple[str, Callable[[str], bool]], ...]] = (
    ("amex", lambda n: n[:2] in ("34", "37") and len(n) == 15),
    (
        "diners-club",
        lambda n: (n[:2] in ("36", "38", "39") or "300" <= n[:3] <= "305") and len(n) in (14, 16),
    ),
    ("enroute", lambda n: n[:4] in ("2014", "2149") and len(n) == 15),
    ("jcb", lambda n: "3528" <= n[:4] <= "3589" and len(n) == 16),
    ("discover", lambda n: (n[:4] == "6011" or n[:2] == "65" or "644" <= n[:3] <= "649") and len(n) == 16),
    ("mastercard", lambda n: ("51" <= n[:2] <= "55" or "2221" <= n[:4] <= "2720") and len(n) == 16),
    ("visa", lambda n: n[:1] == "4" and len(n) in (13, 16, 19)),
    ("maestro", lambda n: n[:2] in ("50", "56", "57", "58", "63", "67") and 12 <= len(n) <= 19),
)


def card_type(number: str) -> str | None:
    """Twilio's ``PaymentCardType`` for a number (from its leading digits and length)."""
    if not number.isdigit():
        return None
    for name, matches in _PREFIXES:
        if matches(number):
            return name
    return None


def _expiry(text: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"(\d{1,2})/(\d{2}|\d{4})", text)
    if match is None:
        return None
    month, year = int(match.group(1)), int(match.group(2))
    return month, year + 2000 if year < 100 else year


def _masked(number: str) -> str:
    """Twilio's masking: every digit but the last four is an ``x``."""
    if len(number) <= 4:
        return "x" * len(number)
    return "x" * (len(number) - 4) + number[-4:]


@dataclass(frozen=True)
class _Valid:
    """A card Twilio would send to the processor."""

    kind: str
    exp_month: int
    exp_year: int


def _checked(card: Card, request: PayRequest, today: date) -> _Valid | str:
    """The card as Twilio accepts it, or Twilio's ``ErrorType`` for why it is refused."""
    if not (12 <= len(card.number) <= 19 and luhn_valid(card.number)):
        return "invalid-card-number"
    kind = card_type(card.number)
    if kind is None or kind not in request.valid_card_types:
        return "invalid-card-type"
    expiry = _expiry(card.expiry)
    if expiry is None or not 1 <= expiry[0] <= 12 or (expiry[1], expiry[0]) < (today.year, today.month):
        return "invalid-date"
    if request.security_code and not re.fullmatch(r"\d{4}" if kind == "amex" else r"\d{3}", card.cvc):
        return "invalid-security-code"
    if request.asks_postal_code and not re.fullmatch(
        rf"[A-Za-z0-9]{{{request.min_postal_code_length},10}}", card.postal_code
    ):
        return "invalid-postal-code"
    return _Valid(kind, expiry[0], expiry[1])


# -- reading the <Pay> element ---------------------------------------------------------


class _InvalidAttribute(ValueError):
    """An attribute Twilio itself would refuse: the ``Result`` is ``validation-error``."""


def _whole(attributes: dict[str, str], name: str, default: int, allowed: range) -> int:
    raw = attributes.get(name)
    if raw is None:
        return default
    if not raw.strip().isdigit() or int(raw) not in allowed:
        raise _InvalidAttribute(f"{name}={raw!r} (expected {allowed.start} to {allowed.stop - 1})")
    return int(raw)


def _flag(attributes: dict[str, str], name: str) -> bool:
    raw = attributes.get(name, "true").strip().lower()
    if raw not in ("true", "false"):
        raise _InvalidAttribute(f"{name}={raw!r} (expected true or false)")
    return raw == "true"


def _read_request(attributes: dict[str, str]) -> PayRequest:
    """The element's attributes with Twilio's defaults.

    Raises ``_InvalidAttribute`` where Twilio answers ``validation-error``, and
    ``WalkStopped`` for what this softphone does not play: a charge (``chargeAmount``
    above 0: SecurePay only tokenizes and charges later itself), ACH, and tokens other
    than a PaymentMethod.
    """
    raw_amount = attributes.get("chargeAmount", "").strip()
    if raw_amount:
        try:
            amount = Decimal(raw_amount)
        except InvalidOperation:
            raise _InvalidAttribute(f"chargeAmount={raw_amount!r} (not a number)") from None
        if not Decimal(0) <= amount <= Decimal(1_000_000):
            raise _InvalidAttribute(f"chargeAmount={raw_amount!r} (not between 0.00 and 1,000,000.00)")
        if amount > 0:
            raise WalkStopped(
                "<Pay> asks for a charge (chargeAmount > 0): this softphone plays tokenize-only <Pay>"
            )
    if attributes.get("input", "dtmf") != "dtmf":
        raise _InvalidAttribute(f"input={attributes['input']!r} (only dtmf)")
    payment_method = attributes.get("paymentMethod", "credit-card")
    if payment_method == "ach-debit":
        raise WalkStopped('<Pay paymentMethod="ach-debit"> is not played by this softphone')
    if payment_method != "credit-card":
        raise _InvalidAttribute(f"paymentMethod={payment_method!r}")
    token_type = attributes.get("tokenType", "reusable")
    if token_type in ("one-time", "reusable"):
        raise WalkStopped(
            f'<Pay tokenType="{token_type}"> (a Stripe Token) is not played by this softphone: '
            'use tokenType="payment-method"'
        )
    if token_type != "payment-method":  # noqa: S105 - not a secret
        raise _InvalidAttribute(f"tokenType={token_type!r}")
    types = frozenset(attributes.get("validCardTypes", " ".join(sorted(DEFAULT_VALID_CARD_TYPES))).split())
    if not types or not types <= set(CARD_TYPES):
        raise _InvalidAttribute(f"validCardTypes={attributes['validCardTypes']!r}")
    language = attributes.get("language", "en-US")
    if language not in PAY_LANGUAGES:
        raise _InvalidAttribute(f"language={language!r} (not a <Pay> language)")
    raw_postal = attributes.get("postalCode", "true").strip()
    postal: bool | str = (
        raw_postal.lower() == "true" if raw_postal.lower() in ("true", "false") else raw_postal
    )
    return PayRequest(
        max_attempts=_whole(attributes, "maxAttempts", 1, range(1, 4)),
        timeout=_whole(attributes, "timeout", 5, range(1, 601)),
        security_code=_flag(attributes, "securityCode"),
        postal_code=postal,
        min_postal_code_length=_whole(attributes, "minPostalCodeLength", 1, range(1, 11)),
        valid_card_types=types,
        token_type=token_type,
        payment_method=payment_method,
        language=language,
    )


# -- the emulator ----------------------------------------------------------------------


def _today() -> date:
    return datetime.now(UTC).date()


class TwilioPayEmulator:
    """A ``PayHandler``: plays one ``<Pay>`` as Twilio does with its Stripe connector.

    For each attempt (up to ``maxAttempts``) it takes an entry from ``cards``, checks it
    as Twilio does (Luhn and length, card type against ``validCardTypes``, expiry not
    past, security code and postal code) and tokenizes it with ``client``. An invalid
    entry, a timeout or a processor decline is a failed attempt; ``*`` ends the ``<Pay>``
    at once, as does a processor that cannot be reached or refuses the request.

    ``tokenize`` is ``tokenize_card`` unless a test replaces it; ``today`` dates the
    expiry check. With ``falls_through``, the last failed attempt does not request the
    action: Twilio goes on to the verb after the ``<Pay>``, as its documentation of
    ``maxAttempts`` allows (the IVR must then bring the caller back itself).
    """

    def __init__(
        self,
        client: stripe.StripeClient,
        cards: CardSource,
        *,
        tokenize: Tokenizer = tokenize_card,
        today: Callable[[], date] = _today,
        falls_through: bool = False,
    ) -> None:
        self._falls_through = falls_through
        self._client = client
        self._cards = cards
        self._tokenize = tokenize
        self._today = today

    def __repr__(self) -> str:
        return f"<TwilioPayEmulator cards={self._cards!r}>"

    def __call__(self, attributes: dict[str, str]) -> dict[str, str]:
        try:
            request = _read_request(attributes)
        except _InvalidAttribute as exc:
            return {"Result": "validation-error", "PaymentError": str(exc)}
        error: str | None = None
        for attempt in range(1, request.max_attempts + 1):
            entry = self._cards.card_for(request, attempt, error)
            if isinstance(entry, Gesture):
                if entry is Gesture.TIMEOUT:
                    error = "input-timeout"
                    continue
                ended: Result = "caller-interrupted-with-star" if entry is Gesture.STAR else "caller-hung-up"
                return self._ended(ended, request)
            valid = _checked(entry, request, self._today())
            if isinstance(valid, str):
                error = valid
                continue
            try:
                method = self._tokenized(entry, valid, request)
            except (CardDeclined, ActionRequired):
                error = DECLINED
                continue
            except PaymentError as exc:
                # The gateway's messages carry no card data (payments.gateway).
                return {
                    **self._ended("payment-connector-error", request),
                    "PaymentError": "the payment processor failed",
                    "ConnectorError": f"{type(exc).__name__}: {exc}",
                }
            return self._success(entry, valid, method, request)
        failed = {**self._ended("too-many-failed-attempts", request), "PaymentError": error or ""}
        if self._falls_through:
            raise PayFellThrough(failed)
        return failed

    def _tokenized(self, card: Card, valid: _Valid, request: PayRequest) -> MethodInfo:
        postal = card.postal_code if request.asks_postal_code else None
        if isinstance(request.postal_code, str):
            postal = request.postal_code
        return self._tokenize(
            self._client,
            number=card.number,
            exp_month=valid.exp_month,
            exp_year=valid.exp_year,
            cvc=card.cvc if request.security_code else "",
            postal_code=postal or None,
        )

    @staticmethod
    def _ended(result: Result, request: PayRequest) -> dict[str, str]:
        return {"Result": result, "PaymentMethod": request.payment_method}

    @staticmethod
    def _success(card: Card, valid: _Valid, method: MethodInfo, request: PayRequest) -> dict[str, str]:
        params = {
            "Result": "success",
            "PaymentToken": method.processor_id,
            "PaymentMethod": request.payment_method,
            "PaymentCardNumber": "x" * (len(card.number) - 4) + method.last4,
            "PaymentCardType": valid.kind,
            "ExpirationDate": f"{valid.exp_month:02d}{valid.exp_year % 100:02d}",
        }
        if request.security_code:
            params["SecurityCode"] = "*" * len(card.cvc)
        if request.asks_postal_code:
            params["PaymentCardPostalCode"] = card.postal_code
        return params


# -- card sources ----------------------------------------------------------------------

_ENTRY_FORM = "'NUMBER MM/YY CVC [POSTAL]', '*', 'timeout' or 'hangup'"
_GESTURES: Final = {gesture.value: gesture for gesture in Gesture}


def parse_card_entry(text: str) -> CardEntry:
    """One scripted entry: ``"4242424242424242 12/30 123"`` (a postal code may follow),
    ``"*"``, ``"timeout"`` or ``"hangup"``.

    Only the shape is checked here (a mistyped card is something to script); the
    ``ValueError`` for a bad shape never repeats the entry.
    """
    words = text.split()
    if len(words) == 1 and words[0].lower() in _GESTURES:
        return _GESTURES[words[0].lower()]
    if len(words) not in (3, 4) or "/" not in words[1]:
        raise ValueError(f"a card entry is {_ENTRY_FORM}")
    return Card(
        number=words[0].replace("-", ""),
        expiry=words[1],
        cvc=words[2],
        postal_code=words[3] if len(words) == 4 else "",
    )


class ScriptedCards:
    """One entry per ``<Pay>`` attempt, across the whole call; when they run out, the
    caller hangs up (so a test that forgets a card ends the call instead of waiting)."""

    def __init__(self, entries: Iterable[str]) -> None:
        parsed: list[CardEntry] = []
        for index, text in enumerate(entries, start=1):
            try:
                parsed.append(parse_card_entry(text))
            except ValueError:
                raise ValueError(f"card entry {index}: expected {_ENTRY_FORM}") from None
        self._entries = parsed
        self._next = 0

    @property
    def remaining(self) -> int:
        """How many entries are not used yet."""
        return len(self._entries) - self._next

    def __repr__(self) -> str:
        return f"<ScriptedCards {len(self._entries)} entries, {self.remaining} left>"

    def card_for(self, request: PayRequest, attempt: int, previous_error: str | None) -> CardEntry:
        if self._next >= len(self._entries):
            return Gesture.HANG_UP
        entry = self._entries[self._next]
        self._next += 1
        return entry


_SPOKEN_ERRORS: Final = {
    "input-timeout": "We did not receive your input.",
    "invalid-card-number": "That card number is not valid.",
    "invalid-card-type": "That card type is not accepted.",
    "invalid-date": "That expiration date is not valid.",
    "invalid-security-code": "That security code is not valid.",
    "invalid-postal-code": "That postal code is not valid.",
    DECLINED: "That card was declined.",
}


class InteractiveCards:
    """Asks at the terminal, as Twilio's prompts would: the number and the security code
    are typed hidden, the expiry (MM/YY) shown. ``*`` alone cancels (``*`` ends a
    ``<Pay>``), Enter alone is no input, Ctrl-D or Ctrl-C hangs up."""

    def __repr__(self) -> str:
        return "<InteractiveCards>"

    def card_for(self, request: PayRequest, attempt: int, previous_error: str | None) -> CardEntry:
        if previous_error is not None:
            click.echo(f"Twilio <Pay>: {_SPOKEN_ERRORS.get(previous_error, 'That did not work.')}")
        click.echo(
            f"Twilio <Pay> (attempt {attempt} of {request.max_attempts}): enter the card. "
            "Stripe test cards only. *: cancel, Enter alone: no input, Ctrl-D: hang up."
        )
        number = self._ask("Card number", hidden=True)
        if isinstance(number, Gesture):
            return number
        expiry = self._ask("Expiration date (MM/YY)", hidden=False)
        if isinstance(expiry, Gesture):
            return expiry
        cvc = self._ask("Security code", hidden=True) if request.security_code else ""
        if isinstance(cvc, Gesture):
            return cvc
        postal = self._ask("Billing postal code", hidden=False) if request.asks_postal_code else ""
        if isinstance(postal, Gesture):
            return postal
        return Card(number=number, expiry=expiry, cvc=cvc, postal_code=postal)

    @staticmethod
    def _ask(label: str, *, hidden: bool) -> str | Gesture:
        try:
            raw = click.prompt(label, default="", show_default=False, hide_input=hidden)
        except click.Abort:  # Ctrl-D / Ctrl-C: the caller put the phone down
            click.echo()
            return Gesture.HANG_UP
        value = "".join(str(raw).split()).replace("-", "")
        if value == "*":
            return Gesture.STAR
        return value or Gesture.TIMEOUT
