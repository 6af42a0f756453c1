"""The caller's minute: how long the IVR keeps a caller on the line, as a figure.

For one simulated call: the words the IVR says up to and including the confirmation
number, the seconds of timeouts the caller sits through before it, and the estimate at
150 words a minute (a usual rate for clear telephone speech) plus those seconds. The
words are counted in the TwiML the IVR answered (every ``<Say>``, in a ``<Gather>``
or not), so the figure follows the catalogs as they are worded.

Twilio's ``<Pay>`` speaks its own prompts for the card number, expiry and security
code unless ``<Prompt>`` elements give ours; a ``<Pay>`` without them counts as
``PAY_DEFAULT_WORDS`` (an estimate of those three built-in prompts, not a measurement).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # noqa: S405 - parses only the IVR's own replies
from collections.abc import Sequence
from dataclasses import dataclass

from ivr.softphone import CallTranscript

__all__ = ["PAY_DEFAULT_WORDS", "WORDS_PER_MINUTE", "Minute", "measure", "render"]

WORDS_PER_MINUTE = 150
PAY_DEFAULT_WORDS = 30
CONFIRMATION = re.compile(r"(?<!\d )\b(?:\d ){9}\d\b")  # ten digits read one by one
STATUS_PATH = "/ivr/status"


@dataclass(frozen=True)
class Minute:
    """One path's figure; ``target_seconds`` None: no target set for this path."""

    path: str
    words: int
    waited_seconds: int
    confirmed: bool  # the confirmation number was said
    target_seconds: int | None = None

    @property
    def estimate_seconds(self) -> float:
        return self.words * 60 / WORDS_PER_MINUTE + self.waited_seconds

    @property
    def met(self) -> bool | None:
        if self.target_seconds is None:
            return None
        return self.confirmed and self.estimate_seconds <= self.target_seconds


def _words(text: str) -> int:
    return len(text.split())


def _pay_words(pay: ET.Element) -> int:
    prompts = list(pay.iter("Prompt"))
    if not prompts:
        return PAY_DEFAULT_WORDS
    first_tries = [
        p for p in prompts if p.get("errorType") is None and p.get("attempt") in (None, "1")
    ]
    return sum(_words(say.text or "") for prompt in first_tries for say in prompt.iter("Say"))


def measure(path: str, transcript: CallTranscript, target_seconds: int | None = None) -> Minute:
    """The figure of one call, from its exchanges with the IVR, in order."""
    words = waited = 0
    previous_gather: ET.Element | None = None
    for exchange in transcript.exchanges:
        if exchange.url.endswith(STATUS_PATH) or not exchange.body.startswith("<?xml"):
            break
        params = exchange.params
        timed_out = "Digits" not in params or (params["Digits"] == "" and not params.get("FinishedOnKey"))
        if previous_gather is not None and timed_out:
            waited += int(previous_gather.get("timeout", "5"))
        root = ET.fromstring(exchange.body)  # noqa: S314 - our own replies
        previous_gather = root.find("Gather")
        in_prompts = {id(say) for say in _prompt_says(root)}
        for element in root.iter():
            if element.tag == "Pay":
                words += _pay_words(element)
            elif element.tag == "Say" and id(element) not in in_prompts:
                text = element.text or ""
                words += _words(text)
                if CONFIRMATION.search(text):
                    return Minute(path, words, waited, True, target_seconds)
    return Minute(path, words, waited, False, target_seconds)


def _prompt_says(root: ET.Element) -> list[ET.Element]:
    """The ``<Say>``s inside ``<Pay><Prompt>`` (counted by ``_pay_words``)."""
    return [say for prompt in root.iter("Prompt") for say in prompt.iter("Say")]


def render(minutes: Sequence[Minute]) -> list[str]:
    """The figures as table lines, with each target and whether it is met."""
    lines = [
        f"  {'PATH':<40} {'WORDS':>5} {'WAITED':>7} {'ESTIMATE':>9}  TARGET",
    ]
    for m in minutes:
        if m.target_seconds is None:
            verdict = "-"
        else:
            verdict = f"<= {m.target_seconds} s {'met' if m.met else 'MISSED'}"
        if not m.confirmed:
            verdict += " (no confirmation number was said)"
        lines.append(
            f"  {m.path:<40} {m.words:>5} {m.waited_seconds:>5} s {m.estimate_seconds:>7.1f} s  {verdict}"
        )
    lines.append(f"  (words up to the confirmation number; estimate at {WORDS_PER_MINUTE} words a minute")
    lines.append("  plus the timeouts waited through; Twilio's own <Pay> prompts counted as")
    lines.append(f"  {PAY_DEFAULT_WORDS} words where we give none)")
    return lines
