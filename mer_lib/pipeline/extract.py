"""Feature extraction as its own pipeline step: raw media -> shard partials -> one feature set.

The pipeline runs :func:`extract_shard` once per shard in a ``dsl.ParallelFor`` (each pod with its
own CPU and memory request), then :func:`merge_shards` once. Utterances are assigned to shards by a
hash of their id (:func:`mer_lib.features.driver.in_shard`), so a shard's work does not depend on the
listing order, and every shard's task is cached on (source, shard, source fingerprint): a rerun on
unchanged media re-uses finished shards, new media re-extracts.

Only raw media (an IEMOCAP release copy or a media list CSV) go through here; a synthetic corpus or an
already-extracted feature set skips the step (the pipeline's ``dsl.If`` on the gate's route).
"""

from __future__ import annotations

from typing import Any

from mer_lib import storage
from mer_lib.data.featureset import list_folds
from mer_lib.data.folds import guard_folds
from mer_lib.features.api import extract, merge, read_source
from mer_lib.features.driver import in_shard, parse_shard
from mer_lib.inference.device import cpu_quota
from mer_lib.media_list import MEDIA_LIST
from mer_lib.pipeline.data import verify_source

#: Upper bound of ``extract_shards``: more pods than this only adds start-up cost.
MAX_SHARDS = 256
#: Fewest utterances per worker process: each one loads every extractor's models before its first utterance.
MIN_UTTERANCES_PER_WORKER = 25


def shard_specs(num_shards: int) -> list[str]:
    """``["0/n", "1/n", ...]``: the shards the ParallelFor fans out over.

    Raises:
        ValueError: ``num_shards`` outside 1..:data:`MAX_SHARDS`.
    """
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or not 1 <= num_shards <= MAX_SHARDS:
        raise ValueError(f"extract_shards must be an integer in 1..{MAX_SHARDS}, got {num_shards!r}")
    return [f"{i}/{num_shards}" for i in range(num_shards)]


def source_of(data_uri: str) -> str:
    """The extraction source of raw media: ``media_list`` for a ``.csv``, else an ``iemocap`` release copy."""
    return MEDIA_LIST if data_uri.endswith(".csv") else "iemocap"


def extract_shard(data_uri: str, shard: str, out: str, *, expected_fingerprint: str,
                  workers: int = 1) -> dict[str, Any]:
    """Extract one shard of the raw media at ``data_uri`` into the partial folder ``out``.

    Args:
        data_uri: raw media (IEMOCAP release folder or media list CSV; local or gs://).
        shard: ``"i/n"``.
        out: new or empty folder (the task's output artifact).
        expected_fingerprint: the gate's fingerprint of ``data_uri``; the media must still match it.
        workers: extraction processes in this pod, at most: capped at the CPUs this process may use and at
            one per :data:`MIN_UTTERANCES_PER_WORKER` utterances of the shard.

    Returns:
        The extraction summary (counts, the partial's metadata).

    Raises:
        ValueError: a malformed shard.
        DataChangedError: the media changed since the gate fingerprinted them.
    """
    parse_shard(shard)  # a clear error before any listing
    verify_source(data_uri, expected_fingerprint)
    source = source_of(data_uri)
    usable = cpu_quota()
    mine = sum(in_shard(u.uid, parse_shard(shard)) for u in read_source(source, data_uri).utterances)
    workers = max(1, min(workers, usable, -(-mine // MIN_UTTERANCES_PER_WORKER)))
    return extract(source, data_uri, out, shard=shard, workers=workers)


def merge_shards(partials: list[str], out: str, *, data_uri: str, expected_fingerprint: str,
                 max_skip_fraction: float = 0.05) -> dict[str, Any]:
    """Merge every shard's partial into the feature set at ``out`` and check its folds.

    Args:
        partials: the shard partial folders (all ``n`` of them; a missing shard is an error).
        out: new or empty folder (the task's output artifact).
        data_uri: the raw media the partials came from (recorded as the source).
        expected_fingerprint: the gate's fingerprint of ``data_uri`` (recorded beside the content fingerprint).
        max_skip_fraction: fail when more than this share of utterances had unusable media.

    Returns:
        The feature set's ``featureset.json`` plus ``source``, ``source_kind`` and ``source_fingerprint``.

    Raises:
        FoldLeakError: a fold whose splits share an utterance or a speaker.
    """
    meta = merge(partials, out, max_skip_fraction=max_skip_fraction)
    root = storage.localize(out)
    guard_folds(root, list_folds(root), where=data_uri)  # the data step's fold leak guard, for extracted sets too
    return {**meta, "source": data_uri, "source_kind": "raw", "source_fingerprint": expected_fingerprint}
