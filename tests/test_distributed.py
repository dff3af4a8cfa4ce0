"""Two CPU processes under torchrun (gloo): same weights on both ranks, one checkpoint written."""

import re
import subprocess
import sys

from chatbot.modeldir import load_model
from training.train import weights_digest


def test_two_processes_train_in_step_and_only_rank_0_writes(tmp_path):
    out = tmp_path / "ddp"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "chatbot",
            "train",
            "--nproc",
            "2",
            "--corpus",
            "sample",
            "--out",
            str(out),
            "--epochs",
            "2",
            "--max-tokens",
            "600",
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
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    digests = dict(re.findall(r"rank (\d)/2: step \d+, weights digest (\w+)", result.stderr))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"]
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "metrics.jsonl",
        "model.safetensors",
        "tokenizer.model",
        "train_state.pt",
        "training.png",
    ]
    assert not list(out.glob("*.tmp"))
    model, _, _ = load_model(out)
    assert model.num_parameters() > 0 and len(digests["0"]) == len(weights_digest(model))
