"""Data component: the synthetic corpus or an imported feature set, checked against the gate's fingerprint.

Raw media do not come here: they go through the sharded extraction step (``components/extract.py``).
"""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components import MER_IMAGE


@dsl.component(base_image=MER_IMAGE, install_kfp_package=False)
def prepare_data(data_uri: str, synthetic_preset: str, data_seed: int, source_fingerprint: str,
                 dataset: Output[Dataset]) -> str:
    """Materialise the run's feature set.

    Args:
        data_uri: empty or ``synthetic:<preset>`` for the synthetic corpus; a feature set otherwise.
        synthetic_preset: synthetic preset when ``data_uri`` names none (``iemocap``, ``demo``, ``tiny``).
        data_seed: synthetic generator seed.
        source_fingerprint: the gate's fingerprint of the source: part of this step's cache key, so new data
            under the same ``data_uri`` is never served from the cache, and checked against the data read.
        dataset: the feature set (``A/ V/ L/ target/ featureset.json``).

    Returns:
        The URI of ``dataset`` (the pipeline imports the feature set of whichever data path ran).
    """
    from mer_lib.pipeline.data import artifact_metadata
    from mer_lib.pipeline.data import prepare_data as prepare

    meta = prepare(data_uri, dataset.path, preset=synthetic_preset, seed=data_seed,
                   expected_fingerprint=source_fingerprint)
    dataset.metadata.update(artifact_metadata(meta))
    return dataset.uri
