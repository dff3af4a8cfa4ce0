"""Guidance against what replies say: for each guidance weight, hits@1 of 20 and each strategy's
F1, distinct-2, length and generic rate, on the chitchat validation split (the test split stays
for the model card). The default guidance and strategy are chosen from this table; the replies
are printed too, since guidance that picks rare, ungrammatical pieces is no win.

    python bench/guidance_sweep.py --model runs/listen --weights 0 0.5 1 2 --pairs 1000
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import torch
from report import write as write_report  # bench/report.py, beside this script

from chatbot.engine import load_engine
from chatbot.modeldir import load_model
from chatbot.settings import DEFAULT_RERANK, settings_from
from corpora import load_pairs
from training.evaluate import generate, generation_measures, hits_at_1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    parser.add_argument("--pairs", type=int, default=1000, help="validation pairs used (the first ones)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--show", type=int, default=8, help="replies printed per setting")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pairs = load_pairs("chitchat", "valid")[: args.pairs]
    model, tokenizer, _ = load_model(args.model)
    replier, _, _ = load_engine(args.model, precision="int8")
    rows = []
    for w in args.weights:
        with torch.inference_mode():
            hits = hits_at_1(model, tokenizer, pairs, w, DEFAULT_RERANK)
        row = {"guidance": w, "hits_at_1": hits, "strategies": {}}
        for name in ("greedy", "beam", "sample"):
            settings = settings_from(name, guidance=w, seed=1 if name == "sample" else None)
            replies = generate(replier, tokenizer, pairs, settings, with_context=True)
            row["strategies"][name] = generation_measures(replies, pairs)
            print(
                f"guidance {w:g} {name}: "
                + " | ".join(replies[i] for i in range(0, len(pairs), len(pairs) // args.show))
            )
        rows.append(row)
        print(json.dumps(row))
    print("\nguidance  hits@1  " + "  ".join(f"{n:>6}: F1  dist-2 words generic" for n in ("greedy", "beam", "sample")))
    for row in rows:
        cells = "  ".join(
            f"{m['f1']:.3f} {m['distinct_2']:.3f} {m['mean_words']:5.1f} {m['generic_rate']:6.1%}"
            for m in row["strategies"].values()
        )
        print(f"{row['guidance']:8g}  {row['hits_at_1']['chat']:.3f}  {cells}")
    out = Path(__file__).parent / "results" / "guidance_sweep.jsonl"
    with open(out, "a") as f:
        f.write(json.dumps({"date": datetime.date.today().isoformat(), "model": str(args.model), "pairs": len(pairs),
                            "threads": args.threads, "rows": rows}) + "\n")  # fmt: skip
    write_report()  # bench/RESULTS.md


if __name__ == "__main__":
    main()
