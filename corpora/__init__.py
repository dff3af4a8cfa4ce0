"""Corpora of (source, reply) pairs: the chitchat benchmark, TSV and JSONL files, a shipped sample."""

from corpora.pairs import CorpusError, Pair, load_pairs

__all__ = ["CorpusError", "Pair", "load_pairs"]
