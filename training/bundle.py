"""Make a trained model a bundled model: weights in 16-bit inside the package, and a model card
with every figure `docs/evaluation.md` defines, measured on the corpus's test split.

    python -m training.bundle --model runs/listen --command "chatbot train ..." [--output-rank 192]
        [--before chatbot/default_model] [--corpus chitchat] [--out chatbot/default_model]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from functools import partial
from pathlib import Path

import torch

from chatbot.decoding import guidance_of, rerank_of
from chatbot.device import inference_precision
from chatbot.engine import load_engine
from chatbot.languages import language_of
from chatbot.modeldir import CONFIG, TOKENIZER, WEIGHTS, atomic_write, load_model, output_directory, save_weights
from chatbot.paths import BUNDLED_MODEL
from chatbot.settings import DEFAULT_GUIDANCE, settings_from
from corpora import load_pairs
from training.evaluate import chitchat_common_words, evaluate_pairs, generate, generation_measures, hits_at_1
from training.plots import plot_metrics
from training.probes import answer_alone, read_probes, run_probes

SAMPLES = 10  # sample replies per strategy: test pairs 0, n/10, 2n/10, ... (not chosen by hand)
STRATEGIES = ("greedy", "beam", "sample")


PROBED = ("sample", "greedy")  # the default strategy and the plainest


def measure(directory: Path, pairs, guidance: float, threads: int, probes=()) -> dict:
    """Every figure of a model directory on `pairs`: perplexities (with and without context, in
    float32 as stored and with the int8 weights replies use), hits@1, and per strategy the
    generation measures for single messages and with context, plus the replies themselves; and
    the pass rates of `probes` (`training.probes`) by the default strategy and greedy search."""
    torch.set_num_threads(threads)
    model, tokenizer, config = load_model(directory)
    replier, _, _ = load_engine(directory, precision=inference_precision("auto", torch.device("cpu")))
    defaults = settings_from("beam", guidance=guidance)
    w, rerank = guidance_of(model, defaults), rerank_of(model, defaults)  # what replies run with
    with torch.inference_mode():
        stored = evaluate_pairs(model, tokenizer, pairs)
        alone = evaluate_pairs(model, tokenizer, pairs, with_context=False)
        int8 = evaluate_pairs(replier.scorer, tokenizer, pairs)
        hits = hits_at_1(model, tokenizer, pairs, w, rerank)
    figures = {
        "word_ppl": stored["word_ppl"],
        "word_ppl_no_context": alone["word_ppl"],
        "token_ppl": stored["token_ppl"],
    }
    figures.update({"word_ppl_int8": int8["word_ppl"], "pairs": stored["pairs"], "words": stored["words"]})
    figures.update({"hits_at_1": hits, "guidance": w, "rerank": rerank, "strategies": {}, "replies": {}})
    for name in STRATEGIES:
        settings = settings_from(name, guidance=w, rerank=rerank, seed=1 if name == "sample" else None)
        start = time.perf_counter()
        single = generate(replier, tokenizer, pairs, settings, with_context=False)
        seconds = time.perf_counter() - start
        context = (
            generate(replier, tokenizer, pairs, settings, with_context=True) if model.cfg.context_turns else single
        )
        figures["strategies"][name] = {
            "settings": settings.to_dict(),
            "single": generation_measures(single, pairs),
            "with_context": generation_measures(context, pairs),
            "replies_per_s": len(pairs) / seconds,
        }
        figures["replies"][name] = {"single": single, "with_context": context}
    if probes:
        common = chitchat_common_words()
        figures["probes"] = {}
        for name in PROBED:
            settings = settings_from(name, guidance=w, rerank=rerank, seed=1 if name == "sample" else None)
            with torch.inference_mode():
                result = run_probes(probes, partial(answer_alone, {"en": (replier, tokenizer)}, settings), common)
            figures["probes"][name] = {k: result[k] for k in ("probes_all", "probes", "probes_count")}
    return figures


def probe_rows(after: dict, before: dict | None) -> list[str]:
    """The probes' pass rates, by strategy and kind, beside the model before's where it has them."""
    rows = []
    for name, f in after.get("probes", {}).items():
        old = (before or {}).get("probes", {}).get(name)
        rates = {"all": f["probes_all"], **f["probes"]}
        olds = {"all": old["probes_all"], **old["probes"]} if old else {}
        for kind, rate in rates.items():
            was = f" {olds[kind]:.2f} |" if kind in olds else (" |" if before else "")
            rows.append(f"| {name} | {kind} | {rate:.2f} |{was}")
    return rows


def strategy_rows(figures: dict, label: str) -> list[str]:
    rows = []
    for name, f in figures["strategies"].items():
        for how in ("single", "with_context"):
            m = f[how]
            rows.append(
                f"| {label} | {name} | {how.replace('_', ' ')} | {m['f1']:.3f} | {m['distinct_1']:.3f} | "
                f"{m['distinct_2']:.3f} | {m['mean_words']:.1f} | {m['generic_rate']:.1%} |"
            )
    return rows


def about(args, config: dict, model, trained, after: dict, metrics: list[dict]) -> list[str]:
    """The card's title and what the model is: its command, size, settings, time and weights."""
    valid = [m for m in metrics if "valid_word_ppl" in m]
    rates = sorted(m["tokens_per_s"] for m in metrics if "tokens_per_s" in m)
    lines = [
        f"# {args.title}",
        "",
        f"Trained by `{args.command}`; measured on the `{args.corpus}` test split ({after['pairs']} pairs, "
        f"{after['words']} reply words), as `docs/evaluation.md` defines every figure. Made by `{args.made_by}`.",
        "",
        f"- parameters: {model.num_parameters():,} (`{json.dumps(config['model'])}`)",
        f"- training settings: `{json.dumps(config['train'])}`",
        f"- training time: {valid[-1]['seconds'] / 60:.1f} min wall clock; median {rates[len(rates) // 2]:.0f} target "
        "pieces/s",
        f"- weights: float16, {(args.out / WEIGHTS).stat().st_size / 1e6:.1f} MB; replies on a CPU use int8 weights "
        "in the per-piece products (`chatbot.engine.int8`)",
        f"- the model reads {model.cfg.context_turns} earlier turns with each message, and "
        + (
            "learned replies to no message (guided replies)"
            if model.cfg.guides
            else "learned replies to no message, but its replies are not guided (`--unguided`: see below)"
            if model.cfg.unconditional
            else "no guidance"
        ),
    ]
    best = config.get("best", {})
    if best.get("weights") == "average":
        lines.append(
            f"- weights kept: the mean of the last {best['averaged']:,} steps' weights at step {best['step']:,} "
            f"(validation word-level perplexity {best['average_word_ppl']:.1f}; that step's own weights: "
            f"{best['valid_word_ppl']:.1f}), from `--average-from {config['train']['average_from']:g}`"
        )
    if model is not trained:
        lines.append(
            f"- output layer: trained as one {trained.cfg.vocab_size} x {trained.cfg.attentional_size} matrix, stored "
            f"as its best rank-{args.output_rank} approximation (`chatbot.model.LowRankLinear`)"
        )
    return lines


def figure_rows(after: dict, before: dict | None) -> list[str]:
    """Perplexity and hits@1, beside the model before's where there is one."""
    rows = []

    def row(name, now, then):
        rows.append(f"| {name} | {now} |" + (f" {then} |" if before else ""))

    for name, key in (
        ("with context", "word_ppl"),
        ("message alone", "word_ppl_no_context"),
        ("int8 weights", "word_ppl_int8"),
    ):
        row(f"word-level perplexity, {name}", f"{after[key]:.2f}", before and f"{before[key]:.2f}")
    hits = after["hits_at_1"]
    row(
        f"hits@1 of 20, the chat's ranking score (guidance {after['guidance']:g}, rerank {after['rerank']:g})",
        f"{hits['chat']:.3f}",
        before and f"{before['hits_at_1']['chat']:.3f}",
    )
    for key in ("likelihood", "per_piece", "mutual_information", "guided"):
        if key in hits:
            then = before and f"{before['hits_at_1'].get(key, float('nan')):.3f}"
            row(f"hits@1 of 20 by {key.replace('_', ' ')}", f"{hits[key]:.3f}", then)
    return rows


def card(args, config: dict, model, trained, after: dict, before: dict | None, pairs) -> list[str]:
    logged = (args.model / "metrics.jsonl").read_text().splitlines()
    metrics = [json.loads(line) for line in logged if "valid_word_ppl" in line or "tokens_per_s" in line]
    valid = [m for m in metrics if "valid_word_ppl" in m]
    lines = [
        *about(args, config, model, trained, after, metrics),
        "",
        "## Figures",
        "",
        "| measure | this model | " + ("the one before |" if before else ""),
        "| --- | --- | " + ("--- |" if before else ""),
        *figure_rows(after, before),
    ]
    if after.get("probes"):
        count = next(iter(after["probes"].values()))["probes_count"]
        lines += [
            "",
            f"## Behavioural probes ({count} of `corpora/probes.jsonl`, its language's; int8, as the chat replies)",
            "",
            "| strategy | kind | this model | " + ("the one before |" if before else ""),
            "| --- | --- | --- | " + ("--- |" if before else ""),
            *probe_rows(after, before),
        ]
    lines += [
        "",
        "## Replies to the test messages",
        "",
        f"Each strategy with its default settings (guidance {after['guidance']:g}; sampling seeded 1 plus the batch "
        "number, answering with the candidate the model's other replies agree with most: `chatbot.consensus`), "
        "replying to every test message alone and with the turns before it.",
        "",
        "| model | strategy | reading | F1 | distinct-1 | distinct-2 | words | generic |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *strategy_rows(after, "this"),
        *(strategy_rows(before, "before") if before else []),
        "",
        "## Validation perplexity against wall-clock time",
        "",
        "| minutes | step | valid word ppl | averaged weights |",
        "| --- | --- | --- | --- |",
        *[
            f"| {r['seconds'] / 60:.1f} | {r['step']} | {r['valid_word_ppl']:.1f} | "
            + (f"{r['average_word_ppl']:.1f} ({r['averaged']:,} steps) |" if "average_word_ppl" in r else "|")
            for r in valid
        ],
        "",
        f"## Sample replies (test pairs {', '.join(map(str, picks(pairs)))}: every {len(pairs) // SAMPLES}th)",
        "",
    ]
    for name in STRATEGIES:
        lines += [f"### {name}", ""]
        for i in picks(pairs):
            context = " / ".join(pairs[i].context[-2:])
            shown = f" _(after: {context})_" if context else ""
            lines.append(f"- **{pairs[i].source}**{shown} → {after['replies'][name]['with_context'][i]}")
        lines.append("")
    return lines


def picks(pairs) -> list[int]:
    return list(range(0, len(pairs), max(1, len(pairs) // SAMPLES)))[:SAMPLES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--command", required=True, help="the exact training command, for the card")
    parser.add_argument("--out", type=Path, default=BUNDLED_MODEL)
    parser.add_argument("--corpus", default="chitchat", help="the corpus whose test split the card reports")
    parser.add_argument("--before", type=Path, help="the model this one replaces: its figures beside")
    parser.add_argument(
        "--before-figures", type=Path, help="instead, the figures.json of the model before, as measured in its day"
    )
    parser.add_argument("--title", default="The bundled English model")
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE)
    parser.add_argument(
        "--unguided", action="store_true", help="replies never guided nor reranked: where that harms this model's"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--probes", type=Path, help="behavioural probes (JSONL): those in the model's language count")
    parser.add_argument("--language", choices=("en", "ko"), default="en", help="the model's language, for --probes")
    parser.add_argument("--notes", type=Path, help="a Markdown file appended to the card: what was tried, and why")
    parser.add_argument(
        "--output-rank", type=int, default=0, help="store the output layer at this rank (0: as trained)"
    )
    args = parser.parse_args()
    args.made_by = "python -m training.bundle " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, 0) and k not in ("command",)
    )
    torch.set_num_threads(args.threads)
    pairs = load_pairs(args.corpus, "test")
    probes = [p for p in read_probes(args.probes) if language_of(p.turns[-1]) == args.language] if args.probes else []
    if args.before_figures:
        before = json.loads(args.before_figures.read_text())
    else:
        before = measure(args.before, pairs, args.guidance, args.threads, probes) if args.before else None
    trained, tokenizer, config = load_model(args.model)
    model = trained.with_settings(output_rank=args.output_rank) if args.output_rank else trained
    if args.unguided:
        model.cfg.guided = False
    if args.output_rank or args.unguided:
        config = {**config, "model": model.cfg.to_dict(), "parameters": model.num_parameters()}
    with output_directory(args.out):  # one writer at a time
        save_weights(args.out / WEIGHTS, model, torch.float16)
        atomic_write(args.out / CONFIG, lambda p: Path(p).write_text(json.dumps(config, indent=2) + "\n"))
        for name in (TOKENIZER, "metrics.jsonl"):
            shutil.copyfile(args.model / name, args.out / name)
        plot_metrics(args.out / "metrics.jsonl", args.out / "training.png")  # a run stopped by hand never drew it
        after = measure(args.out, pairs, args.guidance, args.threads, probes)
        lines = card(args, config, model, trained, after, before, pairs)
        if args.notes:
            lines += [args.notes.read_text(encoding="utf-8").strip(), ""]
        (args.out / "MODEL_CARD.md").write_text("\n".join(lines), encoding="utf-8")
        figures = {k: v for k, v in after.items() if k != "replies"}
        (args.out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
        print("\n".join(lines[:40]))


if __name__ == "__main__":
    main()
