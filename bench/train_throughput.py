"""Training throughput: target tokens per second (EOS included, padding excluded) of one training
step, compared across variants in one run: fp32 against bf16 autocast, bucketed against shuffled
batches. Prints a table and appends the figures to bench/results/train_throughput.jsonl."""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from chatbot.model import ModelConfig, Seq2Seq
from chatbot.tokenizer import train_tokenizer
from corpora import load_pairs
from training.data import bucketed_batches, collate, encode_pairs, shuffled_batches
from training.train import TrainConfig, loss_on


def measure(model, examples, batches, precision, steps, warmup) -> float:
    """Median tokens/s over `steps` timed steps after `warmup` untimed ones."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    device, config = torch.device("cpu"), TrainConfig()
    rates = []
    for i, indices in enumerate(batches[: warmup + steps]):
        batch = collate([examples[j] for j in indices])
        start = time.perf_counter()
        loss, tokens = loss_on(model, batch, config, device, precision)  # the trainer's own loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i >= warmup:
            rates.append(tokens / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=6000)
    parser.add_argument("--embedding-dim", type=int, default=256)
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=20000, help="chitchat train pairs to draw batches from")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pairs = load_pairs("chitchat", "train")[: args.pairs]
    tokenizer = train_tokenizer(dict.fromkeys(t for p in pairs for t in p), 8000)
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, embedding_dim=args.embedding_dim, hidden_size=args.hidden_size, layers=args.layers)
    examples = encode_pairs(pairs, tokenizer, cfg.max_source_tokens, cfg.max_reply_tokens)
    bucketed = bucketed_batches(examples, args.max_tokens, seed=1, epoch=0)
    mean_batch = round(len(examples) / len(bucketed))
    shuffled = shuffled_batches(examples, mean_batch, seed=1, epoch=0)
    model = Seq2Seq(cfg)
    params = model.num_parameters()
    variants = [("fp32 bucketed", "fp32", bucketed), ("bf16 bucketed", "bf16", bucketed), ("fp32 shuffled", "fp32", shuffled)]
    results = {}
    for name, precision, batches in variants:
        results[name] = measure(model, examples, batches, precision, args.steps, args.warmup)
    setting = f"{params / 1e6:.2f}M params, ~{mean_batch} pairs/batch, {args.threads} threads, cpu"
    print(f"training throughput ({setting}; median of {args.steps} steps after {args.warmup} warm-up)")
    for name, rate in results.items():
        print(f"  {name:15s} {rate:9.0f} target tokens/s")
    ratios = {
        "bf16/fp32 (bucketed)": results["bf16 bucketed"] / results["fp32 bucketed"],
        "bucketed/shuffled (fp32)": results["fp32 bucketed"] / results["fp32 shuffled"],
    }
    for name, ratio in ratios.items():
        print(f"  {name:25s} {ratio:.2f}x")
    out = Path(__file__).parent / "results" / "train_throughput.jsonl"
    out.parent.mkdir(exist_ok=True)
    with open(out, "a") as f:
        f.write(json.dumps({
            "date": datetime.date.today().isoformat(), "cpu": platform.processor() or platform.machine(),
            "threads": args.threads, "parameters": params, "pairs_per_batch": mean_batch, "max_tokens": args.max_tokens,
            "tokens_per_s": results, "ratios": ratios,
        }) + "\n")


if __name__ == "__main__":
    main()
