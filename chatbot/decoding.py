"""Turning the model's next-token distributions into replies: one loop for every strategy.

Encode the messages once, then step the decoder, apply the shared rules (no unknown token,
minimum length, repetition penalty, n-gram blocking), let the strategy (`chatbot.strategies`)
pick tokens, and reorder the decoder state by the rows it kept. Rows are (message, hypothesis)
pairs, so a batch of messages and a beam are the same tensor work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from chatbot.consensus import agreement, normalise
from chatbot.engine import as_engine
from chatbot.model import pad_right
from chatbot.settings import (
    STRATEGIES,
    BeamSettings,
    GreedySettings,
    SampleSettings,
    Settings,
    settings_from,
)  # re-exported:
from chatbot.strategies import (
    NEG_INF,
    Beam,
    make_strategy,
    sample_from,
    truncate_distribution,
)  # the decoding API in one place
from chatbot.tokenizer import BOS, EOS, PAD, UNK, Tokenizer, keep_end

TOP_ALTERNATIVES = 5  # alternatives kept per reply token, for the "inside the model" view

__all__ = [
    "STRATEGIES",
    "Beam",
    "BeamSettings",
    "GreedySettings",
    "SampleSettings",
    "Settings",
    "Reply",
    "Progress",
    "decode",
    "prepare",
    "reply",
    "sample_from",
    "settings_from",
    "truncate_distribution",
]


# --- what a reply carries ---------------------------------------------------------------------


@dataclass
class Reply:
    text: str
    tokens: list[int]  # reply piece ids, end-of-sequence excluded
    token_logprobs: list[float]  # log-probability of each chosen piece (and of EOS, last, when it ended)
    score: float  # sum of log-probabilities; beam search: divided by the length penalty, then mixed with the
    # message's gain (rerank r: (1 - r) score + r sum(gains)), the score its candidates are ranked by
    attention: list[list[float]]  # (reply pieces + EOS) x (message pieces)
    source_tokens: list[int]
    settings: dict  # the strategy and every setting that produced the reply
    seconds: float = 0.0
    alternatives: Sequence[list[tuple[int, float]]] = field(
        default_factory=list
    )  # top pieces per step (`Alternatives`)
    finished: bool = True  # False when the reply hit the max length
    truncated: bool = False  # the message was longer than the model reads: it read the end
    gains: list[float] | None = None  # per piece: log p(piece | message) - log p(piece | no message), when measured
    agreement: float | None = None  # consensus sampling: the reply's mean unigram F1 with the model's other replies
    candidates: list[tuple[str, float]] | None = None  # consensus sampling: each candidate, its agreement; best first


# --- the loop -------------------------------------------------------------------------------


def block_ngrams(logp: torch.Tensor, history: torch.Tensor, n: int, source: torch.Tensor | None) -> None:
    """Set to -inf, in place in logp (R, V), every token that would complete an n-gram already in
    `history` (R, t) or `source` (R, S)."""
    t = history.size(1)
    if n < 1 or t < n - 1:
        return
    prefix = history[:, t - (n - 1) :].unsqueeze(1)  # (R, 1, n-1)
    for seq in (history, source):
        if seq is None or seq.size(1) < n:
            continue
        windows = seq.unfold(1, n, 1)  # (R, W, n)
        match = (windows[:, :, : n - 1] == prefix).all(-1)  # (R, W)
        # the last token of each matching window gets min(its value, -inf); the others min(it, +inf)
        logp.scatter_reduce_(1, windows[:, :, n - 1], torch.where(match, NEG_INF, float("inf")), "amin")


def banned_continuations(history: list[int], n: int, source: list[int] | None) -> list[int]:
    """`block_ngrams` for one row, on Python lists: the tokens that would complete an n-gram
    already in `history` or `source`. For a single message (the chat's case) a scan of a few dozen
    ints costs a fraction of the ten small tensor ops the batched form takes."""
    if n < 1 or len(history) < n - 1:
        return []
    prefix = history[len(history) - (n - 1) :]
    return [
        seq[i + n - 1]
        for seq in (history, source or [])
        for i in range(len(seq) - n + 1)
        if seq[i : i + n - 1] == prefix
    ]


def apply_rules(
    logp: torch.Tensor,
    settings: Settings,
    history: torch.Tensor,
    source: torch.Tensor,
    step: int,
    one_row: tuple[list[int], list[int]] | None = None,
    banned: torch.Tensor | None = None,
) -> torch.Tensor:
    """The shared rules on log-probabilities (R, V), which it may change in place; history
    (R, step) holds the reply so far. `one_row` (reply so far, message) as lists, when there is a
    single row, lets n-gram blocking skip the tensor work. `banned`: piece ids never written
    (default padding, unknown and start: ids 0, 1, 2)."""
    if banned is None:
        logp[:, PAD : BOS + 1] = NEG_INF
    else:
        logp.index_fill_(1, banned, NEG_INF)
    if step < settings.min_length:
        logp[:, EOS] = NEG_INF
    if settings.repetition_penalty != 1.0 and step:
        seen = torch.zeros_like(logp, dtype=torch.bool).scatter_(1, history, True)
        seen[:, EOS] = False
        logp = torch.where(seen, logp * settings.repetition_penalty, logp).log_softmax(-1)
    if settings.no_repeat_ngram and one_row is not None:
        banned = banned_continuations(
            one_row[0], settings.no_repeat_ngram, one_row[1] if settings.block_source_ngrams else None
        )
        if banned:
            logp[0, banned] = NEG_INF
    elif settings.no_repeat_ngram:
        block_ngrams(logp, history, settings.no_repeat_ngram, source if settings.block_source_ngrams else None)
    return logp


def only_eos(logp: torch.Tensor) -> torch.Tensor:
    forced = torch.full_like(logp, NEG_INF)
    forced[:, EOS] = 0.0
    return forced


@dataclass
class Progress:
    """One step of a reply in the making, for streaming: the best hypothesis of each message."""

    step: int
    tokens: list[list[int]]


class Alternatives(Sequence):
    """A reply's top pieces at each step, (piece id, log-probability) best first, ranked when first
    read. Greedy decoding and sampling rank nothing to choose a token, and ranking inside the step
    cost more than ranking all steps at the end: the reply is ready without it, and the chat reads
    the alternatives only after showing the reply. Until then it holds the reply's distributions
    (one row of the vocabulary a step); replies to a batch of messages are ranked at once instead."""

    def __init__(self, logps: torch.Tensor):
        self.logps, self.ranked = logps, None  # (steps, V)

    def _rank(self) -> list[list[tuple[int, float]]]:
        if self.ranked is None:
            values, ids = self.logps.topk(min(TOP_ALTERNATIVES, self.logps.size(-1)), dim=-1)
            self.ranked, self.logps = [list(zip(i, v)) for i, v in zip(ids.tolist(), values.tolist())], None
        return self.ranked

    def __getitem__(self, index):
        return self._rank()[index]

    def __len__(self) -> int:
        return len(self.ranked) if self.ranked is not None else self.logps.size(0)

    def __eq__(self, other) -> bool:
        return list(self) == list(other)

    def __repr__(self) -> str:
        return repr(self._rank())


class Trace:
    """What every step chose, with back-pointers: at step t, row r took token tokens[t][r] after
    row parents[t][r] of the step before (itself when parents[t] is None). Beam search reorders
    only the token history the rules read; a hypothesis is read back by following its pointers."""

    def __init__(self, rows: int, device, history: bool = True):
        """`history` False: the loop keeps each row's reply itself (one message, in a list)."""
        self.rows, self.keep_history = rows, history
        self.history = torch.zeros((rows, 0), dtype=torch.long, device=device)  # (R, t) each row's reply so far
        self.parents, self.tokens, self.logps = [], [], []  # per step: (R,) or None, (R,), (R,)
        self.attention, self.alt_ids, self.alt_logps = [], [], []  # per step, by parent row: (R, S), (R, A), (R, A)
        self.unranked = []  # per step (R, V): log-probabilities, stacked by `finish`; alternatives ranked when read
        self.gains = []  # per step (R,): how much the message raised the chosen piece's log-probability

    def extend(self, chosen, logp, weights, top, rows=None, gain=None) -> None:
        """Row i continues row rows[i] (row i itself when rows is None) with token chosen[i]; the
        step's outputs (logp, weights, top) are indexed by parent row. Without `top` (greedy and
        sampling rank nothing) the alternatives are ranked after the reply, when first read
        (`Alternatives`)."""
        if self.keep_history:
            history = self.history if rows is None else self.history[rows]
            self.history = torch.cat([history, chosen.unsqueeze(1)], dim=1)
        if gain is not None:  # (R, V) by parent row, like logp
            self.gains.append(gain.gather(1, chosen.unsqueeze(1)).squeeze(1) if rows is None else gain[rows, chosen])
        self.parents.append(rows)
        self.tokens.append(chosen)
        self.attention.append(weights)
        if top is None:  # rows is None too: read the chosen tokens' log-probabilities at the end as well
            self.unranked.append(logp)
            return
        self.logps.append(logp.gather(1, chosen.unsqueeze(1)).squeeze(1) if rows is None else logp[rows, chosen])
        wide = top.indices.size(1) > TOP_ALTERNATIVES  # beam search ranks more than it shows
        self.alt_ids.append(top.indices[:, :TOP_ALTERNATIVES] if wide else top.indices)
        self.alt_logps.append(top.values[:, :TOP_ALTERNATIVES] if wide else top.values)

    def keep_rows(self, rows: list[int]) -> None:
        """Keep these rows only, in this order: consensus sampling's chosen candidates (sampled
        rows never move, so each row's steps are its own)."""
        index = torch.tensor(rows, dtype=torch.long, device=self.history.device)
        self.rows, self.history = len(rows), self.history[index]
        for name in ("tokens", "attention", "logps", "alt_ids", "alt_logps", "unranked", "gains"):
            setattr(self, name, [step[index] for step in getattr(self, name)])

    def finish(self) -> None:
        """Stack the steps, once, for reading hypotheses back: pointers, tokens and their
        log-probabilities as Python lists (every hypothesis walks them), attention and alternatives
        as tensors (only the rows of the hypotheses returned are ever read)."""
        identity = list(range(self.rows))
        self.parents = [identity if p is None else p.tolist() for p in self.parents]
        tokens = torch.stack(self.tokens)  # (T, R)
        self.attention = torch.stack(self.attention).float()  # (T, R, S)
        if self.unranked:  # greedy or sampling: no row ever moved
            logps = torch.stack(self.unranked)  # (T, R, V)
            self.logps = logps.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).tolist()
            if self.rows == 1:  # one message: its alternatives are ranked when read (`Alternatives`)
                self.unranked = logps
            else:  # a batch: ranked now in one call, rather than every row's distributions kept alive
                self.alt_logps, self.alt_ids = logps.topk(min(TOP_ALTERNATIVES, logps.size(-1)), dim=-1)  # (T, R, A)
        else:
            self.logps = torch.stack(self.logps).tolist()
            self.alt_ids, self.alt_logps = torch.stack(self.alt_ids), torch.stack(self.alt_logps)  # (T, R, A)
        self.tokens = tokens.tolist()
        self.gains = torch.stack(self.gains).tolist() if self.gains else None

    def hypothesis(self, row: int, last_step: int, length: int, finished: bool, score: float | None = None) -> dict:
        """The reply held by `row` after step `last_step`: `length` tokens, plus the EOS step when it
        finished; score defaults to the sum of its log-probabilities."""
        keep = length + 1 if finished else length
        if isinstance(self.unranked, torch.Tensor):  # one message, greedy or sampling: the row never moved
            rows = [row] * (last_step + 1)
            attention = self.attention[:keep, row].tolist()
            alternatives = Alternatives(self.unranked[:keep, row])
        else:
            rows, parents = [], []  # per step, from the last back to the first
            for t in range(last_step, -1, -1):
                rows.append(row)
                row = self.parents[t][row]
                parents.append(row)
            rows.reverse()
            parents.reverse()
            steps = list(range(keep))
            attention = self.attention[steps, parents[:keep]].tolist()
            ids, values = self.alt_ids[steps, parents[:keep]].tolist(), self.alt_logps[steps, parents[:keep]].tolist()
            alternatives = [list(zip(i, v)) for i, v in zip(ids, values)]
        logprobs = [self.logps[t][rows[t]] for t in range(keep)]
        return {
            "tokens": [self.tokens[t][rows[t]] for t in range(length)],
            "logprobs": logprobs,
            "attention": attention,
            "alternatives": alternatives,
            "score": sum(logprobs) if score is None else score,
            "finished": finished,
            "gains": [self.gains[t][rows[t]] for t in range(keep)] if self.gains else None,
        }


def decode(
    engine,
    sources: list[list[int]],
    settings: Settings,
    on_step: Callable[[Progress], None] | None = None,
    banned: list[int] | None = None,
    gains: bool = False,
    words: Callable[[list[int]], list[str]] | None = None,
) -> list[list[dict]]:
    """Token-level decoding of a batch of messages (piece ids) by an engine (`chatbot.engine`;
    a model runs as its flat engine); returns per message its hypotheses (dicts with tokens,
    logprobs, attention, alternatives, score, finished, gains), best first. `banned`: pieces
    never written (default padding, unknown and start). `gains`: measure how much the message
    raised each chosen piece's log-probability, as guidance does anyway. `words`: a reply's
    words, for consensus sampling's agreement (default: its piece ids).

    Guidance (`settings.guidance` w, for a model that learned replies to no message): each row
    runs beside a twin that reads an empty message, in the same batch, and the next-piece scores
    are log p(. | message) + w (log p(. | message) - log p(. | no message)), renormalised: pieces
    the message makes likelier gain, pieces likely whatever was said (the stock replies) lose.
    Beam search's rerank r then orders its candidates by (1 - r) score + r (log p(reply | message)
    - log p(reply | no message)): beam search proposes likely replies, and what the message adds
    picks among them (maximum mutual information, Li et al. 2016), with the same twin rows.

    Consensus sampling (`candidates` > 1) runs every message's candidate and evidence rows in
    one batch and answers with the candidate the evidence agrees with most (`chatbot.consensus`).

    Runs with tensor-subclass dispatch off: before an op, torch asks every argument that is not a
    plain tensor whether it overrides torch functions, and asking the int8 layers' packed weights
    (C++ objects that lack the attribute) costs more than a small product itself. To the ops, the
    model's parameters are plain tensors either way.
    """
    with torch.inference_mode(), torch._C.DisableTorchFunctionSubclass():
        words = words or (lambda ids: [str(i) for i in ids])
        return _decode(as_engine(engine), sources, settings, on_step, banned or [PAD, UNK, BOS], gains, words)


def guidance_of(engine, settings: Settings) -> float:
    """The guidance weight a reply runs with: the setting's, if the model learned replies to no
    message (`ModelConfig.unconditional`), else 0."""
    return settings.guidance if engine.cfg.guides else 0.0


def rerank_of(engine, settings: Settings) -> float:
    """How much beam search's candidates are ranked by the message's gain (mutual information:
    log p(reply | message) - log p(reply | no message)) rather than by their score: the setting's,
    for beam search with a model that learned replies to no message, else 0."""
    return getattr(settings, "rerank", 0.0) if engine.cfg.guides else 0.0


def ranking_score(score: float, gain: float, rerank: float) -> float:
    """What beam search's candidates are ranked by: (1 - rerank) times their score plus rerank times
    the message's gain, log p(reply | message) - log p(reply | no message)."""
    return (1 - rerank) * score + rerank * gain


def encode_rows(engine, sources: list[list[int]], rows_of: torch.Tensor, twins: bool):
    """Encode each message once (with `twins`, an empty message too: a lone EOS), then lay the
    encoder's memory and the decoder's first state out by row, row i reading message rows_of[i]
    and, with twins, rows R..2R-1 reading no message, each beside its row. Returns the padded
    messages (B (+1), S), the memory and the state."""
    B, R = len(sources), len(rows_of)
    src, lengths = pad_right(sources + [[EOS]] * twins, engine.device)  # (B (+1), S), (B (+1),)
    memory, state = engine.encode(src, lengths)
    if R > B or twins:  # else each message is its own row already
        index = torch.cat([rows_of, torch.full((R,), B, device=rows_of.device)]) if twins else rows_of  # (R or 2R,)
        memory = memory.index_select(index)
        state = tuple(s.index_select(1, index) for s in state)
    return src, memory, state


def _decode(engine, sources: list[list[int]], settings: Settings, on_step, banned, gains, words) -> list[list[dict]]:
    device = engine.device
    B = len(sources)
    rerank = rerank_of(engine, settings)
    strategy = make_strategy(settings, B, device, rerank)
    beam = isinstance(strategy, Beam)
    K = strategy.rows_per_message
    R = B * K
    w = guidance_of(engine, settings)
    banned = None if banned == [PAD, UNK, BOS] else torch.tensor(banned, dtype=torch.long, device=device)
    gains = gains and getattr(engine.cfg, "unconditional", False)
    consensus = K > 1 and not beam  # candidates judged once they end: their gains measured then, for one row each
    twins = w > 0 or bool(rerank) or (gains and not consensus)  # rows R..2R-1: no message
    rows_of = torch.arange(B, device=device).repeat_interleave(K)  # (R,) the message of each row
    src, memory, state = encode_rows(engine, sources, rows_of, twins)
    source = src.index_select(0, rows_of) if K > 1 else src[:B]  # (R, S) each row's message
    feed = engine.initial_feed(2 * R if twins else R)
    tokens = torch.full((2 * R if twins else R,), BOS, dtype=torch.long, device=device)
    one_row = ([], sources[0]) if R == 1 else None  # the only row's reply so far and its message, as lists
    trace = Trace(R, device, history=one_row is None or settings.repetition_penalty != 1.0)
    ended, any_ended = torch.zeros(R, dtype=torch.bool, device=device), False  # (R,) rows past their EOS
    gain = None
    for step in range(settings.max_length + 1):
        logits, state, weights, feed = engine.step(tokens, state, memory, feed)  # (R or 2R, V), state, (.., S), (.., A)
        logp = torch.log_softmax(logits.float(), dim=-1)
        if twins:
            logp, weights, gain = logp[:R], weights[:R], logp[:R] - logp[R:]  # (R, V), (R, S), (R, V)
            if w:
                logp = torch.log_softmax(logp + w * gain, dim=-1)
        logp = apply_rules(logp, settings, trace.history, source, step, one_row, banned)
        if step == settings.max_length:  # the last position can only end the reply
            logp = only_eos(logp)
        if any_ended:  # a finished reply can only go on ending
            logp = torch.where(ended.unsqueeze(1), only_eos(logp), logp)
        if beam:  # its candidates, and the alternatives
            top = logp.topk(min(max(TOP_ALTERNATIVES, K), logp.size(-1)), dim=-1)
        else:  # consensus: the alternatives now, rather than every row's distributions kept to the end
            top = logp.topk(min(TOP_ALTERNATIVES, logp.size(-1)), dim=-1) if consensus else None
        tokens, rows = strategy.select(logp, step, top)  # (R,), (R,) or None: each row goes on
        if rows is not None:
            both = torch.cat([rows, rows + R]) if twins else rows  # a twin follows its row
            state = tuple(s.index_select(1, both) for s in state)
            feed = feed.index_select(0, both)
        trace.extend(tokens, logp, weights, top, rows, gain)
        if beam:
            strategy.record_finished(step, length=step)
            done = bool(strategy.done.all())
        elif one_row:  # one message ends with its only row (the chat's case: one read, no bookkeeping)
            one_row[0].append(tokens.item())
            done = one_row[0][-1] == EOS
        else:
            ended = ended | (tokens == EOS)
            n_ended = int(ended.sum())  # one read of the device per step
            any_ended, done = n_ended > 0, n_ended == R
        if on_step:  # consensus: no reply to show until its candidates end
            best = [one_row[0]] if one_row else [[] if consensus else trace.history[b * K].tolist() for b in range(B)]
            on_step(Progress(step, [_strip(t) for t in best]))
        if done:
            break
        if twins:
            tokens = tokens.repeat(2)  # the twins read the same reply so far
    if consensus:
        chosen, ranked = choose_by_consensus(trace.history.tolist(), B, settings.candidates, words)
        trace.keep_rows(chosen)
    trace.finish()
    if beam:
        ranked = []
        for finished in strategy.finished:
            best = sorted(finished, key=lambda f: -f[0])[: settings.n_best if not rerank else K]
            hyps = [trace.hypothesis(row, step, step, step < settings.max_length, score) for score, step, row in best]
            if rerank:  # the most specific of the likely: what the message adds decides among them
                for h in hyps:
                    h["score"] = ranking_score(h["score"], sum(h["gains"]), rerank)
                hyps = sorted(hyps, key=lambda h: -h["score"])[: settings.n_best]
            ranked.append(hyps)
        return ranked
    results = []
    for r in range(B):
        row = [t[r] for t in trace.tokens]
        n = _reply_length(row)
        results.append(
            [trace.hypothesis(r, len(row) - 1, n, n < settings.max_length)]
        )  # an EOS at max_length was forced: cut
    if consensus:
        for (h,), candidates in zip(results, ranked):
            h["agreement"], h["candidates"] = candidates[0]["agreement"], candidates
        if gains:
            measured = forced_gains(engine, sources, [h["tokens"] + [EOS] * h["finished"] for (h,) in results])
            for (h,), g in zip(results, measured):
                h["gains"] = g
    return results


def choose_by_consensus(
    replies: list[list[int]], messages: int, candidates: int, words: Callable[[list[int]], list[str]]
) -> tuple[list[int], list[list[dict]]]:
    """For each message, the row of its candidate the evidence rows agree with most, and its
    candidates ranked ({"tokens", "agreement"}, the chosen first): `replies` holds every row's
    pieces, each message's candidates first, then its evidence."""
    per_message = len(replies) // messages
    chosen, ranked = [], []
    for b in range(messages):
        pieces = [_strip(r) for r in replies[b * per_message : (b + 1) * per_message]]
        rows = [words(p) for p in pieces]
        agree = agreement(rows[:candidates], rows[candidates:])
        order = sorted(range(candidates), key=lambda i: -agree[i])  # stable: of equals, the first drawn
        chosen.append(b * per_message + order[0])
        ranked.append([{"tokens": pieces[i], "agreement": agree[i]} for i in order])
    return chosen, ranked


def forced_gains(engine, sources: list[list[int]], replies: list[list[int]]) -> list[list[float]]:
    """How much each message raised each piece of its reply: log p(piece | message) - log p(piece
    | no message), the model reading the given pieces (teacher forcing); what the twin rows
    measure while decoding, for replies chosen after it."""
    device, B = engine.device, len(sources)
    _, memory, state = encode_rows(engine, sources, torch.arange(B, device=device), twins=True)
    feed = engine.initial_feed(2 * B)
    T = max(len(r) for r in replies)
    forced = torch.tensor([r + [EOS] * (T - len(r)) for r in replies], dtype=torch.long, device=device)  # (B, T)
    tokens = torch.full((2 * B,), BOS, dtype=torch.long, device=device)
    steps = []
    for t in range(T):
        logits, state, _, feed = engine.step(tokens, state, memory, feed)
        logp = torch.log_softmax(logits.float(), dim=-1).gather(1, forced[:, t].repeat(2).unsqueeze(1)).squeeze(1)
        steps.append(logp[:B] - logp[B:])
        tokens = forced[:, t].repeat(2)
    measured = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in replies]  # (B, T)
    return [g[: len(r)] for g, r in zip(measured, replies)]


def cut_to_characters(hypothesis: dict, n: int) -> None:
    """Shorten an unfinished hypothesis to its first `n` pieces (those that make whole characters)."""
    for key in ("tokens", "logprobs", "attention", "alternatives"):
        hypothesis[key] = hypothesis[key][:n]
    if hypothesis["gains"] is not None:
        hypothesis["gains"] = hypothesis["gains"][:n]


def _reply_length(tokens: list[int]) -> int:
    return tokens.index(EOS) if EOS in tokens else len(tokens)


def _strip(tokens: list[int]) -> list[int]:
    return tokens[: _reply_length(tokens)]


# --- text in, replies out -------------------------------------------------------------------


def prepare(
    tokenizer: Tokenizer, model, text: str, context: Sequence[str] = (), mine: Sequence[bool] | None = None
) -> tuple[list[int], bool]:
    """The piece ids a model reads for a message (with its conversation's last turns, for a model
    that reads them: `Tokenizer.dialog`), cut to its source length keeping the end; True if the
    message itself was cut."""
    cfg = model.cfg
    ids = tokenizer.dialog(text, context, cfg.context_turns, mine)
    marked = cfg.context_turns > 0 and tokenizer.speakers is not None  # the message's own piece: <you>
    return keep_end(ids, cfg.max_source_tokens), len(tokenizer.encode(text)) + marked > cfg.max_source_tokens


def reply(
    model,
    tokenizer: Tokenizer,
    messages: list[str],
    settings: Settings,
    on_text: Callable[[int, str], None] | None = None,
    contexts: Sequence[Sequence[str]] | None = None,
    gains: bool = False,
    mine: Sequence[Sequence[bool]] | None = None,
) -> list[list[Reply]]:
    """Replies to each message (n-best lists; one reply unless beam search asks for more), by
    `model`: an engine (`chatbot.engine`), or a model, which runs as its flat engine.

    `contexts`: for each message, the turns of its conversation before it, oldest first, and
    `mine`, for each of those turns, whether the model said it (default: turns alternate).
    `on_text(message_index, text_so_far)` streams each reply as it grows. `gains`: measure how
    much each message raised each reply piece's probability (`Reply.gains`).
    """
    if not messages:
        return []
    start = time.perf_counter()
    engine = as_engine(model)
    contexts = contexts or [()] * len(messages)
    mine = mine or [None] * len(messages)
    prepared = [prepare(tokenizer, engine, m, c, s) for m, c, s in zip(messages, contexts, mine)]
    sources = [src for src, _ in prepared]

    def on_step(progress: Progress) -> None:
        for i, tokens in enumerate(progress.tokens):
            on_text(i, tokenizer.decode(tokenizer.complete(tokens)))  # whole characters only

    hypotheses = decode(
        engine, sources, settings, on_step if on_text else None, tokenizer.never_written(), gains,
        words=lambda ids: normalise(tokenizer.decode(ids)),
    )  # fmt: skip
    for h in (h for hyps in hypotheses for h in hyps if not h["finished"]):
        whole = len(tokenizer.complete(h["tokens"]))
        if whole < len(h["tokens"]):
            cut_to_characters(h, whole)
    seconds = time.perf_counter() - start
    applied = {**settings.to_dict(), "guidance": guidance_of(engine, settings)}  # what ran: 0 where the model can't
    if "rerank" in applied:
        applied["rerank"] = rerank_of(engine, settings)
    return [
        [
            Reply(
                text=tokenizer.decode(h["tokens"]),
                tokens=h["tokens"],
                token_logprobs=h["logprobs"],
                score=h["score"],
                attention=h["attention"],
                source_tokens=src,
                settings=applied,
                seconds=seconds / len(messages),
                alternatives=h["alternatives"],
                finished=h["finished"],
                truncated=truncated,
                gains=h["gains"],
                agreement=h.get("agreement"),
                candidates=[(tokenizer.decode(c["tokens"]), c["agreement"]) for c in h["candidates"]]
                if "candidates" in h
                else None,
            )
            for h in hyps
        ]
        for (src, truncated), hyps in zip(prepared, hypotheses)
    ]
