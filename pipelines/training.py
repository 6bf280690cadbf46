"""The training pipeline: gate -> data -> noise -> per-fold IF-MMIN / NMER / baseline training in parallel
-> evaluation of each -> comparison -> registration of the challenger if it beats the champion.

Every parameter has a default, so a run can be started from the Kubeflow UI without editing
anything: it then trains on the synthetic ``iemocap``-sized corpus with the reference recipes.
Pointing ``data_uri`` at a ``gs://`` feature set (``featureset.json`` + ``A/ V/ L/ target/``) or a raw
IEMOCAP copy trains on real data. ``pipelines/run_local.py`` runs the same DAG locally on the small
``demo`` preset with fewer epochs and folds.

Retries: a preempted GPU pod is retried with backoff; it resumes from its last epoch when
``checkpoint_root`` points at a durable location (a ``gs://`` prefix, or the PVC mounted with
``compile.py --checkpoint-pvc``), see :mod:`mer_lib.pipeline.checkpoints`.
"""

from dataclasses import dataclass

from kfp import dsl, kubernetes
from kfp.dsl import PipelineTask
from kfp.dsl.graph_component import GraphComponent
from kfp.dsl.pipeline_channel import PipelineChannel

from components.compare import compare_models
from components.data import prepare_data
from components.evaluate import evaluate_model
from components.gate import check_retrain
from components.noise import noise_recipe
from components.register import register_model
from components.train_baseline import train_baseline
from components.train_ifmmin import train_ifmmin
from components.train_nmer import train_nmer

PIPELINE_NAME = "mer-training"
PIPELINE_DESCRIPTION = ("Multimodal emotion recognition robust to missing and noisy modalities: trains IF-MMIN and "
                        "NMER per fold on GPUs, evaluates them against a baseline and registers the better one "
                        "when it beats the current champion.")
#: Where ``--checkpoint-pvc`` mounts the claim in training pods (use it as ``checkpoint_root``).
CHECKPOINT_MOUNT = "/mnt/mer-checkpoints"
ALL_FOLDS = list(range(1, 11))


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
    """GPU request, CPU/memory, GKE node selector, toleration, retries and no caching for a training task."""
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
        folds: list = ALL_FOLDS,
        epochs: int = 0,
        seed: int = 0,
        training_overrides: list = [],  # noqa: B006 - KFP reads the default; it is never mutated
        recipe: str = "faithful",
        noise_types: list = ["gaussian", "impulse"],  # noqa: B006
        noise_levels: list = [20, 40, 60, 80, 100],  # noqa: B006
        noise_seed: int = 1234,
        device: str = "auto",
        accelerator_type: str = "nvidia.com/gpu",
        accelerator_count: int = 1,
        gpu_node_selector: dict = {"cloud.google.com/gke-accelerator": "nvidia-l4"},  # noqa: B006
        train_cpu_request: str = "4",
        train_cpu_limit: str = "8",
        train_memory_request: str = "16Gi",
        train_memory_limit: str = "32Gi",
        checkpoint_root: str = "",
        registry_uri: str = "",
        model_name: str = "mer-emotion",
        promotion_margin: float = 0.0,
        force_retrain: bool = False,
    ) -> None:
        """Train, evaluate, compare and (maybe) register the robust emotion recognition models.

        Args:
            data_uri: Data source. Empty: the synthetic corpus (no licence restrictions). A gs:// or local feature
                set (featureset.json, A/ V/ L/ target/) is imported; any other gs:// or local folder is raw media
                (an IEMOCAP copy or a manifest) and goes through feature extraction.
            synthetic_preset: Synthetic corpus size when data_uri is empty: iemocap (5531 utterances), demo or tiny.
            data_seed: Seed of the synthetic corpus.
            folds: Speaker-independent folds to train and evaluate (IEMOCAP: 1-10).
            epochs: Epochs per training stage; 0 keeps each recipe's (the papers' values).
            seed: Base training seed (each fold adds its number; same seed, same run).
            training_overrides: Config overrides for every stage, e.g. ["train.batch_size=64", "noise.type=impulse"].
            recipe: Training recipe: faithful (the papers' reference scripts), improved (IF-MMIN: masked pooling and
                an availability mask; NMER: residual classifier input, no BatchNorm) or published (NMER's published
                behaviours); stages without that recipe train faithful.
            noise_types: Noise types of the evaluation noise grid.
            noise_levels: Noise intensities T of the evaluation grid (1..100).
            noise_seed: Seed of the evaluation noise (same seed, same noisy test sets for every model).
            device: Training/evaluation device: auto (GPU when present), cuda or cpu.
            accelerator_type: Kubernetes accelerator resource of the GPU training tasks.
            accelerator_count: GPUs per training task.
            gpu_node_selector: Node selector of the GPU training tasks; on GKE picks the accelerator pool ({} = none).
            train_cpu_request: CPU request of training tasks.
            train_cpu_limit: CPU limit of training tasks.
            train_memory_request: Memory request of training tasks.
            train_memory_limit: Memory limit of training tasks.
            checkpoint_root: Durable checkpoint location so a retried (preempted) training pod resumes: a gs:// prefix
                or the mounted PVC path; empty = a retry starts its fold over.
            registry_uri: Model registry root (gs:// or path). Empty: no persistent registry; the run registers
                into its own output artifact and always trains.
            model_name: Registered model name.
            promotion_margin: The challenger must beat the champion's primary metric (average_ua) by more than this.
            force_retrain: Train even when data, code and settings are unchanged since the champion.
        """
        gpu = {"accelerator_type": accelerator_type, "accelerator_count": accelerator_count,
               "node_selector": gpu_node_selector, "cpu": (train_cpu_request, train_cpu_limit),
               "memory": (train_memory_request, train_memory_limit)}
        gate = check_retrain(data_uri=data_uri, synthetic_preset=synthetic_preset, data_seed=data_seed, folds=folds,
                             epochs=epochs, seed=seed, training_overrides=training_overrides,
                             recipe=recipe, registry_uri=registry_uri, model_name=model_name,
                             force_retrain=force_retrain)
        gate.set_display_name("should-retrain gate").set_caching_options(enable_caching=False)

        with dsl.If(gate.outputs["Output"] == True, name="retrain"):  # noqa: E712 - a KFP condition, not a bool
            data = prepare_data(data_uri=data_uri, synthetic_preset=synthetic_preset, data_seed=data_seed)
            data.set_display_name("data")
            noise = noise_recipe(dataset=data.outputs["dataset"], noise_types=noise_types, noise_levels=noise_levels,
                                 noise_seed=noise_seed, training_overrides=training_overrides)
            noise.set_display_name("noise recipe")

            with dsl.ParallelFor(folds, parallelism=opts.fold_parallelism, name="folds") as fold:
                common = {"dataset": data.outputs["dataset"], "fold": fold, "epochs": epochs, "seed": seed,
                          "device": device, "training_overrides": training_overrides, "recipe": recipe,
                          "checkpoint_root": checkpoint_root, "run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER}
                t_ifmmin = _gpu_training(train_ifmmin(**common).after(noise), opts, **gpu)
                t_ifmmin.set_display_name("train IF-MMIN (fold)")
                t_nmer = _gpu_training(train_nmer(**common).after(noise), opts, **gpu)
                t_nmer.set_display_name("train NMER (fold)")
                t_base = _cpu_training(train_baseline(**common).after(noise), opts, cpu=gpu["cpu"],
                                       memory=gpu["memory"])
                t_base.set_display_name("train baseline (fold)")

            evals = {}
            for family, task in (("ifmmin", t_ifmmin), ("nmer", t_nmer), ("baseline", t_base)):
                ev = evaluate_model(dataset=data.outputs["dataset"], fold_models=dsl.Collected(task.outputs["model"]),
                                    noise=noise.outputs["recipe"], device=device)
                ev.set_display_name(f"evaluate {family}")
                evals[family] = ev

            compare = compare_models(ifmmin_eval=evals["ifmmin"].outputs["evaluation"],
                                     nmer_eval=evals["nmer"].outputs["evaluation"],
                                     baseline_eval=evals["baseline"].outputs["evaluation"],
                                     registry_uri=registry_uri, model_name=model_name,
                                     promotion_margin=promotion_margin)
            # It reads the live champion: a cached decision could be stale.
            compare.set_display_name("compare").set_caching_options(enable_caching=False)

            # One registration task per candidate family: KFP cannot pick an artifact by a runtime value.
            for family, branch in (("nmer", dsl.If), ("ifmmin", dsl.Elif)):
                with branch(compare.outputs["Output"] == family, name=f"register-{family}"):
                    reg = register_model(model=evals[family].outputs["run_dir"],
                                         evaluation=evals[family].outputs["evaluation"],
                                         dataset=data.outputs["dataset"], gate_decision=gate.outputs["decision"],
                                         family=family, registry_uri=registry_uri, model_name=model_name,
                                         promotion_margin=promotion_margin, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
                    reg.set_display_name(f"register {family}").set_caching_options(enable_caching=False)

    return mer_training


#: The pipeline with the default compile-time options.
mer_training = build_training_pipeline()
