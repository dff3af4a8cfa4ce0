"""A model's settings: its sizes and choices, as config.json stores them.

Free of torch, so that commands can read and check a model directory before torch loads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from chatbot.errors import ChatbotError

ATTENTION_KINDS = ("dot", "general", "additive")


@dataclass
class ModelConfig:
    vocab_size: int = 8000  # SentencePiece pieces, specials included
    embedding_dim: int = 256  # one embedding table, shared by encoder and decoder
    hidden_size: int = 512  # decoder LSTM size; each encoder direction has half of it
    layers: int = 1  # LSTM layers in the encoder and in the decoder
    attention: str = "general"  # Luong "dot" or "general", or Bahdanau "additive"
    input_feeding: bool = False  # feed the last attentional state into the next step (slower)
    tie_embeddings: bool = False  # output projection shares the embedding matrix (learns slower here)
    output_rank: int = 0  # >0: the output layer as two thinner matrices (LowRankLinear); 0: one full matrix
    dropout: float = 0.2  # on embeddings, between LSTM layers and on attentional states
    teacher_forcing: float = 1.0  # chance of feeding the gold token rather than the model's own
    max_source_tokens: int = 64  # longer messages keep their last tokens
    max_reply_tokens: int = 48  # longest reply generated, and trained on

    def __post_init__(self):
        if self.attention not in ATTENTION_KINDS:
            raise ChatbotError(f"attention must be one of {', '.join(ATTENTION_KINDS)}, not {self.attention!r}")
        if self.hidden_size % 2:
            raise ChatbotError("hidden_size must be even: each encoder direction gets half")
        if not 0.0 <= self.teacher_forcing <= 1.0:
            raise ChatbotError("teacher_forcing must lie in [0, 1]")
        if self.output_rank < 0 or (self.output_rank and self.tie_embeddings):
            raise ChatbotError("output_rank must be 0 (a full output layer) or more, and 0 with tied embeddings")

    @property
    def attentional_size(self) -> int:
        """The tied output layer needs attentional states the size of an embedding."""
        return self.embedding_dim if self.tie_embeddings else self.hidden_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ChatbotError(f"unknown model settings: {', '.join(unknown)}")
        return cls(**values)
