"""Write a noisy copy of a feature set (same layout), never touching the source.

Which modalities of which utterance are corrupted:
- without ``conditions``: the settings' ``noise.modalities`` of **every** utterance;
- with ``conditions`` (kept-modality names such as ``a,al``): each utterance is assigned one of them
  (uniformly, from a hash of the seed and its id), and the settings' modalities that this condition
  does not keep are corrupted.  ``noise_conditions.csv`` lists, per corrupted (utterance, modality),
  the condition, the noise type and t.

The noise of an (utterance, condition, modality) is exactly the evaluation noise that
:class:`~mer_lib.noise.NoiseInjector` draws for that item, so a loader over the copy sees the same
values as the injector over the source (A up to float rounding, see below).

A is corrupted in the normalised space the models see, using fold ``norm_fold``'s train statistics,
and written back in raw scale; the source's statistics file is copied unchanged so a loader with
that fold normalises the noisy A back to exactly what was corrupted.  ``frame_drop`` shortens a
sequence; the in-file zero padding of V and L (the released features are padded) follows the
remaining frames.  Folds, statistics and ``manifest.csv`` are copied; ``featureset.json`` records
the noise settings (key ``settings``), the source URI and the source fingerprint.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from mer_lib import storage
from mer_lib.conditions import MODALITIES, condition_mask
from mer_lib.config import ConfigError, NoiseConfig
from mer_lib.data.featureset import (
    MANIFEST,
    MODALITY_DIR,
    FeatureStore,
    fingerprint,
    label_names_for,
    list_folds,
    read_mean_std,
    read_metadata,
    spec_for,
    write_metadata,
    write_modality,
)
from mer_lib.noise.curriculum import check_modalities_present
from mer_lib.noise.injector import NoiseInjector, derive_seed
from mer_lib.noise.table import kind_of

log = logging.getLogger(__name__)

CONDITIONS_FILE = "noise_conditions.csv"
#: metadata keys that describe the data itself and are rewritten for the copy
_OWN_KEYS = ("format", "spec", "label_names", "fingerprint", "noise", "source")


def assign_conditions(ids: list[str], conditions: list[str] | None, cfg: NoiseConfig,
                      seed: int) -> dict[str, tuple[str, list[str]]]:
    """Utterance id -> (condition key, corrupted modalities), following the module docstring."""
    out = {}
    for uid in ids:
        if conditions:
            cond = conditions[derive_seed(seed, "condition", uid) % len(conditions)]
        else:
            cond = "".join(m for m in MODALITIES if m not in cfg.modalities)
        kept = condition_mask(cond) if cond else (0, 0, 0)
        out[uid] = (cond, [m for m, k in zip(MODALITIES, kept, strict=True) if not k and m in cfg.modalities])
    return out


def write_noisy_featureset(data: str, out: str, cfg: NoiseConfig, *, steps: int | None = None,
                           seed: int | None = None, conditions: list[str] | None = None,
                           norm_fold: int | None = None, overwrite: bool = False) -> dict:
    """Write a noisy copy of feature set ``data`` to ``out`` (local or gs://), atomically.

    Args:
        data: source feature-set directory or gs:// URI (never modified).
        out: destination (must not exist or be empty unless ``overwrite``).
        cfg: the noise settings (the ``noise`` config section).
        steps: T, overriding ``cfg.steps``.
        seed: overrides ``cfg.seed``.
        conditions: kept-modality conditions to assign per utterance (None = corrupt every utterance).
        norm_fold: fold whose train statistics normalise A before corruption (default: the first fold).
        overwrite: replace an existing non-empty ``out``.

    Returns:
        The metadata written to ``out/featureset.json``.

    Raises:
        ConfigError: invalid settings, or they corrupt a modality the data lacks.
        FeatureSetError: malformed source.
        FileExistsError: ``out`` exists and ``overwrite`` is false.
    """
    injector = NoiseInjector(cfg, steps=steps, seed=seed)
    root = storage.localize(data)
    spec = spec_for(root)
    present = [m for m in MODALITIES if spec.path(root, m).exists()]
    check_modalities_present(cfg, present, f"feature set {data}")
    if conditions:
        for c in conditions:
            condition_mask(c)
    src_meta = read_metadata(root)
    src_fp = fingerprint(root, spec)
    folds = list_folds(root)
    fold = norm_fold if norm_fold is not None else folds[0]
    if fold not in folds:
        raise ConfigError(f"norm_fold: fold {fold} is not in {data} (folds: {', '.join(map(str, folds))})")
    targets = [m for m in MODALITIES if m in cfg.modalities]
    store = FeatureStore(root, spec, modalities=tuple(targets))
    plan = assign_conditions(store.ids, conditions, cfg, injector.seed)
    mean, std = read_mean_std(root, spec, fold) if "a" in targets else (None, None)
    records: list[dict] = []
    with storage.staged_dir(out, overwrite=overwrite) as tmp:
        for m in MODALITIES:
            if m not in targets:
                if m in present:
                    _copy(spec.path(root, m), spec.path(tmp, m))
                continue
            items = _noisy_items(store, m, plan, injector, mean, std, records)
            write_modality(tmp, spec, m, items)
        _copy(spec.mean_std_path(root), spec.mean_std_path(tmp))
        shutil.copytree(root / "target", tmp / "target")
        if (root / MANIFEST).exists():
            _copy(root / MANIFEST, tmp / MANIFEST)
        pd.DataFrame(records, columns=["id", "condition", "modality", "kind", "t"]).to_csv(
            tmp / CONDITIONS_FILE, index=False)
        settings = {**dataclasses.asdict(cfg), "steps": injector.steps, "seed": injector.seed}
        extra = {k: v for k, v in src_meta.items() if k not in _OWN_KEYS}
        uri = str(data) if storage.is_gcs(data) else str(Path(data).resolve())
        extra["source"] = {"uri": uri, "fingerprint": src_fp, "noise": src_meta.get("noise")}
        extra["noise"] = {"settings": settings, "conditions": conditions, "norm_fold": fold,
                          "corrupted_items": len(records), "conditions_file": CONDITIONS_FILE}
        meta = write_metadata(tmp, spec, label_names=label_names_for(root), extra=extra)
    log.info("wrote %s: %d corrupted (utterance, modality) items, T=%d, type %s", out, len(records),
             injector.steps, cfg.type)
    return meta


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def _noisy_items(store: FeatureStore, m: str, plan: dict[str, tuple[str, list[str]]], injector: NoiseInjector,
                 mean: np.ndarray | None, std: np.ndarray | None, records: list[dict]):
    """Yield (id, sequence) for modality ``m``, corrupting the planned utterances."""
    inv_std = None if std is None else (1.0 / std).astype(np.float32)
    bar = tqdm(store.ids, desc=f"noise {MODALITY_DIR[m]}", disable=not sys.stderr.isatty(), leave=False)
    for i, uid in enumerate(bar):
        raw = store.seq(m, i)
        cond, corrupted = plan[uid]
        if m not in corrupted:
            yield uid, raw
            continue
        n = int(store.true_lengths[m][i])
        # the same float32 arithmetic as the loader, so the injector sees identical inputs
        z = (raw - mean) * inv_std if m == "a" else raw
        c = injector.corrupt_one(torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)), n, uid, cond, m)
        # rows [:end] were corrupted; lost frames (frame_drop) shorten the sequence, the rest is copied
        end = len(raw) if (injector.cfg.noise_pads and kind_of(c.kind) == "additive") else n
        head = c.seq.numpy()[:c.length if kind_of(c.kind) == "frames" else end]
        if m == "a":
            head = head * std + mean
        seq = np.concatenate([head, raw[end:]])
        records.append({"id": uid, "condition": cond, "modality": m, "kind": c.kind, "t": c.t})
        yield uid, seq.astype(np.float32)
