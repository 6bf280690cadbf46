"""bench/condition_ceiling.py: one specialist per condition, tabulated beside a bench/results.py run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def _load(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_specialists_tabulated_beside_the_baselines(tiny_data: Path, tmp_path: Path) -> None:
    results = _load("bench_results_for_ceiling", "results.py")
    ceiling = _load("bench_condition_ceiling", "condition_ceiling.py")
    fast = ["--set", "train.tensorboard=false", "--set", "train.batch_size=32"]
    against = tmp_path / "res"
    assert results.main(["--data", str(tiny_data), "--folds", "1", "--seeds", "0", "--families", "utt_fusion",
                         "--recipes", "faithful", "--epochs", "1", "--noise-steps", "--out", str(against),
                         "--no-write", *fast]) == 0
    out = tmp_path / "spec"
    argv = ["--data", str(tiny_data), "--against", str(against), "--out", str(out), "--folds", "1", "--seeds", "0",
            "--set", "train.niter=1", "--set", "train.niter_decay=0", *fast]
    # a slice with five of six specialists is not tabulated
    assert ceiling.main([*argv, "--conditions", "a", "v", "l", "av", "al"]) == 1
    assert ceiling.main(argv) == 0
    summary = pd.read_csv(out / "summary.csv")

    def ua(entry: str, cond: str) -> float:
        hit = summary[(summary.entry == entry) & (summary.condition == cond) & (summary.metric == "ua")]
        return float(hit["mean"].iloc[0])

    own = {c: json.loads((out / "seed0" / f"specialist-{c}" / "fold_1" / "test_metrics.json").read_text())[c]["ua"]
           for c in ("a", "v", "l", "av", "al", "vl")}
    assert ua(ceiling.SPECIALIST, "av") == pytest.approx(own["av"])  # each specialist scored on its own condition
    assert ua(ceiling.SPECIALIST, "average") == pytest.approx(sum(own.values()) / 6)
    # the full-modality specialist is the zero-filled baseline itself
    assert ua(ceiling.SPECIALIST, "avl") == pytest.approx(ua("utt_fusion (faithful)", "avl"))
    text = (out / "ceiling.md").read_text()
    assert "| pooled (six) |" in text and "| utt_fusion (faithful) |" in text and "--collect" not in text
    gap = ua("utt_fusion (faithful)", "average") - ua(ceiling.SPECIALIST, "average")
    assert f"| utt_fusion (faithful) | 1 | {gap:+.3f} |" in text
    # specialists trained on other data than --against are refused, naming both runs
    run_json = out / "seed0" / "specialist-a" / "run.json"
    run = json.loads(run_json.read_text())
    run_json.write_text(json.dumps({**run, "data_fingerprint": "0" * 64}))
    with pytest.raises(ValueError, match="different data.*specialist-a"):
        ceiling.main([*argv, "--collect"])
