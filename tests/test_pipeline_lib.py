"""mer_lib.pipeline: data sources and fingerprints, the retrain gate, durable checkpoints, fold assembly, promotion."""

import json
from pathlib import Path

import pytest

from mer_lib import storage
from mer_lib.config import ConfigError
from mer_lib.pipeline import data as pdata
from mer_lib.pipeline.checkpoints import CheckpointMirror, work_location
from mer_lib.pipeline.compare import compare_families
from mer_lib.pipeline.families import BASELINE_FAMILIES, CANDIDATE_FAMILIES, FAMILIES
from mer_lib.pipeline.gate import code_fingerprint, decide_retrain, recorded_fingerprint, training_fingerprint
from mer_lib.pipeline.noise import build_noise_recipe, read_evaluation_grid
from mer_lib.pipeline.promotion import RULE_CHAMPION, RULE_CHAMPION_AND_BASELINE, registration_decision
from mer_lib.pipeline.stages import FAMILY_JSON, assemble_run, family_stages

SETTINGS = {"folds": [1], "epochs": 1, "seed": 0, "training_overrides": []}


# ------------------------------------------------------------------------------------------- data

def test_source_kind_and_preset(tiny_data: Path, tmp_path: Path) -> None:
    assert pdata.source_kind("") == "synthetic"
    assert pdata.source_kind("synthetic:tiny") == "synthetic"
    assert pdata.synthetic_preset("synthetic:tiny", "demo") == "tiny"
    assert pdata.synthetic_preset("", "demo") == "demo"
    assert pdata.source_kind(str(tiny_data)) == "featureset"
    raw = tmp_path / "raw"
    (raw / "Session1").mkdir(parents=True)
    (raw / "Session1" / "x.wav").write_bytes(b"RIFF")
    assert pdata.source_kind(str(raw)) == "raw"
    with pytest.raises(FileNotFoundError, match="nothing stored"):
        pdata.source_kind(str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="media list CSV not found"):
        pdata.source_kind(str(tmp_path / "absent.csv"))


def test_source_fingerprints_track_what_they_should(tiny_data: Path, tmp_path: Path) -> None:
    syn = pdata.source_fingerprint("", preset="tiny", seed=0)
    assert syn == pdata.source_fingerprint("synthetic:tiny", preset="demo", seed=0)
    assert syn != pdata.source_fingerprint("", preset="tiny", seed=1)
    assert syn != pdata.source_fingerprint("", preset="demo", seed=0)
    meta = json.loads((tiny_data / "featureset.json").read_text())
    assert pdata.source_fingerprint(str(tiny_data), preset="x", seed=0) == meta["fingerprint"]
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.wav").write_bytes(b"1234")
    before = pdata.source_fingerprint(str(raw), preset="x", seed=0)
    assert before.startswith("raw:") and before == pdata.source_fingerprint(str(raw), preset="x", seed=0)
    (raw / "b.wav").write_bytes(b"5")
    assert pdata.source_fingerprint(str(raw), preset="x", seed=0) != before
    media_list = tmp_path / "m.csv"
    media_list.write_text("id,audio\nu1,a.wav\n")
    fp = pdata.source_fingerprint(str(media_list), preset="x", seed=0)
    media_list.write_text("id,audio\nu1,b.wav\n")
    # "manifest:", the media list's old name: recorded fingerprints must keep matching
    assert fp.startswith("manifest:") and pdata.source_fingerprint(str(media_list), preset="x", seed=0) != fp


def test_prepare_data_imports_a_feature_set_unchanged(tiny_data: Path, tmp_path: Path) -> None:
    meta = pdata.prepare_data(str(tiny_data), str(tmp_path / "ds"))
    assert meta["source_kind"] == "featureset" and meta["source"] == str(tiny_data)
    assert meta["fingerprint"] == json.loads((tiny_data / "featureset.json").read_text())["fingerprint"]
    assert storage.list_files(str(tmp_path / "ds")) == storage.list_files(str(tiny_data))
    with pytest.raises(FileExistsError):
        pdata.prepare_data(str(tiny_data), str(tmp_path / "ds"))


# ------------------------------------------------------------------------------------------- gate

def test_code_fingerprint_changes_with_code_and_recipes(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "configs").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "configs" / "m.yaml").write_text("lr: 1\n")
    (pkg / "notes.txt").write_text("ignored")
    fp = code_fingerprint(pkg)
    (pkg / "notes.txt").write_text("still ignored")
    assert code_fingerprint(pkg) == fp
    (pkg / "configs" / "m.yaml").write_text("lr: 2\n")
    assert code_fingerprint(pkg) != fp
    assert len(code_fingerprint()) == 64


class _Champion:
    def __init__(self, config: dict, number: int = 3, score: float = 0.6) -> None:
        self.config, self.number, self.run_id, self.data_fingerprint = config, number, "run-7", "d"
        self.metrics = {"average_ua": score}


class _Registry:
    champ: _Champion | None = None

    def __init__(self, root: str) -> None:
        self.root = root

    def champion(self, name: str) -> _Champion | None:
        return self.champ


def test_decide_retrain_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    import mer_lib.pipeline.gate as gate

    monkeypatch.setattr(gate, "open_registry", _Registry)
    kw = {"source_fp": "S", "code_fp": "C", "settings": SETTINGS}
    fp = training_fingerprint("S", "C", SETTINGS)
    assert decide_retrain("", "m", **kw).retrain  # no registry: always train
    _Registry.champ = None
    d = decide_retrain("reg", "m", **kw)
    assert d.retrain and "no champion" in d.reason and d.training_fingerprint == fp
    _Registry.champ = _Champion({"pipeline": {"training_fingerprint": fp, "source_fingerprint": "S"}})
    d = decide_retrain("reg", "m", **kw)
    assert not d.retrain and "unchanged since champion m v3" in d.reason and d.champion_version == 3
    assert decide_retrain("reg", "m", **kw, force=True).retrain
    d = decide_retrain("reg", "m", source_fp="S2", code_fp="C", settings=SETTINGS)
    assert d.retrain and "the data changed" in d.reason
    d = decide_retrain("reg", "m", source_fp="S", code_fp="C", settings={**SETTINGS, "epochs": 2})
    assert d.retrain and "code, config or settings changed" in d.reason
    _Registry.champ = _Champion({"model": "nmer"})
    assert "records no training fingerprint" in decide_retrain("reg", "m", **kw).reason
    assert recorded_fingerprint({"pipeline": "not a dict"}) == ""


def test_registration_decision_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    import mer_lib.pipeline.promotion as promotion

    monkeypatch.setattr(promotion, "open_registry", _Registry)
    comparison = {"primary_metric": "average_ua", "ranking": ["baseline", "nmer", "ifmmin"],
                  "models": {"baseline": {"primary": 0.9}, "nmer": {"primary": 0.65}, "ifmmin": {"primary": 0.62}}}
    _Registry.champ = _Champion({})
    d = registration_decision("reg", "m", comparison, candidates=["ifmmin", "nmer"], margin=0.01)
    assert (d.register, d.challenger, d.challenger_score, d.champion_score) == (True, "nmer", 0.65, 0.6)
    assert d.rule == RULE_CHAMPION and d.reference_score is None  # no baseline named: the champion rule alone
    d = registration_decision("reg", "m", comparison, candidates=["ifmmin", "nmer"], margin=0.06)
    assert not d.register and "does not beat" in d.reason
    d = registration_decision("", "m", comparison, candidates=["ifmmin"], margin=0.5)
    assert d.register and d.challenger == "ifmmin" and d.champion_score is None
    with pytest.raises(ValueError, match="none of the candidates"):
        registration_decision("", "m", comparison, candidates=["mmin"], margin=0.0)
    with pytest.raises(ValueError, match="cannot be a candidate"):
        registration_decision("", "m", comparison, candidates=["nmer"], margin=0.0, baselines=["nmer"])


def test_gate_never_promotes_below_the_best_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    import mer_lib.pipeline.promotion as promotion

    monkeypatch.setattr(promotion, "open_registry", _Registry)
    _Registry.champ = _Champion({})  # champion at 0.6: both challengers beat it
    models = {"baseline": {"primary": 0.55}, "baseline_dropout": {"primary": 0.70},
              "nmer": {"primary": 0.69}, "ifmmin": {"primary": 0.62}}
    comparison = {"primary_metric": "average_ua", "ranking": ["baseline_dropout", "nmer", "ifmmin", "baseline"],
                  "models": models}
    kw = {"candidates": ["ifmmin", "nmer"], "baselines": ["baseline", "baseline_dropout"]}
    # nmer beats the champion and the zero-filled baseline, but not the stronger modality-dropout one
    d = registration_decision("reg", "m", comparison, margin=0.0, **kw)
    assert not d.register and d.rule == RULE_CHAMPION_AND_BASELINE
    assert (d.reference, d.reference_score) == ("baseline_dropout", 0.70)
    assert d.baselines == {"baseline": 0.55, "baseline_dropout": 0.70}
    assert d.reason.startswith("no challenger beats the best baseline: nmer average_ua=0.6900")
    assert "nothing is promoted" in d.reason
    # the override: the champion rule alone decides, and the reason still names the stronger baseline
    d = registration_decision("reg", "m", comparison, margin=0.0, require_beat_baseline=False, **kw)
    assert d.register and d.rule == RULE_CHAMPION and "not above the best baseline baseline_dropout" in d.reason
    # the same margin applies to the baseline: 0.72 beats 0.70 by 0.02, not by more than 0.05
    ahead = {**comparison, "ranking": ["nmer", "baseline_dropout", "ifmmin", "baseline"],
             "models": {**models, "nmer": {"primary": 0.72}}}
    assert registration_decision("", "m", ahead, margin=0.0, **kw).register
    assert not registration_decision("", "m", ahead, margin=0.05, **kw).register
    d = registration_decision("", "m", ahead, margin=0.01, **kw)
    assert d.register and "beats the best baseline baseline_dropout (0.7000) by 0.0200" in d.reason
    # beating the baseline is not enough: the champion rule still applies
    _Registry.champ = _Champion({}, score=0.8)
    assert not registration_decision("reg", "m", ahead, margin=0.0, **kw).register


# ------------------------------------------------------------------------------------------ noise

def test_family_registry_and_compare_families_checks_its_inputs(tmp_path: Path) -> None:
    assert set(BASELINE_FAMILIES) <= set(FAMILIES) and not set(BASELINE_FAMILIES) & set(CANDIDATE_FAMILIES)
    assert set(BASELINE_FAMILIES) | set(CANDIDATE_FAMILIES) == set(FAMILIES)
    partial = {f: str(tmp_path / f) for f in CANDIDATE_FAMILIES}
    with pytest.raises(ValueError, match="registered families"):
        compare_families(partial, str(tmp_path / "cmp"), registry_uri="", model_name="m", margin=0.0,
                         require_beat_baseline=True)


def test_noise_recipe_checks_grid_and_training(tiny_data: Path, tmp_path: Path) -> None:
    doc = build_noise_recipe(str(tiny_data), types=["gaussian", "impulse"], steps=[20, 100], seed=7)
    assert doc["evaluation"]["types"] == ["gaussian", "impulse"] and doc["evaluation"]["steps"] == [20, 100]
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(doc))
    assert read_evaluation_grid(str(settings))["steps"] == [20, 100]
    legacy = {**doc, "evaluation": {**doc["evaluation"], "levels": doc["evaluation"]["steps"]}}
    del legacy["evaluation"]["steps"]  # written before the grid's T was called steps
    settings.write_text(json.dumps(legacy))
    assert read_evaluation_grid(str(settings)) == doc["evaluation"]
    assert doc["evaluation"]["noise_set"] == ["seed=7"] and doc["evaluation"]["noise"]["seed"] == 7
    assert doc["modalities"] == ["a", "v", "l"] and doc["training"]["nmer"]["steps"] == 100
    assert doc["training_recipe"] == "faithful" and doc["training"]["nmer"]["noise_pads"] is False
    published = build_noise_recipe(str(tiny_data), types=["gaussian"], steps=[20], seed=7, recipe="published")
    assert published["training"]["nmer"]["noise_pads"] is True  # the recipe's noise settings are recorded
    doc = build_noise_recipe(str(tiny_data), types=["gaussian"], steps=[5], seed=0,
                             training_overrides=["noise.type=impulse"])
    assert doc["training"]["nmer"]["type"] == "impulse"
    with pytest.raises(ConfigError, match="T=0"):
        build_noise_recipe(str(tiny_data), types=["gaussian"], steps=[0], seed=0)
    with pytest.raises(ConfigError, match="T=101"):
        build_noise_recipe(str(tiny_data), types=["gaussian"], steps=[101], seed=0)
    with pytest.raises(ConfigError, match="pink"):
        build_noise_recipe(str(tiny_data), types=["pink"], steps=[20], seed=0)
    with pytest.raises(ConfigError, match="at least one noise type"):
        build_noise_recipe(str(tiny_data), types=[], steps=[20], seed=0)


# ------------------------------------------------------------------------------------ checkpoints

def test_work_location_is_deterministic_per_run_model_fold() -> None:
    assert work_location("", "r", "nmer", 1) == ""
    assert work_location("gs://b/ckpt", "run 1/x", "nmer", 2) == "gs://b/ckpt/run_1_x/nmer/fold_2"
    assert work_location("/mnt/c", "abc", "ifmmin", 3) == "/mnt/c/abc/ifmmin/fold_3"
    with pytest.raises(ValueError, match="run id is empty"):
        work_location("/mnt/c", " ", "nmer", 1)


def test_checkpoint_mirror_restores_and_syncs(gcs_bucket: str, tmp_path: Path) -> None:
    remote = f"{gcs_bucket}/ckpt/run/nmer/fold_1"
    first = tmp_path / "attempt1"
    with CheckpointMirror(first, remote, interval_s=3600) as mirror:
        (first / "nmer" / "fold_1").mkdir(parents=True)
        (first / "nmer" / "fold_1" / "last.pt").write_bytes(b"epoch-1")
        (first / "nmer" / "fold_1" / ".last.pt.tmp").write_bytes(b"partial")
        assert mirror.sync() == 1
        assert mirror.sync() == 0  # unchanged files are not uploaded again
        (first / "nmer" / "fold_1" / "last.pt").write_bytes(b"epoch-2!")
    # exit ran a final sync: the retry's fresh pod finds epoch 2
    assert storage.read_bytes(f"{remote}/nmer/fold_1/last.pt") == b"epoch-2!"
    assert not storage.exists(f"{remote}/nmer/fold_1/.last.pt.tmp")
    second = tmp_path / "attempt2"
    restored = CheckpointMirror(second, remote).restore()
    assert restored == 1 and (second / "nmer" / "fold_1" / "last.pt").read_bytes() == b"epoch-2!"
    with pytest.raises(ValueError, match="gs://"):
        CheckpointMirror(second, str(tmp_path / "local"))


def test_checkpoint_mirror_uploads_commit_markers_last(gcs_bucket: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    real = storage.write_bytes
    monkeypatch.setattr(storage, "write_bytes", lambda uri, data, **kw: (order.append(uri.rsplit("/", 1)[1]),
                                                                         real(uri, data, **kw)))
    local = tmp_path / "w"
    for name in ("test_metrics.json", "run.json", "best.pt", "predictions_tst.csv"):
        (local / "f").mkdir(parents=True, exist_ok=True)
        (local / "f" / name).write_text(name)
    CheckpointMirror(local, f"{gcs_bucket}/c").sync()
    assert order[-2:] == ["run.json", "test_metrics.json"] and set(order[:2]) == {"best.pt", "predictions_tst.csv"}


# ------------------------------------------------------------------------------------------ stages

def _fake_fold_output(root: Path, fold: int, *, config_hash: str = "h1", family: str = "ifmmin") -> Path:
    stages = family_stages(family)
    out = root / f"{family}-{fold}-{config_hash}"
    for stage in stages:
        d = out / stage / f"fold_{fold}"
        d.mkdir(parents=True)
        (d / "best.pt").write_bytes(f"{stage}{fold}".encode())
        run = {"model": stage, "config_hash": config_hash if stage == stages[-1] else "t", "data_fingerprint": "D",
               "folds": [fold], "fold_results": {str(fold): {"best_score": 0.5 + fold / 10}}, "select_on": "val"}
        (out / stage / "run.json").write_text(json.dumps(run))
    (out / FAMILY_JSON).write_text(json.dumps({"family": family, "stages": list(stages), "final": stages[-1]}))
    return out


def test_assemble_run_merges_folds_and_keeps_teachers(tmp_path: Path) -> None:
    parts = [str(_fake_fold_output(tmp_path, k)) for k in (2, 1)]
    run = assemble_run(parts, str(tmp_path / "run"))
    assert run["folds"] == [1, 2] and list(run["fold_results"]) == ["1", "2"]
    assert run["model"] == "ifmmin" and run["teacher"] == "stages/utt_shared" and run["family"] == "ifmmin"
    assert (tmp_path / "run" / "fold_1" / "best.pt").read_bytes() == b"ifmmin1"
    assert (tmp_path / "run" / "stages" / "utt_shared" / "fold_2" / "best.pt").read_bytes() == b"utt_shared2"
    assert json.loads((tmp_path / "run" / "run.json").read_text()) == run


def test_assemble_run_refuses_mixed_or_duplicate_folds(tmp_path: Path) -> None:
    a = str(_fake_fold_output(tmp_path, 1))
    with pytest.raises(ValueError, match="fold 1 was already given"):
        assemble_run([a, a], str(tmp_path / "dup"))
    b = str(_fake_fold_output(tmp_path, 2, config_hash="other"))
    with pytest.raises(ValueError, match="config_hash"):
        assemble_run([a, b], str(tmp_path / "mixed"))
    with pytest.raises(ValueError, match="not the output of a per-fold training task"):
        assemble_run([str(tmp_path)], str(tmp_path / "bad"))
    with pytest.raises(ValueError, match="no per-fold"):
        assemble_run([], str(tmp_path / "none"))
    assert not (tmp_path / "dup").exists() and not (tmp_path / "mixed").exists()  # staged: nothing half-written
    with pytest.raises(ValueError, match="unknown model family"):
        family_stages("mmin")


def test_shard_specs_and_sources() -> None:
    from mer_lib.pipeline.extract import MAX_SHARDS, shard_specs, source_of

    assert shard_specs(3) == ["0/3", "1/3", "2/3"] and shard_specs(1) == ["0/1"]
    for bad in (0, -1, MAX_SHARDS + 1, True, 2.0, "4"):
        with pytest.raises(ValueError, match="extract_shards must be an integer in 1..256"):
            shard_specs(bad)  # type: ignore[arg-type]
    assert source_of("gs://b/media.csv") == "media_list" and source_of("gs://b/IEMOCAP_full_release") == "iemocap"


def test_media_list_source_keeps_its_old_name_manifest() -> None:
    from mer_lib.cli import build_parser

    base = ["extract", "--input", "data.csv", "--out", "fs"]
    assert build_parser().parse_args([*base, "--source", "media_list"]).source == "media_list"
    assert build_parser().parse_args([*base, "--source", "manifest"]).source == "media_list"  # the old name


def test_verify_source_catches_data_changed_under_the_same_uri(tiny_data: Path, tmp_path: Path) -> None:
    import shutil

    from mer_lib.pipeline.gate import SKIP, route

    copy = tmp_path / "features"
    shutil.copytree(tiny_data, copy)
    before = pdata.source_fingerprint(str(copy), preset="tiny", seed=0)
    assert pdata.verify_source(str(copy), before) == before
    assert pdata.verify_source(str(copy), "") == ""  # no fingerprint given: nothing checked
    meta = json.loads((copy / "featureset.json").read_text())
    (copy / "featureset.json").write_text(json.dumps({**meta, "fingerprint": "new" + "0" * 61}))
    with pytest.raises(pdata.DataChangedError, match=f"gate {before[:16]}..., now new"):
        pdata.verify_source(str(copy), before)
    assert route(False, "raw") == SKIP and route(True, "raw") == "raw"


def test_code_fingerprint_covers_the_dependency_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mer_lib.pipeline.gate import LOCKS_ENV, lock_files

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    lock = tmp_path / "image" / "constraints.txt"
    lock.parent.mkdir()
    lock.write_text("numpy==2.3.0\n")
    fp = code_fingerprint(pkg, locks=[lock])
    assert code_fingerprint(pkg, locks=[]) != fp
    lock.write_text("numpy==2.3.1\n")  # a rebuild with another library version is a change
    assert code_fingerprint(pkg, locks=[lock]) != fp
    # In an image the locks are named by the environment; a missing one is a broken image.
    monkeypatch.setenv(LOCKS_ENV, str(lock))
    assert lock_files() == [lock]
    monkeypatch.setenv(LOCKS_ENV, f"{lock}:{tmp_path / 'gone.txt'}")
    with pytest.raises(FileNotFoundError, match="gone.txt"):
        lock_files()
    monkeypatch.delenv(LOCKS_ENV)
    # In the checkout: the committed lock files of both images.
    assert sorted(p.name for p in lock_files()) == ["constraints-cuda.txt", "constraints.txt"]
