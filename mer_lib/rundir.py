"""The run directory of a trained model: the one place that knows its file names.

Layout (written by :func:`mer_lib.training.api.train`, merged per fold by the pipeline)::

    <run>/run.json                      run summary: model, recipe, folds, data fingerprint, per-fold results
    <run>/fold_<k>/best.pt              the selected epoch's checkpoint (what evaluation and prediction load)
    <run>/fold_<k>/last.pt              the latest epoch with optimiser state (resume only)
    <run>/fold_<k>/config.yaml          the resolved config of the fold
    <run>/fold_<k>/metrics.csv          per-epoch training history
    <run>/fold_<k>/predictions_tst.csv  test predictions of the selected epoch
    <run>/fold_<k>/test_metrics.json    test metrics of the selected epoch (written last: marks a finished fold)

A leaf module: it imports nothing from ``mer_lib`` but :mod:`mer_lib.storage`. Every write is atomic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mer_lib import storage

RUN_JSON = "run.json"
BEST = "best.pt"
LAST = "last.pt"
CONFIG_YAML = "config.yaml"
HISTORY_CSV = "metrics.csv"
PREDICTIONS_TST = "predictions_tst.csv"
TEST_METRICS = "test_metrics.json"
FOLD_PREFIX = "fold_"
#: Files that mark a finished fold or run: a copy must write them after everything else.
COMMIT_FILES = (TEST_METRICS, RUN_JSON)
#: Only useful to resume training where it ran; left out of published artifacts.
RESUME_ONLY = (LAST,)


class RunDirError(ValueError):
    """A run directory is missing, incomplete or malformed (the message names the file)."""


def fold_dirname(fold: int) -> str:
    """``fold_<k>``."""
    return f"{FOLD_PREFIX}{int(fold)}"


def parse_fold_dirname(name: str) -> int | None:
    """``fold_<k>`` -> k, anything else -> None."""
    rest = name[len(FOLD_PREFIX):] if name.startswith(FOLD_PREFIX) else ""
    return int(rest) if rest.isdigit() else None


def read_json(path: Path, what: str = "") -> dict[str, Any]:
    """A JSON object from ``path``.

    Raises:
        RunDirError: missing, malformed or not an object (naming the file and, if given, what it should be).
    """
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise RunDirError(f"{path}: missing{f' ({what})' if what else ''}") from exc
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path}: malformed JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise RunDirError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc


@dataclass(frozen=True)
class FoldDir:
    """One fold of a run: ``<run>/fold_<k>/``."""

    path: Path

    @property
    def best(self) -> Path:
        """The selected epoch's checkpoint."""
        return self.path / BEST

    @property
    def last(self) -> Path:
        """The resume checkpoint."""
        return self.path / LAST

    @property
    def config_yaml(self) -> Path:
        """The resolved config."""
        return self.path / CONFIG_YAML

    @property
    def history_csv(self) -> Path:
        """Per-epoch training history."""
        return self.path / HISTORY_CSV

    @property
    def predictions(self) -> Path:
        """Test predictions of the selected epoch."""
        return self.path / PREDICTIONS_TST

    @property
    def test_metrics_json(self) -> Path:
        """Test metrics of the selected epoch."""
        return self.path / TEST_METRICS

    def finished(self) -> bool:
        """True once the fold's test metrics are written (its last file)."""
        return self.test_metrics_json.exists()

    def test_metrics(self) -> dict[str, Any]:
        """The fold's ``test_metrics.json``."""
        return read_json(self.test_metrics_json, "test metrics of a finished fold")

    def write_config(self, config: dict[str, Any]) -> None:
        """Write ``config.yaml`` atomically."""
        storage.write_text(str(self.config_yaml), yaml.safe_dump(config, sort_keys=False), overwrite=True)

    def write_test_metrics(self, doc: dict[str, Any]) -> None:
        """Write ``test_metrics.json`` atomically (last: it marks the fold finished)."""
        storage.write_text(str(self.test_metrics_json), json.dumps(doc, indent=2) + "\n", overwrite=True)


@dataclass(frozen=True)
class RunDir:
    """A (local) run directory: ``run.json`` plus one ``fold_<k>/`` per trained fold."""

    path: Path

    @classmethod
    def at(cls, uri: str | Path) -> RunDir:
        """The run directory at a local path or a gs:// URI (downloaded to the cache)."""
        return cls(Path(storage.localize(str(uri))))

    @property
    def run_json(self) -> Path:
        """The run summary's path."""
        return self.path / RUN_JSON

    def fold(self, k: int) -> FoldDir:
        """Fold ``k``'s directory (which may not exist yet)."""
        return FoldDir(self.path / fold_dirname(k))

    def folds(self, with_file: str | None = BEST) -> list[int]:
        """Fold numbers present, sorted; only those holding ``with_file`` unless it is None."""
        if not self.path.is_dir():
            return []
        found = []
        for p in self.path.iterdir():
            k = parse_fold_dirname(p.name)
            if k is not None and p.is_dir() and (with_file is None or (p / with_file).exists()):
                found.append(k)
        return sorted(found)

    def read(self) -> dict[str, Any]:
        """``run.json``.

        Raises:
            RunDirError: missing or malformed.
        """
        return read_json(self.run_json, "not a run directory of mer train")

    def write(self, summary: dict[str, Any]) -> None:
        """Write ``run.json`` atomically."""
        storage.write_text(str(self.run_json), json.dumps(summary, indent=2) + "\n", overwrite=True)
