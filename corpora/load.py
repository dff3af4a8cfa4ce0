"""One entry point, `load_pairs`, that turns a corpus name or file into (source, reply) pairs."""

from __future__ import annotations

from pathlib import Path

from corpora.pairs import SAMPLE_PATH, SPLITS, CorpusError, Pair


def load_pairs(corpus: str, split: str = "train") -> list[Pair]:
    """Pairs of `corpus`: "chitchat" (split as docs/evaluation.md says), "sample", or a .tsv/.jsonl path.

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
