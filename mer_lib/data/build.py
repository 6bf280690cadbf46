"""Finish a feature set after its modality files are written: folds, A statistics, manifest, metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mer_lib.conditions import MODALITIES
from mer_lib.data.featureset import (
    LABEL_NAMES,
    FeatureSpec,
    FeatureStore,
    build_manifest,
    list_folds,
    read_split,
    write_mean_std,
    write_metadata,
)
from mer_lib.data.folds import speaker_folds, write_folds


def fold_mean_std(store: FeatureStore, train_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Mean/std of A over every frame of the given utterances (the reference ``trn`` statistics)."""
    rows = store.indices(train_ids)
    total = np.zeros(store.spec.dims["a"], np.float64)
    sq = np.zeros_like(total)
    n = 0
    for r in rows:
        x = store.seq("a", int(r)).astype(np.float64)
        total += x.sum(0)
        sq += (x * x).sum(0)
        n += len(x)
    mean = total / max(n, 1)
    std = np.sqrt(np.maximum(sq / max(n, 1) - mean**2, 0.0))
    return mean.astype(np.float32), std.astype(np.float32)


def finalize_featureset(root: str | Path, spec: FeatureSpec, labels: dict[str, int],
                        speakers: dict[str, tuple[int | str, str, str]], *,
                        label_names: tuple[str, ...] = LABEL_NAMES, write_targets: bool = True,
                        extra_meta: dict | None = None, modalities: tuple[str, ...] = MODALITIES) -> dict:
    """Write folds (speaker-independent), per-fold A statistics, ``manifest.csv`` and ``featureset.json``.

    Args:
        root: directory that already holds ``A/``, ``V/``, ``L/`` files.
        spec: feature names and dims.
        labels: utterance id -> class index.
        speakers: utterance id -> (session, speaker, gender).
        label_names: class names in index order.
        write_targets: build folds from speakers (False: keep existing ``target/``).
        extra_meta: provenance merged into ``featureset.json`` (generator, seed, licences, ...).
        modalities: the modality files present (A statistics are written only when ``a`` is one).

    Returns:
        The metadata dict written to ``featureset.json`` (includes the fingerprint).
    """
    root = Path(root)
    ids = sorted(labels)
    store = FeatureStore(root, spec, ids=ids, modalities=modalities)
    if write_targets:
        folds = speaker_folds({u: speakers[u][1] for u in ids}, {u: speakers[u][0] for u in ids})
        write_folds(root, folds, labels, num_classes=len(label_names))
        train_ids = {k: f["trn"] for k, f in folds.items()}
    else:
        train_ids = {k: read_split(root, k, "trn").ids for k in list_folds(root)}
    if "a" in modalities:
        write_mean_std(root, spec, {k: fold_mean_std(store, t) for k, t in train_ids.items()})
    build_manifest(store, labels, label_names, speakers).to_csv(root / "manifest.csv", index=False)
    return write_metadata(root, spec, label_names=label_names, extra=extra_meta)
