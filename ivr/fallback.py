"""Twilio's fallback URL: an apology when the main app cannot answer.

Twilio calls a number's *fallback URL* when the voice URL (or any webhook of the call)
fails or takes more than 15 s. Whatever answers there must not share the main app's
failure, so this app has no database, no processor, no secrets and no Flask: a plain
WSGI callable that answers every request, whatever its method, path or body, with the
same TwiML: an apology in English and Spanish, the member services number read digit
by digit, and ``<Hangup/>``.

It changes nothing and reveals nothing that is not printed on a bill, so it does not
check Twilio's signature (a forged request gets the same apology as a real one).

Run it apart from the main app (another host or at least another process)::

    gunicorn -b 127.0.0.1:8001 "ivr.fallback:create_fallback_app()"

A Twilio TwiML Bin holding the same document (``deploy/fallback-twiml.xml``, written by
``python -m ivr.fallback``) does not depend on our servers at all, and is the first
choice for the fallback URL.

It reads two variables, both optional and neither secret: ``SECUREPAY_UTILITY_NAME``
and ``SECUREPAY_MEMBER_SERVICES_NUMBER`` (the main app's ``Settings`` are not used: they
require the pepper, which this process has no need to hold).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twilio.twiml.voice_response import VoiceResponse

__all__ = [
    "DEFAULT_MEMBER_SERVICES_NUMBER",
    "DEFAULT_UTILITY_NAME",
    "create_fallback_app",
    "fallback_twiml",
    "twiml_bin",
]

DEFAULT_UTILITY_NAME = ""  # no name: "We are sorry, we cannot take your call right now."
DEFAULT_MEMBER_SERVICES_NUMBER = "+12025550100"
_NUMBER = re.compile(r"\+?[0-9]{7,15}")
_MAX_BODY = 64 * 1024  # read (and drop) at most this much of a request body

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _spoken_number(number: str) -> str:
    """``+12025550100`` -> ``2 0 2, 5 5 5, 0 1 0 0`` (a US number in its three groups)."""
    digits = number.lstrip("+")
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    if len(digits) == 10:
        groups = [digits[:3], digits[3:6], digits[6:]]
    else:
        groups = [digits]
    return ", ".join(" ".join(group) for group in groups)


def fallback_twiml(
    utility_name: str = DEFAULT_UTILITY_NAME, member_services_number: str = DEFAULT_MEMBER_SERVICES_NUMBER
) -> str:
    """The fallback document (the utility's name is said when given). It says nothing
    about a payment's outcome, which it cannot know: a caller who was paying is told not
    to pay again before checking."""
    if not _NUMBER.fullmatch(member_services_number):
        raise ValueError(f"member services number must be a phone number, got {member_services_number!r}")
    spoken = _spoken_number(member_services_number)
    hello_en = f"Thank you for calling {utility_name}. " if utility_name else ""
    hello_es = f"Gracias por llamar a {utility_name}. " if utility_name else ""
    response = VoiceResponse()
    response.say(
        f"{hello_en}We are sorry, we cannot take your call right now. "
        "If you were making a payment, please do not pay again until you have checked with us: "
        f"call member services at {spoken}. Goodbye.",
        language="en-US",
    )
    response.say(
        f"{hello_es}Lo sentimos, no podemos atender su llamada en este momento. "
        "Si estaba haciendo un pago, por favor no pague otra vez antes de consultarnos: "
        f"llame a servicio al socio al {spoken}. Adiós.",
        language="es-US",
    )
    response.hangup()
    return str(response)


def create_fallback_app(env: Mapping[str, str] | None = None) -> WsgiApp:
    """The fallback WSGI app; ``env`` defaults to the process environment."""
    body = fallback_twiml(*_from_env(os.environ if env is None else env)).encode()  # checked at start
    headers = [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body)))]

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        _drain(environ)
        start_response("200 OK", list(headers))
        return [body]

    return app


def _from_env(env: Mapping[str, str]) -> tuple[str, str]:
    name = env.get("SECUREPAY_UTILITY_NAME", "").strip() or DEFAULT_UTILITY_NAME
    number = env.get("SECUREPAY_MEMBER_SERVICES_NUMBER", "").strip() or DEFAULT_MEMBER_SERVICES_NUMBER
    return name, number


def _drain(environ: Mapping[str, Any]) -> None:
    """Read the request body (bounded) so that the connection can be reused."""
    try:
        length = min(int(environ.get("CONTENT_LENGTH") or 0), _MAX_BODY)
    except ValueError:
        return
    stream = environ.get("wsgi.input")
    if length > 0 and stream is not None:
        stream.read(length)


_BIN_NOTE = (
    "<!-- Twilio TwiML Bin for the Secure Pay number's fallback URL (Console: the number's "
    "\"Primary handler fails\" setting). Written by `python -m ivr.fallback`: run it with your "
    "SECUREPAY_UTILITY_NAME and SECUREPAY_MEMBER_SERVICES_NUMBER set and paste its output. -->"
)


def twiml_bin(
    utility_name: str = DEFAULT_UTILITY_NAME, member_services_number: str = DEFAULT_MEMBER_SERVICES_NUMBER
) -> str:
    """The fallback document as a file to paste into a TwiML Bin (``deploy/fallback-twiml.xml``)."""
    declaration, _, document = fallback_twiml(utility_name, member_services_number).partition("?>")
    return f"{declaration}?>\n{_BIN_NOTE}\n{document}\n"


def main() -> None:
    """``python -m ivr.fallback``: print the TwiML Bin document for this environment."""
    sys.stdout.write(twiml_bin(*_from_env(os.environ)))


if __name__ == "__main__":
    main()
