"""How much of the CPU a benchmark actually had. On a virtual machine the hypervisor can hand a
guest's cores to other guests ("steal" time in /proc/stat); this machine's speed drifted by 2x
within a day, and steal showed why. Benchmarks report it beside their figures."""

from __future__ import annotations


def cpu_times() -> list[int] | None:
    """The machine-wide CPU counters (user, nice, system, idle, iowait, irq, softirq, steal, ...),
    or None where /proc/stat does not exist."""
    try:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def steal_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """The share of CPU time between two readings that the hypervisor gave to someone else."""
    if before is None or after is None or len(before) < 8:
        return None
    total = sum(after[:8]) - sum(before[:8])
    return (after[7] - before[7]) / total if total > 0 else None
