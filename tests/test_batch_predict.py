"""The batch-prediction pipeline: its compiled package (GPU branch, parameters), its components' bodies,
and a whole local run with ``kfp.local.SubprocessRunner(use_venv=False)`` on the tiny synthetic set."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mer_lib.prediction import predict
from mer_lib.training.api import train

REPO = Path(__file__).resolve().parents[1]
PROBS = ["p_happy", "p_angry", "p_sad", "p_neutral"]


@pytest.fixture(scope="module")
def run_dir(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """utt_fusion trained one epoch on fold 1 of the tiny synthetic set."""
    out = tmp_path_factory.mktemp("bp_run") / "uf"
    train("utt_fusion", str(tiny_data), str(out), folds="1", epochs=1, progress=False)
    return out


def test_compiled_package(tmp_path: Path) -> None:
    from components import MER_IMAGE_CPU, MER_IMAGE_GPU
    from pipelines.compile import compile_pipeline

    digest = compile_pipeline("batch_predict", tmp_path / "bp.yaml")
    assert compile_pipeline("batch_predict", tmp_path / "again.yaml") == digest  # byte-identical
    spec, platform = yaml.safe_load_all((tmp_path / "bp.yaml").read_text())
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["use_gpu"]["defaultValue"] is False and params["fold"]["defaultValue"] == "ensemble"
    assert params["absent"]["defaultValue"] == "auto" and params["accelerator_count"]["defaultValue"] == 1
    execs = spec["deploymentSpec"]["executors"]
    gpu, cpu = execs["exec-predict-batch"]["container"], execs["exec-predict-batch-2"]["container"]
    assert "accelerator_type" in gpu["resources"]["accelerator"]["resourceType"]
    assert gpu["image"] == MER_IMAGE_GPU and cpu["image"] == MER_IMAGE_CPU != MER_IMAGE_GPU
    assert "accelerator" not in cpu["resources"] and "cpu_request" in cpu["resources"]["resourceCpuRequest"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(k8s) == {"exec-predict-batch"}  # node selector and toleration only on the GPU variant
    assert k8s["exec-predict-batch"]["fieldPathAsEnv"] == [{"fieldPath": "spec.nodeName", "name": "NODE_NAME"}]
    for name, ex in execs.items():  # every step requests CPU and memory
        assert ex["container"]["resources"]["resourceMemoryRequest"], name
    assert k8s["exec-predict-batch"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    # Each branch predicts, then summarises its own predictions.
    branches = {k: v for k, v in spec["components"].items()
                if k.startswith("comp-condition-") and any(t.startswith("predict-batch") for t in v["dag"]["tasks"])}
    assert len(branches) == 2
    for comp in branches.values():
        tasks = comp["dag"]["tasks"]
        summary = next(t for name, t in tasks.items() if name.startswith("summarize-predictions"))
        producer = summary["inputs"]["artifacts"]["predictions"]["taskOutputArtifact"]["producerTask"]
        assert producer.startswith("predict-batch") and summary["dependentTasks"] == [producer]
    assert "use_gpu" in json.dumps(spec["root"]["dag"]["tasks"])


def test_component_bodies(run_dir: Path, tiny_data: Path, tmp_path: Path) -> None:
    from kfp.dsl import HTML, Dataset, Markdown, Metrics

    from components.predict import predict_batch, summarize_predictions

    art = Dataset(uri=str(tmp_path / "pred"))
    n = predict_batch.python_func(input_uri=str(tiny_data), model_uri=str(run_dir), model_version="",
                                  fold="ensemble", absent="auto", batch_size=0, device="cpu",
                                  output_uri="", predictions=art)
    preds = pd.read_csv(tmp_path / "pred" / "predictions.csv")
    assert n == len(preds) == 80 and art.metadata["model_name"] == "utt_fusion"
    assert art.metadata["input_type"] == "featureset" and art.metadata["skipped"] == 0
    metrics = Metrics(uri=str(tmp_path / "m"))
    summarize_predictions.python_func(predictions=art, metrics=metrics, report_md=Markdown(uri=str(tmp_path / "r.md")),
                                      report_html=HTML(uri=str(tmp_path / "r.html")))
    shares = {k: v for k, v in metrics.metadata.items() if k.startswith("share_label_")}
    assert metrics.metadata["utterances"] == 80 and metrics.metadata["share_modalities_avl"] == 1.0
    assert abs(sum(shares.values()) - 1) < 1e-5
    counts = preds["pred_label"].value_counts()
    assert shares["share_label_sad"] == pytest.approx(counts.get("sad", 0) / 80, abs=1e-6)
    assert "| avl | 80 | 100.0% |" in (tmp_path / "r.md").read_text()
    assert "<table>" in (tmp_path / "r.html").read_text()


def test_pipeline_runs_locally(run_dir: Path, tiny_data: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from kfp import local

    from pipelines.batch_predict import build_batch_predict_pipeline

    monkeypatch.chdir(REPO)  # the task subprocesses import mer_lib and components from the repo root
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    out = tmp_path / "published" / "preds.csv"
    pipeline = build_batch_predict_pipeline()
    pipeline(input_uri=str(tiny_data), model_uri=str(run_dir), output_uri=str(out))
    got = pd.read_csv(out)
    ref = predict(str(run_dir), str(tiny_data)).predictions
    assert got["id"].tolist() == ref["id"].tolist()
    np.testing.assert_allclose(got[PROBS].to_numpy(), ref[PROBS].to_numpy(), atol=1e-6)
    assert pd.read_csv(tmp_path / "published" / "preds.skipped.csv").empty
    md = list((tmp_path / "root").rglob("report_md"))
    assert len(md) == 1 and "Utterances predicted: 80" in md[0].read_text()
