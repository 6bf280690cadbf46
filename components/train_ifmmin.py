"""IF-MMIN training of one fold: utt_shared (stage 1, the teacher) then ifmmin (stage 2)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import MER_IMAGE


@dsl.component(base_image=MER_IMAGE, install_kfp_package=False)
def train_ifmmin(dataset: Input[Dataset], fold: int, epochs: int, seed: int, device: str, training_overrides: list,
                 recipe: str, checkpoint_root: str, run_id: str, model: Output[Model]):
    """Train every stage of the IF-MMIN family on one fold.

    Args:
        dataset: the feature set.
        fold: the fold to train.
        epochs: epochs per stage (0 = the recipe's).
        seed: training seed.
        device: ``auto``, ``cpu`` or ``cuda``.
        training_overrides: ``key=value`` config overrides.
        recipe: ``faithful``, ``improved`` or ``published`` (stages without it train faithful).
        checkpoint_root: durable location for resuming a retried pod (empty: none).
        run_id: the pipeline run id (part of the checkpoint location).
        model: ``<stage>/fold_<k>/`` run directories and ``family.json``.
    """
    from mer_lib.pipeline.stages import train_family

    doc = train_family("ifmmin", dataset.path, fold, model.path, epochs=epochs, seed=seed, device=device,
                       overrides=training_overrides, recipe=recipe, checkpoint_root=checkpoint_root, run_id=run_id)
    final = doc["summaries"][doc["final"]]
    model.metadata.update({
        "framework": "pytorch", "family": "ifmmin", "model": doc["final"], "fold": fold,
        "config_hash": final["config_hash"], "data_fingerprint": final["data_fingerprint"],
        "best_score": final["fold_results"][str(fold)]["best_score"], "versions": final["versions"],
    })
