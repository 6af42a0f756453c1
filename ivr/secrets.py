"""Secrets (the pepper, tokens, API keys, passwords): a holder that never prints them.

A ``Secret`` is what ``Settings`` keeps for every secret-bearing variable. Its ``repr``,
``str`` and ``format`` are a fixed mask, so logging the settings, formatting them into a
message or an exception, or dumping them with ``dataclasses.asdict`` writes no secret.
The value comes out only through ``reveal()``, at the one place that hands it to a
library (the hasher, the Stripe client, the signature check).

A secret may come from the environment (``NAME``), from a file named by ``NAME_FILE``,
or from systemd's credentials (``LoadCredential=NAME:...`` puts it in
``$CREDENTIALS_DIRECTORY/NAME``): see ``read_secret``. (SECURITY 19a.)
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, NoReturn, final

__all__ = ["MASK", "Secret", "SecretSourceError", "read_secret"]

MASK: Final = "**********"

# A secret file is a small text file; anything larger is a wrong path, not a key.
MAX_SECRET_FILE_BYTES: Final = 64 * 1024


@final
class Secret:
    """A secret string: masked in ``repr``/``str``/``format``, compared in constant time.

    >>> Secret("sk_live_abc")
    Secret('**********')
    >>> Secret("sk_live_abc").reveal()
    'sk_live_abc'
    """

    __slots__ = ("_value", "source")
    _value: str
    source: str

    def __init__(self, value: str, *, source: str = "value") -> None:
        if not isinstance(value, str):
            raise TypeError("a Secret holds a str")
        if not value:
            raise ValueError("a Secret is never empty (an unset secret is None)")
        object.__setattr__(self, "_value", value)
        # Where it came from ("SECUREPAY_PEPPER", "SECUREPAY_PEPPER_FILE", "credential"):
        # safe to print, so `config check` can say which source won.
        object.__setattr__(self, "source", source)

    def reveal(self) -> str:
        """The secret itself: hand it to the library that needs it, never to a log."""
        return self._value

    def reveal_bytes(self) -> bytes:
        """The secret as UTF-8 bytes (HMAC keys)."""
        return self.reveal().encode()

    def __len__(self) -> int:
        return len(self.reveal())

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self.reveal_bytes(), other.reveal_bytes())

    def __hash__(self) -> int:
        # Hashable (Settings is frozen) without the hash telling anything of the value.
        return hash(Secret)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("a Secret is immutable")

    # A copy is the same immutable object (``dataclasses.asdict`` deep-copies values).
    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> NoReturn:
        # A pickle would carry the value in clear to wherever it is written.
        raise TypeError("a Secret cannot be pickled")


class SecretSourceError(ValueError):
    """A secret's file is missing, unreadable, empty or set twice; the message names it."""


def read_secret(env: Mapping[str, str], name: str) -> Secret | None:
    """The secret ``name`` from ``env``: ``NAME``, ``NAME_FILE`` or a systemd credential.

    Exactly one source may be set: ``NAME`` and ``NAME_FILE`` together is an error (which
    one the operator meant is not ours to guess). ``$CREDENTIALS_DIRECTORY/NAME`` is used
    when neither is set. A file's content is the secret, without a final newline. None
    when no source is set. Errors name the variable and the path, never the content.
    """
    direct = env.get(name, "").strip()
    file_var = f"{name}_FILE"
    file_path = env.get(file_var, "").strip()
    if direct and file_path:
        raise SecretSourceError(f"{name} and {file_var} are both set: set only one")
    if direct:
        return Secret(direct, source=name)
    if file_path:
        return Secret(_read_file(file_var, Path(file_path)), source=file_var)
    credentials = env.get("CREDENTIALS_DIRECTORY", "").strip()
    if credentials:
        path = Path(credentials) / name
        if path.exists():
            return Secret(_read_file(f"credential {name}", path), source=f"credential {name}")
    return None


def _read_file(what: str, path: Path) -> str:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise SecretSourceError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise SecretSourceError(f"{what}: {path} is larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretSourceError(f"{what}: {path} is not UTF-8 text") from None
    value = text.rstrip("\r\n").strip()
    if not value:
        raise SecretSourceError(f"{what}: {path} is empty")
    return value
