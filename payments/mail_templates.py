"""The wording of e-mails and texts to members (receipts, Auto Pay notices), as Jinja2
templates.

Like the prompts (``SECUREPAY_PROMPTS_DIR``), the built-in wording
(``payments/templates/NAME.LANG.txt.j2``) can be overridden per file: a file of the same
name in ``SECUREPAY_TEMPLATES_DIR`` is used instead. Each message has a ``subject``
block and a ``body`` block (a template may get them by ``{% extends %}``); a partial
(``autopay_terms``) is included by the messages. Templates are plain text (no HTML
escaping) and strict: a misspelt value is an error, never an empty gap in a member's mail.

The templates are all compiled and checked when the service starts
(``MailTemplates.load``): a syntax error, a value the template is not given, a missing
block or a file SecurePay never sends stops the start with one line naming the file,
not a receipt or a notice later.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

__all__ = ["LANGUAGES", "MESSAGES", "NOTICE_KINDS", "MailTemplates", "TemplateError", "mail_templates"]

BUILT_IN = Path(__file__).resolve().parent / "templates"
SUFFIX = ".txt.j2"
LANGUAGES = ("en", "es")

_RECEIPT = frozenset({"utility_name", "account_last4", "amount", "confirmation", "method", "when"})
# Auto Pay notices: the contract 2.10 terms. Last four digits only (SECURITY 19b).
_NOTICE = frozenset({
    "utility_name", "member_services", "account_last4", "method_kind", "method_brand",
    "method_last4", "first_due_after", "terms_version",
})  # fmt: skip
_DECLINED = _NOTICE | {"amount", "due_date"}
NOTICE_KINDS = ("enrolled", "method_changed", "cancelled", "suspended", "declined")

# Every message SecurePay renders, with the values it is given (each a string).
MESSAGES: dict[str, frozenset[str]] = {"receipt": _RECEIPT}
for _kind in NOTICE_KINDS:
    _values = _DECLINED if _kind == "declined" else _NOTICE
    MESSAGES[f"autopay_{_kind}"] = _values  # the e-mail
    MESSAGES[f"autopay_{_kind}_text"] = _values  # the text message
# Included by messages: no blocks of their own.
PARTIALS: dict[str, frozenset[str]] = {"autopay_terms": _NOTICE}


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
            autoescape=False,  # noqa: S701 - plain-text mail and texts, never rendered as HTML
            keep_trailing_newline=True,
        )

    @classmethod
    def load(cls, override_dir: str | None = None) -> MailTemplates:
        """Build, compile and check every template now (built-in and overrides): each
        file uses only the values its message is given, and each message renders in
        each language (with stand-in values)."""
        templates = cls(override_dir)
        for name in templates._env.list_templates(filter_func=lambda n: n.endswith(SUFFIX)):
            templates._check(name)
        for message, values in MESSAGES.items():
            for language in LANGUAGES:
                templates.render(message, language, **{value: value for value in sorted(values)})
        return templates

    def _check(self, name: str) -> None:
        """Compile ``name`` and refuse a value its message is not given."""
        stem = name.split(".", 1)[0]
        allowed = MESSAGES.get(stem, PARTIALS.get(stem))
        if allowed is None:
            raise TemplateError(f"mail template {name}: SecurePay sends no message named {stem}")
        loader = self._env.loader
        assert loader is not None  # noqa: S101 - set in __init__
        source, _, _ = loader.get_source(self._env, name)
        try:
            tree = self._env.parse(source, name=name)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"mail template {name} line {exc.lineno}: {exc.message}") from None
        unknown = sorted(jinja2.meta.find_undeclared_variables(tree) - allowed - set(self._env.globals))
        if unknown:
            given = ", ".join(sorted(allowed))
            raise TemplateError(f"mail template {name}: unknown value {', '.join(unknown)} (given: {given})")
        self._template(name)

    def _template(self, name: str) -> jinja2.Template:
        try:
            return self._env.get_template(name)
        except jinja2.TemplateNotFound:
            raise TemplateError(f"no mail template {name}") from None
        except jinja2.TemplateSyntaxError as exc:
            where = f"{exc.name or name} line {exc.lineno}"
            raise TemplateError(f"mail template {where}: {exc.message}") from None

    def render(self, message: str, language: str, **values: Any) -> tuple[str, str]:
        """The subject (one line) and the body of ``message`` in ``language``."""
        name = f"{message}.{language}{SUFFIX}"
        template = self._template(name)
        context = template.new_context(values)
        try:
            for _ in template.root_render_func(context):  # runs {% extends %}: the blocks in force
                pass
            blocks = context.blocks
            if "subject" not in blocks or "body" not in blocks:
                raise TemplateError(f"mail template {name} needs a subject block and a body block")
            subject = "".join(blocks["subject"][0](context))
            body = "".join(blocks["body"][0](context))
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"mail template {name}: {exc.message}") from None
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"mail template {name}: no template {exc.name}") from None
        except jinja2.TemplateSyntaxError as exc:
            where = f"{exc.name or name} line {exc.lineno}"
            raise TemplateError(f"mail template {where}: {exc.message}") from None
        subject = " ".join(subject.split())  # a header is one line
        return subject, body.rstrip("\n") + "\n"


@cache
def mail_templates(override_dir: str | None = None) -> MailTemplates:
    """The templates for ``SECUREPAY_TEMPLATES_DIR``, loaded once per process."""
    return MailTemplates.load(override_dir)
