"""Which language a message is written in, and which bundled model answers it.

The bundled English model's vocabulary has no Hangul, so a Korean message would reach it as bytes
it never learned; a second bundled model, trained on Korean pairs, answers Korean messages
instead, and the English model answers English beside the Korean one. Only the bundled models
are paired so, and the models retrained from them (which learn only the pairs of their own
language): any other model given by `--model` answers everything.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED = Path(__file__).parent
BUNDLED_MODELS = {"en": BUNDLED / "default_model", "ko": BUNDLED / "default_model_ko"}
HANGUL_SHARE = 0.3  # a message whose letters are at least this share Hangul is Korean


def is_hangul(ch: str) -> bool:
    code = ord(ch)
    return 0xAC00 <= code <= 0xD7A3 or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F


def language_of(text: str) -> str:
    """ "ko" for a message mostly in Hangul, else "en"."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return "en"
    return "ko" if sum(map(is_hangul, letters)) / len(letters) >= HANGUL_SHARE else "en"


def bundled_language(model_dir: Path) -> str | None:
    """The language of the bundled model that `model_dir` is, or was retrained from (its
    config.json's lineage, followed back to a bundled model); None for any other model."""
    from chatbot.errors import ChatbotError
    from chatbot.modeldir import read_config

    bundled = {path.resolve(): lang for lang, path in BUNDLED_MODELS.items()}
    seen: set[Path] = set()
    try:
        path = Path(model_dir).resolve()
        while path not in seen:
            if path in bundled:
                return bundled[path]
            seen.add(path)
            lineage = read_config(path).get("lineage", {})
            parent = lineage.get("parent") if isinstance(lineage, dict) else None
            if not isinstance(parent, str) or not parent:
                return None
            path = Path(parent).resolve()
    except (ChatbotError, OSError, ValueError):  # a parent since removed, not a model, or no path at all
        return None
    return None


def bundled_companions(model_dir: Path) -> dict[str, Path]:
    """For a bundled model, and a model retrained from one, the other bundled models present, by
    language: each answers its own language beside it. For any other model, none."""
    own = bundled_language(model_dir)
    if own is None:
        return {}
    return {lang: path for lang, path in BUNDLED_MODELS.items() if lang != own and (path / "config.json").exists()}


def own_language(model_dir: Path) -> str:
    """The language a model is keyed by among the models that answer (`answered_by`): a bundled
    model's own, or English for any other (which answers every language)."""
    return bundled_language(model_dir) or "en"


def answered_by(repliers: dict, text: str) -> str:
    """Which of `repliers` (by language, the model asked for first) answers `text`: the one of its
    language, else the model asked for."""
    lang = language_of(text)
    return lang if lang in repliers else next(iter(repliers))
