"""Training settings: what `chatbot train` and a config file's "train" section may set, and the
valid range of each. Free of torch, so the command line can check them before torch loads."""

from __future__ import annotations

from dataclasses import dataclass, fields

from chatbot.errors import ChatbotError
from chatbot.i18n import tr
from chatbot.settings import MAX_SEED
from chatbot.validation import check, max_threads

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "tf32", "bf16")


@dataclass
class TrainConfig:
    corpus: str = "chitchat"  # "chitchat", "sample", or a .tsv / .jsonl file
    vocab_size: int = 8000  # SentencePiece pieces (a small corpus may get fewer)
    epochs: int = 20  # upper bound; early stopping or --max-minutes usually ends sooner
    max_minutes: float | None = None  # wall-clock budget from start (tokenizer included)
    max_tokens: int = 6000  # padded source + reply tokens per batch
    lr: float = 3e-3  # peak AdamW learning rate
    min_lr_ratio: float = 0.05  # cosine decay ends at lr * this
    warmup_steps: int = 50  # 200 spent a quarter of a 15-minute run warming up
    weight_decay: float = 0.01
    clip: float = 1.0  # gradient norm clipping
    label_smoothing: float = 0.0
    blank_source: float = 0.1  # share of training sources emptied: the model learns p(reply | no message) too
    talk_before: float = 0.0  # share of single pairs given other pairs as turns before (`with_talk_before`)
    dropout_from_epoch: int = 1  # dropout off before this epoch: while every example is new, nothing to memorise
    eval_every: int = 200  # steps between validation (and checkpoints); also at the end
    patience: int = 6  # evaluations without a better validation loss before stopping
    log_every: int = 25  # steps between metrics lines
    seed: int = 1
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 where the hardware has it) | fp32 | bf16
    threads: int | None = None  # torch CPU threads; None keeps torch's default
    max_valid_pairs: int = 3000  # validation pairs used (the start of the valid split)
    keep: str = "best"  # model.safetensors holds the "best" weights on validation, or the "last" ones
    average_from: float = 0.8  # from this share of the run on, a running average of the weights competes too (1: off)

    def __post_init__(self):
        for name, (kind, low, high) in TRAIN_RANGES.items():
            check(name, getattr(self, name), kind, low, high, optional=name in ("max_minutes", "threads"))
        for name, allowed in (("device", DEVICES), ("precision", PRECISIONS), ("keep", ("best", "last"))):
            if getattr(self, name) not in allowed:
                raise ChatbotError(
                    tr(
                        "{name} must be one of {names}, not {value!r}",
                        name=name,
                        names=", ".join(allowed),
                        value=getattr(self, name),
                    )
                )
        if not isinstance(self.corpus, str):
            raise ChatbotError(tr("corpus must be a name or a file path, not {corpus!r}", corpus=self.corpus))

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        if not isinstance(values, dict):
            raise ChatbotError(tr("training settings must be a JSON object"))
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ChatbotError(tr("unknown training settings: {names}", names=", ".join(map(str, unknown))[:200]))
        return cls(**values)


# name -> (kind, lowest, highest): what a config file or a flag may set
TRAIN_RANGES = {
    "vocab_size": (int, 260, 1_000_000),  # the 4 special pieces and 256 bytes at least
    "epochs": (int, 1, 100_000),
    "max_minutes": (float, 0.01, 1_000_000),
    "max_tokens": (int, 16, 10_000_000),
    "lr": (float, 1e-8, 1.0),
    "min_lr_ratio": (float, 0.0, 1.0),
    "warmup_steps": (int, 0, 10_000_000),
    "weight_decay": (float, 0.0, 10.0),
    "clip": (float, 1e-6, 1e6),
    "label_smoothing": (float, 0.0, 0.99),
    "blank_source": (float, 0.0, 0.9),
    "talk_before": (float, 0.0, 1.0),
    "dropout_from_epoch": (int, 0, 100_000),
    "eval_every": (int, 1, 1_000_000_000),
    "patience": (int, 1, 1_000_000),
    "log_every": (int, 1, 1_000_000_000),
    "seed": (int, 0, MAX_SEED),
    "threads": (int, 1, max_threads()),
    "max_valid_pairs": (int, 1, 1_000_000_000),
    "average_from": (float, 0.0, 1.0),
}
