"""Training throughput: target tokens per second (EOS included, padding excluded) of one training
step (forward, backward, clipping, AdamW), compared in one run and on one model:

- the project's step (`training.train.loss_on`) in bf16 autocast and in fp32, on length-bucketed
  batches, and in fp32 on shuffled batches of the same mean size;
- a straightforward baseline written here: fp32, shuffled batches, the decoder stepped one time
  step at a time in a Python loop, every row (padding included) projected and scored each step,
  as the textbook tutorials do.

It also reports the achieved matrix FLOP/s of each variant as a fraction of this machine's
matrix-multiply peak in the same dtype, measured in the same run. Prints a table and appends the
figures to bench/results/train_throughput.jsonl.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from report import write as write_report  # bench/report.py, beside this script

from chatbot.device import resolve_device
from chatbot.model import ModelConfig, Seq2Seq
from chatbot.tokenizer import PAD, train_tokenizer
from corpora import load_pairs
from training.data import Batch, bucketed_batches, collate, encode_pairs, shuffled_batches
from training.train import TrainConfig, loss_on


def baseline_loss(model: Seq2Seq, batch: Batch) -> tuple[torch.Tensor, int]:
    """Teacher forcing the way tutorials write it: one decoder call per time step in Python."""
    memory, state = model.encode(batch.src, batch.src_lengths)
    decoder, total, tokens = model.decoder, 0.0, batch.target_tokens
    for t in range(batch.tgt_in.size(1)):
        out, state = decoder.lstm(model.embed(batch.tgt_in[:, t : t + 1]), state)  # (B, 1, H)
        context, _ = decoder.attention(out, memory)
        attentional = decoder.dropout(torch.tanh(decoder.combine(torch.cat([context, out], dim=-1))))
        logits = model.out(attentional[:, 0])  # (B, V): padding rows too
        total = total + F.cross_entropy(logits, batch.tgt_out[:, t], ignore_index=PAD, reduction="sum")
    return total / tokens, tokens


def project_loss(precision: str, device: torch.device):
    config = TrainConfig()
    return lambda model, batch: loss_on(model, batch, config, device, precision)  # the trainer's own loss


def lstm_flops(steps: int, inputs: int, hidden: int) -> int:
    """Forward multiply-adds of an LSTM over `steps` rows-times-time-steps, as FLOPs."""
    return 2 * steps * 4 * hidden * (inputs + hidden)


def step_flops(cfg: ModelConfig, batch: Batch, every_row: bool) -> int:
    """Matrix FLOPs of one training step (backward counted as twice the forward). The project
    projects only real target tokens; the baseline (`every_row`) projects padding too."""
    B, S = batch.src.shape
    T = batch.tgt_in.size(1)
    E, H, A, V = cfg.embedding_dim, cfg.hidden_size, cfg.attentional_size, cfg.vocab_size
    scored = B * T if every_row else batch.target_tokens
    forward = (
        2 * lstm_flops(B * S, E, H // 2)  # two encoder directions
        + lstm_flops(B * T, E, H)  # decoder
        + 2 * B * S * H * H  # attention keys ("general")
        + 2 * 2 * B * T * S * H  # scores and context
        + 2 * B * T * 2 * H * A  # combine
        + 2 * scored * A * V  # output layer
    )
    return 3 * forward


@contextlib.contextmanager
def tf32(on: bool):
    """TF32 matrix products on the GPU while inside (the trainer's `--precision tf32`)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a wall-clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(dtype: torch.dtype, device: torch.device, repeats: int = 5) -> float:
    """Median FLOP/s of a large square matrix product: what this machine can do in `dtype`."""
    n = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    a @ b
    rates = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        rates.append(2 * n**3 / (time.perf_counter() - start))
    return statistics.median(rates)


def measure(model, examples, batches, loss_fn, every_row, steps, warmup) -> tuple[float, float]:
    """Median target tokens/s and matrix FLOP/s over `steps` timed steps, after `warmup` untimed
    passes over the same batches: cuDNN and oneDNN build a plan for each new batch shape, which a
    training run pays once while it meets every shape again each epoch."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    device = model.device
    batches = [collate([examples[j] for j in indices]).to(device) for indices in batches[:steps]]
    tokens_per_s, flops_per_s = [], []
    for timed in [False] * warmup + [True]:
        for batch in batches:
            synchronize(device)
            start = time.perf_counter()
            loss, tokens = loss_fn(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            synchronize(device)
            seconds = time.perf_counter() - start
            if timed:
                tokens_per_s.append(tokens / seconds)
                flops_per_s.append(step_flops(model.cfg, batch, every_row) / seconds)
    return statistics.median(tokens_per_s), statistics.median(flops_per_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes over the timed batches")
    parser.add_argument("--max-tokens", type=int, default=6000)
    parser.add_argument("--embedding-dim", type=int, default=256)
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=20000, help="chitchat train pairs to draw batches from")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    torch.manual_seed(0)
    pairs = load_pairs("chitchat", "train")[: args.pairs]
    tokenizer = train_tokenizer(dict.fromkeys(t for p in pairs for t in (p.source, p.reply)), 8000)
    cfg = ModelConfig(
        vocab_size=tokenizer.vocab_size,
        embedding_dim=args.embedding_dim,
        hidden_size=args.hidden_size,
        layers=args.layers,
    )
    examples = encode_pairs(pairs, tokenizer, cfg.max_source_tokens, cfg.max_reply_tokens)
    bucketed = bucketed_batches(examples, args.max_tokens, seed=1, epoch=0)
    mean_batch = round(len(examples) / len(bucketed))
    shuffled = shuffled_batches(examples, mean_batch, seed=1, epoch=0)
    model = Seq2Seq(cfg).to(device)
    params = model.num_parameters()
    peaks = {"fp32": matmul_peak(torch.float32, device), "bf16": matmul_peak(torch.bfloat16, device)}
    variants = [  # name, dtype, batches, loss, projects every row
        ("project bf16 bucketed", "bf16", bucketed, project_loss("bf16", device), False),
        *(
            [("project tf32 bucketed", "tf32", bucketed, project_loss("tf32", device), False)]
            if device.type == "cuda"
            else []
        ),
        ("project fp32 bucketed", "fp32", bucketed, project_loss("fp32", device), False),
        ("project fp32 shuffled", "fp32", shuffled, project_loss("fp32", device), False),
        ("baseline fp32 shuffled", "fp32", shuffled, baseline_loss, True),
    ]
    results = {}
    if device.type == "cuda":
        with tf32(True):
            peaks["tf32"] = matmul_peak(torch.float32, device)
    for name, dtype, batches, loss_fn, every_row in variants:
        with tf32(dtype == "tf32"):
            rate, flops = measure(model, examples, batches, loss_fn, every_row, args.steps, args.warmup)
        results[name] = {"tokens_per_s": rate, "tflops": flops / 1e12, "of_peak": flops / peaks[dtype]}
    setting = f"{params / 1e6:.2f}M params, ~{mean_batch} pairs/batch, {args.threads} threads, {where}"
    print(
        f"training throughput ({setting}; median of {args.steps} steps after {args.warmup} untimed pass(es) over them)"
    )
    print("  matrix-multiply peak: " + ", ".join(f"{dtype} {peak / 1e9:.0f} GFLOP/s" for dtype, peak in peaks.items()))
    for name, r in results.items():
        print(
            f"  {name:24s} {r['tokens_per_s']:7.0f} target tokens/s  "
            f"{r['tflops'] * 1e3:5.0f} GFLOP/s = {r['of_peak']:4.0%} of peak"
        )
    rate = {name: r["tokens_per_s"] for name, r in results.items()}
    ratios = {
        "project bf16 / baseline": rate["project bf16 bucketed"] / rate["baseline fp32 shuffled"],
        "project fp32 / baseline (shuffled)": rate["project fp32 shuffled"] / rate["baseline fp32 shuffled"],
        "bf16 / fp32 (bucketed)": rate["project bf16 bucketed"] / rate["project fp32 bucketed"],
        "bucketed / shuffled (fp32)": rate["project fp32 bucketed"] / rate["project fp32 shuffled"],
    }
    if "project tf32 bucketed" in rate:
        ratios["project tf32 / baseline"] = rate["project tf32 bucketed"] / rate["baseline fp32 shuffled"]
    for name, ratio in ratios.items():
        print(f"  {name:36s} {ratio:.2f}x")
    out = Path(__file__).parent / "results" / "train_throughput.jsonl"
    out.parent.mkdir(exist_ok=True)
    with open(out, "a") as f:
        f.write(
            json.dumps(
                {
                    "date": datetime.date.today().isoformat(),
                    "cpu": platform.processor() or platform.machine(),
                    "device": where,
                    "threads": args.threads,
                    "parameters": params,
                    "pairs_per_batch": mean_batch,
                    "max_tokens": args.max_tokens,
                    "peak_gflops": {k: v / 1e9 for k, v in peaks.items()},
                    "variants": results,
                    "ratios": ratios,
                }
            )
            + "\n"
        )
    write_report()  # bench/RESULTS.md


if __name__ == "__main__":
    main()
