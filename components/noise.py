"""Noise step: resolve and check the training noise recipe and the evaluation noise grid."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components import MER_IMAGE


@dsl.component(base_image=MER_IMAGE, install_kfp_package=False)
def noise_recipe(dataset: Input[Dataset], noise_types: list, noise_levels: list, noise_seed: int,
                 training_overrides: list, training_recipe: str, settings: Output[Artifact]):
    """Validate the noise recipes against the feature set and write them for the evaluation steps.

    Args:
        dataset: the feature set.
        noise_types: noise types of the evaluation grid.
        noise_levels: noise intensities T of the evaluation grid (diffusion steps; recorded as ``steps``).
        noise_seed: seed of the evaluation noise.
        training_overrides: the training overrides (``noise.*`` keys reach NMER's training recipe).
        training_recipe: the run's training recipe (faithful, improved, published): its noise settings are recorded.
        settings: the noise settings, JSON ``{"evaluation": ..., "training": ..., "training_recipe": ...}``.
    """
    import json

    from mer_lib.data.featureset import read_metadata
    from mer_lib.pipeline.noise import build_noise_recipe

    doc = build_noise_recipe(dataset.path, types=noise_types, steps=[int(t) for t in noise_levels],
                             seed=noise_seed, training_overrides=training_overrides, recipe=training_recipe)
    with open(settings.path, "w") as fh:
        json.dump(doc, fh, indent=2)
    settings.metadata.update({"types": doc["evaluation"]["types"], "steps": doc["evaluation"]["steps"],
                            "seed": noise_seed, "modalities": doc["modalities"],
                            # From the files: the imported dataset artifact carries no metadata of its own.
                            "data_fingerprint": read_metadata(dataset.path).get("fingerprint", "")})
