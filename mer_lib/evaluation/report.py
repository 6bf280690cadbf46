"""Human-readable reports: Markdown tables like the papers' and a self-contained HTML page.

The HTML embeds its plots as base64 PNG (matplotlib, Agg backend) so it can be attached to a pipeline
run or mailed as a single file.  Every table states the selection protocol that produced it.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: reports are rendered in pipelines and CI

import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mer_lib.evaluation.aggregate import (  # noqa: E402
    CLEAN,
    PROTOCOLS,
    condition_label,
    noise_curve,
    noise_types,
    paper_table,
    pooled_confusion,
    protocol_of,
)
from mer_lib.metrics import AVERAGE  # noqa: E402

METRIC_NAMES: dict[str, str] = {"wa": "WA (accuracy)", "ua": "UA (macro recall)", "f1": "macro F1"}


def fmt(mean: float, std: float | None = None, digits: int = 4) -> str:
    """``0.6512 ± 0.0123``; a missing value is ``-`` and a missing std (one fold) is left out."""
    if mean is None or pd.isna(mean):
        return "-"
    if std is None or pd.isna(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def protocol_line(summary: pd.DataFrame) -> str:
    """One sentence naming the selection protocol of each model."""
    parts = []
    for model in dict.fromkeys(summary["model"]):
        proto = protocol_of(summary, model)
        meaning = "; ".join(PROTOCOLS.get(p, p) for p in proto.split("+"))
        parts.append(f"{model}: `select_on={proto}` ({meaning})")
    return "Selection protocol: " + ", ".join(parts) + "."


def _table_rows(summary: pd.DataFrame, metric: str, noise: str, steps: int
                ) -> tuple[list[str], list[list[str]]]:
    means = paper_table(summary, metric, noise=noise, steps=steps, stat="mean")
    stds = paper_table(summary, metric, noise=noise, steps=steps, stat="std")
    header = ["model", "selection", *[condition_label(c) for c in means.columns]]
    rows = [[m, protocol_of(summary, m), *[fmt(means.loc[m, c], stds.loc[m, c]) for c in means.columns]]
            for m in means.index]
    return header, rows


def _curve_rows(summary: pd.DataFrame, noise: str, metric: str) -> tuple[list[str], list[list[str]]]:
    means = noise_curve(summary, noise, metric)
    stds = noise_curve(summary, noise, metric, stat="std")
    header = ["model", "selection", *[f"T={t}" for t in means.columns]]
    rows = [[m, protocol_of(summary, m), *[fmt(means.loc[m, t], stds.loc[m, t]) for t in means.columns]]
            for m in means.index]
    return header, rows


def _fold_rows(fold_metrics: pd.DataFrame, metric: str) -> tuple[list[str], list[list[str]]]:
    sel = fold_metrics[(fold_metrics["noise"] == CLEAN) & (fold_metrics["condition"] == AVERAGE)
                       & (fold_metrics["metric"] == metric)]
    folds = sorted(set(sel["fold"]))
    header = ["model", *[f"fold {k}" for k in folds]]
    rows = []
    for m in dict.fromkeys(sel["model"]):
        vals = sel[sel["model"] == m].set_index("fold")["value"]
        rows.append([m, *[fmt(vals.get(k)) for k in folds]])
    return header, rows


def render_markdown(summary: pd.DataFrame, fold_metrics: pd.DataFrame, *, title: str,
                    provenance: dict[str, Any] | None = None) -> str:
    """The Markdown report.

    Args:
        summary: cross-fold summary (:func:`~mer_lib.evaluation.aggregate.aggregate_folds`).
        fold_metrics: per-fold tidy metrics (for the per-fold table of the average UA).
        title: report title.
        provenance: ``{label: value}`` lines printed under the title (data, folds, primary metric...).

    Returns:
        Markdown text.
    """
    out = [f"# {title}", ""]
    for k, v in (provenance or {}).items():
        out.append(f"- **{k}**: {v}")
    out += ["", protocol_line(summary), "",
            "Cells are the mean over folds ± the sample standard deviation across folds. "
            "`average` is scored on the pooled six missing-modality conditions of each fold, then "
            "averaged over folds (as in the papers); {a,v,l} (full modality) is not pooled.", ""]
    clean = summary[summary["noise"] == CLEAN]
    if len(clean):
        out += ["## Missing modalities (zero-filled)", ""]
        for metric in ("wa", "ua", "f1"):
            header, rows = _table_rows(summary, metric, CLEAN, 0)
            out += [f"### {METRIC_NAMES[metric]}", "", markdown_table(header, rows), ""]
        header, rows = _fold_rows(fold_metrics, "ua")
        out += ["### Per-fold pooled UA (`average`)", "", markdown_table(header, rows), ""]
    for noise in noise_types(summary):
        out += [f"## Noise: {noise} (missing modalities replaced by noise; intensity T = diffusion steps)", "",
                "Pooled over the six missing conditions, mean ± std over folds.", ""]
        for metric in ("wa", "ua"):
            header, rows = _curve_rows(summary, noise, metric)
            out += [f"### {METRIC_NAMES[metric]} vs noise intensity", "", markdown_table(header, rows), ""]
        top = int(summary.loc[summary["noise"] == noise, "steps"].max())
        header, rows = _table_rows(summary, "ua", noise, top)
        out += [f"### UA per condition at T={top} (the modalities not kept are the noised ones)", "",
                markdown_table(header, rows), ""]
    return "\n".join(out).rstrip() + "\n"


# ------------------------------------------------------------------------------------------- plots

def _png(fig: plt.Figure) -> str:
    """Render and close ``fig``; return its PNG as base64 text."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_condition_scores(summary: pd.DataFrame, metric: str = "ua") -> str | None:
    """Grouped bars: ``metric`` per condition per model (clean protocol), error bars = fold std."""
    means = paper_table(summary, metric)
    if means.empty:
        return None
    stds = paper_table(summary, metric, stat="std").fillna(0.0)
    x = np.arange(len(means.columns))
    width = 0.8 / max(len(means.index), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(x)), 3.6), layout="constrained")
    for i, model in enumerate(means.index):
        ax.bar(x + (i - (len(means.index) - 1) / 2) * width, means.loc[model].to_numpy(float), width,
               yerr=stds.loc[model].to_numpy(float), capsize=2, label=model)
    ax.set_xticks(x, [condition_label(c) for c in means.columns])
    ax.set_ylabel(metric.upper())
    ax.set_ylim(0, 1)
    ax.set_title(f"{metric.upper()} per condition (mean over folds)")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def plot_noise_curves(summary: pd.DataFrame, metric: str = "wa") -> str | None:
    """Lines: pooled ``metric`` against noise intensity T, one line per model and noise type."""
    types = noise_types(summary)
    if not types:
        return None
    fig, axes = plt.subplots(1, len(types), figsize=(4.8 * len(types), 3.4), squeeze=False,
                             layout="constrained")
    for ax, noise in zip(axes[0], types, strict=True):
        means, stds = noise_curve(summary, noise, metric), noise_curve(summary, noise, metric, stat="std")
        for model in means.index:
            ax.errorbar(means.columns.to_numpy(float), means.loc[model].to_numpy(float),
                        yerr=stds.loc[model].fillna(0.0).to_numpy(float), marker="o", capsize=2, label=model)
        ax.set_xlabel("noise intensity T")
        ax.set_ylabel(f"{metric.upper()} (pooled six conditions)")
        ax.set_title(f"{noise} noise")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return _png(fig)


def plot_confusions(confusion: pd.DataFrame, label_names: Sequence[str],
                    conditions: Sequence[str] = (AVERAGE, "avl")) -> str | None:
    """Row-normalised confusion matrices summed over folds: one row of panels per model."""
    clean = confusion[confusion["noise"] == CLEAN]
    models = list(dict.fromkeys(clean["model"]))
    conds = [c for c in conditions if c in set(clean["condition"])]
    if not models or not conds:
        return None
    k = len(label_names)
    fig, axes = plt.subplots(len(models), len(conds), figsize=(3.4 * len(conds), 3.0 * len(models)),
                             squeeze=False, layout="constrained")
    for i, model in enumerate(models):
        for j, cond in enumerate(conds):
            mat = pooled_confusion(clean, model, cond, num_classes=k)
            rate = mat / np.maximum(mat.sum(1, keepdims=True), 1)
            ax = axes[i][j]
            ax.imshow(rate, vmin=0, vmax=1, cmap="Blues")
            for t in range(k):
                for p in range(k):
                    ax.text(p, t, f"{rate[t, p]:.2f}\n{mat[t, p]}", ha="center", va="center", fontsize=7,
                            color="white" if rate[t, p] > 0.5 else "black")
            ax.set_xticks(range(k), label_names, rotation=45, fontsize=7)
            ax.set_yticks(range(k), label_names, fontsize=7)
            ax.set_title(f"{model}: {condition_label(cond)}", fontsize=9)
            ax.set_xlabel("predicted", fontsize=8)
            ax.set_ylabel("true", fontsize=8)
    return _png(fig)


# -------------------------------------------------------------------------------------------- HTML

def html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An escaped HTML table."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(b64: str | None, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">' if b64 else ""


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
img{max-width:100%;display:block;margin:0.5em 0 1.5em}code{background:#f3f3f3;padding:0 3px}"""


def render_html(summary: pd.DataFrame, fold_metrics: pd.DataFrame, confusion: pd.DataFrame, *, title: str,
                label_names: Sequence[str], provenance: dict[str, Any] | None = None) -> str:
    """The self-contained HTML report: the Markdown report's tables plus embedded PNG plots.

    Plots: UA per condition per model, accuracy (and UA) against noise intensity per model when a
    noise grid was run, and row-normalised confusion matrices (pooled six conditions and full
    modality, summed over folds).
    """
    parts = [f"<h1>{html.escape(title)}</h1>", "<ul>"]
    parts += [f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>"
              for k, v in (provenance or {}).items()]
    parts += ["</ul>", f"<p>{html.escape(protocol_line(summary))}</p>",
              "<p>Cells: mean over folds ± sample std across folds. <code>average</code> = pooled six "
              "missing conditions per fold, then the mean over folds; {a,v,l} is not pooled.</p>"]
    if (summary["noise"] == CLEAN).any():
        parts.append("<h2>Missing modalities (zero-filled)</h2>")
        for metric in ("wa", "ua", "f1"):
            header, rows = _table_rows(summary, metric, CLEAN, 0)
            parts += [f"<h3>{METRIC_NAMES[metric]}</h3>", html_table(header, rows)]
        parts.append(_img(plot_condition_scores(summary, "ua"), "UA per condition per model"))
        header, rows = _fold_rows(fold_metrics, "ua")
        parts += ["<h3>Per-fold pooled UA (average)</h3>", html_table(header, rows)]
    types = noise_types(summary)
    if types:
        parts.append("<h2>Noise robustness (missing modalities replaced by noise)</h2>")
        parts.append(_img(plot_noise_curves(summary, "wa"), "accuracy vs noise intensity"))
        parts.append(_img(plot_noise_curves(summary, "ua"), "UA vs noise intensity"))
        for noise in types:
            for metric in ("wa", "ua"):
                header, rows = _curve_rows(summary, noise, metric)
                parts += [f"<h3>{html.escape(noise)}: {METRIC_NAMES[metric]} vs T</h3>",
                          html_table(header, rows)]
    conf = plot_confusions(confusion, label_names)
    if conf:
        parts += ["<h2>Confusion matrices (summed over folds, row-normalised)</h2>", _img(conf, "confusion")]
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(p for p in parts if p) + "\n</body></html>\n")

