"""bench/results.py: entries per family and recipe, shared teachers, cached evaluation, tables in the READMEs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def results():
    """The bench script as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_results", REPO / "bench" / "results.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_results"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_entries_cover_every_family_and_recipe_once(results) -> None:
    names = [e.name for e in results.build_entries(list(results.FAMILIES), ["faithful", "improved"])]
    # a family without any improved stage (the baselines, mmin) is not repeated as "improved"
    assert "utt_fusion (faithful)" in names and "utt_fusion_dropout (faithful)" in names
    assert "ifmmin (improved)" in names and "nmer (improved)" in names
    assert len(names) == len(set(names))
    nmer = next(e for e in results.build_entries(["nmer"], ["improved"]))
    # NMER's stage 1 has no improved recipe: it trains faithful and is shared with the faithful entry
    assert [s.dirname for s in nmer.stages] == ["nmer_pretrain", "nmer-improved"]
    tagged = results.build_entries(["ifmmin"], ["faithful", "improved"], "lr", ["train.lr=0.001"])
    assert [e.recipe for e in tagged] == ["faithful", "improved+lr"]
    # only the stage with overrides is a new run; the improved teacher is shared with the untagged entry
    assert [s.dirname for s in tagged[1].stages] == ["utt_shared-improved", "ifmmin-improved+lr"]
    assert tagged[0].stages[1].overrides == () and tagged[1].stages[1].overrides == ("train.lr=0.001",)
    teacher_tagged = results.build_entries(["ifmmin"], ["improved"], "t", [], ["model_params.cmd_weight=0.5"])
    assert [s.dirname for s in teacher_tagged[0].stages] == ["utt_shared-improved+t", "ifmmin-improved+t"]
    with pytest.raises(ValueError, match="unknown family"):
        results.build_entries(["nope"], ["faithful"])


def test_render_marks_the_best_baseline_and_the_gaps(results) -> None:
    rows = []
    for entry, fam, base in (("utt_fusion (faithful)", "utt_fusion", 0.50), ("ifmmin (improved)", "ifmmin", 0.60),
                             ("utt_fusion_dropout (faithful)", "utt_fusion_dropout", 0.55)):
        for seed in (0, 1):
            for cond in results.CONDITIONS:
                for metric in ("wa", "ua"):
                    rows.append({"entry": entry, "family": fam, "recipe": "x", "noise": "none", "steps": 0,
                                 "condition": cond, "metric": metric, "value": base + 0.02 * seed, "fold": 1,
                                 "seed": seed})
    rows = pd.DataFrame(rows)
    entries = results.build_entries(["utt_fusion", "utt_fusion_dropout", "ifmmin"], ["faithful", "improved"])
    meta = {"command": "python bench/results.py", "machine": "m", "wall_h": 0.1, "data": "d", "folds": "1",
            "seeds": "0 1", "epochs": "1 per stage"}
    text = results.render(results.summarise(rows), rows, entries, meta)
    assert "utt_fusion_dropout (faithful) (best baseline)" in text
    assert "| ifmmin (improved) | +0.050 |" in text and "0.014" in text  # gap; seed std of 0.50 / 0.52


def test_write_block_replaces_only_between_the_markers(results, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# T\n\n## Results\n\nintro\n\n## Next\n")
    results.write_block(readme, "first\n", "## Results (bench)")
    results.write_block(readme, "second\n", "## Results (bench)")
    text = readme.read_text()
    assert text.count(results.BEGIN) == 1 and "second" in text and "first" not in text and "## Next" in text


def test_one_epoch_run_trains_evaluates_and_reuses(results, tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "res"
    argv = ["--data", str(tiny_data), "--folds", "1", "--seeds", "0", "--families", "utt_fusion", "mmin",
            "--recipes", "faithful", "--epochs", "1", "--noise-levels", "100", "--out", str(out), "--no-write",
            "--set", "train.tensorboard=false", "--set", "train.batch_size=32"]  # --noise-levels: the old flag name
    assert results.main(argv) == 0
    # mmin's teacher is the baseline's run: trained once
    assert sorted(p.name for p in (out / "seed0").iterdir()) == ["eval", "mmin", "utt_fusion"]
    table = (out / "results.md").read_text()
    assert "| mmin (faithful) |" in table and "T=100" in table
    cached = out / "seed0" / "eval" / "mmin_(faithful)_fold1.csv"
    first = cached.stat().st_mtime
    assert results.main(argv) == 0  # a rerun reuses the trained folds and the evaluations
    assert cached.stat().st_mtime == first
    # A cache written before the steps column had its own word ("level") is reused and tabulated.
    pd.read_csv(cached).rename(columns={"steps": "level"}).to_csv(cached, index=False)
    legacy = cached.stat().st_mtime
    assert results.main(argv) == 0 and cached.stat().st_mtime == legacy
    assert results.main([*argv, "--collect", "--folds", "1-2"]) == 0  # tabulates fold 1 only
    assert "folds 1, seeds 0" in (out / "results.md").read_text()


def test_demo_verdict_says_who_learns_and_why_nothing_is_promoted(tmp_path: Path) -> None:
    """The demo's closing lines (pipelines/run_local.py): table, learning verdicts, one-sentence decision."""
    from pipelines.run_local import verdict

    scores = {"ifmmin": (0.52, 0.60), "nmer": (0.33, 0.41), "baseline": (0.45, 0.62), "baseline_dropout": (0.50, 0.55)}
    rows = []
    for model, (pooled, full) in scores.items():
        for cond, val in (("average", pooled), ("avl", full)):
            for metric in ("ua", "wa"):
                rows.append({"model": model, "select_on": "val", "noise": "none", "steps": 0, "condition": cond,
                             "metric": metric, "mean": val, "std": 0.01, "min": val, "max": val, "n_folds": 2,
                             "folds": "1,2"})
        rows.append({"model": model, "select_on": "val", "noise": "gaussian", "steps": 100, "condition": "average",
                     "metric": "wa", "mean": pooled - 0.05, "std": 0.0, "min": 0, "max": 1, "n_folds": 2,
                     "folds": "1,2"})
    pd.DataFrame(rows).to_csv(tmp_path / "summary.csv", index=False)
    reason = "no challenger beats the best baseline: ifmmin average_ua=0.5200 is not above baseline_dropout (0.5000)"
    (tmp_path / "decision.json").write_text(json.dumps({"register": False, "challenger": "ifmmin", "reason": reason}))
    lines = verdict(tmp_path, "improved")
    assert "| IF-MMIN (improved) | 0.520 | 0.600 | 0.470 |" in lines
    assert "| modality-dropout baseline | 0.500 | 0.550 | 0.450 |" in lines
    assert any(x.startswith("IF-MMIN learns") for x in lines)
    nmer = next(x for x in lines if x.startswith("NMER"))
    assert "does NOT clearly learn" in nmer and "below the zero-filled baseline by more than noise" in nmer
    assert lines[-1].startswith("Registration: nothing is promoted.") and "best baseline" in lines[-1]
