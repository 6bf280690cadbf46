"""A short report of a prediction run: label distribution and share of utterances per modality subset.

Used by ``mer predict`` (printed) and by the batch-prediction pipeline (KFP ``Metrics`` plus a
Markdown and a self-contained HTML page in the UI).
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from mer_lib.conditions import ALL_CONDITIONS


def summarize(predictions: pd.DataFrame, skipped: pd.DataFrame | None = None,
              info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Counts and shares of predicted labels and of modality subsets, plus accuracy where labels are known.

    Args:
        predictions: the table from :func:`mer_lib.prediction.predict`.
        skipped: the skip list.
        info: the run's info (model name, version ...), copied into the summary.
    """
    n = len(predictions)
    names = [c[2:] for c in predictions.columns if c.startswith("p_")]
    labels = predictions["pred_label"].value_counts().reindex(names, fill_value=0)
    order = [c for c in ALL_CONDITIONS if c in set(predictions["modalities"])]
    order += sorted(set(predictions["modalities"]) - set(order))
    subsets = predictions["modalities"].value_counts().reindex(order, fill_value=0)
    known = predictions[predictions["label"].astype(str) != ""] if "label" in predictions else predictions.iloc[:0]
    out: dict[str, Any] = {
        "predictions": n,
        "utterances": int(predictions["id"].nunique()),
        "skipped": int(skipped["id"].nunique()) if skipped is not None and len(skipped) else 0,
        "label_counts": {k: int(v) for k, v in labels.items()},
        "label_share": {k: (float(v) / n if n else 0.0) for k, v in labels.items()},
        "modality_counts": {k: int(v) for k, v in subsets.items()},
        "modality_share": {k: (float(v) / n if n else 0.0) for k, v in subsets.items()},
        "labelled": len(known),
        "accuracy": float((known["pred_label"] == known["label"]).mean()) if len(known) else None,
    }
    if info:
        out.update({k: info[k] for k in ("model_name", "model_version", "model_type", "fold", "absent") if k in info})
    return out


def metrics_of(summary: dict[str, Any]) -> dict[str, float]:
    """Flat numeric metrics for a KFP ``Metrics`` artifact."""
    m: dict[str, float] = {"predictions": float(summary["predictions"]), "utterances": float(summary["utterances"]),
                           "skipped": float(summary["skipped"])}
    m.update({f"share_label_{k}": round(v, 6) for k, v in summary["label_share"].items()})
    m.update({f"share_modalities_{k}": round(v, 6) for k, v in summary["modality_share"].items()})
    if summary.get("accuracy") is not None:
        m["accuracy_on_labelled"] = round(float(summary["accuracy"]), 6)
    return m


def _rows(counts: dict[str, int], shares: dict[str, float]) -> list[tuple[str, int, str]]:
    return [(k, counts[k], f"{100 * shares[k]:.1f}%") for k in counts]


def render_markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown."""
    model = summary.get("model_name", "model")
    ver = f" v{summary['model_version']}" if summary.get("model_version") else ""
    lines = [f"# Predictions: {model}{ver}", "",
             f"- Utterances predicted: {summary['utterances']} ({summary['predictions']} rows)",
             f"- Skipped (see the skip list): {summary['skipped']}"]
    if summary.get("fold"):
        lines.append(f"- Fold(s): {summary['fold']}; absent modalities: {summary.get('absent', '')}")
    if summary.get("accuracy") is not None:
        lines.append(f"- Accuracy on the {summary['labelled']} rows with a known label: {summary['accuracy']:.4f}")
    for title, key in (("Predicted labels", "label"), ("Modalities present", "modality")):
        lines += ["", f"## {title}", "", "| | count | share |", "|---|---:|---:|"]
        lines += [f"| {k} | {c} | {s} |" for k, c, s in _rows(summary[f"{key}_counts"], summary[f"{key}_share"])]
    return "\n".join(lines) + "\n"


def render_html(summary: dict[str, Any]) -> str:
    """The summary as a self-contained HTML page (tables with inline bars)."""
    model = html.escape(str(summary.get("model_name", "model")))
    ver = f" v{html.escape(str(summary['model_version']))}" if summary.get("model_version") else ""
    parts = ["<!doctype html><html><head><meta charset='utf-8'>", f"<title>Predictions: {model}{ver}</title>",
             "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}"
             ".bar{background:#4a7fb5;height:12px}</style></head><body>",
             f"<h1>Predictions: {model}{ver}</h1>",
             f"<p>{summary['utterances']} utterances predicted ({summary['predictions']} rows), "
             f"{summary['skipped']} skipped.</p>"]
    if summary.get("accuracy") is not None:
        parts.append(f"<p>Accuracy on the {summary['labelled']} rows with a known label: "
                     f"{summary['accuracy']:.4f}</p>")
    for title, key in (("Predicted labels", "label"), ("Modalities present", "modality")):
        parts += [f"<h2>{title}</h2><table><tr><th></th><th>count</th><th>share</th><th></th></tr>"]
        for k, c, s in _rows(summary[f"{key}_counts"], summary[f"{key}_share"]):
            width = int(round(200 * summary[f"{key}_share"][k]))
            parts.append(f"<tr><td>{html.escape(k)}</td><td>{c}</td><td>{s}</td>"
                         f"<td><div class='bar' style='width:{width}px'></div></td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
