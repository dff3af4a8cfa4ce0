"""Engines: the model as decoding runs it, built from a trained `chatbot.model.Seq2Seq`.

The model in `chatbot/model.py` is written to be read. A reply runs its decoder step once per
token, and for one message on a CPU that step is a few hundred microseconds of small operations,
so replies run an engine instead: the same arithmetic with the Python around it stripped
(`FlatEngine`), or with int8 weights in the big products (`Int8Engine`). `ReferenceEngine` runs
the model's own modules (`--reference`): slow, for reading, stepping through in a debugger and
checking. The tests hold every engine to the reference.

An engine is anything with what the decoding loop (`chatbot.decoding`) asks of it:

    cfg, device
    encode(src (B, S), lengths (B,)) -> memory, state    # memory.index_select(rows) reorders it
    initial_feed(rows) -> feed (rows, A)
    step(tokens (R,), state, memory, feed) -> logits (R, V), state, attention (R, S), feed

Engines import the model; the model knows nothing of them.
"""

from __future__ import annotations

from typing import Protocol

from chatbot.engine.flat import FlatEngine
from chatbot.engine.reference import ReferenceEngine

KINDS = ("reference", "flat", "int8")


class Engine(Protocol):
    """What the decoding loop asks of an engine (see above)."""

    cfg: object  # the model's `ModelConfig`
    scorer: object  # the module whose `scored_logits` give its teacher-forced figures
    shares_memory: bool  # whether the rows of one message may all read one copy of its memory (default False)

    @property
    def device(self): ...

    def encode(self, src, lengths): ...

    def initial_feed(self, rows: int): ...

    def step(self, tokens, state, memory, feed): ...


__all__ = ["KINDS", "Engine", "FlatEngine", "ReferenceEngine", "as_engine", "build_engine", "load_engine"]


def build_engine(model, kind: str = "flat"):
    """An engine of `kind` for a model in eval mode: "reference", "flat" (its float weights) or
    "int8" (CPU only)."""
    if kind == "reference":
        return ReferenceEngine(model)
    if kind == "flat":
        return FlatEngine(model)
    if kind == "int8":
        from chatbot.engine.int8 import Int8Engine

        return Int8Engine(model)
    raise ValueError(f"unknown engine {kind!r}: choose one of {', '.join(KINDS)}")


def load_engine(directory, device="cpu", precision: str = "fp32", reference: bool = False):
    """(engine, tokenizer, config.json): a model directory as replies run it. `precision` fp32
    or bf16 runs those weights through the flat engine, int8 through the int8 engine;
    `reference` runs the model's own modules (fp32 or bf16 weights)."""
    from chatbot.modeldir import load_model
    from chatbot.validation import reference_precision

    if reference:
        precision = reference_precision(precision)
    model, tokenizer, config = load_model(directory, device, "bf16" if precision == "bf16" else "fp32")
    kind = "reference" if reference else "int8" if precision == "int8" else "flat"
    return build_engine(model, kind), tokenizer, config


def as_engine(model_or_engine):
    """An engine as it is; a model as its flat engine."""
    from chatbot.model import Seq2Seq

    return FlatEngine(model_or_engine) if isinstance(model_or_engine, Seq2Seq) else model_or_engine
