"""Twilio's fallback URL: with the main app down, the fallback still answers an apology.

Both run under the real gunicorn on 127.0.0.1; Twilio's part is played by the softphone
over HTTP, as it would call the voice URL and then, on failure, the fallback URL.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - our own documents
from pathlib import Path

import pytest

from ivr.fallback import create_fallback_app, fallback_twiml, twiml_bin
from ivr.softphone import HttpTransport, Said, walk
from tests.conftest import TEST_ENV
from tests.server_process import REPO, GunicornServer

CALLER = "+12025550143"


def _call(base_url: str) -> list[str]:
    transcript = walk(
        HttpTransport(base_url, timeout=5),
        auth_token=TEST_ENV["TWILIO_AUTH_TOKEN"],
        public_url=TEST_ENV["SECUREPAY_PUBLIC_URL"],
        from_number=CALLER,
        keys=[],
        status_path=None,
    )
    assert transcript.ok, transcript
    return [event.text for event in transcript.events if isinstance(event, Said)]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_with_the_main_app_down_the_fallback_app_answers_the_apology(
    backend: str, test_env: dict[str, str], tmp_path: Path
) -> None:
    main = GunicornServer(test_env, log_path=tmp_path / "main.log", workers=1, threads=1)
    fallback = GunicornServer(
        {
            "SECUREPAY_UTILITY_NAME": "Test Valley Electric",
            "SECUREPAY_MEMBER_SERVICES_NUMBER": "+12025550100",
        },
        log_path=tmp_path / "fallback.log", app="ivr.fallback:create_fallback_app()",
        workers=1, threads=1, ready_path="/",
    )
    with main, fallback:
        assert "Test Valley Electric" in " ".join(_call(main.base_url))  # the real greeting
        main.stop()
        assert main.status("/healthz") is None  # nothing answers there now
        said = _call(fallback.base_url)  # what Twilio calls next: the fallback URL

    assert said[0].startswith("Thank you for calling Test Valley Electric. We are sorry")
    assert "please do not pay again" in said[0]
    assert "call member services at 2 0 2, 5 5 5, 0 1 0 0" in said[0]
    assert said[1].startswith("Gracias por llamar a Test Valley Electric.")
    assert "Traceback" not in fallback.log()


def test_the_fallback_answers_any_request_without_a_database_or_secrets() -> None:
    app = create_fallback_app({})  # no pepper, no token, no database URL
    seen: list[tuple[str, list[tuple[str, str]]]] = []
    for method, path in [("POST", "/ivr/voice"), ("POST", "/ivr/step"), ("GET", "/anything")]:
        body = b"".join(app(
            {"REQUEST_METHOD": method, "PATH_INFO": path, "CONTENT_LENGTH": "0"},
            lambda status, headers: seen.append((status, headers)),
        ))
        root = ET.fromstring(body)  # noqa: S314
        assert [child.tag for child in root] == ["Say", "Say", "Hangup"]
    assert {status for status, _ in seen} == {"200 OK"}
    assert all(("Content-Type", "text/xml; charset=utf-8") in headers for _, headers in seen)


def test_the_twiml_bin_in_deploy_is_the_fallback_document() -> None:
    committed = (REPO / "deploy" / "fallback-twiml.xml").read_text()
    assert committed == twiml_bin()
    root = ET.fromstring(committed)  # noqa: S314
    assert root.tag == "Response" and root[-1].tag == "Hangup"
    assert ET.tostring(root) == ET.tostring(ET.fromstring(fallback_twiml()))  # noqa: S314


def test_a_malformed_member_services_number_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="member services number"):
        create_fallback_app({"SECUREPAY_MEMBER_SERVICES_NUMBER": "call us"})
