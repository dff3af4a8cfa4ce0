"""Turning the model's next-token distributions into replies: greedy, beam search, sampling.

One loop drives every strategy: encode the messages once, then step the decoder, apply the
shared rules (no unknown token, minimum length, repetition penalty, n-gram blocking), let the
strategy pick tokens, and reorder the decoder state by the rows it kept. Rows are
(message, hypothesis) pairs, so a batch of messages and a beam are the same tensor work.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import torch

from chatbot.errors import ChatbotError
from chatbot.model import Seq2Seq
from chatbot.tokenizer import BOS, EOS, PAD, UNK, Tokenizer

NEG_INF = float("-inf")
TOP_ALTERNATIVES = 5  # alternatives kept per reply token, for the "inside the model" view


# --- settings -------------------------------------------------------------------------------


@dataclass
class Settings:
    """Rules every strategy shares."""

    max_length: int = 40  # reply tokens, end-of-sequence excluded
    min_length: int = 1  # end-of-sequence is forbidden before this many tokens
    repetition_penalty: float = 1.0  # >1 makes tokens already in the reply less likely
    no_repeat_ngram: int = 3  # never repeat an n-gram of this size within the reply (0: off)
    block_source_ngrams: bool = False  # ... nor copy one from the user's message

    name = "base"

    def validate(self) -> None:
        if self.max_length < 1:
            raise ChatbotError("max length must be at least 1")
        if not 0 <= self.min_length <= self.max_length:
            raise ChatbotError("min length must lie between 0 and the max length")
        if self.repetition_penalty < 1.0:
            raise ChatbotError("repetition penalty must be at least 1.0")
        if self.no_repeat_ngram < 0:
            raise ChatbotError("no-repeat n-gram size must be 0 (off) or more")

    def to_dict(self) -> dict:
        return {"strategy": self.name, **asdict(self)}


@dataclass
class GreedySettings(Settings):
    name = "greedy"


@dataclass
class BeamSettings(Settings):
    beam_size: int = 5
    length_penalty: float = 0.6  # GNMT alpha: score / ((5 + length) / 6) ** alpha; 0 is raw log-probability
    n_best: int = 1  # replies returned per message, best first

    name = "beam"

    def validate(self) -> None:
        super().validate()
        if self.beam_size < 1:
            raise ChatbotError("beam size must be at least 1")
        if not 1 <= self.n_best <= self.beam_size:
            raise ChatbotError("n-best must lie between 1 and the beam size")
        if self.length_penalty < 0:
            raise ChatbotError("length penalty must not be negative")


@dataclass
class SampleSettings(Settings):
    temperature: float = 0.8  # <1 sharpens, >1 flattens; 0 picks the most likely token
    top_k: int = 0  # sample among the k most likely tokens (0: all)
    top_p: float = 0.9  # ... among the smallest set holding this much probability (1: all)
    seed: int | None = None  # fixed seed: the same message gets the same reply

    name = "sample"

    def validate(self) -> None:
        super().validate()
        if self.temperature < 0:
            raise ChatbotError("temperature must not be negative")
        if self.top_k < 0:
            raise ChatbotError("top-k must be 0 (off) or more")
        if not 0 < self.top_p <= 1:
            raise ChatbotError("top-p must lie in (0, 1]")


STRATEGIES = {"greedy": GreedySettings, "beam": BeamSettings, "sample": SampleSettings}


# --- what a reply carries ---------------------------------------------------------------------


@dataclass
class Reply:
    text: str
    tokens: list[int]  # reply piece ids, end-of-sequence excluded
    token_logprobs: list[float]  # log-probability of each chosen piece (and of EOS, last, when it ended)
    score: float  # sum of log-probabilities; for beam search, divided by the length penalty
    attention: list[list[float]]  # (reply pieces + EOS) x (message pieces)
    source_tokens: list[int]
    settings: dict  # the strategy and every setting that produced the reply
    seconds: float = 0.0
    alternatives: list[list[tuple[int, float]]] = field(default_factory=list)  # top pieces per step
    finished: bool = True  # False when the reply hit the max length


# --- the strategies -------------------------------------------------------------------------


class Strategy:
    """Picks next tokens. `rows_per_message` hypotheses run for each message."""

    rows_per_message = 1

    def __init__(self, settings: Settings, batch: int, device: torch.device):
        self.settings, self.batch, self.device = settings, batch, device

    def select(self, logp: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """logp (R, V) -> next tokens (R,) and the row each new row continues (R,)."""
        raise NotImplementedError


class Greedy(Strategy):
    def select(self, logp, step):
        return logp.argmax(-1), torch.arange(logp.size(0), device=logp.device)


class Sample(Strategy):
    def __init__(self, settings: SampleSettings, batch, device):
        super().__init__(settings, batch, device)
        self.generator = torch.Generator(device=device)
        if settings.seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(settings.seed)

    def select(self, logp, step):
        rows = torch.arange(logp.size(0), device=logp.device)
        s = self.settings
        if s.temperature == 0:
            return logp.argmax(-1), rows
        return sample_from(logp / s.temperature, s.top_k, s.top_p, self.generator), rows


def truncate_distribution(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Set to -inf every token outside the top k and outside the nucleus of mass `top_p`."""
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.size(-1)), dim=-1).values[:, -1:]  # (R, 1)
        logits = logits.masked_fill(logits < kth, NEG_INF)
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # mass of the tokens ranked above each one
        drop_sorted = before >= top_p  # keep a token while the mass above it is below top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, NEG_INF)
    return logits


def sample_from(logits: torch.Tensor, top_k: int, top_p: float, generator: torch.Generator) -> torch.Tensor:
    probs = truncate_distribution(logits, top_k, top_p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class Beam(Strategy):
    """Keeps the `beam_size` best prefixes per message; finished ones leave the beam for a list.

    A message is done when its best candidate of a step ends the reply and it has `n_best`
    finished hypotheses, or when it has `beam_size` of them.
    """

    def __init__(self, settings: BeamSettings, batch, device):
        super().__init__(settings, batch, device)
        K = self.rows_per_message = settings.beam_size
        self.scores = torch.full((batch, K), NEG_INF, device=device)  # (B, K) summed log-probabilities
        self.scores[:, 0] = 0.0  # all beams start identical: let only the first one live
        self.finished: list[list[tuple[float, int, int]]] = [[] for _ in range(batch)]  # (score, step, row)
        self.done = torch.zeros(batch, dtype=torch.bool, device=device)

    def penalty(self, length: int) -> float:
        return ((5 + length) / 6) ** self.settings.length_penalty

    def select(self, logp, step):
        B, K = self.batch, self.settings.beam_size
        V = logp.size(-1)
        candidates = (self.scores.unsqueeze(-1) + logp.view(B, K, V)).view(B, K * V)  # (B, K*V)
        top, flat = candidates.topk(K, dim=-1)  # (B, K)
        beam, tokens = flat // V, flat % V  # (B, K)
        rows = (beam + torch.arange(B, device=logp.device).unsqueeze(1) * K).view(-1)  # (B*K,)
        ended = (tokens == EOS) & torch.isfinite(top)
        self.scores = top.masked_fill(ended, NEG_INF)
        self.last_ended, self.last_top = ended, top
        return tokens.view(-1), rows

    def record_finished(self, step: int, length: int) -> None:
        """Move hypotheses that just ended (at `length` tokens) to the finished lists."""
        ended, top = self.last_ended.cpu(), self.last_top.cpu()
        K = self.settings.beam_size
        for b in range(self.batch):
            if self.done[b]:
                continue
            for k in ended[b].nonzero().flatten().tolist():
                self.finished[b].append((top[b, k].item() / self.penalty(length), step, b * K + k))
            enough = len(self.finished[b]) >= self.settings.n_best and bool(ended[b, 0])
            if enough or len(self.finished[b]) >= K or not torch.isfinite(self.scores[b]).any():
                self.done[b] = True
                self.scores[b] = NEG_INF  # stop spending work on it


# --- the loop -------------------------------------------------------------------------------


def banned_ngrams(history: torch.Tensor, n: int, source: torch.Tensor | None, vocab: int) -> torch.Tensor:
    """(R, V) mask of tokens that would complete an n-gram already in `history` (R, t) or `source`."""
    R, t = history.shape
    banned = torch.zeros(R, vocab, dtype=torch.int32, device=history.device)
    if t < n - 1 or n < 1:
        return banned.bool()
    prefix = history[:, t - (n - 1) :] if n > 1 else history[:, :0]  # (R, n-1)
    for seq in (history, source):
        if seq is None or seq.size(1) < n:
            continue
        windows = seq.unfold(1, n, 1)  # (R, W, n)
        match = (windows[:, :, : n - 1] == prefix.unsqueeze(1)).all(-1)  # (R, W)
        banned.scatter_add_(1, windows[:, :, n - 1], match.to(torch.int32))
    banned[:, PAD] = 0
    return banned > 0


def apply_rules(logp: torch.Tensor, settings: Settings, history: torch.Tensor, source: torch.Tensor, step: int) -> torch.Tensor:
    """The shared rules, on log-probabilities (R, V); history (R, step) holds the reply so far."""
    logp = logp.clone()
    logp[:, [PAD, UNK, BOS]] = NEG_INF
    if step < settings.min_length:
        logp[:, EOS] = NEG_INF
    if settings.repetition_penalty != 1.0 and step:
        seen = torch.zeros_like(logp, dtype=torch.bool).scatter_(1, history, True)
        seen[:, EOS] = False
        logp = torch.where(seen, logp * settings.repetition_penalty, logp).log_softmax(-1)
    if settings.no_repeat_ngram:
        blocked = banned_ngrams(history, settings.no_repeat_ngram, source if settings.block_source_ngrams else None, logp.size(-1))
        logp = logp.masked_fill(blocked, NEG_INF)
    return logp


def only_eos(logp: torch.Tensor) -> torch.Tensor:
    forced = torch.full_like(logp, NEG_INF)
    forced[:, EOS] = 0.0
    return forced


def make_strategy(settings: Settings, batch: int, device) -> Strategy:
    settings.validate()
    kind = {"greedy": Greedy, "beam": Beam, "sample": Sample}[settings.name]
    return kind(settings, batch, device)


@dataclass
class Progress:
    """One step of a reply in the making, for streaming: the best hypothesis of each message."""

    step: int
    tokens: list[list[int]]


@dataclass
class Trace:
    """Everything recorded per row so far: chosen tokens, their log-probabilities, attention, top
    alternatives. Beam search reorders it with the rows it keeps."""

    tokens: torch.Tensor  # (R, t)
    logps: torch.Tensor  # (R, t)
    attention: torch.Tensor  # (R, t, S)
    alt_ids: torch.Tensor  # (R, t, TOP_ALTERNATIVES)
    alt_logps: torch.Tensor  # (R, t, TOP_ALTERNATIVES)

    @classmethod
    def empty(cls, rows: int, source_length: int, device) -> Trace:
        return cls(
            torch.zeros((rows, 0), dtype=torch.long, device=device),
            torch.zeros((rows, 0), device=device),
            torch.zeros((rows, 0, source_length), device=device),
            torch.zeros((rows, 0, TOP_ALTERNATIVES), dtype=torch.long, device=device),
            torch.zeros((rows, 0, TOP_ALTERNATIVES), device=device),
        )

    def extend(self, chosen, logp, weights, top, rows) -> Trace:
        """Continue row rows[i] with token chosen[i]; the step's outputs are indexed by parent row."""
        picked = logp[rows].gather(1, chosen.unsqueeze(1))  # (R, 1)
        return Trace(
            torch.cat([self.tokens[rows], chosen.unsqueeze(1)], dim=1),
            torch.cat([self.logps[rows], picked], dim=1),
            torch.cat([self.attention[rows], weights[rows].float().unsqueeze(1)], dim=1),
            torch.cat([self.alt_ids[rows], top.indices[rows].unsqueeze(1)], dim=1),
            torch.cat([self.alt_logps[rows], top.values[rows].unsqueeze(1)], dim=1),
        )

    def hypothesis(self, row: int, length: int, finished: bool, score: float) -> dict:
        """Row `row` as a result: `length` reply tokens, plus the EOS step when it finished."""
        keep = length + 1 if finished else length
        return {
            "tokens": self.tokens[row, :length].tolist(),
            "logprobs": self.logps[row, :keep].tolist(),
            "attention": self.attention[row, :keep].tolist(),
            "alternatives": [list(zip(i, v)) for i, v in zip(self.alt_ids[row, :keep].tolist(), self.alt_logps[row, :keep].tolist())],
            "score": score,
            "finished": finished,
        }


@torch.inference_mode()
def decode(
    model: Seq2Seq, sources: list[list[int]], settings: Settings, on_step: Callable[[Progress], None] | None = None
) -> list[list[dict]]:
    """Token-level decoding of a batch of messages (piece ids); returns per message its hypotheses
    (dicts with tokens, logprobs, attention, alternatives, score, finished), best first."""
    device = model.device
    B = len(sources)
    strategy = make_strategy(settings, B, device)
    K = strategy.rows_per_message
    lengths = torch.tensor([len(s) for s in sources], device=device)
    src = torch.full((B, int(lengths.max())), PAD, dtype=torch.long, device=device)
    for i, s in enumerate(sources):
        src[i, : len(s)] = torch.tensor(s, device=device)
    memory, state = model.encode(src, lengths)  # the encoder runs once per message
    expand = torch.arange(B, device=device).repeat_interleave(K)  # (R,) the message of each row
    memory = memory.index_select(expand)
    state = tuple(s.index_select(1, expand) for s in state)
    source = src.index_select(0, expand)  # (R, S)
    feed = model.initial_feed(B * K)
    tokens = torch.full((B * K,), BOS, dtype=torch.long, device=device)
    trace = Trace.empty(B * K, src.size(1), device)
    ended = torch.zeros(B * K, dtype=torch.bool, device=device)
    traces = []  # beam search: the trace after each step, where finished rows are looked up
    for step in range(settings.max_length + 1):
        raw, state, weights, feed = model.step(tokens, state, memory, feed)  # (R, V), state, (R, S), (R, A)
        logp = apply_rules(raw.float(), settings, trace.tokens, source, step)
        if step == settings.max_length:  # the last position can only end the reply
            logp = only_eos(logp)
        top = logp.topk(TOP_ALTERNATIVES, dim=-1)
        if K == 1 and bool(ended.any()):  # a finished reply can only go on ending
            logp = torch.where(ended.unsqueeze(1), only_eos(logp), logp)
        tokens, rows = strategy.select(logp, step)  # (R,), (R,)
        if K > 1:
            state = tuple(s.index_select(1, rows) for s in state)
            feed = feed.index_select(0, rows)
        trace = trace.extend(tokens, logp, weights, top, rows)
        if K > 1:
            traces.append(trace)
            strategy.record_finished(step, length=step)
            best = [trace.tokens[b * K].tolist() for b in range(B)]
            done = bool(strategy.done.all())
        else:
            ended = ended | (tokens == EOS)
            best = trace.tokens.tolist()
            done = bool(ended.all())
        if on_step:
            on_step(Progress(step, [_strip(t) for t in best]))
        if done:
            break
    if K > 1:
        return [
            [traces[step].hypothesis(row, step, True, score) for score, step, row in sorted(finished, key=lambda f: -f[0])[: settings.n_best]]
            for finished in strategy.finished
        ]
    results = []
    for r in range(B):
        row = trace.tokens[r].tolist()
        n = _reply_length(row)
        finished = n < len(row)
        results.append([trace.hypothesis(r, n, finished, trace.logps[r, : n + finished].sum().item())])
    return results


def _reply_length(tokens: list[int]) -> int:
    return tokens.index(EOS) if EOS in tokens else len(tokens)


def _strip(tokens: list[int]) -> list[int]:
    return tokens[: _reply_length(tokens)]


# --- text in, replies out -------------------------------------------------------------------


def prepare(tokenizer: Tokenizer, model: Seq2Seq, text: str) -> tuple[list[int], bool]:
    """Piece ids of a message, cut to the model's source length (keeping the end); True if cut."""
    ids = tokenizer.encode(text)
    limit = model.cfg.max_source_tokens
    return (ids[-limit:] or [EOS]), len(ids) > limit


def reply(
    model: Seq2Seq,
    tokenizer: Tokenizer,
    messages: list[str],
    settings: Settings,
    on_text: Callable[[int, str], None] | None = None,
) -> list[list[Reply]]:
    """Replies to each message (n-best lists; one reply unless beam search asks for more).

    `on_text(message_index, text_so_far)` streams each reply as it grows.
    """
    if not messages:
        return []
    start = time.perf_counter()
    sources = [prepare(tokenizer, model, m)[0] for m in messages]

    def on_step(progress: Progress) -> None:
        for i, tokens in enumerate(progress.tokens):
            on_text(i, tokenizer.decode(tokens))

    hypotheses = decode(model, sources, settings, on_step if on_text else None)
    seconds = time.perf_counter() - start
    return [
        [
            Reply(
                text=tokenizer.decode(h["tokens"]),
                tokens=h["tokens"],
                token_logprobs=h["logprobs"],
                score=h["score"],
                attention=h["attention"],
                source_tokens=src,
                settings=settings.to_dict(),
                seconds=seconds / len(messages),
                alternatives=h["alternatives"],
                finished=h["finished"],
            )
            for h in hyps
        ]
        for src, hyps in zip(sources, hypotheses)
    ]


def settings_from(strategy: str, **values) -> Settings:
    """Settings of a strategy from keyword values; None values keep the defaults."""
    if strategy not in STRATEGIES:
        raise ChatbotError(f"unknown strategy {strategy!r}: choose greedy, beam or sample")
    cls = STRATEGIES[strategy]
    known = set(cls.__dataclass_fields__)
    settings = cls(**{k: v for k, v in values.items() if v is not None and k in known})
    settings.validate()
    return settings
