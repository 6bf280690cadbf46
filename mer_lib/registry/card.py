"""The model card (``MODEL_CARD.md``) written with every registered version.

Markdown with YAML front matter in the Hugging Face style: what the model is, which data and
feature extractors it was trained on (with their licences, which decide where the model may be
used), its metrics per missing-modality condition, and its intended use and limits.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from mer_lib import storage
from mer_lib.conditions import FULL_CONDITION, MISSING_CONDITIONS

#: Row order of the per-condition table: the six missing conditions, their average, then full.
CONDITION_ROWS = (*MISSING_CONDITIONS, "average", FULL_CONDITION)

INTENDED_USE = (
    "Research on speech/video/text emotion recognition that stays usable when one or two modalities "
    "are missing or noisy: benchmarking, ablations and prototypes on acted, English, dyadic "
    "conversation data such as IEMOCAP."
)
LIMITS = (
    "- Four acted emotion classes only (happy incl. excited, angry, sad, neutral); other or mixed "
    "emotions are forced into one of them.\n"
    "- Trained on few speakers: accuracy on other languages, cultures, recording set-ups and "
    "spontaneous speech is unknown and likely lower.\n"
    "- Emotion recognition must not be used to make decisions about people (hiring, policing, "
    "credit, health) or to infer emotions without their consent.\n"
    "- A model trained on the synthetic corpus only shows that the pipeline works; its scores say "
    "nothing about real data."
)


@dataclass(frozen=True)
class CardContext:
    """What the card says beyond the version's own metadata.

    Attributes:
        model_type: model family (``ifmmin``, ``nmer``, ...).
        data_uri: where the training feature set lives.
        featureset: the feature set's ``featureset.json`` (spec, label names, ``licences``...).
        selection_protocol: how the checkpoint was selected (``validation`` or ``test``).
        primary_metric: the metric promotion compares.
        notes: free text appended to the card.
    """

    model_type: str = ""
    data_uri: str = ""
    featureset: Mapping[str, Any] = field(default_factory=dict)
    selection_protocol: str = ""
    primary_metric: str = "average_ua"
    notes: str = ""

    @classmethod
    def from_featureset(cls, data_uri: str, **kwargs: Any) -> CardContext:
        """Read ``featureset.json`` under ``data_uri`` (local or gs://) if it exists.

        Raises:
            ValueError: the file exists but is not valid JSON.
        """
        meta_uri = storage.join(data_uri, "featureset.json")
        meta: dict[str, Any] = {}
        if storage.exists(meta_uri):
            try:
                meta = json.loads(storage.read_text(meta_uri))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{meta_uri}: malformed JSON: {exc}") from exc
        return cls(data_uri=data_uri, featureset=meta, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form stored in the version's metadata."""
        return {"model_type": self.model_type, "data_uri": self.data_uri, "featureset": dict(self.featureset),
                "selection_protocol": self.selection_protocol, "primary_metric": self.primary_metric,
                "notes": self.notes}


def render_card(*, model_name: str, number: int, metrics: Mapping[str, Any], data_fingerprint: str,
                run_id: str, created_at: str, config_hash: str, context: CardContext) -> str:
    """The Markdown model card of one version."""
    fs = context.featureset
    front = {
        "model_name": model_name,
        "version": number,
        "library_name": "pytorch",
        "pipeline_tag": "audio-classification",
        "tags": ["emotion-recognition", "multimodal", "missing-modality", "kubeflow-pipelines"],
        "model_type": context.model_type or None,
        "data_fingerprint": data_fingerprint,
        "kfp_run_id": run_id or None,
        "primary_metric": context.primary_metric,
        "licences": _licence_lines(fs.get("licences")) or None,
    }
    front = {k: v for k, v in front.items() if v is not None}
    title = f"{model_name} v{number}" + (f" ({context.model_type})" if context.model_type else "")
    parts = [
        "---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "", f"# {title}", "",
        "## Model", "",
        f"- Registered: {created_at}",
        f"- KFP run id: {run_id or 'not recorded (registered outside a pipeline run)'}",
        f"- Config hash: {config_hash}",
        f"- Checkpoint selection: {context.selection_protocol or 'not recorded'}",
        "", "## Data", "",
        f"- Feature set: {context.data_uri or 'not recorded'}",
        f"- Data fingerprint: `{data_fingerprint}`",
    ]
    spec = fs.get("spec")
    if isinstance(spec, Mapping):
        parts.append("- Features: " + ", ".join(f"{k}={v}" for k, v in sorted(spec.items())))
    if fs.get("label_names"):
        parts.append("- Classes: " + ", ".join(str(x) for x in fs["label_names"]))
    parts += [
        "- IEMOCAP is licensed by USC SAIL to each user; no corpus data is shipped with this model, "
        "and a model trained on it inherits the corpus licence terms.",
        "", "## Feature extractors and licences", "",
    ]
    licences = _licence_lines(fs.get("licences"))
    parts += [f"- {line}" for line in licences] if licences else [
        "- Not recorded in the feature set's `featureset.json`: check which extractors produced the "
        "features before any non-research use (openSMILE's ComParE features are non-commercial only)."]
    parts += ["", "## Metrics", "", *_metric_tables(metrics, context.primary_metric)]
    parts += ["", "## Intended use", "", INTENDED_USE, "", "## Limits", "", LIMITS]
    if context.notes:
        parts += ["", "## Notes", "", context.notes]
    return "\n".join(parts) + "\n"


def _licence_lines(licences: Any) -> list[str]:
    """``licences`` from featureset.json as text lines: a mapping, a list of strings or of mappings."""
    if not licences:
        return []
    if isinstance(licences, Mapping):
        return [f"{k}: {_fmt_licence(v)}" for k, v in licences.items()]
    if isinstance(licences, (list, tuple)):
        return [_fmt_licence(item) for item in licences]
    return [str(licences)]


def _fmt_licence(value: Any) -> str:
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)


def flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested metric dicts as one level with dotted keys."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _metric_tables(metrics: Mapping[str, Any], primary: str) -> list[str]:
    """A condition x metric table for ``<condition>_<metric>`` keys, then everything else."""
    flat = flatten(metrics)
    table: dict[str, dict[str, str]] = {}
    used: set[str] = set()
    for key, value in flat.items():
        cond, _, rest = key.partition("_")
        if cond in CONDITION_ROWS and rest and not rest.endswith("_std") and _is_number(value):
            std = flat.get(f"{key}_std")
            cell = f"{value:.4f}" + (f" ± {std:.4f}" if _is_number(std) and math.isfinite(std) else "")
            table.setdefault(cond, {})[rest] = cell
            used.update({key, f"{key}_std"})
    lines: list[str] = []
    if primary in flat and _is_number(flat[primary]):
        lines += [f"Primary metric `{primary}`: **{flat[primary]:.4f}**", ""]
    if table:
        cols = sorted({c for row in table.values() for c in row})
        lines += ["Per condition (mean ± std over folds; 'average' pools the six missing conditions):", "",
                  "| condition | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for cond in CONDITION_ROWS:
            if cond in table:
                lines.append(f"| {cond} | " + " | ".join(table[cond].get(c, "") for c in cols) + " |")
    rest = {k: v for k, v in flat.items() if k not in used}
    if rest:
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {f'{v:.4f}' if _is_number(v) else v} |" for k, v in sorted(rest.items())]
    return lines or ["No metrics were recorded."]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
