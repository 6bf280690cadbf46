"""Evaluation: metric values on hand-built predictions, fold aggregation, the evaluate API and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from mer_lib.conditions import ALL_CONDITIONS, MISSING_CONDITIONS
from mer_lib.config import ExperimentConfig
from mer_lib.data.dataset import Batch
from mer_lib.data.featureset import LABEL_NAMES, list_folds, read_metadata, read_split
from mer_lib.evaluation.aggregate import (
    FOLD_COLUMNS,
    SUMMARY_COLUMNS,
    aggregate_folds,
    concat,
    flat_metrics,
    metrics_frame,
    paper_table,
    primary_value,
)
from mer_lib.evaluation.api import EvaluationError, evaluate_run, load_evaluation
from mer_lib.evaluation.noise_grid import cell_seed, grid_cells
from mer_lib.metrics import compute_metrics, condition_metrics
from mer_lib.models.base import MERModel, StepOutput
from tests.helpers_data import SPEC, make_featureset

# ------------------------------------------------------------------------------------------- metrics


def test_compute_metrics_hand_values() -> None:
    # class 0: 2/3 recalled, class 1: 1/1, class 2: 0/2 (both called 0), class 3: 2/2
    y_true = [0, 0, 0, 1, 2, 2, 3, 3]
    y_pred = [0, 0, 1, 1, 0, 0, 3, 3]
    m = compute_metrics(y_true, y_pred, 4)
    assert m["wa"] == pytest.approx(5 / 8)
    assert m["ua"] == pytest.approx((2 / 3 + 1 + 0 + 1) / 4)
    # per-class F1: 0: p=2/4 r=2/3 -> 4/7; 1: p=1/2 r=1 -> 2/3; 2: 0; 3: 1
    assert m["f1"] == pytest.approx((4 / 7 + 2 / 3 + 0 + 1) / 4)
    assert m["n"] == 8
    assert m["confusion"] == [[2, 1, 0, 0], [0, 1, 0, 0], [2, 0, 0, 0], [0, 0, 0, 2]]


def test_metrics_are_the_references_sklearn_scores_to_the_bit() -> None:
    # compute_metrics no longer imports scikit-learn (~77 MB of every training process); its float64
    # operations are sklearn's, so model selection and every reported score keep their bits.
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for trial in range(400):
        c = int(rng.integers(2, 7))
        n = int(rng.integers(1, 80))
        classes = rng.choice(c, size=int(rng.integers(1, c + 1)), replace=False)  # some classes absent
        y = rng.choice(classes, size=n)
        p = np.where(rng.random(n) < rng.random(), y, rng.choice(classes, size=n))
        got = compute_metrics(y, p, c)
        assert got["wa"] == float(sk.accuracy_score(y, p)), trial
        # the reference's calls: no labels=, so the classes seen in y or p are averaged
        assert got["ua"] == float(sk.recall_score(y, p, average="macro", zero_division=0)), trial
        assert got["f1"] == float(sk.f1_score(y, p, average="macro", zero_division=0)), trial
        assert got["confusion"] == sk.confusion_matrix(y, p, labels=list(range(c))).tolist(), trial


def test_absent_class_keeps_confusion_shape_and_is_not_averaged_as_zero() -> None:
    m = compute_metrics([0, 1, 1], [0, 1, 0], 4)
    assert np.array(m["confusion"]).shape == (4, 4)
    assert m["ua"] == pytest.approx((1 + 0.5) / 2)  # classes 2 and 3 never occur


@pytest.mark.parametrize(("y_true", "y_pred", "needle"), [
    ([0, 4], [0, 1], "label value 4"),
    ([0, 1], [0, -1], "pred value -1"),
    ([0, 1], [0], "equal length"),
    ([], [], "zero predictions"),
])
def test_compute_metrics_rejects_bad_input(y_true: list, y_pred: list, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        compute_metrics(y_true, y_pred, 4)


def _table(per_condition: dict[str, tuple[list[int], list[int]]]) -> pd.DataFrame:
    rows = []
    for cond, (labels, preds) in per_condition.items():
        rows += [{"id": f"u{i}", "condition": cond, "label": t, "pred": p, "p_happy": 0.25}
                 for i, (t, p) in enumerate(zip(labels, preds, strict=True))]
    return pd.DataFrame(rows)


REPLICATED = {"a": [0, 0, 0, 0], "v": [1, 1, 1, 1], "l": [0, 0, 0, 1],
              "av": [0, 0, 0, 0], "al": [0, 0, 1, 1], "vl": [0, 1, 1, 1]}


def test_pooled_average_on_the_replicated_test_set() -> None:
    labels = [0, 0, 0, 1]  # the same 4 utterances under every condition, as in the replicated test set
    pred = _table({c: (labels, REPLICATED[c]) for c in MISSING_CONDITIONS} | {"avl": (labels, [0, 0, 0, 1])})
    res = condition_metrics(pred, 2)
    assert list(res) == [*ALL_CONDITIONS, "average"]
    per_cond = [res[c] for c in MISSING_CONDITIONS]
    # correct items 3+1+4+3+3+2 of 24; class 0 recalled 12 of 18, class 1 recalled 4 of 6
    assert res["average"]["wa"] == pytest.approx(16 / 24)
    assert res["average"]["ua"] == pytest.approx((12 / 18 + 4 / 6) / 2)
    # Every condition holds the same N utterances (so the same N_c per class): pooled WA and pooled UA
    # equal the mean of the six per-condition scores, whereas F1 (through precision) does not.
    assert res["average"]["wa"] == pytest.approx(np.mean([r["wa"] for r in per_cond]))
    assert res["average"]["ua"] == pytest.approx(np.mean([r["ua"] for r in per_cond]))
    # pooled F1: class 0 P=12/14 R=12/18 -> 0.75; class 1 P=4/10 R=4/6 -> 0.5
    assert res["average"]["f1"] == pytest.approx(0.625)
    assert np.mean([r["f1"] for r in per_cond]) == pytest.approx((3 / 7 + 0.2 + 1 + 3 / 7 + 11 / 15 + 0.5) / 6)
    # full modality is scored but never pooled
    assert res["avl"]["ua"] == 1.0 and res["average"]["n"] == 24


def test_pooled_ua_differs_from_mean_when_conditions_hold_different_items() -> None:
    # e.g. the published NMER eval loaders drop the last partial batch, so conditions lose items unevenly
    pred = _table({"a": ([0, 1, 1, 1], [0, 0, 0, 0]), "v": ([0, 1], [1, 1])})
    res = condition_metrics(pred, 2)
    assert res["a"]["ua"] == pytest.approx(0.5) and res["v"]["ua"] == pytest.approx(0.5)
    # pooled: class 0 recalled 1 of 2, class 1 recalled 1 of 4
    assert res["average"]["ua"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert res["average"]["wa"] == pytest.approx(2 / 6)
    assert np.mean([res["a"]["wa"], res["v"]["wa"]]) == pytest.approx(3 / 8)


def test_condition_metrics_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="missing column.*pred"):
        condition_metrics(pd.DataFrame({"id": ["x"], "condition": ["a"], "label": [0]}), 4)
    with pytest.raises(ValueError, match="unknown condition.*zz"):
        condition_metrics(_table({"zz": ([0], [0])}), 4)


# --------------------------------------------------------------------------------------- aggregation

def _fold_result(wa: float, ua: float) -> dict[str, dict]:
    return {"average": {"wa": wa, "ua": ua, "f1": ua, "n": 10, "confusion": [[1]]},
            "avl": {"wa": wa + 0.1, "ua": ua + 0.1, "f1": ua, "n": 5, "confusion": [[1]]}}


def test_aggregate_mean_and_std_over_folds() -> None:
    fm = concat([metrics_frame(_fold_result(wa, ua), fold=k, model="m", select_on="val")
                 for k, (wa, ua) in enumerate([(0.6, 0.5), (0.7, 0.6), (0.8, 0.9)], 1)], FOLD_COLUMNS)
    s = aggregate_folds(fm)
    assert list(s.columns) == list(SUMMARY_COLUMNS)
    row = s[(s.condition == "average") & (s.metric == "ua")].iloc[0]
    assert row["mean"] == pytest.approx(2 / 3)
    assert row["std"] == pytest.approx(np.std([0.5, 0.6, 0.9], ddof=1))
    assert (row["min"], row["max"], row["n_folds"], row["folds"]) == (0.5, 0.9, 3, "1,2,3")
    flat = flat_metrics(s, "m")
    assert flat["average_wa"] == pytest.approx(0.7) and flat["avl_wa"] == pytest.approx(0.8)
    assert flat["average_ua_std"] == pytest.approx(row["std"])
    assert primary_value(flat, "average_ua") == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="'average_xx' was not computed; known: average_wa"):
        primary_value(flat, "average_xx")
    table = paper_table(s, "wa")
    assert list(table.columns) == ["average", "avl"] and table.loc["m", "avl"] == pytest.approx(0.8)


def test_single_fold_std_is_nan_and_duplicate_fold_is_an_error() -> None:
    one = metrics_frame(_fold_result(0.6, 0.5), fold=1, model="m", select_on="val")
    assert aggregate_folds(one)["std"].isna().all()
    with pytest.raises(ValueError, match="fold 1 appears twice for model 'm'"):
        aggregate_folds(concat([one, one], FOLD_COLUMNS))


def test_noise_cells_have_fixed_distinct_seeds() -> None:
    cells = grid_cells(["gaussian", "impulse"], [20, 100], base_seed=1234, fold=3)
    assert [(c.noise, c.steps) for c in cells] == [("gaussian", 20), ("gaussian", 100), ("impulse", 20),
                                                   ("impulse", 100)]
    assert cells == grid_cells(["gaussian", "impulse"], [20, 100], base_seed=1234, fold=3)
    assert len({c.seed for c in cells}) == 4
    assert cell_seed(1234, 3, "gaussian", 20) != cell_seed(1234, 4, "gaussian", 20)
    with pytest.raises(ValueError, match="unknown noise type 'pink'"):
        grid_cells(["pink"], [20], base_seed=0, fold=1)
    with pytest.raises(ValueError, match="T must be >= 1"):
        grid_cells(["gaussian"], [0], base_seed=0, fold=1)


# ------------------------------------------------------------------------------ evaluate a trained run

class OracleL(MERModel):
    """Test model with known scores: the true label when L is available, class 0 otherwise."""

    name = "utt_fusion"

    def __init__(self, cfg: ExperimentConfig) -> None:
        super().__init__()
        self.num_classes = cfg.data.num_classes
        self.scale = nn.Parameter(torch.tensor(5.0))

    def subnets(self) -> dict[str, nn.Module]:
        return {}

    def training_step(self, batch: Batch, epoch: int) -> StepOutput:
        logits = self.predict_logits(batch)
        return StepOutput(logits, logits.sum())

    def predict_logits(self, batch: Batch) -> torch.Tensor:
        onehot = nn.functional.one_hot(batch.label, self.num_classes).float()
        zero = nn.functional.one_hot(torch.zeros_like(batch.label), self.num_classes).float()
        has_l = batch.mask[:, 2:3]
        return self.scale * (has_l * onehot + (1 - has_l) * zero)


@pytest.fixture()
def oracle_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Route the ``utt_fusion`` model name to :class:`OracleL` for the duration of a test."""
    from mer_lib.models import factory

    monkeypatch.setitem(factory.MODELS, "utt_fusion", f"{__name__}:OracleL")


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("eval") / "features"
    make_featureset(root, per_speaker=6, seed=3)
    return root


def make_run(run_dir: Path, data: Path, folds: list[int], *, select_on: str = "val", dims: dict | None = None,
             label_names: list[str] | None = None) -> Path:
    """Write a run directory like ``mer train``'s: run.json and fold_<k>/best.pt of :class:`OracleL`."""
    from mer_lib.inference.checkpoint import save

    d = dims or SPEC.dims
    cfg = ExperimentConfig(model="utt_fusion")
    cfg.data.dim_a, cfg.data.dim_v, cfg.data.dim_l = d["a"], d["v"], d["l"]
    cfg.train.select_on = select_on
    labels = label_names or list(LABEL_NAMES)
    cfg.data.num_classes = len(labels)
    for k in folds:
        meta = {"fold": k, "model": "utt_fusion", "label_names": labels, "select_on": select_on,
                "data_fingerprint": read_metadata(data)["fingerprint"]}
        (run_dir / f"fold_{k}").mkdir(parents=True)
        save({"model": {"scale": torch.tensor(5.0)}, "config": cfg.to_dict(), "meta": meta},
             run_dir / f"fold_{k}" / "best.pt")
    (run_dir / "run.json").write_text(json.dumps({"model": "utt_fusion", "recipe": "faithful",
                                                  "select_on": select_on, "folds": folds}))
    return run_dir


def expected_oracle(data: Path, fold: int) -> dict[str, float]:
    """Hand-derived scores of :class:`OracleL` on one fold's test set."""
    labels = read_split(data, fold, "tst").labels
    present = set(labels.tolist()) | {0}
    n0 = float(np.mean(labels == 0))
    return {
        "a_wa": n0, "l_wa": 1.0, "avl_ua": 1.0,
        # pooled: L present in 3 of 6 conditions; without L everything is called class 0
        "average_wa": (3 + 3 * n0) / 6,
        "average_ua": (1 + 0.5 * (len(present) - 1)) / len(present),
    }


def test_evaluate_run_scores_every_fold_and_writes_tables(features: Path, tmp_path: Path,
                                                          oracle_model: None) -> None:
    run = make_run(tmp_path / "run", features, [1, 2])
    doc = evaluate_run(str(run), str(features), "1-2", str(tmp_path / "ev"), batch_size=7)
    exp = [expected_oracle(features, k) for k in (1, 2)]
    assert doc["primary_metric"] == "average_ua" and doc["folds"] == [1, 2]
    assert doc["primary"] == pytest.approx(np.mean([e["average_ua"] for e in exp]))
    for key in ("a_wa", "l_wa", "avl_ua", "average_wa"):
        assert doc["metrics"][key] == pytest.approx(np.mean([e[key] for e in exp])), key
    assert doc["select_on"] == ["val"] and doc["model"] == "utt_fusion"

    ev = tmp_path / "ev"
    on_disk = json.loads((ev / "metrics.json").read_text())
    assert on_disk["primary"] == pytest.approx(doc["primary"])
    fm = pd.read_parquet(ev / "fold_metrics.parquet")
    assert list(fm.columns) == list(FOLD_COLUMNS)
    assert set(fm["condition"]) == {*ALL_CONDITIONS, "average"}
    per_fold = fm[(fm.condition == "average") & (fm.metric == "ua")].sort_values("fold")["value"]
    assert per_fold.to_numpy() == pytest.approx([e["average_ua"] for e in exp])
    pred = pd.read_parquet(ev / "predictions.parquet")
    n_tst = sum(len(read_split(features, k, "tst").ids) for k in (1, 2))
    assert len(pred) == 7 * n_tst
    assert list(pred.columns[:8]) == ["model", "noise", "steps", "fold", "id", "condition", "label", "pred"]
    assert pd.read_csv(ev / "summary.csv")["n_folds"].eq(2).all()
    info = json.loads((ev / "evaluation.json").read_text())
    assert info["timing"]["test_items_per_fold"] == 7 * n_tst // 2 and info["folds"] == [1, 2]
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        evaluate_run(str(run), str(features), "1", str(ev))


def test_evaluation_uses_the_thread_setting_of_training(features: Path, tmp_path: Path, oracle_model: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from mer_lib.inference import checkpoint as ckpt_io
    from mer_lib.inference.device import cpu_quota

    run = make_run(tmp_path / "run", features, [1, 2])
    best = run / "fold_2" / "best.pt"
    obj = ckpt_io.load(best)
    obj["config"]["train"]["threads"] = 1  # fold 2 trained with train.threads=1, fold 1 with the default 0
    ckpt_io.save(obj, best)
    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    evaluate_run(str(run), str(features), "1-2", str(tmp_path / "ev"))  # what the pipeline's evaluate step calls
    assert calls == [cpu_quota(), 1]


def test_evaluate_defaults_to_the_run_folds_and_labels_test_leak(features: Path, tmp_path: Path,
                                                                 oracle_model: None) -> None:
    run = make_run(tmp_path / "run", features, [3], select_on="test_leak")
    doc = evaluate_run(str(run), str(features), None, str(tmp_path / "ev"), conditions="a,l")
    assert doc["folds"] == [3] and doc["select_on"] == ["test_leak"]
    assert set(doc["metrics"]) >= {"a_wa", "l_wa", "average_ua"} and "avl_wa" not in doc["metrics"]
    assert "`select_on=test_leak`" in (tmp_path / "ev" / "report.md").read_text()


def test_noise_grid_replaces_missing_modalities_and_is_reproducible(features: Path, tmp_path: Path,
                                                                    oracle_model: None,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, int, int]] = []

    class RevealL:
        """Stand-in injector: records its arguments and marks every modality available."""

        def __init__(self, cfg, steps: int, seed: int) -> None:
            seen.append((cfg.type, steps, seed))

        def apply(self, batch: Batch) -> Batch:
            batch.mask = torch.ones_like(batch.mask)
            return batch

    monkeypatch.setattr("mer_lib.evaluation.noise_grid.NoiseInjector", RevealL)
    run = make_run(tmp_path / "run", features, [1])
    doc = evaluate_run(str(run), str(features), "1", str(tmp_path / "ev"), noise_grid=True,
                       noise_types=["gaussian", "impulse"], noise_steps=[20, 60])
    assert [(t, s) for t, s, _ in seen] == [("gaussian", 20), ("gaussian", 60), ("impulse", 20), ("impulse", 60)]
    assert seen[0][2] == cell_seed(1234, 1, "gaussian", 20)
    # the stand-in makes L visible, so the oracle is perfect under noise but not when L is zero-filled
    assert doc["metrics"]["noise_gaussian_T20_average_wa"] == 1.0
    assert doc["metrics"]["average_wa"] < 1.0
    fm = pd.read_parquet(tmp_path / "ev" / "fold_metrics.parquet")
    noisy = fm[fm.noise != "none"]
    assert set(noisy["condition"]) == {*MISSING_CONDITIONS, "average"}
    assert sorted(set(zip(noisy["noise"], noisy["steps"], strict=True))) == [
        ("gaussian", 20), ("gaussian", 60), ("impulse", 20), ("impulse", 60)]
    # An evaluation directory written before the grid's T was called "steps" names the column "level".
    for name in ("fold_metrics", "confusion"):
        for ext, read, write in ((".csv", pd.read_csv, lambda df, p: df.to_csv(p, index=False)),
                                 (".parquet", pd.read_parquet, lambda df, p: df.to_parquet(p))):
            path = tmp_path / "ev" / f"{name}{ext}"
            write(read(path).rename(columns={"steps": "level"}), path)
    legacy = load_evaluation(str(tmp_path / "ev"))
    assert "level" not in legacy.fold_metrics and "level" not in legacy.confusion
    pd.testing.assert_frame_equal(legacy.fold_metrics, fm)


def test_evaluate_errors_name_path_and_mismatch(features: Path, tmp_path: Path, oracle_model: None) -> None:
    run = make_run(tmp_path / "run", features, [1])
    with pytest.raises(EvaluationError, match=r"run: no trained checkpoint \(best.pt\) for fold 2"):
        evaluate_run(str(run), str(features), "1-2", str(tmp_path / "o1"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvaluationError, match="no fold_<k> directories"):
        evaluate_run(str(empty), str(features), None, str(tmp_path / "o2"))
    run11 = make_run(tmp_path / "run11", features, [11])
    with pytest.raises(EvaluationError, match=r"fold\(s\) \[11\] missing from the feature set"):
        evaluate_run(str(run11), str(features), "11", str(tmp_path / "o3"))
    wide = make_run(tmp_path / "wide", features, [1], dims={"a": 130, "v": 342, "l": 1024})
    with pytest.raises(EvaluationError, match=r"best.pt: trained on feature dimensions a=130, v=342, l=1024, "
                                              r"but .* has a=4, v=3, l=5"):
        evaluate_run(str(wide), str(features), "1", str(tmp_path / "o4"))
    other = make_run(tmp_path / "other", features, [1], label_names=["happy", "angry", "sad", "frustrated"])
    with pytest.raises(EvaluationError, match=r"trained on labels \['happy', 'angry', 'sad', 'frustrated'\]"):
        evaluate_run(str(other), str(features), "1", str(tmp_path / "o5"))
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 6))
    assert list_folds(features)[-1] == 10


def test_noise_grid_with_the_real_injector_is_seeded(features: Path, tmp_path: Path) -> None:
    from mer_lib.inference.checkpoint import save
    from mer_lib.models.factory import build_model

    cfg = ExperimentConfig(model="utt_fusion")
    cfg.data.dim_a, cfg.data.dim_v, cfg.data.dim_l = SPEC.dims["a"], SPEC.dims["v"], SPEC.dims["l"]
    cfg.model_params.embd_size, cfg.model_params.cls_layers, cfg.model_params.text_kernels = 8, [8], [1, 2]
    torch.manual_seed(0)
    state = build_model(cfg).state_dict()
    run = tmp_path / "run"
    (run / "fold_2").mkdir(parents=True)
    save({"model": state, "config": cfg.to_dict(), "meta": {"fold": 2, "label_names": list(LABEL_NAMES)}},
         run / "fold_2" / "best.pt")
    kw = {"noise_grid": True, "noise_types": ["gaussian"], "noise_steps": [5, 100], "conditions": "missing"}
    evaluate_run(str(run), str(features), "2", str(tmp_path / "e1"), **kw)
    evaluate_run(str(run), str(features), "2", str(tmp_path / "e2"), **kw)
    evaluate_run(str(run), str(features), "2", str(tmp_path / "e3"), noise_set=["seed=99"], **kw)
    p1, p2, p3 = (pd.read_parquet(tmp_path / e / "predictions.parquet") for e in ("e1", "e2", "e3"))
    probs = [c for c in p1.columns if c.startswith("p_")]
    noisy = p1["noise"] == "gaussian"
    pd.testing.assert_frame_equal(p1, p2)  # fixed seeds: the grid is reproducible
    assert not np.allclose(p1.loc[noisy, probs], p3.loc[noisy, probs])  # another seed, other noise
    np.testing.assert_allclose(p1.loc[~noisy, probs], p3.loc[~noisy, probs])  # clean protocol untouched
    # noise instead of zeros changes the predictions of the missing conditions
    clean = p1[~noisy].set_index(["id", "condition"])[probs]
    t100 = p1[noisy & (p1["steps"] == 100)].set_index(["id", "condition"])[probs]
    assert not np.allclose(clean.loc[t100.index].to_numpy(), t100.to_numpy())


def test_mer_evaluate_refuses_an_existing_out_before_any_work(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from mer_lib.cli import main

    out = tmp_path / "ev"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    # the model directory does not even exist: the output check comes first, so that is not what fails
    assert main(["evaluate", "--model-dir", str(tmp_path / "no-run"), "--data", str(tmp_path / "no-data"),
                 "--out", str(out)]) == 2
    assert "ev: already exists and is not empty; refusing to overwrite" in capsys.readouterr().err


def test_mer_evaluate_takes_noise_steps_under_the_old_flag_too() -> None:
    from mer_lib.cli import build_parser

    base = ["evaluate", "--model-dir", "r", "--data", "d", "--out", "o"]
    assert build_parser().parse_args([*base, "--noise-steps", "20", "100"]).noise_steps == [20, 100]
    assert build_parser().parse_args([*base, "--noise-levels", "20", "100"]).noise_steps == [20, 100]
