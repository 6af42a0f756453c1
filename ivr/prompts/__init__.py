"""Prompt catalogs: one TOML file per language (``en.toml``, ``es.toml``), same keys.

A utility edits the wording without touching code: copy the files into a folder named
by ``SECUREPAY_PROMPTS_DIR`` and change them there. Placeholders are ``{name}``.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

LANGUAGES = ("en", "es")
PACKAGE_DIR = Path(__file__).parent


class CatalogError(ValueError):
    """A catalog is missing, malformed, or its keys differ between languages."""


@dataclass(frozen=True)
class Catalog:
    texts: Mapping[str, Mapping[str, str]]

    @classmethod
    def load(cls, directory: str | Path | None = None) -> Catalog:
        folder = Path(directory) if directory else PACKAGE_DIR
        texts: dict[str, dict[str, str]] = {}
        for lang in LANGUAGES:
            path = folder / f"{lang}.toml"
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise CatalogError(f"prompt catalog {path}: {exc}") from None
            bad = [key for key, value in data.items() if not isinstance(value, str)]
            if bad:
                raise CatalogError(f"prompt catalog {path}: not text: {', '.join(sorted(bad))}")
            texts[lang] = {key: str(value) for key, value in data.items()}
        catalog = cls(texts)
        catalog.check()
        return catalog

    def check(self) -> None:
        """Same keys and same placeholders in every language."""
        first, *others = LANGUAGES
        for lang in others:
            missing = set(self.texts[first]) ^ set(self.texts[lang])
            if missing:
                raise CatalogError(f"catalogs {first} and {lang} differ in keys: {sorted(missing)}")
            for key, text in self.texts[first].items():
                if _fields(text) != _fields(self.texts[lang][key]):
                    raise CatalogError(f"prompt {key!r}: placeholders differ between {first} and {lang}")

    def keys(self) -> set[str]:
        return set(self.texts[LANGUAGES[0]])

    def text(self, lang: str, key: str, args: Mapping[str, str] | None = None) -> str:
        try:
            template = self.texts[lang][key]
        except KeyError:
            raise CatalogError(f"no prompt {key!r} in language {lang!r}") from None
        return template.format_map(dict(args or {}))


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}
