"""The compare step: every family's evaluation side by side, and the registration decision.

The families, which of them may be registered and which are baselines all come from
:mod:`mer_lib.pipeline.families`, so the component passes its inputs through unnamed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mer_lib import storage
from mer_lib.evaluation.api import compare_runs
from mer_lib.pipeline.families import BASELINE_FAMILIES, CANDIDATE_FAMILIES, FAMILIES
from mer_lib.pipeline.promotion import Decision, registration_decision

DECISION_JSON = "decision.json"


def compare_families(evaluations: Mapping[str, str], out: str, *, registry_uri: str, model_name: str,
                     margin: float, require_beat_baseline: bool) -> tuple[dict[str, Any], Decision]:
    """Compare the evaluation of every family and decide whether the best candidate is registered.

    Args:
        evaluations: family -> its evaluation directory, one for each of :data:`FAMILIES`.
        out: the comparison directory (tables, ``metrics.json``, reports, ``decision.json``).
        registry_uri: registry root; empty = a fresh registry (no champion).
        model_name: registry name.
        margin: the challenger must beat the champion (and, with ``require_beat_baseline``, the best
            baseline) by more than this.
        require_beat_baseline: gate on the best baseline of this run too.

    Returns:
        The comparison's ``metrics.json`` document and the decision (also written to ``decision.json``).

    Raises:
        ValueError: ``evaluations`` does not name exactly the registered families.
    """
    if set(evaluations) != set(FAMILIES):
        raise ValueError(f"evaluations of {sorted(evaluations)}; the registered families are {sorted(FAMILIES)}")
    names = list(FAMILIES)
    doc = compare_runs([evaluations[f] for f in names], out, names=names)
    decision = registration_decision(registry_uri, model_name, doc, candidates=list(CANDIDATE_FAMILIES),
                                     margin=margin, baselines=list(BASELINE_FAMILIES),
                                     require_beat_baseline=require_beat_baseline)
    storage.write_text(storage.join(out, DECISION_JSON), json.dumps(decision.to_dict(), indent=2), overwrite=True)
    return doc, decision
