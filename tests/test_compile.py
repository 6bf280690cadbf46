"""The compiled training package: GPU settings, caching/retries, DAG edges, parameters, determinism, no secrets."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components import MER_IMAGE_CPU, MER_IMAGE_GPU  # noqa: E402
from components.compare import compare_models  # noqa: E402
from mer_lib.pipeline.families import CANDIDATE_FAMILIES, FAMILIES, evaluation_input  # noqa: E402
from pipelines.compile import compile_pipeline, main, parse_params  # noqa: E402
from pipelines.training import (  # noqa: E402
    ALL_FOLDS,
    CHECKPOINT_MOUNT,
    FAMILY_LABELS,
    GPU_FAMILIES,
    STEP_RESOURCES,
    TRAINED_FAMILIES,
    PipelineOptions,
)

# One training component for every family: the tasks are numbered in TRAINED_FAMILIES order.
GPU_EXECUTORS = ("exec-train-family", "exec-train-family-2")  # IF-MMIN, NMER
CPU_TRAIN_EXECUTOR = "exec-train-family-3"  # the zero-filled baseline (-4: the modality-dropout baseline)
TRAIN_TASKS = ("train-family", "train-family-2", "train-family-3", "train-family-4")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pkg") / "mer_pipeline.yaml"
    compile_pipeline("training", out)
    return out


@pytest.fixture(scope="module")
def docs(package: Path) -> tuple[dict, dict]:
    spec, platform = list(yaml.safe_load_all(package.read_text()))
    return spec, platform


def _components_with_dag(spec: dict) -> dict[str, dict]:
    comps = {name: c for name, c in spec["components"].items() if "dag" in c}
    comps["root"] = spec["root"]
    return comps


def _find_task(spec: dict, task: str) -> dict:
    for comp in _components_with_dag(spec).values():
        if task in comp["dag"]["tasks"]:
            return comp["dag"]["tasks"][task]
    raise KeyError(task)


def test_gpu_training_executors_request_accelerator_and_resources(docs: tuple[dict, dict]) -> None:
    spec, _ = docs
    for name in GPU_EXECUTORS:
        res = spec["deploymentSpec"]["executors"][name]["container"]["resources"]
        assert res["accelerator"] == {
            "resourceType": "{{$.inputs.parameters['pipelinechannel--accelerator_type']}}",
            "resourceCount": "{{$.inputs.parameters['pipelinechannel--accelerator_count']}}",
        }
        assert res["resourceCpuRequest"] == "{{$.inputs.parameters['pipelinechannel--train_cpu_request']}}"
        assert res["resourceCpuLimit"] == "{{$.inputs.parameters['pipelinechannel--train_cpu_limit']}}"
        assert res["resourceMemoryRequest"] == "{{$.inputs.parameters['pipelinechannel--train_memory_request']}}"
        assert res["resourceMemoryLimit"] == "{{$.inputs.parameters['pipelinechannel--train_memory_limit']}}"
    baseline = spec["deploymentSpec"]["executors"][CPU_TRAIN_EXECUTOR]["container"]["resources"]
    assert "accelerator" not in baseline and "resourceCpuLimit" in baseline


def test_every_executor_requests_cpu_and_memory(docs: tuple[dict, dict]) -> None:
    spec, _ = docs
    for name, ex in spec["deploymentSpec"]["executors"].items():
        if "importer" in ex:
            continue  # the importer is no container of ours: KFP's launcher records a URI, with its own resources
        res = ex["container"].get("resources", {})
        for key in ("resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest", "resourceMemoryLimit"):
            assert res.get(key), (name, key)
    evaluate = spec["deploymentSpec"]["executors"]["exec-evaluate-model"]["container"]["resources"]
    assert evaluate["resourceMemoryRequest"] == STEP_RESOURCES["evaluate"].memory_request


def test_gpu_steps_require_a_gpu_and_name_node_and_image(docs: tuple[dict, dict]) -> None:
    spec, platform = docs
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["device"]["defaultValue"] == "cuda"
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in GPU_EXECUTORS:
        assert executors[name]["fieldPathAsEnv"] == [{"fieldPath": "spec.nodeName", "name": "NODE_NAME"}]
        env = spec["deploymentSpec"]["executors"][name]["container"]["env"]
        assert {"name": "MER_IMAGE", "value": MER_IMAGE_GPU} in env
    loop = spec["components"][_component_holding(spec, "train-family")]["dag"]["tasks"]
    for task, family in zip(TRAIN_TASKS, ("ifmmin", "nmer", "baseline", "baseline_dropout"), strict=True):
        inputs = loop[task]["inputs"]["parameters"]
        assert inputs["family"] == {"runtimeValue": {"constant": family}}
        device = inputs["device"]
        if family.startswith("baseline"):
            assert device == {"runtimeValue": {"constant": "cpu"}}  # a CPU step never asks for cuda
        else:
            assert device == {"componentInputParameter": "pipelinechannel--device"}


def test_gpu_tasks_have_node_selector_and_toleration(docs: tuple[dict, dict]) -> None:
    _, platform = docs
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in GPU_EXECUTORS:
        cfg = executors[name]
        selector = {"componentInputParameter": "pipelinechannel--gpu_node_selector"}
        assert cfg["nodeSelector"] == {"nodeSelectorJson": selector}
        assert cfg["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert CPU_TRAIN_EXECUTOR not in executors  # CPU task: no GPU pool constraints
    assert "pvcMount" not in str(executors)


def test_images_and_no_runtime_pip(docs: tuple[dict, dict]) -> None:
    spec, _ = docs
    executors = spec["deploymentSpec"]["executors"]
    executors = {name: ex for name, ex in executors.items() if "container" in ex}  # not the importer
    assert {"exec-extract-features", "exec-merge-features", "exec-prepare-data", *GPU_EXECUTORS} <= set(executors)
    assert MER_IMAGE_CPU != MER_IMAGE_GPU
    for name, ex in executors.items():
        assert ex["container"]["image"] == (MER_IMAGE_GPU if name in GPU_EXECUTORS else MER_IMAGE_CPU), name
        assert "pip install" not in " ".join(ex["container"]["command"]), name


def test_caching_and_retries(docs: tuple[dict, dict]) -> None:
    spec, _ = docs
    for task in (*TRAIN_TASKS, "check-retrain", "compare-models", "register-model", "register-model-2"):
        assert _find_task(spec, task)["cachingOptions"] == {}, task  # {} = caching disabled
    for task in ("prepare-data", "extract-features", "merge-features", "noise-recipe", "evaluate-model"):
        assert _find_task(spec, task)["cachingOptions"] == {"enableCache": True}, task
    for task in TRAIN_TASKS:
        assert _find_task(spec, task)["retryPolicy"] == {"maxRetryCount": 3, "backoffDuration": "120s",
                                                         "backoffFactor": 2.0, "backoffMaxDuration": "3600s"}
    for task in ("prepare-data", "evaluate-model", "register-model"):
        assert "retryPolicy" not in _find_task(spec, task)


def _component_holding(spec: dict, task: str) -> str:
    """Name of the (sub-)DAG component whose tasks include ``task``."""
    return next(name for name, comp in _components_with_dag(spec).items() if task in comp["dag"]["tasks"])


def test_dag_edges_and_control_flow(docs: tuple[dict, dict]) -> None:
    spec, _ = docs
    comps = _components_with_dag(spec)
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"check-retrain", "condition-1"}
    assert root["condition-1"]["dependentTasks"] == ["check-retrain"]
    assert root["condition-1"]["triggerPolicy"]["condition"] == \
        "inputs.parameter_values['pipelinechannel--check-retrain-Output'] != 'skip'"
    inner = comps["comp-condition-1"]["dag"]["tasks"]

    # Data: raw media -> extraction fanned out over shards -> merge; anything else -> the data step.
    raw = comps[_component_holding(spec, "merge-features")]
    loop_name = next(t for t in raw["dag"]["tasks"] if t.startswith("for-loop"))
    shard_loop = raw["dag"]["tasks"][loop_name]
    assert shard_loop["parameterIterator"]["items"] == {"inputParameter": "pipelinechannel--check-retrain-shards"}
    assert set(comps[shard_loop["componentRef"]["name"]]["dag"]["tasks"]) == {"extract-features"}
    merge = raw["dag"]["tasks"]["merge-features"]
    assert merge["dependentTasks"] == [loop_name]
    assert merge["inputs"]["artifacts"]["partials"]["taskOutputArtifact"]["producerTask"] == loop_name  # Collected
    branches_name = next(t for t in inner if t.startswith("condition-branches") and "importer" not in
                         inner[t].get("dependentTasks", []) and t in inner["importer"]["dependentTasks"])
    branches = comps[inner[branches_name]["componentRef"]["name"]]["dag"]["tasks"]
    conds = sorted(t["triggerPolicy"]["condition"] for t in branches.values())
    assert conds == ["!(inputs.parameter_values['pipelinechannel--check-retrain-Output'] == 'raw')",
                     "inputs.parameter_values['pipelinechannel--check-retrain-Output'] == 'raw'"]
    assert "prepare-data" in comps[_component_holding(spec, "prepare-data")]["dag"]["tasks"]
    # One dataset for the rest of the DAG: an importer of whichever branch's URI (a parameter dsl.OneOf).
    assert inner["importer"]["inputs"]["parameters"]["uri"]["taskOutputParameter"]["producerTask"] == branches_name
    assert spec["deploymentSpec"]["executors"]["exec-importer"]["importer"]["artifactUri"] == \
        {"runtimeParameter": "uri"}

    assert inner["noise-recipe"]["dependentTasks"] == ["importer"]
    fold_loop = next(t for t, v in inner.items() if t.startswith("for-loop"))
    loop = inner[fold_loop]
    assert loop["dependentTasks"] == ["importer", "noise-recipe"]
    assert loop["iteratorPolicy"] == {"parallelismLimit": PipelineOptions().fold_parallelism}
    assert loop["parameterIterator"]["items"] == {"inputParameter": "pipelinechannel--folds"}
    fold_tasks = comps[loop["componentRef"]["name"]]["dag"]["tasks"]
    assert set(TRAIN_TASKS) <= set(fold_tasks)
    for task in TRAIN_TASKS:
        src = fold_tasks[task]["inputs"]["artifacts"]["dataset"]
        assert src == {"componentInputArtifact": "pipelinechannel--importer-artifact"}
    evaluations = sorted(t for t in inner if t.startswith("evaluate-model"))
    collected = {}
    for ev in evaluations:
        assert inner[ev]["dependentTasks"] == [fold_loop, "importer", "noise-recipe"]
        src = inner[ev]["inputs"]["artifacts"]["fold_models"]["taskOutputArtifact"]
        assert src["producerTask"] == fold_loop  # dsl.Collected of the loop's per-fold models
        collected[ev] = src["outputArtifactKey"]
    assert set(f"pipelinechannel--{t}-model" for t in TRAIN_TASKS) <= set(collected.values())
    loop_out = comps[loop["componentRef"]["name"]]["outputDefinitions"]["artifacts"]
    assert all(loop_out[k]["isArtifactList"] for k in collected.values())
    assert inner["compare-models"]["dependentTasks"] == evaluations
    register = next(t for t in inner if t.startswith("condition-branches") and t != branches_name)
    reg_branches = comps[inner[register]["componentRef"]["name"]]["dag"]["tasks"]
    conds = {t["triggerPolicy"]["condition"] for t in reg_branches.values()}
    assert any("== 'nmer'" in c for c in conds) and any("== 'ifmmin'" in c for c in conds)
    assert "compare-models" in inner[register]["dependentTasks"]


def test_every_registered_family_is_trained_evaluated_compared_and_registrable(docs: tuple[dict, dict]) -> None:
    # Adding a family to mer_lib.pipeline.families without its compare input (KFP needs one typed
    # input per family) or its pipeline wiring fails here.
    assert TRAINED_FAMILIES == tuple(FAMILIES)
    assert set(GPU_FAMILIES) <= set(FAMILIES) and set(FAMILY_LABELS) == set(FAMILIES)
    family_inputs = {n for n in compare_models.component_spec.inputs if n.endswith("_eval")}
    assert family_inputs == {evaluation_input(f) for f in FAMILIES}
    spec, _ = docs
    compare = _find_task(spec, "compare-models")
    wired = {}
    for name, src in compare["inputs"]["artifacts"].items():
        producer = _find_task(spec, src["taskOutputArtifact"]["producerTask"])
        assert src["taskOutputArtifact"]["outputArtifactKey"] == "evaluation"
        wired[name] = producer["taskInfo"]["name"]
    assert wired == {evaluation_input(f): f"evaluate {f}" for f in FAMILIES}
    registered = {t["taskInfo"]["name"] for c in _components_with_dag(spec).values() for t in c["dag"]["tasks"].values()
                  if t["taskInfo"]["name"].startswith("register ")}
    assert registered == {f"register {f}" for f in CANDIDATE_FAMILIES}


def test_no_cached_task_is_keyed_on_the_data_location_alone(docs: tuple[dict, dict]) -> None:
    # New data under the same data_uri must never be served from the cache (stale-data retraining).
    spec, _ = docs
    seen = set()
    for comp in _components_with_dag(spec).values():
        for name, task in comp["dag"]["tasks"].items():
            params = task.get("inputs", {}).get("parameters", {})
            if "data_uri" in params and task.get("cachingOptions", {}).get("enableCache"):
                assert params["source_fingerprint"] == \
                    {"componentInputParameter": "pipelinechannel--check-retrain-source_fingerprint"}, name
                seen.add(name)
    assert seen == {"prepare-data", "extract-features", "merge-features"}


def test_every_subdag_input_reference_is_declared(docs: tuple[dict, dict]) -> None:
    # kfp 2.17.3 does not propagate resource channels into If/ParallelFor sub-DAGs by itself: an
    # undeclared reference would only fail on the cluster.
    spec, _ = docs
    for name, comp in _components_with_dag(spec).items():
        declared = set(comp.get("inputDefinitions", {}).get("parameters", {}))
        declared_art = set(comp.get("inputDefinitions", {}).get("artifacts", {}))
        for tname, task in comp["dag"]["tasks"].items():
            for pname, p in task.get("inputs", {}).get("parameters", {}).items():
                if "componentInputParameter" in p:
                    assert p["componentInputParameter"] in declared, (name, tname, pname)
                if "taskOutputParameter" in p:
                    assert p["taskOutputParameter"]["producerTask"] in comp["dag"]["tasks"], (name, tname, pname)
            for aname, a in task.get("inputs", {}).get("artifacts", {}).items():
                if "componentInputArtifact" in a:
                    assert a["componentInputArtifact"] in declared_art, (name, tname, aname)


def test_run_id_placeholder_reaches_training_and_registration(docs: tuple[dict, dict]) -> None:
    spec, _ = docs
    for task in (*TRAIN_TASKS, "register-model", "register-model-2"):
        assert _find_task(spec, task)["inputs"]["parameters"]["run_id"] == \
            {"runtimeValue": {"constant": "{{$.pipeline_job_uuid}}"}}


def test_parameters_have_defaults_and_descriptions(docs: tuple[dict, dict]) -> None:
    spec, _ = docs
    params = spec["root"]["inputDefinitions"]["parameters"]
    for name, p in params.items():
        assert p.get("isOptional") is True and "defaultValue" in p, name
        assert len(p.get("description", "")) > 15, name
    assert params["data_uri"]["defaultValue"] == ""  # synthetic corpus by default
    assert params["synthetic_preset"]["defaultValue"] == "iemocap"
    assert params["recipe"]["defaultValue"] == "improved"  # chosen from bench/results.py (README "Results")
    assert params["folds"]["defaultValue"] == ALL_FOLDS
    assert params["accelerator_type"]["defaultValue"] == "nvidia.com/gpu"
    assert params["accelerator_count"] == {**params["accelerator_count"], "defaultValue": 1.0,
                                           "parameterType": "NUMBER_INTEGER"}
    assert params["gpu_node_selector"]["defaultValue"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert params["force_retrain"]["defaultValue"] is False
    assert params["extract_shards"] == {**params["extract_shards"], "defaultValue": 8.0,
                                        "parameterType": "NUMBER_INTEGER"}
    # Fits a g2-standard-4 (4 vCPU, 16 GB, one L4): about 3.9 CPU and 12 GiB allocatable.
    assert (params["train_cpu_request"]["defaultValue"], params["train_memory_request"]["defaultValue"]) == \
        ("3", "8Gi")
    assert params["registry_uri"]["defaultValue"] == ""


def _compile_in_subprocess(out: Path, env: dict[str, str] | None = None, *args: str) -> bytes:
    subprocess.run([sys.executable, str(REPO / "pipelines" / "compile.py"), "--output", str(out), *args],
                   check=True, capture_output=True, env={**os.environ, **(env or {})}, cwd=str(out.parent))
    return out.read_bytes()


def test_recompile_is_byte_identical(package: Path, tmp_path: Path) -> None:
    assert _compile_in_subprocess(tmp_path / "again.yaml") == package.read_bytes()


def test_image_env_and_compile_options(tmp_path: Path) -> None:
    image = "europe-docker.pkg.dev/p/mer/mer-cuda@sha256:" + "ab" * 32
    data = _compile_in_subprocess(tmp_path / "pinned.yaml", {"MER_IMAGE": image}, "--checkpoint-pvc", "mer-ckpt",
                                  "--fold-parallelism", "2", "--param", "registry_uri=gs://b/registry",
                                  "--param", "folds=[1,2]")
    spec, platform = list(yaml.safe_load_all(data))
    assert {ex["container"]["image"] for ex in spec["deploymentSpec"]["executors"].values()
            if "container" in ex} == {image}  # one for all
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in (*GPU_EXECUTORS, CPU_TRAIN_EXECUTOR):
        assert executors[name]["pvcMount"] == [{"constant": "mer-ckpt", "mountPath": CHECKPOINT_MOUNT,
                                                "pvcNameParameter": {"runtimeValue": {"constant": "mer-ckpt"}}}]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["registry_uri"]["defaultValue"] == "gs://b/registry"
    assert params["folds"]["defaultValue"] == [1, 2]
    inner = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    loop = next(t for name, t in inner.items() if name.startswith("for-loop"))  # the fold loop
    assert loop["iteratorPolicy"] == {"parallelismLimit": 2}


def test_cpu_and_gpu_images_from_the_environment(tmp_path: Path) -> None:
    cpu = "europe-docker.pkg.dev/p/mer/mer@sha256:" + "cd" * 32
    gpu = "europe-docker.pkg.dev/p/mer/mer-cuda@sha256:" + "ef" * 32
    env = {"MER_IMAGE_CPU": cpu, "MER_IMAGE_GPU": gpu, "MER_IMAGE": ""}
    spec, _ = list(yaml.safe_load_all(_compile_in_subprocess(tmp_path / "two.yaml", env)))
    images = {name: ex["container"]["image"] for name, ex in spec["deploymentSpec"]["executors"].items()
              if "container" in ex}
    assert {images[n] for n in GPU_EXECUTORS} == {gpu}
    assert {i for n, i in images.items() if n not in GPU_EXECUTORS} == {cpu}
    # The minimum backend travels with the package (the UI shows the description).
    assert "Needs KFP backend 2.14 or later" in " ".join(spec["pipelineInfo"]["description"].split())


def test_parse_params_rejects_unknown_malformed_and_mistyped() -> None:
    types = {"epochs": "NUMBER_INTEGER", "data_uri": "STRING", "folds": "LIST", "promotion_margin": "NUMBER_DOUBLE"}
    assert parse_params(["epochs=3", "data_uri=gs://b/f", "folds=[1, 2]", "promotion_margin=0"], types) == {
        "epochs": 3, "data_uri": "gs://b/f", "folds": [1, 2], "promotion_margin": 0.0}
    assert parse_params(["data_uri=007"], types) == {"data_uri": "007"}  # a string stays as typed
    with pytest.raises(ValueError, match="not a pipeline parameter"):
        parse_params(["epoch=3"], types)
    with pytest.raises(ValueError, match="expected key=value"):
        parse_params(["epochs"], types)
    with pytest.raises(ValueError, match="epochs='2.5': parameter type NUMBER_INTEGER needs an integer"):
        parse_params(["epochs=2.5"], types)
    with pytest.raises(ValueError, match="folds='1': parameter type LIST needs a list"):
        parse_params(["folds=1"], types)
    with pytest.raises(ValueError, match="fold_parallelism"):
        PipelineOptions(fold_parallelism=0)


def test_compile_cli_type_checks_params(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--output", str(tmp_path / "x.yaml"), "--param", "accelerator_count=two"])
    assert exc.value.code == 2
    assert "--param accelerator_count='two': parameter type NUMBER_INTEGER needs an integer" in capsys.readouterr().err
    assert not (tmp_path / "x.yaml").exists()


CREDENTIAL_PATTERNS = [
    r"AKIA[0-9A-Z]{16}",                              # AWS access key id
    r"AIza[0-9A-Za-z_\-]{35}",                        # Google API key
    r"ya29\.[0-9A-Za-z_\-]{20,}",                     # Google OAuth access token
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    r"\"type\"\s*:\s*\"service_account\"",            # service-account JSON key
    r"gh[pousr]_[0-9A-Za-z]{36}",                     # GitHub tokens
    r"xox[abprs]-[0-9A-Za-z-]{10,}",                  # Slack tokens
    r"(?i)(password|passwd|api[_-]?key|secret[_-]?key|access[_-]?token|client[_-]?secret)\s*[:=]\s*['\"]?"
    r"[A-Za-z0-9/+_\-]{8,}",
]


def test_package_carries_no_credentials(package: Path) -> None:
    text = package.read_text()
    for pattern in CREDENTIAL_PATTERNS:
        assert not re.search(pattern, text), pattern
    # Nothing secret-looking from this environment leaked in either.
    for key, value in os.environ.items():
        if re.search(r"(?i)token|secret|password|credential|api_key", key) and len(value) >= 8:
            assert value not in text, key
    _, platform = list(yaml.safe_load_all(text))
    assert "secretAsEnv" not in str(platform) and "imagePullSecret" not in str(platform)
