"""The softphone plays TwiML as Twilio does: signed requests, Twilio's parameters and
digits, verb semantics, the status callback, and the ``securepay call`` command."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import stripe
from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo
from werkzeug.serving import make_server

from ivr.cli.call import call_command, make_call_command
from ivr.secrets import Secret
from ivr.services import EXTENSION_KEY
from ivr.settings import Settings
from ivr.softphone import (
    HANG_UP,
    Dialed,
    Error,
    FlaskTransport,
    Gathered,
    HttpTransport,
    HungUp,
    Paid,
    Paused,
    Played,
    Redirected,
    Rejected,
    Said,
    Softphone,
    WalkFailed,
    collect_digits,
    describe,
    parse_keys,
    walk,
)
from ivr.softphone.pay import ScriptedCards, TwilioPayEmulator
from tests.twiml_fixture_app import (
    AUTH_TOKEN,
    BLOCKED_CALLER,
    PUBLIC_URL,
    create_fixture_app,
    fixture_log,
)

CALLER = "+12025550123"
SID = re.compile(r"CA[0-9a-f]{32}")
ACCOUNT_SID = re.compile(r"AC[0-9a-f]{32}")
PAY_ATTRIBUTES: list[dict[str, str]] = []


def pay_with_test_card(attributes: dict[str, str]) -> dict[str, str]:
    PAY_ATTRIBUTES.append(attributes)
    return {"Result": "success", "PaymentToken": "pm_test_visa", "PaymentCardType": "visa"}


@pytest.fixture
def app() -> Flask:
    return create_fixture_app()


@pytest.fixture
def phone(app: Flask) -> Softphone:
    return Softphone(
        FlaskTransport(app), auth_token=AUTH_TOKEN, public_url=PUBLIC_URL, pay=pay_with_test_card
    )


@pytest.fixture
def served() -> Iterator[tuple[Flask, str]]:
    """The fixture app on a real socket; it checks signatures against its own URL."""
    app = create_fixture_app(public_url=None)
    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- Twilio's requests ---------------------------------------------------------------


def test_first_request_is_a_ringing_inbound_call_with_twilio_parameters(app: Flask, phone: Softphone) -> None:
    transcript = phone.call(CALLER, ["6"]).check()

    first = fixture_log(app).requests[0]
    assert (first.method, first.path) == ("POST", "/ivr/voice")
    assert SID.fullmatch(first.params["CallSid"])
    assert ACCOUNT_SID.fullmatch(first.params["AccountSid"])
    assert first.params == {
        "CallSid": transcript.call_sid,
        "AccountSid": first.params["AccountSid"],
        "From": CALLER,
        "Caller": CALLER,
        "To": "+12025550199",
        "Called": "+12025550199",
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }


def test_later_requests_carry_the_same_call_in_progress(app: Flask, phone: Softphone) -> None:
    phone.call(CALLER, ["6"], call_sid="CA" + "ab" * 16).check()

    voice, menu = fixture_log(app).requests[:2]
    assert menu.path == "/ivr/menu"
    assert menu.params["CallSid"] == "CA" + "ab" * 16
    assert menu.params["AccountSid"] == voice.params["AccountSid"]
    assert menu.params["CallStatus"] == "in-progress"


def test_every_request_is_signed_for_the_public_url(app: Flask, phone: Softphone) -> None:
    transcript = phone.call(CALLER, ["1", "6789#"]).check()

    # The fixture answers 403 to any request whose signature does not match.
    assert [e.status for e in transcript.exchanges] == [200, 200, 200, 200]
    assert all(e.url.startswith(PUBLIC_URL + "/ivr/") for e in transcript.exchanges)


def test_a_wrong_auth_token_gets_403_recorded_as_an_error(app: Flask) -> None:
    phone = Softphone(FlaskTransport(app), auth_token="not-the-token", public_url=PUBLIC_URL)

    transcript = phone.call(CALLER, ["6"])

    assert not transcript.ok
    assert transcript.errors[0] == Error("the IVR answered HTTP 403", PUBLIC_URL + "/ivr/voice", 403)
    assert fixture_log(app).requests == []
    with pytest.raises(WalkFailed, match="403"):
        transcript.check()


def test_signing_for_another_public_url_is_refused(app: Flask) -> None:
    phone = Softphone(FlaskTransport(app), auth_token=AUTH_TOKEN, public_url="https://other.test")

    assert phone.call(CALLER, ["6"]).errors[0].status == 403


# -- <Gather> ------------------------------------------------------------------------


def test_timeout_falls_through_to_the_next_verb_and_its_redirect(phone: Softphone) -> None:
    transcript = phone.call(CALLER, ["-", "6"]).check()

    welcome = [
        Said("Welcome to the fixture line."),
        Said("Choose a scenario.", "en-US"),
        Said("Elija un escenario.", "es-US"),
    ]
    assert transcript.events == [
        *welcome,
        Gathered("", None, None),
        Said("We did not hear you."),
        Redirected(PUBLIC_URL + "/ivr/voice?retry=1"),
        *welcome,
        Gathered("6", "6", PUBLIC_URL + "/ivr/menu"),
        Said("That is all."),
        HungUp("ivr"),
    ]


def test_digits_stop_at_num_digits(app: Flask, phone: Softphone) -> None:
    phone.call(CALLER, ["61"]).check()

    [menu] = fixture_log(app).to("/ivr/menu")
    assert (menu.params["Digits"], menu.params["FinishedOnKey"]) == ("6", "")


def test_the_finish_key_ends_the_entry_and_is_not_posted(app: Flask, phone: Softphone) -> None:
    transcript = phone.call(CALLER, ["1", "67#89"]).check()

    [account] = fixture_log(app).to("/ivr/account")
    assert (account.params["Digits"], account.params["FinishedOnKey"]) == ("67", "#")
    assert transcript.digits_posted == ["1", "67"]
    assert transcript.last_said() == "You entered account 67."


def test_the_finish_key_alone_is_no_input(phone: Softphone) -> None:
    transcript = phone.call(CALLER, ["#", "6"]).check()

    assert transcript.events[3] == Gathered("#", None, None)
    assert Redirected(PUBLIC_URL + "/ivr/voice?retry=1") in transcript.events


def test_action_on_empty_result_posts_empty_digits(app: Flask, phone: Softphone) -> None:
    transcript = phone.call(CALLER, ["1", ""]).check()

    [account] = fixture_log(app).to("/ivr/account")
    assert (account.params["Digits"], account.params["FinishedOnKey"]) == ("", "")
    assert transcript.last_said() == "We did not receive an account number."


@pytest.mark.parametrize(
    ("pressed", "posted"),
    [("1234", "1234"), ("123456", "1234"), ("12#4", "12#4"), ("12", "12")],
    ids=["exact", "extra-keys-dropped", "pound-is-a-digit-without-finish-key", "partial-timeout"],
)
def test_gather_without_action_posts_to_its_own_document(
    app: Flask, phone: Softphone, pressed: str, posted: str
) -> None:
    transcript = phone.call(CALLER, ["8", pressed]).check()

    get, post = fixture_log(app).to("/ivr/pin")
    assert get.method == "GET" and get.path.startswith("/ivr/pin?attempt=1&")
    assert get.params["CallSid"] == transcript.call_sid
    assert (post.method, post.path) == ("POST", "/ivr/pin?attempt=1")
    assert post.params["Digits"] == posted
    assert transcript.last_said() == f"You entered {posted}."


def test_collect_digits_follows_twilio() -> None:
    assert collect_digits("6789#", None, "#") == ("6789", "#")
    assert collect_digits("#", None, "#") == ("", "#")
    assert collect_digits("1#", 1, "#") == ("1", "")
    assert collect_digits("*25#", None, "#") == ("*25", "#")
    assert collect_digits("", 4, "") == ("", "")


# -- other verbs ---------------------------------------------------------------------


def test_dial_with_an_action_posts_a_completed_dial(app: Flask, phone: Softphone) -> None:
    transcript = phone.call(CALLER, ["2"]).check()

    assert Dialed("+12025550100") in transcript.events
    [after] = fixture_log(app).to("/ivr/after-dial")
    assert after.params["DialCallStatus"] == "completed"
    assert SID.fullmatch(after.params["DialCallSid"])
    assert after.params["DialCallSid"] != transcript.call_sid
    assert transcript.last_said() == "Your call with member services ended: completed."


@pytest.mark.parametrize("status", ["busy", "no-answer", "failed"])
def test_a_dial_nobody_takes_posts_its_status_to_the_action(app: Flask, status: str) -> None:
    # https://www.twilio.com/docs/voice/twiml/dial: DialCallStatus busy, no-answer or
    # failed when the dialed party did not answer; no conversation, no duration.
    phone = Softphone(FlaskTransport(app), AUTH_TOKEN, PUBLIC_URL, pay_with_test_card, dial_status=status)
    transcript = phone.call(CALLER, ["2"]).check()

    assert Dialed("+12025550100", status) in transcript.events
    [after] = fixture_log(app).to("/ivr/after-dial")
    assert (after.params["DialCallStatus"], after.params["DialCallDuration"]) == (status, "0")
    assert transcript.last_said() == f"Your call with member services ended: {status}."


def test_a_dial_nobody_takes_without_an_action_goes_on_with_the_next_verb(app: Flask) -> None:
    phone = Softphone(FlaskTransport(app), AUTH_TOKEN, PUBLIC_URL, pay_with_test_card, dial_status="busy")
    transcript = phone.call(CALLER, ["3"]).check()

    assert transcript.last_said() == "Never heard after the transfer."


def test_an_unknown_dial_status_is_refused(app: Flask) -> None:
    with pytest.raises(ValueError, match="dial_status"):
        Softphone(FlaskTransport(app), AUTH_TOKEN, PUBLIC_URL, dial_status="engaged").call(CALLER, ["2"])


def test_a_pay_that_falls_through_plays_the_next_verb(app: Flask) -> None:
    # https://www.twilio.com/docs/voice/twiml/pay: after maxAttempts Twilio may go on to
    # the next verb instead of requesting the action (here: the end of the document).
    # Both cards fail Twilio's own Luhn check: the processor is never reached.
    unused = stripe.StripeClient("sk_test_never_called")
    cards = TwilioPayEmulator(unused, ScriptedCards(["4242424242424241 12/30 123"] * 2), falls_through=True)
    phone = Softphone(FlaskTransport(app), AUTH_TOKEN, PUBLIC_URL, cards)
    transcript = phone.call(CALLER, ["4"]).check()

    assert transcript.events[-2:] == [
        Paid({"Result": "too-many-failed-attempts", "PaymentMethod": "credit-card",
              "PaymentError": "invalid-card-number"}),
        HungUp("ivr"),
    ]
    assert fixture_log(app).to("/ivr/paid") == []


def test_dial_without_an_action_ends_the_call(app: Flask, phone: Softphone) -> None:
    transcript = phone.call(CALLER, ["3"]).check()

    assert transcript.events[-2:] == [Dialed("+12025550100"), HungUp("caller")]
    assert "Never heard" not in transcript.said_text()
    assert fixture_log(app).paths == ["/ivr/voice", "/ivr/menu", "/ivr/status"]


def test_pay_is_handed_to_the_pay_handler_and_its_result_posted(app: Flask, phone: Softphone) -> None:
    PAY_ATTRIBUTES.clear()

    transcript = phone.call(CALLER, ["4"]).check()

    assert PAY_ATTRIBUTES == [
        {
            "paymentConnector": "Stripe_Connector",
            "tokenType": "payment-method",
            "action": "/ivr/paid",
            "maxAttempts": "2",
        }
    ]
    assert Paid(pay_with_test_card({})) in transcript.events
    [paid] = fixture_log(app).to("/ivr/paid")
    assert (paid.params["Result"], paid.params["PaymentToken"]) == ("success", "pm_test_visa")
    assert paid.params["CallStatus"] == "in-progress"
    assert transcript.last_said() == "Payment success, token pm_test_visa."


def test_pay_without_a_handler_stops_with_a_clear_error(app: Flask) -> None:
    phone = Softphone(FlaskTransport(app), auth_token=AUTH_TOKEN, public_url=PUBLIC_URL)

    transcript = phone.call(CALLER, ["4"])

    assert "this walker has no <Pay> handler" in transcript.errors[0].message
    assert fixture_log(app).to("/ivr/paid") == []


def test_hangup_ends_the_call_and_later_verbs_are_not_played(phone: Softphone) -> None:
    transcript = phone.call(CALLER, ["5"]).check()

    assert transcript.events[-2:] == [Said("Goodbye."), HungUp("ivr")]
    assert transcript.hung_up_by == "ivr"


def test_the_end_of_the_document_hangs_up(phone: Softphone) -> None:
    transcript = phone.call(CALLER, ["6"]).check()

    assert transcript.events[-2:] == [Said("That is all."), HungUp("ivr")]


def test_play_pause_and_say_loop_are_recorded_then_reject_ends_an_answered_call(
    app: Flask, phone: Softphone
) -> None:
    transcript = phone.call(CALLER, ["9"]).check()

    assert transcript.events[-5:] == [
        Played("https://cdn.example.test/hold.mp3"),
        Paused(2),
        Said("Adiós.", "es-US"),
        Said("Adiós.", "es-US"),
        Rejected("busy"),
    ]
    [status] = fixture_log(app).to("/ivr/status")
    assert status.params["CallStatus"] == "completed"


def test_reject_before_answering_is_a_busy_call_of_no_duration(app: Flask, phone: Softphone) -> None:
    transcript = phone.call(BLOCKED_CALLER).check()

    assert transcript.events == [Rejected("busy")]
    [status] = fixture_log(app).to("/ivr/status")
    assert (status.params["CallStatus"], status.params["CallDuration"]) == ("busy", "0")


# -- the end of the call -------------------------------------------------------------


def test_the_status_callback_reports_a_completed_call_and_its_duration(app: Flask, phone: Softphone) -> None:
    transcript = phone.call(CALLER, ["1", "6789#"]).check()

    log = fixture_log(app)
    assert log.paths[-1] == "/ivr/status"
    status = log.requests[-1].params
    assert status["CallSid"] == transcript.call_sid
    assert status["CallStatus"] == "completed"
    assert int(status["CallDuration"]) > 0


@pytest.mark.parametrize("keys", [["h"], []], ids=["hangs-up", "script-exhausted"])
def test_a_caller_hanging_up_mid_gather_sends_only_the_status_callback(
    app: Flask, phone: Softphone, keys: list[str]
) -> None:
    transcript = phone.call(CALLER, keys).check()

    assert transcript.events[-1] == HungUp("caller")
    assert fixture_log(app).paths == ["/ivr/voice", "/ivr/status"]
    assert fixture_log(app).requests[-1].params["CallStatus"] == "completed"


def test_a_looping_ivr_fails_loudly_at_the_request_bound(app: Flask, phone: Softphone) -> None:
    transcript = phone.call(CALLER, ["7"])

    assert transcript.errors == [Error("more than 500 requests in one call: does the IVR loop?")]
    assert fixture_log(app).paths.count("/ivr/loop") == 498  # after /ivr/voice and /ivr/menu
    assert fixture_log(app).paths[-1] == "/ivr/status"


@pytest.mark.parametrize(
    ("choice", "message", "status"),
    [
        ("1", "the IVR answered HTTP 500", 500),
        ("2", "the TwiML root is <Html>, not <Response>", 200),
        ("3", "the IVR answered text/plain, not text/xml", 200),
        ("4", "<Enqueue> is not a verb this walker plays", None),
        ("5", "the IVR answered malformed XML", 200),
        ("6", "<Pay> has no method attribute", None),
        ("7", "<Prompt for='card-number'> is not a <Pay> step", None),
    ],
    ids=["http-500", "not-a-response", "not-xml", "unknown-verb", "malformed", "pay-method", "pay-prompt"],
)
def test_a_broken_reply_is_recorded_and_ends_the_walk(
    app: Flask, phone: Softphone, choice: str, message: str, status: int | None
) -> None:
    transcript = phone.call(CALLER, ["0", choice])

    [error] = transcript.errors
    assert error.message.startswith(message)
    assert (error.url, error.status) == (PUBLIC_URL + "/ivr/errors", status)
    assert transcript.events[-1] == error
    assert fixture_log(app).paths[-1] == "/ivr/status"


def test_another_host_is_never_called(app: Flask, phone: Softphone) -> None:
    transcript = phone.call(CALLER, ["*"])

    assert "https://elsewhere.example.com/ivr/menu is not on the IVR's public URL" in (
        transcript.errors[0].message
    )
    assert all(e.url.startswith(PUBLIC_URL) for e in transcript.exchanges)


def test_a_malformed_call_sid_is_refused(phone: Softphone) -> None:
    with pytest.raises(ValueError, match="CallSid"):
        phone.call(CALLER, ["6"], call_sid="CA123")


# -- transports ----------------------------------------------------------------------


def test_http_transport_plays_the_same_call_as_in_process(served: tuple[Flask, str], app: Flask) -> None:
    served_app, base_url = served
    sid = "CA" + "0f" * 16

    over_http = walk(
        HttpTransport(base_url),
        auth_token=AUTH_TOKEN,
        public_url=base_url,
        from_number=CALLER,
        keys=["1", "6789#"],
        call_sid=sid,
    ).check()
    in_process = walk(
        FlaskTransport(app),
        auth_token=AUTH_TOKEN,
        public_url=PUBLIC_URL,
        from_number=CALLER,
        keys=["1", "6789#"],
        call_sid=sid,
    ).check()

    assert over_http.said_text() == in_process.said_text()
    assert over_http.last_said() == "You entered account 6789."
    assert fixture_log(served_app).paths == [
        "/ivr/voice",
        "/ivr/menu",
        "/ivr/account",
        "/ivr/status",
    ]


def test_http_transport_records_an_unreachable_ivr(served: tuple[Flask, str]) -> None:
    _, base_url = served
    transport = HttpTransport("http://127.0.0.1:9", timeout=2)  # discard port: refused

    transcript = walk(transport, auth_token=AUTH_TOKEN, public_url=base_url, from_number=CALLER, keys=["6"])

    assert transcript.errors[0].message.startswith("the IVR could not be reached")


def test_http_transport_accepts_only_an_http_base_url() -> None:
    with pytest.raises(ValueError, match="http"):
        HttpTransport("file:///etc/passwd")


# -- keys and printing ---------------------------------------------------------------


def test_cli_keys_parse_into_one_entry_per_gather() -> None:
    assert parse_keys("1,1,6789#,-,2").remaining == ["1", "1", "6789#", "", "2"]
    assert parse_keys("1,,h").remaining == ["1", "", HANG_UP]
    assert parse_keys(" 1 , *25# ").remaining == ["1", "*25#"]
    assert parse_keys("").remaining == []
    with pytest.raises(ValueError, match="0-9"):
        parse_keys("1,x")


def test_the_terminal_shows_what_is_said_and_pressed() -> None:
    assert describe(Said("Your balance is $12.00.", "en-US")) == ("IVR (en-US): Your balance is $12.00.")
    assert describe(Gathered("123#", "123", PUBLIC_URL)) == "You pressed: 1 2 3 #"
    assert describe(Dialed("+12025550100")) is not None
    assert describe(HungUp("caller")) == "You hung up."


# -- securepay call ------------------------------------------------------------------


def _in_process_script(app: Flask, token: str | None) -> ScriptInfo:
    """What the ``securepay`` group passes down: the app, whose settings the command reads."""
    settings = Settings(
        pepper=Secret("x" * 16),
        twilio_auth_token=None if token is None else Secret(token),
        public_url=PUBLIC_URL,
    )
    app.extensions[EXTENSION_KEY] = SimpleNamespace(settings=settings)
    return ScriptInfo(create_app=lambda: app)


def test_call_command_walks_the_app_in_process(app: Flask) -> None:
    result = CliRunner().invoke(
        call_command,
        ["--from", CALLER, "--keys", "1,6789#"],
        obj=_in_process_script(app, AUTH_TOKEN),
    )

    assert result.exit_code == 0, result.output
    assert "IVR (en-US): Welcome to the fixture line." in result.output
    assert "IVR (es-US): Elija un escenario." in result.output
    assert "You pressed: 6 7 8 9 #" in result.output
    assert "IVR hung up." in result.output
    assert fixture_log(app).paths[-1] == "/ivr/status"


def test_call_command_without_a_token_names_the_variable(app: Flask) -> None:
    result = CliRunner().invoke(
        call_command, ["--from", CALLER, "--keys", "6"], obj=_in_process_script(app, None)
    )

    assert result.exit_code == 1
    assert "TWILIO_AUTH_TOKEN is not set" in result.output
    assert fixture_log(app).requests == []


def test_call_command_asks_for_keys_at_each_menu(app: Flask) -> None:
    result = CliRunner().invoke(
        call_command,
        ["--from", CALLER, "--call-sid", "CA" + "12" * 16],
        input="1\n6789#\n",
        obj=_in_process_script(app, AUTH_TOKEN),
    )

    assert result.exit_code == 0, result.output
    assert "You entered account 6789." in result.output
    assert f"Call CA{'12' * 16} ended: completed." in result.output


def test_call_command_over_http_signs_with_the_environment_token(
    served: tuple[Flask, str],
) -> None:
    app, base_url = served

    result = CliRunner().invoke(
        call_command,
        ["--from", CALLER, "--url", base_url, "--keys", "2"],
        env={"TWILIO_AUTH_TOKEN": AUTH_TOKEN},
    )

    assert result.exit_code == 0, result.output
    assert "IVR dials +12025550100" in result.output
    assert fixture_log(app).paths[-1] == "/ivr/status"


def test_call_command_over_http_needs_the_token(served: tuple[Flask, str]) -> None:
    _, base_url = served

    result = CliRunner().invoke(
        call_command,
        ["--from", CALLER, "--url", base_url, "--keys", "2"],
        env={"TWILIO_AUTH_TOKEN": ""},
    )

    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: TWILIO_AUTH_TOKEN is not set: export the token the IVR at --url checks"
    ]


def test_call_command_exits_1_when_the_walk_fails(app: Flask) -> None:
    result = CliRunner().invoke(
        make_call_command(),
        ["--from", CALLER, "--keys", "4"],
        obj=_in_process_script(app, AUTH_TOKEN),
    )

    assert result.exit_code == 1
    assert "this walker has no <Pay> handler" in result.output


@pytest.mark.parametrize(
    "args",
    [["--keys", "1,x"], ["--call-sid", "CA123"], ["--url", "ftp://ivr.example.test"]],
    ids=["keys", "call-sid", "url"],
)
def test_call_command_refuses_bad_options(app: Flask, args: list[str]) -> None:
    result = CliRunner().invoke(
        call_command, ["--from", CALLER, *args], obj=_in_process_script(app, AUTH_TOKEN)
    )

    assert result.exit_code == 2
    assert fixture_log(app).requests == []
