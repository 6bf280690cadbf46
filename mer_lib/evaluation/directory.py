"""Evaluation directories: :func:`write_evaluation`, :func:`evaluate_run` (the KFP evaluation component),
:func:`load_evaluation` (also scores a training run directory from its test predictions).

An evaluation directory holds (tables as both CSV and parquet)::

    fold_metrics.{csv,parquet}   tidy per-fold rows: model, select_on, noise, steps, fold, condition, metric, value, n
    summary.{csv,parquet}        the same rows aggregated over folds: mean (the papers' number), std, min, max
    confusion.{csv,parquet}      per-fold confusion counts (rows true, columns pred)
    predictions.parquet          every prediction (evaluate only): model, noise, steps, fold, id, condition, ...
    metrics.json                 the primary metric and all flat metrics (what pipelines gate on)
    evaluation.json              provenance: model dir(s), data, fingerprints, folds, noise config, timings
    report.md, report.html       the human-readable report (HTML self-contained, embedded PNG plots)

The directory is built in a staging area and published atomically; an existing non-empty output
directory is never overwritten unless asked. ``steps`` is the noise grid's intensity T (diffusion
steps applied, 0 = clean); directories written before it had that name call the column ``level``
and still read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mer_lib import storage
from mer_lib.config import EvalConfig
from mer_lib.evaluation.aggregate import (
    CONFUSION_COLUMNS,
    FOLD_COLUMNS,
    aggregate_folds,
    concat,
    confusion_frame,
    flat_metrics,
    metrics_frame,
    primary_value,
    steps_column,
)
from mer_lib.evaluation.report import render_html, render_markdown
from mer_lib.evaluation.run import (
    Evaluation,
    EvaluationError,
    evaluate_model_dir,
    leak_warnings,
    read_json,
    run_overlaps,
)
from mer_lib.metrics import condition_metrics
from mer_lib.rundir import PREDICTIONS_TST, RunDir

EVALUATION_JSON = "evaluation.json"
METRICS_JSON = "metrics.json"


def _write_table(stage: Path, name: str, df: pd.DataFrame, csv: bool = True) -> None:
    """Write a tidy table as parquet (and CSV) into the staging directory."""
    df.to_parquet(stage / f"{name}.parquet", index=False)
    if csv:
        df.to_csv(stage / f"{name}.csv", index=False)


def _metrics_doc(summary: pd.DataFrame, primary_metric: str, models: list[str]) -> dict[str, Any]:
    per_model = {}
    for m in models:
        flat = flat_metrics(summary, m)
        per_model[m] = {"primary": primary_value(flat, primary_metric),
                        "select_on": sorted(set(summary.loc[summary["model"] == m, "select_on"])),
                        "metrics": flat}
    ranking = sorted(models, key=lambda m: per_model[m]["primary"], reverse=True)
    return {"primary_metric": primary_metric, "ranking": ranking, "best": ranking[0], "models": per_model}


def write_evaluation(ev: Evaluation, out: str, *, primary_metric: str | None = None, title: str | None = None,
                     overwrite: bool = False, keep_predictions: bool = True) -> dict[str, Any]:
    """Aggregate an :class:`Evaluation` and publish its directory (tables, metrics.json, reports).

    Args:
        ev: the evaluation tables.
        out: output directory or gs:// URI.
        primary_metric: ``<condition>_<wa|ua|f1>`` (default ``eval.primary_metric``: ``average_ua``).
        title: report title.
        overwrite: replace an existing non-empty ``out``.
        keep_predictions: also write ``predictions.parquet``.

    Returns:
        The ``metrics.json`` document.
    """
    primary_metric = primary_metric or EvalConfig().primary_metric
    summary = aggregate_folds(ev.fold_metrics)
    models = list(dict.fromkeys(summary["model"]))
    doc = _metrics_doc(summary, primary_metric, models)
    if len(models) == 1:
        only = doc["models"][models[0]]
        doc.update({"model": models[0], "primary": only["primary"], "select_on": only["select_on"],
                    "metrics": only["metrics"]})
    doc["folds"] = sorted(set(int(k) for k in ev.fold_metrics["fold"]))
    title = title or ("Evaluation: " + ", ".join(models))
    provenance = {
        "models": ", ".join(f"{m} ({', '.join(doc['models'][m]['select_on'])})" for m in models),
        "data": ev.info.get("data", "-"), "folds": ", ".join(map(str, doc["folds"])),
        "primary metric": f"{primary_metric} = "
                          + ", ".join(f"{m} {doc['models'][m]['primary']:.4f}" for m in models),
    }
    leaks = leak_warnings(ev.info)
    if leaks:
        doc["fold_overlaps"] = leaks
        provenance["WARNING fold leakage (--allow-overlap), scores inflated"] = "; ".join(
            f"{m}: {len(p)} leak(s), first: {p[0]}" for m, p in leaks.items())
    with storage.staged_dir(out, overwrite=overwrite) as stage:
        _write_table(stage, "fold_metrics", ev.fold_metrics)
        _write_table(stage, "summary", summary)
        _write_table(stage, "confusion", ev.confusion)
        if keep_predictions and ev.predictions is not None:
            _write_table(stage, "predictions", ev.predictions, csv=False)
        (stage / METRICS_JSON).write_text(json.dumps(doc, indent=2, allow_nan=True) + "\n")
        (stage / EVALUATION_JSON).write_text(json.dumps({**ev.info, "label_names": list(ev.label_names),
                                                         "primary_metric": primary_metric}, indent=2) + "\n")
        (stage / "report.md").write_text(render_markdown(summary, ev.fold_metrics, title=title,
                                                         provenance=provenance))
        (stage / "report.html").write_text(render_html(summary, ev.fold_metrics, ev.confusion, title=title,
                                                       label_names=ev.label_names, provenance=provenance))
    return doc


def evaluate_run(model_dir: str, data: str, folds: str | Sequence[int] | None, out: str, *,
                 primary_metric: str | None = None, overwrite: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Evaluate one trained model on every fold and write the evaluation directory ``out``.

    Args:
        model_dir: run directory of ``mer train``.
        data: feature-set directory or gs:// URI.
        folds: fold spec or None for the run's folds.
        out: output directory or gs:// URI (must be new or empty unless ``overwrite``).
        primary_metric: metric written as ``primary`` in ``metrics.json`` (default ``average_ua``).
        overwrite: replace an existing output directory.
        **kwargs: passed to :func:`evaluate_model_dir` (noise grid, conditions, batch size, device ...).

    Returns:
        The ``metrics.json`` document (``primary``, ``metrics``, ``select_on``, ``folds`` ...).
    """
    check_output_free(out, overwrite)
    ev = evaluate_model_dir(model_dir, data, folds, **kwargs)
    return write_evaluation(ev, out, primary_metric=primary_metric, overwrite=overwrite)


def check_output_free(out: str, overwrite: bool = False) -> None:
    """Refuse a non-empty output directory before any work (unless ``overwrite``).

    Raises:
        FileExistsError: ``out`` (local or gs://) holds files.
    """
    taken = storage.list_files(out) if storage.is_gcs(out) else Path(out).exists() and any(Path(out).iterdir())
    if taken and not overwrite:
        raise FileExistsError(f"{out}: already exists and is not empty; refusing to overwrite")


def _read_table(d: Path, name: str) -> pd.DataFrame:
    if (d / f"{name}.parquet").exists():
        return steps_column(pd.read_parquet(d / f"{name}.parquet"))
    if (d / f"{name}.csv").exists():
        return steps_column(pd.read_csv(d / f"{name}.csv"))
    raise EvaluationError(f"{d}: no {name}.parquet or {name}.csv")


def _from_training_run(d: Path) -> Evaluation:
    """Score a training run directory directly from its ``fold_<k>/predictions_tst.csv`` files."""
    rd = RunDir(d)
    run = read_json(rd.run_json)
    fold_dirs = {k: rd.fold(k) for k in rd.folds(with_file=PREDICTIONS_TST)}
    if not fold_dirs:
        raise EvaluationError(f"{d}: neither an evaluation directory (fold_metrics.parquet) nor a training run "
                              "with fold_<k>/predictions_tst.csv")
    name = run.get("model") or d.name
    if run.get("recipe") and run["recipe"] != "faithful":
        name = f"{name}:{run['recipe']}"
    labels = tuple(run.get("label_names") or ())
    fm, cf = [], []
    for k, fd in fold_dirs.items():
        pred = pd.read_csv(fd.predictions)
        if not labels:
            labels = tuple(c[2:] for c in pred.columns if c.startswith("p_"))
        sel = str(read_json(fd.test_metrics_json).get("select_on", run.get("select_on", "val")))
        try:
            res = condition_metrics(pred, len(labels))
        except ValueError as exc:
            raise EvaluationError(f"{fd.predictions}: {exc}") from exc
        fm.append(metrics_frame(res, fold=k, model=name, select_on=sel))
        cf.append(confusion_frame(res, fold=k, model=name, select_on=sel))
    info = {"models": [{"name": name, "model_dir": str(d), "select_on": [run.get("select_on")],
                        "fold_overlaps": run_overlaps(run)}],
            "data": run.get("data", "-"), "data_fingerprint": run.get("data_fingerprint")}
    return Evaluation(concat(fm, FOLD_COLUMNS), concat(cf, CONFUSION_COLUMNS), labels, info)


def load_evaluation(path: str) -> Evaluation:
    """Read an evaluation directory, or score a training run directory from its test predictions.

    Raises:
        EvaluationError: ``path`` is neither.
    """
    d = storage.localize(path)
    if not d.is_dir():
        raise EvaluationError(f"{path}: not a directory")
    if not ((d / "fold_metrics.parquet").exists() or (d / "fold_metrics.csv").exists()):
        return _from_training_run(d)
    info = read_json(d / EVALUATION_JSON)
    return Evaluation(_read_table(d, "fold_metrics"), _read_table(d, "confusion"),
                      tuple(info.get("label_names") or ()), info)
