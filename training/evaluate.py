"""The measures docs/evaluation.md defines: word-level perplexity (exp(total NLL / total words),
the NLL covering every reply piece plus end-of-sequence under teacher forcing, words = reply words
+ 1, with and without the pairs' context), hits@1 of 20 (does the model rank the true reply
first?), and, over generated replies, unigram F1, distinct-n, length and the generic rate."""

from __future__ import annotations

import math
import random
import sys
from collections import Counter

import torch
import torch.nn.functional as F
from tqdm import tqdm

from chatbot.consensus import unigram_f1
from chatbot.decoding import guided as guided_logp
from chatbot.decoding import ranking_score
from chatbot.i18n import tr
from chatbot.model import Seq2Seq
from chatbot.tokenizer import EOS, PAD, Tokenizer
from corpora import Pair
from training.data import Example, collate, encode_pairs, length_batches
from training.probes import repeats
from training.recall import common_words


def reply_words(pairs: list[Pair]) -> int:
    """The denominator of word-level perplexity: whitespace words of every reply, plus one each."""
    return sum(len(p.reply.split()) + 1 for p in pairs)


def progress(items: list, what: str | None) -> list:
    """`items`, counted off on standard error as they are used, with `what` as the label, when
    standard error is a terminal; `what` None: silent (inside training, or --quiet)."""
    if what is None:
        return items
    return tqdm(items, desc=what, file=sys.stderr, disable=None, leave=False, mininterval=1.0, dynamic_ncols=True)


@torch.no_grad()
def total_nll(
    model: Seq2Seq, examples: list[Example], max_tokens: int = 8000, show: str | None = None
) -> tuple[float, int]:
    """Summed NLL (nats) and token count over `examples`, batched by length; fp32, no dropout."""
    was_training = model.training
    model.eval()
    nll, tokens = 0.0, 0
    for indices in progress(length_batches(examples, max_tokens), show):
        batch = collate([examples[i] for i in indices]).to(model.device)
        logits, targets = model.scored_logits(*batch)
        nll += F.cross_entropy(logits.float(), targets, reduction="sum").item()
        tokens += targets.numel()
    model.train(was_training)
    return nll, tokens


def evaluate_pairs(
    model: Seq2Seq, tokenizer: Tokenizer, pairs: list[Pair], with_context: bool = True, show: str | None = None
) -> dict:
    """The headline figures: `word_ppl`, `token_ppl`, `pairs`, `words`, `tokens`, `nll`; the model
    reads each pair as it was trained to (with the turns before it, unless `with_context` is
    False: the message alone)."""
    cfg = model.cfg
    examples = encode_pairs(pairs, tokenizer, cfg.max_source_tokens, None, cfg.context_turns, with_context)
    nll, tokens = total_nll(model, examples, show=show)
    words = reply_words(pairs)
    return {
        "word_ppl": math.exp(min(nll / words, 700)),  # beyond e^700 a float overflows; meaningless long before
        "token_ppl": math.exp(min(nll / tokens, 700)),
        "pairs": len(pairs),
        "words": words,
        "tokens": tokens,
        "nll": nll,
        "byte_share": tokenizer.byte_share(i for _, rep in examples for i in rep),
    }


MEANINGLESS_BYTE_SHARE = 0.25  # above this share of byte pieces in the replies, perplexity says nothing


def perplexity_note(result: dict) -> str | None:
    """Why a perplexity means nothing, when it does not: the replies are in characters the
    tokenizer never saw (a Korean text for an English model, say), spelled out byte by byte."""
    share = result["byte_share"]
    if share <= MEANINGLESS_BYTE_SHARE:
        return None
    return tr(
        "perplexity not meaningful: {share:.0%} of the reply pieces are single bytes, characters this model's "
        "tokenizer never saw in training (another script?)",
        share=share,
    )


def distinct_n(replies: list[str], n: int) -> float:
    """Unique n-grams over all n-grams in the whole set of replies (whitespace words)."""
    grams = [tuple(words[i : i + n]) for r in replies for words in [r.split()] for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


# --- hits@1 of 20 -------------------------------------------------------------------------------

CANDIDATES = 20  # the true reply and 19 others


def candidate_sets(pairs: list[Pair], seed: int = 0) -> list[list[int]]:
    """For each pair, the indices of its candidate replies: its own first, then 19 replies of
    other pairs with different text, drawn with a fixed seed."""
    rng = random.Random(seed)
    texts = [p.reply for p in pairs]
    sets = []
    for i, own in enumerate(texts):
        others = []
        while len(others) < CANDIDATES - 1:
            j = rng.randrange(len(pairs))
            if texts[j] != own and j not in others:
                others.append(j)
        sets.append([i, *others])
    return sets


@torch.no_grad()
def reply_scores(
    model: Seq2Seq,
    sources: list[list[int]],
    replies: list[list[int]],
    guidance: float,
    max_tokens: int = 8000,
    show: str | None = None,
) -> dict[str, list[float]]:
    """Scores of each (source, reply) pair of piece ids, the reply ending in EOS: the summed
    log-likelihood, the same per piece, the mutual information with the message (log p(reply |
    message) - log p(reply | no message)) and the guided log-probability the chat's decoding
    maximises (`chatbot.decoding`: each step's scores log p + w (log p - log p(. | no message)),
    renormalised; with w = 0, the log-likelihood)."""
    model.eval()
    examples = list(zip(sources, replies))
    blank = [([EOS], r) for r in replies]
    scores = {k: [0.0] * len(examples) for k in ("likelihood", "per_piece", "mutual_information", "guided")}
    for indices in progress(length_batches(examples, max_tokens), show):
        batch = collate([examples[i] for i in indices]).to(model.device)
        logits, targets = model.scored_logits(*batch)
        logp = torch.log_softmax(logits.float(), dim=-1)  # (N, V), the batch's real pieces row by row
        unconditional = None
        if getattr(model.cfg, "unconditional", False):
            nothing = collate([blank[i] for i in indices]).to(model.device)
            unconditional = torch.log_softmax(model.scored_logits(*nothing)[0].float(), dim=-1)
        chosen = logp.gather(1, targets.unsqueeze(1)).squeeze(1)  # (N,)
        guided = chosen
        if unconditional is not None and guidance:
            guided = guided_logp(logp, logp - unconditional, guidance).gather(1, targets.unsqueeze(1)).squeeze(1)
        gain = chosen - unconditional.gather(1, targets.unsqueeze(1)).squeeze(1) if unconditional is not None else None
        counts = (batch.tgt_out != PAD).sum(1).tolist()
        start = 0
        for i, n in zip(indices, counts):
            piece = slice(start, start + n)
            scores["likelihood"][i] = float(chosen[piece].sum())
            scores["per_piece"][i] = scores["likelihood"][i] / n
            scores["mutual_information"][i] = float(gain[piece].sum()) if gain is not None else float("nan")
            scores["guided"][i] = float(guided[piece].sum())
            start += n
    return scores


def hits_at_1(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    pairs: list[Pair],
    guidance: float,
    rerank: float = 0.0,
    seed: int = 0,
    show: str | None = None,
) -> dict:
    """The share of pairs whose own reply ranks first among its 20 candidates, by each score of
    `reply_scores`; `chat` is the score the chat ranks candidate replies by: (1 - rerank) times
    the guided log-probability plus rerank times the mutual information (`chatbot.decoding`)."""
    cfg = model.cfg
    examples = encode_pairs(pairs, tokenizer, cfg.max_source_tokens, None, cfg.context_turns)
    sets = candidate_sets(pairs, seed)
    sources = [examples[i][0] for i, candidates in enumerate(sets) for _ in candidates]
    replies = [examples[j][1] for candidates in sets for j in candidates]
    scores = reply_scores(model, sources, replies, guidance, show=show)
    if not any(math.isnan(v) for v in scores["mutual_information"]):
        scores["chat"] = [ranking_score(g, m, rerank) for g, m in zip(scores["guided"], scores["mutual_information"])]
    else:  # a model that never learned replies to no message ranks by likelihood
        scores["chat"] = scores["guided"]
    hits = {}
    for name, values in scores.items():
        if any(math.isnan(v) for v in values):
            continue
        wins = 0
        for k in range(len(sets)):
            group = values[k * CANDIDATES : (k + 1) * CANDIDATES]
            wins += group[0] > max(group[1:])
        hits[name] = wins / len(sets)
    return hits


# --- generated replies --------------------------------------------------------------------------


def generic_rate(replies: list[str]) -> float:
    """The share of replies whose lower-cased, stripped text is one of the ten most frequent."""
    counts = Counter(r.lower().strip() for r in replies)
    top = {text for text, _ in counts.most_common(10)}
    return sum(r.lower().strip() in top for r in replies) / len(replies) if replies else 0.0


COMMON_WORDS = 100  # the real replies' most frequent words are not content words


def chitchat_common_words() -> frozenset[str]:
    """The words a reply may say twice outside a corpus of its own (the probes): chitchat's
    `COMMON_WORDS` most frequent reply words."""
    from corpora import load_pairs

    return common_words(load_pairs("chitchat", "train"), COMMON_WORDS)


def repetition_rate(replies: list[str], common: set[str]) -> float:
    """The share of replies that say a content word (a normalised word not in `common`) or a word
    pair twice (`training.probes.repeats`): "I have a dog and I also like the dog", "blue, green, blue"."""
    return sum(repeats(r, common) for r in replies) / len(replies) if replies else 0.0


def generation_measures(replies: list[str], pairs: list[Pair]) -> dict:
    """F1 against the real replies, distinct-1/2, mean length in words, generic rate, repetition
    rate (content words: those outside the real replies' 100 most frequent)."""
    common = common_words(pairs, COMMON_WORDS)
    return {
        "f1": sum(unigram_f1(r, p.reply) for r, p in zip(replies, pairs)) / len(pairs),
        "distinct_1": distinct_n(replies, 1),
        "distinct_2": distinct_n(replies, 2),
        "mean_words": sum(len(r.split()) for r in replies) / len(replies),
        "generic_rate": generic_rate(replies),
        "repetition_rate": repetition_rate(replies, common),
    }


def generate(
    engine, tokenizer: Tokenizer, pairs: list[Pair], settings, with_context: bool, batch: int = 64, show=None
) -> list[str]:
    """Replies to every pair's message, in batches (a sampling seed moves on with each batch, so
    that batches do not share their random draws); with `with_context`, each with its turns before."""
    from dataclasses import replace

    from chatbot.decoding import reply, sampled_rows

    if settings.name == "sample":  # consensus sampling runs many rows per message already
        batch = max(1, batch // sampled_rows(settings))
    out = []
    for n, start in enumerate(progress(range(0, len(pairs), batch), show)):
        chunk = pairs[start : start + batch]
        these = replace(settings, seed=settings.seed + n) if getattr(settings, "seed", None) is not None else settings
        contexts = [p.context for p in chunk] if with_context else None
        out += [r[0].text for r in reply(engine, tokenizer, [p.source for p in chunk], these, contexts=contexts)]
    return out
