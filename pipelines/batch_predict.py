"""The batch-prediction pipeline: input URI + model (version) -> predict -> predictions + summary.

``input_uri`` is a feature set or a media list CSV of raw media; raw media are extracted inside the
prediction step with the extractors, settings and normalisation the model was trained with (a model
trained on synthetic features refuses them).  Any subset of modalities per utterance is accepted.
The prediction step runs on a GPU node when ``use_gpu`` is true (accelerator type/count and the GKE
node selector are parameters, as in the training pipeline) and on a CPU node otherwise; the summary
(label distribution, share of utterances per modality subset) shows up as Metrics, Markdown and HTML.
"""

from kfp import dsl, kubernetes
from kfp.dsl import PipelineTask
from kfp.dsl.graph_component import GraphComponent
from kfp.dsl.pipeline_channel import PipelineChannel

from components import MER_IMAGE_GPU
from components.predict import predict_batch, summarize_predictions
from pipelines.training import NODE_NAME_ENV, PipelineOptions, Resources

PIPELINE_NAME = "mer-batch-predict"
PIPELINE_DESCRIPTION = ("Predict emotions of new utterances (feature set or raw audio/video/text, any subset of "
                        "modalities) with a trained or registered model; writes predictions, a skip list and a "
                        "summary.")


#: The summary reads one predictions file: measured well below 0.5 GB.
SUMMARY = Resources("250m", "1", "512Mi", "1Gi")


def _summary(task: PipelineTask) -> PipelineTask:
    task.set_display_name("summary")
    return (task.set_cpu_request(SUMMARY.cpu_request).set_cpu_limit(SUMMARY.cpu_limit)
            .set_memory_request(SUMMARY.memory_request).set_memory_limit(SUMMARY.memory_limit))


def _resources(task: PipelineTask, cpu: PipelineChannel, memory: PipelineChannel) -> PipelineTask:
    """CPU/memory requests; predictions depend on the model version, so caching stays off."""
    task.set_cpu_request(cpu).set_memory_request(memory)
    task.register_pipeline_channels([cpu, memory])  # see pipelines.training._gpu_training
    task.set_caching_options(enable_caching=False)
    return task


def build_batch_predict_pipeline(opts: PipelineOptions | None = None) -> GraphComponent:
    """The batch-prediction pipeline (``opts`` is accepted for symmetry with the training pipeline)."""
    del opts  # no compile-time options yet: everything is a run parameter

    @dsl.pipeline(name=PIPELINE_NAME, description=PIPELINE_DESCRIPTION)
    def mer_batch_predict(
        input_uri: str = "",
        model_uri: str = "",
        model_version: str = "",
        fold: str = "ensemble",
        absent: str = "auto",
        batch_size: int = 0,
        output_uri: str = "",
        use_gpu: bool = False,
        accelerator_type: str = "nvidia.com/gpu",
        accelerator_count: int = 1,
        gpu_node_selector: dict = {"cloud.google.com/gke-accelerator": "nvidia-l4"},  # noqa: B006
        cpu_request: str = "2",
        memory_request: str = "8Gi",
    ) -> None:
        """Predict a batch of utterances and summarise the predictions.

        Args:
            input_uri: feature-set directory or media list CSV of raw media (gs:// or local).
            model_uri: run directory of `mer train`, or registry model <registry>/<name>.
            model_version: registry version: champion (default when empty), latest or a number.
            fold: fold number, or ensemble (average every fold of the run).
            absent: absent modalities: auto (as trained: zeros, NMER noise), zeros or noise.
            batch_size: items per batch (0 = the recipe's evaluation batch size).
            output_uri: also publish predictions here (.csv/.parquet, create-only); empty = artifact only.
            use_gpu: run the prediction step on a GPU node.
            accelerator_type: GPU resource name.
            accelerator_count: GPUs for the prediction step.
            gpu_node_selector: node labels of the GPU pool.
            cpu_request: CPU request of the prediction step.
            memory_request: memory request of the prediction step.
        """
        common = {"input_uri": input_uri, "model_uri": model_uri, "model_version": model_version, "fold": fold,
                  "absent": absent, "batch_size": batch_size, "output_uri": output_uri}
        # The summary sits in each branch: kfp.local cannot resolve dsl.OneOf over artifacts (2.17.3).
        with dsl.If(use_gpu == True, name="on-gpu"):  # noqa: E712 - KFP builds the condition from ==
            gpu = predict_batch(device="cuda", **common).set_display_name("predict (GPU)")
            gpu.set_container_image(MER_IMAGE_GPU).set_env_variable("MER_IMAGE", MER_IMAGE_GPU)
            kubernetes.use_field_path_as_env(gpu, env_name=NODE_NAME_ENV, field_path="spec.nodeName")
            gpu.set_accelerator_type(accelerator_type).set_accelerator_limit(accelerator_count)
            gpu.register_pipeline_channels([accelerator_type, accelerator_count])
            _resources(gpu, cpu_request, memory_request)
            kubernetes.add_node_selector_json(gpu, gpu_node_selector)
            kubernetes.add_toleration(gpu, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
            _summary(summarize_predictions(predictions=gpu.outputs["predictions"]))
        with dsl.Else(name="on-cpu"):
            cpu = predict_batch(device="cpu", **common).set_display_name("predict (CPU)")
            _resources(cpu, cpu_request, memory_request)
            _summary(summarize_predictions(predictions=cpu.outputs["predictions"]))

    return mer_batch_predict
