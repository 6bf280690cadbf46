"""Should-retrain gate: the pipeline's first step, run before any data is built or GPU requested."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Output

from components import MER_IMAGE


@dsl.component(base_image=MER_IMAGE, install_kfp_package=False)
def check_retrain(data_uri: str, synthetic_preset: str, data_seed: int, folds: list, epochs: int, seed: int,
                  training_overrides: list, recipe: str, registry_uri: str, model_name: str, force_retrain: bool,
                  extract_shards: int, decision: Output[Artifact]
                  ) -> NamedTuple("GateOutputs", [("Output", str), ("source_fingerprint", str), ("shards", list)]):
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
        extract_shards: shards of the feature extraction when the source is raw media.
        decision: JSON with the decision, its reason and the fingerprints recorded at registration.

    Returns:
        ``Output`` (the route; named so because kfp.local evaluates ``dsl.If`` only on outputs named
        ``Output``): ``skip`` or the data route (``synthetic``, ``featureset``, ``raw``); ``source_fingerprint``:
        the data fingerprint every data-reading step checks (a cached step is never keyed on the location
        alone); ``shards``: the extraction shards (``["0/n", ...]``, empty unless raw media are extracted).
    """
    import json
    from collections import namedtuple

    from mer_lib.pipeline.data import source_fingerprint, source_kind
    from mer_lib.pipeline.extract import shard_specs
    from mer_lib.pipeline.gate import code_fingerprint, decide_retrain, route

    settings = {"folds": sorted(int(k) for k in folds), "epochs": epochs, "seed": seed,
                "training_overrides": list(training_overrides), "recipe": recipe}
    kind = source_kind(data_uri)
    shards = shard_specs(extract_shards)  # checked on every route: a bad value fails the run at its start
    result = decide_retrain(registry_uri, model_name, force=force_retrain, settings=settings,
                            source_fp=source_fingerprint(data_uri, preset=synthetic_preset, seed=data_seed),
                            code_fp=code_fingerprint())
    where = route(result.retrain, kind)
    with open(decision.path, "w") as fh:
        json.dump({**result.to_dict(), "settings": settings, "route": where}, fh, indent=2)
    decision.metadata.update({**result.to_dict(), "route": where})
    print(("RETRAIN: " if result.retrain else "SKIP: ") + result.reason)
    outputs = namedtuple("GateOutputs", ["Output", "source_fingerprint", "shards"])
    return outputs(where, result.source_fingerprint, shards if where == "raw" else [])
