"""One entry point, `load_pairs`, that turns a corpus name or file into (source, reply) pairs."""

from __future__ import annotations

from pathlib import Path

from chatbot.i18n import tr
from corpora.pairs import PHRASES_PATH, SAMPLE_PATH, SPLITS, CorpusError, Pair, stable_percent

MIN_SPLIT_PAIRS = 100  # a smaller file is too small to hold pairs out: every split is all of it


def load_pairs(corpus: str, split: str = "train") -> list[Pair]:
    """Pairs of `corpus`: "chitchat" (split as docs/evaluation.md says), "listening" and
    "listening-ko" (corpora/listening.py, listening_ko.py), several joined by "+"
    ("chitchat+listening"), "sample" or "phrases"
    (every split is the whole sample), or a .tsv, .csv or .jsonl file. A file of 100 pairs or more is split by a
    stable hash of each pair's message (`file_split`): about 5% test, 5% validation, the rest
    training; a smaller file is every split whole."""
    if split not in SPLITS:
        raise CorpusError(tr("unknown split {split!r}: choose one of {names}", split=split, names=", ".join(SPLITS)))
    if "+" in corpus and not Path(corpus).exists():  # "chitchat+listening": the corpora's pairs together
        return [pair for part in corpus.split("+") for pair in load_pairs(part, split)]
    if corpus == "chitchat":
        from corpora.chitchat import chitchat_pairs

        return chitchat_pairs(split)
    if corpus == "listening":  # written conversations, their filler from chitchat's same split
        from corpora.chitchat import chitchat_pairs
        from corpora.listening import listening_pairs

        return listening_pairs(split, chitchat_pairs(split))
    if corpus == "listening-ko":  # the same in Korean, without filler
        from corpora.listening_ko import listening_pairs_ko

        return listening_pairs_ko(split)
    if corpus == "sample":
        from corpora.files import read_jsonl

        return read_jsonl(SAMPLE_PATH)
    if corpus == "phrases":  # a translation sample to learn attention on: every split is all of it
        from corpora.files import read_tsv

        return read_tsv(PHRASES_PATH)
    from corpora.files import read_csv, read_jsonl, read_tsv

    readers = {".jsonl": read_jsonl, ".tsv": read_tsv, ".txt": read_tsv, ".csv": read_csv}
    reader = readers.get(Path(corpus).suffix.lower())
    if reader is None:
        raise CorpusError(
            tr(
                "{corpus}: not a corpus name (chitchat, listening, listening-ko, sample, phrases) "
                "nor a .tsv, .csv or .jsonl file",
                corpus=corpus,
            )
        )
    return file_split(reader(Path(corpus)), split)


def file_split(pairs: list[Pair], split: str) -> list[Pair]:
    """A file's `split`: by `stable_percent` of the message, below 5 test, below 10 validation,
    else training (every pair of one message lands in one split); under 100 pairs, all of them."""
    if len(pairs) < MIN_SPLIT_PAIRS:
        return pairs
    bucket = {"test": range(0, 5), "valid": range(5, 10), "train": range(10, 100)}[split]
    return [p for p in pairs if stable_percent(p.source) in bucket]
