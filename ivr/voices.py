"""Twilio's text-to-speech voices, and the language each speaks.

``<Say voice=...>`` takes Amazon Polly voices (``Polly.Joanna``, ``Polly.Joanna-Neural``)
and Google voices (``Google.en-US-Neural2-F``), each of one language
(https://www.twilio.com/docs/voice/twiml/say/text-speech). A voice of the wrong language
reads Spanish prompts with English rules (or the reverse), so ``SECUREPAY_VOICE_EN`` and
``SECUREPAY_VOICE_ES`` are checked here at start. Google voices name their language;
Polly voices are looked up in the table below (Amazon's list of Polly voices). A voice
not in the table is refused rather than guessed: add it here with its language.
"""

from __future__ import annotations

import re
from typing import Final

POLLY_VOICES: Final[dict[str, str]] = {
    # English
    **dict.fromkeys(
        ("Danielle", "Gregory", "Ivy", "Joanna", "Joey", "Justin", "Kendra", "Kevin", "Kimberly",
         "Matthew", "Patrick", "Ruth", "Salli", "Stephen"), "en-US"),
    **dict.fromkeys(("Amy", "Arthur", "Brian", "Emma"), "en-GB"),
    **dict.fromkeys(("Nicole", "Olivia", "Russell"), "en-AU"),
    **dict.fromkeys(("Aditi", "Kajal", "Raveena"), "en-IN"),
    "Aria": "en-NZ", "Ayanda": "en-ZA", "Niamh": "en-IE", "Geraint": "en-GB-WLS",
    # Spanish
    **dict.fromkeys(("Lupe", "Miguel", "Pedro", "Penelope"), "es-US"),
    **dict.fromkeys(("Andres", "Mia"), "es-MX"),
    **dict.fromkeys(("Conchita", "Enrique", "Lucia", "Sergio"), "es-ES"),
    # Other languages: known, so that choosing one is refused by name
    **dict.fromkeys(("Celine", "Lea", "Mathieu", "Remi"), "fr-FR"),
    **dict.fromkeys(("Chantal", "Gabrielle", "Liam"), "fr-CA"),
    **dict.fromkeys(("Daniel", "Hans", "Marlene", "Vicki"), "de-DE"),
    **dict.fromkeys(("Adriano", "Bianca", "Carla", "Giorgio"), "it-IT"),
    **dict.fromkeys(("Camila", "Ricardo", "Thiago", "Vitoria"), "pt-BR"),
    **dict.fromkeys(("Cristiano", "Ines"), "pt-PT"),
}  # fmt: skip

_POLLY = re.compile(r"Polly\.([A-Z][a-z]+)(?:-(?:Neural|Generative|LongForm))?")
_GOOGLE = re.compile(r"Google\.([a-z]{2,3}-[A-Z]{2})-[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")


class VoiceError(ValueError):
    """A voice that is not Twilio's, or not of the language it is meant to speak."""


def voice_locale(voice: str) -> str:
    """``Polly.Lupe-Neural`` -> ``es-US``; ``Google.en-US-Neural2-F`` -> ``en-US``."""
    polly = _POLLY.fullmatch(voice)
    if polly is not None:
        locale = POLLY_VOICES.get(polly.group(1))
        if locale is None:
            raise VoiceError(f"{voice!r} is not a Polly voice SecurePay knows the language of")
        return locale
    google = _GOOGLE.fullmatch(voice)
    if google is not None:
        return google.group(1)
    raise VoiceError(
        f"{voice!r} is not a Twilio voice of the form Polly.Name[-Neural] or Google.xx-XX-Kind-X"
    )


def check_voice(voice: str, language: str) -> str:
    """``voice`` if it speaks ``language`` (``en`` or ``es``); else ``VoiceError``."""
    locale = voice_locale(voice)
    if locale.split("-")[0] != language:
        raise VoiceError(f"{voice!r} speaks {locale}, not {language}")
    return voice
