"""Batched, gradient-free prediction into a tidy table (one row per utterance and condition)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import torch

from mer_lib.data.dataset import Batch
from mer_lib.data.featureset import LABEL_NAMES
from mer_lib.models.base import MERModel


def predict_frame(model: MERModel, loader: Iterable[Batch], *, device: str | torch.device = "cpu",
                  transform: Callable[[Batch], Batch] | None = None,
                  label_names: tuple[str, ...] | list[str] | None = None) -> pd.DataFrame:
    """Run ``model`` over ``loader`` and return predictions.

    Args:
        model: a trained model (put in eval mode here).
        loader: batches (e.g. ``FoldData.loader("tst", conditions=[...])``).
        device: where to compute.
        transform: optional ``Batch -> Batch`` applied after the condition is recorded
            (for example a noise injector that corrupts the missing modalities).
        label_names: class names for the probability columns (default: the IEMOCAP four).

    Returns:
        DataFrame with columns ``id, condition, label, pred, p_<class>...``.
    """
    names = list(label_names or LABEL_NAMES)
    model.eval()
    ids: list[str] = []
    conds: list[str] = []
    labels: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    with torch.inference_mode():
        for batch in loader:
            conds.extend(batch.conditions())
            ids.extend(batch.ids)
            labels.append(batch.label.numpy())
            if transform is not None:
                batch = transform(batch)
            logits = model.predict_logits(batch.to(device))
            probs.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
            del batch, logits  # not held while the next batch is built
    p = np.concatenate(probs) if probs else np.zeros((0, len(names)), np.float32)
    if p.shape[1] != len(names):
        raise ValueError(f"model predicts {p.shape[1]} classes but the data has {len(names)} labels "
                         f"({', '.join(names)})")
    df = pd.DataFrame({"id": ids, "condition": conds,
                       "label": np.concatenate(labels) if labels else np.zeros(0, np.int64),
                       "pred": p.argmax(1) if len(p) else np.zeros(0, np.int64)})
    for k, n in enumerate(names):
        df[f"p_{n}"] = p[:, k]
    return df
