"""Training of one model family on one fold: every stage in order, the stage-1 run being the teacher.

One component for every family (``ifmmin``: utt_shared -> ifmmin, ``nmer``: nmer_pretrain -> nmer,
``baseline``: utt_fusion, ...; see :data:`mer_lib.pipeline.families.FAMILIES`); the pipeline sets
image, GPU and resources per family.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import MER_IMAGE


@dsl.component(base_image=MER_IMAGE, install_kfp_package=False)
def train_family(family: str, dataset: Input[Dataset], fold: int, epochs: int, seed: int, device: str,
                 training_overrides: list, recipe: str, checkpoint_root: str, run_id: str, model: Output[Model]):
    """Train every stage of one model family on one fold.

    Args:
        family: the model family (``ifmmin``, ``nmer``, ``baseline``, ...).
        dataset: the feature set.
        fold: the fold to train.
        epochs: epochs per stage (0 = the recipe's).
        seed: training seed.
        device: ``cuda`` (fails at once, naming node and image, without a GPU), ``auto`` or ``cpu``.
        training_overrides: ``key=value`` config overrides.
        recipe: ``faithful``, ``improved`` or ``published`` (stages without it train faithful).
        checkpoint_root: durable location for resuming a retried pod (empty: none).
        run_id: the pipeline run id (part of the checkpoint location).
        model: ``<stage>/fold_<k>/`` run directories and ``family.json``.
    """
    from mer_lib.pipeline.device import require_device
    from mer_lib.pipeline.stages import train_family as train

    require_device(device)  # before any data is read: a GPU step without a GPU fails in seconds
    doc = train(family, dataset.path, fold, model.path, epochs=epochs, seed=seed, device=device,
                overrides=training_overrides, recipe=recipe, checkpoint_root=checkpoint_root, run_id=run_id)
    final = doc["summaries"][doc["final"]]
    model.metadata.update({
        "framework": "pytorch", "family": family, "model": doc["final"], "fold": fold,
        "config_hash": final["config_hash"], "data_fingerprint": final["data_fingerprint"],
        "best_score": final["fold_results"][str(fold)]["best_score"], "versions": final["versions"],
    })
