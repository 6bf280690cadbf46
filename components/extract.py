"""Feature extraction from raw media, one task per shard, then one merge into the run's feature set."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components import MER_IMAGE


@dsl.component(base_image=MER_IMAGE, install_kfp_package=False)
def extract_features(data_uri: str, shard: str, source_fingerprint: str, workers: int, partial: Output[Artifact]):
    """Extract one shard of the raw media into a partial feature set.

    Args:
        data_uri: raw media: an IEMOCAP release copy or a media list ``.csv`` (local or gs://).
        shard: ``"i/n"``: the utterances whose id hashes to shard ``i`` of ``n``.
        source_fingerprint: the gate's fingerprint of the media (cache key; checked before extracting).
        workers: extraction processes (the pod's CPU request).
        partial: the shard's partial (features, labels, skip report) for the merge step.
    """
    from mer_lib.pipeline.extract import extract_shard

    summary = extract_shard(data_uri, shard, partial.path, expected_fingerprint=source_fingerprint, workers=workers)
    partial.metadata.update({"shard": shard, "extracted": summary["extracted"], "cached": summary["cached"],
                             "source_fingerprint": source_fingerprint})


@dsl.component(base_image=MER_IMAGE, install_kfp_package=False)
def merge_features(data_uri: str, source_fingerprint: str, partials: Input[list[Artifact]],
                   dataset: Output[Dataset]) -> str:
    """Merge the shard partials into one feature set and check its folds.

    Args:
        data_uri: the raw media (recorded as the source).
        source_fingerprint: the gate's fingerprint of the media.
        partials: every shard's partial (``dsl.Collected``).
        dataset: the feature set (``A/ V/ L/ target/ featureset.json``).

    Returns:
        The URI of ``dataset``.
    """
    from mer_lib.pipeline.data import artifact_metadata
    from mer_lib.pipeline.extract import merge_shards

    meta = merge_shards([p.path for p in partials], dataset.path, data_uri=data_uri,
                        expected_fingerprint=source_fingerprint)
    dataset.metadata.update(artifact_metadata(meta))
    return dataset.uri
