"""A tiny IVR for testing the softphone: canned TwiML for every verb the walker plays.

It checks ``X-Twilio-Signature`` as the real IVR does (403 when it does not match), and
logs what it received, so tests can assert on what "Twilio" actually sent.
The first menu picks a scenario by key:

    1 account entry (finishOnKey "#", actionOnEmptyResult)   6 end of document
    2 <Dial> with an action                                  7 a <Redirect> loop
    3 <Dial> without an action                               8 GET <Redirect>, then a 4-digit
    4 <Pay>                                                    <Gather> with no action nor finish key
    5 <Hangup>                                               9 <Play>, <Pause>, <Say loop>, <Reject>
    0 a menu of broken replies                               * a <Redirect> to another host

A call from ``BLOCKED_CALLER`` is rejected before it is answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Flask, Response, abort, request
from twilio.request_validator import RequestValidator

PUBLIC_URL = "https://ivr.example.test"
AUTH_TOKEN = "fixture-auth-token"
BLOCKED_CALLER = "+12025550666"
LOG_KEY = "twiml_fixture"


@dataclass(frozen=True)
class Received:
    method: str
    path: str  # with its query
    params: dict[str, str]


@dataclass
class FixtureLog:
    requests: list[Received] = field(default_factory=list)

    def to(self, path: str) -> list[Received]:
        """Requests whose path (without query) is ``path``."""
        return [r for r in self.requests if r.path.split("?")[0] == path]

    @property
    def paths(self) -> list[str]:
        return [r.path.split("?")[0] for r in self.requests]


def fixture_log(app: Flask) -> FixtureLog:
    log: FixtureLog = app.extensions[LOG_KEY]
    return log


def _twiml(body: str) -> Response:
    return Response(
        f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>', 200, mimetype="text/xml"
    )


VOICE = """
<Say>Welcome to the fixture line.</Say>
<Gather numDigits="1" action="/ivr/menu" timeout="3">
  <Say language="en-US">Choose a scenario.</Say>
  <Say language="es-US">Elija un escenario.</Say>
</Gather>
<Say>We did not hear you.</Say>
<Redirect>/ivr/voice?retry=1</Redirect>
"""

MENU = {
    "1": '<Gather finishOnKey="#" action="/ivr/account" actionOnEmptyResult="true" timeout="7">'
    "<Say>Please enter your account number, followed by the pound key.</Say></Gather>",
    "2": "<Say>Connecting you to member services.</Say>"
    '<Dial action="/ivr/after-dial" timeout="20">+12025550100</Dial>',
    "3": "<Dial><Number>+12025550100</Number></Dial><Say>Never heard after the transfer.</Say>",
    "4": '<Pay paymentConnector="Stripe_Connector" tokenType="payment-method" '
    'action="/ivr/paid" maxAttempts="2"/>',
    "5": "<Say>Goodbye.</Say><Hangup/><Say>Never heard after a hang-up.</Say>",
    "6": "<Say>That is all.</Say>",
    "7": "<Redirect>/ivr/loop</Redirect>",
    "8": '<Redirect method="GET">/ivr/pin?attempt=1</Redirect>',
    "9": '<Play>https://cdn.example.test/hold.mp3</Play><Pause length="2"/>'
    '<Say loop="2" language="es-US">Adiós.</Say><Reject reason="busy"/>',
    "0": '<Gather numDigits="1" action="/ivr/errors"><Say>Pick a broken reply.</Say></Gather>',
    "*": "<Redirect>https://elsewhere.example.com/ivr/menu</Redirect>",
}

BROKEN = {  # body, status, content type
    "1": ("<html>Internal Server Error</html>", 500, "text/html"),
    "2": ("<Html><Say>Hi</Say></Html>", 200, "text/xml"),
    "3": ("<Response><Say>Hi</Say></Response>", 200, "text/plain"),
    "4": ("<Response><Enqueue>support</Enqueue></Response>", 200, "text/xml"),
    "5": ("<Response><Say>Hi</Response>", 200, "text/xml"),
    # https://www.twilio.com/docs/voice/twiml/pay: <Pay> has no method attribute ...
    "6": ('<Response><Pay paymentConnector="Stripe_Connector" tokenType="payment-method" '
          'action="/ivr/paid" method="POST"/></Response>', 200, "text/xml"),
    # ... and .../pay/prompt: <Prompt for> names one of the documented payment steps
    "7": ('<Response><Pay paymentConnector="Stripe_Connector" tokenType="payment-method" '
          'action="/ivr/paid"><Prompt for="card-number"><Say>Card?</Say></Prompt></Pay></Response>',
          200, "text/xml"),
}


def create_fixture_app(auth_token: str = AUTH_TOKEN, public_url: str | None = PUBLIC_URL) -> Flask:
    """The fixture IVR; ``public_url=None`` checks signatures against the request's own URL."""
    app = Flask(__name__)
    log = FixtureLog()
    app.extensions[LOG_KEY] = log
    validator = RequestValidator(auth_token)

    @app.before_request
    def check_signature() -> None:
        query = request.query_string.decode()
        path = request.path + (f"?{query}" if query else "")
        base = public_url or request.host_url.rstrip("/")
        params = request.form if request.method == "POST" else {}
        if not validator.validate(base + path, params, request.headers.get("X-Twilio-Signature", "")):
            abort(403)
        given = request.form if request.method == "POST" else request.args
        log.requests.append(Received(request.method, path, given.to_dict()))

    @app.route("/ivr/voice", methods=["POST"])
    def voice() -> Response:
        if request.form["From"] == BLOCKED_CALLER:
            return _twiml('<Reject reason="busy"/>')
        return _twiml(VOICE)

    @app.route("/ivr/menu", methods=["POST"])
    def menu() -> Response:
        return _twiml(MENU.get(request.form["Digits"], "<Say>Unknown scenario.</Say>"))

    @app.route("/ivr/account", methods=["POST"])
    def account() -> Response:
        digits = request.form["Digits"]
        if not digits:
            return _twiml("<Say>We did not receive an account number.</Say><Hangup/>")
        return _twiml(f"<Say>You entered account {digits}.</Say><Hangup/>")

    @app.route("/ivr/after-dial", methods=["POST"])
    def after_dial() -> Response:
        status = request.form["DialCallStatus"]
        return _twiml(f"<Say>Your call with member services ended: {status}.</Say><Hangup/>")

    @app.route("/ivr/paid", methods=["POST"])
    def paid() -> Response:
        result, token = request.form["Result"], request.form.get("PaymentToken", "none")
        return _twiml(f"<Say>Payment {result}, token {token}.</Say>")

    @app.route("/ivr/loop", methods=["POST"])
    def loop() -> Response:
        return _twiml("<Redirect>/ivr/loop</Redirect>")

    @app.route("/ivr/pin", methods=["GET", "POST"])
    def pin() -> Response:
        if "Digits" in request.form:
            return _twiml(f"<Say>You entered {request.form['Digits']}.</Say>")
        return _twiml(
            '<Gather numDigits="4" finishOnKey=""><Say>Enter your 4-digit PIN.</Say></Gather>'
            "<Say>No PIN entered.</Say>"
        )

    @app.route("/ivr/errors", methods=["POST"])
    def errors() -> Response:
        body, code, mimetype = BROKEN[request.form["Digits"]]
        return Response(body, code, mimetype=mimetype)

    @app.route("/ivr/status", methods=["POST"])
    def status() -> Response:
        return _twiml("")

    return app
