"""Teaching by correction, measured: facts taught as the chat's ctrl+r records them, then asked
again, reworded, and beside unrelated messages, with the taught memory (`chatbot.taught`) on
and off. Reactions too (bench/data/taught_reactions.jsonl: how to answer a person's everyday
news, "I cleaned my bedroom this morning." -> "Nice! A clean bedroom feels great."), asked again,
reworded, and beside statements shaped alike about other things, bad news among them, where a
taught reaction must not appear. Prints a table and appends it to bench/results/teaching.jsonl.

    python bench/teaching.py                       # the bundled models, bench/data/taught_facts.jsonl
    python bench/teaching.py --korean-csv ../shared/data/korean-chatbot/ChatbotData.csv
"""

from __future__ import annotations

import argparse
import csv
import datetime
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import write as write_report  # noqa: E402  bench/report.py, beside this script
from retrain_target import casual  # noqa: E402

from chatbot.consensus import normalise  # noqa: E402
from chatbot.decoding import reply, settings_from  # noqa: E402
from chatbot.engine import load_engine  # noqa: E402
from chatbot.storage import Storage  # noqa: E402
from chatbot.taught import Memory, TaughtReply, gates_of, memory_from_log  # noqa: E402
from corpora import load_pairs  # noqa: E402
from training.recall import common_words, word_pairs  # noqa: E402

MEMORY = ("", " + memory")  # the new model alone; with the taught memory, as the chat runs it
MODELS = {"en": ROOT / "chatbot" / "default_model", "ko": ROOT / "chatbot" / "default_model_ko"}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def holds(text: str, keys: list[str]) -> bool:
    """The reply gives the taught fact: it holds each of the fact's key words."""
    lowered = text.lower()
    return all(k in lowered for k in keys)


def measure(engine, tokenizer, facts, unrelated, settings, memory, before=None) -> dict:
    """Recall, reworded recall and leak of `engine` with `memory` ("taught") against `before`
    (default: the same engine without it)."""

    def answer(messages, taught, model=engine, contexts=None):
        replies = reply(model, tokenizer, messages, settings, contexts=contexts, taught=taught) if messages else []
        return [r[0].text for r in replies]

    out = {}
    asked = [f["message"] for f in facts]
    reworded = [(f, m) for f in facts for m in f["reworded"]]
    # each rewording again, after the exchange that taught the next fact: a person teaching several
    # things in one conversation asks the next right after
    after = [facts[(i + 1) % len(facts)] for i, f in enumerate(facts) for _ in f["reworded"]]
    turns = [[f["message"], f["correction"]] for f in after]
    for name, taught, model in (("before", None, before or engine), ("taught", memory, engine)):
        same = answer(asked, taught, model)
        again = answer([m for _, m in reworded], taught, model)
        again_after = answer([m for _, m in reworded], taught, model, turns)
        out[name] = {
            "recall": sum(holds(r, f["key"]) for r, f in zip(same, facts)) / len(facts),
            "reworded": sum(holds(r, f["key"]) for r, (f, _) in zip(again, reworded)) / len(reworded),
            "reworded_after_turns": sum(holds(r, f["key"]) for r, (f, _) in zip(again_after, reworded)) / len(reworded),
            "examples": [[f["message"], r] for f, r in zip(facts, same)][:3]
            + [[m, r] for (_, m), r in zip(reworded, again)][:3],
        }
    common = common_words(load_pairs("chitchat", "train")[:20000])  # as chatbot retrain's leak counts them
    taught_pairs = {p for f in facts for p in word_pairs(f["correction"], common)}
    taught_keys = [k for f in facts for k in f["key"]]
    plain, with_memory = answer(unrelated, None, before or engine), answer(unrelated, memory)
    leaked = [
        (m, r)
        for m, p, r in zip(unrelated, plain, with_memory)
        if r != p and (any(k in r.lower() for k in taught_keys) or word_pairs(r, common) & taught_pairs)
    ]
    out["leak"] = len(leaked) / max(1, len(unrelated))
    out["leaked"] = leaked
    return out


def taught_log(db: Path, engine, tokenizer, facts, bad: list[str]) -> list[str]:
    """A log as the chat writes it when a person corrects each fact's reply with ctrl+r (one
    conversation per fact: the message, the model's greedy reply, the correction) and rates the
    greedy replies to the `bad` messages bad (ctrl+g); returns those replies."""
    store = Storage(db)
    rated = [r[0].text for r in reply(engine, tokenizer, bad, settings_from("greedy"))] if bad else []
    for message, text in zip(bad, rated):
        conversation = store.new_conversation(message)
        u = store.add_message(conversation, "user", message)
        store.rate(store.add_message(conversation, "bot", text, reply_to=u), -1)
    for f in facts:
        conversation = store.new_conversation(f["message"])
        u = store.add_message(conversation, "user", f["message"])
        r = reply(engine, tokenizer, [f["message"]], settings_from("greedy"))[0][0]
        b = store.add_message(conversation, "bot", r.text, decoding=r.settings, reply_to=u)
        store.correct(b, f["correction"])
    store.close()
    return rated


def after_retrain(directory, groups, bad, args) -> dict:
    """Teach every group's facts (the facts, the reactions) in one fresh log and rate the replies
    to `bad` bad, run `chatbot retrain` on it with its defaults, then ask the new model what the
    bench asks the taught one, per group, alone (no taught memory) and as the chat runs it (with the
    taught memory), and how many of the bad replies it still gives (greedy)."""
    with tempfile.TemporaryDirectory() as tmp:
        engine, tokenizer, _ = load_engine(directory, precision=args.precision)
        db, out = Path(tmp) / "chat.db", Path(tmp) / "retrained"
        rated = taught_log(db, engine, tokenizer, [f for _, taught, _ in groups for f in taught], bad)
        command = [sys.executable, "-m", "chatbot", "retrain", "--db", str(db), "--model", str(directory)]
        command += ["--out", str(out), "--threads", str(args.threads), "--quiet", "--force"]  # its own replay
        command += args.retrain_flags
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - start
        print(done.stdout, done.stderr[-2000:] if done.returncode else "", sep="")
        if done.returncode:
            sys.exit(f"chatbot retrain failed ({done.returncode})")
        report = json.loads((out / "retrain.json").read_text())["results"]
        new, _, config = load_engine(out, precision=args.precision)
        figures = {"seconds": seconds, "retrain": report}
        if bad:
            now = [r[0].text for r in reply(new, tokenizer, bad, settings_from("greedy"))]
            figures["bad_still_said"] = sum(normalise(a) == normalise(b) for a, b in zip(now, rated)) / len(bad)
            figures["bad_examples"] = [[m, b, a] for m, b, a in zip(bad, rated, now)][:5]
        # as the chat runs it: the memory holds every taught reply (and the bad ratings), learned or not
        storage = Storage(db)
        left = memory_from_log(new, tokenizer, storage.taught(), config)
        storage.close()
        figures["left_in_memory"] = len(left) if left else 0
        for group, facts, unrelated in groups:
            for strategy in args.strategies:
                settings = settings_from(strategy, seed=1 if strategy == "sample" else None)
                for name, memory in zip(MEMORY, (None, left)):
                    measured = measure(new, tokenizer, facts, unrelated, settings, memory, before=engine)
                    f = {"recall": measured["taught"]["recall"], "reworded": measured["taught"]["reworded"]}
                    f.update(leak=measured["leak"], examples=measured["taught"]["examples"], leaked=measured["leaked"])
                    figures[f"{strategy}{group}{name}"] = f
    return figures


def typed_casually(rows: list[dict]) -> list[dict]:
    """The rows with each correction as many people type in a chat window (lower case, no
    punctuation): the messages and rewordings stay as they are."""
    return [{**r, "correction": casual(r["correction"])} if "correction" in r else r for r in rows]


def bad_messages(lang: str, args) -> list[str]:
    """Messages whose greedy replies the bench rates bad: test messages after the unrelated ones."""
    if lang == "en":
        return [p.source for p in load_pairs("chitchat", "test")[args.unrelated : args.unrelated + args.bad]]
    if not args.korean_csv:
        return []
    with open(args.korean_csv, encoding="utf-8") as f:
        rows = [row["Q"] for row in csv.DictReader(f)]
    return rows[-args.unrelated - args.bad : -args.unrelated]


def latency(engine, tokenizer, messages, settings, memory, repeats: int = 3) -> tuple[list[float], list[int]]:
    """Seconds per reply and the steps it took (its pieces, and the end when it ended): a taught
    reply followed is often longer than the model's own, so a step's cost is read per step."""
    times, steps = [], []
    for _ in range(repeats):
        for m in messages:
            start = time.perf_counter()
            (r,) = reply(engine, tokenizer, [m], settings, taught=memory)[0]
            times.append(time.perf_counter() - start)
            steps.append(len(r.tokens) + r.finished)
    return times, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--facts", type=Path, default=Path(__file__).parent / "data" / "taught_facts.jsonl")
    parser.add_argument("--korean-csv", type=Path, help="ChatbotData.csv: Korean unrelated messages")
    parser.add_argument("--unrelated", type=int, default=60, help="unrelated test messages per language")
    parser.add_argument(
        "--unrelated-from", nargs=2, metavar=("SPLIT", "SKIP"), default=["test", "0"],
        help="English unrelated messages: the chitchat split and how many of its messages to skip first",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--strategies", nargs="+", default=["greedy", "sample"])
    parser.add_argument("--start", type=float)
    parser.add_argument("--near", type=float)
    parser.add_argument("--same", type=float)
    parser.add_argument("--alone", type=float)
    parser.add_argument("--reactions", type=Path, default=Path(__file__).parent / "data" / "taught_reactions.jsonl")
    parser.add_argument("--latency", type=int, default=10_000, help="taught replies in the latency run (0: none)")
    parser.add_argument("--bad", type=int, default=20, help="replies rated bad before retraining, per language")
    parser.add_argument("--langs", nargs="+", default=list(MODELS))
    parser.add_argument("--no-memory", action="store_true", help="skip the taught memory's half")
    parser.add_argument(
        "--retrain", action="store_true", help="also: retrain on the corrections, ask the new model alone"
    )
    parser.add_argument(
        "--style", choices=("as-is", "casual"), default="as-is",
        help="how the person types each correction: as written, or casual (lower case, no punctuation)",
    )  # fmt: skip
    parser.add_argument("--retrain-flags", nargs=argparse.REMAINDER, default=[], help="passed to chatbot retrain")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    facts = read_jsonl(args.facts)
    if args.style == "casual":
        facts = typed_casually(facts)
    results = {}
    for lang, directory in MODELS.items():
        chosen = [f for f in facts if f["lang"] == lang]
        if not chosen or lang not in args.langs:
            continue
        engine, tokenizer, config = load_engine(directory, precision=args.precision)
        if lang == "en":
            split, skip = args.unrelated_from[0], int(args.unrelated_from[1])
            unrelated = [p.source for p in load_pairs("chitchat", split)[skip : skip + args.unrelated]]
        elif args.korean_csv:
            with open(args.korean_csv, encoding="utf-8") as f:
                unrelated = [row["Q"] for row in csv.DictReader(f)][-args.unrelated :]
        else:
            unrelated = []
        reactions = [r for r in read_jsonl(args.reactions) if r["lang"] == lang] if args.reactions.exists() else []
        reactions = typed_casually(reactions) if args.style == "casual" else reactions
        groups = [("", chosen, unrelated)]
        if reactions:
            unlike = [m for r in reactions for m in r.get("unlike", [])]
            groups.append((" reactions", [r for r in reactions if "message" in r], unlike))
        if args.retrain:
            figures = after_retrain(directory, groups, bad_messages(lang, args), args)
            results[f"{lang} retrain"] = figures
            print(f"{lang}: {figures['left_in_memory']} taught replies in the new model's memory")
            for group, strategy, name in itertools.product([g for g, _, _ in groups], args.strategies, MEMORY):
                f = figures[f"{strategy}{group}{name}"]
                print(
                    f"{lang}{group} retrained{name}, {strategy:7s} recall {f['recall']:.0%}  reworded "
                    f"{f['reworded']:.0%}  leak {f['leak']:.0%}  ({figures['seconds'] / 60:.1f} min, "
                    f"{figures['retrain']['epochs']} epochs, {figures['retrain']['steps']} steps)"
                )
                for m, r in f["leaked"]:
                    print(f"    leaked: {m!r} -> {r!r}")
            if "bad_still_said" in figures:
                print(f"{lang} retrained: greedy replies rated bad still given {figures['bad_still_said']:.0%}")
                for m, b, a in figures["bad_examples"]:
                    print(f"    {m!r}: {b!r} (rated bad) -> {a!r}")
                for m, r in figures[args.strategies[-1]]["examples"]:
                    print(f"    {m!r} -> {r!r}")
        if args.no_memory:
            continue
        for group, taught, others in groups:
            memory = Memory(engine.cfg.attentional_size, **gates_of(config))  # the model's own, or the constants
            for name in ("start", "near", "same", "alone"):
                if getattr(args, name) is not None:
                    setattr(memory, name, getattr(args, name))
            start = time.perf_counter()
            memory.add(
                engine, tokenizer, [TaughtReply(i, f["message"], f["correction"], []) for i, f in enumerate(taught)]
            )
            built = time.perf_counter() - start
            for strategy in args.strategies:
                settings = settings_from(strategy, seed=1 if strategy == "sample" else None)
                figures = measure(engine, tokenizer, taught, others, settings, memory)
                figures["memory_seconds"], figures["facts"], figures["unrelated"] = built, len(taught), len(others)
                results[f"{lang}{group} {strategy}"] = figures
                b, t = figures["before"], figures["taught"]
                print(
                    f"{lang}{group} {strategy:7s} taught {len(taught):3d}  "
                    f"recall {b['recall']:.0%} -> {t['recall']:.0%}  "
                    f"reworded {b['reworded']:.0%} -> {t['reworded']:.0%} "
                    f"(after another's turns {b['reworded_after_turns']:.0%} -> {t['reworded_after_turns']:.0%})  "
                    f"leak {figures['leak']:.0%} "
                    f"of {len(others)} {'statements shaped alike' if group else 'unrelated'}"
                )
                for m, r in t["examples"]:
                    print(f"    {m!r} -> {r!r}")
                for m, r in figures["leaked"]:  # every one: a leak is read, not only counted
                    print(f"    leaked: {m!r} -> {r!r}")
        if lang == "en" and args.latency and not args.no_memory:
            pairs = load_pairs("chitchat", "train")[: args.latency]
            big = Memory(engine.cfg.attentional_size, **gates_of(config))
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
                for name, (times, steps) in (("without", off), ("with", on)):
                    per_step = sorted(t / max(n, 1) for t, n in zip(times, steps))
                    times = sorted(times)
                    figures[name] = {
                        "p50_ms": statistics.median(times) * 1000,
                        "p95_ms": times[int(0.95 * (len(times) - 1))] * 1000,
                        "step_p50_ms": statistics.median(per_step) * 1000,
                        "steps_mean": statistics.mean(steps),
                    }
                results["latency"][strategy] = figures
                off, on = figures["without"], figures["with"]
                print(
                    f"latency {strategy}, {len(pairs):,} taught replies: p50 {off['p50_ms']:.1f} -> "
                    f"{on['p50_ms']:.1f} ms, p95 {off['p95_ms']:.1f} -> {on['p95_ms']:.1f} ms; a step "
                    f"{off['step_p50_ms']:.2f} -> {on['step_p50_ms']:.2f} ms, steps a reply {off['steps_mean']:.1f} -> "
                    f"{on['steps_mean']:.1f}"
                )
    out = Path(__file__).parent / "results" / "teaching.jsonl"
    with open(out, "a", encoding="utf-8") as f:
        record = {"date": datetime.date.today().isoformat(), "threads": args.threads, "precision": args.precision}
        record |= {"style": args.style} if args.style != "as-is" else {}
        f.write(json.dumps({**record, "results": results}, ensure_ascii=False) + "\n")
    write_report()  # bench/RESULTS.md


if __name__ == "__main__":
    main()
