"""Champion/challenger for the pipeline: pick the challenger, decide registration, register and promote.

The comparison step decides with :func:`registration_decision` (the pipeline's ``dsl.If``); the
registration step stores the version and moves the champion pointer with the registry's own
atomic :meth:`~mer_lib.registry.base.Registry.promote_if_better`, which re-checks the rule against
whatever champion exists at that moment (another run may have promoted in between).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mer_lib import storage
from mer_lib.pipeline.gate import PIPELINE_KEY

METRICS_JSON = "metrics.json"


@dataclass(frozen=True)
class Decision:
    """Should the challenger be registered?"""

    register: bool
    challenger: str
    challenger_score: float
    champion_version: int
    champion_score: float | None
    reason: str
    reference: str = ""
    reference_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def read_metrics(evaluation_dir: str) -> dict[str, Any]:
    """The ``metrics.json`` of an evaluation directory.

    Raises:
        FileNotFoundError: not an evaluation directory.
    """
    uri = storage.join(str(evaluation_dir), METRICS_JSON)
    try:
        return json.loads(storage.read_text(uri))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{uri}: missing; not an evaluation directory") from exc


def registration_decision(registry_uri: str, model_name: str, comparison: Mapping[str, Any], *,
                          candidates: list[str], margin: float, reference: str = "") -> Decision:
    """The best candidate of a comparison, and whether it beats the champion by more than ``margin``.

    Args:
        registry_uri: registry root; empty means a fresh registry (no champion).
        model_name: registry name.
        comparison: ``metrics.json`` of :func:`mer_lib.evaluation.api.compare_runs`.
        candidates: model names that may be registered (e.g. not the baseline).
        margin: required gain on the primary metric (>= 0).
        reference: a non-candidate model to compare against (the zero-filled baseline); the decision
            reports its score and says when the challenger is below it, without gating on it.

    Raises:
        ValueError: no candidate appears in the comparison.
    """
    from mer_lib.registry.base import decide, metric_value

    metric = comparison["primary_metric"]
    ranked = [m for m in comparison["ranking"] if m in candidates]
    if not ranked:
        raise ValueError(f"none of the candidates {candidates} is in the comparison ({comparison['ranking']})")
    best = ranked[0]
    score = float(comparison["models"][best]["primary"])
    champion = None
    if registry_uri:
        from mer_lib.registry.uri import UriRegistry

        champion = UriRegistry(registry_uri).champion(model_name)
    champ_score = metric_value(champion.metrics, metric, f"{model_name} v{champion.number}") if champion else None
    verdict = decide(score, champ_score, metric=metric, margin=margin, higher_is_better=True,
                     challenger_label=f"challenger {best}",
                     champion_label=f"champion {model_name} v{champion.number}" if champion else "champion")
    reason, ref_score = verdict.reason, None
    if reference and reference in comparison["models"]:
        ref_score = float(comparison["models"][reference]["primary"])
        if score < ref_score:
            reason += f"; note: {best} {metric}={score:.4f} is below the {reference} reference ({ref_score:.4f})"
    return Decision(verdict.promoted, best, score, champion.number if champion else 0, champ_score, reason,
                    reference if ref_score is not None else "", ref_score)


def register_and_promote(registry_uri: str, model_name: str, model_dir: str, evaluation_dir: str, data_dir: str, *,
                         family: str, run_id: str, pipeline_info: Mapping[str, Any], margin: float) -> dict[str, Any]:
    """Register the challenger as a new version and promote it if it (still) beats the champion.

    Args:
        registry_uri: registry root (local or gs://).
        model_name: registry name.
        model_dir: the assembled run directory of the challenger.
        evaluation_dir: its evaluation directory (``metrics.json``).
        data_dir: the training feature set (for the model card).
        family: model family (``ifmmin``, ``nmer``...).
        run_id: KFP run id.
        pipeline_info: provenance recorded under ``config["pipeline"]`` (fingerprints, parameters).
        margin: promotion margin on the primary metric.

    Returns:
        ``{"version", "uri", "promoted", "reason", "metric", "score"}``.
    """
    from mer_lib.registry.card import CardContext
    from mer_lib.registry.uri import UriRegistry

    doc = read_metrics(evaluation_dir)
    metric = doc["primary_metric"]
    run = json.loads((storage.localize(model_dir) / "run.json").read_text())
    select_on = ", ".join(doc.get("select_on") or [str(run.get("select_on", ""))])
    context = CardContext.from_featureset(data_dir, model_type=family, selection_protocol=select_on,
                                          primary_metric=metric)
    config = {"model": run.get("model"), "config_hash": run.get("config_hash"), "recipe": run.get("recipe"),
              "folds": run.get("folds"), "versions": run.get("versions"), PIPELINE_KEY: dict(pipeline_info)}
    registry = UriRegistry(registry_uri)
    version = registry.register(model_name, model_dir, metrics=doc["metrics"], data_fingerprint=run["data_fingerprint"],
                                config=config, run_id=run_id, card_context=context)
    promoted, reason = registry.promote_if_better(model_name, version.number, metric=metric, margin=margin)
    return {"model_name": model_name, "version": version.number, "uri": version.uri, "promoted": promoted,
            "reason": reason, "metric": metric, "score": float(doc["metrics"][metric]), "run_id": run_id}
