"""Files the program writes: exports never write through what a path points at, a model
directory has one writer at a time and one rule for its files' permissions, and a training run
that trained nothing says so."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatbot.storage import Storage
from tests.conftest import write_tsv
from tests.test_faults import run

THREADS = os.environ.get("CHATBOT_TEST_THREADS", "2")


@pytest.fixture()
def small_log(tmp_path, sample_pairs) -> Path:
    """A log whose three corrections are pairs to export or retrain on."""
    store = Storage(tmp_path / "log.db")
    conversation = store.new_conversation()
    for pair in sample_pairs[:3]:
        user = store.add_message(conversation, "user", pair.source)
        bot = store.add_message(conversation, "bot", "no idea", reply_to=user)
        store.correct(bot, pair.reply)
    store.close()
    return tmp_path / "log.db"


def test_an_export_replaces_a_symlink_never_its_target(small_log, tmp_path, capsys):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    target.chmod(0o644)
    link = tmp_path / "link.tsv"
    link.symlink_to(target)
    code, lines = run(["retrain", "--db", str(small_log), "--export", str(link)], capsys)
    assert code == 1 and "not a regular file" in lines[-1]
    assert target.read_text() == "keep me" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert link.is_symlink()


def test_an_export_to_a_device_leaves_the_device_alone(small_log, capsys):
    before = os.stat("/dev/full")
    code, lines = run(["retrain", "--db", str(small_log), "--export", "/dev/full"], capsys)
    assert code == 1 and "not a regular file" in lines[-1]
    assert os.stat("/dev/full").st_mode == before.st_mode


def test_an_export_replaces_a_file_as_a_new_owner_only_file(small_log, tmp_path, capsys):
    old = tmp_path / "pairs.tsv"
    old.write_text("old pairs\n")
    old.chmod(0o644)
    twin = tmp_path / "hard-link.tsv"
    os.link(old, twin)  # another name for the old file: it keeps the old text
    code, _ = run(["retrain", "--db", str(small_log), "--export", str(old)], capsys)
    assert code == 0
    assert "old pairs" not in old.read_text() and len(old.read_text().splitlines()) >= 3
    assert stat.S_IMODE(old.stat().st_mode) == 0o600
    assert twin.read_text() == "old pairs\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_out_that_is_a_file_is_one_line(small_log, overfit_dir, tmp_path, capsys):
    out = tmp_path / "f"
    out.touch()
    code, lines = run(["retrain", "--db", str(small_log), "--model", str(overfit_dir), "--out", str(out)], capsys)
    assert code == 1 and len(lines) == 1 and "not a directory" in lines[0], lines
    code, lines = run(["train", "--corpus", "sample", "--out", str(out), "--epochs", "1"], capsys)
    assert code == 1 and len(lines) == 1 and "not a directory" in lines[0], lines


def test_two_retrains_into_one_directory_one_is_refused(small_log, overfit_dir, tmp_path):
    out = tmp_path / "mix"
    argv = [sys.executable, "-m", "chatbot", "retrain", "--db", str(small_log), "--model", str(overfit_dir)]
    argv += ["--out", str(out), "--no-benchmark", "--replay", "", "--epochs", "40", "--quiet", "--threads", "1"]
    argv += ["--every-correction"]  # trained, whatever the tiny model would have begun
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "config.json").exists() and time.monotonic() < deadline:  # the first holds the directory
        time.sleep(0.1)
    second = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    first_out, first_err = first.communicate(timeout=300)
    assert second.returncode == 1 and second.stderr.count("\n") == 1, second.stderr
    assert "another run is writing" in second.stderr
    assert "registered" in first_out or "not registered" in first_out, first_err
    rows = Storage(small_log).models()
    assert len(rows) <= 1 and all(r["path"] == str(out.resolve()) for r in rows)


def test_every_file_of_a_model_directory_has_the_same_permissions(overfit_dir):
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in overfit_dir.iterdir() if p.is_file()}
    assert {"model.safetensors", "config.json", "tokenizer.model"} <= set(modes)
    assert set(modes.values()) == {0o666 & ~umask}, modes


def test_a_budget_that_ends_before_the_first_step_saves_no_model(tmp_path, sample_pairs, capsys):
    from chatbot.errors import ChatbotError
    from chatbot.model import ModelConfig
    from training.train import TrainConfig, Trainer

    corpus = write_tsv(tmp_path / "pairs.tsv", sample_pairs)
    out = tmp_path / "never"
    cfg = TrainConfig(corpus=str(corpus), vocab_size=600, max_minutes=0.01, device="cpu", precision="fp32")
    trainer = Trainer(out, ModelConfig(embedding_dim=16, hidden_size=32, layers=1), cfg, quiet=True)
    time.sleep(0.7)  # the budget (0.6 s, tokenizer included) is spent before the first step
    with pytest.raises(ChatbotError, match="ended before the first training step"):
        trainer.train()
    assert not (out / "model.safetensors").exists()
    code, lines = run(["reply", "--model", str(out), "hello"], capsys)
    assert code == 1 and len(lines) == 1 and "model.safetensors: missing" in lines[0], lines


def test_nproc_is_bounded_by_the_cores_without_cuda(tmp_path, capsys):
    cores = os.cpu_count() or 1
    code, lines = run(
        ["train", "--corpus", "sample", "--out", str(tmp_path / "o"), "--nproc", str(cores + 1), "--device", "cpu"],
        capsys,
    )
    assert code == 1 and len(lines) == 1 and f"has {cores} cores" in lines[0], lines
    assert not (tmp_path / "o").exists()


def test_a_json_config_with_a_huge_integer_is_one_line(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text('{"train": {"epochs": ' + "9" * 5000 + "}}")
    code, lines = run(["train", "--config", str(config), "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and len(lines) == 1 and "cannot read config" in lines[0], lines


def test_evaluate_shows_progress_on_a_terminal_even_with_json(overfit_dir):
    """stderr a terminal (a pty), stdout a pipe: the JSON on stdout, a progress bar on stderr;
    --quiet: none."""
    import fcntl
    import pty
    import struct
    import termios

    for quiet in (False, True):
        controller, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a terminal's size
        proc = subprocess.Popen(
            [sys.executable, "-m", "chatbot", "evaluate", "--model", str(overfit_dir), "--corpus", "sample", "--json"]
            + ["--threads", THREADS]
            + (["--quiet"] if quiet else []),
            stdout=subprocess.PIPE,
            stderr=terminal,
        )
        os.close(terminal)
        out, _ = proc.communicate(timeout=300)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 1 << 16)
            except OSError:  # the terminal's other end closed
                break
            if not chunk:
                break
            shown += chunk
        os.close(controller)
        assert proc.returncode == 0 and json.loads(out)["word_ppl"] > 0
        assert (b"perplexity" in shown and b"%|" in shown) != quiet, shown[-500:]
