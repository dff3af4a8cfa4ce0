"""The interface's words in English and Korean, from one message catalogue per language.

`chatbot/locales/en.json` and `ko.json` map the same keys to text, with `{name}` where a value
goes in: a translator edits those files alone, and a test checks that both hold every key. The
language is `--lang ko|en`, else the locale's (`LANG=ko_KR.UTF-8` and the like), else English.

Messages (errors above all) are written in English where they are raised, as gettext does:
`tr("{path}: missing", path=path)`, and `messages.ko.json` maps each English text to its Korean
one; a test finds every `tr` text in the code and checks the Korean catalogue has it.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

LOCALES = Path(__file__).parent / "locales"
LANGUAGES = ("en", "ko")
_current = ["en"]


@cache
def catalogue(language: str) -> dict[str, str]:
    return json.loads((LOCALES / f"{language}.json").read_text(encoding="utf-8"))


def language_from_environment(environ=os.environ) -> str:
    """ "ko" when the locale names Korean (LC_ALL, then LC_MESSAGES, then LANG), else "en"."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name, "")
        if value:
            return "ko" if value.lower().startswith("ko") else "en"
    return "en"


def set_language(language: str | None) -> str:
    """Use `language` from now on (None: the environment's); returns the one in use."""
    chosen = language or language_from_environment()
    _current[0] = chosen if chosen in LANGUAGES else "en"
    return _current[0]


def language() -> str:
    return _current[0]


def t(key: str, **values) -> str:
    """The text of `key` in the current language, with `values` filled in (English where the
    current catalogue lacks the key)."""
    text = catalogue(_current[0]).get(key) or catalogue("en")[key]
    return text.format(**values) if values else text


@cache
def messages(language: str) -> dict[str, str]:
    """English message text -> this language's (empty for English)."""
    path = LOCALES / f"messages.{language}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def tr(message: str, /, **values) -> str:
    """A message written in English, in the current language where its catalogue has it, with
    `values` filled in (`{name}` placeholders, as str.format)."""
    text = messages(_current[0]).get(message, message)
    return text.format(**values)
