"""Run trained models over the evaluation conditions and noise grid: :func:`evaluate_model_dir`.

Loads each fold's checkpoint, checks it fits the feature set (dimensions, labels, fold leaks), predicts
every missing-modality condition and noise cell, and returns the tables as an :class:`Evaluation`
(written by :mod:`mer_lib.evaluation.directory`).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from mer_lib import rundir, storage
from mer_lib.conditions import ALL_CONDITIONS, MISSING_CONDITIONS, MODALITIES, parse_conditions
from mer_lib.config import ConfigError, EvalConfig, ExperimentConfig, NoiseConfig, load_config
from mer_lib.data.dataset import FoldData
from mer_lib.data.featureset import LABEL_NAMES, FeatureSet, FeatureSetError, FeatureStore, label_names_for
from mer_lib.data.folds import guard_folds, parse_folds
from mer_lib.evaluation.aggregate import (
    CONFUSION_COLUMNS,
    FOLD_COLUMNS,
    concat,
    confusion_frame,
    metrics_frame,
)
from mer_lib.evaluation.noise_grid import grid_cells, run_grid
from mer_lib.inference.checkpoint import CheckpointError, find_checkpoint, load_trained
from mer_lib.inference.device import resolve_device, use_threads
from mer_lib.inference.predict import predict_frame
from mer_lib.metrics import condition_metrics
from mer_lib.rundir import RUN_JSON, RunDir

log = logging.getLogger(__name__)

#: Noise types of the NMER paper, evaluated by default in a noise grid.
DEFAULT_NOISE_TYPES: tuple[str, ...] = ("gaussian", "impulse")


class EvaluationError(ValueError):
    """Evaluation inputs do not fit together (the message names the path and the mismatch)."""


@dataclass
class Evaluation:
    """The tables of one evaluation (one or several models) plus its provenance."""

    fold_metrics: pd.DataFrame
    confusion: pd.DataFrame
    label_names: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)
    predictions: pd.DataFrame | None = None


def check_compatible(where: str, cfg: ExperimentConfig, meta: dict[str, Any], store: FeatureStore,
                     data: str, label_names: tuple[str, ...]) -> None:
    """Refuse to evaluate a checkpoint on features or labels it was not trained for.

    Args:
        where: the checkpoint path (for the message).
        cfg: the checkpoint's config.
        meta: the checkpoint's meta (``label_names``, ``data_fingerprint`` ...).
        store: the loaded feature set.
        data: the feature set's path/URI (for the message).
        label_names: the feature set's label names.

    Raises:
        EvaluationError: feature dimensions or the label set differ.
    """
    trained = {"a": cfg.data.dim_a, "v": cfg.data.dim_v, "l": cfg.data.dim_l}
    if trained != dict(store.spec.dims):
        show = ", ".join(f"{m}={trained[m]}" for m in MODALITIES)
        have = ", ".join(f"{m}={store.spec.dims.get(m)}" for m in MODALITIES)
        raise EvaluationError(f"{where}: trained on feature dimensions {show}, but {data} has {have}")
    trained_labels = tuple(meta.get("label_names") or LABEL_NAMES[: cfg.data.num_classes])
    if trained_labels != tuple(label_names):
        raise EvaluationError(f"{where}: trained on labels {list(trained_labels)}, but {data} has "
                              f"{list(label_names)}")
    names = {"a": cfg.data.feature_a, "v": cfg.data.feature_v, "l": cfg.data.feature_l}
    if names != dict(store.spec.names):
        log.warning("%s: trained on features %s, evaluating on %s (same dimensions)", where, names,
                    dict(store.spec.names))


def _resolve_folds(model_dir: Path, folds: str | Sequence[int] | None, run: dict[str, Any]) -> list[int]:
    if folds is not None:
        return parse_folds(list(folds) if not isinstance(folds, (str, int)) else folds)
    if run.get("folds"):
        return [int(k) for k in run["folds"]]
    found = RunDir(model_dir).folds(with_file=None)
    if not found:
        raise EvaluationError(f"{model_dir}: no fold_<k> directories and no {RUN_JSON}; is this a run directory?")
    return found


def read_json(path: Path) -> dict[str, Any]:
    """A run's or evaluation's JSON file as a dict, ``{}`` when absent (malformed: ``RunDirError``)."""
    return rundir.read_json(path) if path.exists() else {}


def _noise_config(noise_set: Sequence[str] | None) -> NoiseConfig:
    """The evaluation noise recipe: the reference NMER scheduler plus ``key=value`` overrides."""
    try:
        return load_config(None, None, [f"noise.{item}" for item in (noise_set or [])]).noise
    except ConfigError as exc:
        raise EvaluationError(f"--noise-set: {exc}") from exc


def run_overlaps(run: dict[str, Any]) -> list[str]:
    """The fold leaks a training run recorded when it was trained with ``--allow-overlap``."""
    return [str(p) for p in run.get("fold_overlaps") or []]


def leak_warnings(info: dict[str, Any]) -> dict[str, list[str]]:
    """Model name -> fold leaks accepted with ``--allow-overlap`` (shown in every report made from it)."""
    return {str(m.get("name")): list(m["fold_overlaps"]) for m in info.get("models", []) if m.get("fold_overlaps")}


def _show_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def evaluate_model_dir(model_dir: str, data: str, folds: str | Sequence[int] | None = None, *,
                       name: str | None = None, conditions: Sequence[str] | str | None = None,
                       noise_grid: bool = False, noise_types: Sequence[str] | None = None,
                       noise_steps: Sequence[int] | None = None, noise_set: Sequence[str] | None = None,
                       batch_size: int | None = None, device: str = "cpu",
                       progress: bool | None = None, allow_overlap: bool = False) -> Evaluation:
    """Predict and score every fold of a run directory (no files written).

    Args:
        model_dir: run directory of ``mer train`` (``fold_<k>/best.pt`` per fold), local or gs://.
        data: feature-set directory or gs:// URI.
        folds: fold spec (``"1-10"``, list); default: the folds recorded in ``run.json``.
        name: display name of the model (default: the model name, plus the recipe when not faithful).
        conditions: clean-protocol conditions (default: the six missing ones plus ``avl``).
        noise_grid: also run the noise grid over the six missing conditions.
        noise_types: noise types of the grid (default: gaussian and impulse, as in NMER).
        noise_steps: intensities T of the grid, in diffusion steps (default: ``eval.noise_levels``, 20..100).
        noise_set: ``key=value`` overrides of the evaluation noise recipe (e.g. ``seed=7``).
        batch_size: evaluation batch size (default: the checkpoint's ``train.eval_batch_size``).
        device: ``cpu``, ``cuda`` or ``auto``.
        progress: progress bars (default: on for a TTY).
        allow_overlap: evaluate folds whose splits share utterances or speakers (refused by default); the
            leaks, and those recorded by the training run, are shown in every report.

    Returns:
        The :class:`Evaluation` (tables, provenance and predictions).

    Raises:
        EvaluationError: missing checkpoints or folds, or a checkpoint that does not fit the data.
        FoldLeakError: a fold's splits share an utterance or a speaker (before any work).
    """
    t_start = time.perf_counter()
    mdir = storage.localize(model_dir)
    if not mdir.is_dir():
        raise EvaluationError(f"{model_dir}: not a run directory")
    run = read_json(RunDir(mdir).run_json)
    fold_list = _resolve_folds(mdir, folds, run)
    # Fail before any work: every fold needs a checkpoint and must exist in the data.
    ckpts: dict[int, Path] = {}
    for k in fold_list:
        try:
            ckpts[k] = find_checkpoint(mdir, fold=k)
        except CheckpointError as exc:
            raise EvaluationError(str(exc)) from exc
        if ckpts[k] != RunDir(mdir).fold(k).best:
            raise EvaluationError(f"{RunDir(mdir).fold(k).path}: no checkpoint for fold {k} in this model directory")
    try:
        fs = FeatureSet.open(data)
    except FeatureSetError as exc:
        raise EvaluationError(str(exc)) from exc
    root = fs.root
    available = fs.folds()
    absent = [k for k in fold_list if k not in available]
    if absent:
        raise EvaluationError(f"{data}: fold(s) {absent} missing from the feature set (it has {available})")
    overlaps = run_overlaps(run) + guard_folds(root, fold_list, allow_overlap=allow_overlap, where=str(data))
    conds = parse_conditions(conditions) if isinstance(conditions, str) else list(conditions or ALL_CONDITIONS)
    steps = [int(t) for t in (noise_steps or EvalConfig().noise_levels)]
    types = list(noise_types or DEFAULT_NOISE_TYPES)
    ncfg = _noise_config(noise_set)
    dev = resolve_device(device)

    store = fs.store()
    data_fp = fs.fingerprint()
    show = _show_progress(progress)
    fm, cf, preds = [], [], []
    label_names: tuple[str, ...] = ()
    select_on: set[str] = set()
    model_name, timings = name, {"clean_s": 0.0, "noise_s": 0.0}
    for k in tqdm(fold_list, desc="folds", disable=not show, unit="fold"):
        model, cfg, meta = load_trained(ckpts[k], device=dev)
        use_threads(cfg.train.threads)  # as the model was trained (0: the CPUs this process may use)
        label_names = label_names_for(root, cfg.data.num_classes)
        check_compatible(str(ckpts[k]), cfg, meta, store, data, label_names)
        if meta.get("data_fingerprint") and meta["data_fingerprint"] != data_fp:
            log.warning("%s: trained on data with fingerprint %s, evaluating on %s (%s)", ckpts[k],
                        str(meta["data_fingerprint"])[:12], data_fp[:12], data)
        if int(meta.get("fold", k)) != k:
            raise EvaluationError(f"{ckpts[k]}: checkpoint is for fold {meta.get('fold')}, not fold {k}")
        if model_name is None:
            model_name = cfg.model if cfg.recipe == "faithful" else f"{cfg.model}:{cfg.recipe}"
        sel = str(meta.get("select_on", cfg.train.select_on))
        select_on.add(sel)
        keys = {"fold": k, "model": model_name, "select_on": sel}
        fold_data = FoldData(store, k, norm_a=cfg.data.norm_a, num_classes=len(label_names))
        bs = batch_size or cfg.train.eval_batch_size
        t0 = time.perf_counter()
        loader = fold_data.loader("tst", batch_size=bs, conditions=conds)
        pred = predict_frame(model, loader, device=dev, label_names=label_names)
        timings["clean_s"] += time.perf_counter() - t0
        res = condition_metrics(pred, len(label_names))
        fm.append(metrics_frame(res, **keys))
        cf.append(confusion_frame(res, **keys))
        preds.append(pred.assign(model=model_name, noise="none", steps=0, fold=k))
        if noise_grid:
            t0 = time.perf_counter()
            grid_loader = fold_data.loader("tst", batch_size=bs, conditions=list(MISSING_CONDITIONS))
            cells = grid_cells(types, steps, base_seed=ncfg.seed, fold=k)
            for cell, npred in tqdm(run_grid(model, grid_loader, ncfg, cells, device=str(dev),
                                             label_names=label_names),
                                    total=len(cells), desc=f"fold {k} noise grid", disable=not show, leave=False):
                nres = condition_metrics(npred, len(label_names))
                fm.append(metrics_frame(nres, noise=cell.noise, steps=cell.steps, **keys))
                cf.append(confusion_frame(nres, noise=cell.noise, steps=cell.steps, **keys))
                preds.append(npred.assign(model=model_name, noise=cell.noise, steps=cell.steps, fold=k))
            timings["noise_s"] += time.perf_counter() - t0
        del model
    if len(select_on) > 1:
        log.warning("%s: folds were selected with different protocols: %s", model_dir, sorted(select_on))
    predictions = pd.concat(preds, ignore_index=True)
    front = ["model", "noise", "steps", "fold"]
    predictions = predictions[front + [c for c in predictions.columns if c not in front]]
    info = {
        "models": [{"name": model_name, "model_dir": str(model_dir), "model": run.get("model"),
                    "recipe": run.get("recipe"), "select_on": sorted(select_on), "folds": fold_list,
                    "fold_overlaps": list(dict.fromkeys(overlaps))}],
        "data": str(data), "data_fingerprint": data_fp, "folds": fold_list, "conditions": conds,
        "noise_grid": {"types": types, "steps": steps, "config": dataclasses.asdict(ncfg)} if noise_grid else None,
        "device": str(dev), "batch_size": batch_size, "label_names": list(label_names),
        "timing": {**timings, "total_s": time.perf_counter() - t_start,
                   "test_items_per_fold": int(len(predictions[predictions["noise"] == "none"]) / len(fold_list))},
    }
    return Evaluation(concat(fm, FOLD_COLUMNS), concat(cf, CONFUSION_COLUMNS), label_names, info, predictions)
