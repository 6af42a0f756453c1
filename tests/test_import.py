"""Importing the billing system's accounts file (contract section 5), and its command."""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from db.cli import import_group
from db.engine import session_factory
from db.importer import ImportFileError, ImportReport, import_accounts
from db.models import Account, Phone, PinCredential
from ivr import create_app
from ivr.pinhash import Argon2PinHasher
from ivr.services import EXTENSION_KEY
from ivr.settings import Settings

DATA = Path(__file__).parent / "data"
NOW = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)
HEADER = "account_number,account_type,name,ssn_last4,phones,balance,due_date\n"


@pytest.fixture(scope="module")
def hasher() -> Argon2PinHasher:
    # Cheap parameters: the tests hash many rows; the product keeps OWASP's.
    return Argon2PinHasher(b"test-pepper-0123456789abcdef", time_cost=1, memory_cost=8)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with session_factory(engine)() as session:
        yield session


def load(
    session: Session,
    hasher: Argon2PinHasher,
    source: str | Path,
    now: datetime = NOW,
    legacy_pin_from_ssn: bool = False,
) -> ImportReport:
    text = source.read_text() if isinstance(source, Path) else source
    report = import_accounts(session, text, hasher, now, legacy_pin_from_ssn=legacy_pin_from_ssn)
    session.commit()
    return report


def account(session: Session, number: str) -> Account:
    found = session.scalar(
        select(Account).where(Account.account_number == number).execution_options(populate_existing=True)
    )
    assert found is not None, f"account {number} not imported"
    return found


def phones(session: Session, number: str) -> dict[str, str]:
    rows = session.execute(
        select(Phone.e164, Phone.created_via)
        .join(Account, Account.id == Phone.account_id)
        .where(Account.account_number == number)
    )
    return {e164: via for e164, via in rows}


def credential(session: Session, number: str) -> PinCredential:
    found = session.get(PinCredential, account(session, number).id, populate_existing=True)
    assert found is not None
    return found


def count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Account)) or 0


def test_good_file_creates_every_account_as_written(session: Session, hasher: Argon2PinHasher) -> None:
    report = load(session, hasher, DATA / "accounts_good.csv")

    assert (report.created, report.updated, report.errors) == (3, 0, ())
    rivera = account(session, "100482")
    assert (rivera.account_type, rivera.name, rivera.language) == ("residential", "Rivera", "es")
    assert (rivera.balance_cents, rivera.past_due_cents) == (12345, 2000)
    assert (rivera.due_date, rivera.balance_as_of, rivera.email) == (
        date(2025, 3, 31),
        NOW,
        "rivera@example.test",
    )
    assert phones(session, "100482") == {"+12025550123": "import", "+12025550124": "import"}
    feed = account(session, "100483")
    assert (feed.name, feed.balance_cents, feed.ssn_hash) == ("Blue Ridge Feed & Seed, Inc.", -1550, None)
    assert (feed.language, feed.email) == (None, None)
    assert account(session, "4821").language == "en"
    assert (credential(session, "100482").origin, credential(session, "100482").pin_hash) == (
        "none",
        None,
    )


def test_ssn_digits_are_kept_only_as_a_keyed_hash(session: Session, hasher: Argon2PinHasher) -> None:
    load(session, hasher, DATA / "accounts_good.csv")

    stored = account(session, "100482").ssn_hash
    assert stored is not None and "4821" not in stored
    assert hasher.verify(stored, "4821") and not hasher.verify(stored, "4822")


def test_columns_may_come_in_any_order_and_optional_ones_may_be_absent(
    session: Session, hasher: Argon2PinHasher
) -> None:
    report = load(session, hasher, DATA / "accounts_reordered.csv")

    assert (report.created, report.errors) == (1, ())
    okafor = account(session, "300001")
    assert (okafor.name, okafor.balance_cents, okafor.due_date) == ("Okafor", 4200, date(2025, 5, 1))
    assert phones(session, "300001") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ((DATA / "accounts_missing_column.csv").read_text(), "required column(s) missing: due_date"),
        ("", "empty"),
        (HEADER.replace("phones", "phone") + "1001,residential,A,,,1.00,2025-03-31\n", "'phone'"),
        (HEADER.replace("phones", "name") + "1001,residential,A,,,1.00,2025-03-31\n", "twice: name"),
    ],
)
def test_unusable_header_refuses_the_file_and_writes_nothing(
    session: Session, hasher: Argon2PinHasher, text: str, message: str
) -> None:
    with pytest.raises(ImportFileError) as refused:
        import_accounts(session, text, hasher, NOW)
    session.commit()

    assert message in str(refused.value)
    assert count(session) == 0


def test_bad_rows_are_reported_by_line_and_good_rows_kept(session: Session, hasher: Argon2PinHasher) -> None:
    report = load(session, hasher, DATA / "accounts_mixed.csv")

    assert (report.created, report.updated) == (2, 0)
    reasons = dict(report.errors)
    assert list(reasons) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
    expected = {
        3: "account_number must be 4 to 20 digits",
        4: "account_type must be residential or commercial",
        5: "name is empty",
        6: "ssn_last4 must be empty or exactly 4 digits",
        7: "phone 2 of the phones column",
        8: "balance has more than 2 decimals",
        9: "balance must be an amount",
        10: "due_date must be a date as YYYY-MM-DD",
        11: "past_due must be between 0 and the balance",
        12: "language must be empty, en or es",
        13: "email is not an e-mail address",
        14: "account 200001 appears again (first on line 2)",
        15: "expected 10 fields, found 6",
    }
    for line, reason in expected.items():
        assert reason in reasons[line], (line, reasons[line])
    assert sorted(account.account_number for account in session.scalars(select(Account))) == [
        "200001",
        "200015",
    ]
    assert account(session, "200001").balance_cents == 1000  # the duplicate did not win
    assert account(session, "200015").balance_cents == -525


def test_no_reason_repeats_the_ssn_digits(session: Session, hasher: Argon2PinHasher) -> None:
    report = load(session, hasher, DATA / "accounts_mixed.csv")

    text = " ".join(reason for _, reason in report.errors)
    assert "73191" not in text and "7319" not in text
    assert "555-0133" not in text  # nor the phone number itself


def test_a_bad_row_writes_nothing_not_even_its_phones(session: Session, hasher: Argon2PinHasher) -> None:
    load(session, hasher, DATA / "accounts_mixed.csv")

    assert session.scalar(select(func.count()).select_from(Phone).where(Phone.e164 == "+12025550132")) == 0


def test_row_refused_by_the_database_is_rolled_back_alone(
    session: Session, hasher: Argon2PinHasher, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite does not enforce column lengths, the failure this test provokes")

    class OversizedHasher(Argon2PinHasher):
        def hash(self, secret: str) -> str:
            return "x" * 500 if secret == "6666" else super().hash(secret)

    oversized = OversizedHasher(b"test-pepper-0123456789abcdef", time_cost=1, memory_cost=8)
    load(session, hasher, HEADER + "5001,residential,Old,1111,2025550150,10.00,2025-03-31\n")

    report = load(
        session,
        oversized,
        HEADER
        + "5001,residential,New,6666,2025550151,99.00,2025-04-30\n"
        + "5002,residential,Other,,,1.00,2025-04-30\n",
        now=NOW + timedelta(days=30),
    )

    assert [line for line, _ in report.errors] == [2]
    assert "6666" not in report.errors[0].reason
    kept = account(session, "5001")
    assert (kept.name, kept.balance_cents, kept.balance_as_of) == ("Old", 1000, NOW)
    assert phones(session, "5001") == {"+12025550150": "import"}
    assert account(session, "5002").balance_cents == 100


def test_reimport_updates_and_replaces_only_imported_phones(
    session: Session, hasher: Argon2PinHasher
) -> None:
    load(session, hasher, DATA / "accounts_good.csv")
    rivera = account(session, "100482")
    first_hash = rivera.ssn_hash
    session.add(Phone(account_id=rivera.id, e164="+12025550199", created_via="portal", created_at=NOW))
    session.commit()
    later = NOW + timedelta(days=30)

    report = load(
        session,
        hasher,
        HEADER
        + "100482,residential,Rivera,4821,(202) 555-0124;(202) 555-0126,80.00,2025-04-30\n"
        + "4821,residential,O'Neil,1234,,0,2025-05-15\n",
        now=later,
    )

    assert (report.created, report.updated, report.errors) == (0, 2, ())
    rivera = account(session, "100482")
    assert (rivera.balance_cents, rivera.due_date, rivera.balance_as_of) == (8000, date(2025, 4, 30), later)
    assert rivera.created_at == NOW and rivera.updated_at == later
    assert rivera.ssn_hash == first_hash  # the same digits: not rehashed
    assert rivera.language == "es"  # the column is absent from this file: unchanged
    assert phones(session, "100482") == {
        "+12025550124": "import",
        "+12025550126": "import",
        "+12025550199": "portal",
    }
    oneil = account(session, "4821")
    assert oneil.ssn_hash is not None and hasher.verify(oneil.ssn_hash, "1234")
    assert phones(session, "4821") == {}


def test_legacy_pin_from_ssn_gives_a_pin_only_to_accounts_without_one(
    session: Session, hasher: Argon2PinHasher
) -> None:
    load(session, hasher, DATA / "accounts_good.csv")
    member = credential(session, "4821")
    member.pin_hash, member.origin, member.changed_at = hasher.hash("2580"), "member", NOW
    session.commit()

    load(session, hasher, DATA / "accounts_good.csv", legacy_pin_from_ssn=True)

    rivera = credential(session, "100482")
    assert rivera.origin == "legacy" and rivera.pin_hash is not None
    assert hasher.verify(rivera.pin_hash, "4821") and rivera.changed_at == NOW
    assert credential(session, "4821").origin == "member"
    assert hasher.verify(credential(session, "4821").pin_hash or "", "2580")
    assert (credential(session, "100483").origin, credential(session, "100483").pin_hash) == (
        "none",
        None,
    )


def test_a_stream_is_read_like_text(session: Session, hasher: Argon2PinHasher) -> None:
    stream = io.StringIO((DATA / "accounts_reordered.csv").read_text())

    report = import_accounts(session, stream, hasher, NOW)

    assert report.created == 1


# --- the command ----------------------------------------------------------------------


def invoke(test_env: dict[str, str], *args: str) -> tuple[int, str]:
    app = create_app(Settings.from_env(test_env), cli=True)
    try:
        result = app.test_cli_runner().invoke(import_group, list(args))
    finally:
        app.extensions[EXTENSION_KEY].engine.dispose()
    return result.exit_code, result.output


def test_import_command_prints_the_summary_and_exits_0(test_env: dict[str, str], engine: Engine) -> None:
    code, output = invoke(test_env, "accounts", str(DATA / "accounts_good.csv"))

    assert (code, output) == (0, "created 3, updated 0, rejected 0\n")
    with session_factory(engine)() as session:
        assert count(session) == 3


def test_import_command_lists_rejected_rows_keeps_good_ones_and_exits_1(
    test_env: dict[str, str], engine: Engine
) -> None:
    code, output = invoke(test_env, "accounts", str(DATA / "accounts_mixed.csv"))

    lines = output.splitlines()
    assert code == 1
    assert lines[0] == "created 2, updated 0, rejected 13"
    assert lines[1] == "line 3: account_number must be 4 to 20 digits"
    assert len(lines) == 14
    with session_factory(engine)() as session:
        assert count(session) == 2


def test_import_command_with_legacy_pins(test_env: dict[str, str], engine: Engine) -> None:
    code, _ = invoke(test_env, "accounts", str(DATA / "accounts_reordered.csv"), "--legacy-pin-from-ssn")

    assert code == 0


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no-such-file.csv", "cannot read"),
        ("accounts_missing_column.csv", "required column(s) missing: due_date"),
    ],
)
def test_import_command_refuses_a_missing_file_or_bad_header_in_one_line(
    test_env: dict[str, str], engine: Engine, name: str, message: str
) -> None:
    code, output = invoke(test_env, "accounts", str(DATA / name))

    assert code == 1
    assert output.startswith("Error: ") and message in output
    assert output.count("\n") == 1
    with session_factory(engine)() as session:
        assert count(session) == 0


# --- encodings (issue 11, defect 8) ---------------------------------------------------

WINDOWS_CSV = (
    "account_number,account_type,name,ssn_last4,phones,balance,due_date\r\n"
    "10004821,residential,Muñoz,0618,202-555-0143,123.45,2026-11-30\r\n"
    "20007315,commercial,Café Zoë Ltd,0536,,80.00,2026-11-30\r\n"
)
NAMES = ["Café Zoë Ltd", "Muñoz"]


def names(engine: Engine) -> list[str]:
    with session_factory(engine)() as session:
        return sorted(session.scalars(select(Account.name)))


@pytest.mark.parametrize("encoded, args", [
    pytest.param(WINDOWS_CSV.encode("cp1252"), ["--encoding", "cp1252"], id="cp1252"),
    pytest.param(WINDOWS_CSV.encode("utf-16"), [], id="utf-16-bom-le"),
    pytest.param(codecs.BOM_UTF16_BE + WINDOWS_CSV.encode("utf-16-be"), [], id="utf-16-bom-be"),
    pytest.param(codecs.BOM_UTF8 + WINDOWS_CSV.encode("utf-8"), [], id="utf-8-bom"),
    pytest.param(WINDOWS_CSV.encode("utf-16"), ["--encoding", "cp1252"], id="the-bom-decides"),
    pytest.param(WINDOWS_CSV.encode("utf-16-le"), ["--encoding", "utf-16-le"], id="utf-16-le-no-bom"),
])
def test_import_reads_windows_encodings(
    test_env: dict[str, str], engine: Engine, tmp_path: Path, encoded: bytes, args: list[str]
) -> None:
    path = tmp_path / "accounts.csv"
    path.write_bytes(encoded)

    code, output = invoke(test_env, "accounts", str(path), *args)

    assert (code, output) == (0, "created 2, updated 0, rejected 0\n")
    assert names(engine) == NAMES


@pytest.mark.parametrize("encoded, args, message", [
    pytest.param(WINDOWS_CSV.encode("cp1252"), [],
                 "not utf-8 text: byte 0xf1 at line 2 (a Windows export? try --encoding cp1252)",
                 id="cp1252-as-utf-8"),
    pytest.param(WINDOWS_CSV.encode("utf-8").replace(b"Mu", b"\x81u"), ["--encoding", "cp1252"],
                 "not cp1252 text: byte 0x81 at line 2", id="undefined-in-cp1252"),
    pytest.param(WINDOWS_CSV.encode("utf-16-le"), [], "holds NUL bytes (UTF-16 without a byte order mark?",
                 id="utf-16-without-bom"),
    pytest.param(WINDOWS_CSV.encode("utf-8"), ["--encoding", "klingon"], "unknown encoding 'klingon'",
                 id="unknown-encoding"),
])
def test_an_undecodable_file_is_refused_in_one_line_and_nothing_is_written(
    test_env: dict[str, str], engine: Engine, tmp_path: Path, encoded: bytes, args: list[str], message: str
) -> None:
    path = tmp_path / "accounts.csv"
    path.write_bytes(encoded)

    code, output = invoke(test_env, "accounts", str(path), *args)

    assert code == 1
    assert output.startswith(f"Error: cannot read {path}: ") and message in output, output
    assert output.count("\n") == 1
    assert names(engine) == []
    assert "Mu" not in output and "0618" not in output  # no content of the file is quoted
