"""The wording of e-mails to members (receipts, notices), as Jinja2 templates.

Like the prompts (``SECUREPAY_PROMPTS_DIR``), the built-in wording
(``payments/templates/NAME.LANG.txt.j2``) can be overridden per file: a file of the same
name in ``SECUREPAY_TEMPLATES_DIR`` is used instead. Each template has a ``subject``
block and a ``body`` block. Templates are plain text (no HTML escaping) and strict: a
misspelt value is an error, never an empty gap in a member's mail.

The templates are all compiled when the service starts (``MailTemplates.load``), so a
broken override stops the start with one line naming the file, not a receipt later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

__all__ = ["MailTemplates", "TemplateError"]

BUILT_IN = Path(__file__).resolve().parent / "templates"
SUFFIX = ".txt.j2"


class TemplateError(ValueError):
    """A template cannot be read, compiled or rendered; the message names the file."""


class MailTemplates:
    def __init__(self, override_dir: str | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if override_dir is not None:
            if not Path(override_dir).is_dir():
                raise TemplateError(f"SECUREPAY_TEMPLATES_DIR is not a folder: {override_dir}")
            loaders.append(jinja2.FileSystemLoader(override_dir))
        loaders.append(jinja2.FileSystemLoader(str(BUILT_IN)))
        self._env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # noqa: S701 - plain-text mail, never rendered as HTML
            keep_trailing_newline=True,
        )

    @classmethod
    def load(cls, override_dir: str | None = None) -> MailTemplates:
        """Build and compile every template now (built-in and overrides)."""
        templates = cls(override_dir)
        for name in templates._env.list_templates(filter_func=lambda n: n.endswith(SUFFIX)):
            templates._template(name)
        return templates

    def _template(self, name: str) -> jinja2.Template:
        try:
            template = self._env.get_template(name)
        except jinja2.TemplateNotFound:
            raise TemplateError(f"no mail template {name}") from None
        except jinja2.TemplateSyntaxError as exc:
            where = f"{exc.name or name} line {exc.lineno}"
            raise TemplateError(f"mail template {where}: {exc.message}") from None
        if "subject" not in template.blocks or "body" not in template.blocks:
            raise TemplateError(f"mail template {name} needs a subject block and a body block")
        return template

    def render(self, message: str, language: str, **values: Any) -> tuple[str, str]:
        """The subject (one line) and the body of ``message`` in ``language``."""
        name = f"{message}.{language}{SUFFIX}"
        template = self._template(name)
        context = template.new_context(values)
        try:
            subject = "".join(template.blocks["subject"](context))
            body = "".join(template.blocks["body"](context))
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"mail template {name}: {exc.message}") from None
        subject = " ".join(subject.split())  # a header is one line
        return subject, body.rstrip("\n") + "\n"
