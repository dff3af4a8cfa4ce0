"""Teaching by correction, measured: facts taught as the chat's ctrl+r records them, then asked
again, reworded, and beside unrelated messages, with the taught memory (`chatbot.taught`) on
and off. Prints a table and appends it to bench/results/teaching.jsonl.

    python bench/teaching.py                       # the bundled models, bench/data/taught_facts.jsonl
    python bench/teaching.py --korean-csv ../shared/data/korean-chatbot/ChatbotData.csv
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import write as write_report  # noqa: E402  bench/report.py, beside this script

from chatbot.consensus import normalise  # noqa: E402
from chatbot.decoding import reply, settings_from  # noqa: E402
from chatbot.engine import load_engine  # noqa: E402
from chatbot.taught import Memory, TaughtReply  # noqa: E402
from corpora import load_pairs  # noqa: E402

MODELS = {"en": ROOT / "chatbot" / "default_model", "ko": ROOT / "chatbot" / "default_model_ko"}


def bigrams(text: str) -> set[tuple[str, str]]:
    words = normalise(text)
    return set(zip(words, words[1:]))


def common_words(n: int = 300) -> set[str]:
    """The chitchat training replies' most frequent words: word pairs made of them alone ("i love",
    "my favorite") say nothing of where a reply came from."""
    counts = Counter(w for p in load_pairs("chitchat", "train")[:20000] for w in normalise(p.reply))
    return {w for w, _ in counts.most_common(n)}


def holds(text: str, keys: list[str]) -> bool:
    """The reply gives the taught fact: it holds each of the fact's key words."""
    lowered = text.lower()
    return all(k in lowered for k in keys)


def measure(engine, tokenizer, facts, unrelated, settings, memory) -> dict:
    def answer(messages, taught):
        return [r[0].text for r in reply(engine, tokenizer, messages, settings, taught=taught)] if messages else []

    out = {}
    asked = [f["message"] for f in facts]
    reworded = [(f, m) for f in facts for m in f["reworded"]]
    for name, taught in (("before", None), ("taught", memory)):
        same = answer(asked, taught)
        again = answer([m for _, m in reworded], taught)
        out[name] = {
            "recall": sum(holds(r, f["key"]) for r, f in zip(same, facts)) / len(facts),
            "reworded": sum(holds(r, f["key"]) for r, (f, _) in zip(again, reworded)) / len(reworded),
            "examples": [[f["message"], r] for f, r in zip(facts, same)][:3]
            + [[m, r] for (_, m), r in zip(reworded, again)][:3],
        }
    common = common_words()
    taught_pairs = {p for f in facts for p in bigrams(f["correction"]) if not set(p) <= common}
    taught_keys = [k for f in facts for k in f["key"]]
    plain, with_memory = answer(unrelated, None), answer(unrelated, memory)
    leaked = [
        (m, r)
        for m, p, r in zip(unrelated, plain, with_memory)
        if r != p and (any(k in r.lower() for k in taught_keys) or bigrams(r) & taught_pairs)
    ]
    out["leak"] = len(leaked) / max(1, len(unrelated))
    out["leaked"] = leaked[:5]
    return out


def latency(engine, tokenizer, messages, settings, memory, repeats: int = 3) -> list[float]:
    times = []
    for _ in range(repeats):
        for m in messages:
            start = time.perf_counter()
            reply(engine, tokenizer, [m], settings, taught=memory)
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--facts", type=Path, default=Path(__file__).parent / "data" / "taught_facts.jsonl")
    parser.add_argument("--korean-csv", type=Path, help="ChatbotData.csv: Korean unrelated messages")
    parser.add_argument("--unrelated", type=int, default=60, help="unrelated test messages per language")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--strategies", nargs="+", default=["greedy", "sample"])
    parser.add_argument("--start", type=float)
    parser.add_argument("--near", type=float)
    parser.add_argument("--same", type=float)
    parser.add_argument("--latency", type=int, default=10_000, help="taught replies in the latency run (0: none)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    facts = [json.loads(line) for line in args.facts.read_text(encoding="utf-8").splitlines() if line.strip()]
    results = {}
    for lang, directory in MODELS.items():
        chosen = [f for f in facts if f["lang"] == lang]
        if not chosen:
            continue
        engine, tokenizer, _ = load_engine(directory, precision=args.precision)
        if lang == "en":
            unrelated = [p.source for p in load_pairs("chitchat", "test")[: args.unrelated]]
        elif args.korean_csv:
            with open(args.korean_csv, encoding="utf-8") as f:
                unrelated = [row["Q"] for row in csv.DictReader(f)][-args.unrelated :]
        else:
            unrelated = []
        memory = Memory(engine.cfg.attentional_size)
        for name in ("start", "near", "same"):
            if getattr(args, name) is not None:
                setattr(memory, name, getattr(args, name))
        start = time.perf_counter()
        memory.add(engine, tokenizer, [TaughtReply(i, f["message"], f["correction"], []) for i, f in enumerate(chosen)])
        built = time.perf_counter() - start
        for strategy in args.strategies:
            settings = settings_from(strategy, seed=1 if strategy == "sample" else None)
            figures = measure(engine, tokenizer, chosen, unrelated, settings, memory)
            figures["memory_seconds"], figures["facts"], figures["unrelated"] = built, len(chosen), len(unrelated)
            results[f"{lang} {strategy}"] = figures
            b, t = figures["before"], figures["taught"]
            print(
                f"{lang} {strategy:7s} facts {len(chosen):3d}  recall {b['recall']:.0%} -> {t['recall']:.0%}  "
                f"reworded {b['reworded']:.0%} -> {t['reworded']:.0%}  leak {figures['leak']:.0%} "
                f"of {len(unrelated)} unrelated"
            )
            for m, r in t["examples"]:
                print(f"    {m!r} -> {r!r}")
            for m, r in figures["leaked"]:
                print(f"    leaked: {m!r} -> {r!r}")
        if lang == "en" and args.latency:
            pairs = load_pairs("chitchat", "train")[: args.latency]
            big = Memory(engine.cfg.attentional_size)
            start = time.perf_counter()
            big.add(engine, tokenizer, [TaughtReply(i, p.source, p.reply, []) for i, p in enumerate(pairs)])
            results["latency"] = {"taught_replies": len(pairs), "memory_seconds": time.perf_counter() - start}
            probe = [p.source for p in load_pairs("chitchat", "test")[:30]]
            for strategy in ("greedy", "sample"):
                settings = settings_from(strategy, seed=1 if strategy == "sample" else None, max_length=30)
                off, on = (
                    latency(engine, tokenizer, probe, settings, None),
                    latency(engine, tokenizer, probe, settings, big),
                )
                figures = {}
                for name, times in (("without", off), ("with", on)):
                    times = sorted(times)
                    figures[name] = {
                        "p50_ms": statistics.median(times) * 1000,
                        "p95_ms": times[int(0.95 * (len(times) - 1))] * 1000,
                    }
                results["latency"][strategy] = figures
                off, on = figures["without"], figures["with"]
                print(
                    f"latency {strategy}, {len(pairs):,} taught replies: p50 {off['p50_ms']:.1f} -> "
                    f"{on['p50_ms']:.1f} ms, p95 {off['p95_ms']:.1f} -> {on['p95_ms']:.1f} ms"
                )
    out = Path(__file__).parent / "results" / "teaching.jsonl"
    with open(out, "a", encoding="utf-8") as f:
        record = {"date": datetime.date.today().isoformat(), "threads": args.threads, "precision": args.precision}
        f.write(json.dumps({**record, "results": results}, ensure_ascii=False) + "\n")
    write_report()  # bench/RESULTS.md


if __name__ == "__main__":
    main()
