"""Per-fold training of a model family (stage 1 then stage 2) and merging the folds into one run.

The pipeline fans the folds out (one task per family and fold), so each task trains one fold of
every stage of its family, the stage-1 run being the stage-2 teacher. :func:`assemble_run` then
merges the per-fold outputs into the run-directory layout of ``mer train`` (``fold_<k>/`` plus
``run.json``), which evaluation, registration and prediction read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from mer_lib import storage
from mer_lib.pipeline.checkpoints import CheckpointMirror, work_location
from mer_lib.pipeline.families import FAMILIES
from mer_lib.rundir import RESUME_ONLY, RunDir, read_json
from mer_lib.training.api import train

log = logging.getLogger(__name__)

STAGES_DIR = "stages"
FAMILY_JSON = "family.json"


def family_stages(family: str) -> tuple[str, ...]:
    """The stages of ``family``.

    Raises:
        ValueError: unknown family.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    return FAMILIES[family]


def _train_stages(stages: tuple[str, ...], data: str, fold: int, base: Path, **kwargs: Any) -> dict[str, Any]:
    teacher = None
    summaries = {}
    for model in stages:
        run_dir = base / model
        # A stage without the requested recipe (NMER's stage 1, the baselines) trains its faithful one;
        # the recipe each stage used is recorded in its run summary.
        summaries[model] = train(model, data, str(run_dir), [fold], teacher=teacher, recipe_fallback=True, **kwargs)
        teacher = str(run_dir)
    return summaries


def train_family(family: str, data: str, fold: int, out: str, *, epochs: int = 0, seed: int | None = None,
                 device: str | None = None, overrides: list[str] | None = None, recipe: str = "faithful",
                 checkpoint_root: str = "", run_id: str = "", mirror_interval_s: float = 60.0,
                 progress: bool | None = None) -> dict[str, Any]:
    """Train every stage of ``family`` on one fold and write ``out/<stage>/`` run directories.

    Args:
        family: ``ifmmin`` (utt_shared -> ifmmin), ``nmer`` (nmer_pretrain -> nmer) or ``baseline``.
        data: feature-set directory (or gs:// URI).
        fold: the fold to train.
        out: output directory (the task's ``Output[Model].path``).
        epochs: total epochs per stage; 0 keeps the recipe's.
        seed: base seed (default: the recipe's).
        device: ``auto``, ``cpu`` or ``cuda`` (default: the recipe's).
        overrides: ``key=value`` config overrides applied to every stage.
        recipe: ``faithful``, ``improved`` or ``published``; stages without that recipe use faithful.
        checkpoint_root: durable work root for resuming retried pods (see :mod:`mer_lib.pipeline.checkpoints`).
        run_id: the pipeline run id (part of the work location).
        mirror_interval_s: seconds between checkpoint uploads when ``checkpoint_root`` is gs://.
        progress: progress bars.

    Returns:
        ``family.json``: family, fold, stages, final stage and each stage's run summary.
    """
    stages = family_stages(family)
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0 (0 = the recipe's), got {epochs}")
    kwargs = {"epochs": epochs or None, "seed": seed, "device": device, "overrides": list(overrides or []),
              "progress": progress, "recipe": recipe}
    work = work_location(checkpoint_root, run_id, family, fold)
    out_dir = Path(out)
    if not work:
        summaries = _train_stages(stages, data, fold, out_dir, **kwargs)
    elif storage.is_gcs(work):
        local = storage.cache_root() / "pipeline-work" / hashlib.sha256(work.encode()).hexdigest()[:16]
        with CheckpointMirror(local, work, interval_s=mirror_interval_s):
            summaries = _train_stages(stages, data, fold, local, **kwargs)
        _copy_run(local, out_dir)
    else:
        summaries = _train_stages(stages, data, fold, Path(work), **kwargs)
        _copy_run(Path(work), out_dir)
    for name in RESUME_ONLY:
        for p in out_dir.rglob(name):
            p.unlink()
    doc = {"family": family, "fold": int(fold), "stages": list(stages), "final": stages[-1], "recipe": recipe,
           "work_location": work, "summaries": summaries}
    storage.write_text(str(out_dir / FAMILY_JSON), json.dumps(doc, indent=2, default=str) + "\n", overwrite=True)
    return doc


def _copy_run(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*RESUME_ONLY))



def assemble_run(fold_outputs: list[str], out: str) -> dict[str, Any]:
    """Merge per-fold :func:`train_family` outputs into one ``mer train``-style run directory.

    The final stage's ``fold_<k>/`` directories go to ``out/fold_<k>/`` with a merged ``run.json``;
    earlier stages (the teachers) go to ``out/stages/<stage>/fold_<k>/`` for lineage.

    Args:
        fold_outputs: the per-fold output directories (local or gs://).
        out: new or empty output directory (or gs:// URI).

    Returns:
        The merged ``run.json``.

    Raises:
        ValueError: no inputs, mixed families/configs/data, or a fold given twice.
    """
    if not fold_outputs:
        raise ValueError("no per-fold training outputs to assemble")
    merged: dict[str, Any] | None = None
    seen: dict[int, str] = {}
    with storage.staged_dir(out) as stage:
        for uri in fold_outputs:
            src = storage.localize(uri)
            fam = read_json(src / FAMILY_JSON, "not the output of a per-fold training task")
            final = fam["final"]
            run = RunDir(src / final).read()
            if merged is None:
                merged = {**run, "folds": [], "fold_results": {}, "family": fam["family"],
                          "teacher": f"{STAGES_DIR}/{fam['stages'][0]}" if len(fam["stages"]) > 1 else None}
            for key in ("model", "config_hash", "data_fingerprint"):
                if run.get(key) != merged.get(key):
                    raise ValueError(f"{uri}: {key} {run.get(key)!r} differs from the other folds' "
                                     f"{merged.get(key)!r}; cannot merge into one run")
            for k in run["folds"]:
                if k in seen:
                    raise ValueError(f"{uri}: fold {k} was already given by {seen[k]}")
                seen[k] = uri
                shutil.copytree(RunDir(src / final).fold(k).path, RunDir(stage).fold(k).path)
                for earlier in fam["stages"][:-1]:
                    shutil.copytree(RunDir(src / earlier).fold(k).path,
                                    RunDir(stage / STAGES_DIR / earlier).fold(k).path)
            merged["fold_results"].update(run.get("fold_results", {}))
        if merged is None:  # unreachable: fold_outputs is non-empty; keeps the type checker honest
            raise ValueError("no per-fold training outputs to assemble")
        merged["folds"] = sorted(seen)
        merged["fold_results"] = {str(k): merged["fold_results"][str(k)] for k in merged["folds"]
                                  if str(k) in merged["fold_results"]}
        RunDir(stage).write(merged)
    return merged
