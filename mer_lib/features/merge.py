"""Combine extraction partials (one per shard) into a feature set in the contract layout.

Writes ``A|V|L/<extractor name>.h5`` with every utterance's real-length sequence (no padding: the
loaders pad per batch and ``FeatureStore.true_lengths`` equals the stored length), then folds,
per-fold A statistics, ``manifest.csv`` and ``featureset.json`` through
:func:`mer_lib.data.build.finalize_featureset`, plus ``skip_report.csv`` and ``face_flags.h5``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from mer_lib import storage
from mer_lib.data.build import finalize_featureset
from mer_lib.data.featureset import FeatureSetError, FeatureSpec, write_modality
from mer_lib.features.driver import PARTIAL_FORMAT, SKIP_COLUMNS
from mer_lib.features.extractors import feature_dims, feature_names, licences_for

log = logging.getLogger(__name__)


class SkipFractionError(ValueError):
    """More utterances were skipped for bad input than the configured fraction allows."""


def _read_partial(uri: str) -> tuple[Path, dict]:
    root = storage.localize(uri)
    meta_path = root / "partial.json"
    if not meta_path.exists():
        raise FeatureSetError(f"{uri}: not an extraction partial (no partial.json)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != PARTIAL_FORMAT:
        raise FeatureSetError(f"{meta_path}: format {meta.get('format')!r}, expected {PARTIAL_FORMAT!r}")
    return root, meta


def check_partials(metas: list[tuple[str, dict]], allow_missing_shards: bool = False) -> None:
    """Same settings and shard count everywhere, every shard exactly once.

    Raises:
        FeatureSetError: naming the offending partial.
    """
    first_uri, first = metas[0]
    n = first["shard"][1]
    seen: dict[int, str] = {}
    for uri, m in metas:
        if m["settings_hash"] != first["settings_hash"]:
            raise FeatureSetError(f"{uri}: extracted with other settings than {first_uri}")
        if m["shard"][1] != n:
            raise FeatureSetError(f"{uri}: shard {m['shard'][0]}/{m['shard'][1]} but {first_uri} has n={n}")
        i = m["shard"][0]
        if i in seen:
            raise FeatureSetError(f"{uri}: shard {i}/{n} given twice (also {seen[i]})")
        seen[i] = uri
    missing = sorted(set(range(n)) - set(seen))
    if missing and not allow_missing_shards:
        raise FeatureSetError(f"shard(s) {', '.join(f'{i}/{n}' for i in missing)} missing from the merge")


def skip_summary(skips: pd.DataFrame, n_complete: int) -> tuple[float, int, str]:
    """(fraction of wanted utterances skipped for bad input, that count, the top reasons as text)."""
    bad = skips[skips["category"] == "skipped"]
    n_bad = bad["id"].nunique()
    wanted = n_bad + n_complete
    frac = n_bad / wanted if wanted else 0.0
    reasons = Counter(r.split(":")[0][:60] for r in bad["reason"])
    top = "; ".join(f"{k} x{v}" for k, v in reasons.most_common(5))
    return frac, n_bad, top


def merge_partials(partials: list[str], out: str, *, max_skip_fraction: float = 0.05, overwrite: bool = False,
                   allow_missing_shards: bool = False, extra_meta: dict | None = None) -> dict:
    """Merge partials into the feature set at ``out`` (local dir or ``gs://``), published atomically.

    Raises:
        SkipFractionError: too many utterances skipped (nothing is published).
        FeatureSetError: inconsistent partials or too few speakers for folds.
    """
    if not partials:
        raise ValueError("no partials to merge")
    loaded = [(uri, *_read_partial(uri)) for uri in partials]
    check_partials([(uri, meta) for uri, _, meta in loaded], allow_missing_shards)
    meta0 = loaded[0][2]
    settings = meta0["settings"]
    names, dims = feature_names(settings), feature_dims(settings)
    records = pd.concat([pd.read_csv(root / "records.csv", dtype={"id": str, "session": str, "speaker": str,
                                                                  "gender": str, "label_code": str})
                         for _, root, _ in loaded], ignore_index=True)
    records = records.dropna(subset=["id"]).sort_values("id", kind="stable").reset_index(drop=True)
    skips = pd.concat([pd.read_csv(root / "skip_report.csv", dtype=str, keep_default_na=False)
                       for _, root, _ in loaded], ignore_index=True).reindex(columns=SKIP_COLUMNS)
    skips = skips.sort_values(["id", "modality"], kind="stable")
    frac, n_bad, top = skip_summary(skips, len(records))
    log.info("%d utterances complete, %d skipped for bad input (%.1f%%), %d excluded by label set",
             len(records), n_bad, 100 * frac, (skips["category"] == "excluded").sum())
    if frac > max_skip_fraction:
        raise SkipFractionError(f"{n_bad} of {n_bad + len(records)} utterances ({100 * frac:.1f}%) skipped for bad "
                                f"input, above --max-skip-fraction {max_skip_fraction}: {top}. The per-utterance "
                                f"reasons are in each partial's skip_report.csv ({partials[0]} ...)")
    spec = FeatureSpec(names=names, dims=dims)
    modalities = tuple(m for m in "avl" if m in dims)
    labels = meta0["labels"]
    with storage.staged_dir(out, overwrite=overwrite) as root:
        for m in modalities:
            write_modality(root, spec, m, _iter(loaded, m, records["id"]))
        if "v" in modalities:
            with h5py.File(root / "face_flags.h5", "w") as f:
                for uid, flags in _iter(loaded, "face_flags", records["id"]):
                    f.create_dataset(uid, data=flags.astype(bool))
        skips.to_csv(root / "skip_report.csv", index=False)
        lab = {r.id: int(r.label) for r in records.itertuples()}
        spk = {r.id: (str(r.session), str(r.speaker), "" if pd.isna(r.gender) else str(r.gender))
               for r in records.itertuples()}
        meta = finalize_featureset(
            root, spec, lab, spk, label_names=tuple(labels["names"]), modalities=modalities,
            extra_meta={"generator": "mer extract", "settings": settings, "licences": licences_for(settings),
                        "label_set": labels, "source": meta0["source"], "sequence_lengths": "real (unpadded)",
                        "shards": len(loaded),
                        "counts": {"utterances": len(records), "skipped": n_bad,
                                   "excluded": int((skips["category"] == "excluded").sum()),
                                   "skip_fraction": round(frac, 6)},
                        **(extra_meta or {})})
        _extend_manifest(root / "manifest.csv", records)
    return meta


def _iter(loaded: list, group: str, ids: pd.Series):  # generator of (id, array)
    """Yield ``(id, array)`` in ``ids`` order from whichever partial holds the id."""
    files = [h5py.File(root / "features.h5", "r") for _, root, _ in loaded]
    try:
        where = {uid: f for f in files for uid in f[group].keys()}
        for uid in ids:
            if uid not in where:
                raise FeatureSetError(f"utterance {uid!r} is in records.csv but has no {group!r} data in any partial")
            yield uid, np.asarray(where[uid][group][uid][()])
    finally:
        for f in files:
            f.close()


def _extend_manifest(path: Path, records: pd.DataFrame) -> None:
    # finalize_featureset writes the common columns; the extraction adds label codes and face counts.
    manifest = pd.read_csv(path, dtype={"id": str})
    extra = [c for c in ("label_code", "frames_v", "no_face_frames_v") if c in records.columns]
    manifest = manifest.merge(records[["id", *extra]], on="id", how="left")
    manifest.to_csv(path, index=False)
