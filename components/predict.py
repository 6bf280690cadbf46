"""Batch prediction: score new utterances with a trained or registered model, then summarise them."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Output

from components import MER_IMAGE


@dsl.component(base_image=MER_IMAGE, install_kfp_package=False)
def predict_batch(input_uri: str, model_uri: str, model_version: str, fold: str, absent: str, batch_size: int,
                  device: str, output_uri: str, predictions: Output[Dataset]) -> int:
    """Predict every utterance of a feature set or a media list of raw media (extracted like the training data).

    Args:
        input_uri: feature-set directory or media list CSV of raw media (local path or gs:// URI).
        model_uri: run directory of ``mer train`` or registry model ``<registry>/<name>``.
        model_version: registry version (``champion``, ``latest`` or a number); "" = champion / plain directory.
        fold: a fold number or ``ensemble``.
        absent: absent modalities: ``auto`` (as trained), ``zeros`` or ``noise``.
        batch_size: items per batch; 0 = the model recipe's evaluation batch size.
        device: ``auto``, ``cpu`` or ``cuda`` (fails at once without a GPU).
        output_uri: also publish the predictions here (.csv or .parquet, never overwritten); "" = only the artifact.
        predictions: folder with ``predictions.csv``, ``predictions.skipped.csv`` and ``info.json``.

    Returns:
        The number of utterances predicted.
    """
    import json
    import os

    from mer_lib.pipeline.device import require_device
    from mer_lib.prediction import predict, write_result

    require_device(device)  # the GPU branch fails at once, naming node and image, when the pod sees no GPU
    result = predict(model_uri, input_uri, version=model_version or None, fold=fold, absent=absent,
                     batch_size=batch_size or None, device=device, progress=False)
    os.makedirs(predictions.path, exist_ok=True)
    write_result(result, os.path.join(predictions.path, "predictions.csv"))
    with open(os.path.join(predictions.path, "info.json"), "w") as fh:
        json.dump(result.info, fh, indent=2, default=str)
    if output_uri:
        write_result(result, output_uri)
    predictions.metadata.update({k: result.info[k] for k in ("model_name", "model_version", "model_type", "fold",
                                                             "absent", "utterances", "skipped")})
    predictions.metadata["input_type"] = result.info["input"].get("type", "")
    return int(result.info["utterances"])


@dsl.component(base_image=MER_IMAGE, install_kfp_package=False)
def summarize_predictions(predictions: Input[Dataset], metrics: Output[Metrics], report_md: Output[Markdown],
                          report_html: Output[HTML]) -> None:
    """Label distribution and share of utterances per modality subset, as Metrics and a report.

    Args:
        predictions: the folder written by :func:`predict_batch`.
        metrics: counts and shares (``share_label_<class>``, ``share_modalities_<subset>``).
        report_md: the summary as Markdown.
        report_html: the summary as a self-contained HTML page.
    """
    import json
    import os

    import pandas as pd

    from mer_lib.prediction.summary import metrics_of, render_html, render_markdown, summarize

    preds = pd.read_csv(os.path.join(predictions.path, "predictions.csv"), dtype={"id": str, "label": str},
                        keep_default_na=False)
    skipped = pd.read_csv(os.path.join(predictions.path, "predictions.skipped.csv"), dtype=str)
    with open(os.path.join(predictions.path, "info.json")) as fh:
        info = json.load(fh)
    summary = summarize(preds, skipped, info)
    for key, value in metrics_of(summary).items():
        metrics.log_metric(key, value)
    with open(report_md.path, "w") as fh:
        fh.write(render_markdown(summary))
    with open(report_html.path, "w") as fh:
        fh.write(render_html(summary))
