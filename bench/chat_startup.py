"""Chat client startup and memory: seconds from `python chat.py` to a ready input box in a real
terminal (tmux), and to a loaded model (torch and the model load while the input box is already
taking text), and the process's resident memory once loaded. Median over repeats; appends the
figures to bench/results/chat_startup.jsonl."""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import write as write_report  # bench/report.py, beside this script

ROOT = Path(__file__).resolve().parent.parent


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def resident_mb(pid: int) -> float:
    """RSS of the process and its children (tmux starts chat.py under a shell)."""
    out = subprocess.run(
        ["ps", "-o", "rss=", "--ppid", str(pid), "-p", str(pid)], capture_output=True, text=True
    ).stdout
    return sum(int(x) for x in out.split()) / 1024


def one_start(model: str | None, threads: int) -> tuple[float, float, float]:
    """Seconds to the input box, seconds to the loaded model, resident MB once loaded."""
    session = f"startup-{time.monotonic_ns()}"
    with tempfile.TemporaryDirectory() as tmp:
        command = f"{sys.executable} {ROOT / 'chat.py'} --db {tmp}/chat.db --threads {threads}" + (
            f" --model {model}" if model else ""
        )
        start = time.perf_counter()
        tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", command)
        try:
            ready = loaded = None
            while loaded is None:
                screen = tmux("capture-pane", "-p", "-t", session)
                if ready is None and "Say something" in screen:
                    ready = time.perf_counter() - start
                if ready is not None and "loading the model" not in screen:
                    loaded = time.perf_counter() - start
                if time.perf_counter() - start > 60:
                    raise RuntimeError("the chat did not start within 60 s")
                time.sleep(0.02)
            pid = int(tmux("list-panes", "-t", session, "-F", "#{pane_pid}").strip())
            return ready, loaded, resident_mb(pid)
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def import_torch_seconds() -> float:
    """A bare `import torch` in a fresh interpreter: the floor under any startup, and a gauge of
    how fast this machine is right now (it drifts)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", help="model directory (default: the bundled model)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    one_start(args.model, args.threads)  # warm the file cache
    runs, torch_alone = [], []
    for _ in range(args.repeats):  # taking turns, so that both see the machine alike
        runs.append(one_start(args.model, args.threads))
        torch_alone.append(import_torch_seconds())
    seconds = statistics.median(r[0] for r in runs)
    loaded = statistics.median(r[1] for r in runs)
    memory = statistics.median(r[2] for r in runs)
    floor = statistics.median(torch_alone)
    print(
        f"chat startup ({args.threads} threads, cpu, model {args.model or 'bundled'}; "
        f"median of {args.repeats} starts):\n"
        f"  input box ready {seconds:.2f} s; model loaded {loaded:.2f} s; resident memory {memory:.0f} MB\n"
        f"  a bare `import torch` in a fresh interpreter: {floor:.2f} s (loaded while the input box takes text)"
    )
    out = Path(__file__).parent / "results" / "chat_startup.jsonl"
    out.parent.mkdir(exist_ok=True)
    with open(out, "a") as f:
        f.write(
            json.dumps(
                {
                    "date": datetime.date.today().isoformat(),
                    "model": args.model or "bundled",
                    "threads": args.threads,
                    "startup_s": seconds,
                    "model_loaded_s": loaded,
                    "resident_mb": memory,
                    "import_torch_s": floor,
                    "runs": runs,
                }
            )
            + "\n"
        )
    write_report()  # bench/RESULTS.md


if __name__ == "__main__":
    main()
