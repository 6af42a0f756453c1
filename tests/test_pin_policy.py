"""SECURITY rule 8: a new PIN is refused when it is among an attacker's first guesses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ivr.flows.pin_policy import BlocklistError, PinPolicy, PinRejection

ACCOUNT = "100234821"
CALLER = "+12025550173"


def check(
    pin: str,
    policy: PinPolicy | None = None,
    *,
    account_number: str = ACCOUNT,
    caller_number: str | None = None,
    matches_ssn: Callable[[str], bool] | None = None,
) -> PinRejection | None:
    return (policy or PinPolicy()).check(
        pin, account_number=account_number, caller_number=caller_number, matches_ssn=matches_ssn
    )


@pytest.mark.parametrize("pin", ["4739", "5182", "8057", "3906"])
def test_unremarkable_pins_are_accepted(pin: str) -> None:
    assert check(pin, caller_number=CALLER, matches_ssn=lambda candidate: False) is None


@pytest.mark.parametrize("pin", ["", "123", "12345", "12a4", "12 4", " 4739", "4739\n", "١٢٣٤"])
def test_anything_but_four_ascii_digits_is_refused(pin: str) -> None:
    assert check(pin) is PinRejection.NOT_FOUR_DIGITS


@pytest.mark.parametrize("digit", "0123456789")
def test_one_digit_four_times_is_refused(digit: str) -> None:
    assert check(digit * 4) is PinRejection.REPEATED


@pytest.mark.parametrize(
    "pin",
    ["0123", "1234", "6789", "7890", "8901", "9012", "3210", "9876", "0987", "1098", "2109"],
)
def test_ascending_and_descending_runs_are_refused_including_wraparound(pin: str) -> None:
    assert check(pin) is PinRejection.SEQUENCE


@pytest.mark.parametrize("pin", ["1357", "2468", "2580", "0852", "1369", "5683", "0007", "1004"])
def test_listed_common_pins_are_refused(pin: str) -> None:
    assert check(pin) is PinRejection.COMMON


@pytest.mark.parametrize("pin", ["1212", "6969", "4747", "1122", "7788", "3300"])
def test_abab_and_aabb_shapes_are_refused_as_common(pin: str) -> None:
    assert check(pin) is PinRejection.COMMON


@pytest.mark.parametrize("pin", ["1900", "1957", "1984", "2024", "2099"])
def test_year_like_pins_are_refused(pin: str) -> None:
    assert check(pin) is PinRejection.YEAR


@pytest.mark.parametrize("pin", ["1899", "2100"])
def test_numbers_just_outside_the_year_range_are_not_years(pin: str) -> None:
    assert check(pin) is None


def test_last_four_of_the_account_number_are_refused() -> None:
    assert check("4821", account_number="100234821") is PinRejection.ACCOUNT_DIGITS
    assert check("4821", account_number="999999") is None


def test_last_four_of_the_callers_number_are_refused_in_any_format() -> None:
    assert check("0173", caller_number="+12025550173") is PinRejection.PHONE_DIGITS
    assert check("0173", caller_number="(202) 555-0173") is PinRejection.PHONE_DIGITS


def test_a_withheld_or_short_caller_id_refuses_nothing() -> None:
    assert check("0173", caller_number=None) is None
    assert check("0173", caller_number="anonymous") is None
    assert check("0173", caller_number="173") is None


def test_last_four_of_the_ssn_are_refused_through_the_hash_comparison() -> None:
    assert check("6789", matches_ssn=lambda pin: pin == "6789") is PinRejection.SEQUENCE
    assert check("5417", matches_ssn=lambda pin: pin == "5417") is PinRejection.SSN_DIGITS
    assert check("5418", matches_ssn=lambda pin: pin == "5417") is None


def test_the_slow_ssn_comparison_runs_only_when_every_other_rule_passed() -> None:
    asked: list[str] = []

    def matches_ssn(pin: str) -> bool:
        asked.append(pin)
        return False

    for refused in ("1111", "2580", "1984", "4821"):
        assert check(refused, matches_ssn=matches_ssn) is not None
    assert asked == []
    assert check("4739", matches_ssn=matches_ssn) is None
    assert asked == ["4739"]


def test_a_utilitys_own_blocklist_is_refused() -> None:
    policy = PinPolicy(frozenset({"4739"}))
    assert check("4739", policy) is PinRejection.BLOCKLISTED
    assert check("5182", policy) is None


def test_a_blocklist_entry_that_is_not_a_pin_is_refused_at_construction() -> None:
    with pytest.raises(BlocklistError, match="'47391'"):
        PinPolicy(frozenset({"47391"}))


def test_the_first_failing_rule_in_declared_order_is_reported() -> None:
    # 4321 is a descending run, a listed common PIN, and here also the account's and
    # the caller's last four: the run is reported because it is checked first.
    pin = "4321"
    result = check(pin, account_number="87654321", caller_number="+12025554321")
    assert result is PinRejection.SEQUENCE
    assert check("1984", account_number="11984") is PinRejection.YEAR
    assert check("4821", account_number="4821", caller_number="5554821") is (
        PinRejection.ACCOUNT_DIGITS
    )


def test_every_rejection_names_its_own_prompt() -> None:
    assert PinRejection.YEAR.prompt_key == "pin_rejected_year"
    assert PinRejection.COMMON.prompt_key == "pin_rejected_common"
    keys = {reason.prompt_key for reason in PinRejection}
    assert len(keys) == len(PinRejection)
    assert all(key.startswith("pin_rejected_") for key in keys)


def test_blocklist_file_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "blocklist.txt"
    path.write_text(
        "# Founding year and the office street number\n\n  1937  \n4739 # trucks\n\t\n5182\n",
        encoding="utf-8",
    )
    policy = PinPolicy.from_file(path)
    assert policy.extra == frozenset({"1937", "4739", "5182"})
    assert check("5182", policy) is PinRejection.BLOCKLISTED


def test_blocklist_file_with_a_bad_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "blocklist.txt"
    path.write_text("# ok\n4739\n\n518\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 4: expected a 4-digit PIN, got '518'"):
        PinPolicy.from_file(path)


def test_empty_blocklist_file_adds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "blocklist.txt"
    path.write_text("# nothing yet\n", encoding="utf-8")
    assert PinPolicy.from_file(path) == PinPolicy()
