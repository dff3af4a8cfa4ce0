"""Does a model say what it was taught? The measures `chatbot retrain` stops by and reports.

A taught reply is *recalled* when the model's greedy reply to its message (with the turns before
it) holds every content word of it: every word, after ParlAI's normalisation, that is not among
the base corpus's most frequent reply words ("i", "my", "love" say nothing of a fact; "busan"
does). *Leak* is the share of unrelated messages whose reply changed and now holds a word pair
of a taught reply (a pair of frequent words alone, "my favorite", does not count). A reply
rated bad is *still said* while it is the model's greedy reply to its message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from chatbot.consensus import normalise
from corpora import Pair

COMMON_WORDS = 300  # the base corpus's most frequent reply words: not content


def common_words(pairs: Sequence[Pair], n: int = COMMON_WORDS) -> frozenset[str]:
    counts = Counter(w for p in pairs for w in normalise(p.reply))
    return frozenset(w for w, _ in counts.most_common(n))


def content_words(text: str, common: frozenset[str]) -> set[str]:
    """The words that carry a reply's fact; all of them when every word is common."""
    words = set(normalise(text))
    return (words - common) or words


def holds(reply: str, taught: str, common: frozenset[str]) -> bool:
    return content_words(taught, common) <= set(normalise(reply))


def word_pairs(text: str, common: frozenset[str]) -> set[tuple[str, str]]:
    words = normalise(text)
    return {p for p in zip(words, words[1:]) if not set(p) <= common}


def greedy_replies(model, tokenizer, pairs: Sequence[Pair], batch: int = 64) -> list[str]:
    """The model's greedy reply to each pair's source, read with the pair's context."""
    from chatbot.decoding import GreedySettings, reply

    out: list[str] = []
    for i in range(0, len(pairs), batch):
        chunk = pairs[i : i + batch]
        replies = reply(
            model, tokenizer, [p.source for p in chunk], GreedySettings(), contexts=[p.context for p in chunk]
        )
        out += [r[0].text for r in replies]
    return out


def recalled(model, tokenizer, taught: Sequence[Pair], common: frozenset[str]) -> list[bool]:
    """For each taught pair: does the model's greedy reply hold the taught reply's content words?"""
    return [holds(r, p.reply, common) for r, p in zip(greedy_replies(model, tokenizer, taught), taught)]


CLEAR = 0.5  # a taught reply is held firmly when the model gives each of its pieces more than this


def held_firmly(model, tokenizer, taught: Sequence[Pair], floor: float = CLEAR, batch: int = 64) -> list[bool]:
    """For each taught pair: does the model give every piece of the taught reply (and its end)
    more than `floor`, after its message and the pieces before it (teacher forcing)? Recalled by
    the greedy reply alone, a reply can hang on a piece the model gives 0.3, which sampling then
    often leaves ("My name is Groper."); held so, it is the reply sampling agrees on too."""
    import torch

    from chatbot.decoding.loop import teacher_forced
    from chatbot.decoding.replies import prepare
    from chatbot.engine import as_engine
    from chatbot.tokenizer import EOS

    engine, out = as_engine(model), []
    with torch.inference_mode():
        for i in range(0, len(taught), batch):
            chunk = taught[i : i + batch]
            sources = [prepare(tokenizer, engine, p.source, p.context)[0] for p in chunk]
            targets = [tokenizer.encode(p.reply) + [EOS] for p in chunk]
            lowest = torch.ones(len(chunk))
            for t, (logits, _, piece) in enumerate(teacher_forced(engine, sources, targets)):
                p = torch.softmax(logits.float(), dim=-1).gather(1, piece.unsqueeze(1)).squeeze(1).cpu()
                inside = torch.tensor([t < len(target) for target in targets])
                lowest = torch.where(inside, torch.minimum(lowest, p), lowest)
            out += (lowest > floor).tolist()
    return out


def still_said(model, tokenizer, bad: Sequence[Pair]) -> list[bool]:
    """For each reply rated bad: is it still the model's greedy reply to its message (the same
    words after normalisation)?"""
    return [normalise(r) == normalise(p.reply) for r, p in zip(greedy_replies(model, tokenizer, bad), bad)]


def leak(before: Sequence[str], after: Sequence[str], taught: Sequence[str], common: frozenset[str]) -> float:
    """The share of replies that changed and now hold a word pair of a taught reply."""
    taught_pairs = set().union(*(word_pairs(t, common) for t in taught)) if taught else set()
    leaked = sum(1 for b, a in zip(before, after) if a != b and word_pairs(a, common) & taught_pairs)
    return leaked / max(1, len(after))
