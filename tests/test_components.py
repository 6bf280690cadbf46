"""Each component body (``.python_func``) on the tiny synthetic corpus, chained as the DAG chains them."""

import json
import sys
from pathlib import Path

import pytest
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.compare import compare_models  # noqa: E402
from components.data import prepare_data  # noqa: E402
from components.evaluate import evaluate_model  # noqa: E402
from components.gate import check_retrain  # noqa: E402
from components.noise import noise_recipe  # noqa: E402
from components.register import register_model  # noqa: E402
from components.train import train_family  # noqa: E402
from mer_lib.pipeline.data import DataChangedError, source_fingerprint  # noqa: E402
from mer_lib.pipeline.families import evaluation_input  # noqa: E402

#: Small networks so the whole chain trains in seconds (named config options, not the recipe).
TINY_NETS = ["model_params.embd_size=16", "model_params.cls_layers=[16,16]", "model_params.vae_layers=1",
             "model_params.ae_layers=[16,8]", "model_params.ae_blocks=1", "train.tensorboard=false"]
FAMILIES = ("ifmmin", "nmer", "baseline", "baseline_dropout")
FINAL = {"ifmmin": "ifmmin", "nmer": "nmer", "baseline": "utt_fusion", "baseline_dropout": "utt_fusion_dropout"}
RECIPES = {"ifmmin": "faithful", "nmer": "improved", "baseline": "improved", "baseline_dropout": "faithful"}
STAGE_RECIPES = {"ifmmin": {"utt_shared": "faithful", "ifmmin": "faithful"},
                 "nmer": {"nmer_pretrain": "faithful", "nmer": "improved"}, "baseline": {"utt_fusion": "faithful"},
                 "baseline_dropout": {"utt_fusion_dropout": "faithful"}}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("components")


def _art(cls: type, path: Path) -> Artifact:
    return cls(name=path.name, uri=str(path))


def _gate(work: Path, name: str, registry: str) -> tuple[bool, Artifact]:
    decision = _art(Artifact, work / name)
    out = check_retrain.python_func(data_uri="", synthetic_preset="tiny", data_seed=0, folds=[1], epochs=1,
                                    seed=0, training_overrides=TINY_NETS, recipe="faithful", registry_uri=registry,
                                    model_name="mer-test", force_retrain=False, extract_shards=4, decision=decision)
    assert out.Output in ("skip", "synthetic") and out.shards == []  # no extraction for a synthetic corpus
    assert out.source_fingerprint == decision.metadata["source_fingerprint"]
    return out.Output != "skip", decision


@pytest.fixture(scope="module")
def dataset(work: Path) -> Dataset:
    ds = _art(Dataset, work / "dataset")
    uri = prepare_data.python_func(data_uri="", synthetic_preset="tiny", data_seed=0,
                                   source_fingerprint=source_fingerprint("", preset="tiny", seed=0), dataset=ds)
    assert uri == ds.uri  # what the pipeline's importer reads
    return ds


@pytest.fixture(scope="module")
def noise(work: Path, dataset: Dataset) -> Artifact:
    recipe = _art(Artifact, work / "noise")
    noise_recipe.python_func(dataset=dataset, noise_types=["gaussian"], noise_levels=[100], noise_seed=3,
                             training_overrides=TINY_NETS, training_recipe="published", settings=recipe)
    return recipe


@pytest.fixture(scope="module")
def trained(work: Path, dataset: Dataset) -> dict[str, Model]:
    out = {}
    for family in FAMILIES:
        out[family] = _art(Model, work / f"train-{family}")
        train_family.python_func(family=family, dataset=dataset, fold=1, epochs=1, seed=0, device="cpu",
                                 training_overrides=TINY_NETS, recipe=RECIPES[family], checkpoint_root="",
                                 run_id="run-1", model=out[family])
    return out


@pytest.fixture(scope="module")
def evaluated(work: Path, dataset: Dataset, noise: Artifact, trained: dict[str, Model]) -> dict[str, dict]:
    out = {}
    for family, model in trained.items():
        arts = {"run_dir": _art(Model, work / f"ev-{family}" / "run"),
                "evaluation": _art(Artifact, work / f"ev-{family}" / "evaluation"),
                "metrics": _art(Metrics, work / f"ev-{family}" / "metrics"),
                "confusion": _art(ClassificationMetrics, work / f"ev-{family}" / "confusion"),
                "report_md": _art(Markdown, work / f"ev-{family}" / "report.md"),
                "report_html": _art(HTML, work / f"ev-{family}" / "report.html")}
        (work / f"ev-{family}").mkdir()
        primary = evaluate_model.python_func(dataset=dataset, fold_models=[model], noise=noise, device="cpu", **arts)
        out[family] = {**arts, "primary": primary}
    return out


@pytest.fixture(scope="module")
def compared(work: Path, evaluated: dict[str, dict]) -> tuple[str, dict[str, Artifact]]:
    arts = {"comparison": _art(Artifact, work / "comparison"), "report_md": _art(Markdown, work / "compare.md"),
            "report_html": _art(HTML, work / "compare.html")}
    family = compare_models.python_func(**{evaluation_input(f): ev["evaluation"] for f, ev in evaluated.items()},
                                        registry_uri=str(work / "registry"), model_name="mer-test",
                                        promotion_margin=0.0, require_beat_baseline=False, **arts)
    return family, arts


def test_synthetic_data_matches_the_shared_tiny_corpus(dataset: Dataset, tiny_data: Path) -> None:
    # Same preset and seed as the conftest fixture: byte-identical files, same fingerprint.
    assert dataset.metadata["fingerprint"] == json.loads((tiny_data / "featureset.json").read_text())["fingerprint"]
    assert dataset.metadata["source_kind"] == "synthetic" and dataset.metadata["source"] == "synthetic:tiny"
    assert dataset.metadata["num_utterances"] == 80
    assert dataset.metadata["label_names"] == ["happy", "angry", "sad", "neutral"]
    assert (Path(dataset.path) / "target" / "1" / "trn_label.npy").exists()


def test_data_step_refuses_data_other_than_the_gate_saw(work: Path, tiny_data: Path) -> None:
    gate_fp = source_fingerprint(str(tiny_data), preset="tiny", seed=0)
    with pytest.raises(DataChangedError, match="changed after the gate fingerprinted it"):
        prepare_data.python_func(data_uri=str(tiny_data), synthetic_preset="tiny", data_seed=0,
                                 source_fingerprint="0" * 64, dataset=_art(Dataset, work / "stale"))
    ok = _art(Dataset, work / "imported")
    prepare_data.python_func(data_uri=str(tiny_data), synthetic_preset="tiny", data_seed=0,
                             source_fingerprint=gate_fp, dataset=ok)
    assert ok.metadata["source_fingerprint"] == gate_fp and ok.metadata["source_kind"] == "featureset"


def test_gate_trains_without_a_champion(work: Path) -> None:
    retrain, decision = _gate(work, "gate-first", str(work / "registry"))
    assert retrain is True and "no champion yet" in decision.metadata["reason"]
    doc = json.loads(Path(decision.path).read_text())
    assert doc["settings"] == {"folds": [1], "epochs": 1, "seed": 0, "training_overrides": TINY_NETS,
                               "recipe": "faithful"}
    assert len(doc["training_fingerprint"]) == 64


def test_noise_recipe_is_written_for_evaluation(noise: Artifact, dataset: Dataset) -> None:
    doc = json.loads(Path(noise.path).read_text())
    assert doc["evaluation"]["types"] == ["gaussian"] and doc["evaluation"]["steps"] == [100]
    assert doc["evaluation"]["noise_set"] == ["seed=3"]
    assert noise.metadata["data_fingerprint"] == dataset.metadata["fingerprint"]
    # the run's recipe reaches the recorded training noise (published NMER also corrupts the pads)
    assert doc["training_recipe"] == "published" and doc["training"]["nmer"]["noise_pads"] is True


def test_noise_recipe_rejects_bad_levels(work: Path, dataset: Dataset) -> None:
    from mer_lib.config import ConfigError

    with pytest.raises(ConfigError, match="T=500"):
        noise_recipe.python_func(dataset=dataset, noise_types=["gaussian"], noise_levels=[500], noise_seed=0,
                                 training_overrides=[], training_recipe="faithful",
                                 settings=_art(Artifact, work / "bad-noise"))


@pytest.mark.parametrize("family", FAMILIES)
def test_training_outputs_every_stage_without_resume_state(family: str, trained: dict[str, Model],
                                                           dataset: Dataset) -> None:
    model = trained[family]
    root = Path(model.path)
    doc = json.loads((root / "family.json").read_text())
    assert doc["final"] == FINAL[family] and doc["fold"] == 1 and doc["recipe"] == RECIPES[family]
    # stages without the requested recipe (NMER stage 1, the baseline) train faithful; each records its own
    used = {stage: summary["recipe"] for stage, summary in doc["summaries"].items()}
    assert used == STAGE_RECIPES[family]
    for stage in doc["stages"]:
        assert (root / stage / "fold_1" / "best.pt").exists()
        assert (root / stage / "fold_1" / "test_metrics.json").exists()
    assert not list(root.rglob("last.pt"))  # optimiser state stays in the work location, not the artifact
    assert model.metadata["model"] == FINAL[family] and model.metadata["fold"] == 1
    assert model.metadata["data_fingerprint"] == dataset.metadata["fingerprint"]
    assert len(model.metadata["config_hash"]) == 16


def test_training_resumes_from_a_durable_checkpoint_root(work: Path, dataset: Dataset) -> None:
    kwargs = {"family": "baseline", "dataset": dataset, "fold": 1, "epochs": 1, "seed": 0, "device": "cpu",
              "training_overrides": TINY_NETS, "recipe": "faithful", "checkpoint_root": str(work / "ckpt"),
              "run_id": "run-9"}
    first = _art(Model, work / "resume-1")
    train_family.python_func(model=first, **kwargs)
    durable = work / "ckpt" / "run-9" / "baseline" / "fold_1" / "utt_fusion" / "fold_1"
    assert (durable / "last.pt").exists()
    # A retried pod gets a fresh output directory but the same work location: the finished fold is
    # found there and not trained again (same checkpoint bytes).
    best_mtime = (durable / "best.pt").stat().st_mtime_ns
    retry = _art(Model, work / "resume-2")
    train_family.python_func(model=retry, **kwargs)
    assert (durable / "best.pt").stat().st_mtime_ns == best_mtime
    assert (Path(retry.path) / "utt_fusion" / "fold_1" / "best.pt").read_bytes() == \
        (Path(first.path) / "utt_fusion" / "fold_1" / "best.pt").read_bytes()


def test_gpu_step_without_a_gpu_fails_at_once_naming_node_and_image(work: Path, dataset: Dataset,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from mer_lib.pipeline.device import NoGpuError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a machine that has a GPU
    monkeypatch.setenv("NODE_NAME", "gke-mer-l4-pool-7f3a")
    monkeypatch.setenv("MER_IMAGE", "europe-docker.pkg.dev/p/mer/mer-cuda@sha256:abc")
    out = _art(Model, work / "no-gpu")
    with pytest.raises(NoGpuError) as exc:
        train_family.python_func(family="nmer", dataset=dataset, fold=1, epochs=1, seed=0, device="cuda",
                                 training_overrides=TINY_NETS, recipe="faithful", checkpoint_root="", run_id="r",
                                 model=out)
    message = str(exc.value)
    assert "no GPU is visible on node gke-mer-l4-pool-7f3a" in message
    assert "in image europe-docker.pkg.dev/p/mer/mer-cuda@sha256:abc" in message
    assert f"torch {torch.__version__}" in message
    assert not Path(out.path).exists()  # failed before any training


def test_evaluation_logs_metrics_confusion_and_reports(evaluated: dict[str, dict]) -> None:
    for family, ev in evaluated.items():
        doc = json.loads((Path(ev["evaluation"].path) / "metrics.json").read_text())
        assert ev["primary"] == pytest.approx(doc["primary"]) and doc["primary_metric"] == "average_ua"
        assert ev["metrics"].metadata["average_ua"] == pytest.approx(doc["primary"])
        assert "noise_gaussian_T100_average_ua" in ev["metrics"].metadata
        assert not any(k.endswith("_std") for k in ev["metrics"].metadata)
        cm = ev["confusion"].metadata["confusionMatrix"]
        assert [a["displayName"] for a in cm["annotationSpecs"]] == ["happy", "angry", "sad", "neutral"]
        # pooled six missing conditions of fold 1: every test utterance counted six times
        n_test = sum(sum(row["row"]) for row in cm["rows"])
        assert n_test % 6 == 0 and n_test > 0
        assert Path(ev["report_md"].path).read_text().startswith("#")
        assert "<html" in Path(ev["report_html"].path).read_text().lower()
        assert ev["run_dir"].metadata["folds"] == [1]
        assert (Path(ev["run_dir"].path) / "fold_1" / "best.pt").exists(), family


def test_compare_picks_the_best_robust_model(compared: tuple[str, dict[str, Artifact]],
                                             evaluated: dict[str, dict]) -> None:
    family, arts = compared
    best = max(("ifmmin", "nmer"), key=lambda f: evaluated[f]["primary"])
    assert family == best  # no champion yet: the better of IF-MMIN and NMER is registered
    decision = json.loads((Path(arts["comparison"].path) / "decision.json").read_text())
    assert decision["register"] is True and decision["challenger_score"] == pytest.approx(evaluated[best]["primary"])
    # both baselines are reported next to the decision (never registered; gated on unless switched off, as here)
    assert decision["rule"] == "beat the champion"
    scores = {b: evaluated[b]["primary"] for b in ("baseline", "baseline_dropout")}
    assert decision["baselines"] == pytest.approx(scores)
    assert decision["reference"] == max(decision["baselines"], key=decision["baselines"].get)
    assert ("not above the best baseline" in decision["reason"]) == \
        (decision["challenger_score"] <= decision["reference_score"])
    assert set(arts["comparison"].metadata["ranking"]) == {"ifmmin", "nmer", "baseline", "baseline_dropout"}
    assert "| ifmmin |" in Path(arts["report_md"].path).read_text()


def test_register_then_the_gate_skips_an_unchanged_rerun(work: Path, dataset: Dataset,
                                                         compared: tuple[str, dict[str, Artifact]],
                                                         evaluated: dict[str, dict]) -> None:
    family, arts = compared
    registry = str(work / "registry")
    _, decision = _gate(work, "gate-before-register", registry)
    reg = _art(Artifact, work / "registration")
    version = register_model.python_func(model=evaluated[family]["run_dir"], evaluation=evaluated[family]["evaluation"],
                                         dataset=dataset, gate_decision=decision, comparison=arts["comparison"],
                                         family=family, registry_uri=registry,
                                         model_name="mer-test", promotion_margin=0.0, run_id="run-1", registration=reg)
    assert version == 1
    result = json.loads((Path(reg.path) / "registration.json").read_text())
    assert result["promoted"] is True and result["run_id"] == "run-1"

    from mer_lib.registry.uri import UriRegistry

    champ = UriRegistry(registry).champion("mer-test")
    assert champ.number == 1 and champ.run_id == "run-1"
    assert champ.config["pipeline"]["training_fingerprint"] == decision.metadata["training_fingerprint"]
    retrain, again = _gate(work, "gate-after-register", registry)
    assert retrain is False and "unchanged since champion mer-test v1" in again.metadata["reason"]
