"""Word-level perplexity as docs/evaluation.md defines it: exp(total NLL / total words), where the NLL covers
every reply token plus end-of-sequence under teacher forcing, and words = reply words + 1."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from chatbot.model import Seq2Seq
from chatbot.tokenizer import Tokenizer
from corpora import Pair
from training.data import Example, collate, encode_pairs, length_batches


def reply_words(pairs: list[Pair]) -> int:
    """The denominator of word-level perplexity: whitespace words of every reply, plus one each."""
    return sum(len(p.reply.split()) + 1 for p in pairs)


@torch.no_grad()
def total_nll(model: Seq2Seq, examples: list[Example], max_tokens: int = 8000) -> tuple[float, int]:
    """Summed NLL (nats) and token count over `examples`, batched by length; fp32, no dropout."""
    was_training = model.training
    model.eval()
    nll, tokens = 0.0, 0
    for indices in length_batches(examples, max_tokens):
        batch = collate([examples[i] for i in indices]).to(model.device)
        logits, targets = model.scored_logits(*batch)
        nll += F.cross_entropy(logits.float(), targets, reduction="sum").item()
        tokens += targets.numel()
    model.train(was_training)
    return nll, tokens


def evaluate_pairs(model: Seq2Seq, tokenizer: Tokenizer, pairs: list[Pair]) -> dict:
    """The headline figures: `word_ppl`, `token_ppl`, `pairs`, `words`, `tokens`, `nll`."""
    examples = encode_pairs(pairs, tokenizer, model.cfg.max_source_tokens, max_reply=None)
    nll, tokens = total_nll(model, examples)
    words = reply_words(pairs)
    return {
        "word_ppl": math.exp(nll / words),
        "token_ppl": math.exp(nll / tokens),
        "pairs": len(pairs),
        "words": words,
        "tokens": tokens,
        "nll": nll,
    }


def distinct_n(replies: list[str], n: int) -> float:
    """Unique n-grams over all n-grams in the whole set of replies (whitespace words)."""
    grams = [tuple(words[i : i + n]) for r in replies for words in [r.split()] for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0
