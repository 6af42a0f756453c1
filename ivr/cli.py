"""The ``securepay`` command line: Flask's CLI with the project's commands."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import FlaskGroup

from ivr import create_app
from ivr.settings import SettingsError


def _cli_app() -> Flask:
    try:
        return create_app(cli=True)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(cls=FlaskGroup, create_app=_cli_app, add_default_commands=False)
def main() -> None:
    """SecurePay: pay-by-phone for electric cooperatives and utilities."""
