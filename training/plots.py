"""training.png: the loss and validation perplexity curves of metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path


def plot_metrics(metrics: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    records = (
        [json.loads(line) for line in Path(metrics).read_text().splitlines() if line.strip()]
        if Path(metrics).exists()
        else []
    )
    train = [r for r in records if "loss" in r]
    valid = [r for r in records if "valid_loss" in r]
    fig, (ax_loss, ax_ppl) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", lw=1)
    ax_loss.plot([r["step"] for r in valid], [r["valid_loss"] for r in valid], "o-", label="valid loss")
    averaged = [r for r in valid if "average_loss" in r]
    if averaged:
        ax_loss.plot(
            [r["step"] for r in averaged], [r["average_loss"] for r in averaged], "s-", label="averaged weights"
        )
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("cross-entropy per token (nats)")
    ax_loss.legend()
    ax_ppl.plot([r["seconds"] / 60 for r in valid], [r["valid_word_ppl"] for r in valid], "o-", color="C2")
    if averaged:
        minutes = [r["seconds"] / 60 for r in averaged]
        ax_ppl.plot(minutes, [r["average_word_ppl"] for r in averaged], "s-", color="C3", label="averaged weights")
        ax_ppl.legend()
    ax_ppl.set_xlabel("wall-clock minutes")
    ax_ppl.set_ylabel("validation word-level perplexity")
    ax_ppl.set_yscale("log")
    for ax in (ax_loss, ax_ppl):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
