"""The reference engine: the model's own modules, step by step (`--reference`)."""

from __future__ import annotations

from chatbot.model import Seq2Seq


class ReferenceEngine:
    """Decoding through `Seq2Seq.encode` and `Seq2Seq.step` as `chatbot/model.py` writes them."""

    def __init__(self, model: Seq2Seq):
        self.model, self.cfg = model, model.cfg
        self.scorer = model  # teacher-forced figures (`chatbot evaluate`) come from the model itself

    @property
    def device(self):
        return self.model.device

    def encode(self, src, lengths):
        return self.model.encode(src, lengths)

    def initial_feed(self, rows: int):
        return self.model.initial_feed(rows)

    def step(self, tokens, state, memory, feed):
        return self.model.step(tokens, state, memory, feed)
