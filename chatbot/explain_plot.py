"""A walk-through's attention and probabilities drawn for slides (`chatbot explain --plot`)."""

from __future__ import annotations

from pathlib import Path


def plot_walk_through(walk: dict, path: Path) -> Path:
    """Two panels: the attention of each reply piece over the message's pieces, and the
    probability of each piece the strategy chose."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = [p["piece"].replace("▁", "_") for p in walk["pieces"]]
    reply = walk["path"]  # the reply's pieces, whatever the strategy
    chosen = [s["piece"] for s in reply]
    rows = [s["attention"] for s in reply]
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8, len(sources) * 0.5 + 4), max(4, len(rows) * 0.35 + 2)))
    left.imshow(rows, cmap="Blues", aspect="auto", vmin=0, vmax=1)
    left.set_xticks(range(len(sources)), sources, rotation=60, ha="right")
    left.set_yticks(range(len(chosen)), [c.replace("▁", "_") for c in chosen])
    left.set_title("attention: reply pieces (rows) over the message's pieces")
    probabilities = [s["p"] for s in reply]
    right.barh(range(len(chosen)), probabilities, color="seagreen")
    right.set_yticks(range(len(chosen)), [c.replace("▁", "_") for c in chosen])
    right.set_ylim(len(chosen) - 0.5, -0.5)  # row for row beside the attention
    right.set_xlim(0, 1)
    right.set_title("probability of each chosen piece")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
