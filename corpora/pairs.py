"""A (source, reply) pair, the rules every corpus reader shares, and the error they raise."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import NamedTuple

SAMPLE_PATH = Path(__file__).parent / "samples" / "sample.jsonl"
PHRASES_PATH = Path(__file__).parent / "samples" / "en_ko_phrases.tsv"  # English phrases and their Korean
SPLITS = ("train", "valid", "test")


class CorpusError(Exception):
    """Bad corpus input; the message is one line that names the file and line."""


MAX_CONTEXT = 8  # earlier turns a pair keeps: more than any model reads


class Pair(NamedTuple):
    source: str  # the message replied to
    reply: str
    context: tuple[str, ...] = ()  # the turns before the message in its conversation, oldest first


_WHITESPACE = re.compile(r"\s+")


def stable_percent(text: str) -> int:
    """0 to 99, the same for the same text on every machine and run: splits held out by a hash
    (a chitchat conversation's id, a file's pair, a logged pair) never move."""
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16) % 100


def clean_turn(text: str) -> str:
    """Fold tabs, newlines and runs of whitespace to one space, then strip (docs/evaluation.md)."""
    return _WHITESPACE.sub(" ", text).strip()


def conversation_pairs(turns: list[str]) -> list[Pair]:
    """Every two consecutive turns of a conversation, each pair with the turns before it."""
    return [Pair(turns[i], turns[i + 1], tuple(turns[max(0, i - MAX_CONTEXT) : i])) for i in range(len(turns) - 1)]
