import json
import os
import signal
import subprocess
import sys
import time

import pytest

from chatbot.decoding import GreedySettings, reply
from chatbot.modeldir import read_config


def test_tiny_model_overfits_thirty_pairs_until_greedy_reproduces_every_reply(overfit_model, sample_pairs):
    model, tokenizer = overfit_model
    pairs = sample_pairs[:30]
    replies = reply(model, tokenizer, [p.source for p in pairs], GreedySettings(max_length=48))
    wrong = [(p.source, p.reply, r[0].text) for p, r in zip(pairs, replies) if r[0].text != p.reply]
    assert not wrong


def test_model_directory_is_complete(overfit_dir):
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.model",
        "metrics.jsonl",
        "training.png",
        "train_state.pt",
    ):
        assert (overfit_dir / name).exists(), name
    records = [json.loads(line) for line in (overfit_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"step", "loss", "tokens_per_s", "lr"} <= set(records[0])
    assert any("valid_word_ppl" in r for r in records)
    config = read_config(overfit_dir)
    assert config["train"]["seed"] == 3 and config["parameters"] > 0


def chatbot(*args, **kwargs):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "chatbot", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs
    )


TRAIN = [
    "train",
    "--corpus",
    "sample",
    "--epochs",
    "6",
    "--max-tokens",
    "500",
    "--embedding-dim",
    "24",
    "--hidden-size",
    "32",
    "--vocab-size",
    "600",
    "--eval-every",
    "10",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--quiet",
    "--seed",
    "7",
    "--dropout",
    "0.1",
]


def last_losses(out):
    """The last training loss, and the last validation of the weights and of their running average."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    final = [r for r in records if "loss" in r][-1]
    checked = [r for r in records if "average_loss" in r][-1]
    return final["step"], round(final["loss"], 6), round(checked["valid_loss"], 6), round(checked["average_loss"], 6)


def test_killed_and_resumed_run_matches_an_uninterrupted_one(tmp_path):
    """Killed once the weights are being averaged, so the average, too, must survive the checkpoint."""
    averaged = [*TRAIN, "--average-from", "0.3"]
    straight = tmp_path / "straight"
    assert chatbot(*averaged, "--out", str(straight)).wait() == 0
    broken = tmp_path / "broken"
    proc = chatbot(*averaged, "--out", str(broken))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait for a checkpoint with an average in it, then kill -9
        metrics = broken / "metrics.jsonl"
        if (broken / "train_state.pt").exists() and metrics.exists() and '"average_loss"' in metrics.read_text():
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "training finished before it could be killed"
    assert chatbot(*averaged, "--out", str(broken), "--resume").wait() == 0
    assert last_losses(broken) == last_losses(straight)


def test_the_running_average_of_the_weights_is_validated_and_kept_when_it_is_better(tmp_path, sample_pairs):
    """From `average_from` on, every step joins a running mean of the weights; each validation
    measures it beside the step's own weights, and the better of the two may become the best model."""
    import torch

    from chatbot.model import ModelConfig
    from chatbot.modeldir import load_model
    from training.evaluate import total_nll
    from training.train import TrainConfig, Trainer

    cfg = TrainConfig(
        corpus="sample",
        vocab_size=300,
        epochs=4,
        max_tokens=300,
        eval_every=3,
        log_every=1000,
        device="cpu",
        threads=1,
        average_from=0.5,
        lr=0.01,
    )
    trainer = Trainer(
        tmp_path / "avg",
        ModelConfig(embedding_dim=16, hidden_size=16),
        cfg,
        quiet=True,
        pairs=(sample_pairs[:60], sample_pairs[60:70]),
    )
    seen = []  # every step's weights, to check the mean by hand
    step = trainer.optimizer.step

    def stepped(*args, **kwargs):
        result = step(*args, **kwargs)
        seen.append((trainer.progress(), [p.detach().clone() for p in trainer.model.parameters()]))
        return result

    trainer.optimizer.step = stepped
    trainer.train()
    late = [weights for progress, weights in seen if progress >= 0.5]
    assert 0 < len(late) < len(seen) and int(trainer.average.n_averaged) == len(late)
    for mean, *steps in zip(trainer.average.module.parameters(), *late):
        torch.testing.assert_close(mean, torch.stack(steps).mean(0))
    records = [json.loads(line) for line in (tmp_path / "avg" / "metrics.jsonl").read_text().splitlines()]
    checked = [r for r in records if "valid_loss" in r]
    assert "average_loss" not in checked[0] and "average_loss" in checked[-1]
    best = read_config(tmp_path / "avg")["best"]
    model, _, _ = load_model(tmp_path / "avg", device="cpu")
    nll, tokens = total_nll(model, trainer.valid_examples)  # the weights kept are the ones that scored best
    chosen = best["average_loss"] if best["weights"] == "average" else best["valid_loss"]
    assert nll / tokens == pytest.approx(chosen, rel=1e-5) and chosen == trainer.best_loss
    assert chosen == min(min(r["valid_loss"], r.get("average_loss", r["valid_loss"])) for r in checked)


def test_time_budget_stops_training(tmp_path):
    out = tmp_path / "budget"
    proc = chatbot(*TRAIN[:-2], "--epochs", "1000", "--max-minutes", "0.1", "--out", str(out))
    assert proc.wait(timeout=120) == 0
    assert (out / "model.safetensors").exists()
    config = read_config(out)
    assert config["best"]["seconds"] < 0.1 * 60 + 10
    # a model trained by the command reads two earlier turns and learned replies to no message
    assert config["model"]["context_turns"] == 2 and config["model"]["unconditional"] is True


def test_dropout_is_off_before_dropout_from_epoch_and_on_after(tmp_path, sample_pairs):
    """Late dropout switches every dropout in the model: its layers and a 2-layer decoder LSTM's own."""
    import torch

    from chatbot.model import ModelConfig
    from training.train import TrainConfig, Trainer

    cfg = TrainConfig(
        corpus="sample", vocab_size=300, epochs=2, eval_every=1000, log_every=1000, device="cpu", threads=1
    )
    trainer = Trainer(
        tmp_path / "late",
        ModelConfig(embedding_dim=16, hidden_size=16, layers=2, dropout=0.3),
        cfg,
        quiet=True,
        pairs=(sample_pairs[:40], sample_pairs[40:50]),
    )

    def rates():
        return {m.p for m in trainer.model.modules() if isinstance(m, torch.nn.Dropout)} | {
            trainer.model.decoder.lstm.dropout
        }

    for epoch, expected in ((0, {0.0}), (1, {0.3})):
        trainer.set_dropout(epoch >= cfg.dropout_from_epoch)
        assert rates() == expected


def test_training_from_a_model_with_a_thinner_output_layer(overfit_dir, tmp_path, sample_pairs):
    """`--from` keeps the model and its tokenizer and starts from its weights; `--output-rank`
    turns the output layer into its best low-rank approximation, then trains on; a copy gate and
    more turns read may be added."""
    from chatbot.engine import load_engine

    out = tmp_path / "thin"
    common = [
        "train",
        "--from",
        str(overfit_dir),
        "--corpus",
        "sample",
        "--epochs",
        "1",
        "--max-tokens",
        "2000",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--quiet",
        "--out",
        str(out),
    ]
    proc = chatbot(*common, "--output-rank", "32")
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
    model, tokenizer, config = load_engine(out, precision="int8")
    assert config["model"]["output_rank"] == 32 and config["model"]["hidden_size"] == 128
    assert (out / "tokenizer.model").read_bytes() == (overfit_dir / "tokenizer.model").read_bytes()
    assert reply(model, tokenizer, [sample_pairs[0].source], GreedySettings())[0][0].text
    proc = chatbot(*common, "--copy-attention", "--context-turns", "3")  # a copy gate and more turns: new settings
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
    model, tokenizer, config = load_engine(out, precision="int8")
    assert config["model"]["copy_attention"] and config["model"]["context_turns"] == 3 and model.model.copy is not None
    assert reply(model, tokenizer, [sample_pairs[0].source], GreedySettings(), contexts=[["a", "b", "c"]])[0][0].text
    proc = chatbot(*common, "--hidden-size", "64")
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1 and "--from keeps" in stderr and "Traceback" not in stderr


def test_tf32_is_refused_without_a_gpu_that_has_it():
    import pytest
    import torch

    from chatbot.device import resolve_precision
    from chatbot.errors import ChatbotError

    with pytest.raises(ChatbotError, match="tf32 needs a CUDA GPU"):
        resolve_precision("tf32", torch.device("cpu"))
    assert resolve_precision("auto", torch.device("cpu")) in ("bf16", "fp32")
