"""Corpora of (source, reply) pairs: the chitchat benchmark, TSV and JSONL files, a shipped sample."""

from corpora.load import load_pairs
from corpora.pairs import CorpusError, Pair

__all__ = ["CorpusError", "Pair", "load_pairs"]
