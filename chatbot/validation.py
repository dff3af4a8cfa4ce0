"""Checks of values that come from people and files: type, finiteness and range.

Every setting a command line, a settings dialog or a config.json gives passes through `check`
before anything is built from it, so a string where a number belongs, a NaN, or a size that
would allocate gigabytes is one line of error, not a traceback minutes later.
"""

from __future__ import annotations

import math

from chatbot.errors import ChatbotError
from chatbot.i18n import tr

TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def check(label: str, value, kind: type, low=None, high=None, optional: bool = False):
    """`value` if it is a `kind` (bool, int or float) within [low, high]; else a ChatbotError
    naming `label`. An int is a valid float; a bool is neither an int nor a float here."""
    if value is None and optional:
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise _error(label, tr("must be true or false, not {value!r}", value=value))
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise _error(label, tr("must be {range}, not {value!r}", range=describe(kind, low, high), value=value))
    if kind is float and not math.isfinite(value):
        raise _error(label, tr("must be a finite number, not {value!r}", value=value))
    if (low is not None and value < low) or (high is not None and value > high):
        raise _error(label, tr("must be {range}, not {value!r}", range=describe(kind, low, high), value=value))
    return value


def _error(label: str, text: str) -> ChatbotError:
    return ChatbotError(tr("{label} {text}", label=label, text=text) if label else text)


def describe(kind: type, low=None, high=None) -> str:
    what = tr("a whole number") if kind is int else tr("a number")
    if low is not None and high is not None:
        return tr("{what} from {low} to {high}", what=what, low=show(low), high=show(high))
    if low is not None:
        return tr("{what} of at least {low}", what=what, low=show(low))
    if high is not None:
        return tr("{what} of at most {high}", what=what, high=show(high))
    return what


def show(bound) -> str:
    """A bound as people write it: 9223372036854775807 in full, 1e-08 short."""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def parse(label: str, raw: str, kind: type, optional: bool = False):
    """Text typed by a person as a `kind`: whole numbers in decimal, numbers as Python writes
    them (`nan` and `inf` parse, and `check` refuses them), booleans as true/false, yes/no,
    on/off or 1/0; with `optional`, empty or `none` is None."""
    text = raw.strip()
    if optional and text.lower() in ("", "none"):
        return None
    if kind is bool:
        if text.lower() in TRUE_WORDS:
            return True
        if text.lower() in FALSE_WORDS:
            return False
        raise _error(label, tr("must be true or false, not {value!r}", value=raw))
    try:
        return int(text, 10) if kind is int else float(text)
    except (ValueError, OverflowError):
        raise _error(label, tr("must be {range}, not {value!r}", range=describe(kind), value=raw)) from None


def max_threads() -> int:
    """The most CPU threads a run may ask for: this machine's cores (torch crashed when asked for
    a hundred thousand)."""
    import os

    return os.cpu_count() or 1


def clean_text(text: str) -> str:
    """`text` with each lone surrogate (what Python makes of undecodable bytes, say from a
    terminal or an argument) replaced by U+FFFD: SQLite and SentencePiece take only valid UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)


def printable(text: str, newlines: bool = True) -> str:
    """Control characters shown as visible symbols, so no message can drive the terminal
    (newlines kept unless `newlines` is False)."""
    return "".join(ch if ch.isprintable() or (newlines and ch == "\n") else f"\\x{ord(ch):02x}" for ch in text)


def reference_precision(name: str) -> str:
    """The weights `--reference` runs with: the model's own float modules, so fp32 unless bf16 is
    asked for; int8 is refused (its layers are the engine's, not the model's)."""
    if name == "int8":
        raise ChatbotError(tr("--reference runs the model's own float modules: use --precision fp32 or bf16 with it"))
    return "bf16" if name == "bf16" else "fp32"
