"""The training engine: outputs, resume after a kill, selection protocols, teacher checks, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from mer_lib.inference import checkpoint as ckpt_io
from mer_lib.rundir import LAST
from mer_lib.training.api import parse_folds, train
from mer_lib.training.engine import linear_decay

FAST = ["train.batch_size=16", "train.eval_batch_size=256", "train.tensorboard=false"]


def test_linear_decay_matches_reference_policy() -> None:
    f = linear_decay(2, 2)
    assert [round(f(i), 6) for i in range(4)] == [1.0, 1.0, round(2 / 3, 6), round(1 / 3, 6)]


def test_parse_folds() -> None:
    assert parse_folds("1-3,5") == [1, 2, 3, 5] and parse_folds(4) == [4]
    with pytest.raises(ValueError, match="expected e.g. 1-10"):
        parse_folds("3-1")


def test_one_epoch_utt_fusion_writes_everything(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = train("utt_fusion", str(tiny_data), str(out), "1", epochs=1,
                    overrides=["train.batch_size=16", "train.tensorboard=true"])
    fold = out / "fold_1"
    for name in ("best.pt", "last.pt", "config.yaml", "metrics.csv", "predictions_tst.csv", "test_metrics.json"):
        assert (fold / name).exists(), name
    assert any((fold / "tb").iterdir())
    metrics = json.loads((fold / "test_metrics.json").read_text())
    assert {"a", "v", "l", "av", "al", "vl", "avl", "average"} <= set(metrics)
    assert metrics["select_on"] == "val" and 0.0 <= metrics["average"]["ua"] <= 1.0
    ckpt = torch.load(fold / "best.pt", weights_only=True)
    assert ckpt["meta"]["data_fingerprint"] == summary["data_fingerprint"]
    assert ckpt["meta"]["fold"] == 1 and "torch" in ckpt["meta"]["versions"]
    pred = pd.read_csv(fold / "predictions_tst.csv")
    n_tst = len(pred[pred.condition == "avl"])
    assert len(pred) == 7 * n_tst and set(pred.condition) == {"a", "v", "l", "av", "al", "vl", "avl"}
    hist = pd.read_csv(fold / "metrics.csv")
    assert list(hist.epoch) == [1] and {"train_loss", "val_ua", "val_wa", "val_f1"} <= set(hist.columns)
    run = json.loads((out / "run.json").read_text())
    assert run["model"] == "utt_fusion" and run["folds"] == [1]


def test_killed_run_resumes_to_the_same_result(tiny_data: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    straight = tmp_path / "straight"
    train("utt_fusion", str(tiny_data), str(straight), "2", epochs=3, overrides=FAST)

    killed = tmp_path / "killed"
    real_save = ckpt_io.save
    calls = {"last": 0}

    def save_then_die(obj: dict, path: str | Path) -> None:
        real_save(obj, path)
        if Path(path).name == LAST:
            calls["last"] += 1
            if calls["last"] == 2:
                raise KeyboardInterrupt("simulated kill after epoch 2")

    monkeypatch.setattr(ckpt_io, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train("utt_fusion", str(tiny_data), str(killed), "2", epochs=3, overrides=FAST)
    monkeypatch.setattr(ckpt_io, "save", real_save)
    assert not (killed / "fold_2" / "test_metrics.json").exists()
    train("utt_fusion", str(tiny_data), str(killed), "2", epochs=3, overrides=FAST)

    a = torch.load(straight / "fold_2" / "last.pt", weights_only=True)
    b = torch.load(killed / "fold_2" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    ma = json.loads((straight / "fold_2" / "test_metrics.json").read_text())
    mb = json.loads((killed / "fold_2" / "test_metrics.json").read_text())
    assert ma["average"] == mb["average"] and ma["best_epoch"] == mb["best_epoch"]
    hist = pd.read_csv(killed / "fold_2" / "metrics.csv")
    assert list(hist.epoch) == [1, 2, 3]


def test_finished_fold_is_skipped_and_other_config_refused(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train("utt_fusion", str(tiny_data), str(out), "1", epochs=1, overrides=FAST)
    stamp = (out / "fold_1" / "best.pt").stat().st_mtime_ns
    train("utt_fusion", str(tiny_data), str(out), "1", epochs=1, overrides=FAST)
    assert (out / "fold_1" / "best.pt").stat().st_mtime_ns == stamp
    with pytest.raises(ckpt_io.CheckpointError, match="another config"):
        train("utt_fusion", str(tiny_data), str(out), "1", epochs=2, overrides=FAST)


def test_test_leak_selection_is_labelled(tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "leak"
    train("utt_fusion", str(tiny_data), str(out), "1", epochs=1, overrides=[*FAST, "train.select_on=test_leak"])
    metrics = json.loads((out / "fold_1" / "test_metrics.json").read_text())
    assert metrics["select_on"] == "test_leak"
    assert "test_ua" in pd.read_csv(out / "fold_1" / "metrics.csv").columns


def test_stage_two_teacher_checks(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ckpt_io.CheckpointError, match="needs --teacher"):
        train("ifmmin", str(tiny_data), str(tmp_path / "s2"), "1", epochs=1, overrides=FAST)
    with pytest.raises(ckpt_io.CheckpointError, match="no trained checkpoint"):
        train("ifmmin", str(tiny_data), str(tmp_path / "s2b"), "1", epochs=1, overrides=FAST,
              teacher=str(tmp_path / "nothing"))
    fusion = tmp_path / "fusion"
    train("utt_fusion", str(tiny_data), str(fusion), "1", epochs=1, overrides=FAST)
    with pytest.raises(ckpt_io.CheckpointError, match="teacher is a 'utt_fusion' model"):
        train("ifmmin", str(tiny_data), str(tmp_path / "s2c"), "1", epochs=1, overrides=FAST, teacher=str(fusion))
    with pytest.raises(ckpt_io.CheckpointError, match=r"no trained checkpoint \(best.pt\) for fold 2"):
        train("mmin", str(tiny_data), str(tmp_path / "s2d"), "2", epochs=1, overrides=FAST, teacher=str(fusion))


def test_two_stage_ifmmin_and_cli(tiny_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mer_lib.cli import main

    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    assert main(["train", "--model", "utt_shared", "--data", str(tiny_data), "--fold", "1", "--out", str(s1),
                 "--epochs", "1", "--no-progress", *[x for o in FAST for x in ("--set", o)]]) == 0
    assert main(["train", "--model", "ifmmin", "--data", str(tiny_data), "--fold", "1", "--out", str(s2),
                 "--teacher", str(s1), "--epochs", "1", "--no-progress",
                 *[x for o in FAST for x in ("--set", o)]]) == 0
    out = capsys.readouterr().out
    assert "ifmmin" in out and "fold 1: best epoch 1" in out
    metrics = json.loads((s2 / "fold_1" / "test_metrics.json").read_text())
    assert metrics["model"] == "ifmmin"
    # the stage-2 checkpoint does not carry the frozen teacher but reloads on its own
    model, cfg, meta = ckpt_io.load_trained(s2, fold=1)
    assert cfg.model == "ifmmin" and not model.training


def test_cli_reports_bad_input_without_traceback(tiny_data: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from mer_lib.cli import main

    code = main(["train", "--model", "utt_fusion", "--data", str(tiny_data), "--folds", "12", "--out",
                 str(tmp_path / "x")])
    assert code == 2
    assert "fold(s) [12] not in the feature set" in capsys.readouterr().err


def _leaking_copy(tiny_data: Path, dest: Path) -> tuple[Path, str]:
    """A copy of the tiny set whose fold-1 training list also holds the first test utterance."""
    import shutil

    import numpy as np

    shutil.copytree(tiny_data, dest)
    d = dest / "target" / "1"
    tst_ids = np.load(d / "tst_int2name.npy", allow_pickle=True)
    tst_lab = np.load(d / "tst_label.npy")
    np.save(d / "trn_int2name.npy", np.concatenate([np.load(d / "trn_int2name.npy", allow_pickle=True), tst_ids[:1]]))
    np.save(d / "trn_label.npy", np.concatenate([np.load(d / "trn_label.npy"), tst_lab[:1]]))
    first = tst_ids[0][0]
    return dest, first.decode() if isinstance(first, bytes) else str(first)


def test_leaking_fold_is_refused_unless_overridden(tiny_data: Path, tmp_path: Path) -> None:
    from mer_lib.data.folds import FoldLeakError
    from mer_lib.evaluation.api import evaluate_run

    data, leaked = _leaking_copy(tiny_data, tmp_path / "leaky")
    out = tmp_path / "run"
    with pytest.raises(FoldLeakError, match=rf"fold 1: 1 utterance\(s\) in both trn and tst, first {leaked}") as exc:
        train("utt_fusion", str(data), str(out), "1", epochs=1, overrides=FAST)
    assert "speaker(s)" in str(exc.value) and "--allow-overlap" in str(exc.value)
    assert not out.exists()  # refused before any work
    train("utt_fusion", str(data), str(tmp_path / "clean"), "2", epochs=1, overrides=FAST)  # fold 2 is clean

    summary = train("utt_fusion", str(data), str(out), "1", epochs=1, overrides=FAST, allow_overlap=True)
    run = json.loads((out / "run.json").read_text())
    assert run["allow_overlap"] is True and summary["fold_overlaps"] == run["fold_overlaps"]
    assert any(leaked in p for p in run["fold_overlaps"])
    with pytest.raises(FoldLeakError, match="fold 1"):
        evaluate_run(str(out), str(data), None, str(tmp_path / "ev"))
    doc = evaluate_run(str(out), str(data), None, str(tmp_path / "ev"), allow_overlap=True)
    assert any(leaked in p for p in doc["fold_overlaps"]["utt_fusion"])
    for report in ("report.md", "report.html"):
        text = (tmp_path / "ev" / report).read_text()
        assert "fold leakage (--allow-overlap), scores inflated" in text and leaked in text


def test_modality_dropout_baseline_trains_on_missing_conditions(tiny_data: Path, tmp_path: Path) -> None:
    from mer_lib.config import MODEL_NAMES
    from mer_lib.data.dataset import FoldData
    from mer_lib.data.featureset import FeatureStore
    from mer_lib.models.factory import model_class

    assert all(model_class(n).name == n for n in MODEL_NAMES)  # one list of names, each class answering to its own
    loader = FoldData(FeatureStore(tiny_data), 1).loader("trn", batch_size=1000, conditions="random_missing_or_full",
                                                         shuffle=True, seed=3)
    masks = torch.cat([b.mask for b in loader])
    kinds = {tuple(int(x) for x in m) for m in masks.tolist()}
    assert kinds == {(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1)}
    summary = train("utt_fusion_dropout", str(tiny_data), str(tmp_path / "run"), "1", epochs=1, overrides=FAST)
    assert summary["model"] == "utt_fusion_dropout" and summary["fold_results"]["1"]["average"] is not None
    # selected on the pooled six missing conditions (what the robust models are compared on), not full modality
    from mer_lib.conditions import MISSING_CONDITIONS
    from mer_lib.config import load_config
    from mer_lib.models.factory import build_model
    from mer_lib.training.engine import selection_conditions

    assert selection_conditions(build_model(load_config("utt_fusion_dropout"))) == list(MISSING_CONDITIONS)
    assert selection_conditions(build_model(load_config("utt_fusion"))) == ["avl"]


def test_specialist_condition_trains_and_selects_on_its_one_condition(tiny_data: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from mer_lib.config import ConfigError, load_config
    from mer_lib.data.dataset import FoldData

    seen: list[tuple[str, object]] = []
    real_loader = FoldData.loader

    def spy(self: FoldData, split: str, *args: object, conditions: object = "full", **kwargs: object):
        seen.append((split, conditions))
        return real_loader(self, split, *args, conditions=conditions, **kwargs)

    monkeypatch.setattr(FoldData, "loader", spy)
    summary = train("utt_fusion", str(tiny_data), str(tmp_path / "run"), "1", epochs=1,
                    overrides=[*FAST, "model_params.specialist_condition=av"])
    assert ("trn", ["av"]) in seen and ("val", ["av"]) in seen  # trained and selected on {a,v} only
    metrics = json.loads((tmp_path / "run" / "fold_1" / "test_metrics.json").read_text())
    hist = pd.read_csv(tmp_path / "run" / "fold_1" / "metrics.csv")
    assert metrics["best_score"] == pytest.approx(float(hist.val_ua.iloc[0]))
    assert summary["fold_results"]["1"]["best_score"] == metrics["best_score"] and "av" in metrics
    with pytest.raises(ConfigError, match="specialist_condition"):
        load_config("utt_fusion", overrides=["model_params.specialist_condition=x"])
