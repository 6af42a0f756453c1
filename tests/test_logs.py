"""SECURITY rule 20: secrets fed to the logs in any shape do not come out of them."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from importlib.metadata import version
from typing import Literal

import pytest
import structlog

from ivr.logs import bind_call, clear_call, configure_logging, redact_secrets
from ivr.version import build

CALL_SID = "CA9f8e7d6c5b4a39281706f5e4d3c2b1a0"
PIN = "5183"
SSN = "123-45-6789"
CARDS = ("4242424242424242", "4242 4242 4242 4242", "4242-4242-4242-4242")
PHONE = "+1 202 555 0173"
TOKEN = "sk_test_51SecretKeyValue"

# Digits that must not appear anywhere once timestamps are set aside.
LEAKS = (PIN, "123456789", "6789", "4242", "5550173", "0173", "SecretKeyValue", "hunter2")

_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")
# The build's commit hash (JSON lines) is random hex, set aside like the timestamps.
_COMMIT = re.compile(r'"commit": "[0-9a-f]{40}"')


class Output:
    """What configure_logging wrote, with timestamps (random digits) set aside."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return _COMMIT.sub("<commit>", _TIMESTAMP.sub("<ts>", self.stream.getvalue()))

    def assert_no_secrets(self) -> None:
        for secret in LEAKS:
            assert secret not in self.text, f"{secret!r} leaked into: {self.text}"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger and structlog back as they were (other tests share them)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        clear_call()
        structlog.reset_defaults()
        for handler in root.handlers:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)


@pytest.fixture(params=["console", "json"])
def output(request: pytest.FixtureRequest, restore_logging: None) -> Output:
    stream = io.StringIO()
    fmt: Literal["console", "json"] = request.param
    configure_logging(fmt, stream)
    return Output(stream)


def test_secret_named_fields_are_redacted_at_the_top_level(output: Output) -> None:
    structlog.get_logger().info(
        "pin_entered",
        Digits=PIN,
        pin=PIN,
        new_pin=PIN,
        ssn_last4="6789",
        tax_id="6789",
        password="hunter2",
        api_key=TOKEN,
        Authorization=f"Bearer {TOKEN}",
        PaymentCardNumber="xxxx-xxxx-xxxx-4242",
        cvv="123",
        expiry="12/29",
        cookie=f"session={TOKEN}",
    )
    output.assert_no_secrets()
    assert "pin_entered" in output.text
    assert output.text.count("[redacted]") == 12


def test_secret_named_fields_are_redacted_in_nested_dicts_lists_and_tuples(output: Output) -> None:
    structlog.get_logger().info(
        "twilio_request",
        form={"CallSid": CALL_SID, "Digits": PIN, "extra": {"ssn": "6789"}},
        attempts=[{"pin": PIN}, {"card": {"last4": "4242"}}],
        pair=("ok", {"auth_header": TOKEN}),
    )
    output.assert_no_secrets()
    assert CALL_SID in output.text


@pytest.mark.parametrize("card", CARDS)
def test_card_numbers_in_the_event_text_are_masked(output: Output, card: str) -> None:
    structlog.get_logger().warning(f"caller said {card} out loud")
    output.assert_no_secrets()
    assert "caller said [digits] out loud" in output.text


def test_long_digit_runs_in_any_string_value_are_masked(output: Output) -> None:
    structlog.get_logger().info(
        "account_lookup_failed",
        entered=f"ssn {SSN}",
        caller=PHONE,
        notes=["card " + CARDS[1], ("tuple", CARDS[2])],
        deep={"a": {"b": {"c": CARDS[0]}}},
        number=4242424242424242,
    )
    output.assert_no_secrets()


def test_exception_messages_are_masked_after_becoming_text(output: Output) -> None:
    log = structlog.get_logger()
    try:
        raise ValueError(f"card {CARDS[1]} and ssn {SSN} rejected")
    except ValueError:
        log.exception("charge_failed")
    try:
        raise RuntimeError(f"caller {PHONE}")
    except RuntimeError as exc:
        log.error("notify_failed", exc_info=exc)
    output.assert_no_secrets()
    assert "ValueError: card [digits] and ssn [digits] rejected" in output.text
    assert "RuntimeError: caller +[digits]" in output.text


def test_stdlib_records_from_other_libraries_are_redacted_too(output: Output) -> None:
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.info("POST /ivr/pin from %s with %s", PHONE, CARDS[0])
    try:
        raise KeyError(f"ssn {SSN}")
    except KeyError:
        logging.getLogger("gunicorn.error").exception("worker error for %s", CARDS[2])
    output.assert_no_secrets()
    assert "POST /ivr/pin from +[digits] with [digits]" in output.text
    assert "KeyError" in output.text


def test_objects_are_masked_through_their_text(output: Output) -> None:
    class Leaky:
        def __str__(self) -> str:
            return f"Leaky({CARDS[1]})"

        __repr__ = __str__

    structlog.get_logger().info("object_logged", thing=Leaky(), things=[Leaky()])
    output.assert_no_secrets()
    assert "Leaky([digits])" in output.text


def test_ordinary_fields_survive_redaction(output: Output) -> None:
    bind_call(CALL_SID, "req-7f3a")
    structlog.get_logger().info(
        "payment_succeeded",
        amount="123.45",
        amount_cents=12345,
        account="account ****4821",
        confirmation="Confirmation 482 193",
        due_date="2026-11-30",
        processor_id="pi_3PqR5x2eZvKYlo2C1a2b3c4d",
        state="confirm",
    )
    text = output.text
    for kept in (
        CALL_SID,
        "req-7f3a",
        "123.45",
        "12345",
        "account ****4821",
        "482 193",
        "2026-11-30",
        "pi_3PqR5x2eZvKYlo2C1a2b3c4d",
        "payment_succeeded",
        "confirm",
    ):
        assert kept in text


def test_call_ids_are_never_scrubbed_even_when_all_digits(output: Output) -> None:
    bind_call("1234567890123", "98765432")
    structlog.get_logger().info("call_started")
    assert "1234567890123" in output.text
    assert "98765432" in output.text


def test_bound_call_tags_every_line_until_cleared(output: Output) -> None:
    log = structlog.get_logger()
    bind_call(CALL_SID, "req-1")
    log.info("menu_played")
    logging.getLogger("werkzeug").info("request served")
    clear_call()
    log.info("idle")
    lines = output.text.strip().splitlines()
    assert CALL_SID in lines[0] and CALL_SID in lines[1]
    assert CALL_SID not in lines[2]


@pytest.mark.usefixtures("restore_logging")
def test_configuring_twice_writes_each_line_once() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", first)
    configure_logging("json", second)
    structlog.get_logger().info("once")
    logging.getLogger("werkzeug").info("also once")
    assert first.getvalue() == ""
    events = [json.loads(line)["event"] for line in second.getvalue().splitlines()]
    assert events == ["once", "also once"]


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_carry_level_and_utc_timestamp() -> None:
    stream = io.StringIO()
    configure_logging("json", stream)
    structlog.get_logger().warning("throttled")
    line = json.loads(stream.getvalue())
    assert line["level"] == "warning"
    assert _TIMESTAMP.fullmatch(line["timestamp"])


@pytest.mark.usefixtures("restore_logging")
def test_every_json_line_names_the_version_and_commit_unmasked() -> None:
    stream = io.StringIO()
    configure_logging("json", stream)
    structlog.get_logger().info("ours")
    logging.getLogger("gunicorn.error").info("theirs")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 2
    running = build()
    for line in lines:
        assert line["version"] == running.version == version("securepay")
        # Built from this checkout: the commit is the full hash, not masked as digits.
        assert line["commit"] == running.commit
        assert running.commit is not None and re.fullmatch(r"[0-9a-f]{40}", running.commit)


def test_redact_secrets_keeps_short_numbers_as_numbers() -> None:
    event = redact_secrets(
        None,
        "info",
        {"event": "x", "amount_cents": 500000, "attempts": 2, "ratio": 0.5, "big": 12345678},
    )
    assert event == {"event": "x", "amount_cents": 500000, "attempts": 2, "ratio": 0.5, "big": "[digits]"}


def test_twilio_and_stripe_ids_with_digits_inside_are_left_whole() -> None:
    sid = "CA1234567890abcdef1234567890abcdef"
    event = redact_secrets(None, "info", {"event": f"call {sid} moved", "pm": "pm_1Pq1234567Abc"})
    assert event == {"event": f"call {sid} moved", "pm": "pm_1Pq1234567Abc"}


def test_digit_runs_are_masked_whatever_the_separator_count() -> None:
    text = "123 45 67 and 1234567 and 123456 and 12--34567"
    event = redact_secrets(None, "info", {"event": text})
    assert event["event"] == "[digits] and [digits] and 123456 and 12--34567"


@pytest.mark.usefixtures("restore_logging")
def test_an_unknown_log_format_is_refused_before_anything_changes() -> None:
    handlers = list(logging.getLogger().handlers)
    with pytest.raises(ValueError, match="'xml'"):
        configure_logging("xml")
    assert logging.getLogger().handlers == handlers


@pytest.mark.usefixtures("restore_logging")
def test_a_modules_logger_is_built_once_and_follows_every_later_configuration() -> None:
    """A module's ``log`` is built on first use, not on every call (issue 12: logging
    was 7 % of a webhook's Python), and still writes where, and as redacted as, the
    latest ``configure_logging`` and a test's ``capture_logs`` say."""
    first, second = io.StringIO(), io.StringIO()
    log = structlog.get_logger("securepay.cached")
    configure_logging("json", first)
    log.info("before", pin=PIN)
    built = log.bind()

    configure_logging("json", second)
    log.info("after", pin=PIN)
    with structlog.testing.capture_logs() as captured:
        log.info("captured")

    assert log.bind() is built
    assert [json.loads(line)["event"] for line in first.getvalue().splitlines()] == ["before"]
    after = json.loads(second.getvalue().splitlines()[0])
    assert after["event"] == "after" and after["pin"] == "[redacted]"
    assert [entry["event"] for entry in captured] == ["captured"]


@pytest.mark.parametrize("fmt", ["console", "json"])
@pytest.mark.usefixtures("restore_logging")
def test_our_events_are_written_as_structlogs_own_formatter_writes_them(fmt: str) -> None:
    """Our formatter writes structlog events without copying their record (issue 12): the
    line is the one structlog's ``ProcessorFormatter`` writes, and the record is unchanged
    for the handlers after ours."""
    stream = io.StringIO()
    configure_logging(fmt, stream)
    handler = logging.getLogger().handlers[-1]
    ours = handler.formatter
    assert isinstance(ours, structlog.stdlib.ProcessorFormatter)
    theirs = structlog.stdlib.ProcessorFormatter(
        processors=ours.processors, foreign_pre_chain=ours.foreign_pre_chain
    )
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keeper = Keep()
    logging.getLogger().addHandler(keeper)
    try:
        bind_call(CALL_SID, "r1")
        structlog.get_logger("securepay.trail").info("state_entered", to_state="menu", nested={"pin": PIN})
        try:
            raise ValueError(f"card {CARDS[0]}")
        except ValueError:
            structlog.get_logger().exception("webhook_failed")
        logging.getLogger("werkzeug").warning("from %s", "elsewhere")
    finally:
        logging.getLogger().removeHandler(keeper)
    assert len(records) == 3
    for record in records:
        before = dict(record.__dict__)
        # A foreign record is stamped as it is formatted: its time is set aside.
        assert _TIMESTAMP.sub("<ts>", ours.format(record)) == _TIMESTAMP.sub("<ts>", theirs.format(record))
        assert record.__dict__ == before
    Output(stream).assert_no_secrets()
