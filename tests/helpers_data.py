"""A hand-built miniature feature set (independent of the synthetic generator) for data-layer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mer_lib.data.build import finalize_featureset
from mer_lib.data.featureset import FeatureSpec, write_modality

SPEC = FeatureSpec(dims={"a": 4, "v": 3, "l": 5})


def make_featureset(root: Path, per_speaker: int = 3, seed: int = 0) -> dict:
    """Write 10 speakers x ``per_speaker`` utterances with small dims; returns id -> (A, V, L, label)."""
    rng = np.random.default_rng(seed)
    items, labels, speakers = {}, {}, {}
    for s in range(1, 6):
        for g in "FM":
            for j in range(per_speaker):
                uid = f"Ses0{s}F_impro0{j % 3 + 1}_{g}{j:03d}"
                a = rng.normal(loc=10.0, scale=3.0, size=(int(rng.integers(2, 7)), 4))
                v = np.zeros((6, 3))
                v[: int(rng.integers(1, 6))] = rng.normal(size=(1, 3)) + 1
                l_ = np.zeros((7, 5))
                l_[:5] = rng.normal(size=(5, 5))
                items[uid] = (a.astype(np.float32), v.astype(np.float32), l_.astype(np.float32))
                labels[uid] = int(rng.integers(0, 4))
                speakers[uid] = (s, f"Ses0{s}_{g}", g)
    for k, m in enumerate("avl"):
        write_modality(root, SPEC, m, [(u, x[k]) for u, x in items.items()])
    finalize_featureset(root, SPEC, labels, speakers)
    return {u: (*items[u], labels[u]) for u in items}
