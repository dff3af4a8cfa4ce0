"""Shared fixtures: a real tokenizer and a real tiny model, trained once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from chatbot.model import ModelConfig
from chatbot.modeldir import load_model
from chatbot.tokenizer import train_tokenizer
from corpora import load_pairs
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


@pytest.fixture(scope="session")
def overfit_dir(tmp_path_factory, sample_pairs):
    """A tiny model trained by the real training loop until it knows 30 sample pairs by heart."""
    root = tmp_path_factory.mktemp("overfit")
    corpus = write_tsv(root / "thirty.tsv", sample_pairs[:30])
    out = root / "model"
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
    )
    train(out, ModelConfig(embedding_dim=64, hidden_size=128, layers=1, dropout=0.0), cfg, quiet=True)
    return out


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
    from chatbot.app import chat_app

    monkeypatch.setattr(chat_app, "error_file", lambda: tmp_path / "chat-errors.log")


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
