"""Evaluation of one model family: merge its per-fold models, score every condition and the noise grid."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components import MER_IMAGE


@dsl.component(base_image=MER_IMAGE, install_kfp_package=False)
def evaluate_model(dataset: Input[Dataset], fold_models: Input[list[Model]], noise: Input[Artifact],
                   device: str, run_dir: Output[Model], evaluation: Output[Artifact], metrics: Output[Metrics],
                   confusion: Output[ClassificationMetrics], report_md: Output[Markdown],
                   report_html: Output[HTML]) -> float:
    """Assemble the folds into one run directory and evaluate it.

    Args:
        dataset: the feature set.
        fold_models: the per-fold training outputs of one family (``dsl.Collected``).
        noise: the noise recipe of the noise step (evaluation grid types, steps T, seed).
        device: ``auto``, ``cpu`` or ``cuda``.
        run_dir: the merged run directory (``fold_<k>/``, ``run.json``, ``stages/``).
        evaluation: the evaluation directory (tables, ``metrics.json``, reports).
        metrics: flat metrics of the clean protocol (mean over folds).
        confusion: confusion matrix pooled over folds and the six missing conditions.
        report_md: the Markdown report.
        report_html: the self-contained HTML report.

    Returns:
        The primary metric (default: pooled UA over the six missing conditions, mean over folds).
    """
    import shutil

    from mer_lib.evaluation.api import evaluate_run
    from mer_lib.pipeline.evaluation import pooled_confusion_matrix
    from mer_lib.pipeline.noise import read_evaluation_grid
    from mer_lib.pipeline.stages import assemble_run

    grid = read_evaluation_grid(noise.path)
    run = assemble_run([m.path for m in fold_models], run_dir.path)
    doc = evaluate_run(run_dir.path, dataset.path, run["folds"], evaluation.path, noise_grid=True,
                       noise_types=grid["types"], noise_steps=grid["steps"], noise_set=grid["noise_set"],
                       device=device)
    shutil.copyfile(f"{evaluation.path}/report.md", report_md.path)
    shutil.copyfile(f"{evaluation.path}/report.html", report_html.path)
    for key, value in sorted(doc["metrics"].items()):
        if not key.endswith("_std") and value == value:  # NaN (one fold, no std) is not a loggable number
            metrics.log_metric(key, float(value))
    labels, matrix = pooled_confusion_matrix(evaluation.path)
    confusion.log_confusion_matrix(labels, matrix)
    info = {"model": doc["model"], "folds": run["folds"], "primary_metric": doc["primary_metric"],
            "primary": doc["primary"], "config_hash": run["config_hash"], "data_fingerprint": run["data_fingerprint"]}
    for artifact in (run_dir, evaluation):
        artifact.metadata.update(info)
    return float(doc["primary"])
