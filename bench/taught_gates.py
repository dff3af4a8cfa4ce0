"""The taught memory's gates for one model, chosen on facts the teaching bench does not use.

A taught reply's pieces are mixed in from the cosine `near` and fully from `same`
(`chatbot.taught`). Cosines depend on the model's states: one model's rewordings come as near to
their taught reply as another's unrelated messages do. This teaches the facts of
`bench/data/taught_calibration.jsonl` (its own facts, none of the bench's), asks them again
reworded and asks unrelated messages (the chitchat validation split; for Korean, the first
questions of ChatbotData.csv, the bench taking the last), for each pair of gates, greedily, and
chooses the pair with the most rewordings answered among those that leak into at most
`--max-leak` of the unrelated messages (of equals, the higher gates). Then `alone`, how near a
message must come to follow a taught reply the model would not have begun so: the calibration
reactions ("I made soup for dinner." -> "Homemade soup is the best on a cold night.") are taught
beside the facts, and for each value the rewordings of both are asked, with statements shaped
like the reactions about other things, bad news among them ("like"); chosen: the most rewordings
among the values that leak into at most `--max-leak` of those statements and of the unrelated
messages (none: `START`, the rule off, since it would cost rewordings and keep the leak).
`--write` stores the choice in the model's config.json ("taught"), which the chat and `chatbot
reply --db` then use.

    python bench/taught_gates.py --lang ko --korean-csv ../shared/data/korean-chatbot/ChatbotData.csv
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import write as write_report  # noqa: E402  bench/report.py, beside this script
from teaching import MODELS, measure  # noqa: E402  bench/teaching.py, beside this script

from chatbot.decoding import settings_from  # noqa: E402
from chatbot.engine import load_engine  # noqa: E402
from chatbot.modeldir import atomic_write, read_config  # noqa: E402
from chatbot.taught import NEAR, SAME, START, UNEXPECTED, Memory, TaughtReply, gates_of  # noqa: E402
from corpora import load_pairs  # noqa: E402

RAMP = SAME - NEAR  # from mixed in at all to mixed in fully: kept as the constants have it
TRIED = [0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70]  # values of `near`
ALONE_TRIED = [START, 0.7, 0.8, 0.9, 0.95, 1.0]  # values of `alone` (START: as any reply; 1: its own message only)


def unrelated_messages(lang: str, count: int, korean_csv: Path | None) -> list[str]:
    if lang == "en":
        return [p.source for p in load_pairs("chitchat", "valid")[:count]]
    if korean_csv is None:
        raise SystemExit("Korean unrelated messages come from ChatbotData.csv: give --korean-csv")
    with open(korean_csv, encoding="utf-8") as f:
        return [row["Q"] for row in csv.DictReader(f)][:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lang", choices=sorted(MODELS), default="en")
    parser.add_argument("--model", type=Path, help="model directory (default: the bundled one of --lang)")
    parser.add_argument("--facts", type=Path, default=ROOT / "bench" / "data" / "taught_calibration.jsonl")
    parser.add_argument("--korean-csv", type=Path, help="ChatbotData.csv: Korean unrelated messages")
    parser.add_argument("--unrelated", type=int, default=200)
    parser.add_argument("--max-leak", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="store the chosen gates in the model's config.json")
    parser.add_argument(
        "--alone-only", action="store_true", help="keep the model's own near and same; choose (and write) alone"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    directory = args.model or MODELS[args.lang]
    engine, tokenizer, config = load_engine(directory, precision="int8")
    rows = [json.loads(line) for line in args.facts.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r["lang"] == args.lang]
    facts = [r for r in rows if "message" in r and not r.get("reaction")]
    reactions = [r for r in rows if r.get("reaction")]
    like = [m for r in rows for m in r.get("like", [])]
    unrelated = unrelated_messages(args.lang, args.unrelated, args.korean_csv)
    taught = [TaughtReply(i, f["message"], f["correction"], []) for i, f in enumerate(facts)]
    grid = []
    print(f"{directory}: {len(facts)} facts, {len(unrelated)} unrelated messages, greedy, start {START}")
    print("near  same   recall  reworded  leak")
    own = gates_of(config)
    for near in [own.get("near", NEAR)] if args.alone_only else TRIED:
        same = own.get("same", SAME) if args.alone_only else round(near + RAMP, 2)
        memory = Memory(engine.cfg.attentional_size, near=near, same=same)
        memory.add(engine, tokenizer, taught)
        figures = measure(engine, tokenizer, facts, unrelated, settings_from("greedy"), memory)
        row = {"near": near, "same": memory.same, **{k: figures["taught"][k] for k in ("recall", "reworded")}}
        row["leak"] = figures["leak"]
        grid.append(row)
        print(f"{near:.2f}  {memory.same:.2f}   {row['recall']:5.0%}   {row['reworded']:6.0%}   {row['leak']:5.1%}")
    allowed = [r for r in grid if r["leak"] <= args.max_leak] or [grid[-1]]
    chosen = max(allowed, key=lambda r: (r["reworded"], r["near"]))
    print(f"chosen: near {chosen['near']:.2f}, same {chosen['same']:.2f}")
    alone_rows = []
    if reactions:
        both = taught + [
            TaughtReply(len(taught) + i, r["message"], r["correction"], []) for i, r in enumerate(reactions)
        ]
        print(
            f"{len(reactions)} reactions, {len(like)} statements shaped like them; a reply the model gave its "
            f"first piece less than {UNEXPECTED} follows from `alone`"
        )
        print("alone  facts reworded  reactions reworded  leak: unrelated  shaped alike")
        for alone in ALONE_TRIED:
            memory = Memory(engine.cfg.attentional_size, near=chosen["near"], same=chosen["same"], alone=alone)
            memory.add(engine, tokenizer, both)
            of_facts = measure(engine, tokenizer, facts, unrelated, settings_from("greedy"), memory)
            of_reactions = measure(engine, tokenizer, reactions, like, settings_from("greedy"), memory)
            row = {
                "alone": alone,
                "facts_reworded": of_facts["taught"]["reworded"],
                "leak": of_facts["leak"],
                "reactions_reworded": of_reactions["taught"]["reworded"],
                "like_leak": of_reactions["leak"],
            }
            alone_rows.append(row)
            print(
                f"{alone:.2f}   {row['facts_reworded']:8.0%}   {row['reactions_reworded']:12.0%}   "
                f"{row['leak']:12.1%}   {row['like_leak']:9.1%}"
            )
            for m, r in of_reactions["leaked"][:3]:
                print(f"    leaked: {m!r} -> {r!r}")
        # where no value keeps the leak down, the rule is left off (START): it would cost rewordings for nothing
        safe = [r for r in alone_rows if max(r["leak"], r["like_leak"]) <= args.max_leak] or alone_rows[:1]
        best = max(safe, key=lambda r: (r["facts_reworded"] + r["reactions_reworded"], r["alone"]))
        chosen["alone"] = best["alone"]
        print(f"chosen: alone {chosen['alone']:.2f}")
    run = {
        "date": datetime.date.today().isoformat(),
        "model": str(directory),
        "lang": args.lang,
        "facts": len(facts),
        "unrelated": len(unrelated),
        "max_leak": args.max_leak,
        "threads": args.threads,
        "rows": grid,
        "alone_rows": alone_rows,
        "chosen": chosen,
    }
    with open(ROOT / "bench" / "results" / "taught_gates.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(run) + "\n")
    write_report()  # bench/RESULTS.md
    if args.write:
        config = read_config(directory)
        how = f"bench/taught_gates.py --lang {args.lang} --max-leak {args.max_leak}"
        if args.alone_only:
            config["taught"] = {**config.get("taught", {}), "alone": chosen["alone"]}
            config["taught"]["chosen_by"] = config["taught"].get("chosen_by", "") + f"; alone: {how} --alone-only"
        else:
            config["taught"] = {
                "near": chosen["near"],
                "same": chosen["same"],
                **({"alone": chosen["alone"]} if "alone" in chosen else {}),
                "chosen_by": how,
            }
        text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
        atomic_write(Path(directory) / "config.json", lambda p: Path(p).write_text(text, encoding="utf-8"))
        print(f"written to {Path(directory) / 'config.json'}")


if __name__ == "__main__":
    main()
