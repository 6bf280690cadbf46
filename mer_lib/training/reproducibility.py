"""Seeds, determinism, device choice and the package versions recorded with every model."""

from __future__ import annotations

import os
import platform
import random
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

import mer_lib


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (and CUDA); optionally force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this workspace setting for deterministic matmuls.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of the torch RNG for one epoch: makes dropout/noise of epoch e independent of resumes."""
    return (seed * 1_000_003 + epoch * 7919) % 2**63


def package_versions() -> dict[str, str]:
    """Versions of the packages that determine a model's behaviour (+ git commit when known)."""

    out = {"python": platform.python_version(), "torch": str(torch.__version__), "numpy": str(np.__version__),
           "mer_lib": str(mer_lib.__version__)}
    # From the installed metadata, not by importing them: scikit-learn and kfp would add ~77 and ~47 MB
    # to every training process.
    for dist in ("scikit-learn", "kfp"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        if sha.returncode == 0:
            out["git"] = sha.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out
