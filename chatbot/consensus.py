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


def word_pairs(words: list[str]) -> list[str]:
    """Each two neighbouring words as one item ("my favorite", "favorite color")."""
    return [f"{a} {b}" for a, b in zip(words, words[1:])]


MIN_REPEATED_LETTERS = 4  # "I think I ..." and "to go to" repeat short words naturally; "blue ... blue" does not


def repeats(words: list[str]) -> bool:
    """A reply that says a word of four letters or more, or a word pair, twice: "I have a dog
    and I also like the dog", "blue, green, blue". (The evaluation's repetition rate counts
    content words by the corpus's frequencies instead; decoding has no corpus.)"""
    long = [w for w in words if len(w) >= MIN_REPEATED_LETTERS]
    pairs = word_pairs(words)
    return len(set(long)) < len(long) or len(set(pairs)) < len(pairs)


def agreement(candidates: list[list[str]], evidence: list[list[str]], pairs: float = 0.0) -> list[float]:
    """Each candidate's mean agreement with the evidence replies (lists of normalised words):
    unigram F1, or with `pairs` w, (1 - w) unigram F1 + w F1 of the word pairs. Word pairs reward
    a reply for saying things the way the evidence says them, where single words reward a list
    of the topic's words ("blue, green, blue").

    The bags of words become count vectors over the words they use, so all candidate-evidence
    pairs are scored in one tensor operation: F1 = 2 |shared| / (|candidate| + |evidence reply|)."""
    if not evidence:
        return [0.0] * len(candidates)
    single = bag_f1(candidates, evidence)
    if not pairs:
        return single
    paired = bag_f1([word_pairs(c) for c in candidates], [word_pairs(e) for e in evidence])
    return [(1 - pairs) * a + pairs * b for a, b in zip(single, paired)]


def bag_f1(candidates: list[list[str]], evidence: list[list[str]]) -> list[float]:
    """Each candidate's mean F1 over the evidence, as bags of items."""
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
