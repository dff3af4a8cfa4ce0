"""Where things live: the bundled model directory inside the package."""

from pathlib import Path

from chatbot.errors import ChatbotError
from chatbot.i18n import tr

BUNDLED_MODEL = Path(__file__).parent / "default_model"  # English; Korean beside it (`chatbot.languages`)


def default_model_dir() -> Path:
    if not (BUNDLED_MODEL / "config.json").exists():
        raise ChatbotError(
            tr(
                "no bundled model yet: train one with `chatbot train --corpus chitchat --out runs/chitchat` "
                "and pass --model runs/chitchat"
            )
        )
    return BUNDLED_MODEL
