"""The should-retrain gate: skip a scheduled run when neither the data nor the code/config changed.

A run's *training fingerprint* combines three parts: the data source fingerprint
(:func:`mer_lib.pipeline.data.source_fingerprint`), the code fingerprint (every ``.py`` and recipe
``.yaml`` of the installed ``mer_lib`` plus the dependency lock files the images are built from, so a
new image or a rebuild with other library versions counts as a change) and the run's training
settings (models, folds, epochs, seeds, overrides). Registration stores it with the version
(``config["pipeline"]["training_fingerprint"]``); the gate compares it with the champion's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mer_lib.registry import open_registry

#: Key under a registered version's ``config`` that holds the pipeline provenance.
PIPELINE_KEY = "pipeline"
CODE_SUFFIXES = (".py", ".yaml")
#: The images set this to their copies of the lock files (``os.pathsep``-separated paths).
LOCKS_ENV = "MER_DEPENDENCY_LOCKS"
#: The lock files in a checkout (relative to the repository root); both images install from them.
LOCK_FILES = ("images/constraints.txt", "images/constraints-cuda.txt")


def lock_files() -> list[Path]:
    """The dependency lock files of this installation: ``$MER_DEPENDENCY_LOCKS`` in an image, else a checkout's.

    Raises:
        FileNotFoundError: ``$MER_DEPENDENCY_LOCKS`` names a file that is not there (a broken image).
    """
    env = os.environ.get(LOCKS_ENV, "").strip()
    if env:
        paths = [Path(p) for p in env.split(os.pathsep) if p]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"${LOCKS_ENV} names missing lock file(s): {', '.join(missing)}")
        return paths
    repo = Path(__file__).resolve().parents[2]  # an editable checkout; a wheel install without the env has none
    return [repo / f for f in LOCK_FILES if (repo / f).is_file()]


def code_fingerprint(package_dir: str | Path | None = None, locks: list[Path] | None = None) -> str:
    """SHA-256 over the package's code and recipe files and the dependency lock files.

    Args:
        package_dir: the package to hash (default: the installed ``mer_lib``).
        locks: lock files to include (default: :func:`lock_files`); their names do not count, their contents do.
    """
    root = Path(package_dir) if package_dir is not None else Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.suffix in CODE_SUFFIXES and p.is_file()
                   and "__pycache__" not in p.parts)
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    for lock in sorted(lock_files() if locks is None else locks, key=lambda p: p.name):
        # By file name, not path: the image's copy and the checkout's hash alike.
        h.update(b"lock\0" + lock.name.encode() + b"\0")
        h.update(hashlib.sha256(lock.read_bytes()).digest())
    return h.hexdigest()


def training_fingerprint(source_fp: str, code_fp: str, settings: Mapping[str, Any]) -> str:
    """One hash of everything that decides what training would produce."""
    blob = json.dumps({"source": source_fp, "code": code_fp, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class RetrainDecision:
    """Outcome of the gate."""

    retrain: bool
    reason: str
    training_fingerprint: str
    source_fingerprint: str
    code_fingerprint: str
    champion_version: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


#: The gate's route when nothing needs training.
SKIP = "skip"


def route(retrain: bool, kind: str) -> str:
    """The pipeline's path after the gate: :data:`SKIP`, or the data source kind to build the data from."""
    return kind if retrain else SKIP


def recorded_fingerprint(config: Mapping[str, Any]) -> str:
    """The training fingerprint a registered version's config carries ("" when none)."""
    info = config.get(PIPELINE_KEY)
    return str(info.get("training_fingerprint", "")) if isinstance(info, Mapping) else ""


def decide_retrain(registry_uri: str, model_name: str, *, source_fp: str, code_fp: str,
                   settings: Mapping[str, Any], force: bool = False) -> RetrainDecision:
    """Retrain unless the champion was trained from the same data, code and settings.

    Args:
        registry_uri: registry root (local or gs://, or a ``modelregistry://`` URI); empty means no persistent
            registry, so always train.
        model_name: registry name of the model.
        source_fp: data source fingerprint.
        code_fp: code fingerprint.
        settings: the training settings of this run.
        force: retrain regardless.

    Returns:
        The decision with its reason and the fingerprints to record at registration.
    """
    fp = training_fingerprint(source_fp, code_fp, settings)

    def out(retrain: bool, reason: str, champion: int = 0) -> RetrainDecision:
        return RetrainDecision(retrain, reason, fp, source_fp, code_fp, champion)

    if force:
        return out(True, "force_retrain is set")
    if not registry_uri:
        return out(True, "no persistent registry configured (registry_uri is empty): nothing to compare with")
    champion = open_registry(registry_uri).champion(model_name)
    if champion is None:
        return out(True, f"{model_name} has no champion yet in {registry_uri}")
    old = recorded_fingerprint(champion.config)
    if old == fp:
        return out(False, f"data, code and settings are unchanged since champion {model_name} v{champion.number} "
                          f"(run {champion.run_id or '-'}); set force_retrain to train anyway", champion.number)
    if not old:
        what = "the champion records no training fingerprint"
    elif _source_of(champion.config) != source_fp:
        what = "the data changed"
    else:
        what = "the code, config or settings changed"
    return out(True, f"{what} since champion {model_name} v{champion.number}", champion.number)


def _source_of(config: Mapping[str, Any]) -> str:
    info = config.get(PIPELINE_KEY)
    return str(info.get("source_fingerprint", "")) if isinstance(info, Mapping) else ""
