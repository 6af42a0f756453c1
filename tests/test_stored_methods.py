"""The stores of payment methods and phone numbers, on both backends.

Accounts come through the real importer; each test works in its own unit of work.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask

from db.phones import PhoneAlreadyOnFile, SqlPhones
from db.repositories import AccountNotFound
from db.stored_methods import MethodAlreadyStored, SqlStoredMethods, TooManyMethods
from ivr.services import EXTENSION_KEY, Services
from payments.gateway import MethodInfo
from tests.fakes import FakeClock
from tests.members import Member, add_members

VISA = MethodInfo("pm_visa4242", "card", "visa", "4242", 11, 2031)
MASTERCARD = MethodInfo("pm_mc4444", "card", "mastercard", "4444", 2, 2030)
BANK = MethodInfo("pm_bank6789", "bank", "STRIPE TEST BANK", "6789", None, None)


@pytest.fixture
def services(app: Flask) -> Services:
    services: Services = app.extensions[EXTENSION_KEY]
    return services


@pytest.fixture
def accounts(app: Flask) -> tuple[int, int]:
    first, second = add_members(app, Member("48210", phones=["(202) 555-0143"]), Member("51377", phones=[]))
    return first, second


def test_methods_are_listed_oldest_first_with_what_we_may_keep(
    services: Services, accounts: tuple[int, int], clock: FakeClock
) -> None:
    account, _ = accounts
    with services.unit_of_work() as uow:
        methods = SqlStoredMethods(uow.session)
        visa = methods.add(account, VISA, created_via="ivr", now=clock.now())
        bank = methods.add(account, BANK, created_via="portal", now=clock.now() + timedelta(seconds=1))
        uow.commit()
    with services.unit_of_work() as uow:
        listed = SqlStoredMethods(uow.session).for_account(account)
    assert listed == [visa, bank]
    assert (visa.kind, visa.brand, visa.last4, visa.exp_month, visa.exp_year) == (
        "card",
        "visa",
        "4242",
        11,
        2031,
    )
    assert (bank.kind, bank.exp_month, bank.exp_year, bank.created_via) == ("bank", None, None, "portal")
    assert visa.created_at == clock.now() and visa.created_at.tzinfo is not None


def test_a_method_is_found_only_on_its_own_account(
    services: Services, accounts: tuple[int, int], clock: FakeClock
) -> None:
    mine, other = accounts
    with services.unit_of_work() as uow:
        methods = SqlStoredMethods(uow.session)
        stored = methods.add(mine, VISA, created_via="portal", now=clock.now())
        assert methods.get(mine, stored.id) == stored
        assert methods.get(other, stored.id) is None
        assert methods.by_processor_id(VISA.processor_id) == stored
        assert methods.by_processor_id("pm_unknown") is None
        assert methods.remove(other, stored.id) is False
        assert methods.count(mine) == 1
        assert methods.remove(mine, stored.id) is True
        assert methods.count(mine) == 0
        assert methods.remove(mine, stored.id) is False


def test_a_processor_method_is_stored_once_and_the_transaction_goes_on(
    services: Services, accounts: tuple[int, int], clock: FakeClock
) -> None:
    mine, other = accounts
    with services.unit_of_work() as uow:
        methods = SqlStoredMethods(uow.session)
        stored = methods.add(mine, VISA, created_via="portal", now=clock.now())
        with pytest.raises(MethodAlreadyStored) as again:
            methods.add(mine, VISA, created_via="ivr", now=clock.now())
        with pytest.raises(MethodAlreadyStored) as elsewhere:
            methods.add(other, VISA, created_via="portal", now=clock.now())
        methods.add(mine, MASTERCARD, created_via="portal", now=clock.now())
        uow.commit()
    assert again.value.existing == stored
    assert elsewhere.value.existing.account_id == mine
    with services.unit_of_work() as uow:
        assert [m.processor_id for m in SqlStoredMethods(uow.session).for_account(mine)] == [
            VISA.processor_id,
            MASTERCARD.processor_id,
        ]


def test_the_limit_of_methods_per_account_is_checked_when_adding(
    services: Services, accounts: tuple[int, int], clock: FakeClock
) -> None:
    account, _ = accounts
    with services.unit_of_work() as uow:
        methods = SqlStoredMethods(uow.session)
        methods.add(account, VISA, created_via="portal", now=clock.now(), limit=2)
        methods.add(account, MASTERCARD, created_via="portal", now=clock.now(), limit=2)
        with pytest.raises(TooManyMethods) as caught:
            methods.add(account, BANK, created_via="portal", now=clock.now(), limit=2)
        assert caught.value.limit == 2
        assert methods.count(account) == 2


def test_the_first_processor_customer_recorded_stays(services: Services, accounts: tuple[int, int]) -> None:
    account, other = accounts
    with services.unit_of_work() as uow:
        methods = SqlStoredMethods(uow.session)
        assert methods.customer_id(account) is None
        assert methods.set_customer_id(account, "cus_first") == "cus_first"
        assert methods.set_customer_id(account, "cus_second") == "cus_first"
        uow.commit()
    with services.unit_of_work() as uow:
        assert SqlStoredMethods(uow.session).customer_id(account) == "cus_first"
        assert SqlStoredMethods(uow.session).customer_id(other) is None


def test_an_unknown_account_is_an_error_not_a_silent_nothing(
    services: Services, accounts: tuple[int, int], clock: FakeClock
) -> None:
    missing = max(accounts) + 100
    with services.unit_of_work() as uow:
        methods = SqlStoredMethods(uow.session)
        with pytest.raises(AccountNotFound):
            methods.customer_id(missing)
        with pytest.raises(AccountNotFound):
            methods.set_customer_id(missing, "cus_x")
        with pytest.raises(AccountNotFound):
            methods.add(missing, VISA, created_via="portal", now=clock.now())
        assert methods.for_account(missing) == []


# -- phones ------------------------------------------------------------------------------


def test_imported_phones_are_listed_and_portal_ones_added(
    services: Services, accounts: tuple[int, int], clock: FakeClock
) -> None:
    account, _ = accounts
    with services.unit_of_work() as uow:
        phones = SqlPhones(uow.session)
        added = phones.add(
            account, "+13035550188", created_via="portal", now=clock.now() + timedelta(seconds=1)
        )
        uow.commit()
    with services.unit_of_work() as uow:
        listed = SqlPhones(uow.session).for_account(account)
        # Call Capture finds the account by the new number.
        assert [a.number for a in uow.accounts.by_phone("+13035550188", limit=9)] == ["48210"]
    assert [(p.e164, p.created_via) for p in listed] == [
        ("+12025550143", "import"),
        ("+13035550188", "portal"),
    ]
    assert listed[1] == added


def test_a_number_is_on_an_account_once_but_may_be_on_several(
    services: Services, accounts: tuple[int, int], clock: FakeClock
) -> None:
    mine, other = accounts
    with services.unit_of_work() as uow:
        phones = SqlPhones(uow.session)
        with pytest.raises(PhoneAlreadyOnFile) as caught:
            phones.add(mine, "+12025550143", created_via="portal", now=clock.now())
        assert caught.value.existing.created_via == "import"
        shared = phones.add(other, "+12025550143", created_via="portal", now=clock.now())
        uow.commit()
    with services.unit_of_work() as uow:
        phones = SqlPhones(uow.session)
        assert phones.get(other, shared.id) == shared
        assert phones.get(mine, shared.id) is None
        assert phones.find(other, "+12025550143") == shared
        assert len(uow.accounts.by_phone("+12025550143", limit=9)) == 2


def test_phones_are_removed_only_from_their_own_account(
    services: Services, accounts: tuple[int, int]
) -> None:
    mine, other = accounts
    with services.unit_of_work() as uow:
        phones = SqlPhones(uow.session)
        (imported,) = phones.for_account(mine)
        assert phones.remove(other, imported.id) is False
        assert phones.remove(mine, imported.id) is True
        uow.commit()
    with services.unit_of_work() as uow:
        assert SqlPhones(uow.session).for_account(mine) == []


@pytest.mark.parametrize("text", ["2025550143", "(202) 555-0143", "+1-202-555-0143", "+1 202 555 0143", ""])
def test_only_e164_is_stored(
    services: Services, accounts: tuple[int, int], clock: FakeClock, text: str
) -> None:
    account, _ = accounts
    with services.unit_of_work() as uow, pytest.raises(ValueError, match="E.164"):
        SqlPhones(uow.session).add(account, text, created_via="portal", now=clock.now())
