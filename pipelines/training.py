"""The training pipeline: gate -> data -> noise -> per-fold IF-MMIN / NMER / baseline training in parallel
-> evaluation of each -> comparison -> registration of the challenger if it beats the champion.

Every parameter has a default, so a run can be started from the Kubeflow UI without editing
anything: it then trains on the synthetic ``iemocap``-sized corpus with the improved recipes.
Pointing ``data_uri`` at a ``gs://`` feature set (``featureset.json`` + ``A/ V/ L/ target/``) or a raw
IEMOCAP copy trains on real data. ``pipelines/run_local.py`` runs the same DAG locally on the small
``demo`` preset with fewer epochs and folds.

Retries: a training container that fails (non-zero exit, OOM kill) is retried with backoff; it
resumes from its last epoch when ``checkpoint_root`` points at a durable location (a ``gs://``
prefix, or the PVC mounted with ``compile.py --checkpoint-pvc``), see
:mod:`mer_lib.pipeline.checkpoints`. A pod lost with its node is outside what the package can ask
for (pipelines/README.md, "Preemption").

Images and resources: every step runs the CPU image with CPU and memory requests
(:data:`STEP_RESOURCES`); the GPU training steps run the CUDA image, request the GPU and run with
``device`` (``cuda`` by default: they fail at once when they see no GPU).
"""

from dataclasses import dataclass

from kfp import dsl, kubernetes
from kfp.dsl import Dataset, PipelineTask
from kfp.dsl.graph_component import GraphComponent
from kfp.dsl.pipeline_channel import PipelineChannel

from components import MER_IMAGE_CPU, MER_IMAGE_GPU
from components.compare import compare_models
from components.data import prepare_data
from components.deploy import deploy_model
from components.evaluate import evaluate_model
from components.extract import extract_features, merge_features
from components.gate import check_retrain
from components.noise import noise_recipe
from components.register import register_model
from components.train import train_family
from mer_lib.pipeline.families import CANDIDATE_FAMILIES, FAMILIES, evaluation_input
from mer_lib.pipeline.gate import SKIP

PIPELINE_NAME = "mer-training"
#: Oldest KFP backend the package runs on (dsl.Collected over ParallelFor); also in pipelines/_client.py.
MIN_BACKEND = "2.14"
PIPELINE_DESCRIPTION = ("Multimodal emotion recognition robust to missing and noisy modalities: trains IF-MMIN and "
                        "NMER per fold on GPUs, evaluates them against a baseline and registers the better one "
                        f"when it beats the current champion. Needs KFP backend {MIN_BACKEND} or later "
                        "(2.17 recommended).")
#: Where ``--checkpoint-pvc`` mounts the claim in training pods (use it as ``checkpoint_root``).
CHECKPOINT_MOUNT = "/mnt/mer-checkpoints"
ALL_FOLDS = list(range(1, 11))
#: Families trained per fold, in task order; each is one ``train_family`` task (see mer_lib.pipeline.families).
TRAINED_FAMILIES = tuple(FAMILIES)
#: Families trained on a GPU with the CUDA image; the others train on the CPU pool with the CPU image.
GPU_FAMILIES = ("ifmmin", "nmer")
FAMILY_LABELS = {"ifmmin": "IF-MMIN", "nmer": "NMER", "baseline": "baseline",
                 "baseline_dropout": "modality-dropout baseline"}
#: Environment of GPU pods read by mer_lib.pipeline.device when no GPU is visible.
NODE_NAME_ENV = "NODE_NAME"


@dataclass(frozen=True)
class Resources:
    """CPU and memory request/limit of one step (Kubernetes quantities)."""

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


#: Requests of the steps that do not train, sized from their measured peak memory on the full-size
#: synthetic ``iemocap`` corpus (figures in pipelines/README.md, "Resources") and to fit the CPU pool's
#: e2-standard-8 nodes (8 vCPU, 32 GB). Training pods use the ``train_*`` run parameters instead.
STEP_RESOURCES: dict[str, Resources] = {
    "gate": Resources("250m", "1", "512Mi", "1Gi"),
    "data": Resources("1", "2", "3Gi", "6Gi"),
    "extract": Resources("3", "4", "6Gi", "10Gi"),  # two shards per e2-standard-8; one worker per CPU
    "merge": Resources("1", "2", "4Gi", "8Gi"),
    "noise": Resources("500m", "1", "1Gi", "2Gi"),
    "evaluate": Resources("2", "4", "4Gi", "8Gi"),
    "compare": Resources("500m", "1", "1Gi", "2Gi"),
    "register": Resources("500m", "1", "1Gi", "2Gi"),
    "deploy": Resources("250m", "1", "512Mi", "1Gi"),
}


def with_resources(task: PipelineTask, step: str) -> PipelineTask:
    """Set the CPU/memory request and limit of :data:`STEP_RESOURCES` ``[step]`` on ``task``.

    Raises:
        KeyError: unknown step name.
    """
    if step not in STEP_RESOURCES:
        raise KeyError(f"no resources for step {step!r}; add it to STEP_RESOURCES ({', '.join(STEP_RESOURCES)})")
    res = STEP_RESOURCES[step]
    return (task.set_cpu_request(res.cpu_request).set_cpu_limit(res.cpu_limit)
            .set_memory_request(res.memory_request).set_memory_limit(res.memory_limit))


@dataclass(frozen=True)
class PipelineOptions:
    """Compile-time settings (KFP needs these as constants, not run parameters).

    Attributes:
        fold_parallelism: folds trained at the same time (each runs one IF-MMIN and one NMER GPU task).
        train_retries: retries of a failed training task (preemptible GPU nodes).
        retry_backoff: first wait before a retry.
        retry_backoff_factor: growth of the wait per retry.
        retry_backoff_max: longest wait.
        checkpoint_pvc: a PersistentVolumeClaim to mount at :data:`CHECKPOINT_MOUNT` in training pods ("" = none).
    """

    fold_parallelism: int = 5
    train_retries: int = 3
    retry_backoff: str = "120s"
    retry_backoff_factor: float = 2.0
    retry_backoff_max: str = "3600s"
    checkpoint_pvc: str = ""

    def __post_init__(self) -> None:
        if self.fold_parallelism < 1:
            raise ValueError(f"fold_parallelism must be >= 1, got {self.fold_parallelism}")
        if self.train_retries < 0:
            raise ValueError(f"train_retries must be >= 0, got {self.train_retries}")


def _gpu_training(task: PipelineTask, opts: PipelineOptions, *, accelerator_type: PipelineChannel,
                  accelerator_count: PipelineChannel, node_selector: PipelineChannel,
                  cpu: tuple[PipelineChannel, PipelineChannel],
                  memory: tuple[PipelineChannel, PipelineChannel]) -> PipelineTask:
    """CUDA image, GPU request, CPU/memory, node selector, toleration, retries and no caching for a training task."""
    task.set_container_image(MER_IMAGE_GPU)
    # What mer_lib.pipeline.device names when the pod sees no GPU.
    task.set_env_variable("MER_IMAGE", MER_IMAGE_GPU)
    kubernetes.use_field_path_as_env(task, env_name=NODE_NAME_ENV, field_path="spec.nodeName")
    task.set_accelerator_type(accelerator_type).set_accelerator_limit(accelerator_count)
    # kfp 2.17.3 turns resource channels into placeholders without adding them to the enclosing
    # If/ParallelFor sub-DAG inputs, so the cluster could not resolve them; registering them fixes that.
    task.register_pipeline_channels([accelerator_type, accelerator_count])
    _cpu_training(task, opts, cpu=cpu, memory=memory)
    kubernetes.add_node_selector_json(task, node_selector)
    # GKE adds this toleration itself for pods requesting nvidia.com/gpu; other clusters may not.
    kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
    return task


def _cpu_training(task: PipelineTask, opts: PipelineOptions, *,
                  cpu: tuple[PipelineChannel, PipelineChannel],
                  memory: tuple[PipelineChannel, PipelineChannel]) -> PipelineTask:
    task.set_cpu_request(cpu[0]).set_cpu_limit(cpu[1])
    task.set_memory_request(memory[0]).set_memory_limit(memory[1])
    task.register_pipeline_channels([*cpu, *memory])  # see _gpu_training
    task.set_retry(num_retries=opts.train_retries, backoff_duration=opts.retry_backoff,
                   backoff_factor=opts.retry_backoff_factor, backoff_max_duration=opts.retry_backoff_max)
    # A retried or re-run training must train (and resume), never reuse a cached result.
    task.set_caching_options(enable_caching=False)
    if opts.checkpoint_pvc:
        kubernetes.mount_pvc(task, pvc_name=opts.checkpoint_pvc, mount_path=CHECKPOINT_MOUNT)
    return task


def build_training_pipeline(opts: PipelineOptions | None = None) -> GraphComponent:
    """The training pipeline with the given compile-time options."""
    opts = opts or PipelineOptions()

    @dsl.pipeline(name=PIPELINE_NAME, description=PIPELINE_DESCRIPTION)
    def mer_training(
        data_uri: str = "",
        synthetic_preset: str = "iemocap",
        data_seed: int = 0,
        extract_shards: int = 8,
        folds: list = ALL_FOLDS,
        epochs: int = 0,
        seed: int = 0,
        training_overrides: list = [],  # noqa: B006 - KFP reads the default; it is never mutated
        recipe: str = "improved",
        noise_types: list = ["gaussian", "impulse"],  # noqa: B006
        noise_levels: list = [20, 40, 60, 80, 100],  # noqa: B006
        noise_seed: int = 1234,
        device: str = "cuda",
        accelerator_type: str = "nvidia.com/gpu",
        accelerator_count: int = 1,
        gpu_node_selector: dict = {"cloud.google.com/gke-accelerator": "nvidia-l4"},  # noqa: B006
        train_cpu_request: str = "3",
        train_cpu_limit: str = "4",
        train_memory_request: str = "8Gi",
        train_memory_limit: str = "10Gi",
        checkpoint_root: str = "",
        registry_uri: str = "",
        model_name: str = "mer-emotion",
        promotion_margin: float = 0.0,
        require_beat_baseline: bool = True,
        force_retrain: bool = False,
        deploy: bool = False,
        serving_image: str = MER_IMAGE_CPU,
        serving_name: str = "mer-emotion",
        serving_namespace: str = "",
        # {} = mer_lib's defaults: a nested dict default would not compile byte-identically (Struct key order).
        serving_resources: dict = {},  # noqa: B006
        canary_traffic_percent: int = 100,
        serving_service_account: str = "",
    ) -> None:
        """Train, evaluate, compare and (maybe) register the robust emotion recognition models.

        Args:
            data_uri: Data source. Empty: the synthetic corpus (no licence restrictions). A gs:// or local feature
                set (featureset.json, A/ V/ L/ target/) is imported; any other gs:// or local folder is raw media
                (an IEMOCAP copy or a media list CSV) and goes through feature extraction.
            synthetic_preset: Synthetic corpus when data_uri is empty: iemocap (5531 utterances),
                iemocap_text (same size, text-dominant), demo or tiny.
            data_seed: Seed of the synthetic corpus.
            extract_shards: Raw media only: feature-extraction tasks run in parallel, each on its share of the
                utterances (1-256); a synthetic corpus or an extracted feature set skips extraction.
            folds: Speaker-independent folds to train and evaluate (IEMOCAP: 1-10).
            epochs: Epochs per training stage; 0 keeps each recipe's (the papers' values).
            seed: Base training seed (each fold adds its number; same seed, same run).
            training_overrides: Config overrides for every stage, e.g. ["train.batch_size=64", "noise.type=impulse"].
            recipe: Training recipe: improved (default: the only recipe whose robust models beat the best baseline in
                bench/results.py; README "Results"), faithful (the papers' reference scripts) or published (NMER's
                published behaviours); stages without that recipe train faithful.
            noise_types: Noise types of the evaluation noise grid.
            noise_levels: Noise intensities T of the evaluation grid (1..100).
            noise_seed: Seed of the evaluation noise (same seed, same noisy test sets for every model).
            device: Device of the GPU training steps: cuda (a step that sees no GPU fails at once, naming node and
                image), auto (GPU when present; for local runs) or cpu. CPU steps always run on the CPU.
            accelerator_type: Kubernetes accelerator resource of the GPU training tasks.
            accelerator_count: GPUs per training task.
            gpu_node_selector: Node selector of the GPU training tasks; on GKE picks the accelerator pool ({} = none).
            train_cpu_request: CPU request of training tasks (default fits a g2-standard-4 node with one L4).
            train_cpu_limit: CPU limit of training tasks.
            train_memory_request: Memory request of training tasks (measured peak about 2.3 GB on the CPU).
            train_memory_limit: Memory limit of training tasks.
            checkpoint_root: Durable checkpoint location so a retried (preempted) training pod resumes: a gs:// prefix
                or the mounted PVC path; empty = a retry starts its fold over.
            registry_uri: Model registry root (gs:// or path), or modelregistry://HOST[:PORT]?artifacts=gs://... to also
                record versions in Kubeflow Model Registry. Empty: no persistent registry; the run registers into its
                own output artifact and always trains.
            model_name: Registered model name.
            promotion_margin: The challenger must beat the champion's primary metric (average_ua) by more than this.
            require_beat_baseline: The challenger must also beat the best baseline trained in this run by more than
                the margin; false = the champion rule alone (the decision and the model card say which rule decided).
            force_retrain: Train even when data, code and settings are unchanged since the champion.
            deploy: After a promotion, create or update a KServe InferenceService serving the new champion (needs a
                persistent registry_uri); off by default, never in a local run.
            serving_image: Image of the serving pod (runs `mer serve`; the CPU image has the serving extra).
            serving_name: Name of the KServe InferenceService.
            serving_namespace: Namespace of the InferenceService; empty = the pipeline pod's own namespace.
            serving_resources: Requests and limits of the serving container ({"requests": {...}, "limits": {...}});
                empty = requests 1 CPU / 2Gi, limits 2 CPU / 4Gi.
            canary_traffic_percent: Traffic share (1-100) of the new revision when the InferenceService already exists.
            serving_service_account: Service account of the serving pod (needs read access to the registry); empty =
                the namespace default.
        """
        gpu = {"accelerator_type": accelerator_type, "accelerator_count": accelerator_count,
               "node_selector": gpu_node_selector, "cpu": (train_cpu_request, train_cpu_limit),
               "memory": (train_memory_request, train_memory_limit)}
        gate = check_retrain(data_uri=data_uri, synthetic_preset=synthetic_preset, data_seed=data_seed, folds=folds,
                             epochs=epochs, seed=seed, training_overrides=training_overrides,
                             recipe=recipe, registry_uri=registry_uri, model_name=model_name,
                             force_retrain=force_retrain, extract_shards=extract_shards)
        gate.set_display_name("should-retrain gate").set_caching_options(enable_caching=False)
        with_resources(gate, "gate")

        # The gate's route: "skip", or the data path ("raw" media are extracted, anything else is imported).
        # Every data step takes the gate's source fingerprint: a cache hit needs the same data, not just the URI.
        route, source_fp = gate.outputs["Output"], gate.outputs["source_fingerprint"]
        with dsl.If(route != SKIP, name="retrain"):
            with dsl.If(route == "raw", name="extract-features"):
                with dsl.ParallelFor(gate.outputs["shards"], name="shards") as shard:
                    part = extract_features(data_uri=data_uri, shard=shard, source_fingerprint=source_fp,
                                            workers=int(float(STEP_RESOURCES["extract"].cpu_request)))
                    with_resources(part.set_display_name("extract features (shard)"), "extract")
                merged = merge_features(data_uri=data_uri, source_fingerprint=source_fp,
                                        partials=dsl.Collected(part.outputs["partial"]))
                with_resources(merged.set_display_name("merge features"), "merge")
            with dsl.Else(name="import-data"):
                data = prepare_data(data_uri=data_uri, synthetic_preset=synthetic_preset, data_seed=data_seed,
                                    source_fingerprint=source_fp)
                with_resources(data.set_display_name("data"), "data")
            # One artifact for the rest of the DAG, whichever data path ran. dsl.OneOf over the two URIs and
            # an importer, not over the artifacts: KFP backends before 2.17 resolve an artifact OneOf to its
            # last branch (kubeflow/pipelines#13436) and kfp.local not at all.
            importer = dsl.importer(artifact_uri=dsl.OneOf(merged.outputs["Output"], data.outputs["Output"]),
                                    artifact_class=Dataset, reimport=False)
            importer.set_display_name("feature set")
            dataset = importer.output
            noise = noise_recipe(dataset=dataset, noise_types=noise_types, noise_levels=noise_levels,
                                 noise_seed=noise_seed, training_overrides=training_overrides, training_recipe=recipe)
            with_resources(noise.set_display_name("noise recipe"), "noise")

            with dsl.ParallelFor(folds, parallelism=opts.fold_parallelism, name="folds") as fold:
                common = {"dataset": dataset, "fold": fold, "epochs": epochs, "seed": seed,
                          "training_overrides": training_overrides, "recipe": recipe,
                          "checkpoint_root": checkpoint_root, "run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER}
                trained = {}
                for family in TRAINED_FAMILIES:
                    on_gpu = family in GPU_FAMILIES
                    task = train_family(family=family, device=device if on_gpu else "cpu", **common).after(noise)
                    if on_gpu:
                        _gpu_training(task, opts, **gpu)
                    else:
                        _cpu_training(task, opts, cpu=gpu["cpu"], memory=gpu["memory"])
                    trained[family] = task.set_display_name(f"train {FAMILY_LABELS.get(family, family)} (fold)")

            evals = {}
            for family, task in trained.items():
                ev = evaluate_model(dataset=dataset, fold_models=dsl.Collected(task.outputs["model"]),
                                    noise=noise.outputs["settings"], device="cpu")
                with_resources(ev.set_display_name(f"evaluate {family}"), "evaluate")
                evals[family] = ev

            compare = compare_models(**{evaluation_input(f): ev.outputs["evaluation"] for f, ev in evals.items()},
                                     registry_uri=registry_uri, model_name=model_name,
                                     promotion_margin=promotion_margin, require_beat_baseline=require_beat_baseline)
            # It reads the live champion: a cached decision could be stale.
            compare.set_display_name("compare").set_caching_options(enable_caching=False)
            with_resources(compare, "compare")

            # One registration task per candidate family: KFP cannot pick an artifact by a runtime value.
            # The branches exclude each other, so their order is immaterial; reversed keeps the compiled
            # task names (register-model = nmer) of packages built before the family registry.
            for i, family in enumerate(reversed(CANDIDATE_FAMILIES)):
                branch = dsl.If if i == 0 else dsl.Elif
                with branch(compare.outputs["Output"] == family, name=f"register-{family}"):
                    reg = register_model(model=evals[family].outputs["run_dir"],
                                         evaluation=evals[family].outputs["evaluation"],
                                         dataset=dataset, gate_decision=gate.outputs["decision"],
                                         comparison=compare.outputs["comparison"], family=family,
                                         registry_uri=registry_uri, model_name=model_name,
                                         promotion_margin=promotion_margin, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
                    reg.set_display_name(f"register {family}").set_caching_options(enable_caching=False)
                    with_resources(reg, "register")
                    with dsl.If(deploy == True, name=f"deploy-{family}"):  # noqa: E712 - a KFP condition
                        dep = deploy_model(registration=reg.outputs["registration"], registry_uri=registry_uri,
                                           serving_image=serving_image, serving_name=serving_name,
                                           serving_namespace=serving_namespace, serving_resources=serving_resources,
                                           canary_traffic_percent=canary_traffic_percent,
                                           serving_service_account=serving_service_account,
                                           run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
                        # It reads the live champion and the live cluster: never reuse a cached result.
                        dep.set_display_name(f"deploy {family}").set_caching_options(enable_caching=False)
                        with_resources(dep, "deploy")

    return mer_training


#: The pipeline with the default compile-time options.
mer_training = build_training_pipeline()
