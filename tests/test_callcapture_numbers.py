"""Caller ID and numbers on file normalize to the same E.164 form, or are refused."""

from __future__ import annotations

import pytest

from callcapture import InvalidPhoneNumber, normalize_caller_id, normalize_on_file


@pytest.mark.parametrize(
    "raw",
    [
        "(202) 555-0123",
        "202.555.0123",
        "202-555-0123",
        "+1 202 555 0123",
        "1-202-555-0123",
        "2025550123",
        "+12025550123",
        "  202 555 0123  ",
    ],
)
def test_common_us_formats_on_file_become_e164(raw: str) -> None:
    assert normalize_on_file(raw) == "+12025550123"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("555-0123", "does not exist"),
        ("202555012", "does not exist"),
        ("20255501234", "does not exist"),
        ("+1 555 555 0123", "does not exist"),
        ("+44 20 7946 0000", "not a US number"),
        ("+1 416 555 0199", "not a US number"),
        ("1-800-FLOWERS", "only digits"),
        ("202-555-0123 ext. 5", "only digits"),
        ("202/555/0123", "only digits"),
    ],
)
def test_unusable_numbers_on_file_are_refused_with_the_reason(raw: str, why: str) -> None:
    with pytest.raises(InvalidPhoneNumber, match=why) as caught:
        normalize_on_file(raw)
    assert isinstance(caught.value, ValueError)


def test_refusal_does_not_echo_the_number() -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        normalize_on_file("+44 20 7946 0000")
    assert "7946" not in str(caught.value)


def test_region_is_a_parameter() -> None:
    assert normalize_on_file("(416) 555-0199", region="CA") == "+14165550199"
    assert normalize_caller_id("+14165550199", region="CA") == "+14165550199"
    assert normalize_caller_id("+12025550123", region="CA") is None


def test_twilio_caller_id_becomes_e164() -> None:
    assert normalize_caller_id("+12025550123") == "+12025550123"
    assert normalize_caller_id("+12025550123") == normalize_on_file("(202) 555-0123")


@pytest.mark.parametrize(
    "raw",
    [
        "anonymous",
        "Anonymous",
        "restricted",
        "RESTRICTED",
        "unknown",
        "blocked",
        "unavailable",
        "+266696687",
        "+7378742833",
        "+2562533",
        "+8656696",
        "+86282452253",
        "",
    ],
)
def test_withheld_caller_id_is_none(raw: str) -> None:
    assert normalize_caller_id(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        "+1555555012",  # too short
        "+15555550123",  # 555 is not an area code
        "+1202555012x",
        "sip:alice@example.com",
        "client:alice",
        "12345",
    ],
)
def test_malformed_or_invalid_caller_id_is_none(raw: str) -> None:
    assert normalize_caller_id(raw) is None


@pytest.mark.parametrize("raw", ["+442079460000", "+14165550199", "+33142685300"])
def test_international_caller_id_is_none(raw: str) -> None:
    assert normalize_caller_id(raw) is None
