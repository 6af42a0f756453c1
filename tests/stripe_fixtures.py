"""Fixtures for tests that talk to the processor: localstripe, run in-process.

Imported by ``tests/conftest.py``. One emulator per test session; each test starts from
an empty store and gets a client that does not retry (a retry would hide what a test
wants to see, and localstripe answers at once).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from payments.emulator import LocalStripe
from payments.stripe_gateway import StripeGateway, build_stripe_client

TEST_API_KEY = "sk_test_securepay"


@pytest.fixture(scope="session")
def localstripe() -> Iterator[LocalStripe]:
    with LocalStripe() as emulator:
        yield emulator


@pytest.fixture
def stripe_client(localstripe: LocalStripe) -> stripe.StripeClient:
    localstripe.flush()
    return build_stripe_client(TEST_API_KEY, localstripe.base_url, max_network_retries=0)


@pytest.fixture
def gateway(stripe_client: stripe.StripeClient) -> StripeGateway:
    return StripeGateway(stripe_client)
