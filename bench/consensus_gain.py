"""Consensus's candidates ranked with what the message adds, on the same draws.

Consensus sampling answers with the candidate its evidence agrees with most. A candidate the
model would say to anything ("Oh no, I'm really sorry.") can win that vote; beam search ranks by
what the message adds instead (its `rerank`, after Li et al. 2016). This draws the default
reply to every English probe and to the first chitchat test messages, keeps each message's
candidates, measures each candidate's gain (mean over its pieces of log p(piece | message) -
log p(piece | no message), teacher-forced) and ranks the same candidates again by agreement + w
gain for each weight w (0: the default's own choice), and by agreement among the k candidates
of highest gain. Every variant chooses among the very same drawn candidates, so the differences
are the ranking's alone. Reports the probes, F1, repetition and generic rate of each, and what
measuring the gains costs a message; writes the replies of w = 0 and `--read` side by side for
reading (bench/results/consensus_gain_replies.jsonl). Appends to bench/results/consensus_gain.jsonl.

    python bench/consensus_gain.py --seeds 1 2 3 4
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

from chatbot.consensus import normalise, repeats
from chatbot.decoding import reply, settings_from
from chatbot.decoding.replies import forced_gains
from chatbot.engine import load_engine
from chatbot.tokenizer import EOS
from corpora import load_pairs
from training.evaluate import chitchat_common_words, generation_measures
from training.probes import read_probes, run_probes

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WEIGHTS = [0.0, 0.02, 0.05, 0.1, 0.2]
TOP = [8, 4]  # agreement among the k candidates the message raises most


def drawn(engine, tokenizer, settings, message: str, turns) -> tuple[list[tuple[str, float, float, bool]], float]:
    """The default's candidates for one message, each as (text, agreement, gain, repeats), in the
    order consensus ranked them, and the seconds measuring their gains took."""
    r = reply(engine, tokenizer, [message], settings, contexts=[turns])[0][0]
    pieces = [p for p, _ in r.hypothesis.candidates]
    begin = time.perf_counter()
    gains = forced_gains(engine, [r.source_tokens] * len(pieces), [p + [EOS] for p in pieces])
    seconds = time.perf_counter() - begin
    rows = []
    for (p, agree), g in zip(r.hypothesis.candidates, gains):
        text = tokenizer.decode(p)
        rows.append((text, agree, sum(g) / len(g), repeats(normalise(text))))
    return rows, seconds


def by_weight(rows, w: float) -> str:
    return min(rows, key=lambda r: (r[3], -(r[1] + w * r[2])))[0]  # of equals, consensus's own order


def among_top(rows, k: int) -> str:
    raised = sorted(rows, key=lambda r: -r[2])[:k]
    return min(raised, key=lambda r: (r[3], -r[1]))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "chatbot" / "default_model")
    parser.add_argument("--probes", type=Path, default=ROOT / "corpora" / "probes.jsonl")
    parser.add_argument("--messages", type=int, default=200, help="first chitchat test messages replied to")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--read", type=float, default=0.05, help="the weight whose replies are saved beside w = 0")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    engine, tokenizer, _ = load_engine(args.model, "cpu", "int8")
    probes = [p for p in read_probes(args.probes) if not p.kind.startswith("korean")]
    pairs = load_pairs("chitchat", "test")[: args.messages]
    common = chitchat_common_words()
    variants = {f"w {w:g}": (lambda rows, w=w: by_weight(rows, w)) for w in WEIGHTS}
    variants |= {f"top {k} by gain": (lambda rows, k=k: among_top(rows, k)) for k in TOP}
    results = {name: [] for name in variants}
    cost, side_by_side = [], []
    start_cpu = cpu_times()
    with torch.inference_mode():
        for seed in args.seeds:
            settings = settings_from("sample", seed=seed)
            asked = [drawn(engine, tokenizer, settings, p.turns[-1], p.turns[:-1]) for p in probes]
            tested = [drawn(engine, tokenizer, settings, p.source, p.context) for p in pairs]
            cost += [s for _, s in asked + tested]
            for name, choose in variants.items():
                chosen = [choose(rows) for rows, _ in asked]
                probed = run_probes(probes, lambda _, chosen=chosen: chosen, common)
                measures = generation_measures([choose(rows) for rows, _ in tested], pairs)
                results[name].append(
                    {"seed": seed, "probes_all": probed["probes_all"], "probes": probed["probes"]}
                    | {k: measures[k] for k in ("f1", "repetition_rate", "generic_rate", "mean_words")}
                )
            if seed == args.seeds[0]:
                side_by_side = [
                    {
                        "turns": [*p.context, p.source],
                        "w 0": by_weight(rows, 0.0),
                        f"w {args.read:g}": by_weight(rows, args.read),
                    }
                    for p, (rows, _) in zip(pairs, tested)
                ]
    for name, per_seed in results.items():
        mean = {
            k: sum(r[k] for r in per_seed) / len(per_seed)
            for k in ("probes_all", "f1", "repetition_rate", "generic_rate")
        }
        each = " / ".join(format(r["probes_all"], ".3f") for r in per_seed)
        print(
            f"{name}: probes {each} (mean {mean['probes_all']:.3f}); "
            f"F1 {mean['f1']:.3f}, repeating {mean['repetition_rate']:.1%}, generic {mean['generic_rate']:.1%}",
            flush=True,
        )
    run = {
        "date": datetime.date.today().isoformat(),
        "model": str(args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model),
        "precision": "int8",
        "threads": args.threads,
        "probes": len(probes),
        "messages": len(pairs),
        "seeds": args.seeds,
        "gain_ms_p50": 1000 * percentile(cost, 0.5),
        "gain_ms_p95": 1000 * percentile(cost, 0.95),
        "cpu_steal": steal_share(start_cpu, cpu_times()),
        "results": results,
    }
    print(
        f"measuring the candidates' gains: p50 {run['gain_ms_p50']:.1f} ms, p95 {run['gain_ms_p95']:.1f} ms a message"
    )
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "consensus_gain.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(run) + "\n")
    with open(RESULTS / "consensus_gain_replies.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in side_by_side)
    print(write_report())


if __name__ == "__main__":
    main()
