"""Retraining at scale: log N exchanges through the storage API (message: a chitchat valid source;
bot: the model's greedy reply; the user's correction: the real reply), then time
`chatbot retrain` on them with its defaults (or the flags given) and print its report: taught
recall, chitchat test perplexity before and after, leak.
Appends the figures to bench/results/retrain.jsonl.

`--style as-is` logs the valid pairs unchanged: the user talks like the training corpus, so there
is little left to learn. `--style casual` logs them the way many people type in a chat window
(lower case, no punctuation), the same words in a style of the user's own, which is what
retraining is for."""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from report import write as write_report  # bench/report.py, beside this script

from chatbot.decoding import GreedySettings, reply
from chatbot.modeldir import load_model
from chatbot.paths import BUNDLED_MODEL
from chatbot.storage import Storage
from corpora import Pair, load_pairs

PUNCTUATION = str.maketrans("", "", '.,!?;:"')


def casual(text: str) -> str:
    """How many people type in a chat: lower case, no punctuation."""
    return " ".join(text.lower().translate(PUNCTUATION).split()) or text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--max-minutes", type=float, help="chatbot retrain's default unless given")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, help="most passes over the logged pairs (chatbot retrain's default)")
    parser.add_argument(
        "--dropout", type=float, help="dropout while fine-tuning (chatbot retrain's default: the model's own)"
    )
    parser.add_argument("--style", choices=("as-is", "casual"), default="as-is", help="how the logged user writes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer, _ = load_model(args.model)
    pairs = load_pairs("chitchat", "valid")[: args.pairs]
    if args.style == "casual":
        pairs = [Pair(casual(p.source), casual(p.reply)) for p in pairs]
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "chat.db"
        store = Storage(db)
        conversation = store.new_conversation("benchmark")
        for i in range(0, len(pairs), 64):
            chunk = pairs[i : i + 64]
            for pair, r in zip(chunk, reply(model, tokenizer, [p.source for p in chunk], GreedySettings())):
                u = store.add_message(conversation, "user", pair.source)
                b = store.add_message(conversation, "bot", r[0].text, reply_to=u)
                store.correct(b, pair.reply)
        store.close()
        out = Path(tmp) / "retrained"
        start = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "chatbot",
                "retrain",
                "--db",
                str(db),
                "--model",
                str(args.model),
                "--out",
                str(out),
                "--no-human-turns",
                *(["--max-minutes", str(args.max_minutes)] if args.max_minutes is not None else []),
                *(["--epochs", str(args.epochs)] if args.epochs is not None else []),
                "--threads",
                str(args.threads),
                "--quiet",
                "--force",
                *(["--dropout", str(args.dropout)] if args.dropout is not None else []),
            ],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        print(result.stdout)
        if result.returncode not in (0, 1):
            sys.exit(result.stderr)
        figures = json.loads((out / "retrain.json").read_text())["results"]
    test = figures["test_after"] / figures["test_before"] - 1
    print(
        f"{args.pairs} logged corrections ({args.style}), retrain wall clock {seconds / 60:.1f} min "
        f"({args.threads} threads, cpu): taught recall {figures['taught_recall_before']:.0%} -> "
        f"{figures['taught_recall_after']:.0%}, chitchat test ppl {100 * test:+.1f}%, leak {figures['leak']:.1%}"
    )
    with open(Path(__file__).parent / "results" / "retrain.jsonl", "a") as f:
        f.write(
            json.dumps(
                {
                    "date": datetime.date.today().isoformat(),
                    "pairs": args.pairs,
                    "style": args.style,
                    "threads": args.threads,
                    "max_minutes": args.max_minutes,
                    "epochs": args.epochs,
                    "dropout": args.dropout,
                    "model": str(args.model),
                    "wall_seconds": seconds,
                    **figures,
                }
            )
            + "\n"
        )
    write_report()  # bench/RESULTS.md


if __name__ == "__main__":
    main()
