"""The model registry, locally and on fake-gcs-server: versions, races, promotion, cards, CLI."""

from __future__ import annotations

import json
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from mer_lib import storage
from mer_lib.cli import main as mer_main
from mer_lib.registry import CardContext, KubeflowModelRegistry, RegistryError, UriRegistry, render_card
from mer_lib.registry.pointer import PointerConflict, read_pointer, swap_pointer

FP = "f" * 64


@pytest.fixture(params=["local", "gcs"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty registry root: a local directory or a gs:// prefix on the fake server."""
    if request.param == "local":
        return str(tmp_path / "registry")
    return storage.join(request.getfixturevalue("gcs_bucket"), "registry")


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A small trained-model directory (checkpoint bytes, a nested file, a resolved config)."""
    d = tmp_path / "run"
    (d / "fold_1").mkdir(parents=True)
    (d / "fold_1" / "best.pt").write_bytes(b"\x00weights\x01")
    (d / "fold_1" / "config.yaml").write_text("model: ifmmin\ntrain:\n  lr: 0.0002\n")
    (d / "run.json").write_text(json.dumps({"model": "ifmmin", "data": str(tmp_path / "features"),
                                            "data_fingerprint": FP, "select_on": "val"}))
    return d


def _register(reg: UriRegistry, model_dir: Path, ua: float, run_id: str = "run-x") -> int:
    metrics = {"average_ua": ua, "average_ua_std": 0.01, "a_ua": ua - 0.1, "avl_ua": ua + 0.05}
    return reg.register("ifmmin", model_dir, metrics=metrics, data_fingerprint=FP,
                        config={"model": "ifmmin", "train": {"lr": 2e-4}}, run_id=run_id).number


def test_register_copies_model_and_describes_version(root: str, model_dir: Path) -> None:
    reg = UriRegistry(root)
    ctx = CardContext(model_type="ifmmin", data_uri="gs://data/features",
                      featureset={"licences": {"comparE": "audEERING research licence (non-commercial)"},
                                  "label_names": ["happy", "angry", "sad", "neutral"]})
    v = reg.register("ifmmin", model_dir, metrics={"average_ua": 0.7123, "a_ua": 0.55, "a_ua_std": 0.02},
                     data_fingerprint=FP, config={"model": "ifmmin"}, run_id="kfp-run-42", card_context=ctx)
    assert v.number == 1
    assert v.uri == storage.join(root, "ifmmin", "versions", "1")
    assert v.files == ("fold_1/best.pt", "fold_1/config.yaml", "run.json")
    assert storage.read_bytes(storage.join(v.model_uri, "fold_1", "best.pt")) == b"\x00weights\x01"
    meta = json.loads(storage.read_text(storage.join(v.uri, "metadata.json")))
    assert meta["run_id"] == "kfp-run-42" and meta["data_fingerprint"] == FP
    assert meta["metrics"]["average_ua"] == 0.7123
    assert len(meta["files"]["fold_1/best.pt"]) == 64  # sha256 of each model file
    card = storage.read_text(v.card_uri)
    assert card.startswith("---\nmodel_name: ifmmin\nversion: 1\n")
    assert "comparE: audEERING research licence (non-commercial)" in card
    assert "| a | 0.5500 ± 0.0200 |" in card
    assert "Primary metric `average_ua`: **0.7123**" in card
    assert "kfp-run-42" in card and "## Intended use" in card and "## Limits" in card

    again = reg.get("ifmmin", 1)
    assert again == v
    assert reg.latest("ifmmin") == v
    assert reg.get("ifmmin", 2) is None
    assert reg.champion("ifmmin") is None


def test_versions_are_never_overwritten(root: str, model_dir: Path) -> None:
    reg = UriRegistry(root)
    assert _register(reg, model_dir, 0.7) == 1
    v1 = reg.get("ifmmin", 1)
    with pytest.raises(FileExistsError):
        storage.write_text(storage.join(root, "ifmmin", "claims", "1.json"), "{}")
    with pytest.raises(FileExistsError):
        storage.write_text(storage.join(v1.uri, "metadata.json"), "{}")
    assert _register(reg, model_dir, 0.8) == 2
    assert reg.get("ifmmin", 1) == v1  # unchanged by the second registration
    assert [v.number for v in reg.list_versions("ifmmin")] == [1, 2]


def test_crashed_registration_is_skipped(root: str, model_dir: Path) -> None:
    reg = UriRegistry(root)
    # A claim without metadata.json: a registration that died half-way.
    storage.write_text(storage.join(root, "ifmmin", "claims", "1.json"), "{}")
    assert _register(reg, model_dir, 0.7) == 2
    assert [v.number for v in reg.list_versions("ifmmin")] == [2]
    assert reg.get("ifmmin", 1) is None


def test_concurrent_registrations_get_distinct_versions(root: str, model_dir: Path) -> None:
    reg = UriRegistry(root)
    numbers: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            numbers.append(_register(reg, model_dir, 0.6 + i / 100, run_id=f"run-{i}"))
        except BaseException as exc:  # surfaced below; a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(numbers) == [1, 2, 3, 4]
    runs = {v.run_id for v in reg.list_versions("ifmmin")}
    assert runs == {"run-0", "run-1", "run-2", "run-3"}


def test_champion_challenger(root: str, model_dir: Path) -> None:
    reg = UriRegistry(root)
    v1, v2, v3, v4 = (_register(reg, model_dir, ua) for ua in (0.70, 0.69, 0.70, 0.73))
    promoted, reason = reg.promote_if_better("ifmmin", v1)
    assert promoted and "no champion yet" in reason
    promoted, reason = reg.promote_if_better("ifmmin", v2)
    assert not promoted and "does not beat champion v1" in reason
    promoted, _ = reg.promote_if_better("ifmmin", v3)
    assert not promoted  # a tie keeps the champion
    promoted, _ = reg.promote_if_better("ifmmin", v4, margin=0.05)
    assert not promoted  # +0.03 is within the margin
    assert reg.champion("ifmmin").number == v1
    promoted, reason = reg.promote_if_better("ifmmin", v4, margin=0.02)
    assert promoted and "beats champion v1 (0.7000) by 0.0300" in reason
    assert reg.champion("ifmmin").number == v4
    pointer = json.loads(storage.read_text(reg.champion_uri("ifmmin")))
    assert pointer["previous"] == {"version": v1, "value": 0.70}
    assert pointer["value"] == 0.73
    promoted, reason = reg.promote_if_better("ifmmin", v4)
    assert not promoted and "already the champion" in reason


def test_lower_is_better_and_bad_input(tmp_path: Path, model_dir: Path) -> None:
    reg = UriRegistry(tmp_path / "reg")
    v1 = reg.register("m", model_dir, metrics={"loss": 0.5}, data_fingerprint=FP, config={}).number
    v2 = reg.register("m", model_dir, metrics={"loss": 0.4}, data_fingerprint=FP, config={}).number
    assert reg.promote_if_better("m", v1, metric="loss", higher_is_better=False).promoted
    assert reg.promote_if_better("m", v2, metric="loss", higher_is_better=False).promoted
    with pytest.raises(RegistryError, match="metric 'average_ua' not found"):
        reg.promote_if_better("m", v2)
    with pytest.raises(RegistryError, match="no such registered version"):
        reg.promote_if_better("m", 9)
    with pytest.raises(RegistryError, match="margin"):
        reg.promote_if_better("m", v1, metric="loss", margin=-1, higher_is_better=False)
    with pytest.raises(RegistryError, match="model name"):
        reg.register("../escape", model_dir, metrics={}, data_fingerprint=FP, config={})
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match="empty"):
        reg.register("m", tmp_path / "empty", metrics={}, data_fingerprint=FP, config={})
    with pytest.raises(RegistryError, match="fingerprint"):
        reg.register("m", model_dir, metrics={}, data_fingerprint="", config={})
    with pytest.raises(RegistryError, match=r"metrics\.bad: object"):
        reg.register("m", model_dir, metrics={"bad": object()}, data_fingerprint=FP, config={})


def test_pointer_compare_and_swap(root: str) -> None:
    uri = storage.join(root, "pointer.json")
    empty = read_pointer(uri)
    assert empty.data is None
    seen_by_a, seen_by_b = read_pointer(uri), read_pointer(uri)
    swap_pointer(uri, {"version": 1}, seen_by_a)
    with pytest.raises(PointerConflict):
        swap_pointer(uri, {"version": 2}, seen_by_b)  # b read the same state: it lost the race
    current = read_pointer(uri)
    assert current.data == {"version": 1}
    swap_pointer(uri, {"version": 3}, current)
    assert read_pointer(uri).data == {"version": 3}
    with pytest.raises(PointerConflict):
        swap_pointer(uri, {"version": 4}, current)  # stale token from before the last swap
    if not storage.is_gcs(root):
        assert sorted(p.name for p in Path(root).iterdir()) == ["pointer.json"]  # no lock/temp left


def test_racing_promotions_end_at_the_best(root: str, model_dir: Path) -> None:
    reg = UriRegistry(root)
    scores = [0.60, 0.75, 0.68, 0.71]
    numbers = [_register(reg, model_dir, ua) for ua in scores]
    results: dict[int, bool] = {}
    barrier = threading.Barrier(len(numbers))

    def worker(n: int) -> None:
        barrier.wait()
        results[n] = reg.promote_if_better("ifmmin", n).promoted

    threads = [threading.Thread(target=worker, args=(n,)) for n in numbers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    best = numbers[scores.index(max(scores))]
    assert reg.champion("ifmmin").number == best
    assert results[best] is True


def test_promotion_retries_against_a_champion_that_landed_meanwhile(root: str, model_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import mer_lib.registry.uri as uri_mod

    reg = UriRegistry(root)
    strong, weak = _register(reg, model_dir, 0.80), _register(reg, model_dir, 0.70)
    real_swap = uri_mod.swap_pointer
    calls: list[int] = []

    def racing_swap(uri: str, data: dict, expected: Any) -> None:
        calls.append(data["version"])
        if len(calls) == 1:
            # Another pipeline promotes the stronger model between our read and our write.
            real_swap(uri, {**data, "version": strong, "promotion_id": "other"}, expected)
        real_swap(uri, data, expected)

    monkeypatch.setattr(uri_mod, "swap_pointer", racing_swap)
    promoted, reason = reg.promote_if_better("ifmmin", weak)
    # Our first write lost (stale token); the retry compared against the new champion and declined.
    assert calls == [weak]
    assert not promoted and f"does not beat champion v{strong}" in reason
    assert reg.champion("ifmmin").number == strong


def test_card_renders_licence_lists_and_missing_licences() -> None:
    common = dict(model_name="nmer", number=3, data_fingerprint=FP, run_id="", created_at="2026-01-01T00:00:00",
                  config_hash="abc")
    card = render_card(metrics={"avl_wa": 0.8, "note": "x"}, context=CardContext(
        featureset={"licences": [{"extractor": "minilm", "licence": "Apache-2.0"}, "dlib: Boost"]}), **common)
    assert "- extractor: minilm; licence: Apache-2.0" in card and "- dlib: Boost" in card
    assert "| avl | 0.8000 |" in card and "| note | x |" in card
    assert "not recorded (registered outside a pipeline run)" in card
    bare = render_card(metrics={}, context=CardContext(), **common)
    assert "Not recorded in the feature set's `featureset.json`" in bare and "No metrics were recorded." in bare


def test_card_context_reads_featureset_json(tmp_path: Path) -> None:
    (tmp_path / "featureset.json").write_text(json.dumps({"licences": {"a": "MIT"}, "fingerprint": FP}))
    ctx = CardContext.from_featureset(str(tmp_path), model_type="nmer")
    assert ctx.featureset["licences"] == {"a": "MIT"} and ctx.model_type == "nmer"
    (tmp_path / "featureset.json").write_text("{broken")
    with pytest.raises(ValueError, match="featureset.json: malformed JSON"):
        CardContext.from_featureset(str(tmp_path))


def test_cli_register_promote_and_list(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    reg_root = str(tmp_path / "reg")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"average_ua": 0.71, "a_ua": 0.6}))
    args = ["register", "--registry", reg_root, "--name", "ifmmin", "--model-dir", str(model_dir),
            "--metrics", str(metrics), "--run-id", "kfp-1", "--promote", "--margin", "0.01"]
    assert mer_main(args) == 0
    out = capsys.readouterr().out
    assert "registered ifmmin v1" in out and "promoted: ifmmin v1 average_ua=0.7100: no champion yet" in out
    # The document `mer evaluate` writes: the flat metrics live under "metrics" (NaN std for one fold).
    metrics.write_text(json.dumps({"primary_metric": "average_ua", "primary": 0.715,
                                   "metrics": {"average_ua": 0.715, "average_ua_std": float("nan")}}))
    assert mer_main(args) == 0
    assert "not promoted: ifmmin v2 average_ua=0.7150 does not beat champion v1" in capsys.readouterr().out
    v1 = UriRegistry(reg_root).get("ifmmin", 1)
    # one shape for every version (the pipeline's registration adds its provenance beside it)
    assert v1.config == {"model": "ifmmin", "config_hash": None, "recipe": None, "folds": None, "versions": None,
                         "resolved": {"model": "ifmmin", "train": {"lr": 0.0002}}}  # from fold_1/config.yaml
    assert v1.data_fingerprint == FP and v1.run_id == "kfp-1"  # fingerprint from run.json
    assert UriRegistry(reg_root).get("ifmmin", 2).metrics == {"average_ua": 0.715, "average_ua_std": None}
    assert mer_main(["register", "--registry", reg_root, "--name", "ifmmin", "--list"]) == 0
    # Dedented: in a full session an earlier test's runner (kfp's local one) leaves stdout indenting every line.
    lines = textwrap.dedent("\n".join(capsys.readouterr().out.splitlines()[-3:])).splitlines()
    assert lines[0].startswith("* v1") and "average_ua=0.7100" in lines[0]
    assert lines[1].startswith("  v2") and lines[-1] == "(* champion)"
    assert mer_main(["register", "--registry", reg_root, "--name", "ifmmin"]) == 2
    assert "--model-dir and --metrics are required" in capsys.readouterr().err


class _FakeModelRegistryClient:
    """Records register_model calls with the 0.3.x keyword names."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def register_model(self, name: str, uri: str, *, model_format_name: str, model_format_version: str,
                       version: str, version_description: str = "", model_source_kind: str = "",
                       model_source_class: str = "", model_source_id: str = "",
                       metadata: dict[str, Any] | None = None) -> None:
        self.calls.append(((name, uri), dict(model_format_name=model_format_name, version=version,
                                             model_source_kind=model_source_kind,
                                             model_source_id=model_source_id, metadata=metadata,
                                             version_description=version_description)))


def test_kubeflow_adapter_records_version(tmp_path: Path, model_dir: Path) -> None:
    client = _FakeModelRegistryClient()
    reg = KubeflowModelRegistry("https://mr.example", artifacts=str(tmp_path / "reg"), client=client)
    v = reg.register("ifmmin", model_dir, metrics={"average_ua": 0.7, "per_condition": {"a": 0.5}},
                     data_fingerprint=FP, config={}, run_id="kfp-9")
    (name, uri), kwargs = client.calls[0]
    assert (name, uri) == ("ifmmin", v.model_uri)
    assert kwargs["version"] == "1" and kwargs["model_format_name"] == "pytorch"
    assert kwargs["model_source_kind"] == "kfp" and kwargs["model_source_id"] == "kfp-9"
    assert kwargs["metadata"]["metric.average_ua"] == 0.7 and kwargs["metadata"]["metric.per_condition.a"] == 0.5
    assert kwargs["version_description"].startswith("ifmmin v1")
    assert reg.promote_if_better("ifmmin", 1).promoted and reg.champion("ifmmin").number == 1


def test_kubeflow_adapter_without_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "model_registry", None)  # makes the import fail
    with pytest.raises(RegistryError, match=r"pip install 'mer-lib\[modelregistry\]'"):
        KubeflowModelRegistry("https://mr.example", artifacts=str(tmp_path))


def test_open_registry_selects_the_kubeflow_adapter_by_uri(tmp_path: Path, model_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from mer_lib.registry import open_registry
    from tests.fake_model_registry import FakeModelRegistry

    monkeypatch.setenv("MODEL_REGISTRY_TOKEN", "mr-token")
    files = tmp_path / "files"
    with FakeModelRegistry() as server:
        host_port = server.url.removeprefix("http://")
        reg = open_registry(f"modelregistry://{host_port}?artifacts={files}&secure=false&author=ci")
        assert isinstance(reg, KubeflowModelRegistry) and reg.artifacts.root == str(files)
        assert reg.champion("ifmmin") is None and server.requests == []  # reading the champion: no server call
        v = reg.register("ifmmin", model_dir, metrics={"average_ua": 0.7}, data_fingerprint=FP, config={},
                         run_id="kfp-run-7")
        assert reg.promote_if_better("ifmmin", v.number).promoted  # the pointer stays with the files (atomic)
        assert reg.champion("ifmmin").number == 1 and (files / "ifmmin" / "champion.json").exists()
        # What the real model-registry client sent: the model, version 1 with its metrics, and the artifact
        # pointing at the registered files with the KFP run as lineage.
        assert {r.authorization for r in server.requests} == {"Bearer mr-token"}
        (model,) = server.state.models.values()
        (version,) = server.state.versions.values()
        (artifact,) = server.state.artifacts.values()
        assert model["name"] == "ifmmin" and version["name"] == "1" and version["author"] == "ci"
        assert version["customProperties"]["metric.average_ua"]["double_value"] == 0.7
        assert version["customProperties"]["data_fingerprint"]["string_value"] == FP
        assert artifact["uri"] == v.model_uri and artifact["modelFormatName"] == "pytorch"
        assert (artifact["modelSourceKind"], artifact["modelSourceId"]) == ("kfp", "kfp-run-7")
    # A plain path or gs:// URI stays the file registry.
    assert isinstance(open_registry(str(tmp_path / "plain")), UriRegistry)


@pytest.mark.parametrize("uri, message", [
    ("modelregistry://?artifacts=gs://b/r", "no Model Registry host"),
    ("modelregistry://mr.kubeflow:80x?artifacts=gs://b/r", "bad port"),
    ("modelregistry://mr.kubeflow:8080", "no artifacts=URI"),
    ("modelregistry://mr.kubeflow:8080/reg?artifacts=gs://b/r", "unexpected path '/reg'"),
    ("modelregistry://mr.kubeflow?artifacts=gs://b/r&secure=maybe", "secure='maybe'; expected true or false"),
    ("modelregistry://mr.kubeflow?artifacts=gs://b/r&tls=1", "unknown query key"),
])
def test_model_registry_uri_errors(uri: str, message: str) -> None:
    from mer_lib.registry import open_registry

    with pytest.raises(RegistryError, match=message):
        open_registry(uri)


def test_model_registry_uri_defaults_and_unreachable_server(tmp_path: Path, model_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from mer_lib.registry.kubeflow import parse_model_registry_uri

    assert parse_model_registry_uri("modelregistry://mr.example?artifacts=gs://b/r") == {
        "server_address": "https://mr.example", "port": 443, "artifacts": "gs://b/r", "is_secure": True}
    assert parse_model_registry_uri("modelregistry://mr:9000?artifacts=x&secure=false")["port"] == 9000
    # Nothing listens on port 9 (discard) of loopback: a clear error naming the server, files untouched.
    monkeypatch.setenv("MODEL_REGISTRY_TOKEN", "t")
    reg = KubeflowModelRegistry("http://127.0.0.1", 9, artifacts=str(tmp_path / "files"), is_secure=False)
    with pytest.raises(RegistryError, match="cannot connect to Kubeflow Model Registry at http://127.0.0.1:9"):
        reg.register("ifmmin", model_dir, metrics={"average_ua": 0.7}, data_fingerprint=FP, config={})
    assert reg.list_versions("ifmmin") == []
