"""The reference engine: the model's own modules, step by step (`--reference`)."""

from __future__ import annotations

from chatbot.model import Seq2Seq


class ModelEngine:
    """What every engine takes from its model as it is: settings, device, the encoder's output
    and the first feed. Teacher-forced figures (`chatbot evaluate`) come from the model itself."""

    shares_memory = False  # whether the rows of one message may all read one copy of its memory (B = 1)

    def __init__(self, model: Seq2Seq):
        self.model, self.cfg = model, model.cfg

    @property
    def scorer(self) -> Seq2Seq:
        return self.model

    @property
    def device(self):
        return self.model.device

    def encode(self, src, lengths):
        return self.model.encode(src, lengths)

    def initial_feed(self, rows: int):
        return self.model.initial_feed(rows)


class ReferenceEngine(ModelEngine):
    """Decoding through `Seq2Seq.encode` and `Seq2Seq.step` as `chatbot/model.py` writes them."""

    def step(self, tokens, state, memory, feed):
        return self.model.step(tokens, state, memory, feed)
