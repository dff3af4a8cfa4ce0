"""Decoding settings: what each strategy's knobs are, their defaults and their valid ranges.

Kept free of torch, so that the chat screen and its settings can appear while torch and the
model are still loading. The strategies that act on these settings are in `chatbot.strategies`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from chatbot.errors import ChatbotError


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


def settings_from(strategy: str, **values) -> Settings:
    """Settings of a strategy from keyword values; None values keep the defaults."""
    if strategy not in STRATEGIES:
        raise ChatbotError(f"unknown strategy {strategy!r}: choose greedy, beam or sample")
    cls = STRATEGIES[strategy]
    known = set(cls.__dataclass_fields__)
    settings = cls(**{k: v for k, v in values.items() if v is not None and k in known})
    settings.validate()
    return settings
