"""Decoding settings: what each strategy's knobs are, their defaults and their valid ranges.

Kept free of torch, so that the chat screen and its settings can appear while torch and the
model are still loading. The strategies that act on these settings are in `chatbot.decoding.strategies`.
The ranges keep every reply's time and memory bounded whatever a person types.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from chatbot.errors import ChatbotError
from chatbot.i18n import tr
from chatbot.validation import check, parse

MAX_REPLY_LENGTH = 200  # pieces: far past what a model trained on chat replies writes well
MAX_BEAM_SIZE = 64
MAX_SEED = 2**63 - 1
MAX_CANDIDATES = 64  # sampled replies to choose among; each draws one more from the model to judge them
DEFAULT_CANDIDATES = 16  # chosen by measurement (probes, repetition, latency): docs/performance.md
MIN_TEMPERATURE = 0.01
DEFAULT_STRATEGY = "sample"  # the chat's and `chatbot reply`'s; chosen by measurement: docs/performance.md
DEFAULT_GUIDANCE = 0.0  # chosen by measurement and by reading the replies: docs/performance.md
DEFAULT_RERANK = 1.0  # beam search's candidates ranked by what the message adds: docs/performance.md
MAX_MESSAGE_CHARS = 100_000  # longer messages are refused, shorter ones logged whole (the model reads their end)

# name -> (kind, lowest, highest); a None bound is open
RANGES = {
    "max_length": (int, 1, MAX_REPLY_LENGTH),
    "min_length": (int, 0, MAX_REPLY_LENGTH),
    "repetition_penalty": (float, 1.0, 10.0),
    "no_repeat_ngram": (int, 0, MAX_REPLY_LENGTH),
    "block_source_ngrams": (bool, None, None),
    "whole_words": (bool, None, None),
    "beam_size": (int, 1, MAX_BEAM_SIZE),
    "length_penalty": (float, 0.0, 10.0),
    "n_best": (int, 1, MAX_BEAM_SIZE),
    "temperature": (float, 0.0, 5.0),
    "top_k": (int, 0, 1_000_000),
    "top_p": (float, 0.0, 1.0),
    "seed": (int, 0, MAX_SEED),
    "candidates": (int, 1, MAX_CANDIDATES),
    "guidance": (float, 0.0, 10.0),
    "rerank": (float, 0.0, 1.0),
}
OPTIONAL = {"seed"}  # None: a fresh seed for every reply


@dataclass
class Settings:
    """Rules every strategy shares."""

    max_length: int = 40  # reply tokens, end-of-sequence excluded
    min_length: int = 1  # end-of-sequence is forbidden before this many tokens
    repetition_penalty: float = 1.5  # >1 makes tokens already in the reply less likely (docs/performance.md)
    no_repeat_ngram: int = 3  # never repeat an n-gram of this size within the reply (0: off)
    block_source_ngrams: bool = False  # ... nor copy one from the user's message
    whole_words: bool = True  # a word of the conversation the reply began to copy is written whole
    guidance: float = DEFAULT_GUIDANCE  # w: favour pieces the message makes likelier (0: off; needs a model that can)

    name = "base"

    def validate(self) -> None:
        """Each value's type and range, then the rules between values."""
        for f in fields(self):
            kind, low, high = RANGES[f.name]
            check(label(f.name), getattr(self, f.name), kind, low, high, optional=f.name in OPTIONAL)
        if self.min_length > self.max_length:
            raise ChatbotError(tr("min length must not exceed the max length"))

    def to_dict(self) -> dict:
        return {"strategy": self.name, **asdict(self)}

    def with_text_value(self, name: str, raw: str) -> Settings:
        """A copy with one setting parsed from text as a person typed it, validated."""
        if name not in RANGES or name not in {f.name for f in fields(self)}:
            raise ChatbotError(tr("{strategy} has no setting {name!r}", strategy=self.name, name=name))
        value = parse(label(name), raw, RANGES[name][0], optional=name in OPTIONAL)
        candidate = replace(self, **{name: value})
        candidate.validate()
        return candidate


def label(name: str) -> str:
    return name.replace("_", " ")


@dataclass
class GreedySettings(Settings):
    name = "greedy"


@dataclass
class BeamSettings(Settings):
    beam_size: int = 5
    length_penalty: float = 0.6  # GNMT alpha: score / ((5 + length) / 6) ** alpha; 0 is raw log-probability
    n_best: int = 1  # replies returned per message, best first
    rerank: float = DEFAULT_RERANK  # the candidates ranked by (1 - r) score + r (log p(reply | message) - log p(reply))

    name = "beam"

    def validate(self) -> None:
        super().validate()
        if self.n_best > self.beam_size:
            raise ChatbotError(tr("n-best must not exceed the beam size"))


@dataclass
class SampleSettings(Settings):
    temperature: float = 0.8  # <1 sharpens, >1 flattens; 0 picks the most likely token
    top_k: int = 0  # sample among the k most likely tokens (0: all)
    top_p: float = 0.9  # ... among the smallest set holding this much probability (1: all)
    seed: int | None = None  # fixed seed: the same message gets the same reply
    candidates: int = DEFAULT_CANDIDATES  # replies drawn, the one others agree with answers (1: as drawn)

    name = "sample"

    def validate(self) -> None:
        super().validate()
        if self.top_p <= 0:
            raise ChatbotError(tr("top p must be more than 0 (1 keeps every token)"))
        if 0 < self.temperature < MIN_TEMPERATURE:  # dividing by less overflows; 0 means the most likely token
            raise ChatbotError(
                tr(
                    "temperature must be 0 (the most likely token) or from {low} to 5",
                    low=MIN_TEMPERATURE,
                )
            )


STRATEGIES = {"greedy": GreedySettings, "beam": BeamSettings, "sample": SampleSettings}


def settings_from(strategy: str, **values) -> Settings:
    """Settings of a strategy from keyword values; None values keep the defaults."""
    if strategy not in STRATEGIES:
        raise ChatbotError(tr("unknown strategy {strategy!r}: choose greedy, beam or sample", strategy=strategy))
    cls = STRATEGIES[strategy]
    known = {f.name for f in fields(cls)}
    settings = cls(**{k: v for k, v in values.items() if v is not None and k in known})
    settings.validate()
    return settings
