"""Pairs to tensors: encoding, length-bucketed batches under a token budget, padding.

Batches are a pure function of (examples, seed, epoch), so a resumed run sees the same order.
"""

from __future__ import annotations

import random
from typing import NamedTuple

import torch

from chatbot.model import pad_right
from chatbot.tokenizer import BOS, EOS, PAD, Tokenizer, keep_end
from corpora import Pair

REPLY_BUCKET = 4  # reply lengths that share a bucket
Example = tuple[list[int], list[int]]  # (source ids, reply ids + EOS unless truncated)


def encode_pairs(
    pairs: list[Pair],
    tokenizer: Tokenizer,
    max_source: int,
    max_reply: int | None = None,
    context_turns: int = 0,
    with_context: bool = True,
) -> list[Example]:
    """Sources are `tokenizer.dialog`s: with `context_turns`, the pair's last turns before the
    message and the message, each marked with its speaker (with `with_context` False, the
    message alone, still marked); cut to their last `max_source` pieces (`keep_end`). Replies
    keep their first `max_reply` pieces and lose the EOS when cut, so the model never learns to
    stop mid-sentence. `max_reply=None` keeps whole replies (evaluation)."""
    turns = {t for p in pairs for t in (p.source, p.reply, *(p.context[-context_turns:] if context_turns else ()))}
    encoded = dict(zip(turns, tokenizer.encode_batch(list(turns))))
    marked = bool(context_turns) and tokenizer.speakers is not None
    examples = []
    for p in pairs:
        if marked:
            context = p.context[-context_turns:] if with_context else ()
            src = tokenizer.join_turns([encoded[t] for t in (*context, p.source)])
        else:
            src = encoded[p.source]
        src = keep_end(src, max_source)
        rep = encoded[p.reply]
        rep = rep[:max_reply] if max_reply is not None and len(rep) >= max_reply else rep + [EOS]
        examples.append((src, rep))
    return examples


def with_talk_before(pairs: list[Pair], share: float, rng: random.Random) -> list[Pair]:
    """`pairs` with about `share` of those that have no turns before given one or two other such
    pairs as the turns before them. A model that reads earlier turns, trained on a corpus of single
    pairs beside written conversations, otherwise learns that any turn before means a written
    conversation, and in a chat, where every message after the first has turns before it, answers
    everything as one ("나 요즘 너무 우울해" -> "라고 하셨어요.")."""
    single = [p for p in pairs if not p.context]
    if not share or not single:
        return pairs
    out = []
    for p in pairs:
        if not p.context and rng.random() < share:
            before = [turn for _ in range(rng.choice([1, 2])) for turn in rng.choice(single)[:2]]
            p = p._replace(context=tuple(before))
        out.append(p)
    return out


def blank_sources(examples: list[Example], share: float, rng: random.Random) -> list[Example]:
    """`examples` with the source of about `share` of them emptied (one EOS, as an empty message
    reads): a model trained so also learns p(reply | no message), which guided decoding sets
    against p(reply | message) (`chatbot.decoding`)."""
    if not share:
        return examples
    return [([EOS], rep) if rng.random() < share else (src, rep) for src, rep in examples]


class Batch(NamedTuple):
    src: torch.Tensor  # (B, S) right-padded
    src_lengths: torch.Tensor  # (B,)
    tgt_in: torch.Tensor  # (B, T) BOS + reply
    tgt_out: torch.Tensor  # (B, T) reply + EOS, padded with PAD

    def to(self, device) -> Batch:
        return Batch(*(t.to(device, non_blocking=True) for t in self))

    @property
    def target_tokens(self) -> int:
        return int((self.tgt_out != PAD).sum())


def collate(examples: list[Example]) -> Batch:
    """Examples as tensors: the sources right-padded, the decoder's inputs (BOS, then the reply
    but its last piece) and its targets (the reply and its EOS)."""
    src, lengths = pad_right([s for s, _ in examples])
    tgt_in, _ = pad_right([[BOS] + r[:-1] for _, r in examples])
    tgt_out, _ = pad_right([r for _, r in examples])
    return Batch(src, lengths, tgt_in, tgt_out)


def length_batches(examples: list[Example], max_tokens: int, order: list[int] | None = None) -> list[list[int]]:
    """Examples sorted by reply length in steps of `REPLY_BUCKET`, then by source length (stable,
    so `order` breaks ties), cut into batches whose padded size, B * (longest source + longest
    reply), stays within `max_tokens`. Few distinct source lengths per batch keep the encoder
    to a few LSTM calls; the reply buckets keep the decoder's padding small."""
    order = list(range(len(examples))) if order is None else order
    order = sorted(order, key=lambda i: (len(examples[i][1]) // REPLY_BUCKET, len(examples[i][0])))
    batches, current, max_src, max_tgt = [], [], 0, 0
    for i in order:
        s, r = len(examples[i][0]), len(examples[i][1])
        new_src, new_tgt = max(max_src, s), max(max_tgt, r)
        if current and (len(current) + 1) * (new_src + new_tgt) > max_tokens:
            batches.append(current)
            current, new_src, new_tgt = [], s, r
        current.append(i)
        max_src, max_tgt = new_src, new_tgt
    if current:
        batches.append(current)
    return batches


def bucketed_batches(
    examples: list[Example], max_tokens: int, seed: int, epoch: int, rank: int = 0, world: int = 1
) -> list[list[int]]:
    """Index lists of similar-length examples, each batch's padded size at most `max_tokens`
    (source plus reply), in a shuffled order. With `world` processes, each rank gets its own
    equal share of the same batches."""
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(examples)))
    rng.shuffle(order)  # random tie-break among equal lengths
    batches = length_batches(examples, max_tokens, order)
    rng.shuffle(batches)
    usable = len(batches) - len(batches) % world
    return batches[rank:usable:world]


def shuffled_batches(examples: list[Example], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Plain shuffled fixed-size batches: the unbucketed baseline that benchmarks compare against."""
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(examples)))
    rng.shuffle(order)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
