"""Shared fixtures: a real tokenizer and a real tiny model, trained once per test session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from chatbot.model import ModelConfig
from chatbot.modeldir import load_model
from chatbot.tokenizer import train_tokenizer
from corpora import load_pairs
from corpora.files import read_jsonl
from corpora.pairs import SAMPLE_PATH
from training.train import TrainConfig, train

torch.set_num_threads(int(os.environ.get("CHATBOT_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def sample_pairs():
    return load_pairs("sample")


@pytest.fixture(scope="session")
def tokenizer(sample_pairs):
    return train_tokenizer(dict.fromkeys(t for p in sample_pairs for t in (p.source, p.reply)), vocab_size=600)


def write_tsv(path: Path, pairs) -> Path:
    path.write_text("".join(f"{p.source}\t{p.reply}\n" for p in pairs), encoding="utf-8")
    return path


TINY = dict(embedding_dim=48, hidden_size=96, layers=1, dropout=0.0)


def train_by_heart(out: Path, corpus: Path, context_turns: int) -> Path:
    """The real training loop, in fp32 (bf16 where the CPU has it would make a model that differs
    from one machine to the next), until a tiny model knows its corpus by heart."""
    cfg = TrainConfig(
        corpus=str(corpus),
        vocab_size=600,
        epochs=400,
        max_tokens=4000,
        lr=1e-2,
        warmup_steps=10,
        weight_decay=0.0,
        eval_every=50,
        patience=100,
        log_every=10,
        seed=3,
        device="cpu",
        precision="fp32",
    )
    model_cfg = ModelConfig(embedding_dim=64, hidden_size=128, layers=1, dropout=0.0, context_turns=context_turns)
    train(out, model_cfg, cfg, quiet=True)
    return out


@pytest.fixture(scope="session")
def overfit_dir(tmp_path_factory, sample_pairs):
    """A tiny model that knows 30 sample pairs by heart and reads the message alone: its reply to
    a message is the same whatever was said before, which the tests of the chat rely on."""
    root = tmp_path_factory.mktemp("overfit")
    return train_by_heart(root / "model", write_tsv(root / "thirty.tsv", sample_pairs[:30]), context_turns=0)


@pytest.fixture(scope="session")
def context_dir(tmp_path_factory, sample_pairs):
    """A tiny model that reads two earlier turns, trained on the first sample conversations (their
    pairs with the turns before them) and on each of their pairs alone."""
    root = tmp_path_factory.mktemp("context")
    lines = SAMPLE_PATH.read_text(encoding="utf-8").splitlines()[:5]
    pairs = read_jsonl(SAMPLE_PATH)[: sum(len(json.loads(line)) - 1 for line in lines)]
    alone = [json.dumps([p.source, p.reply]) for p in pairs]
    corpus = root / "conversations.jsonl"
    corpus.write_text("\n".join(lines + alone) + "\n", encoding="utf-8")
    return train_by_heart(root / "model", corpus, context_turns=2)


@pytest.fixture(scope="session")
def context_model(context_dir):
    model, tokenizer, _ = load_model(context_dir)
    return model, tokenizer


@pytest.fixture(scope="session")
def overfit_model(overfit_dir):
    model, tokenizer, _ = load_model(overfit_dir)
    return model, tokenizer


@pytest.fixture()
def random_model(tokenizer):
    """An untrained tiny model: enough for checks of shapes, padding and saving."""
    from chatbot.model import Seq2Seq

    torch.manual_seed(0)
    return Seq2Seq(ModelConfig(vocab_size=tokenizer.vocab_size, **TINY)).eval()


@pytest.fixture(autouse=True)
def errors_in_tmp(tmp_path, monkeypatch):
    """The chat's error file (tracebacks of unexpected errors) in the test's own directory."""
    from chatbot.app import errors

    monkeypatch.setattr(errors, "error_file", lambda: tmp_path / "chat-errors.log")


@pytest.fixture(autouse=True)
def english_locale(monkeypatch):
    """Every test starts in English, whatever the locale of the machine running it."""
    from chatbot.i18n import set_language

    for name in ("LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")
    set_language("en")
    yield
    set_language("en")
