"""Data component: the synthetic corpus, an imported feature set, or features extracted from raw media."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components import MER_IMAGE


@dsl.component(base_image=MER_IMAGE, install_kfp_package=False)
def prepare_data(data_uri: str, synthetic_preset: str, data_seed: int, dataset: Output[Dataset]) -> str:
    """Materialise the run's feature set.

    Args:
        data_uri: empty or ``synthetic:<preset>`` for the synthetic corpus; a feature set or raw media otherwise.
        synthetic_preset: synthetic preset when ``data_uri`` names none (``iemocap``, ``demo``, ``tiny``).
        data_seed: synthetic generator seed.
        dataset: the feature set (``A/ V/ L/ target/ featureset.json``).

    Returns:
        The feature set's content fingerprint.
    """
    from mer_lib.pipeline.data import prepare_data as prepare

    meta = prepare(data_uri, dataset.path, preset=synthetic_preset, seed=data_seed)
    dataset.metadata.update({
        "fingerprint": meta["fingerprint"], "source": meta["source"], "source_kind": meta["source_kind"],
        "label_names": meta.get("label_names", []), "num_utterances": meta.get("num_utterances", 0),
        "feature_spec": meta.get("spec", {}),
    })
    return meta["fingerprint"]
