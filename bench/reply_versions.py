"""Two versions of the runtime side by side: the `chatbot` package (and its bundled model) as of
an earlier git revision against the working tree's, imported into one process under different
names. First each version replies once to every message with each strategy (a fixed seed for
sampling), and the replies are compared piece for piece: a change meant to keep behaviour keeps
them all. Then their latencies are timed taking turns message by message, so that a machine whose
speed drifts touches both alike. Prints a table and appends it to bench/results/reply_versions.jsonl.

    python bench/reply_versions.py --old 2f23bb7
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import io
import json
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch
from machine import cpu_times, steal_share  # bench/machine.py, beside this script
from reply_latency import interleaved_latencies, percentile
from report import write as write_report  # bench/report.py, beside this script

from corpora import load_pairs

ROOT = Path(__file__).resolve().parent.parent
OLD = "chatbot_old"
STRATEGIES = ("greedy", "beam-5", "sample", "consensus")


def unpack_old(revision: str, into: Path) -> Path:
    """`chatbot/` as of `revision`, renamed to chatbot_old with its imports rewritten to match."""
    try:
        archive = subprocess.run(
            ["git", "archive", revision, "chatbot"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except subprocess.CalledProcessError as err:
        sys.exit(f"git archive {revision}: {err.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    package = into / OLD
    (into / "chatbot").rename(package)
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(re.sub(r"\b(from|import) chatbot\b", rf"\1 {OLD}", text), encoding="utf-8")
    return package


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="git revision of the earlier version")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--messages", type=int, default=60)
    parser.add_argument("--max-length", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="int8")
    parser.add_argument(
        "--batch", type=int, default=1, help="messages per reply call (consecutive test messages); times are per call"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    messages = [p.source for p in load_pairs("chitchat", "test")[: args.messages * args.batch]]
    messages = [
        messages[i : i + args.batch] for i in range(0, len(messages), args.batch)
    ]  # each run replies to one batch
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        package = unpack_old(args.old, Path(tmp))
        sys.path.insert(0, tmp)
        for tag, name, model_dir in (
            ("old", OLD, package / "default_model"),
            ("new", "chatbot", ROOT / "chatbot" / "default_model"),
        ):
            modeldir, decoding = (importlib.import_module(f"{name}.{m}") for m in ("modeldir", "decoding"))
            try:  # since the engines: the model as replies run it
                model, tokenizer, _ = importlib.import_module(f"{name}.engine").load_engine(
                    model_dir, precision=args.precision
                )
            except ModuleNotFoundError:  # before: load_model quantized the model itself
                model, tokenizer, _ = modeldir.load_model(model_dir, precision=args.precision)
            common = dict(max_length=args.max_length)
            for strategy, settings in (
                ("greedy", decoding.GreedySettings(**common)),
                ("beam-5", decoding.BeamSettings(beam_size=5, **common)),
                ("sample", decoding.SampleSettings(seed=1, candidates=1, **common)),
                ("consensus", decoding.SampleSettings(seed=1, **common)),
            ):
                runs[f"{strategy} {tag}"] = (
                    lambda m, model=model, tokenizer=tokenizer, s=settings, reply=decoding.reply: reply(
                        model, tokenizer, m, s
                    )
                )
        same = {}
        for strategy in STRATEGIES:
            old, new = runs[f"{strategy} old"], runs[f"{strategy} new"]
            pairs = [(old(m), new(m)) for m in messages]
            same[strategy] = sum(
                [r[0].tokens for r in a] == [r[0].tokens for r in b] for a, b in pairs
            )  # every message of the batch, piece for piece
        counters = cpu_times()
        timings = interleaved_latencies(runs, messages, args.repeats)
        steal = steal_share(counters, cpu_times())
    print(
        f"reply latency, {args.old} against the working tree ({args.threads} threads, cpu, {args.precision}, "
        f"{len(messages)} {'batches of ' + str(args.batch) + ' ' if args.batch > 1 else ''}chitchat test messages, "
        f"replies up to {args.max_length} tokens)"
    )
    summary = {}
    for name in sorted(timings):
        times = timings[name]
        summary[name] = {"median_ms": statistics.median(times) * 1000, "p95_ms": percentile(times, 0.95) * 1000}
        print(f"  {name:14s} median {summary[name]['median_ms']:7.1f} ms   p95 {summary[name]['p95_ms']:7.1f} ms")
    for strategy in STRATEGIES:
        old, new = summary[f"{strategy} old"]["median_ms"], summary[f"{strategy} new"]["median_ms"]
        print(f"  {strategy}: {new / old - 1:+.1%} median; the same replies to {same[strategy]} of {len(messages)}")
    if steal is not None:
        print(f"  CPU steal while measuring: {steal:.0%}")
    out = Path(__file__).parent / "results" / "reply_versions.jsonl"
    with open(out, "a") as f:
        f.write(
            json.dumps(
                {
                    "date": datetime.date.today().isoformat(),
                    "old": args.old,
                    "threads": args.threads,
                    "precision": args.precision,
                    "messages": len(messages),
                    "batch": args.batch,
                    "repeats": args.repeats,
                    "cpu_steal": steal,
                    "latency": summary,
                    "same_replies": same,
                }
            )
            + "\n"
        )
    write_report()  # bench/RESULTS.md


if __name__ == "__main__":
    main()
