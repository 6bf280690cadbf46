"""Checkpoints: atomic saves, ``weights_only`` loads, and loading a trained model back.

A checkpoint is a plain dict of tensors and primitives so ``torch.load(weights_only=True)`` reads it:
``model`` (state dict), ``config`` (resolved config dict), ``meta`` (fold, epoch, data fingerprint,
label names, feature spec, versions), and for ``last.pt`` also optimiser, scheduler, RNG states and
the history needed to resume.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from mer_lib import storage
from mer_lib.config import ExperimentConfig, config_from_dict
from mer_lib.models.base import MERModel
from mer_lib.models.factory import build_model
from mer_lib.rundir import BEST, RunDir


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not match what it is used with."""


def save(obj: dict[str, Any], path: str | Path) -> None:
    """Serialise ``obj`` and replace ``path`` atomically (a crash leaves the old file intact)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    # a view, not a copy (the NMER resume state is ~200 MB); GCS's client takes only bytes
    data = buf.getvalue() if storage.is_gcs(str(path)) else buf.getbuffer()
    storage.write_bytes(str(path), data, overwrite=True)  # type: ignore[arg-type]


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``.

    Raises:
        CheckpointError: the file is missing or unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no checkpoint here")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for corrupt files
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc})") from exc


def find_checkpoint(path: str | Path, fold: int | None = None) -> Path:
    """Resolve a run dir / fold dir / file to the ``best.pt`` to load.

    Args:
        path: a checkpoint file, a fold directory (``RUN/fold_<k>``) or a run directory.
        fold: required when ``path`` is a run directory.

    Raises:
        CheckpointError: nothing loadable at ``path``.
    """
    p = Path(storage.localize(str(path)))
    if p.is_file():
        return p
    run = RunDir(p)
    if fold is not None and run.fold(fold).best.exists():
        return run.fold(fold).best
    if (p / BEST).exists():
        return p / BEST
    folds = run.folds()
    hint = f" (folds with a checkpoint: {', '.join(map(str, folds))})" if folds else ""
    what = f"fold {fold} of " if fold is not None else ""
    raise CheckpointError(f"{p}: no trained checkpoint ({BEST}) for {what}this model directory{hint}")


def load_trained(path: str | Path, device: str | torch.device = "cpu", fold: int | None = None
                 ) -> tuple[MERModel, ExperimentConfig, dict[str, Any]]:
    """Rebuild a trained model from a checkpoint, in eval mode.

    Args:
        path: checkpoint file, fold directory or (with ``fold``) run directory.
        device: where to put the model.
        fold: fold number when ``path`` is a run directory.

    Returns:
        ``(model, config, meta)``.
    """
    ckpt_path = find_checkpoint(path, fold)
    ckpt = load(ckpt_path, map_location=device)
    if "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{ckpt_path}: not a mer checkpoint (keys: {', '.join(ckpt)})")
    # a model trained by an older version may carry keys since removed: they no longer mean anything
    cfg = config_from_dict(ckpt["config"], source=str(ckpt_path), strict=False)
    model = build_model(cfg)
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    # A stage-2 checkpoint does not carry its frozen teacher: it is only needed for training.
    missing = [k for k in missing if not k.startswith("teacher.")]
    if missing or unexpected:
        raise CheckpointError(f"{ckpt_path}: weights do not fit model {cfg.model!r} "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.to(device).eval()
    return model, cfg, dict(ckpt.get("meta", {}))


def model_state(model: MERModel) -> dict[str, torch.Tensor]:
    """The model's state dict without the frozen teacher (it is saved with the teacher's own run)."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("teacher.")}
