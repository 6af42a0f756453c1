"""``securepay db upgrade`` and ``securepay import accounts``, for the utility's IT.

Registered on the ``securepay`` group by ``ivr.cli``; both run inside the application
(``with_appcontext``) and use its settings, engine, hasher and clock.
"""

from __future__ import annotations

from pathlib import Path

import click
from alembic.util import CommandError
from flask.cli import with_appcontext

from db import migrate
from db.importer import ImportFileError, decode_accounts_file, import_accounts
from ivr.services import current_services

__all__ = ["db_group", "import_group"]

# Rows written per transaction: on SQLite a transaction holds the database's write lock,
# and each row may spend ~50 ms hashing, so calls must not wait for the whole file.
COMMIT_EVERY = 50


@click.group("db")
def db_group() -> None:
    """The database schema."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Alembic revision to reach.")
@with_appcontext
def upgrade_command(revision: str) -> None:
    """Create the schema, or migrate it to the newest revision."""
    engine = current_services().engine
    url = engine.url.render_as_string(hide_password=False)
    try:
        migrate.upgrade(url, revision)
    except CommandError as exc:  # a revision that is not there, a broken chain
        raise click.ClickException(f"the migrations cannot run: {str(exc).splitlines()[0]}") from None
    shown = engine.url.render_as_string(hide_password=True)
    click.echo(f"{shown}: at revision {migrate.current(url)}")


@click.group("import")
def import_group() -> None:
    """Load data from the billing system."""


@import_group.command("accounts")
@click.argument("file", metavar="FILE.csv", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--legacy-pin-from-ssn",
    is_flag=True,
    help="Accounts without a PIN get the SSN (tax-ID) last four as their PIN; the member "
    "is asked to choose a PIN of their own on the first call.",
)
@click.option(
    "--encoding",
    metavar="NAME",
    help="The file's encoding when it has no byte order mark (default utf-8; Windows "
    "billing exports are often cp1252). UTF-8, UTF-16 and UTF-32 with a mark are found alone.",
)
@with_appcontext
def import_accounts_command(file: Path, legacy_pin_from_ssn: bool, encoding: str | None) -> None:
    """Create or update accounts from the billing system's CSV file.

    Prints how many accounts were created, updated and rejected, then each rejected row
    with its line number and reason. Good rows are saved even when others are rejected;
    the exit status is then 1, so scripts notice. A missing file or an unusable header
    row writes nothing and exits with status 1, as does a file that is not text in its
    encoding (the line of the first bad byte is named).
    """
    current_services().settings.require_pepper()  # SSN digits and PINs are hashed: before any row
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror}") from None
    try:
        text, _encoding = decode_accounts_file(data, encoding)
    except ImportFileError as exc:
        raise click.ClickException(f"cannot read {file}: {exc}") from None
    services = current_services()
    written = 0
    with services.sessions() as session:

        def commit_in_batches() -> None:
            nonlocal written
            written += 1
            if written % COMMIT_EVERY == 0:
                session.commit()

        try:
            report = import_accounts(
                session,
                text,
                services.hasher,
                services.clock.now(),
                legacy_pin_from_ssn=legacy_pin_from_ssn,
                after_row=commit_in_batches,
            )
        except ImportFileError as exc:
            raise click.ClickException(f"{file}: {exc}") from None
        session.commit()
    click.echo(f"created {report.created}, updated {report.updated}, rejected {report.rejected}")
    for error in report.errors:
        click.echo(f"line {error.line}: {error.reason}")
    if report.errors:
        raise click.exceptions.Exit(1)
