"""The benchmark corpus: chitchat-dataset conversations split by conversation id (docs/evaluation.md)."""

from __future__ import annotations

import json
from functools import lru_cache

from chatbot.i18n import tr
from corpora.pairs import CorpusError, Pair, clean_turn, conversation_pairs, stable_percent

MAX_TEST_SOURCE_WORDS = 50
MAX_TEST_REPLY_WORDS = 30


def split_of(conversation_id: str) -> str:
    """Which split a conversation belongs to: a stable hash bucket of its id."""
    bucket = stable_percent(conversation_id)
    return "test" if bucket < 2 else "valid" if bucket < 4 else "train"


@lru_cache(maxsize=1)
def _conversations() -> dict:
    try:
        import chitchat_dataset
    except ImportError:
        raise CorpusError(
            tr("the chitchat corpus needs the package chitchat-dataset (pip install chitchat-dataset)")
        ) from None
    from pathlib import Path

    path = Path(chitchat_dataset.__file__).parent / "dataset.json"
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def chitchat_pairs(split: str) -> list[Pair]:
    """Consecutive-turn pairs of one split, conversations in sorted id order, each with the turns
    before it in its conversation (its context)."""
    pairs = []
    conversations = _conversations()
    for conversation_id in sorted(conversations):
        if split_of(conversation_id) != split:
            continue
        turns = [clean_turn(" ".join(u["text"] for u in turn)) for turn in conversations[conversation_id]["messages"]]
        turns = [t for t in turns if t]
        for pair in conversation_pairs(turns):
            if split == "test" and (
                len(pair.source.split()) > MAX_TEST_SOURCE_WORDS or len(pair.reply.split()) > MAX_TEST_REPLY_WORDS
            ):
                continue
            pairs.append(pair)
    return pairs
