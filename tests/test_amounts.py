"""Amounts keyed with ``*`` as the decimal point (CONTRACT section 2, step 5)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.flows.amounts import format_cents, parse_amount_keys

ANY_AMOUNT = st.integers(min_value=0, max_value=10**9 - 1)


@pytest.mark.parametrize(
    ("keys", "cents"),
    [
        ("25*50", 2550),
        ("25", 2500),
        ("25*5", 2550),
        ("25*05", 2505),
        ("25*", 2500),
        ("*50", 50),
        ("*5", 50),
        ("0*99", 99),
        ("025", 2500),
        ("0000025*00", 2500),
        ("0", 0),
        ("9999999*99", 999_999_999),
    ],
)
def test_keys_with_a_star_for_the_decimal_point_are_read_as_cents(keys: str, cents: int) -> None:
    assert parse_amount_keys(keys) == cents


@pytest.mark.parametrize(
    ("keys", "why"),
    [
        ("", "nothing keyed"),
        ("*", "no digit"),
        ("25*5*0", "two decimal points"),
        ("25*505", "three cent digits"),
        ("25#", "a key other than digits and star"),
        ("25.50", "a dot is not a key"),
        ("-25", "no sign key"),
        (" 25", "no spaces"),
        ("25\n", "no trailing newline"),
        ("٢٥", "non-ASCII digits"),
        ("10000000", "eight dollar digits"),
        ("10000000*00", "eight dollar digits with cents"),
    ],
)
def test_keys_that_are_not_an_amount_give_none(keys: str, why: str) -> None:
    assert parse_amount_keys(keys) is None, why


@given(ANY_AMOUNT)
def test_every_amount_keyed_as_dollars_star_cents_reads_back(cents: int) -> None:
    dollars, rest = divmod(cents, 100)
    assert parse_amount_keys(f"{dollars}*{rest:02d}") == cents
    if rest == 0:
        assert parse_amount_keys(str(dollars)) == cents
    if rest % 10 == 0:
        assert parse_amount_keys(f"{dollars}*{rest // 10}") == cents


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (0, "$0.00"),
        (5, "$0.05"),
        (100, "$1.00"),
        (123456, "$1,234.56"),
        (100_000_000, "$1,000,000.00"),
        (-500, "-$5.00"),
        (-1, "-$0.01"),
    ],
)
def test_cents_are_written_as_dollars_with_separators(cents: int, text: str) -> None:
    assert format_cents(cents) == text


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_written_amounts_read_back_exactly(cents: int) -> None:
    text = format_cents(cents)
    number = Decimal(text.replace("$", "").replace(",", ""))
    assert number * 100 == cents
