"""Find and load the model to predict with: a run directory, a fold directory, a checkpoint file, or a
registry model (``<registry root>/<model name>``, version ``champion``, ``latest`` or a number).

Everything prediction needs travels with the checkpoint (``meta``): label names, feature spec, the
fold's A normalisation statistics (``norm_a``) and how the training features were made
(``features``: extractor settings and licences).  Checkpoints written before those were recorded fall
back to the training feature set named in ``meta["data_root"]`` when it is still reachable.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mer_lib import storage
from mer_lib.config import ExperimentConfig
from mer_lib.data.featureset import LABEL_NAMES, FeatureSetError, FeatureSpec, read_mean_std, read_metadata
from mer_lib.inference.checkpoint import CheckpointError, load_trained
from mer_lib.models.base import MERModel
from mer_lib.prediction.errors import PredictionError
from mer_lib.registry import RegistryError, open_registry
from mer_lib.rundir import BEST, RunDir

log = logging.getLogger(__name__)

ENSEMBLE = "ensemble"


@dataclass
class FoldModel:
    """One trained fold: the network and the A statistics its inputs are normalised with."""

    fold: int
    model: MERModel
    cfg: ExperimentConfig
    meta: dict[str, Any]
    mean: np.ndarray
    std: np.ndarray


@dataclass
class ModelRef:
    """Where a model's files are and how to name it in the output."""

    model_dir: str
    name: str
    version: str
    registry: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedModel:
    """The fold model(s) to predict with (several = an ensemble that averages probabilities)."""

    ref: ModelRef
    folds: list[FoldModel]

    @property
    def cfg(self) -> ExperimentConfig:
        """Config of the first fold (all folds of a run share it)."""
        return self.folds[0].cfg

    @property
    def label_names(self) -> tuple[str, ...]:
        """Class names in index order."""
        meta = self.folds[0].meta
        return tuple(meta.get("label_names") or LABEL_NAMES[: self.cfg.data.num_classes])

    @property
    def spec(self) -> FeatureSpec:
        """Feature names and dimensions the model was trained on."""
        d = self.cfg.data
        return FeatureSpec(names={"a": d.feature_a, "v": d.feature_v, "l": d.feature_l},
                           dims={"a": d.dim_a, "v": d.dim_v, "l": d.dim_l})

    @property
    def fold_label(self) -> str:
        """``"3"`` for one fold, ``"ensemble(1,2,3)"`` for several."""
        if len(self.folds) == 1:
            return str(self.folds[0].fold)
        return f"{ENSEMBLE}({','.join(str(f.fold) for f in self.folds)})"

    def features(self) -> dict[str, Any]:
        """How the training features were made: ``generator``, ``settings``, ``licences`` (may be empty)."""
        recorded = self.folds[0].meta.get("features")
        if recorded:
            return dict(recorded)
        card = (self.ref.registry.get("card_context") or {}).get("featureset") or {}
        if card:
            return {k: v for k, v in card.items() if k in ("generator", "settings", "licences")}
        root = _reachable_root(self.folds[0].meta)
        meta = read_metadata(root) if root is not None else {}
        return {k: v for k, v in meta.items() if k in ("generator", "settings", "licences")}


def _is_registry_model(uri: str) -> bool:
    return bool(storage.list_files(storage.join(uri, "claims"))) or storage.exists(storage.join(uri, "champion.json"))


def resolve(uri: str, version: str | int | None = None) -> ModelRef:
    """Turn a model reference into a model directory plus the name and version to report.

    Args:
        uri: run/fold directory, checkpoint file, registry model ``<root>/<name>`` or a registry
            version directory ``<root>/<name>/versions/<N>`` (local or gs://).
        version: for a registry model: ``champion`` (default), ``latest`` or a version number.

    Raises:
        PredictionError: nothing at ``uri``, an unknown version, or ``version`` given for a plain directory.
    """
    uri = str(uri).rstrip("/") if storage.is_gcs(str(uri)) else str(uri)
    meta_uri = storage.join(uri, "metadata.json")
    if storage.exists(meta_uri) and storage.list_files(storage.join(uri, "model")):
        meta = json.loads(storage.read_text(meta_uri))
        if version is not None and str(version) != str(meta.get("version")):
            raise PredictionError(f"{uri}: is version {meta.get('version')} of {meta.get('model_name')}; "
                                  f"--version {version} does not apply (pass the registry model URI instead)")
        return ModelRef(storage.join(uri, "model"), str(meta.get("model_name", "")), str(meta.get("version", "")),
                        {"card_context": meta.get("card_context", {}), "uri": uri})
    if _is_registry_model(uri):
        root, name = uri.rstrip("/").rsplit("/", 1) if "/" in uri.rstrip("/") else (".", uri)
        reg = open_registry(root)
        try:
            found = _pick_version(reg, name, version)
        except RegistryError as exc:
            raise PredictionError(str(exc)) from exc
        return ModelRef(found.model_uri, name, str(found.number),
                        {"card_context": found.extra.get("card_context", {}), "uri": found.uri})
    if version is not None:
        raise PredictionError(f"{uri}: --version {version} applies to a registry model URI "
                              "(<registry>/<model name>), but this is not one")
    if not storage.exists(uri) and not (storage.is_gcs(uri) and storage.list_files(uri)):
        raise PredictionError(f"{uri}: no model here (expected a run directory, a checkpoint or a registry model)")
    return ModelRef(uri, "", "")


def _pick_version(reg: Any, name: str, version: str | int | None) -> Any:
    versions = reg.list_versions(name)
    have = ", ".join(f"v{v.number}" for v in versions) or "none"
    key = "champion" if version is None else str(version).strip().lower().lstrip("v")
    if key == "champion":
        champ = reg.champion(name)
        if champ is None:
            raise PredictionError(f"{reg.root}/{name}: no champion yet; pass --version N (registered: {have})")
        return champ
    if key == "latest":
        if not versions:
            raise PredictionError(f"{reg.root}/{name}: no registered versions")
        return versions[-1]
    if not key.isdigit():
        raise PredictionError(f"--version {version!r}: expected champion, latest or a version number")
    found = reg.get(name, int(key))
    if found is None:
        raise PredictionError(f"{reg.root}/{name}: unknown version {version} (registered: {have})")
    return found


def _fold_dirs(model_dir: Path, fold: str | int | None) -> list[tuple[int | None, Path]]:
    """The checkpoints to load: one per requested fold."""
    if model_dir.is_file() or (model_dir / BEST).exists():
        return [(None, model_dir)]
    run = RunDir(model_dir)
    found = [(k, run.fold(k).path) for k in run.folds()]
    if not found:
        raise PredictionError(f"{model_dir}: no trained checkpoint (fold_<k>/{BEST}) in this model directory")
    if fold is None or str(fold) == ENSEMBLE:
        return [(k, p) for k, p in found]
    try:
        k = int(fold)
    except ValueError as exc:
        raise PredictionError(f"--fold {fold!r}: expected a fold number or {ENSEMBLE!r}") from exc
    match = [(kk, p) for kk, p in found if kk == k]
    if not match:
        raise PredictionError(f"{model_dir}: no checkpoint for fold {k} (have folds "
                              f"{', '.join(str(kk) for kk, _ in found)})")
    return match


def _reachable_root(meta: dict[str, Any]) -> Path | None:
    """The training feature set named in the checkpoint, if it can still be read."""
    root = meta.get("data_root")
    if not root:
        return None
    try:
        if storage.is_gcs(root):
            return storage.localize(root) if storage.exists(storage.join(root, "featureset.json")) else None
        return Path(root) if Path(root).is_dir() else None
    except OSError:
        return None


def _norm_stats(where: Path, cfg: ExperimentConfig, meta: dict[str, Any], spec: FeatureSpec,
                fold: int) -> tuple[np.ndarray, np.ndarray]:
    """The A mean/std the fold was trained with (identity when the recipe does not normalise A)."""
    dim = cfg.data.dim_a
    if cfg.data.norm_a != "trn":
        return np.zeros(dim, np.float32), np.ones(dim, np.float32)
    norm = meta.get("norm_a")
    if norm:
        mean = np.asarray(torch.as_tensor(norm["mean"]).cpu().numpy(), np.float32).reshape(-1)
        std = np.asarray(torch.as_tensor(norm["std"]).cpu().numpy(), np.float32).reshape(-1)
    else:
        root = _reachable_root(meta)
        if root is None:
            raise PredictionError(f"{where}: the checkpoint does not record its A normalisation statistics and "
                                  f"its training data ({meta.get('data_root') or 'not recorded'}) is not "
                                  "reachable; retrain with this version or make the training data available")
        log.warning("%s: no A statistics in the checkpoint; reading fold %d's from %s", where, fold, root)
        try:
            mean, std = read_mean_std(root, spec, fold)
        except FeatureSetError as exc:
            raise PredictionError(f"{where}: {exc}") from exc
    if mean.shape[0] != dim or std.shape[0] != dim:
        raise PredictionError(f"{where}: A statistics have {mean.shape[0]} dims, the model expects {dim}")
    return mean, np.where(std == 0, 1.0, std).astype(np.float32)


def load_model(uri: str, version: str | int | None = None, fold: str | int | None = ENSEMBLE,
               device: str | torch.device = "cpu") -> LoadedModel:
    """Resolve and load the fold model(s) of ``uri``.

    Args:
        uri: model reference (see :func:`resolve`).
        version: registry version (``champion``/``latest``/N); None for a plain directory or the champion.
        fold: a fold number, or ``ensemble`` for every fold of a run directory.
        device: where to put the networks.

    Raises:
        PredictionError: the model cannot be found or loaded, or its folds disagree on labels/features.
    """
    ref = resolve(uri, version)
    local = storage.localize(ref.model_dir)
    folds: list[FoldModel] = []
    for k, path in _fold_dirs(local, fold):
        try:
            model, cfg, meta = load_trained(path, device=device)
        except CheckpointError as exc:
            raise PredictionError(str(exc)) from exc
        kk = int(meta.get("fold", k if k is not None else 1))
        d = cfg.data
        spec = FeatureSpec(names={"a": d.feature_a, "v": d.feature_v, "l": d.feature_l},
                           dims={"a": d.dim_a, "v": d.dim_v, "l": d.dim_l})
        mean, std = _norm_stats(path, cfg, meta, spec, kk)
        folds.append(FoldModel(kk, model, cfg, meta, mean, std))
    first = folds[0]
    for f in folds[1:]:
        if f.meta.get("label_names") != first.meta.get("label_names") or f.cfg.data != first.cfg.data:
            raise PredictionError(f"{local}: fold {f.fold} was trained on other labels or features than fold "
                                  f"{first.fold}; predict with one --fold")
    if not ref.name:
        ref.name = first.cfg.model
    return LoadedModel(ref, folds)
