"""One entry point, `load_pairs`, that turns a corpus name or file into (source, reply) pairs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

SAMPLE_PATH = Path(__file__).parent / "samples" / "sample.jsonl"
SPLITS = ("train", "valid", "test")


class CorpusError(Exception):
    """Bad corpus input; the message is one line that names the file and line."""


class Pair(NamedTuple):
    source: str
    reply: str


_WHITESPACE = re.compile(r"\s+")


def clean_turn(text: str) -> str:
    """Fold tabs, newlines and runs of whitespace to one space, then strip (EVAL.md rule 1)."""
    return _WHITESPACE.sub(" ", text).strip()


def load_pairs(corpus: str, split: str = "train") -> list[Pair]:
    """Pairs of `corpus`: "chitchat" (split as EVAL.md says), "sample", or a .tsv/.jsonl path.

    Files and the sample have no split of their own; every split of them is the whole file,
    so `--corpus my.tsv` trains and validates on the same pairs unless told otherwise.
    """
    if split not in SPLITS:
        raise CorpusError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    if corpus == "chitchat":
        from corpora.chitchat import chitchat_pairs

        return chitchat_pairs(split)
    if corpus == "sample":
        from corpora.files import read_jsonl

        return read_jsonl(SAMPLE_PATH)
    path = Path(corpus)
    from corpora.files import read_jsonl, read_tsv

    if path.suffix == ".jsonl":
        return read_jsonl(path)
    if path.suffix in (".tsv", ".txt"):
        return read_tsv(path)
    raise CorpusError(f"{corpus}: not a corpus name (chitchat, sample) nor a .tsv or .jsonl file")
