"""Decoding strategies: how each picks the next tokens from log-probabilities (their settings
are in `chatbot.settings`).

Greedy takes the most likely token, sampling draws from a temperature-scaled, top-k / top-p
truncated distribution, and beam search keeps the best prefixes of each message. The loop that
drives them all is in `chatbot.decoding`.
"""

from __future__ import annotations

import torch

from chatbot.settings import BeamSettings, SampleSettings, Settings
from chatbot.tokenizer import EOS


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's length penalty: a finished hypothesis's score is divided by it (alpha 0: by 1)."""
    return ((5 + length) / 6) ** alpha


def finished_wanted(settings: BeamSettings, rerank: float) -> int:
    """How many finished replies beam search waits for once its best candidate ends: `n_best`,
    or the whole beam when the message's gain reranks them (more for it to choose from)."""
    return settings.beam_size if rerank else settings.n_best


NEG_INF = float("-inf")
NUCLEUS_SEARCH = 256  # tokens ranked before top-p falls back to sorting the vocabulary
EVIDENCE_PER_CANDIDATE = 2  # consensus sampling: replies drawn from the model to judge each candidate by


# --- the strategies -------------------------------------------------------------------------


class Strategy:
    """Picks next tokens. `rows_per_message` hypotheses run for each message."""

    rows_per_message = 1

    def __init__(self, settings: Settings, batch: int, device: torch.device):
        self.settings, self.batch, self.device = settings, batch, device

    def select(self, logp: torch.Tensor, step: int, top=None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """logp (R, V) -> next tokens (R,) and the row each new row continues (R,), or None when
        every row goes on from itself. `top` is logp.topk(k) when the loop has it already."""
        raise NotImplementedError


def most_likely(logp: torch.Tensor, top=None) -> torch.Tensor:
    """Each row's most likely token, read from `top` (logp.topk) when the loop has it. On the CPU
    numpy finds it, an order of magnitude quicker than torch's argmax for one row (both take the
    first of equal maxima)."""
    if top is not None:
        return top.indices[:, 0]
    if logp.device.type == "cpu":
        return torch.from_numpy(logp.numpy().argmax(-1))
    return logp.argmax(-1)


class Greedy(Strategy):
    def select(self, logp, step, top=None):
        return most_likely(logp, top), None


def sampled_rows(settings: SampleSettings) -> int:
    """Rows sampling runs per message: one, or the candidates and their evidence."""
    n = settings.candidates
    return n * (1 + EVIDENCE_PER_CANDIDATE) if n > 1 else 1


class Sample(Strategy):
    """Draws each row's token. With `candidates` n > 1, each message has n candidate rows drawn
    with the settings, then `EVIDENCE_PER_CANDIDATE` n evidence rows drawn from the model's own
    distribution (temperature 1, nothing cut), which judge the candidates (`chatbot.consensus`)."""

    def __init__(self, settings: SampleSettings, batch, device):
        super().__init__(settings, batch, device)
        self.generator = torch.Generator(device=device)
        if settings.seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(settings.seed)
        n = settings.candidates
        self.evidence = None
        if n > 1:
            self.rows_per_message = sampled_rows(settings)
            one = torch.arange(self.rows_per_message, device=device) >= n  # a message's rows: candidates first
            self.evidence = one.repeat(batch)  # (R,)
            self.candidates = ~self.evidence

    def draw(self, logp, top=None):
        s = self.settings
        if s.temperature == 0:
            return most_likely(logp, top)
        return sample_from(logp / s.temperature, s.top_k, s.top_p, self.generator)

    def select(self, logp, step, top=None):
        if self.evidence is None:
            return self.draw(logp, top), None
        tokens = torch.empty(logp.size(0), dtype=torch.long, device=logp.device)
        tokens[self.candidates] = self.draw(logp[self.candidates])
        tokens[self.evidence] = sample_from(logp[self.evidence], 0, 1.0, self.generator)  # as the model says
        return tokens, None


def ranked_candidates(
    logits: torch.Tensor, top_k: int, top_p: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The tokens that top-k and top-p may keep, most likely first: probabilities (R, N)
    (renormalised over the top k when top_k is set), token ids (R, N) and whether each is kept (R, N).

    Top-p keeps a token while the mass ranked above it is below top_p. The nucleus nearly always
    lies among the few hundred most likely tokens: rank those, and sort the whole vocabulary only
    when some row's nucleus reaches past them.
    """
    probs = logits.softmax(-1)
    V = probs.size(-1)
    if top_k > 0:
        ranked, ids = probs.topk(min(top_k, V), dim=-1)
        ranked = ranked / ranked.sum(-1, keepdim=True)
    else:
        ranked, ids = probs.topk(min(NUCLEUS_SEARCH, V), dim=-1)
        if not bool((ranked.sum(-1) >= top_p).all()):
            ranked, ids = probs.sort(dim=-1, descending=True)
    if top_p >= 1.0:
        return ranked, ids, torch.ones_like(ranked, dtype=torch.bool)
    keep = (ranked.cumsum(-1) - ranked) < top_p
    keep[..., 0] = True  # the most likely token always: a top_p below float32's resolution keeps nothing otherwise
    return ranked, ids, keep


def truncate_distribution(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Set to -inf every token outside the top k and outside the nucleus of mass `top_p`."""
    if top_k == 0 and top_p >= 1.0:
        return logits
    _, ids, keep = ranked_candidates(logits, top_k, top_p)
    return logits.masked_fill(~torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, ids, keep), NEG_INF)


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


class Beam(Strategy):
    """Keeps the `beam_size` best prefixes per message; finished ones leave the beam for a list.

    A message is done when its best candidate of a step ends the reply and it has `wanted`
    finished hypotheses, or when it has `beam_size` of them. `wanted` is `n_best`, or `beam_size`
    when the finished ones are reranked: more candidates give the message's gain more to choose from.
    """

    def __init__(self, settings: BeamSettings, batch, device, rerank: float = 0.0):
        super().__init__(settings, batch, device)
        K = self.rows_per_message = settings.beam_size
        self.wanted = finished_wanted(settings, rerank)
        self.scores = torch.full((batch, K), NEG_INF, device=device)  # (B, K) summed log-probabilities
        self.scores[:, 0] = 0.0  # all beams start identical: let only the first one live
        self.finished: list[list[tuple[float, int, int]]] = [[] for _ in range(batch)]  # (score, step, row)
        self.done = torch.zeros(batch, dtype=torch.bool, device=device)

    def penalty(self, length: int) -> float:
        return length_penalty(length, self.settings.length_penalty)

    def select(self, logp, step, top=None):
        B, K = self.batch, self.settings.beam_size
        k = min(K, logp.size(-1))
        if top is None or top.values.size(-1) < k:
            top = logp.topk(k, dim=-1)
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
        return tokens.view(-1), rows

    def record_finished(self, step: int, length: int) -> None:
        """Move hypotheses that just ended (at `length` tokens) to the finished lists."""
        if not bool(self.last_ended.any()) and bool(torch.isfinite(self.scores).any(-1).all()):
            return  # most steps: nothing ended and every message still has live hypotheses
        ended, top = self.last_ended.cpu(), self.last_top.cpu()
        K = self.settings.beam_size
        for b in range(self.batch):
            if self.done[b]:
                continue
            for k in ended[b].nonzero().flatten().tolist():
                self.finished[b].append((top[b, k].item() / self.penalty(length), step, b * K + k))
            enough = len(self.finished[b]) >= self.wanted and bool(ended[b, 0])
            if enough or len(self.finished[b]) >= K or not torch.isfinite(self.scores[b]).any():
                self.done[b] = True
                self.scores[b] = NEG_INF  # stop spending work on it


def make_strategy(settings: Settings, batch: int, device, rerank: float = 0.0) -> Strategy:
    """The strategy that `settings` name; `rerank`: the weight beam search's finished replies are
    reranked with (`chatbot.decoding.rerank_of`)."""
    settings.validate()
    if settings.name == "beam":
        return Beam(settings, batch, device, rerank)
    return {"greedy": Greedy, "sample": Sample}[settings.name](settings, batch, device)
