"""A model's settings: its sizes and choices, as config.json stores them.

Free of torch, so that commands can read and check a model directory before torch loads. A
config.json is untrusted input: every setting's type and range is checked, and the parameter
count the settings imply is bounded, before any weight is allocated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from chatbot.errors import ChatbotError
from chatbot.i18n import tr
from chatbot.validation import check

ATTENTION_KINDS = ("dot", "general", "additive")
MAX_PARAMETERS = 250_000_000  # 1 GB of fp32 weights: far above any model this project trains on a CPU

# name -> (kind, lowest, highest)
RANGES = {
    "vocab_size": (int, 5, 1_000_000),
    "embedding_dim": (int, 1, 8192),
    "hidden_size": (int, 2, 8192),
    "layers": (int, 1, 8),
    "input_feeding": (bool, None, None),
    "tie_embeddings": (bool, None, None),
    "output_rank": (int, 0, 8192),
    "dropout": (float, 0.0, 0.95),
    "teacher_forcing": (float, 0.0, 1.0),
    "max_source_tokens": (int, 1, 4096),
    "max_reply_tokens": (int, 1, 4096),
    "context_turns": (int, 0, 8),
    "unconditional": (bool, None, None),
    "guided": (bool, None, None),
    "copy_attention": (bool, None, None),
}


@dataclass
class ModelConfig:
    vocab_size: int = 8000  # SentencePiece pieces, specials included
    embedding_dim: int = 256  # one embedding table, shared by encoder and decoder
    hidden_size: int = 512  # decoder LSTM size; each encoder direction has half of it
    layers: int = 1  # LSTM layers in the encoder and in the decoder
    attention: str = "general"  # Luong "dot" or "general", or Bahdanau "additive"
    input_feeding: bool = False  # feed the last attentional state into the next step (slower)
    tie_embeddings: bool = False  # output projection shares the embedding matrix (learned slower)
    output_rank: int = 0  # >0: the output layer as two thinner matrices (LowRankLinear); 0: one full matrix
    dropout: float = 0.2  # on embeddings, between LSTM layers and on attentional states
    teacher_forcing: float = 1.0  # chance of feeding the gold token rather than the model's own
    max_source_tokens: int = 64  # longer messages keep their last tokens
    max_reply_tokens: int = 48  # longest reply generated, and trained on
    context_turns: int = 2  # earlier turns of the conversation read with the message (0: the message alone)
    unconditional: bool = False  # it also learned replies to no message (training's blank_source), for guidance
    guided: bool = True  # guidance and reranking apply to it; off where they were measured to harm its replies
    copy_attention: bool = False  # a gate mixes the softmax with the attention over the source's pieces (`Copy`)

    @property
    def guides(self) -> bool:
        """Whether its replies run with guidance and reranking: it learned replies to no message,
        and they were not switched off for it."""
        return self.unconditional and self.guided

    def __post_init__(self):
        if self.attention not in ATTENTION_KINDS:
            raise ChatbotError(
                tr(
                    "attention must be one of {names}, not {attention!r}",
                    names=", ".join(ATTENTION_KINDS),
                    attention=self.attention,
                )
            )
        for name, (kind, low, high) in RANGES.items():
            check(name, getattr(self, name), kind, low, high)
        if self.hidden_size % 2:
            raise ChatbotError(tr("hidden_size must be even: each encoder direction gets half"))
        if self.output_rank and self.tie_embeddings:
            raise ChatbotError(tr("output_rank must be 0 (a full output layer) with tied embeddings"))
        if self.output_rank > min(self.vocab_size, self.attentional_size):
            raise ChatbotError(tr("output_rank must not exceed the vocabulary or the attentional size"))
        if self.parameters() > MAX_PARAMETERS:
            raise ChatbotError(
                tr(
                    "these sizes make {parameters:,} parameters, more than the {limit:,} allowed",
                    parameters=self.parameters(),
                    limit=MAX_PARAMETERS,
                )
            )

    @property
    def attentional_size(self) -> int:
        """The tied output layer needs attentional states the size of an embedding."""
        return self.embedding_dim if self.tie_embeddings else self.hidden_size

    def parameters(self) -> int:
        """How many parameters a model of these settings has (`Seq2Seq.num_parameters`), counted
        from the settings alone: sizes are checked before anything is allocated."""
        V, E, H, A, L, r = (
            self.vocab_size,
            self.embedding_dim,
            self.hidden_size,
            self.attentional_size,
            self.layers,
            self.output_rank,
        )

        def lstm(inputs: int, size: int) -> int:  # weights and both biases of one LSTM layer
            return 4 * size * (inputs + size) + 8 * size

        encoder = 2 * sum(lstm(E if layer == 0 else H, H // 2) for layer in range(L))
        decoder = sum(lstm((E + (A if self.input_feeding else 0)) if layer == 0 else H, H) for layer in range(L))
        attention = {"dot": 0, "general": H * H, "additive": 2 * H * H + 2 * H}[self.attention]
        bridge, combine = 2 * (H * H + H), 2 * H * A
        out = V if self.tie_embeddings else (A * r + r * V + V if r else A * V + V)
        copy = A + 1 if self.copy_attention else 0
        return V * E + encoder + bridge + decoder + attention + combine + out + copy

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        if not isinstance(values, dict):
            raise ChatbotError(tr("model settings must be a JSON object"))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ChatbotError(tr("unknown model settings: {names}", names=", ".join(map(str, unknown))[:200]))
        return cls(**values)

    @classmethod
    def from_saved(cls, values: dict) -> ModelConfig:
        """The settings of a saved model (config.json): one saved before models read earlier turns
        has no `context_turns`, and read the message alone."""
        if not isinstance(values, dict):
            raise ChatbotError(tr("model settings must be a JSON object"))
        return cls.from_dict({"context_turns": 0, **values})
