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
    pairs: list[Pair], tokenizer: Tokenizer, max_source: int, max_reply: int | None = None
) -> list[Example]:
    """Sources keep their last `max_source` tokens (the end of a message matters most to the reply);
    replies keep their first `max_reply` and lose the EOS when cut, so the model never learns
    to stop mid-sentence. `max_reply=None` keeps whole replies (evaluation)."""
    sources = tokenizer.encode_batch([p.source for p in pairs])
    replies = tokenizer.encode_batch([p.reply for p in pairs])
    examples = []
    for src, rep in zip(sources, replies):
        src = keep_end(src, max_source)
        if max_reply is not None and len(rep) >= max_reply:
            rep = rep[:max_reply]
        else:
            rep = rep + [EOS]
        examples.append((src, rep))
    return examples


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
