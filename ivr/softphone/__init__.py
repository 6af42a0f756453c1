"""A Twilio simulator: drives whole calls through the IVR's signed webhooks.

The test suite and ``securepay call`` use the same walker, so a call that works in the
terminal works in the tests, and both see the IVR exactly as Twilio would::

    phone = Softphone(FlaskTransport(app), auth_token=token, public_url="https://ivr.example.test")
    transcript = phone.call("+12025550123", keys=["1", "4739"])
    assert "Please enter your 4-digit" in transcript.said_text()
"""

from ivr.softphone.keys import (
    HANG_UP,
    GatherPrompt,
    InteractiveKeys,
    KeyPress,
    KeySource,
    ScriptedKeys,
    parse_keys,
)
from ivr.softphone.printer import TerminalPrinter, describe
from ivr.softphone.transcript import (
    CallTranscript,
    Dialed,
    Error,
    Event,
    Exchange,
    Gathered,
    HungUp,
    Paid,
    Paused,
    Played,
    Redirected,
    Rejected,
    Said,
    WalkFailed,
)
from ivr.softphone.transports import (
    FlaskTransport,
    HttpReply,
    HttpTransport,
    Transport,
    TransportError,
)
from ivr.softphone.verbs import DIAL_STATUSES, PayFellThrough, collect_digits, new_sid, no_pay_handler
from ivr.softphone.walker import (
    DEFAULT_TO_NUMBER,
    MAX_REQUESTS,
    Observer,
    PayHandler,
    Softphone,
    WalkStopped,
    walk,
)

__all__ = [
    "DEFAULT_TO_NUMBER",
    "DIAL_STATUSES",
    "HANG_UP",
    "MAX_REQUESTS",
    "CallTranscript",
    "Dialed",
    "Error",
    "Event",
    "Exchange",
    "FlaskTransport",
    "GatherPrompt",
    "Gathered",
    "HttpReply",
    "HttpTransport",
    "HungUp",
    "InteractiveKeys",
    "KeyPress",
    "KeySource",
    "Observer",
    "Paid",
    "Paused",
    "PayFellThrough",
    "PayHandler",
    "Played",
    "Redirected",
    "Rejected",
    "Said",
    "ScriptedKeys",
    "Softphone",
    "TerminalPrinter",
    "Transport",
    "TransportError",
    "WalkFailed",
    "WalkStopped",
    "collect_digits",
    "describe",
    "new_sid",
    "no_pay_handler",
    "parse_keys",
    "walk",
]
