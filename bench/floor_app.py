"""The floor: the least a webhook can cost under the same gunicorn settings.

A minimal Flask app that answers every step with the same constant TwiML ``<Gather>``
(no signature check, no database, no flow), so its latency is what gunicorn, Flask,
the loopback and the load generator cost by themselves. A "call" is as many requests as
a SecurePay call: the caller presses ``1`` at each gather and ``9`` at the last one,
which is answered with a goodbye and ``<Hangup>``; ``/ivr/status`` answers an empty
``<Response>``.

Served as ``gunicorn "bench.floor_app:create_app()"``.
"""

from __future__ import annotations

from flask import Flask, Response, request

GATHER = (
    '<?xml version="1.0" encoding="UTF-8"?><Response>'
    '<Gather action="/ivr/step" method="POST" input="dtmf" numDigits="1" timeout="5">'
    "<Say>To continue, press 1.</Say></Gather>"
    '<Redirect method="POST">/ivr/step</Redirect></Response>'
)
HANGUP = (
    '<?xml version="1.0" encoding="UTF-8"?><Response>'
    "<Say>Thank you for calling. Goodbye.</Say><Hangup/></Response>"
)
EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
LAST_KEY = "9"


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/ivr/voice")
    def voice() -> Response:
        return Response(GATHER, mimetype="text/xml")

    @app.post("/ivr/step")
    def step() -> Response:
        body = HANGUP if request.form.get("Digits") == LAST_KEY else GATHER
        return Response(body, mimetype="text/xml")

    @app.post("/ivr/status")
    def status() -> Response:
        return Response(EMPTY, mimetype="text/xml")

    return app
