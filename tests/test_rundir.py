"""The run directory's one owner: names, fold discovery, atomic reads and writes with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mer_lib.rundir import BEST, RunDir, RunDirError, fold_dirname, parse_fold_dirname


def test_fold_names_round_trip() -> None:
    assert fold_dirname(3) == "fold_3" and parse_fold_dirname("fold_12") == 12
    assert parse_fold_dirname("fold_x") is None and parse_fold_dirname("stages") is None


def test_folds_writes_and_errors(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    assert run.folds() == [] and run.folds(with_file=None) == []
    with pytest.raises(RunDirError, match=r"run\.json: missing \(not a run directory of mer train\)"):
        run.read()
    for k in (2, 10, 1):
        run.fold(k).path.mkdir(parents=True)
    (run.fold(10).path / BEST).write_bytes(b"x")
    (run.fold(1).path / BEST).write_bytes(b"x")
    (run.path / "fold_notes").mkdir()
    assert run.folds() == [1, 10] and run.folds(with_file=None) == [1, 2, 10]
    run.write({"model": "utt_fusion", "folds": [1, 10]})
    assert run.read()["folds"] == [1, 10]
    fold = run.fold(1)
    fold.write_config({"model": "utt_fusion", "train": {"seed": 3}})
    assert yaml.safe_load(fold.config_yaml.read_text())["train"]["seed"] == 3
    assert not fold.finished()
    fold.write_test_metrics({"best_epoch": 2})
    assert fold.finished() and fold.test_metrics()["best_epoch"] == 2
    assert not list(run.path.rglob("*.tmp*"))  # atomic writes leave no temporaries behind
    run.run_json.write_text("[1, 2]")
    with pytest.raises(RunDirError, match="expected a JSON object, got list"):
        run.read()
    run.run_json.write_text("{")
    with pytest.raises(RunDirError, match="malformed JSON"):
        run.read()
