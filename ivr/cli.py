"""The ``securepay`` command line.

A plain click group: ``--help`` works without any settings. Commands that need the
application use ``flask.cli.with_appcontext``, which builds it on first use from the
environment (``create_app(cli=True)``: the Twilio token is not needed off the webhooks).
"""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import ScriptInfo

from ivr import create_app
from ivr.settings import SettingsError


def _cli_app() -> Flask:
    try:
        return create_app(cli=True)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """SecurePay: pay-by-phone for electric cooperatives and utilities."""
    if not isinstance(ctx.obj, ScriptInfo):
        ctx.obj = ScriptInfo(create_app=_cli_app, set_debug_flag=False)
