"""Make a trained model the bundled default: weights in 16-bit inside the package, and a model
card with its measured figures.

    python -m training.bundle --model runs/chitchat --command "chatbot train ..." [--output-rank 192]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from chatbot.decoding import BeamSettings, GreedySettings, SampleSettings, reply
from chatbot.device import inference_precision
from chatbot.engine import load_engine
from chatbot.modeldir import CONFIG, TOKENIZER, WEIGHTS, atomic_write, load_model, save_weights
from chatbot.paths import BUNDLED_MODEL
from corpora import load_pairs
from training.evaluate import distinct_n, evaluate_pairs

SAMPLES = 10  # sample replies per strategy: test sources 0, 221, 442, ... (every len/10-th)


def decode_all(model, tokenizer, sources, settings, batch=64) -> list[str]:
    """Replies to every source, in batches. A sampling seed moves on with each batch (seed + batch
    number): one seed for every batch would replay the same random draws against each of them,
    and replies to different messages that share their draws share words too, which lowers
    distinct-n."""
    out = []
    for n, i in enumerate(range(0, len(sources), batch)):
        these = replace(settings, seed=settings.seed + n) if getattr(settings, "seed", None) is not None else settings
        out += [r[0].text for r in reply(model, tokenizer, sources[i : i + batch], these)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--command", required=True, help="the exact training command, for the card")
    parser.add_argument("--out", type=Path, default=BUNDLED_MODEL)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--notes", type=Path, help="a Markdown file appended to the card: what was tried, and why this model"
    )
    parser.add_argument(
        "--output-rank",
        type=int,
        default=0,
        help="store the output layer as its best rank-R approximation (truncated SVD; 0: as trained)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    trained, tokenizer, config = load_model(args.model)
    model = trained
    if args.output_rank:
        model = trained.with_settings(output_rank=args.output_rank)
        config = {
            **config,
            "model": model.cfg.to_dict(),
            "parameters": model.num_parameters(),
            "trained_output_rank": trained.cfg.output_rank,
            "trained_parameters": trained.num_parameters(),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    save_weights(args.out / WEIGHTS, model, torch.float16)
    atomic_write(args.out / CONFIG, lambda p: Path(p).write_text(json.dumps(config, indent=2) + "\n"))
    for name in (TOKENIZER, "metrics.jsonl", "training.png"):
        shutil.copyfile(args.model / name, args.out / name)
    half, _, _ = load_model(args.out)  # the stored weights, in float32
    bf16, _, _ = load_model(args.out, precision="bf16")
    replying = inference_precision("auto", torch.device("cpu"))
    replier, _, _ = load_engine(args.out, precision=replying)  # as `chatbot reply` and the chat load it on a CPU
    test = load_pairs("chitchat", "test")
    as_trained = evaluate_pairs(trained, tokenizer, test)
    full = evaluate_pairs(model, tokenizer, test) if model is not trained else as_trained
    stored = evaluate_pairs(half, tokenizer, test)
    in_bf16 = evaluate_pairs(bf16, tokenizer, test)
    in_int8 = evaluate_pairs(replier.scorer, tokenizer, test) if replying == "int8" else None
    sources = [p.source for p in test]
    strategies = {"greedy": GreedySettings(), "beam": BeamSettings(), "sample": SampleSettings(seed=1)}
    picks = list(range(0, len(test), len(test) // SAMPLES))[:SAMPLES]
    rows, samples = [], {}
    for name, settings in strategies.items():
        start = time.perf_counter()
        replies = decode_all(replier, tokenizer, sources, settings)
        seconds = time.perf_counter() - start
        rows.append(
            f"| {name} | `{json.dumps(settings.to_dict())}` | {distinct_n(replies, 1):.3f} | "
            f"{distinct_n(replies, 2):.3f} | {len(sources) / seconds:.1f} |"
        )
        samples[name] = [(sources[i], replies[i]) for i in picks]
    valid = [
        json.loads(line) for line in (args.model / "metrics.jsonl").read_text().splitlines() if "valid_word_ppl" in line
    ]
    train_rates = [
        json.loads(line)["tokens_per_s"]
        for line in (args.model / "metrics.jsonl").read_text().splitlines()
        if "tokens_per_s" in line
    ]
    train_rates.sort()
    card = [
        "# The bundled default model",
        "",
        f"Trained by `{args.command}` on the chitchat training split (validation split for model selection).",
        "",
        f"- parameters: {model.num_parameters():,} ({json.dumps(config['model'])})",
        *(
            [
                f"- output layer: trained as one {trained.cfg.vocab_size} x {trained.cfg.attentional_size} matrix "
                f"({trained.num_parameters():,} parameters, test word-level perplexity "
                f"{as_trained['word_ppl']:.2f} in float32), stored as its best rank-{args.output_rank} "
                "approximation (truncated SVD, "
                f"`python -m training.bundle --output-rank {args.output_rank}`): the matrix every reply "
                f"token reads shrinks to {args.output_rank / trained.cfg.attentional_size:.0%} of its bytes "
                f"(`chatbot.model.LowRankLinear`)"
            ]
            if model is not trained
            else []
        ),
        f"- training settings: `{json.dumps(config['train'])}`",
        f"- training time: {valid[-1]['seconds'] / 60:.1f} min wall clock; "
        f"median throughput {train_rates[len(train_rates) // 2]:.0f} target tokens/s",
        f"- weights stored in float16 ({(args.out / WEIGHTS).stat().st_size / 1e6:.1f} MB), loaded as float32, and "
        f"for replies on a CPU (`--precision auto`) with {replying} weights in its per-token matrices "
        "(`chatbot.engine.int8`); bf16 weights were measured no faster for replies",
        f"- test word-level perplexity: **{stored['word_ppl']:.1f}** as stored in float16 "
        f"({full['word_ppl']:.2f} before storing, in float32; "
        f"{in_bf16['word_ppl']:.2f} with the weights in bfloat16; "
        + (f"{in_int8['word_ppl']:.2f} with int8 weights, as replies run; " if in_int8 else "")
        + f"token-level {stored['token_ppl']:.1f}; "
        f"{stored['pairs']} pairs, {stored['words']} words)",
        "",
        "## Validation perplexity against wall-clock time",
        "",
        "| minutes | step | valid word ppl |",
        "| --- | --- | --- |",
        *[f"| {r['seconds'] / 60:.1f} | {r['step']} | {r['valid_word_ppl']:.1f} |" for r in valid],
        "",
        "## Decoding on the chitchat test sources",
        "",
        f"distinct-n over the replies to all {len(sources)} test sources, and replies per second in batches of 64 "
        f"({args.threads} threads, CPU, `--precision {replying}`; "
        "sampling's seed is the one shown plus the batch number).",
        "",
        "| strategy | settings | distinct-1 | distinct-2 | replies/s |",
        "| --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"## Sample replies (test sources {', '.join(map(str, picks))}: "
        f"every {len(test) // SAMPLES}th, not chosen by hand)",
        "",
    ]
    for name, pairs in samples.items():
        card += [f"### {name}", ""] + [f"- **{s}** → {r}" for s, r in pairs] + [""]
    if args.notes:
        card += [args.notes.read_text(encoding="utf-8").strip(), ""]
    (args.out / "MODEL_CARD.md").write_text("\n".join(card), encoding="utf-8")
    print("\n".join(card[:12]))


if __name__ == "__main__":
    main()
