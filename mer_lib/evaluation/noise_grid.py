"""Noise grids: noise type x intensity T x which modalities are corrupted, with fixed seeds.

"Which modalities are corrupted" follows NMER's protocol: under a missing condition the modalities
that are *not* kept are replaced by noisy versions (instead of zeros), so the six conditions span the
corruption patterns.  The seed of each cell depends only on (base seed, fold, type, T), so a grid is
reproducible and independent of the order in which cells are run.

T is called ``steps`` here and in the tables: the number of diffusion steps applied, not the
training noise's ``noise.level`` (a share in [0, 1]).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pandas as pd

from mer_lib.config import NoiseConfig
from mer_lib.data.dataset import BatchLoader
from mer_lib.inference.predict import predict_frame
from mer_lib.models.base import MERModel
from mer_lib.noise import NoiseInjector


@dataclass(frozen=True)
class NoiseCell:
    """One grid cell: noise type, intensity T (``steps``) and its fixed seed."""

    noise: str
    steps: int
    seed: int


def cell_seed(base: int, fold: int, noise: str, steps: int) -> int:
    """Stable 31-bit seed of one (fold, type, T) cell (no Python ``hash``: that is salted per process)."""
    digest = hashlib.sha256(f"{base}/{fold}/{noise}/{steps}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def grid_cells(types: Iterable[str], steps: Iterable[int], *, base_seed: int, fold: int) -> list[NoiseCell]:
    """Every (type, T) cell of a grid, with its seed.

    Raises:
        ValueError: a T below 1, or an unknown noise type.
    """
    allowed = next(f for f in dataclasses.fields(NoiseConfig) if f.name == "type").metadata["choices"]
    cells = []
    for t in types:
        if t not in allowed:
            raise ValueError(f"unknown noise type {t!r}; expected one of {', '.join(allowed)}")
        for n in steps:
            if int(n) < 1:
                raise ValueError(f"noise steps T must be >= 1, got {n}")
            cells.append(NoiseCell(t, int(n), cell_seed(base_seed, fold, t, int(n))))
    return cells


def run_grid(model: MERModel, loader: BatchLoader, noise_cfg: NoiseConfig, cells: list[NoiseCell], *,
             device: str = "cpu", label_names: tuple[str, ...] | None = None
             ) -> Iterator[tuple[NoiseCell, pd.DataFrame]]:
    """Predict the test set once per grid cell with the missing modalities noised.

    Args:
        model: trained model.
        loader: test loader over the missing conditions (the condition says what gets corrupted).
        noise_cfg: the model's noise section; ``type`` is replaced per cell, the rest kept.
        cells: from :func:`grid_cells`.
        device: where to compute.
        label_names: class names for the probability columns.

    Yields:
        ``(cell, predictions)`` with the predictions of :func:`mer_lib.inference.predict.predict_frame`.
    """
    for cell in cells:
        cfg = dataclasses.replace(noise_cfg, type=cell.noise)
        injector = NoiseInjector(cfg, steps=cell.steps, seed=cell.seed)
        yield cell, predict_frame(model, loader, device=device, transform=injector.apply,
                                  label_names=label_names)
