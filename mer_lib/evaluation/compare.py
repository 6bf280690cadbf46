"""Several models side by side: :func:`compare_runs` (``mer report``, the pipeline's compare step)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mer_lib.data.featureset import LABEL_NAMES
from mer_lib.evaluation.aggregate import (
    CONFUSION_COLUMNS,
    FOLD_COLUMNS,
    concat,
)
from mer_lib.evaluation.directory import load_evaluation, write_evaluation
from mer_lib.evaluation.run import Evaluation, EvaluationError

log = logging.getLogger(__name__)


def compare_runs(runs: Sequence[str], out: str, names: Sequence[str] | None = None, *,
                 primary_metric: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Put several models side by side: one report with a row per model.

    Args:
        runs: evaluation directories (``mer evaluate --out``) or training run directories.
        out: output directory or gs:// URI.
        names: display names, one per run (default: the names recorded in each evaluation; a repeated
            name gets its directory name appended).
        primary_metric: the ranking metric (default ``average_ua``).
        overwrite: replace an existing output directory.

    Returns:
        The ``metrics.json`` document: ``ranking``, ``best`` and per-model ``primary`` and ``metrics``.

    Raises:
        EvaluationError: no runs, a names/runs count mismatch, or runs with different label sets.
    """
    if not runs:
        raise EvaluationError("no runs to compare")
    if names is not None and len(names) != len(runs):
        raise EvaluationError(f"--names: {len(names)} names for {len(runs)} runs")
    evals = [load_evaluation(r) for r in runs]
    labels = evals[0].label_names
    for r, ev in zip(runs, evals, strict=True):
        if ev.label_names and labels and ev.label_names != labels:
            raise EvaluationError(f"{r}: label set {list(ev.label_names)} differs from {runs[0]}'s {list(labels)}")
    fms, cfs, used = [], [], set()
    for i, (r, ev) in enumerate(zip(runs, evals, strict=True)):
        olds = list(dict.fromkeys(ev.fold_metrics["model"]))
        mapping = {}
        for old in olds:
            new = names[i] if names is not None and len(olds) == 1 else old
            if new in used:
                new = f"{new} ({Path(str(r).rstrip('/')).name})"
            if new in used:
                raise EvaluationError(f"{r}: model name {new!r} is used twice; give distinct --names")
            used.add(new)
            mapping[old] = new
        fms.append(ev.fold_metrics.assign(model=ev.fold_metrics["model"].map(mapping)))
        cfs.append(ev.confusion.assign(model=ev.confusion["model"].map(mapping)))
    data = sorted({str(ev.info.get("data", "-")) for ev in evals})
    info = {"runs": [str(r) for r in runs], "data": ", ".join(data),
            "models": [m for ev in evals for m in ev.info.get("models", [])]}
    merged = Evaluation(concat(fms, FOLD_COLUMNS), concat(cfs, CONFUSION_COLUMNS),
                        labels or LABEL_NAMES, info)
    folds = [sorted(set(f["fold"])) for f in fms]
    if any(f != folds[0] for f in folds):
        log.warning("compared runs cover different folds: %s", folds)
    return write_evaluation(merged, out, primary_metric=primary_metric, title="Model comparison",
                            overwrite=overwrite)
