"""Tidy metric tables and their aggregation over folds (spec section 7.2).

One fold's :func:`~mer_lib.metrics.condition_metrics` result becomes tidy rows
``(model, select_on, noise, steps, fold, condition, metric, value, n)``; the cross-fold summary is the
arithmetic mean over folds of each row (the papers' number: "average" is pooled per fold first, then
averaged over folds), with the sample standard deviation, min, max and the number of folds.

``steps`` is the noise intensity T of a grid cell: the number of diffusion steps applied (0 when
clean). It is not the training noise's ``noise.level``, a share in [0, 1]; tables written before
the column had its own word call it ``level``, and :func:`steps_column` reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mer_lib.conditions import ALL_CONDITIONS, FULL_CONDITION, MISSING_CONDITIONS
from mer_lib.metrics import AVERAGE, SCALAR_METRICS

#: Columns identifying one evaluation setting (everything but the fold).
SETTING_KEYS: tuple[str, ...] = ("model", "select_on", "noise", "steps")
#: The intensity column's name in tables written before it was called ``steps``.
LEGACY_STEPS_COLUMN = "level"
#: Column order of the per-fold tidy metric table.
FOLD_COLUMNS: tuple[str, ...] = (*SETTING_KEYS, "fold", "condition", "metric", "value", "n")
#: Column order of the tidy confusion table.
CONFUSION_COLUMNS: tuple[str, ...] = (*SETTING_KEYS, "fold", "condition", "true", "pred", "count")
#: Column order of the cross-fold summary.
SUMMARY_COLUMNS: tuple[str, ...] = (*SETTING_KEYS, "condition", "metric", "mean", "std", "min", "max",
                                    "n_folds", "folds")
#: Table column order of the papers: six missing conditions, pooled average, then full modality.
TABLE_CONDITIONS: tuple[str, ...] = (*MISSING_CONDITIONS, AVERAGE, FULL_CONDITION)
#: ``noise`` value of the clean (zero-missing) protocol.
CLEAN = "none"
#: What each ``train.select_on`` value means, for table captions.
PROTOCOLS: dict[str, str] = {
    "val": "epoch selected on validation UA",
    "test_leak": "epoch selected on TEST UA (the published protocol; optimistic)",
}


def condition_label(condition: str) -> str:
    """Paper-style column label: ``"al" -> "{a,l}"``; ``"average"`` stays as is."""
    if condition in ALL_CONDITIONS:
        return "{" + ",".join(condition) + "}"
    return condition


def steps_column(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with a legacy ``level`` column renamed to ``steps`` (tables written before the rename)."""
    if LEGACY_STEPS_COLUMN in table.columns and "steps" not in table.columns:
        return table.rename(columns={LEGACY_STEPS_COLUMN: "steps"})
    return table


def metrics_frame(results: dict[str, dict[str, Any]], *, fold: int, model: str, select_on: str,
                  noise: str = CLEAN, steps: int = 0) -> pd.DataFrame:
    """Tidy rows of one fold's per-condition metrics.

    Args:
        results: output of :func:`~mer_lib.metrics.condition_metrics`.
        fold: fold number.
        model: display name of the model.
        select_on: selection protocol recorded with the checkpoint (``val`` or ``test_leak``).
        noise: noise type, or ``"none"`` for the zero-missing protocol.
        steps: noise intensity T, the diffusion steps applied (0 when clean).

    Returns:
        DataFrame with :data:`FOLD_COLUMNS`, one row per (condition, metric).
    """
    rows = [{"model": model, "select_on": select_on, "noise": noise, "steps": int(steps), "fold": int(fold),
             "condition": cond, "metric": m, "value": float(res[m]), "n": int(res["n"])}
            for cond, res in results.items() for m in SCALAR_METRICS]
    return pd.DataFrame(rows, columns=list(FOLD_COLUMNS))


def confusion_frame(results: dict[str, dict[str, Any]], *, fold: int, model: str, select_on: str,
                    noise: str = CLEAN, steps: int = 0) -> pd.DataFrame:
    """Tidy confusion counts of one fold (rows ``true``, columns ``pred``), every condition."""
    rows = [{"model": model, "select_on": select_on, "noise": noise, "steps": int(steps), "fold": int(fold),
             "condition": cond, "true": t, "pred": p, "count": int(c)}
            for cond, res in results.items()
            for t, row in enumerate(res["confusion"]) for p, c in enumerate(row)]
    return pd.DataFrame(rows, columns=list(CONFUSION_COLUMNS))


def concat(frames: Iterable[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    """Concatenate tidy frames, keeping the column order even when there are none."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(frames, ignore_index=True)[list(columns)]


def aggregate_folds(fold_metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean (the papers' number), sample std, min and max of every metric over folds.

    Args:
        fold_metrics: tidy per-fold rows (:data:`FOLD_COLUMNS`).

    Returns:
        DataFrame with :data:`SUMMARY_COLUMNS`; ``std`` is NaN for a single fold and ``folds`` lists
        the fold numbers that went into the row (e.g. ``"1,2,3"``).

    Raises:
        ValueError: a column is missing, or one fold appears twice for the same setting.
    """
    missing = [c for c in FOLD_COLUMNS if c not in fold_metrics.columns]
    if missing:
        raise ValueError(f"fold metrics lack column(s) {', '.join(missing)}")
    keys = [*SETTING_KEYS, "condition", "metric"]
    dup = fold_metrics.duplicated([*keys, "fold"])
    if dup.any():
        row = fold_metrics[dup].iloc[0]
        raise ValueError(f"fold {row['fold']} appears twice for model {row['model']!r}, noise {row['noise']} "
                         f"T={row['steps']}, condition {row['condition']}, metric {row['metric']}")
    if fold_metrics.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    grouped = fold_metrics.groupby(keys, sort=False)
    out = grouped["value"].agg(mean="mean", std="std", min="min", max="max", n_folds="count").reset_index()
    out["folds"] = grouped["fold"].agg(lambda f: ",".join(str(x) for x in sorted(f))).to_numpy()
    return out[list(SUMMARY_COLUMNS)]


def _order(values: Iterable[str]) -> list[str]:
    """Keep first-seen order (models are listed as the user gave them)."""
    return list(dict.fromkeys(values))


def protocol_of(summary: pd.DataFrame, model: str) -> str:
    """The selection protocol(s) recorded for ``model`` (``"val"``, ``"test_leak"`` or both, joined)."""
    return "+".join(sorted(set(summary.loc[summary["model"] == model, "select_on"].astype(str))))


def paper_table(summary: pd.DataFrame, metric: str, *, noise: str = CLEAN, steps: int = 0,
                stat: str = "mean") -> pd.DataFrame:
    """Rows models, columns the paper's conditions ({a} ... {v,l}, average, {a,v,l}).

    Args:
        summary: output of :func:`aggregate_folds`.
        metric: ``wa``, ``ua`` or ``f1``.
        noise: noise type (``"none"`` = zero-missing protocol).
        steps: noise intensity T (0 = clean).
        stat: ``mean`` or ``std`` (or any summary statistic column).

    Returns:
        DataFrame indexed by model with one column per condition present (NaN where a model lacks it).
    """
    sel = summary[(summary["metric"] == metric) & (summary["noise"] == noise) & (summary["steps"] == steps)]
    models = _order(sel["model"])
    conds = [c for c in TABLE_CONDITIONS if c in set(sel["condition"])]
    table = sel.pivot_table(index="model", columns="condition", values=stat, aggfunc="first", dropna=False)
    return table.reindex(index=models, columns=conds)


def noise_curve(summary: pd.DataFrame, noise: str, metric: str = "wa", condition: str = AVERAGE,
                stat: str = "mean") -> pd.DataFrame:
    """Metric against noise intensity (the NMER paper's figure): rows models, columns the steps T."""
    sel = summary[(summary["noise"] == noise) & (summary["metric"] == metric)
                  & (summary["condition"] == condition)]
    models = _order(sel["model"])
    table = sel.pivot_table(index="model", columns="steps", values=stat, aggfunc="first")
    return table.reindex(index=models, columns=sorted(set(sel["steps"])))


def noise_types(summary: pd.DataFrame) -> list[str]:
    """Noise types evaluated (the clean protocol excluded), in first-seen order."""
    return [n for n in _order(summary["noise"]) if n != CLEAN]


def pooled_confusion(confusion: pd.DataFrame, model: str, condition: str = AVERAGE, noise: str = CLEAN,
                     steps: int = 0, num_classes: int | None = None) -> np.ndarray:
    """Confusion counts of one model and condition summed over folds (rows true, columns predicted)."""
    sel = confusion[(confusion["model"] == model) & (confusion["condition"] == condition)
                    & (confusion["noise"] == noise) & (confusion["steps"] == steps)]
    k = num_classes or (int(max(sel["true"].max(), sel["pred"].max())) + 1 if len(sel) else 0)
    mat = np.zeros((k, k), dtype=np.int64)
    for t, p, c in sel[["true", "pred", "count"]].itertuples(index=False):
        mat[int(t), int(p)] += int(c)
    return mat


def flat_metrics(summary: pd.DataFrame, model: str) -> dict[str, float]:
    """``{"<condition>_<metric>": mean, "<condition>_<metric>_std": std}`` of the clean protocol,
    plus ``"noise_<type>_T<steps>_average_<metric>"`` (pooled six conditions) for noise settings."""
    out: dict[str, float] = {}
    sel = summary[summary["model"] == model]
    for r in sel.itertuples(index=False):
        if r.noise == CLEAN:
            key = f"{r.condition}_{r.metric}"
            out[key] = float(r.mean)
            out[f"{key}_std"] = float(r.std) if pd.notna(r.std) else float("nan")
        elif r.condition == AVERAGE:
            out[f"noise_{r.noise}_T{r.steps}_{r.condition}_{r.metric}"] = float(r.mean)
    return out


def primary_value(flat: dict[str, float], name: str) -> float:
    """Look up the primary metric (e.g. ``average_ua``) with an error listing the known names.

    Raises:
        ValueError: ``name`` is not among the computed metrics.
    """
    if name not in flat:
        known = ", ".join(k for k in flat if not k.endswith("_std") and not k.startswith("noise_"))
        raise ValueError(f"primary metric {name!r} was not computed; known: {known}")
    return flat[name]
