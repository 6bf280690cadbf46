"""Classification metrics as the papers report them (spec section 7.1 and 7.2).

WA is accuracy, UA is the macro-averaged recall, F1 the macro F1.  The "average" of the
missing-modality tables is the score of the *pooled* six-condition test set, not the mean of the six
per-condition scores: the two agree for WA (every condition holds the same N items) but not for UA
or F1.  Full modality ("avl") is scored on its own and never pooled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mer_lib.conditions import ALL_CONDITIONS, MISSING_CONDITIONS

#: Name of the pooled six-condition score.
AVERAGE = "average"
#: Scalar metric names in a :func:`compute_metrics` result.
SCALAR_METRICS: tuple[str, ...] = ("wa", "ua", "f1")
#: Columns a prediction table must have.
PREDICTION_COLUMNS: tuple[str, ...] = ("id", "condition", "label", "pred")


def compute_metrics(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                    num_classes: int) -> dict[str, Any]:
    """WA, UA, macro F1, item count and confusion matrix of one set of predictions.

    The confusion matrix always has ``num_classes`` rows and columns (``labels=range(num_classes)``),
    so a class absent from a small test set neither crashes nor changes its shape.  UA and F1 average
    over the classes that occur in ``y_true`` or ``y_pred``, which is what the reference's
    ``recall_score(average='macro')`` without ``labels=`` does; a class that never occurs is not
    averaged in as a zero.

    Args:
        y_true: integer labels in ``[0, num_classes)``.
        y_pred: integer predictions in ``[0, num_classes)``.
        num_classes: number of classes.

    Returns:
        ``{"wa": float, "ua": float, "f1": float, "n": int, "confusion": [[int]] (rows = true)}``.

    Raises:
        ValueError: different lengths, no items, or labels outside ``[0, num_classes)``.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-d of equal length, "
                         f"got {y_true.shape} and {y_pred.shape}")
    if len(y_true) == 0:
        raise ValueError("cannot compute metrics on zero predictions")
    for name, arr in (("label", y_true), ("pred", y_pred)):
        bad = arr[(arr < 0) | (arr >= num_classes)]
        if len(bad):
            raise ValueError(f"{name} value {int(bad[0])} is outside [0, {num_classes})")
    # The reference passes no labels= to recall_score/f1_score, which averages over the classes seen
    # in y_true or y_pred; passing all classes would average in zeros for unseen ones.
    confusion = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    confusion = confusion.reshape(num_classes, num_classes)
    present = np.flatnonzero(confusion.sum(0) + confusion.sum(1))
    tp = np.diagonal(confusion)[present]
    true_sum, pred_sum = confusion.sum(1)[present], confusion.sum(0)[present]
    return {
        "wa": float(np.average(y_true == y_pred)),
        "ua": _macro(tp, true_sum),
        "f1": _macro(2.0 * tp.astype(np.float64), true_sum.astype(np.float64) + pred_sum.astype(np.float64)),
        "n": int(len(y_true)),
        "confusion": confusion.tolist(),
    }


def _macro(numerator: np.ndarray, denominator: np.ndarray) -> float:
    """Mean over classes of ``numerator / denominator`` (0 where the denominator is 0).

    The float64 operations of scikit-learn's ``recall_score``/``f1_score(average="macro",
    zero_division=0)`` in its order, so the scores are the same bits (``tests/test_evaluation.py``
    compares them), without importing scikit-learn and SciPy (~77 MB of every training process).
    """
    mask = denominator == 0
    denominator = np.asarray(denominator, dtype=np.float64).copy()
    denominator[mask] = 1
    result = np.asarray(numerator, dtype=np.float64) / denominator
    result[mask] = 0.0
    return float(np.nanmean(result))


def check_predictions(pred: pd.DataFrame, where: str = "predictions") -> None:
    """Raise a clear error if a prediction table lacks a column or names an unknown condition."""
    missing = [c for c in PREDICTION_COLUMNS if c not in pred.columns]
    if missing:
        have = ", ".join(map(str, pred.columns))
        raise ValueError(f"{where}: missing column(s) {', '.join(missing)} (have {have})")
    unknown = sorted(set(pred["condition"].astype(str)) - set(ALL_CONDITIONS))
    if unknown:
        raise ValueError(f"{where}: unknown condition(s) {', '.join(unknown)}; "
                         f"expected {', '.join(ALL_CONDITIONS)}")


def condition_metrics(pred: pd.DataFrame, num_classes: int) -> dict[str, dict[str, Any]]:
    """Per-condition metrics plus the pooled six-condition "average".

    Args:
        pred: one row per (utterance, condition) with columns ``id, condition, label, pred``
            (probability columns ``p_<class>`` are allowed and ignored).
        num_classes: number of classes.

    Returns:
        ``{condition: metrics}`` for every condition present, in the order of
        :data:`~mer_lib.conditions.ALL_CONDITIONS`, plus ``"average"`` (metrics on the pooled rows of
        the missing conditions present) when at least one missing condition is present.

    Raises:
        ValueError: the table lacks a column, names an unknown condition, or holds bad labels.
    """
    check_predictions(pred)
    cond = pred["condition"].astype(str)
    out: dict[str, dict[str, Any]] = {}
    for c in ALL_CONDITIONS:
        rows = pred[cond == c]
        if len(rows):
            out[c] = compute_metrics(rows["label"].to_numpy(), rows["pred"].to_numpy(), num_classes)
    pooled = pred[cond.isin(MISSING_CONDITIONS)]
    if len(pooled):
        out[AVERAGE] = compute_metrics(pooled["label"].to_numpy(), pooled["pred"].to_numpy(), num_classes)
    return out
