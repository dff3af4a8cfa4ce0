"""The decoding loop, one for every strategy: encode the messages once, then at each step run the
decoder, apply the rules (`chatbot.decoding.rules`), let the strategy pick
(`chatbot.decoding.strategies`), and reorder the decoder's state by the rows it kept.

Rows are (message, hypothesis) pairs, so a batch of messages and a beam are the same tensor work.
Where the message's gain is measured (guidance, beam search's rerank, the chat's inside view),
rows R..2R-1 read no message (a lone EOS), each beside its row: twins. Rows that never move
(greedy, sampling) leave the decoder's batch once they have ended, so the longest of many
sampled replies is not paid for by every row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from chatbot.decoding.rules import Context, Rule, only_eos
from chatbot.decoding.strategies import Choice, Independent, Strategy
from chatbot.decoding.trace import Hypothesis, Trace
from chatbot.model import pad_right
from chatbot.tokenizer import BOS, EOS

LEAVE_AT = 0.75  # ended rows leave the batch once the rows running are this share of those in it or fewer


@dataclass
class Step:
    """What one step computed, as observers get it. Tensors are indexed by the row that computed
    them (before the strategy reordered the rows)."""

    step: int
    logp: torch.Tensor  # (R, V) log-probabilities after the rules: what the strategy chose from
    attention: torch.Tensor  # (R, S)
    choice: Choice  # the pieces chosen, the rows they continue, the strategy's scores
    context: Context  # what the rules read (and what a forced piece overrode)
    shown: Callable[[], list[list[int]]]  # each message's reply so far, as it is streamed


Observer = Callable[[Step], None]


def encode_rows(engine, sources: list[list[int]], rows_of: torch.Tensor, twins: bool, share: bool = False):
    """Encode each message once (with `twins`, an empty message too: a lone EOS), then lay the
    encoder's memory and the decoder's first state out by row, row i reading message rows_of[i]
    and, with twins, rows R..2R-1 reading no message, each beside its row. With `share`, one
    message's rows all read its one memory (an engine that `shares_memory`). Returns the padded
    messages (B (+1), S), the memory and the state."""
    B, R = len(sources), len(rows_of)
    src, lengths = pad_right(sources + [[EOS]] * twins, engine.device)  # (B (+1), S), (B (+1),)
    memory, state = engine.encode(src, lengths)
    if R > B or twins:  # else each message is its own row already
        index = torch.cat([rows_of, torch.full((R,), B, device=rows_of.device)]) if twins else rows_of  # (R or 2R,)
        memory = memory if share else memory.index_select(index)
        state = tuple(s.index_select(1, index) for s in state)
    return src, memory, state


def teacher_forced(engine, sources: list[list[int]], targets: list[list[int]], twins: bool = False):
    """Step the engine through given replies (teacher forcing), each message with its target,
    EOS-padded to the longest: yields, per position t, the logits (B (or 2B, with `twins`), V),
    the attentional states (B (or 2B), A) that computed them, and the pieces targets[:, t] (B,)."""
    device, B = engine.device, len(sources)
    _, memory, state = encode_rows(engine, sources, torch.arange(B, device=device), twins)
    T = max(len(t) for t in targets)
    forced = torch.tensor([t + [EOS] * (T - len(t)) for t in targets], dtype=torch.long, device=device)  # (B, T)
    tokens = torch.full((2 * B if twins else B,), BOS, dtype=torch.long, device=device)
    feed = engine.initial_feed(len(tokens))
    for t in range(T):
        logits, state, _, feed = engine.step(tokens, state, memory, feed)
        yield logits, feed, forced[:, t]
        tokens = forced[:, t].repeat(2) if twins else forced[:, t]


def run(
    engine,
    sources: list[list[int]],
    strategy: Strategy,
    rules: Sequence[Rule],
    max_length: int,
    observers: Sequence[Observer] = (),
    gains: bool = False,
) -> list[list[Hypothesis]]:
    """Decode a batch of messages (piece ids): each message's hypotheses, best first."""
    device, B, K = engine.device, len(sources), strategy.rows_per_message
    R = B * K
    twins = strategy.wants_gains(gains) or any(rule.needs_gain for rule in rules)
    rows_of = torch.arange(B, device=device).repeat_interleave(K)  # (R,) the message of each row
    shared = B == 1 and not twins and getattr(engine, "shares_memory", False)  # all rows read one memory
    src, memory, state = encode_rows(engine, sources, rows_of, twins, shared)
    source = src.index_select(0, rows_of) if K > 1 else src[:B]  # (R, S) each row's message
    feed = engine.initial_feed(2 * R if twins else R)
    tokens = torch.full((2 * R if twins else R,), BOS, dtype=torch.long, device=device)
    trace = Trace(R, device, strategy.rank_each_step, strategy.shown_rows)
    gain = None
    normalised = engine.cfg.copy_attention  # a copying model's step gives log-probabilities already
    # rows that never move and have ended leave the decoder's batch (their pieces are EOS from then on)
    compact = R > 1 and not twins and isinstance(strategy, Independent)
    live = None  # (n,) the rows the decoder still runs, once some have left; None: all of them
    left = None  # (R, V) the log-probabilities of a row that left: EOS certain
    for step in range(max_length + 1):
        logits, state, weights, feed = engine.step(tokens, state, memory, feed)  # (R or 2R, V), state, (.., S), (.., A)
        logp = logits.float() if normalised else torch.log_softmax(logits.float(), dim=-1)
        query = feed[:R]
        if twins:
            logp, weights, gain = logp[:R], weights[:R], logp[:R] - logp[R:]  # (R, V), (R, S), (R, V)
        elif live is not None:  # the rows that left: certain of EOS, attending to nothing
            logp, weights, query = (
                left.index_copy(0, live, logp),
                weights.new_zeros((R, *weights.shape[1:])).index_copy_(0, live, weights),
                query.new_zeros((R, *query.shape[1:])).index_copy_(0, live, query),
            )
        context = Context(step, source, trace.history, trace.reply, sources[0] if R == 1 else None, gain, query=query)
        for rule in rules:
            logp = rule(logp, context)
        choice = strategy.select(logp, step)
        if choice.rows is not None:
            both = torch.cat([choice.rows, choice.rows + R]) if twins else choice.rows  # a twin follows its row
            state = tuple(s.index_select(1, both) for s in state)
            feed = feed.index_select(0, both)
        trace.extend(choice.tokens, logp, weights, choice.rows, context.gain, choice.top)
        for observe in observers:
            observe(Step(step, logp, weights, choice, context, lambda: strategy.shown(trace)))
        if strategy.update_finished(step, trace):
            break
        tokens = choice.tokens.repeat(2) if twins else choice.tokens  # the twins read the same reply so far
        if compact and strategy.any_ended:
            running = (~strategy.ended).nonzero().squeeze(1)  # (n,)
            if len(running) <= LEAVE_AT * (R if live is None else len(live)):
                keep = running if live is None else torch.searchsorted(live, running)
                state, feed = tuple(s.index_select(1, keep) for s in state), feed.index_select(0, keep)
                if left is None:
                    left = only_eos(torch.zeros((R, logp.size(-1)), device=device))
                memory, live = memory if shared else memory.index_select(keep), running
            tokens = tokens[live] if live is not None else tokens
    return strategy.final(trace, step)
