"""The deploy step: the InferenceService resource, create/update against a fake Kubernetes API with the
real ``kubernetes`` client, the component body, and the step compiled into the training package."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from kfp.dsl import Artifact

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components import MER_IMAGE_CPU  # noqa: E402
from components.deploy import deploy_model  # noqa: E402
from mer_lib.pipeline.deploy import deploy_champion  # noqa: E402
from mer_lib.registry.uri import UriRegistry  # noqa: E402
from mer_lib.serving.deploy import (  # noqa: E402
    DeployError,
    ServiceSpec,
    cpu_threads,
    inference_service,
    kube_client,
)
from tests.fake_kube import FakeKube  # noqa: E402

NAME = "mer-emotion"
SETTINGS = {"serving_image": "europe-docker.pkg.dev/p/mer/mer@sha256:" + "ab" * 32, "serving_name": "mer-emotion",
            "serving_namespace": "", "serving_service_account": "mer-serving",
            "serving_resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}}


def _spec(**kw: object) -> ServiceSpec:
    base = {"name": "mer-emotion", "namespace": "serving", "image": "img:1", "model_uri": "gs://b/reg/mer-emotion",
            "model_version": "3"}
    return ServiceSpec(**{**base, **kw})


def test_inference_service_resource() -> None:
    doc = inference_service(_spec(canary_traffic_percent=10, service_account="sa"))
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1" and doc["kind"] == "InferenceService"
    assert doc["metadata"]["annotations"]["mer-lib/model-version"] == "3"
    pred = doc["spec"]["predictor"]
    assert "canaryTrafficPercent" not in pred  # a first deployment takes all traffic
    assert pred["serviceAccountName"] == "sa"
    (c,) = pred["containers"]
    assert c["name"] == "kserve-container" and c["image"] == "img:1" and c["command"] == ["mer", "serve"]
    assert c["args"] == ["--model", "gs://b/reg/mer-emotion", "--version", "3", "--name", "mer", "--port", "8080",
                         "--threads", "2"]  # torch threads = the CPU limit, not the node's cores
    assert c["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    assert c["readinessProbe"]["httpGet"] == {"path": "/v1/models/mer", "port": 8080}
    assert inference_service(_spec(canary_traffic_percent=10), update=True)["spec"]["predictor"][
        "canaryTrafficPercent"] == 10
    assert cpu_threads({"limits": {"cpu": "1500m"}}) == 1 and cpu_threads({"requests": {"cpu": "4"}}) == 4
    assert cpu_threads({}) == 1


@pytest.mark.parametrize(("kw", "message"), [
    ({"name": "Mer_1"}, "serving name 'Mer_1': expected a DNS label"),
    ({"namespace": "x" * 64}, "serving namespace"),
    ({"canary_traffic_percent": 0}, "canary_traffic_percent 0: expected an integer from 1 to 100"),
    ({"canary_traffic_percent": True}, "canary_traffic_percent True"),
    ({"image": ""}, "serving image: empty"),
    ({"resources": {"request": {"cpu": "1"}}}, "serving resources"),
    ({"resources": {"limits": {"cpu": [1]}}}, "serving resources.limits"),
    ({"resources": {"limits": {"cpu": "two"}}}, "serving resources.limits.cpu 'two'"),
])
def test_bad_settings_are_refused(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _spec(**kw)


@pytest.fixture
def registry(tmp_path: Path) -> tuple[str, dict]:
    """A registry with v1 as champion, and the registration result that promoted it."""
    reg_root = str(tmp_path / "registry")
    model = tmp_path / "model"
    model.mkdir()
    (model / "run.json").write_text("{}")
    reg = UriRegistry(reg_root)
    v = reg.register(NAME, model, metrics={"average_ua": 0.5}, data_fingerprint="fp", config={})
    promoted, reason = reg.promote_if_better(NAME, v.number)
    assert promoted
    return reg_root, {"model_name": NAME, "version": v.number, "promoted": True, "reason": reason}


def _run_component(tmp_path: Path, registration: dict, registry_uri: str, canary: int = 100) -> dict:
    reg_art = Artifact(name="registration", uri=str(tmp_path / f"reg-{registration['version']}"))
    Path(reg_art.path).mkdir(parents=True, exist_ok=True)
    (Path(reg_art.path) / "registration.json").write_text(json.dumps(registration))
    out = Artifact(name="deployment", uri=str(tmp_path / f"deployment-{registration['version']}-{canary}"))
    deployed = deploy_model.python_func(registration=reg_art, registry_uri=registry_uri,
                                        canary_traffic_percent=canary, run_id="run-7", deployment=out, **SETTINGS)
    doc = json.loads((Path(out.path) / "deployment.json").read_text())
    assert deployed is doc["deployed"] and out.metadata["deployed"] is deployed
    return doc


def test_create_then_canary_update_through_the_component(tmp_path: Path, registry: tuple[str, dict],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    reg_root, registration = registry
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with FakeKube() as kube:
        monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig(tmp_path)))
        first = _run_component(tmp_path, registration, reg_root)
        assert first["deployed"] and first["action"] == "created" and first["namespace"] == "mer-serving"
        assert [(r.method, r.path) for r in kube.requests] == [
            ("GET", "/apis/serving.kserve.io/v1beta1/namespaces/mer-serving/inferenceservices/mer-emotion"),
            ("POST", "/apis/serving.kserve.io/v1beta1/namespaces/mer-serving/inferenceservices")]
        assert {r.authorization for r in kube.requests} == {"Bearer fake-token"}
        stored = kube.objects[("mer-serving", "mer-emotion")]
        container = stored["spec"]["predictor"]["containers"][0]
        assert container["image"] == SETTINGS["serving_image"]
        assert container["args"][:4] == ["--model", str(Path(reg_root) / NAME), "--version", "1"]
        assert stored["spec"]["predictor"]["serviceAccountName"] == "mer-serving"
        assert stored["metadata"]["annotations"]["mer-lib/run-id"] == "run-7"
        # Someone scales the service by hand; the next rollout keeps what it does not set.
        stored["spec"]["predictor"]["minReplicas"] = 2

        # A second run promotes v2 and rolls it out to 20% of the traffic.
        reg = UriRegistry(reg_root)
        v2 = reg.register(NAME, tmp_path / "model", metrics={"average_ua": 0.6}, data_fingerprint="fp", config={})
        assert reg.promote_if_better(NAME, v2.number).promoted
        second = _run_component(tmp_path, {**registration, "version": v2.number}, reg_root, canary=20)
        assert second["action"] == "updated" and second["generation"] == 2
        assert kube.writes()[-1].method == "PATCH" and kube.content_types[-1] == "application/merge-patch+json"
        pred = kube.objects[("mer-serving", "mer-emotion")]["spec"]["predictor"]
        assert pred["canaryTrafficPercent"] == 20 and pred["minReplicas"] == 2
        assert pred["containers"][0]["args"][3] == "2"

        # Not promoted, or no longer the champion: nothing is written.
        writes = len(kube.writes())
        skipped = _run_component(tmp_path, {**registration, "version": 3, "promoted": False, "reason": "worse"},
                                 reg_root)
        assert not skipped["deployed"] and "v3 was not promoted (worse)" in skipped["reason"]
        stale = _run_component(tmp_path, registration, reg_root, canary=50)
        assert not stale["deployed"] and "no longer the champion (now v2)" in stale["reason"]
        assert len(kube.writes()) == writes


def test_api_errors_say_what_to_fix(tmp_path: Path, registry: tuple[str, dict]) -> None:
    reg_root, registration = registry
    with FakeKube(forbidden={"locked"}) as kube:
        client = kube_client(str(kube.kubeconfig(tmp_path)))
        with pytest.raises(DeployError, match="needs RBAC get/create/patch on inferenceservices"):
            deploy_champion(registration, registry_uri=reg_root, image="img:1", name="mer", namespace="locked",
                            api_client=client)
    with FakeKube(crd_installed=False) as kube:
        client = kube_client(str(kube.kubeconfig(tmp_path)))
        with pytest.raises(DeployError, match="is KServe installed"):
            deploy_champion(registration, registry_uri=reg_root, image="img:1", name="mer", namespace="serving",
                            api_client=client)
    with pytest.raises(ValueError, match="deploy=true needs registry_uri"):
        deploy_champion(registration, registry_uri="", image="img:1", name="mer")
    with pytest.raises(DeployError, match="no Kubernetes credentials"):
        kube_client(str(tmp_path / "no-kubeconfig"))


def test_deploy_step_is_compiled_into_the_package(tmp_path: Path) -> None:
    from pipelines.compile import compile_pipeline

    out = tmp_path / "mer_pipeline.yaml"
    compile_pipeline("training", out)
    spec, _ = list(yaml.safe_load_all(out.read_text()))
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["deploy"]["defaultValue"] is False
    assert params["serving_image"]["defaultValue"] == MER_IMAGE_CPU
    assert params["canary_traffic_percent"]["defaultValue"] == 100
    assert params["serving_resources"]["defaultValue"] == {}  # = DEFAULT_RESOURCES (compiles byte-identically)
    for name in ("deploy", "serving_image", "serving_name", "serving_namespace", "serving_resources",
                 "canary_traffic_percent", "serving_service_account"):
        assert len(params[name]["description"]) > 15, name
    comps = spec["components"]
    deploys = {}
    for cname, comp in comps.items():
        for tname, task in comp.get("dag", {}).get("tasks", {}).items():
            if task["componentRef"]["name"].startswith("comp-deploy-model"):
                deploys[tname] = (cname, task)
    assert sorted(deploys) == ["deploy-model", "deploy-model-2"]  # one per registration branch
    for tname, (cname, task) in deploys.items():
        # Each sits in a deploy==true condition inside a registration branch, after the registration.
        parent = next(t for c in comps.values() for t in c.get("dag", {}).get("tasks", {}).values()
                      if t["componentRef"]["name"] == cname)
        assert parent["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--deploy'] == true"
        src = task["inputs"]["artifacts"]["registration"]["componentInputArtifact"]
        assert src.startswith("pipelinechannel--register-model") and src.endswith("-registration")
        assert task["cachingOptions"] == {}, tname  # never a cached deployment
        assert task["inputs"]["parameters"]["run_id"] == {"runtimeValue": {"constant": "{{$.pipeline_job_uuid}}"}}
    executor = spec["deploymentSpec"]["executors"]["exec-deploy-model"]["container"]
    assert executor["image"] == MER_IMAGE_CPU and "pip install" not in " ".join(executor["command"])


def test_local_run_never_deploys(capsys: pytest.CaptureFixture) -> None:
    from pipelines.run_local import parse_args, pipeline_arguments

    assert pipeline_arguments(parse_args([]))["deploy"] is False
    assert pipeline_arguments(parse_args(["--param", "deploy=true"]))["deploy"] is False
    assert "deploy=true ignored locally" in capsys.readouterr().err
