"""Device choice shared by training, evaluation, prediction and serving."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA device is available (use auto or cpu)")
    return torch.device(name)


def cpu_quota() -> int:
    """CPUs this process may use: its cgroup CPU quota (a pod's limit) or affinity, whichever is lower.

    torch defaults to the node's physical cores, which oversubscribes a pod limited to a few of
    them; an LSTM synchronises its threads at every time step, so an oversubscribed thread pool
    stalls it (measured 2-10x slower per step on a shared 2-core VM).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    for path, parse in (("/sys/fs/cgroup/cpu.max", lambda t: t.split()),  # cgroup v2: "quota period"
                        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", lambda t: [t.strip(), "100000"])):
        try:
            quota, period = parse(Path(path).read_text())[:2]
            if quota not in ("max", "-1"):
                cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
            break
        except (OSError, ValueError):
            continue
    return max(1, cpus)


def use_threads(threads: int = 0) -> int:
    """Set torch's intra-op threads to ``threads`` (``train.threads``; 0 = :func:`cpu_quota`) and return it.

    Training and evaluation both call it with the model's ``train.threads``, so an evaluation runs
    with the thread setting its model was trained with.
    """
    n = threads or cpu_quota()
    torch.set_num_threads(n)
    return n
