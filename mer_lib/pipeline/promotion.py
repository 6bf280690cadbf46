"""Champion/challenger for the pipeline: pick the challenger, decide registration, register and promote.

The comparison step decides with :func:`registration_decision` (the pipeline's ``dsl.If``); the
registration step stores the version and moves the champion pointer with the registry's own
atomic :meth:`~mer_lib.registry.base.Registry.promote_if_better`, which re-checks the rule against
whatever champion exists at that moment (another run may have promoted in between).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from mer_lib import storage
from mer_lib.pipeline.gate import PIPELINE_KEY
from mer_lib.registry import open_registry
from mer_lib.registry.base import decide, metric_value
from mer_lib.registry.from_run import register_run

METRICS_JSON = "metrics.json"


#: The rules that can decide a promotion (recorded in the decision and the model card).
RULE_CHAMPION = "beat the champion"
RULE_CHAMPION_AND_BASELINE = "beat the champion and the best baseline"


@dataclass(frozen=True)
class Decision:
    """Should the challenger be registered (and promoted)?

    Attributes:
        register: register the challenger and let the registry promote it.
        challenger: best candidate family of the comparison.
        challenger_score: its primary metric.
        champion_version: the current champion (0 = none).
        champion_score: the champion's primary metric (None = no champion).
        reason: one sentence a person can read.
        reference: the best baseline of the run ("" = none in the comparison).
        reference_score: its primary metric.
        rule: which rule decided (:data:`RULE_CHAMPION` or :data:`RULE_CHAMPION_AND_BASELINE`).
        baselines: primary metric of every baseline of the run.
    """

    register: bool
    challenger: str
    challenger_score: float
    champion_version: int
    champion_score: float | None
    reason: str
    reference: str = ""
    reference_score: float | None = None
    rule: str = RULE_CHAMPION
    baselines: dict[str, float] = field(default_factory=dict)

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
                          candidates: list[str], margin: float, baselines: list[str] | tuple[str, ...] = (),
                          require_beat_baseline: bool = True) -> Decision:
    """The best candidate of a comparison, and whether it should be registered and promoted.

    The challenger must beat the champion by more than ``margin`` (the registry's rule) and, with
    ``require_beat_baseline``, also the best baseline trained in the same run by more than ``margin``:
    a robust model that loses to a plain network is never shipped.

    Args:
        registry_uri: registry root; empty means a fresh registry (no champion).
        model_name: registry name.
        comparison: ``metrics.json`` of :func:`mer_lib.evaluation.api.compare_runs`.
        candidates: model names that may be registered (not the baselines).
        margin: required gain on the primary metric (>= 0), over the champion and over the best baseline.
        baselines: the run's baseline models; those present in the comparison are reported and, with
            ``require_beat_baseline``, gated on (the strongest one).
        require_beat_baseline: gate on the best baseline too (``False`` = the champion rule alone).

    Raises:
        ValueError: no candidate appears in the comparison, or a baseline is also a candidate.
    """
    metric = comparison["primary_metric"]
    ranked = [m for m in comparison["ranking"] if m in candidates]
    if not ranked:
        raise ValueError(f"none of the candidates {candidates} is in the comparison ({comparison['ranking']})")
    if set(baselines) & set(candidates):
        raise ValueError(f"a baseline cannot be a candidate: {sorted(set(baselines) & set(candidates))}")
    best = ranked[0]
    score = float(comparison["models"][best]["primary"])
    champion = open_registry(registry_uri).champion(model_name) if registry_uri else None
    champ_score = metric_value(champion.metrics, metric, f"{model_name} v{champion.number}") if champion else None
    verdict = decide(score, champ_score, metric=metric, margin=margin, higher_is_better=True,
                     challenger_label=f"challenger {best}",
                     champion_label=f"champion {model_name} v{champion.number}" if champion else "champion")
    base_scores = {b: float(comparison["models"][b]["primary"]) for b in baselines if b in comparison["models"]}
    rule = RULE_CHAMPION_AND_BASELINE if require_beat_baseline and base_scores else RULE_CHAMPION
    if not base_scores:
        return Decision(verdict.promoted, best, score, champion.number if champion else 0, champ_score,
                        verdict.reason, rule=rule)
    reference = max(base_scores, key=lambda b: base_scores[b])
    ref_score = base_scores[reference]
    gain = score - ref_score
    beats_baseline = gain > margin
    register, reason = verdict.promoted, verdict.reason
    if require_beat_baseline and not beats_baseline:
        register = False
        reason = (f"no challenger beats the best baseline: {best} {metric}={score:.4f} is not above {reference} "
                  f"({ref_score:.4f}) by more than margin {margin:.4f}; nothing is promoted")
    elif beats_baseline:
        reason += f"; it beats the best baseline {reference} ({ref_score:.4f}) by {gain:.4f}"
    else:
        reason += (f"; note: {best} {metric}={score:.4f} is not above the best baseline {reference} "
                   f"({ref_score:.4f}) (require_beat_baseline is off)")
    return Decision(register, best, score, champion.number if champion else 0, champ_score, reason,
                    reference, ref_score, rule, base_scores)


def promotion_note(decision: Mapping[str, Any] | None) -> str:
    """The model card's sentence on which rule decided the promotion, and the scores it compared."""
    if not decision:
        return f"Promotion rule: {RULE_CHAMPION} (registered outside a pipeline comparison)."
    lines = [f"Promotion rule: {decision.get('rule', RULE_CHAMPION)}.", f"Decision: {decision.get('reason', '')}"]
    for name, score in sorted((decision.get("baselines") or {}).items()):
        lines.append(f"Baseline `{name}` in the same run: {float(score):.4f}")
    return "\n\n".join(lines)


def register_and_promote(registry_uri: str, model_name: str, model_dir: str, evaluation_dir: str, data_dir: str, *,
                         family: str, run_id: str, pipeline_info: Mapping[str, Any], margin: float,
                         decision: Mapping[str, Any] | None = None) -> dict[str, Any]:
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
        decision: the comparison step's :class:`Decision` (as a dict): its rule, baselines and reason are
            recorded with the version and in its model card. A decision that did not register is refused.

    Returns:
        ``{"version", "uri", "promoted", "reason", "metric", "score", "rule"}``.

    Raises:
        ValueError: ``decision`` says not to register.
    """
    if decision is not None and not decision.get("register", False):
        raise ValueError(f"the comparison decided not to register {family}: {decision.get('reason', '')}")
    doc = read_metrics(evaluation_dir)
    rule = str((decision or {}).get("rule", RULE_CHAMPION))
    extra = {PIPELINE_KEY: dict(pipeline_info),
             "promotion": {"rule": rule, "baselines": dict((decision or {}).get("baselines") or {}),
                           "comparison_reason": str((decision or {}).get("reason", ""))}}
    version, metric = register_run(registry_uri, model_name, model_dir, doc, data_uri=data_dir, run_id=run_id,
                                   model_type=family, notes=promotion_note(decision), extra_config=extra)
    promoted, reason = open_registry(registry_uri).promote_if_better(model_name, version.number, metric=metric,
                                                                     margin=margin)
    return {"model_name": model_name, "version": version.number, "uri": version.uri, "promoted": promoted,
            "reason": reason, "metric": metric, "score": float(doc["metrics"][metric]), "run_id": run_id, "rule": rule}
