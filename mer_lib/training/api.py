"""``train()``: the one entry point used by ``mer train``, the KFP components and the tests."""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from mer_lib import storage
from mer_lib.config import ExperimentConfig, load_config
from mer_lib.data.featureset import FeatureSet, FeatureSetError, FeatureSpec, list_folds
from mer_lib.data.folds import guard_folds, parse_folds
from mer_lib.rundir import RunDir
from mer_lib.training.engine import DataContext, FoldResult, train_fold
from mer_lib.training.reproducibility import package_versions

log = logging.getLogger(__name__)


def resolve_config(model: str | None, config_file: str | None = None, overrides: list[str] | None = None,
                   epochs: int | None = None, seed: int | None = None, device: str | None = None, *,
                   recipe: str = "faithful", recipe_fallback: bool = False) -> ExperimentConfig:
    """Named recipe <- ``--config`` <- ``--set`` <- the convenience flags (epochs, seed, device).

    ``--epochs N`` splits N like the recipes do: ``niter = ceil(N/2)`` constant epochs, the rest decaying.
    """
    extra = list(overrides or [])
    if epochs is not None:
        if epochs < 1:
            raise ValueError(f"--epochs {epochs}: must be at least 1")
        extra += [f"train.niter={(epochs + 1) // 2}", f"train.niter_decay={epochs // 2}"]
    if seed is not None:
        extra.append(f"train.seed={seed}")
    if device is not None:
        extra.append(f"train.device={device}")
    return load_config(model, config_file, extra, recipe=recipe, recipe_fallback=recipe_fallback)


def open_data(cfg: ExperimentConfig, data: str) -> tuple[ExperimentConfig, DataContext]:
    """Load the feature set once; its ``featureset.json`` (when present) fixes feature names and dims.

    Returns:
        The config with ``data`` filled in from the feature set, and the shared data context.
    """
    fs = FeatureSet.open(data, spec=FeatureSpec.from_config(cfg.data), num_classes=cfg.data.num_classes)
    names, dims = fs.spec.names, fs.spec.dims
    cfg = replace(cfg, data=replace(cfg.data, feature_a=names["a"], feature_v=names["v"], feature_l=names["l"],
                                    dim_a=dims["a"], dim_v=dims["v"], dim_l=dims["l"], root=str(data),
                                    num_classes=len(fs.label_names)))
    return cfg, DataContext(store=fs.store(), label_names=fs.label_names, fingerprint=fs.fingerprint(), root=str(data))


def train(model: str | None, data: str, out: str, folds: str | list[int] = "1", *, teacher: str | None = None,
          config_file: str | None = None, overrides: list[str] | None = None, epochs: int | None = None,
          seed: int | None = None, device: str | None = None, progress: bool | None = None,
          data_context: DataContext | None = None, allow_overlap: bool = False, recipe: str = "faithful",
          recipe_fallback: bool = False) -> dict[str, Any]:
    """Train ``model`` on each fold of ``data`` and write a run directory at ``out``.

    Args:
        model: model name (or None to take it from ``config_file``).
        data: feature-set directory or gs:// URI.
        out: run directory or gs:// URI; a killed run restarted with the same arguments resumes.
        folds: fold spec, e.g. ``"1-10"``.
        teacher: the stage-1 run directory (stage-2 models).
        config_file: YAML merged over the packaged recipe.
        overrides: ``key=value`` overrides.
        epochs: total epochs (overrides the recipe).
        seed: base seed.
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: force progress bars on/off (default: on for a TTY).
        data_context: an already loaded feature set (saves loading it again).
        recipe: the named recipe (``faithful``, ``improved``, ``published``) merged under ``config_file``.
        recipe_fallback: a model without that recipe trains its faithful one instead of raising.
        allow_overlap: train on folds whose splits share utterances or speakers (refused by default); the
            override and the leaks found are recorded in ``run.json`` and shown in every report of the run.

    Returns:
        The run summary written to ``<out>/run.json``.

    Raises:
        FoldLeakError: a fold's splits share an utterance or a speaker (before any training).
    """
    cfg = resolve_config(model, config_file, overrides, epochs, seed, device, recipe=recipe,
                         recipe_fallback=recipe_fallback)
    if data_context is not None:
        cfg = replace(cfg, data=replace(cfg.data, root=str(data)))
        ctx = data_context
    else:
        cfg, ctx = open_data(cfg, data)
    fold_list = parse_folds(folds)
    available = list_folds(ctx.store.root)
    missing = [k for k in fold_list if k not in available]
    if missing:
        raise FeatureSetError(f"{data}: fold(s) {missing} not in the feature set (has {available})")
    overlaps = guard_folds(ctx.store.root, fold_list, allow_overlap=allow_overlap, where=str(data))
    if overlaps:
        log.warning("--allow-overlap: training on leaking folds; every score of this run is inflated: %s",
                    "; ".join(overlaps))
    teacher_local = str(storage.localize(teacher)) if teacher else None

    remote = storage.is_gcs(out)
    if remote:
        if storage.list_files(out):
            raise FileExistsError(f"{out}: already exists; refusing to overwrite (choose a new --out)")
        work = storage.cache_root() / "runs" / hashlib.sha256(out.encode()).hexdigest()[:16]
    else:
        work = Path(out)
    work.mkdir(parents=True, exist_ok=True)
    results: list[FoldResult] = []
    for k in fold_list:
        results.append(train_fold(cfg, ctx, k, RunDir(work).fold(k).path, teacher_local, progress))
    summary = {
        "model": cfg.model, "recipe": cfg.recipe, "select_on": cfg.train.select_on, "folds": fold_list,
        "data": str(data), "data_fingerprint": ctx.fingerprint, "config_hash": cfg.hash(), "teacher": teacher,
        "label_names": list(ctx.label_names), "feature_spec": ctx.store.spec.to_dict(), "versions": package_versions(),
        "allow_overlap": bool(allow_overlap), "fold_overlaps": overlaps,
        "fold_results": {str(r.fold): {"best_epoch": r.best_epoch, "best_score": r.best_score,
                                       "average": r.test_metrics.get("average"), "avl": r.test_metrics.get("avl")}
                         for r in results},
    }
    RunDir(work).write(summary)
    if remote:
        storage.upload_dir(work, out)
        shutil.rmtree(work, ignore_errors=True)
    return summary
