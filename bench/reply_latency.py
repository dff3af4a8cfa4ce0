"""Reply latency: wall-clock from a message string to the reply string, per decoding strategy and
weight precision, median and 95th percentile over chitchat test sources, plus batch throughput
(replies per second at batch 32). Compares beam search against a straightforward per-hypothesis
loop, written here, in the same run. Prints a table and appends the figures to
bench/results/reply_latency.jsonl."""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from pathlib import Path

import torch
from machine import cpu_times, steal_share  # bench/machine.py, beside this script
from report import write as write_report  # bench/report.py, beside this script

from chatbot.decoding import BeamSettings, GreedySettings, SampleSettings, reply
from chatbot.device import resolve_device
from chatbot.engine import load_engine
from chatbot.tokenizer import BOS, EOS, keep_end
from corpora import load_pairs


@torch.inference_mode()
def naive_beam(model, tokenizer, text: str, beam_size: int, max_length: int) -> str:
    """The textbook loop: every hypothesis stepped on its own, candidates sorted in Python."""
    src = keep_end(tokenizer.encode(text), model.cfg.max_source_tokens)
    device = model.device
    memory, state = model.encode(torch.tensor([src], device=device), torch.tensor([len(src)], device=device))
    beams = [(0.0, [BOS], state, model.initial_feed(1))]
    finished = []
    for _ in range(max_length):
        candidates = []
        for score, tokens, state, feed in beams:
            logits, new_state, _, new_feed = model.step(torch.tensor([tokens[-1]], device=device), state, memory, feed)
            values, ids = logits[0].log_softmax(-1).topk(beam_size)
            for v, i in zip(values.tolist(), ids.tolist()):
                candidates.append((score + v, tokens + [i], new_state, new_feed))
        candidates.sort(key=lambda c: -c[0])
        beams = []
        for c in candidates[:beam_size]:
            (finished if c[1][-1] == EOS else beams).append(c)
        if not beams or len(finished) >= beam_size:
            break
    best = max(finished or beams, key=lambda c: c[0])
    return tokenizer.decode(best[1][1:])


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def replier(model, tokenizer, settings, contexts: dict):
    """One message at a time, read with the turns before it (as the chat reads it) where given."""
    return lambda message: reply(model, tokenizer, [message], settings, contexts=[contexts.get(message, ())])


def interleaved_latencies(runs: dict, messages: list[str], repeats: int) -> dict[str, list[float]]:
    """Seconds per message for each run (name -> function of a message), the runs taking turns
    on every message so that a machine slowing down or speeding up touches all of them alike;
    each message's figure is the median of `repeats` replies."""
    for run in runs.values():
        for m in messages[:3]:  # warm-up
            run(m)
    times = {name: [] for name in runs}
    for m in messages:
        samples = {name: [] for name in runs}
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run(m)
                samples[name].append(time.perf_counter() - start)
        for name in runs:
            times[name].append(statistics.median(samples[name]))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--messages", type=int, default=60)
    parser.add_argument("--max-length", type=int, default=30)
    parser.add_argument(
        "--repeats", type=int, default=3, help="replies per message and setting; each message counts its median"
    )
    parser.add_argument(
        "--precision",
        help="comma-separated weight precisions, measured in the same run; the last one gets "
        "the loop comparison and batch figures (default: fp32,int8 on the CPU, fp32,bf16 on CUDA)",
    )
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--no-context", action="store_true", help="messages alone, without the turns before them")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precisions = (args.precision or ("fp32,int8" if device.type == "cpu" else "fp32,bf16")).split(",")
    pairs = load_pairs("chitchat", "test")[: args.messages]
    messages = [p.source for p in pairs]
    contexts = {} if args.no_context else {p.source: p.context for p in pairs}
    common = dict(max_length=args.max_length)
    strategies = {
        "greedy": GreedySettings(**common),
        "beam-5": BeamSettings(beam_size=5, **common),
        "sample": SampleSettings(seed=1, **common),  # consensus sampling: the default's candidates
        "sample-1": SampleSettings(seed=1, candidates=1, **common),  # one reply drawn
    }
    runs, lengths = {}, {}
    for precision in precisions:
        model, tokenizer, config = load_engine(args.model, device, precision)
        for name, settings in strategies.items():
            runs[f"{name} {precision}"] = replier(model, tokenizer, settings, contexts)
            lengths[f"{name} {precision}"] = statistics.median(
                len(r[0].tokens) for r in reply(model, tokenizer, messages, settings)
            )
    runs[f"beam-5 {precision} per-hypothesis loop"] = lambda m: naive_beam(model, tokenizer, m, 5, args.max_length)
    counters = cpu_times()
    timings = interleaved_latencies(runs, messages, args.repeats)
    batch = messages[:32]
    throughput = {}
    for name, settings in strategies.items():
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            reply(model, tokenizer, batch, settings)
            seconds.append(time.perf_counter() - start)
        throughput[name] = len(batch) / statistics.median(seconds)
    steal = steal_share(counters, cpu_times())
    params = config["parameters"]
    print(
        f"reply latency ({params / 1e6:.2f}M params, {args.threads} threads, {device_name(device)}, "
        f"{len(messages)} chitchat test messages{'' if args.no_context else ' with their context'}, "
        f"guidance {strategies['greedy'].guidance:g}, replies up to {args.max_length} tokens)"
    )
    summary = {}
    for name, times in timings.items():
        med, p95 = statistics.median(times) * 1000, percentile(times, 0.95) * 1000
        summary[name] = {
            "median_ms": med,
            "p95_ms": p95,
            **({"median_reply_tokens": lengths[name]} if name in lengths else {}),
        }
        print(
            f"  {name:34s} median {med:7.1f} ms   p95 {p95:7.1f} ms"
            + (f"   median reply {lengths[name]:.0f} tokens" if name in lengths else "")
        )
    ratio = (
        summary[f"beam-5 {precision} per-hypothesis loop"]["median_ms"] / summary[f"beam-5 {precision}"]["median_ms"]
    )
    print(f"  beam-5 speed-up over the per-hypothesis loop ({precision}): {ratio:.1f}x (median)")
    if steal is not None:
        print(f"  CPU steal while measuring latency: {steal:.0%} of the machine's CPU time went to other guests")
    for name, rate in throughput.items():
        print(f"  batch of 32, {name:8s} {precision} {rate:7.1f} replies/s")
    out = Path(__file__).parent / "results" / "reply_latency.jsonl"
    out.parent.mkdir(exist_ok=True)
    with open(out, "a") as f:
        f.write(
            json.dumps(
                {
                    "date": datetime.date.today().isoformat(),
                    "model": str(args.model),
                    "parameters": params,
                    "threads": args.threads,
                    "device": device_name(device),
                    "messages": len(messages),
                    "context": not args.no_context,
                    "guidance": strategies["greedy"].guidance,
                    "repeats": args.repeats,
                    "latency": summary,
                    "beam_speedup": ratio,
                    "cpu_steal": steal,
                    "batch32_precision": precision,
                    "batch32_replies_per_s": throughput,
                }
            )
            + "\n"
        )
    write_report()  # bench/RESULTS.md


if __name__ == "__main__":
    main()
