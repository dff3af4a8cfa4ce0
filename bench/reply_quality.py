"""Decoding strategies side by side on what a person checks: the behavioural probes
(`corpora/probes.jsonl`, English by default), and replies to the first chitchat test messages
with their turns: unigram F1, repetition rate, generic rate, length, and latency per message
(one message at a time, as the chat replies). Consensus sampling runs with each utility it can
rank its candidates by: unigram F1 (as it was), F1 with word pairs, and either with the
candidates that repeat themselves ranked last. The replies are saved beside the figures for
reading (bench/results/reply_quality_replies.jsonl). Appends to bench/results/reply_quality.jsonl.

    python bench/reply_quality.py --messages 200
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import torch
from machine import cpu_times, steal_share  # bench/machine.py, beside this script
from reply_latency import percentile
from report import write as write_report  # bench/report.py, beside this script

from chatbot.decoding import reply, settings_from, strategies
from chatbot.engine import load_engine
from corpora import load_pairs
from training.evaluate import chitchat_common_words, generation_measures
from training.probes import read_probes, run_probes

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

# name -> (strategy, settings, consensus's word-pair weight, candidates that repeat ranked last, and
# those that ended where the model gave ending less than this: 0 off); the defaults of
# chatbot/settings.py otherwise (repetition penalty 1.5, 16 candidates)
VARIANTS = {
    "greedy, no repetition penalty": ("greedy", {"repetition_penalty": 1.0}, 0.5, True, 0.0),
    "greedy": ("greedy", {}, 0.5, True, 0.0),
    "greedy, repetition penalty 2": ("greedy", {"repetition_penalty": 2.0}, 0.5, True, 0.0),
    "beam-5": ("beam", {}, 0.5, True, 0.0),
    "consensus F1, 48, no repetition penalty (the default before)": (
        "sample",
        {"candidates": 48, "repetition_penalty": 1.0},
        0.0,
        False,
        0.0,
    ),
    "consensus F1 + pairs, repeats last, 48": ("sample", {"candidates": 48}, 0.5, True, 0.0),
    "consensus F1, 16": ("sample", {}, 0.0, False, 0.0),
    "consensus F1 + pairs, repeats last, 16": ("sample", {}, 0.5, True, 0.0),
    "consensus F1 + pairs, repeats and abrupt endings last, 16 (the default)": ("sample", {}, 0.5, True, 0.05),
    "consensus F1 + pairs, repeats last, 8": ("sample", {"candidates": 8}, 0.5, True, 0.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "chatbot" / "default_model")
    parser.add_argument("--probes", type=Path, default=ROOT / "corpora" / "probes.jsonl")
    parser.add_argument("--messages", type=int, default=200, help="first chitchat test messages replied to")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    engine, tokenizer, _ = load_engine(args.model, "cpu", "int8")
    probes = [p for p in read_probes(args.probes) if not p.kind.startswith("korean")]
    pairs = load_pairs("chitchat", "test")[: args.messages]
    common = chitchat_common_words()
    results, replies_of = {}, {}
    start_cpu = cpu_times()
    for name in args.variants:
        strategy, values, pairs_weight, repeats_last, abrupt = VARIANTS[name]
        strategies.CONSENSUS_PAIRS, strategies.REPETITION_LAST = pairs_weight, repeats_last
        strategies.ABRUPT_END = abrupt
        settings = settings_from(strategy, seed=1 if strategy == "sample" else None, **values)
        seconds: list[float] = []

        def answer(message: str, turns, settings=settings, seconds=seconds) -> str:
            begin = time.perf_counter()
            text = reply(engine, tokenizer, [message], settings, contexts=[turns])[0][0].text
            seconds.append(time.perf_counter() - begin)
            return text

        with torch.inference_mode():
            probed = run_probes(probes, lambda asked: [answer(p.turns[-1], p.turns[:-1]) for p in asked], common)
            seconds.clear()  # latency over the test messages alone
            replies = [answer(p.source, p.context) for p in pairs]
        measures = generation_measures(replies, pairs)
        results[name] = {
            "probes_all": probed["probes_all"],
            "probes": probed["probes"],
            **{k: measures[k] for k in ("f1", "repetition_rate", "generic_rate", "mean_words", "distinct_2")},
            "p50_ms": 1000 * percentile(seconds, 0.5),
            "p95_ms": 1000 * percentile(seconds, 0.95),
        }
        replies_of[name] = replies
        r = results[name]
        print(
            f"{name}: probes {r['probes_all']:.2f} ({', '.join(f'{k} {v:.2f}' for k, v in r['probes'].items())}); "
            f"F1 {r['f1']:.3f}, repeating {r['repetition_rate']:.1%}, generic {r['generic_rate']:.1%}, "
            f"{r['mean_words']:.1f} words; p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms",
            flush=True,
        )
    run = {
        "date": datetime.date.today().isoformat(),
        "model": str(args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model),
        "precision": "int8",
        "threads": args.threads,
        "probes": len(probes),
        "messages": len(pairs),
        "cpu_steal": steal_share(start_cpu, cpu_times()),
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "reply_quality.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(run) + "\n")
    with open(RESULTS / "reply_quality_replies.jsonl", "w", encoding="utf-8") as fh:
        for i, pair in enumerate(pairs):
            fh.write(json.dumps({"message": pair.source, **{n: r[i] for n, r in replies_of.items()}}) + "\n")
    print(write_report())


if __name__ == "__main__":
    main()
