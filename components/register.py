"""Registration of the challenger: a new immutable version, then the atomic champion promotion."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components import MER_IMAGE


@dsl.component(base_image=MER_IMAGE, install_kfp_package=False)
def register_model(model: Input[Model], evaluation: Input[Artifact], dataset: Input[Dataset],
                   gate_decision: Input[Artifact], comparison: Input[Artifact], family: str, registry_uri: str,
                   model_name: str, promotion_margin: float, run_id: str, registration: Output[Artifact]) -> int:
    """Register ``model`` and promote it if it still beats the champion.

    Args:
        model: the assembled run directory of the challenger.
        evaluation: its evaluation directory.
        dataset: the training feature set (for the model card).
        gate_decision: the gate's JSON (fingerprints recorded so the next run can skip).
        comparison: the comparison directory; its ``decision.json`` (rule, baselines) goes into the model card.
        family: model family of the challenger.
        registry_uri: registry root (local or gs://); empty = a registry inside ``registration``.
        model_name: registry name.
        promotion_margin: promotion margin on the primary metric.
        run_id: the KFP run id (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``).
        registration: ``registration.json`` (and the registry itself when ``registry_uri`` is empty).

    Returns:
        The registered version number.
    """
    import json
    import os

    from mer_lib.pipeline.promotion import register_and_promote

    os.makedirs(registration.path, exist_ok=True)
    root = registry_uri or os.path.join(registration.path, "registry")
    with open(gate_decision.path) as fh:
        gate = json.load(fh)
    with open(os.path.join(comparison.path, "decision.json")) as fh:
        decision = json.load(fh)
    result = register_and_promote(root, model_name, model.path, evaluation.path, dataset.path, family=family,
                                  run_id=run_id, pipeline_info=gate, margin=promotion_margin,
                                  decision=decision)
    result["registry_uri"] = root
    with open(os.path.join(registration.path, "registration.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    registration.metadata.update(result)
    print(f"registered {model_name} v{result['version']} ({family}) in {root}: {result['reason']}")
    return int(result["version"])
