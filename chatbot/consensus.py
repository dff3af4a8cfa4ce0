"""Consensus replies: of several sampled replies, answer with the one that the model's other
replies agree with most (minimum Bayes risk decoding: Kumar and Byrne 2004; Eikema and Aziz 2020).

One sampled reply is one draw: often fine, sometimes off on a tangent. Draw many, and each
candidate's mean agreement with replies drawn from the model's own distribution estimates how
much it would agree with what a person could say next; the candidate with the highest estimate
answers. Agreement is unigram F1, the measure `chatbot evaluate` scores replies with against the
real ones, so the words of a reply are normalised here as they are there (ParlAI's rules).
"""

from __future__ import annotations

import re
from collections import Counter

import torch

_PUNCTUATION = re.compile(r"[^\w\s]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalise(text: str) -> list[str]:
    """ParlAI's normalisation for F1: lower case, punctuation and the articles a/an/the removed,
    split on whitespace."""
    return _ARTICLES.sub(" ", _PUNCTUATION.sub(" ", text.lower())).split()


def unigram_f1(guess: str, truth: str) -> float:
    """F1 of the two bags of normalised words (0 when they share none)."""
    g, t = normalise(guess), normalise(truth)
    common = sum((Counter(g) & Counter(t)).values())
    if not common:
        return 0.0
    precision, recall = common / len(g), common / len(t)
    return 2 * precision * recall / (precision + recall)


def agreement(candidates: list[list[str]], evidence: list[list[str]]) -> list[float]:
    """Each candidate's mean unigram F1 with the evidence replies (lists of normalised words).

    The bags of words become count vectors over the words they use, so all candidate-evidence
    pairs are scored in one tensor operation: F1 = 2 |shared| / (|candidate| + |evidence reply|)."""
    if not evidence:
        return [0.0] * len(candidates)
    index: dict[str, int] = {}
    for words in (*candidates, *evidence):
        for w in words:
            index.setdefault(w, len(index))

    def counts(replies: list[list[str]]) -> torch.Tensor:
        table = torch.zeros(len(replies), max(len(index), 1))
        for row, words in enumerate(replies):
            for w, n in Counter(words).items():
                table[row, index[w]] = n
        return table

    c, e = counts(candidates), counts(evidence)  # (N, U), (E, U)
    shared = torch.minimum(c.unsqueeze(1), e.unsqueeze(0)).sum(-1)  # (N, E)
    sizes = c.sum(-1, keepdim=True) + e.sum(-1)  # (N, E)
    f1 = torch.where(shared > 0, 2 * shared / sizes.clamp(min=1), torch.zeros_like(shared))
    return f1.mean(-1).tolist()
