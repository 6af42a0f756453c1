"""The ``securepay`` command line.

A plain click group: ``--help`` works without any settings. Commands that need the
application use ``flask.cli.with_appcontext``, which builds it on first use from the
environment (``create_app(cli=True)``: the Twilio token is not needed off the webhooks).

One handler sits around every command (``SecurePayGroup.invoke``): a database failure is
one line on stderr and exit status 1, never SQLAlchemy's traceback with the statement
and its parameters (``ivr.cli.database_errors``).
"""

from __future__ import annotations

from typing import Any

import click
from flask import Flask
from flask.cli import ScriptInfo
from sqlalchemy.exc import SQLAlchemyError

from db.cli import db_group, import_group
from ivr import create_app
from ivr.cli.audit import audit_group
from ivr.cli.autopay import autopay_group
from ivr.cli.call import call_command
from ivr.cli.calls import calls_group
from ivr.cli.config import config_group
from ivr.cli.database_errors import DatabaseFailed, describe
from ivr.cli.demo import demo_command
from ivr.cli.pin import pin_group
from ivr.settings import SettingsError
from ivr.version import build
from payments.cli import payments_group


def _cli_app() -> Flask:
    try:
        app = create_app(cli=True)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    # The command's connections are closed when it ends, not left to the garbage collector.
    click.get_current_context().call_on_close(app.extensions["securepay"].engine.dispose)
    return app


class SecurePayGroup(click.Group):
    """The ``securepay`` group: one error handler around every command it runs."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SQLAlchemyError as exc:
            # ``from None``: the chained error would print the SQL and its parameters.
            raise DatabaseFailed(describe(exc)) from None
        except SettingsError as exc:  # e.g. the pepper, asked for by the first hash
            raise click.ClickException(str(exc)) from None


@click.group(cls=SecurePayGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    package_name="securepay", prog_name="securepay", message="%(prog)s " + build().describe()
)
@click.pass_context
def main(ctx: click.Context) -> None:
    """SecurePay: pay-by-phone for electric cooperatives and utilities."""
    if not isinstance(ctx.obj, ScriptInfo):
        ctx.obj = ScriptInfo(create_app=_cli_app, set_debug_flag=False)


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
def serve(host: str, port: int) -> None:
    """Run the web service (development server; production: gunicorn "ivr:create_app()")."""
    try:
        app = create_app()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    app.run(host=host, port=port)


main.add_command(audit_group)
main.add_command(autopay_group)
main.add_command(db_group)
main.add_command(import_group)
main.add_command(pin_group)
main.add_command(call_command)
main.add_command(calls_group)
main.add_command(config_group)
main.add_command(payments_group)
main.add_command(demo_command)
