"""Text in, replies out: a message (and its conversation) read as piece ids, decoded
(`decode`: the strategy and rules composed from the settings, run by `chatbot.decoding.loop`),
and the hypotheses turned back into text with everything the chat shows about them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from chatbot.consensus import normalise
from chatbot.decoding.loop import Observer, run, teacher_forced
from chatbot.decoding.rules import guidance_of, rules_for
from chatbot.decoding.strategies import make_strategy, rerank_of
from chatbot.decoding.trace import Hypothesis
from chatbot.engine import as_engine
from chatbot.settings import Settings
from chatbot.tokenizer import BOS, EOS, PAD, UNK, Tokenizer, keep_end

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
    candidates: list[tuple[str, float, str]] | None = None  # consensus sampling: each candidate, its agreement, its
    # flaw ("repeats", "abrupt": ranked after the others for it; "": none); best first
    hypothesis: Hypothesis | None = None  # as decoding found it: the rows it held, beam search's finalists
    taught: list[tuple[float, int] | None] | None = None  # per piece: (weight, the taught reply's id) where one
    # weighed in (`chatbot.taught`); None when no memory was given


# --- piece ids in, hypotheses out ----------------------------------------------------------


def decode(
    engine,
    sources: list[list[int]],
    settings: Settings,
    observers: Sequence[Observer] = (),
    banned: list[int] | None = None,
    gains: bool = False,
    words: Callable[[list[int]], list[str]] | None = None,
    forced: dict[int, int] | None = None,
    taught=None,
    inside: list[bool] | None = None,
    names: list[bool] | None = None,
    marks: list[bool] | None = None,
    byte_values: list[int] | None = None,
) -> list[list[Hypothesis]]:
    """Decoding of a batch of messages (piece ids) by an engine (`chatbot.engine`): each message's
    hypotheses, best first (one, unless beam search is asked for more).

    The strategy and the rules are composed once from `settings`; `banned` pieces are never
    written (default: padding, unknown, start); `forced` {step: piece} makes the reply take that
    piece at that step (what-if). `observers` are called with every `Step`. `gains`: measure how
    much the message raised each piece's log-probability (`Hypothesis.gains`), while decoding
    where the strategy runs twin rows, else by teacher forcing the chosen reply afterwards.
    `words`: a reply's pieces as the words consensus sampling compares. `taught`: a memory of
    taught replies to follow where the message is near one (`chatbot.taught`). `inside`: per
    piece id, whether it goes on a word (`Tokenizer.word_inside`), `names`, whether it starts a
    capitalised one (`Tokenizer.name_starts`), and `marks`, whether it goes on one with two
    characters or more (`Tokenizer.word_marks`), for `WholeWords`; `byte_values`, per piece id
    its byte or -1 (`Tokenizer.byte_values`), for `WholeCharacters`.

    Runs with tensor-subclass dispatch off: before an op, torch asks every argument that is not a
    plain tensor whether it overrides torch functions, and asking the int8 layers' packed weights
    (C++ objects that lack the attribute) costs more than a small product itself. To the ops, the
    model's parameters are plain tensors either way.
    """
    engine = as_engine(engine)
    strategy = make_strategy(settings, len(sources), engine.device, rerank_of(engine, settings), words)
    rules = rules_for(
        settings,
        guidance_of(engine, settings),
        banned or [PAD, UNK, BOS],
        forced,
        taught,
        inside,
        names,
        marks,
        byte_values,
    )
    gains = gains and getattr(engine.cfg, "unconditional", False)
    with torch.inference_mode(), torch._C.DisableTorchFunctionSubclass():
        results = run(engine, sources, strategy, rules, settings.max_length, observers, gains)
        unmeasured = [(i, h) for i, hyps in enumerate(results) for h in hyps if h.gains is None]
        if gains and unmeasured:
            replies = [h.tokens + [EOS] * h.finished for _, h in unmeasured]
            for (_, h), g in zip(unmeasured, forced_gains(engine, [sources[i] for i, _ in unmeasured], replies)):
                h.gains = g
    return results


def forced_gains(engine, sources: list[list[int]], replies: list[list[int]]) -> list[list[float]]:
    """How much each message raised each piece of its reply: log p(piece | message) - log p(piece
    | no message), the model reading the given pieces (teacher forcing); what the twin rows
    measure while decoding, for replies chosen after it."""
    B, steps = len(sources), []
    for logits, _, target in teacher_forced(engine, sources, replies, twins=True):
        logp = torch.log_softmax(logits.float(), dim=-1).gather(1, target.repeat(2).unsqueeze(1)).squeeze(1)
        steps.append(logp[:B] - logp[B:])
    measured = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in replies]  # (B, T)
    return [g[: len(r)] for g, r in zip(measured, replies)]


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


def taught_pieces(lent: list, h: Hypothesis) -> list[tuple[float, int] | None]:
    """Per piece of a hypothesis, the taught reply that weighed in at its step and how much
    (negative: a reply rated bad, pushed away from)."""
    pieces = []
    for step, row in zip(lent, h.rows[: len(h.logprobs)]):
        weight = step[0][row] if step else 0.0
        pieces.append((round(weight, 3), step[1][row]) if weight else None)
    return pieces


def reply(
    model,
    tokenizer: Tokenizer,
    messages: list[str],
    settings: Settings,
    on_text: Callable[[int, str], None] | None = None,
    contexts: Sequence[Sequence[str]] | None = None,
    gains: bool = False,
    mine: Sequence[Sequence[bool]] | None = None,
    observers: Sequence[Observer] = (),
    forced: dict[int, int] | None = None,
    taught=None,
) -> list[list[Reply]]:
    """Replies to each message (n-best lists; one reply unless beam search asks for more), by
    `model`: an engine (`chatbot.engine`), or a model, which runs as its flat engine.

    `contexts`: for each message, the turns of its conversation before it, oldest first, and
    `mine`, for each of those turns, whether the model said it (default: turns alternate).
    `on_text(message_index, text_so_far)` streams each reply as it grows. `gains`: measure how
    much each message raised each reply piece's probability (`Reply.gains`). `observers`,
    `forced` and `taught`: as `decode` takes them.
    """
    if not messages:
        return []
    start = time.perf_counter()
    engine = as_engine(model)
    contexts = contexts or [()] * len(messages)
    mine = mine or [None] * len(messages)
    prepared = [prepare(tokenizer, engine, m, c, s) for m, c, s in zip(messages, contexts, mine)]
    sources = [src for src, _ in prepared]

    def stream(step) -> None:
        for i, tokens in enumerate(step.shown()):
            on_text(i, tokenizer.decode(tokenizer.complete(tokens)))  # whole characters only

    lent = []  # per step, what taught replies weighed in: ([weight per row], [reply id per row]) or None

    def lending(step) -> None:
        lent.append(step.context.taught)

    watching = [*observers, *([stream] if on_text else []), *([lending] if taught is not None else [])]
    hypotheses = decode(
        engine, sources, settings, watching, tokenizer.never_written(), gains,
        words=lambda ids: normalise(tokenizer.decode(ids)), forced=forced, taught=taught,
        inside=tokenizer.word_inside(),
        names=tokenizer.name_starts(),
        marks=tokenizer.word_marks(),
        byte_values=tokenizer.byte_values(),
    )  # fmt: skip
    for h in (h for hyps in hypotheses for h in hyps if not h.finished):
        whole = len(tokenizer.complete(h.tokens))
        if whole < len(h.tokens):
            h.cut(whole)
    seconds = time.perf_counter() - start
    applied = {**settings.to_dict(), "guidance": guidance_of(engine, settings)}  # what ran: 0 where the model can't
    if "rerank" in applied:
        applied["rerank"] = rerank_of(engine, settings)
    return [
        [
            Reply(
                text=tokenizer.decode(h.tokens),
                tokens=h.tokens,
                token_logprobs=h.logprobs,
                score=h.score,
                attention=h.attention,
                source_tokens=src,
                settings=applied,
                seconds=seconds / len(messages),
                alternatives=h.alternatives,
                finished=h.finished,
                truncated=truncated,
                gains=h.gains,
                agreement=h.agreement,
                candidates=[(tokenizer.decode(c), a, f) for c, a, f in h.candidates] if h.candidates else None,
                hypothesis=h,
                taught=taught_pieces(lent, h) if taught is not None else None,
            )
            for h in hyps
        ]
        for (src, truncated), hyps in zip(prepared, hypotheses)
    ]
