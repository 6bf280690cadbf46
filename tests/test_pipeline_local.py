"""The whole training DAG under kfp.local (SubprocessRunner, no Docker) on the tiny corpus, then the
compiled package re-run: the gate skips training because nothing changed, and after new data lands
under the same URI the next run trains on the new data (task cache on, as on a cluster). Raw media
go through the sharded extraction step."""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines import run_local  # noqa: E402
from pipelines.compile import compile_pipeline  # noqa: E402

TINY_NETS = ["model_params.embd_size=16", "model_params.cls_layers=[16,16]", "model_params.vae_layers=1",
             "model_params.ae_layers=[16,8]", "model_params.ae_blocks=1"]


def _args(root: Path, data_uri: Path | None = None) -> list[str]:
    """Run-local arguments: one fold, one epoch, tiny nets; data from ``data_uri`` (default: the feature set
    beside ``root``); the task cache on, so a step whose inputs did not change is served from it."""
    data = data_uri if data_uri is not None else root.parent / "features"
    args = ["--data-uri", str(data), "--cache", "--folds", "1", "--epochs", "1", "--root", str(root),
            "--param", 'noise_types=["gaussian"]', "--param", "noise_levels=[100]"]
    for item in TINY_NETS:
        args += ["--set", item]
    return args


@pytest.mark.slow
def test_whole_pipeline_runs_locally_then_skips_when_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # run_local edits it; restore afterwards
    monkeypatch.chdir(tmp_path)
    from mer_lib.pipeline.gate import code_fingerprint

    code_before = code_fingerprint()
    root = tmp_path / "outputs"
    from mer_lib.data.synth import generate

    first_fp = generate("tiny", 0, str(tmp_path / "features"))["fingerprint"]  # the feature set at data_uri
    # One epoch on the tiny set cannot be relied on to beat the baselines: this run checks the registration
    # path with the champion rule alone (the baseline gate is tested in test_pipeline_lib).
    assert run_local.main([*_args(root), "--param", "require_beat_baseline=false"]) == 0
    out = capsys.readouterr().out
    assert "gate: retrain: mer-emotion has no champion yet" in out
    assert "| model | selection | {a} | {v} | {l} | {a,v} | {a,l} | {v,l} | average | {a,v,l} |" in out
    assert "registered: mer-emotion v1" in out and "promoted: True" in out

    from mer_lib.registry.uri import UriRegistry

    registry = UriRegistry(str(root / "registry"))
    champ = registry.champion("mer-emotion")
    assert champ is not None and champ.number == 1 and champ.run_id  # the local run's job id
    family = champ.extra["card_context"]["model_type"]
    assert family in {"ifmmin", "nmer"} and f"champion: mer-emotion v1 ({family}" in out
    run_dir = run_local.latest_run_dir(root)
    assert len(list(run_dir.glob("for-loop-*/train-*/model/family.json"))) == 4  # one fold x four families
    decision = json.loads(next(run_dir.rglob("compare-models/comparison/decision.json")).read_text())
    assert decision["challenger"] == family and decision["register"] is True
    assert decision["rule"] == "beat the champion" and set(decision["baselines"]) == {"baseline", "baseline_dropout"}
    assert "| baseline_dropout |" in out  # the modality-dropout baseline is in the comparison
    assert "Promotion rule: beat the champion." in Path(champ.card_uri).read_text()

    # The compiled package runs too; with data, code and settings unchanged, only the gate runs.
    package = tmp_path / "mer_pipeline.yaml"
    compile_pipeline("training", package)
    # (Unless mer_lib was edited while the first run trained, in a shared checkout: the gate rightly retrains,
    # so only the fresh-data check below, which holds either way, is made.)
    if code_fingerprint() == code_before:
        assert run_local.main([*_args(root), "--package", str(package)]) == 0
        out = capsys.readouterr().out
        assert "gate: SKIPPED: data, code and settings are unchanged since champion mer-emotion v1" in out
        assert [v.number for v in registry.list_versions("mer-emotion")] == [1]
        second = run_local.latest_run_dir(root)
        assert second != run_dir and sorted(p.name for p in second.iterdir()) == ["check-retrain"]

    # New data lands under the same URI (a scheduled retrain after an upload). The gate sees the change,
    # and the data step, cached from the first run, is not served from the cache: its key holds the data
    # fingerprint, not the URI alone. Every model of the new run trained on the new data.
    shutil.rmtree(tmp_path / "features")
    new_fp = generate("tiny", 1, str(tmp_path / "features"))["fingerprint"]
    assert new_fp != first_fp and list((root / ".kfp_cache").glob("*.json"))  # the cache was on
    assert run_local.main([*_args(root), "--package", str(package)]) == 0
    out = capsys.readouterr().out
    assert "gate: retrain: the data changed since champion mer-emotion v1" in out
    third = run_local.latest_run_dir(root)
    imported = next(third.rglob("prepare-data/dataset/featureset.json"))  # ran in this run, not a cache hit
    assert json.loads(imported.read_text())["fingerprint"] == new_fp
    families = list(third.glob("for-loop-*/train-*/model/family.json"))
    assert families
    for path in families:
        summaries = json.loads(path.read_text())["summaries"].values()
        assert {s["data_fingerprint"] for s in summaries} == {new_fp}, path


@pytest.mark.slow
def test_raw_media_are_extracted_in_shards_then_trained_on(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fixtures.raw_iemocap import build_raw_iemocap

    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # run_local edits it; restore afterwards
    monkeypatch.chdir(tmp_path)
    raw = tmp_path / "IEMOCAP_full_release"
    build_raw_iemocap(raw, per_speaker=2, duration=1.0)  # 20 utterances, 10 speakers
    root = tmp_path / "outputs"
    assert run_local.main([*_args(root, raw), "--param", "extract_shards=2"]) == 0
    out = capsys.readouterr().out
    assert "gate: retrain: mer-emotion has no champion yet" in out
    run_dir = run_local.latest_run_dir(root)
    partials = sorted(run_dir.glob("for-loop-*-iteration-*/extract-features/partial"))
    assert len(partials) == 2  # one task per shard
    merged = json.loads((run_dir / "merge-features" / "dataset" / "featureset.json").read_text())
    assert not list(run_dir.rglob("prepare-data"))  # the data step is skipped for raw media
    families = list(run_dir.glob("for-loop-*/train-*/model/family.json"))
    assert families
    for path in families:
        summaries = json.loads(path.read_text())["summaries"].values()
        assert {s["data_fingerprint"] for s in summaries} == {merged["fingerprint"]}, path


def test_pipeline_arguments_from_the_command_line(tmp_path: Path) -> None:
    args = run_local.parse_args(["--folds", "2,3", "--set", "train.lr=0.001", "--param", "promotion_margin=0.02",
                                 "--param", "model_name=x", "--root", str(tmp_path)])
    params = run_local.pipeline_arguments(args)
    assert params["folds"] == [2, 3] and params["synthetic_preset"] == "demo" and params["epochs"] == 6
    # the demo's overrides, then the command line's (applied last, so they win)
    assert params["training_overrides"] == ["train.tensorboard=false", "train.batch_size=32", "train.lr=0.001",
                                            "train.threads=1", "train.lr=0.001"]
    assert params["noise_levels"] == [20, 100] and params["device"] == "auto"  # cuda is the cluster's
    assert params["extract_shards"] == 2
    assert params["promotion_margin"] == 0.02 and params["model_name"] == "x"
    assert params["registry_uri"] == str(tmp_path / "registry") and params["force_retrain"] is False
    assert params["recipe"] == "improved"  # the demo trains the pipeline's default recipe
    assert run_local.pipeline_arguments(run_local.parse_args(["--recipe", "faithful"]))["recipe"] == "faithful"
    with pytest.raises(ValueError, match="--folds"):
        run_local.pipeline_arguments(run_local.parse_args(["--folds", "a"]))
    with pytest.raises(ValueError, match="key=value"):
        run_local.pipeline_arguments(run_local.parse_args(["--param", "oops"]))
