"""Labels in English and Japanese, and locale-aware dates and numbers.

Every visible label comes from ``dashboard/locales/<lang>/*.toml`` through
:func:`Translator.t`; a test fails when a key exists in one locale and not the
other.  Pure Python (no Streamlit), so it is testable on its own.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

LANGUAGES = {"en": "English", "ja": "日本語"}
LOCALE_DIR = Path(__file__).with_name("locales")


@lru_cache(maxsize=4)
def catalogue(lang: str) -> dict[str, str]:
    """Every label of a language: ``locales/<lang>/*.toml`` merged (one file per page or concern)."""
    data: dict = {}
    for path in sorted((LOCALE_DIR / lang).glob("*.toml")):
        part = tomllib.loads(path.read_text(encoding="utf-8"))
        overlap = set(part) & set(data)
        if overlap:
            raise ValueError(f"{path}: sections {sorted(overlap)} are defined in another file too")
        data.update(part)
    flat: dict[str, str] = {}

    def walk(prefix: str, node: dict) -> None:
        for key, value in node.items():
            name = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict):
                walk(name, value)
            else:
                flat[name] = str(value)

    walk("", data)
    return flat


@dataclass(frozen=True)
class Translator:
    lang: str = "en"

    def t(self, key: str, **values: object) -> str:
        text = catalogue(self.lang).get(key) or catalogue("en").get(key)
        if text is None:
            raise KeyError(f"no label {key!r}")
        return text.format(**values) if values else text

    def date(self, value: date | datetime | str | None) -> str:
        if value is None or value == "":
            return "—"
        if isinstance(value, str):
            value = date.fromisoformat(value[:10])
        if isinstance(value, datetime):
            value = value.date()
        if self.lang == "ja":
            return f"{value.year}年{value.month}月{value.day}日"
        return value.strftime("%d %b %Y").lstrip("0")

    def datetime(self, value: datetime | str | None) -> str:
        if value is None or value == "":
            return "—"
        if isinstance(value, str):  # SQLite returns timestamps of untyped reads as text
            value = datetime.fromisoformat(value)
        if hasattr(value, "to_pydatetime"):
            value = value.to_pydatetime()
        clock = value.strftime("%H:%M")
        return f"{self.date(value)} {clock} UTC"

    def number(self, value: float | int | None, digits: int = 0) -> str:
        if value is None:
            return "—"
        return f"{value:,.{digits}f}"
