"""SECURITY 19a: secrets are held in a type that never prints them, and may come from files."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest

from ivr.secrets import MASK, Secret, SecretSourceError, read_secret

VALUE = "sk_live_0123456789abcdefSECRET"


def test_a_secret_is_masked_every_way_it_can_be_printed() -> None:
    secret = Secret(VALUE)
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>40}",
             "%s" % secret, "%r" % (secret,), "{}".format(secret),  # noqa: UP031, UP032
             repr([secret]), repr({"k": secret}), repr(copy.deepcopy(secret)), repr(copy.copy(secret))]
    for text in shown:
        assert VALUE not in text and MASK in text
    assert secret.reveal() == VALUE and secret.reveal_bytes() == VALUE.encode()


def test_a_secret_cannot_be_pickled_or_changed() -> None:
    secret = Secret(VALUE)
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(AttributeError):
        secret._value = "other"  # type: ignore[misc]
    assert secret.reveal() == VALUE


def test_secrets_compare_by_value_and_hash_alike() -> None:
    assert Secret(VALUE) == Secret(VALUE) and Secret(VALUE) != Secret(VALUE + "x")
    assert hash(Secret("a")) == hash(Secret("b"))
    assert Secret(VALUE) != VALUE  # a Secret is not a str


def test_a_secret_comes_from_the_variable_its_file_or_a_systemd_credential(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(VALUE + "\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "TWILIO_AUTH_TOKEN").write_text("from-systemd\n")
    assert read_secret({"TWILIO_AUTH_TOKEN": "direct"}, "TWILIO_AUTH_TOKEN") == Secret("direct")
    from_file = read_secret({"TWILIO_AUTH_TOKEN_FILE": str(tmp_path / "token")}, "TWILIO_AUTH_TOKEN")
    assert from_file is not None and from_file.reveal() == VALUE
    assert from_file.source == "TWILIO_AUTH_TOKEN_FILE"
    credential = read_secret({"CREDENTIALS_DIRECTORY": str(creds)}, "TWILIO_AUTH_TOKEN")
    assert credential is not None and credential.reveal() == "from-systemd"
    assert read_secret({"CREDENTIALS_DIRECTORY": str(creds)}, "STRIPE_API_KEY") is None
    assert read_secret({}, "TWILIO_AUTH_TOKEN") is None


@pytest.mark.parametrize("content, reason", [(None, "cannot read"), ("\n", "is empty"),
                                             (b"\xff\xfe", "not UTF-8")])
def test_a_bad_secret_file_is_one_line_naming_the_variable_not_the_content(
    tmp_path: Path, content: str | bytes | None, reason: str
) -> None:
    path = tmp_path / "pepper"
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(SecretSourceError) as caught:
        read_secret({"SECUREPAY_PEPPER_FILE": str(path)}, "SECUREPAY_PEPPER")
    message = str(caught.value)
    assert "SECUREPAY_PEPPER_FILE" in message and reason in message and "\n" not in message


def test_a_secret_set_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p").write_text("x" * 20)
    with pytest.raises(SecretSourceError, match="both set"):
        read_secret({"SECUREPAY_PEPPER": "y" * 20, "SECUREPAY_PEPPER_FILE": str(tmp_path / "p")},
                    "SECUREPAY_PEPPER")
