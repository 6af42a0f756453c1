"""What the IVR answers, independent of TwiML: ``ivr.twiml`` renders it for Twilio."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Speech:
    text: str
    language: str  # "en" or "es"


@dataclass(frozen=True)
class Gather:
    """Prompts said while listening for keys; no input falls through to a redirect."""

    speech: tuple[Speech, ...]
    num_digits: int | None
    finish_on_key: str
    timeout_seconds: int
    empty_result: bool = False  # the finish key alone means something: post it (actionOnEmptyResult)


@dataclass(frozen=True)
class PayPrompt:
    """What Twilio says at one step of ``<Pay>`` (its ``<Prompt for=... errorType=...>``)."""

    step: str  # Twilio's name: payment-card-number, expiration-date, ...
    speech: Speech
    error_type: str | None = None  # said after an attempt failed with this error


@dataclass(frozen=True)
class PayRequest:
    """Twilio ``<Pay>``: collect a card and tokenize it (no charge amount)."""

    connector: str
    max_attempts: int
    timeout_seconds: int
    language: str
    card_types: tuple[str, ...] = ("visa", "mastercard", "amex", "discover")
    prompts: tuple[PayPrompt, ...] = ()


@dataclass(frozen=True)
class RecordRequest:
    """Twilio ``<Record>``: the caller's spoken authorization, ended by ``#``; no audio
    falls through to a redirect (no input)."""

    max_length_seconds: int
    timeout_seconds: int


@dataclass(frozen=True)
class Dial:
    """A transfer; when it ends (``DialCallStatus``), Twilio asks the step again."""

    number: str


@dataclass(frozen=True)
class Reply:
    """The answer to one webhook: what is said, then a Gather, a Dial or a hang-up.

    ``step`` is the step number the next request must carry (it is signed by Twilio
    with the rest of the URL, so a replayed or reordered request is recognized).
    """

    step: int
    speech: tuple[Speech, ...] = ()
    gather: Gather | None = None
    pay: PayRequest | None = None
    record: RecordRequest | None = None
    dial: Dial | None = None
    hangup: bool = False
