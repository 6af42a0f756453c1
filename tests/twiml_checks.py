"""TwiML answers checked against ``tests/twiml.xsd``: exactly the verbs, attributes and
values SecurePay emits (Twilio publishes no current schema). Used by every test call
through the ``phone`` fixtures, the hostile-call machine and the limit tests."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # noqa: S405 - parses our own app's answers, not input
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import xmlschema

from ivr.softphone import FlaskTransport
from ivr.softphone.transports import HttpReply

SCHEMA_PATH = Path(__file__).with_name("twiml.xsd")
STEP_URL = re.compile(r"https?://[^/?#]+(?:/[^?#]*)?/ivr/step\?n=([0-9]+)")


@cache
def twiml_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(SCHEMA_PATH)


def assert_valid_twiml(body: str | bytes, content_type: str = "text/xml; charset=utf-8") -> int | None:
    """Assert ``body`` is TwiML valid against the schema; return the step it asks for next
    (the Gather's, Pay's or Dial's action), or None when it asks for nothing (an end)."""
    assert content_type.split(";")[0].strip() == "text/xml", content_type
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    twiml_schema().validate(text)
    root = ET.fromstring(text)  # noqa: S314 - our own app's answer
    gather, redirect, pay = root.find("Gather"), root.find("Redirect"), root.find("Pay")
    dial = root.find("Dial")
    if gather is not None or pay is not None:
        # No input (or a <Pay> that went on after maxAttempts) falls through to the
        # Redirect: it must answer the same step.
        verb = gather if gather is not None else pay
        assert verb is not None and redirect is not None and redirect.text == verb.get("action"), text
        action = verb.get("action", "")
    elif dial is not None:
        action = dial.get("action", "")
    else:
        return None
    found = STEP_URL.fullmatch(action)
    assert found is not None, action
    return int(found.group(1))


@dataclass
class CheckingTransport:
    """The in-process transport, asserting that every answer is schema-valid TwiML."""

    inner: FlaskTransport
    answers: list[HttpReply] = field(default_factory=list)

    def post(self, path_and_query: str, params: dict[str, str], headers: dict[str, str]) -> HttpReply:
        return self._checked(self.inner.post(path_and_query, params, headers))

    def get(self, path_and_query: str, headers: dict[str, str]) -> HttpReply:
        return self._checked(self.inner.get(path_and_query, headers))

    def _checked(self, reply: HttpReply) -> HttpReply:
        assert reply.status == 200, reply
        assert_valid_twiml(reply.body, reply.content_type)
        self.answers.append(reply)
        return reply
