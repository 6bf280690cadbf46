"""Should-retrain gate: the pipeline's first step, run before any data is built or GPU requested."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from components import MER_IMAGE


@dsl.component(base_image=MER_IMAGE, install_kfp_package=False)
def check_retrain(data_uri: str, synthetic_preset: str, data_seed: int, folds: list, epochs: int, seed: int,
                  training_overrides: list, recipe: str, registry_uri: str, model_name: str, force_retrain: bool,
                  decision: Output[Artifact]) -> bool:
    """Fingerprint data, code and settings; retrain only if they differ from the champion's.

    Args:
        data_uri: the run's data source (see ``prepare_data``).
        synthetic_preset: synthetic preset.
        data_seed: synthetic generator seed.
        folds: folds to train.
        epochs: epochs per stage (0 = recipe).
        seed: training seed.
        training_overrides: config overrides of every training stage.
        recipe: training recipe (faithful, improved, published).
        registry_uri: registry root; empty = no persistent registry (always train).
        model_name: registry name.
        force_retrain: train regardless.
        decision: JSON with the decision, its reason and the fingerprints recorded at registration.

    Returns:
        Whether to train (a single output, so the local runner can evaluate the ``dsl.If`` on it).
    """
    import json

    from mer_lib.pipeline.data import source_fingerprint
    from mer_lib.pipeline.gate import code_fingerprint, decide_retrain

    settings = {"folds": sorted(int(k) for k in folds), "epochs": epochs, "seed": seed,
                "training_overrides": list(training_overrides), "recipe": recipe}
    result = decide_retrain(registry_uri, model_name, force=force_retrain, settings=settings,
                            source_fp=source_fingerprint(data_uri, preset=synthetic_preset, seed=data_seed),
                            code_fp=code_fingerprint())
    with open(decision.path, "w") as fh:
        json.dump({**result.to_dict(), "settings": settings}, fh, indent=2)
    decision.metadata.update(result.to_dict())
    print(("RETRAIN: " if result.retrain else "SKIP: ") + result.reason)
    return result.retrain
