"""Evaluation outputs in the shapes KFP's UI renders (``ClassificationMetrics`` confusion matrix)."""

from __future__ import annotations

from mer_lib.evaluation.aggregate import pooled_confusion
from mer_lib.evaluation.api import load_evaluation
from mer_lib.metrics import AVERAGE


def pooled_confusion_matrix(evaluation_dir: str, condition: str = AVERAGE) -> tuple[list[str], list[list[int]]]:
    """Label names and the confusion counts of one evaluated model, summed over folds.

    Args:
        evaluation_dir: an evaluation directory of one model (``mer evaluate --out``).
        condition: condition to show (default: the pooled six missing conditions).

    Returns:
        ``(labels, matrix)`` with rows true and columns predicted, as ``log_confusion_matrix`` takes them.

    Raises:
        ValueError: the directory holds several models, or none.
    """
    ev = load_evaluation(evaluation_dir)
    models = list(dict.fromkeys(ev.confusion["model"]))
    if len(models) != 1:
        raise ValueError(f"{evaluation_dir}: expected the evaluation of one model, found {models or 'none'}")
    labels = list(ev.label_names)
    mat = pooled_confusion(ev.confusion, models[0], condition=condition, num_classes=len(labels))
    return labels, [[int(x) for x in row] for row in mat]
