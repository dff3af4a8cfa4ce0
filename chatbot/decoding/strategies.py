"""Decoding strategies: how each picks the next pieces, and owns its rows, its finished
hypotheses and its final choice (their settings are in `chatbot.settings`).

The loop (`chatbot.decoding.loop`) asks every strategy the same four things, after OpenNMT-py's
DecodeStrategy: `select` the next pieces from the step's log-probabilities (and the rows they
continue), `update_finished` (is it done?), `shown` (the reply so far, for streaming) and
`final` (the hypotheses, best first). Greedy takes the most likely piece, sampling draws from a
temperature-scaled, top-k / top-p truncated distribution, consensus sampling draws many and
answers with the one the model's own draws agree with, and beam search keeps the best prefixes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from chatbot.consensus import agreement, repeats
from chatbot.decoding.ranking import largest, most_likely
from chatbot.decoding.rules import NEG_INF
from chatbot.decoding.trace import TOP_ALTERNATIVES, Hypothesis, Trace
from chatbot.settings import BeamSettings, SampleSettings, Settings
from chatbot.tokenizer import EOS

NUCLEUS_SEARCH = 256  # tokens ranked before top-p falls back to sorting the vocabulary
EVIDENCE_PER_CANDIDATE = 1  # consensus sampling: replies drawn from the model to judge each candidate by
CONSENSUS_PAIRS = 0.5  # the weight of word pairs in consensus's agreement (`chatbot.consensus.agreement`)
REPETITION_LAST = True  # consensus ranks the candidates that repeat themselves after those that do not
ABRUPT_END = 0.05  # ... and those whose words ended where the model gave ending less than this (0: off)
REPEATS, ABRUPT = "repeats", "abrupt"  # why a candidate was ranked after the others


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's length penalty: a finished hypothesis's score is divided by it (alpha 0: by 1)."""
    return ((5 + length) / 6) ** alpha


def ranking_score(score: float, gain: float, rerank: float) -> float:
    """What beam search's candidates are ranked by: (1 - rerank) times their score plus rerank times
    the message's gain, log p(reply | message) - log p(reply | no message)."""
    return (1 - rerank) * score + rerank * gain


def rerank_of(engine, settings: Settings) -> float:
    """How much beam search's candidates are ranked by the message's gain (mutual information)
    rather than by their score: the setting's, for beam search with a model that learned replies
    to no message, else 0."""
    return getattr(settings, "rerank", 0.0) if engine.cfg.guides else 0.0


def reply_length(tokens: list[int]) -> int:
    return tokens.index(EOS) if EOS in tokens else len(tokens)


def strip(tokens: list[int]) -> list[int]:
    return tokens[: reply_length(tokens)]


@dataclass
class Choice:
    """What a strategy picked at a step."""

    tokens: torch.Tensor  # (R,) each row's next piece
    rows: torch.Tensor | None = None  # (R,) the row each new row continues; None: each its own
    top: object = None  # logp.topk, when the strategy ranked the pieces
    scores: torch.Tensor | None = None  # (R,) each new row's running score, where the strategy keeps one


# --- the strategies -------------------------------------------------------------------------


class Strategy:
    """Picks next pieces for `batch` messages, `rows_per_message` rows each."""

    rows_per_message = 1
    rank_each_step = False  # the trace ranks each step's alternatives as it goes (`Trace`)
    shown_rows = None  # the rows that can become replies, whose alternatives are kept (an index of R); None: all

    def __init__(self, settings: Settings, batch: int, device: torch.device):
        self.settings, self.batch, self.device = settings, batch, device

    def wants_gains(self, asked: bool) -> bool:
        """Whether the loop measures the message's gain on each piece while decoding (rows that read
        no message beside the real ones), `asked` saying whether the caller wants it."""
        return asked

    def select(self, logp: torch.Tensor, step: int) -> Choice:
        """logp (R, V), the rules applied -> the next pieces."""
        raise NotImplementedError

    def update_finished(self, step: int, trace: Trace) -> bool:
        """Note the hypotheses that ended at this step; True when every message is done."""
        raise NotImplementedError

    def shown(self, trace: Trace) -> list[list[int]]:
        """Each message's reply so far, as it is streamed."""
        raise NotImplementedError

    def final(self, trace: Trace, step: int) -> list[list[Hypothesis]]:
        """Each message's hypotheses, best first, after the last step."""
        raise NotImplementedError


class Independent(Strategy):
    """Rows that never move: each row's pieces are its own, from the first step to its end."""

    def __init__(self, settings, batch, device):
        super().__init__(settings, batch, device)
        self.ended, self.any_ended = None, False  # (R,) rows past their EOS

    def select(self, logp, step):
        if not self.any_ended:
            return Choice(self.choose(logp))
        # a finished reply can only go on ending (in place, the ended rows only: the loop's own tensor,
        # as the trace and the observers read it); the pieces are chosen for the running rows alone
        ended, running = self.ended.nonzero().squeeze(1), (~self.ended).nonzero().squeeze(1)
        logp.index_fill_(0, ended, NEG_INF)[ended, EOS] = 0.0
        tokens = torch.full(self.ended.shape, EOS, dtype=torch.long, device=logp.device)
        tokens[running] = self.choose(logp[running], running)
        return Choice(tokens)

    def choose(self, logp: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The next piece of each row of logp, which holds the rows `rows` (None: all)."""
        raise NotImplementedError

    def update_finished(self, step, trace):
        if trace.reply is not None:  # one message, one row (the chat's case): one read, no bookkeeping
            return trace.reply[-1] == EOS
        last = trace.tokens[-1] == EOS
        self.ended = last if self.ended is None else self.ended | last
        n_ended = int(self.ended.sum())  # one read of the device per step
        self.any_ended = n_ended > 0
        return n_ended == self.ended.numel()

    def shown(self, trace):
        return [strip(r) for r in trace.replies()]

    def final(self, trace, step):
        trace.finish()
        results = []
        for r in range(trace.rows):
            row = [t[r] for t in trace.tokens]
            n = reply_length(row)  # an EOS at max_length was forced: cut
            results.append([trace.hypothesis(r, len(row) - 1, n, n < self.settings.max_length)])
        return results


class Greedy(Independent):
    def choose(self, logp, rows=None):
        return most_likely(logp)


class Sampling(Independent):
    """Draws each row's piece from the settings' truncated distribution (temperature 0: the most
    likely piece), from a generator seeded by the settings (a fresh seed when none)."""

    def __init__(self, settings: SampleSettings, batch, device):
        super().__init__(settings, batch, device)
        self.generator = torch.Generator(device=device)
        if settings.seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(settings.seed)

    def choose(self, logp, rows=None):
        s = self.settings
        if s.temperature == 0:
            return most_likely(logp)
        return sample_from(logp / s.temperature, s.top_k, s.top_p, self.generator)


def sampled_rows(settings: SampleSettings) -> int:
    """Rows sampling runs per message: one, or the candidates and their evidence."""
    n = settings.candidates
    return n * (1 + EVIDENCE_PER_CANDIDATE) if n > 1 else 1


class ConsensusSampling(Sampling):
    """Each message has n candidate rows drawn with the settings, then `EVIDENCE_PER_CANDIDATE` n
    evidence rows drawn from the model's own distribution (temperature 1, nothing cut), which
    judge the candidates (`chatbot.consensus`): the one they agree with most answers."""

    rank_each_step = True  # many rows: rank each step's alternatives rather than keep every distribution

    def __init__(self, settings: SampleSettings, batch, device, words: Callable[[list[int]], list[str]]):
        super().__init__(settings, batch, device)
        self.words = words
        self.rows_per_message = sampled_rows(settings)
        one = torch.arange(self.rows_per_message, device=device) >= settings.candidates  # candidates first
        self.evidence = one.repeat(batch)  # (R,) bool
        self.candidates = ~self.evidence
        # the same rows as indices (for one message, slices: the rows are read in place, not copied)
        n = settings.candidates
        self.candidate_rows, self.evidence_rows = (
            (slice(0, n), slice(n, None))
            if batch == 1
            else (self.candidates.nonzero().squeeze(1), self.evidence.nonzero().squeeze(1))
        )
        self.shown_rows = self.candidate_rows

    def wants_gains(self, asked):
        return False  # measured on the chosen reply alone, once it is chosen: not on every row

    def choose(self, logp, rows=None):
        candidates, evidence = self.candidate_rows, self.evidence_rows
        if rows is not None:  # some rows ended: which of those still running are candidates
            among = self.candidates[rows]
            candidates, evidence = among.nonzero().squeeze(1), (~among).nonzero().squeeze(1)
        tokens = torch.empty(logp.size(0), dtype=torch.long, device=logp.device)
        tokens[candidates] = super().choose(logp[candidates])
        tokens[evidence] = sample_from(logp[evidence], 0, 1.0, self.generator)  # as the model says
        return tokens

    def update_finished(self, step, trace):
        """Done when every candidate has ended: evidence rows still going are read as far as they
        got (a long tail of temperature-1 samples would otherwise set every reply's wait)."""
        super().update_finished(step, trace)
        return bool(self.ended[self.candidates].all())

    def shown(self, trace):
        return [[] for _ in range(self.batch)]  # no reply to show until its candidates end

    def final(self, trace, step):
        logps = torch.stack(trace.logps).T.tolist() if ABRUPT_END else None  # (R, T), as the rules left them
        chosen, ranked = choose_by_consensus(trace.replies(), self.batch, self.settings.candidates, self.words, logps)
        trace.keep_rows(chosen)
        results = super().final(trace, step)
        for (h,), candidates in zip(results, ranked):
            h.agreement, h.candidates = candidates[0][1], candidates
        return results


def choose_by_consensus(
    replies: list[list[int]],
    messages: int,
    candidates: int,
    words: Callable[[list[int]], list[str]],
    logps: list[list[float]] | None = None,
) -> tuple[list[int], list[list[tuple[list[int], float, str]]]]:
    """For each message, the row of its candidate the evidence rows agree with most, and its
    candidates ranked ((pieces, agreement, flaw), the chosen first): `replies` holds every row's
    pieces, each message's candidates first, then its evidence. Candidates that repeat
    themselves (flaw `REPEATS`), and with `logps` (each row's log-probability of its piece at each
    step) those that stopped abruptly (`ABRUPT`: `ending_logprob`), are ranked after the others; a
    flawless one's flaw is ""."""
    per_message = len(replies) // messages
    floor = math.log(ABRUPT_END) if ABRUPT_END else -math.inf
    chosen, ranked = [], []
    for b in range(messages):
        first = b * per_message
        pieces = [strip(r) for r in replies[first : first + per_message]]
        rows = [words(p) for p in pieces]
        agree = agreement(rows[:candidates], rows[candidates:], CONSENSUS_PAIRS)
        repeated = [REPETITION_LAST and repeats(r) for r in rows[:candidates]]
        abrupt = [
            logps is not None and ending_logprob(pieces[i], logps[first + i], words, rows[i]) < floor
            for i in range(candidates)
        ]
        flaws = [REPEATS if r else ABRUPT if a else "" for r, a in zip(repeated, abrupt)]
        order = sorted(range(candidates), key=lambda i: (bool(flaws[i]), -agree[i]))  # of equals, the first drawn
        chosen.append(first + order[0])
        ranked.append([(pieces[i], agree[i], flaws[i]) for i in order])
    return chosen, ranked


def ending_logprob(
    pieces: list[int], logps: list[float], words: Callable[[list[int]], list[str]], full: list[str]
) -> float:
    """The log-probability the model gave the piece that ended a reply's words: the punctuation
    or end after its last word (0 when it ran out of length: the end forced there is certain). Low where a reply stopped
    mid-thought, after the frame its evidence shares ("My name is?", "My favorite color is."),
    which the agreement of words alone rewards: the frame agrees with every name that follows it.
    `full`: the reply's words, `words(pieces)`."""
    shortest, longest = 0, len(pieces)  # the shortest prefix that holds every word: its next piece ended them
    while shortest < longest:
        middle = (shortest + longest) // 2
        if words(pieces[:middle]) == full:
            longest = middle
        else:
            shortest = middle + 1
    return logps[shortest] if shortest < len(logps) else 0.0


def ranked_candidates(
    logits: torch.Tensor, top_k: int, top_p: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The tokens that top-k and top-p may keep, most likely first: probabilities (R, N)
    (renormalised over the top k when top_k is set), token ids (R, N) and whether each is kept (R, N).

    Top-p keeps a token while the mass ranked above it is below top_p. The nucleus nearly always
    lies among the few hundred most likely tokens: rank those, and sort the whole vocabulary of
    only the rows whose nucleus reaches past them (`_sorted_where_short`).
    """
    probs = logits.softmax(-1)
    V = probs.size(-1)
    if top_k > 0:
        ranked, ids = largest(probs, min(top_k, V))
        ranked = ranked / ranked.sum(-1, keepdim=True)
    else:
        ranked, ids = largest(probs, min(NUCLEUS_SEARCH, V))
        short = ranked.sum(-1) < top_p
        if bool(short.any()):
            ranked, ids = _sorted_where_short(probs, ranked, ids, short)
    if top_p >= 1.0:
        return ranked, ids, torch.ones_like(ranked, dtype=torch.bool)
    keep = (ranked.cumsum(-1) - ranked) < top_p
    keep[..., 0] = True  # the most likely token always: a top_p below float32's resolution keeps nothing otherwise
    return ranked, ids, keep


def _sorted_where_short(probs, ranked, ids, short) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, V) probabilities and ids: the `short` rows sorted whole, the others' ranked few followed
    by zero-probability entries repeating their last id (never drawn, and never kept: the mass
    before them is past top_p)."""
    R, V = probs.shape
    n = ranked.size(1)
    full_ranked = ranked.new_zeros((R, V))
    full_ids = ids[:, -1:].expand(R, V).clone()
    full_ranked[:, :n], full_ids[:, :n] = ranked, ids
    full_ranked[short], full_ids[short] = largest(probs[short], V)
    return full_ranked, full_ids


def truncate_distribution(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Set to -inf every token outside the top k and outside the nucleus of mass `top_p`."""
    if top_k == 0 and top_p >= 1.0:
        return logits
    _, ids, keep = ranked_candidates(logits, top_k, top_p)
    kept = torch.zeros_like(logits).scatter_reduce_(-1, ids, keep.to(logits.dtype), "amax")  # an id twice: kept if once
    return logits.masked_fill(kept == 0, NEG_INF)


def draw(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of `weights` (R, N), each with probability proportional to its weight:
    one uniform number per row, looked up in the row's running sum (inverse transform sampling).
    torch.multinomial draws a random number per weight on the CPU, and that dominated sampling."""
    cumulative = weights.cumsum(-1)  # (R, N)
    u = torch.rand(weights.size(0), 1, generator=generator, device=weights.device) * cumulative[:, -1:]
    # right=True: the first index whose running sum exceeds u, so a zero weight is never drawn
    return torch.searchsorted(cumulative, u, right=True).clamp_(max=weights.size(-1) - 1).squeeze(-1)


def sample_from(logits: torch.Tensor, top_k: int, top_p: float, generator: torch.Generator) -> torch.Tensor:
    """One token per row from the truncated, renormalised distribution, drawn among the ranked
    candidates only: a draw over the whole vocabulary costs more than the rest of the step."""
    if top_k == 0 and top_p >= 1.0:
        return draw(logits.softmax(-1), generator)
    ranked, ids, keep = ranked_candidates(logits, top_k, top_p)
    drawn = draw(ranked * keep, generator)  # (R,) position among the candidates
    return ids.gather(-1, drawn.unsqueeze(-1)).squeeze(-1)


class BeamSearch(Strategy):
    """Keeps the `beam_size` best prefixes per message; finished ones leave the beam for a list.

    A message is done when its best candidate of a step ends the reply and it has `wanted`
    finished hypotheses, or when it has `beam_size` of them. `wanted` is `n_best`, or `beam_size`
    when the finished ones are reranked by what the message adds (`rerank`, Li et al. 2016's
    mutual information): more candidates give it more to choose from.
    """

    rank_each_step = True  # rows move: each step's alternatives belong to the row that computed them

    def __init__(self, settings: BeamSettings, batch, device, rerank: float = 0.0):
        super().__init__(settings, batch, device)
        K = self.rows_per_message = settings.beam_size
        self.rerank = rerank
        self.wanted = settings.beam_size if rerank else settings.n_best
        self.scores = torch.full((batch, K), NEG_INF, device=device)  # (B, K) summed log-probabilities
        self.scores[:, 0] = 0.0  # all beams start identical: let only the first one live
        self.finished: list[list[tuple[float, int, int]]] = [[] for _ in range(batch)]  # (score, step, row)
        self.done = torch.zeros(batch, dtype=torch.bool, device=device)

    def wants_gains(self, asked):
        return asked or bool(self.rerank)

    def penalty(self, length: int) -> float:
        return length_penalty(length, self.settings.length_penalty)

    def select(self, logp, step):
        B, K = self.batch, self.settings.beam_size
        k = min(K, logp.size(-1))
        top = logp.topk(min(max(TOP_ALTERNATIVES, K), logp.size(-1)), dim=-1)  # the trace keeps it too
        # the K best continuations of a message lie among the k best of each of its K rows: rank
        # K * k candidates, not K * V
        values, ids = top.values[:, :k].reshape(B, K, k), top.indices[:, :k].reshape(B, K * k)
        candidates = (self.scores.unsqueeze(-1) + values).view(B, K * k)  # (B, K*k)
        best, flat = candidates.topk(K, dim=-1)  # (B, K)
        beam = flat // k  # (B, K)
        tokens = ids.gather(1, flat)  # (B, K)
        rows = (beam + torch.arange(B, device=logp.device).unsqueeze(1) * K).view(-1)  # (B*K,)
        ended = (tokens == EOS) & torch.isfinite(best)
        self.scores = best.masked_fill(ended, NEG_INF)
        self.last_ended, self.last_top = ended, best
        return Choice(tokens.view(-1), rows, top, best.view(-1))

    def update_finished(self, step, trace):
        """Move hypotheses that just ended (at `step` pieces) to the finished lists."""
        if not bool(self.last_ended.any()) and bool(torch.isfinite(self.scores).any(-1).all()):
            return False  # most steps: nothing ended and every message still has live hypotheses
        ended, top = self.last_ended.cpu(), self.last_top.cpu()
        K = self.settings.beam_size
        for b in range(self.batch):
            if self.done[b]:
                continue
            for k in ended[b].nonzero().flatten().tolist():
                self.finished[b].append((top[b, k].item() / self.penalty(step), step, b * K + k))
            enough = len(self.finished[b]) >= self.wanted and bool(ended[b, 0])
            if enough or len(self.finished[b]) >= K or not torch.isfinite(self.scores[b]).any():
                self.done[b] = True
                self.scores[b] = NEG_INF  # stop spending work on it
        return bool(self.done.all())

    def shown(self, trace):
        K = self.settings.beam_size
        return [strip(r) for r in trace.replies()[::K]]  # each message's best row

    def final(self, trace, step):
        trace.finish()
        K, n_best, results = self.settings.beam_size, self.settings.n_best, []
        for finished in self.finished:
            best = sorted(finished, key=lambda f: -f[0])[:K]
            hyps = [trace.hypothesis(row, t, t, t < self.settings.max_length, score) for score, t, row in best]
            for h in hyps:
                h.likelihood = h.score
                if self.rerank:  # the most specific of the likely: what the message adds decides among them
                    h.score = ranking_score(h.score, sum(h.gains), self.rerank)
            hyps.sort(key=lambda h: -h.score)
            if hyps:
                hyps[0].finalists = list(hyps)
            results.append(hyps[:n_best])
        return results


def make_strategy(settings: Settings, batch: int, device, rerank: float = 0.0, words=None) -> Strategy:
    """The strategy that `settings` name; `rerank`: the weight beam search's finished replies are
    reranked with (`rerank_of`); `words`: a reply's pieces as the words consensus sampling compares."""
    settings.validate()
    if settings.name == "beam":
        return BeamSearch(settings, batch, device, rerank)
    if settings.name == "greedy":
        return Greedy(settings, batch, device)
    if settings.candidates > 1:
        return ConsensusSampling(settings, batch, device, words or (lambda ids: [str(i) for i in ids]))
    return Sampling(settings, batch, device)
