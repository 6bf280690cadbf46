"""Reports: Markdown tables, the self-contained HTML, tidy tables on disk, comparisons and ``mer report``."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mer_lib.cli import main
from mer_lib.conditions import ALL_CONDITIONS
from mer_lib.data.featureset import LABEL_NAMES
from mer_lib.evaluation.aggregate import (
    CONFUSION_COLUMNS,
    FOLD_COLUMNS,
    SUMMARY_COLUMNS,
    concat,
    confusion_frame,
    metrics_frame,
)
from mer_lib.evaluation.api import Evaluation, EvaluationError, compare_runs, write_evaluation
from mer_lib.evaluation.report import fmt, markdown_table
from mer_lib.metrics import condition_metrics

PAPER_HEADER = "| model | selection | {a} | {v} | {l} | {a,v} | {a,l} | {v,l} | average | {a,v,l} |"


def predictions(accuracy: dict[str, float], n: int = 20) -> pd.DataFrame:
    """A replicated test set of ``n`` utterances (5 per class) where the first ``accuracy[c] * n``
    items of condition ``c`` are right and the rest are predicted as the next class."""
    labels = np.arange(n) % 4
    rows = []
    for cond in ALL_CONDITIONS:
        k = int(round(accuracy.get(cond, accuracy["default"]) * n))
        pred = np.where(np.arange(n) < k, labels, (labels + 1) % 4)
        rows.append(pd.DataFrame({"id": [f"u{i}" for i in range(n)], "condition": cond, "label": labels,
                                  "pred": pred}))
    return pd.concat(rows, ignore_index=True)


def hand_evaluation(model: str, fold_acc: dict[int, dict[str, float]], select_on: str = "val",
                    noise_wa: dict[int, float] | None = None) -> Evaluation:
    """An evaluation of ``model`` built from hand-made prediction tables (no model involved)."""
    fm, cf = [], []
    for k, acc in fold_acc.items():
        res = condition_metrics(predictions(acc), 4)
        fm.append(metrics_frame(res, fold=k, model=model, select_on=select_on))
        cf.append(confusion_frame(res, fold=k, model=model, select_on=select_on))
        for steps, wa in (noise_wa or {}).items():
            nres = condition_metrics(predictions({"default": wa}).query("condition != 'avl'"), 4)
            fm.append(metrics_frame(nres, fold=k, model=model, select_on=select_on, noise="gaussian", steps=steps))
    return Evaluation(concat(fm, FOLD_COLUMNS), concat(cf, CONFUSION_COLUMNS), LABEL_NAMES,
                      {"data": "synthetic", "models": [{"name": model}]})


@pytest.fixture(scope="module")
def two_evaluations(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp_path = tmp_path_factory.mktemp("evals")
    a = hand_evaluation("mmin", {1: {"default": 0.5, "l": 0.8, "avl": 0.9}, 2: {"default": 0.6, "l": 0.8, "avl": 0.9}},
                        noise_wa={20: 0.7, 100: 0.5})
    b = hand_evaluation("ifmmin", {1: {"default": 0.7, "avl": 1.0}, 2: {"default": 0.7, "avl": 1.0}},
                        select_on="test_leak", noise_wa={20: 0.8, 100: 0.6})
    write_evaluation(a, str(tmp_path / "ev_a"))
    write_evaluation(b, str(tmp_path / "ev_b"))
    return tmp_path / "ev_a", tmp_path / "ev_b"


def test_formatting_helpers() -> None:
    assert fmt(0.65123, 0.01234) == "0.6512 ± 0.0123"
    assert fmt(0.5, float("nan")) == "0.5000" and fmt(float("nan")) == "-"
    assert markdown_table(["x", "y"], [["1", "a|b"]]) == "| x | y |\n| --- | --- |\n| 1 | a\\|b |"


def test_single_model_report_files(two_evaluations: tuple[Path, Path]) -> None:
    ev = two_evaluations[0]
    assert {p.name for p in ev.iterdir()} == {
        "fold_metrics.csv", "fold_metrics.parquet", "summary.csv", "summary.parquet", "confusion.csv",
        "confusion.parquet", "metrics.json", "evaluation.json", "report.md", "report.html"}
    assert list(pd.read_parquet(ev / "summary.parquet").columns) == list(SUMMARY_COLUMNS)
    assert list(pd.read_csv(ev / "fold_metrics.csv").columns) == list(FOLD_COLUMNS)
    conf = pd.read_parquet(ev / "confusion.parquet")
    assert list(conf.columns) == list(CONFUSION_COLUMNS)
    # 20 items per condition and fold; the pooled "average" holds the six missing conditions
    per = conf.groupby(["fold", "condition"])["count"].sum()
    assert per[(1, "a")] == 20 and per[(1, "average")] == 120
    doc = json.loads((ev / "metrics.json").read_text())
    # fold 1: 5 conditions at 0.5 and {l} at 0.8 -> pooled WA 3.3/6; fold 2: (5*0.6+0.8)/6
    assert doc["metrics"]["average_wa"] == pytest.approx(((2.5 + 0.8) / 6 + (3.0 + 0.8) / 6) / 2)
    assert doc["metrics"]["avl_wa"] == pytest.approx(0.9) and doc["select_on"] == ["val"]
    md = (ev / "report.md").read_text()
    assert PAPER_HEADER in md
    assert "| mmin | val | 0.5500 ± 0.0707 | 0.5500 ± 0.0707 | 0.8000 ± 0.0000 |" in md
    assert "`select_on=val` (epoch selected on validation UA)" in md
    assert "| model | selection | T=20 | T=100 |" in md and "| mmin | val | 0.7000 ± 0.0000 | 0.5000 ± 0.0000 |" in md


def test_comparison_ranks_models_and_states_each_protocol(two_evaluations: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    doc = compare_runs([str(p) for p in two_evaluations], str(tmp_path / "cmp"), names=["MMIN", "IF-MMIN"])
    assert doc["primary_metric"] == "average_ua" and doc["ranking"] == ["IF-MMIN", "MMIN"]
    assert doc["models"]["IF-MMIN"]["primary"] == pytest.approx(0.7)
    assert doc["models"]["IF-MMIN"]["select_on"] == ["test_leak"]
    md = (tmp_path / "cmp" / "report.md").read_text()
    wa = md.split("### WA (accuracy)")[1].split("###")[0]
    assert PAPER_HEADER in wa
    rows = [line for line in wa.splitlines() if line.startswith("| MMIN") or line.startswith("| IF-MMIN")]
    assert rows[0].startswith("| MMIN | val | 0.5500 ± 0.0707")
    assert rows[1] == ("| IF-MMIN | test_leak | " + " | ".join(["0.7000 ± 0.0000"] * 7) + " | 1.0000 ± 0.0000 |")
    assert "IF-MMIN: `select_on=test_leak` (epoch selected on TEST UA" in md
    html_text = (tmp_path / "cmp" / "report.html").read_text()
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', html_text)
    assert [alt for alt, _ in images] == ["UA per condition per model", "accuracy vs noise intensity",
                                          "UA vs noise intensity", "confusion"]
    assert all(base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n" for _, b64 in images)
    assert "<th>{a,v,l}</th>" in html_text and "<td>IF-MMIN</td>" in html_text
    assert "src=\"http" not in html_text  # self-contained
    summary = pd.read_parquet(tmp_path / "cmp" / "summary.parquet")
    assert set(summary["model"]) == {"MMIN", "IF-MMIN"}


def test_comparison_errors(two_evaluations: tuple[Path, Path], tmp_path: Path) -> None:
    runs = [str(p) for p in two_evaluations]
    with pytest.raises(EvaluationError, match="2 runs"):
        compare_runs(runs, str(tmp_path / "x"), names=["only-one"])
    with pytest.raises(EvaluationError, match="nothing: not a directory"):
        compare_runs([str(tmp_path / "nothing")], str(tmp_path / "x"))
    shutil.copytree(runs[0], tmp_path / "ev_c")
    info = json.loads((tmp_path / "ev_c" / "evaluation.json").read_text())
    (tmp_path / "ev_c" / "evaluation.json").write_text(json.dumps({**info, "label_names": ["a", "b", "c", "d"]}))
    with pytest.raises(EvaluationError, match=r"ev_c: label set \['a', 'b', 'c', 'd'\] differs"):
        compare_runs([runs[0], str(tmp_path / "ev_c")], str(tmp_path / "x"))
    with pytest.raises(ValueError, match="primary metric 'avl_acc' was not computed"):
        compare_runs(runs, str(tmp_path / "x"), primary_metric="avl_acc")
    assert not (tmp_path / "x").exists()
    # the same evaluation twice gets a distinguishing name instead of silently merging
    doc = compare_runs([runs[0], runs[0]], str(tmp_path / "twice"))
    assert doc["ranking"] == ["mmin", "mmin (ev_a)"]


def test_report_reads_a_training_run_directly(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for k, acc in ((1, 0.5), (2, 0.75)):
        (run / f"fold_{k}").mkdir(parents=True)
        pred = predictions({"default": acc})
        for j, name in enumerate(LABEL_NAMES):
            pred[f"p_{name}"] = (pred["pred"] == j).astype(float)
        pred.insert(0, "fold", k)
        pred.to_csv(run / f"fold_{k}" / "predictions_tst.csv", index=False)
        (run / f"fold_{k}" / "test_metrics.json").write_text(json.dumps({"select_on": "test_leak"}))
    (run / "run.json").write_text(json.dumps({"model": "ifmmin", "recipe": "improved", "select_on": "test_leak",
                                              "label_names": list(LABEL_NAMES), "data": "synthetic"}))
    doc = compare_runs([str(run)], str(tmp_path / "rep"))
    assert doc["ranking"] == ["ifmmin:improved"]
    assert doc["models"]["ifmmin:improved"]["metrics"]["average_wa"] == pytest.approx(0.625)
    assert doc["models"]["ifmmin:improved"]["select_on"] == ["test_leak"]


def test_mer_report_cli(two_evaluations: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
                        ) -> None:
    out = tmp_path / "cli"
    assert main(["report", "--runs", *map(str, two_evaluations), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1. ifmmin (test_leak): 0.7000" in printed and "2. mmin (val):" in printed
    assert (out / "report.html").exists()
    assert main(["report", "--runs", *map(str, two_evaluations), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
