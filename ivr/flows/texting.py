"""Key 3 after a payment: the receipt by text message (contract 2.7, 2.11).

Offered only when texts are on (``SECUREPAY_SMS_FROM``) and the caller ID is a valid US
number. The request is recorded in the call's context under the call's row lock, so a
payment is texted at most once; the text goes after the step commits, on a thread of
its own (``payments.texts``), and Twilio's answer comes back into ``data["texts"]``.
The next prompt the caller hears says a refusal plainly, once.

A text carries the utility's name, the amount, the account's last four and the
confirmation number: never a PIN, SSN digit, card data or full account number.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers

from ivr.flows.amounts import format_cents
from ivr.flows.context import Ctx
from ivr.flows.machine import Action, Go, Phrase, speaks
from ivr.flows.speech import say_amount, say_digits

DONE = "payment_done"
QUEUED = "queued"
REFUSED_PROMPTS = {
    "invalid_number": "text_refused_number",
    "not_mobile": "text_refused_not_mobile",
    "opted_out": "text_refused_opted_out",
    "busy": "text_refused_busy",
    "unavailable": "text_refused_unavailable",
    "refused": "text_refused_unavailable",
}


@dataclass(frozen=True)
class TextJob:
    """One receipt to text: for which call and payment, to whom, what."""

    call_sid: str
    account_id: int
    payment_id: int
    to: str
    body: str


def textable_us_number(e164: str | None) -> bool:
    """A valid US number (Twilio may still refuse it: a landline, an opted-out number)."""
    if not e164:
        return False
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.region_code_for_number(number) == "US" and phonenumbers.is_valid_number(number)


_BODIES = {
    "en": "{utility}: payment of {amount} received on account ending {last4}, confirmation {confirmation}",
    "es": "{utility}: pago de {amount} recibido en la cuenta que termina en {last4}, "
          "confirmación {confirmation}",
}


def receipt_text(
    utility: str, amount_cents: int, account_number: str, confirmation: str, language: str
) -> str:
    """The receipt's words: the account by its last four only, and the confirmation."""
    template = _BODIES.get(language, _BODIES["en"])
    return template.format(
        utility=utility, amount=format_cents(amount_cents), last4=account_number[-4:],
        confirmation=confirmation,
    )


def texts_offered(ctx: Ctx) -> bool:
    return ctx.config.texts_on and ctx.texter is not None and textable_us_number(ctx.caller)


def _texts(ctx: Ctx) -> dict[str, str]:
    return {str(k): str(v) for k, v in ctx.call.data.get("texts", {}).items()}


def _text_receipt(ctx: Ctx, _digits: str) -> Go:
    texter = ctx.texter
    paid = ctx.call.data.get("paid")
    if texter is None or not texts_offered(ctx) or not paid:
        return Go(DONE, notice=Phrase("invalid_entry"), miss=True)  # not offered: a wrong key
    payment_id = str(paid["payment_id"])
    texts = _texts(ctx)
    if payment_id in texts:
        return Go(DONE, notice=Phrase("text_already_sent"))
    texts[payment_id] = QUEUED
    ctx.call.data["texts"] = texts
    account = ctx.account()
    job = TextJob(
        call_sid=ctx.call.call_sid,
        account_id=account.id,
        payment_id=int(paid["payment_id"]),
        to=str(ctx.caller),
        body=receipt_text(
            ctx.config.utility_name, int(paid["amount_cents"]), account.number, str(paid["confirmation"]),
            ctx.lang,
        ),
    )
    ctx.event("text_receipt_requested", payment_id=job.payment_id)
    ctx.after_commit.append(lambda: texter.text_receipt(job))
    return Go(DONE, notice=Phrase("text_queued"))


text_receipt = Action(_text_receipt, (DONE,))


def take_text_news(ctx: Ctx) -> None:
    """On entering a state: a text's refusal not told yet becomes this prompt's news."""
    data = ctx.call.data
    told = [str(p) for p in data.get("texts_told", [])]
    news = [
        payment_id for payment_id, reason in _texts(ctx).items()
        if reason not in (QUEUED, "sent") and payment_id not in told
    ]
    if news:
        data["text_news"] = _texts(ctx)[news[0]]
        data["texts_told"] = [*told, news[0]]
    else:
        data.pop("text_news", None)


def news_phrases(ctx: Ctx) -> list[Phrase]:
    reason = ctx.call.data.get("text_news")
    return [Phrase(REFUSED_PROMPTS[str(reason)])] if reason in REFUSED_PROMPTS else []


@speaks("payment_received", "payment_done_options", "payment_done_text", *REFUSED_PROMPTS.values())
def speak_payment_done(ctx: Ctx) -> list[Phrase]:
    paid = ctx.call.data["paid"]
    phrases = [
        *news_phrases(ctx),
        Phrase("payment_received", {
            "amount": say_amount(int(paid["amount_cents"]), ctx.lang),
            "confirmation": say_digits(str(paid["confirmation"])),
        }),
        Phrase("payment_done_options"),
    ]
    if texts_offered(ctx) and str(paid.get("payment_id")) not in _texts(ctx):
        phrases.append(Phrase("payment_done_text"))
    return phrases


@speaks("goodbye", *REFUSED_PROMPTS.values())
def speak_goodbye(ctx: Ctx) -> list[Phrase]:
    return [*news_phrases(ctx), Phrase("goodbye")]
