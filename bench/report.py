"""bench/RESULTS.md from bench/results/*.jsonl: the latest run of each benchmark, in full, and the
runs before it, a line each. Every benchmark calls `write()` after appending its run, so the
file is the benchmarks' own account; `python bench/report.py` rewrites it by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
HISTORY = 12  # earlier runs listed per benchmark


def runs(name: str) -> list[dict]:
    path = RESULTS / f"{name}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def ms(x: float | None) -> str:
    return "" if x is None else f"{x:.1f}"


def change(before: float, after: float) -> str:
    return f"{before:.1f} -> {after:.1f} ({after / before - 1:+.1%})"


def steal(run: dict) -> str:
    share = run.get("cpu_steal")
    return "" if share is None else f"; CPU steal {share:.0%}"


def reply_latency() -> list[str]:
    history = runs("reply_latency")
    if not history:
        return []
    last = history[-1]
    out = [
        "## Reply latency",
        "",
        "`python bench/reply_latency.py --model chatbot/default_model`: wall clock from a message to its reply, "
        "median and 95th percentile over chitchat test messages, each the median of its repeats, every setting "
        "taking turns message by message.",
        "",
        f"Latest ({last['date']}): {last['parameters'] / 1e6:.2f}M parameters, {last['threads']} threads, "
        f"{last['device']}, {last['messages']} messages, {last['repeats']} repeats{steal(last)}.",
        "",
        "| strategy and weights | median ms | p95 ms | median reply (pieces) |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in last["latency"].items():
        out.append(f"| {name} | {ms(r['median_ms'])} | {ms(r['p95_ms'])} | {r.get('median_reply_tokens', '')} |")
    out += ["", f"Beam-5 against the per-hypothesis loop: {last['beam_speedup']:.1f}x faster (median)."]
    rates = last.get("batch32_replies_per_s", {})
    if rates:
        shown = ", ".join(f"{k} {v:.0f}" for k, v in rates.items())
        out.append(f"Batch of 32 ({last.get('batch32_precision', '')}): {shown} replies/s.")
    out += ["", "Earlier runs (greedy / beam-5 / sample medians, int8 where measured, else fp32):", ""]
    for run in history[-HISTORY - 1 : -1]:
        lat = run["latency"]
        kind = "int8" if "greedy int8" in lat else "fp32"
        figures = " / ".join(ms(lat.get(f"{s} {kind}", {}).get("median_ms")) for s in ("greedy", "beam-5", "sample"))
        out.append(f"- {run['date']}: {figures} ms ({kind}, {run['threads']} threads, {run['device']}{steal(run)})")
    return out + [""]


def reply_versions() -> list[str]:
    history = runs("reply_versions")
    if not history:
        return []
    out = [
        "## Reply latency, one revision against another",
        "",
        "`python bench/reply_versions.py --old REV`: an earlier revision's runtime and bundled model against the "
        "working tree's, imported into one process and taking turns message by message. Change of the median:",
        "",
        "| date | against | weights | batch | greedy | beam-5 | sample |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in history[-HISTORY:]:
        lat = run["latency"]
        change = [
            f"{lat[f'{s} new']['median_ms'] / lat[f'{s} old']['median_ms'] - 1:+.1%}"
            for s in ("greedy", "beam-5", "sample")
        ]
        out.append(
            f"| {run['date']} | {run['old']} | {run['precision']} | {run.get('batch', 1)} | {' | '.join(change)} |"
        )
    return out + [""]


def chat_startup() -> list[str]:
    history = runs("chat_startup")
    if not history:
        return []
    out = [
        "## Chat startup",
        "",
        "`python bench/chat_startup.py`: `python chat.py` in a real terminal (tmux) until the input box is up, "
        "until the model has loaded behind it, and the resident memory then; medians of its starts.",
        "",
        "| date | input box s | model loaded s | resident MB | import torch s |",
        "| --- | --- | --- | --- | --- |",
    ]
    for run in history[-HISTORY:]:
        torch_s = run.get("import_torch_s")
        out.append(
            f"| {run['date']} | {run['startup_s']:.2f} | {run.get('model_loaded_s', 0):.2f} | "
            f"{run.get('resident_mb', 0):.0f} | {'' if torch_s is None else f'{torch_s:.2f}'} |"
        )
    return out + [""]


def train_throughput() -> list[str]:
    history = runs("train_throughput")
    if not history:
        return []
    last = history[-1]
    out = [
        "## Training throughput",
        "",
        "`python bench/train_throughput.py`: target tokens per second of the project's training step against a "
        "textbook baseline (fp32, shuffled batches, the decoder stepped in a Python loop, padding scored), "
        "on the same model and batches.",
        "",
        f"Latest ({last['date']}): {last['parameters'] / 1e6:.2f}M parameters, {last['device']}, "
        f"{last['threads']} threads, ~{last['pairs_per_batch']} pairs a batch ({last['max_tokens']} tokens).",
        "",
        "| variant | target tokens/s | matrix TFLOP/s | of peak |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in last["variants"].items():
        out.append(f"| {name} | {r['tokens_per_s']:.0f} | {r['tflops']:.3f} | {r['of_peak']:.0%} |")
    return out + [""]


def retrain() -> list[str]:
    history = runs("retrain")
    if not history:
        return []
    out = [
        "## Retraining on logged corrections",
        "",
        "`python bench/retrain_target.py [--style casual]`: chitchat valid pairs logged as corrections through the "
        "chat's own storage, then `chatbot retrain`; word-level perplexity before and after on the held-out logged "
        "pairs (runs before every correction was trained) or the share of taught replies recalled, and on the "
        "chitchat test split.",
        "",
        "| date | pairs | style | epochs | minutes | held-out ppl or taught recall | test before -> after |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in history[-HISTORY:]:
        if run.get("held_out_before") is not None:
            held = change(run["held_out_before"], run["held_out_after"])
        else:
            held = f"recall {run['taught_recall_before']:.0%} -> {run['taught_recall_after']:.0%}"
        test = change(run["test_before"], run["test_after"])
        out.append(
            f"| {run['date']} | {run['pairs']} | {run.get('style', '')} | {run.get('epochs', '')} | "
            f"{run['wall_seconds'] / 60:.1f} | {held} | {test} |"
        )
    return out + [""]


def guidance_sweep() -> list[str]:
    history = runs("guidance_sweep")
    if not history:
        return []
    last = history[-1]
    out = [
        "## Guidance",
        "",
        "`python bench/guidance_sweep.py --model MODEL`: for each guidance weight, hits@1 of 20 and each strategy's "
        "replies (with context) to chitchat validation messages: F1, distinct-2, mean words, generic rate.",
        "",
        f"Latest ({last['date']}): {last['model']}, {last['pairs']} validation pairs, {last['threads']} threads.",
        "",
        "| guidance | hits@1 | greedy F1 / d-2 / generic | beam F1 / d-2 / generic | sample F1 / d-2 / generic |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in last["rows"]:
        cells = " | ".join(
            f"{m['f1']:.3f} / {m['distinct_2']:.3f} / {m['generic_rate']:.1%}" for m in row["strategies"].values()
        )
        out.append(f"| {row['guidance']:g} | {row['hits_at_1']['chat']:.3f} | {cells} |")
    return out + [""]


def teaching() -> list[str]:
    history = runs("teaching")
    if not history:
        return []
    out = [
        "## Teaching by correction",
        "",
        "`python bench/teaching.py`: the facts of `bench/data/taught_facts.jsonl` taught as corrections, asked again, "
        "reworded, and beside unrelated messages, with the taught memory off (before) and on (`docs/teaching.md`).",
        "",
        "| date | model, strategy | facts | recall before -> taught | reworded | leak into unrelated messages |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for run in history[-HISTORY:]:
        for name, r in run["results"].items():
            if name == "latency":
                continue
            typed = f", corrections typed {run['style']}" if "style" in run else ""  # bench/teaching.py --style
            if name.endswith("retrain"):
                out += retrained_rows(run["date"], name, r, typed)
                continue
            b, t = r["before"], r["taught"]
            out.append(
                f"| {run['date']} | {name}{typed} | {r.get('facts', '')} | {b['recall']:.0%} -> {t['recall']:.0%} | "
                f"{b['reworded']:.0%} -> {t['reworded']:.0%}"
                + (
                    f" (after another's turns {b['reworded_after_turns']:.0%} -> {t['reworded_after_turns']:.0%})"
                    if "reworded_after_turns" in t
                    else ""
                )
                + " | "
                + (f"{r['leak']:.0%} of {r['unrelated']}" if r.get("unrelated") else "not measured")
                + " |"
            )
        latency = run["results"].get("latency")
        if latency:
            for strategy in ("greedy", "sample"):
                off, on = latency[strategy]["without"], latency[strategy]["with"]
                out.append(
                    f"| {run['date']} | latency, {strategy}, {latency['taught_replies']:,} taught replies | | "
                    f"p50 {off['p50_ms']:.1f} -> {on['p50_ms']:.1f} ms | p95 {off['p95_ms']:.1f} -> "
                    f"{on['p95_ms']:.1f} ms | "
                    + (
                        f"a step {off['step_p50_ms']:.2f} -> {on['step_p50_ms']:.2f} ms, steps a reply "
                        f"{off['steps_mean']:.1f} -> {on['steps_mean']:.1f}"
                        if "step_p50_ms" in on
                        else ""
                    )
                    + " |"
                )
    return out + [""]


def taught_gates() -> list[str]:
    history = runs("taught_gates")
    if not history:
        return []
    out = [
        "## Taught memory's gates, per model",
        "",
        "`python bench/taught_gates.py --lang LANG`: the facts of `bench/data/taught_calibration.jsonl` (none of the "
        "teaching bench's) taught, asked reworded and beside unrelated validation messages, greedily, for each gate "
        "`near` (`same` 0.15 above it); chosen: the most rewordings among gates leaking into at most `max leak`.",
        "",
        "| date | model | facts | unrelated | near: reworded / leak | max leak | chosen near, same |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in history[-HISTORY:]:
        tried = ", ".join(f"{r['near']:.2f}: {r['reworded']:.0%} / {r['leak']:.1%}" for r in run["rows"])
        chosen = run["chosen"]
        out.append(
            f"| {run['date']} | {Path(run['model']).name} | {run['facts']} | {run['unrelated']} | {tried} | "
            f"{run['max_leak']:.0%} | {chosen['near']:.2f}, {chosen['same']:.2f}"
            + (f", alone {chosen['alone']:.2f}" if "alone" in chosen else "")
            + " |"
        )
    return out + [""]


def retrained_rows(date: str, name: str, r: dict, typed: str = "") -> list[str]:
    """After `chatbot retrain` with its defaults on the taught log, the new model alone (memory off)."""
    report = r["retrain"]
    test = 100 * (report["test_after"] / report["test_before"] - 1) if report.get("test_before") else None
    note = f"{r['seconds'] / 60:.1f} min, {report['epochs']} epochs" + (
        f", chitchat test ppl {test:+.1f}%" if test is not None else ""
    )
    if "bad_still_said" in r:
        note += f", replies rated bad still given {report['bad_said_before']:.0%} -> {r['bad_still_said']:.0%}"
    if "left_in_memory" in r:
        note += f", {r['left_in_memory']} taught replies left in its memory"
    if report.get("spread_left"):  # the run ended before its spread was trained away: registered only by --force
        note += f", still said to {report['spread_left']} corpus messages it was not taught for: not registered"
    rows = []
    for strategy, f in r.items():
        if isinstance(f, dict) and "recall" in f:
            memory = "" if "memory" in strategy else ", memory off"  # "greedy + memory": as the chat runs it
            rows.append(
                f"| {date} | {name}ed{typed} ({note}), {strategy}{memory} | {report['taught']} | "
                f"{report['taught_recall_before']:.0%} -> {f['recall']:.0%} | {f['reworded']:.0%} | {f['leak']:.0%} |"
            )
    return rows


def reply_quality() -> list[str]:
    history = runs("reply_quality")
    if not history:
        return []
    out = [
        "## Reply quality by strategy",
        "",
        "`python bench/reply_quality.py`: the English probes of `corpora/probes.jsonl` and replies to the first "
        "chitchat test messages with their turns, one message at a time (`docs/performance.md`).",
        "",
        "| date | model | strategy | probes | memory | answer | mood-bad | echo | repetition (probes) | F1 | "
        "repeating | generic | p50 / p95 ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in history[-HISTORY:]:
        for name, r in run["results"].items():
            k = r["probes"]
            out.append(
                f"| {run['date']} | {run['model']}, {run['precision']}, {run['threads']} threads | {name} | "
                f"{r['probes_all']:.2f} | {k.get('memory', 0):.2f} | {k.get('answer', 0):.2f} | "
                f"{k.get('mood-bad', 0):.2f} | {k.get('echo', 0):.2f} | {k.get('repetition', 0):.2f} | {r['f1']:.3f} | "
                f"{r['repetition_rate']:.1%} | {r['generic_rate']:.1%} | "
                f"{r['p50_ms']:.0f} / {r['p95_ms']:.0f}{steal(run)} |"
            )
    return out + [""]


def consensus_gain() -> list[str]:
    history = runs("consensus_gain")
    if not history:
        return []
    out = [
        "## Consensus's candidates ranked with what the message adds",
        "",
        "`python bench/consensus_gain.py`: the default's candidates for each English probe and chitchat test message, "
        "ranked again by agreement + w gain (mean log p(piece | message) - log p(piece | no message)) or by agreement "
        "among the k candidates of highest gain; w 0 is the default's own choice. Means over the seeds.",
        "",
        "| date | model | seeds | ranking | probes (each seed) | F1 | repeating | generic | gains cost p50 / p95 ms |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in history[-HISTORY:]:
        for name, per_seed in run["results"].items():

            def mean(key: str, per_seed=per_seed) -> float:
                return sum(r[key] for r in per_seed) / len(per_seed)

            each = " / ".join(f"{r['probes_all']:.3f}" for r in per_seed)
            out.append(
                f"| {run['date']} | {run['model']}, {run['precision']}, {run['threads']} threads | "
                f"{', '.join(map(str, run['seeds']))} | {name} | {mean('probes_all'):.3f} ({each}) | "
                f"{mean('f1'):.3f} | "
                f"{mean('repetition_rate'):.1%} | {mean('generic_rate'):.1%} | "
                f"{run['gain_ms_p50']:.0f} / {run['gain_ms_p95']:.0f}{steal(run)} |"
            )
    return out + [""]


SECTIONS = [
    reply_latency,
    reply_versions,
    guidance_sweep,
    chat_startup,
    train_throughput,
    retrain,
    teaching,
    taught_gates,
    reply_quality,
    consensus_gain,
]


def write() -> Path:
    lines = [
        "# Benchmark results",
        "",
        "Written by the benchmarks from `bench/results/*.jsonl` (one JSON line per run); do not edit by hand. "
        "Speeds are medians on a shared, noisy machine: compare figures from one run, not across days. "
        "What the figures led to, tried and dropped, is in `docs/performance.md`.",
        "",
    ]
    for section in SECTIONS:
        lines += section()
    path = HERE / "RESULTS.md"
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write())
