"""Where the pipeline's feature set comes from: the synthetic corpus, an existing feature set, or raw media.

One parameter (``data_uri``) picks the source, so that a run from the Kubeflow UI works without
editing anything (empty: the synthetic corpus) and pointing it at real data runs the real thing:

- ``""`` or ``synthetic:<preset>``: :func:`mer_lib.data.synth.generate` (no licence restrictions);
- a directory/URI holding ``featureset.json`` or the released ``A/ V/ L/ target/`` layout: imported as is;
- a ``.csv`` media list or any other directory/URI: raw media (a media list, or an IEMOCAP release copy),
  run through :func:`mer_lib.features.api.extract` with its default (permissively licensed) extractors
  (in the pipeline: the sharded extraction step, :mod:`mer_lib.pipeline.extract`).

Fresh data: the gate fingerprints the source (:func:`source_fingerprint`) and the steps that read it
take that fingerprint as an input, so a cached step is never keyed on the location alone, and
:func:`verify_source` refuses data that changed after the gate looked at it: what a run records is
what it trained on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mer_lib import storage
from mer_lib.data.featureset import (
    METADATA,
    FeatureSetError,
    fingerprint,
    is_feature_set,
    list_folds,
    read_metadata,
    spec_for,
)
from mer_lib.data.folds import guard_folds
from mer_lib.data.synth import GENERATOR_VERSION, generate
from mer_lib.features.api import extract
from mer_lib.media_list import MEDIA_LIST

SYNTHETIC_PREFIX = "synthetic:"


def source_kind(data_uri: str) -> str:
    """Classify ``data_uri`` as ``synthetic``, ``featureset`` or ``raw``.

    Raises:
        FileNotFoundError: a path/URI that holds nothing.
    """
    if not data_uri or data_uri.startswith(SYNTHETIC_PREFIX):
        return "synthetic"
    if data_uri.endswith(".csv"):
        if not storage.exists(data_uri):
            raise FileNotFoundError(f"data_uri {data_uri!r}: media list CSV not found")
        return "raw"
    files = storage.list_files(data_uri)
    if not files:
        raise FileNotFoundError(f"data_uri {data_uri!r}: nothing stored there (expected a feature set or raw media)")
    return "featureset" if is_feature_set(data_uri) else "raw"


def synthetic_preset(data_uri: str, default: str) -> str:
    """The preset named by ``synthetic:<preset>``, else ``default``."""
    if data_uri.startswith(SYNTHETIC_PREFIX):
        return data_uri[len(SYNTHETIC_PREFIX):] or default
    return default


def _listing_digest(uri: str) -> str:
    """SHA-256 over (path, size, version) of every file under ``uri``: cheap change detection for raw media."""
    h = hashlib.sha256()
    if storage.is_gcs(uri):
        bucket, prefix = storage.split_gcs(uri)
        pre = f"{prefix}/" if prefix else ""
        for b in sorted(storage.gcs_client().list_blobs(bucket, prefix=pre), key=lambda b: b.name):
            # The content hash (crc32c) changes with the bytes; a re-upload of identical bytes does not.
            h.update(f"{b.name[len(pre):]}\0{b.size}\0{b.crc32c}\n".encode())
    else:
        root = Path(uri)
        for rel in storage.list_files(uri):
            st = (root / rel).stat()
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def source_fingerprint(data_uri: str, *, preset: str, seed: int) -> str:
    """A fingerprint of the data a run would train on, computed without building the feature set.

    Synthetic: the generator version, preset and seed (generation is deterministic). Feature set: the
    content fingerprint recorded in ``featureset.json`` (computed from the files when absent). Raw
    media: a digest of the file listing with sizes and content hashes (GCS) or mtimes (local); a media
    list CSV: its content hash (prefixed ``manifest:``, its old name, so recorded fingerprints still match).
    """
    kind = source_kind(data_uri)
    if kind == "synthetic":

        blob = {"kind": kind, "generator_version": GENERATOR_VERSION,
                "preset": synthetic_preset(data_uri, preset), "seed": int(seed)}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()
    if kind == "featureset":
        try:
            meta = json.loads(storage.read_text(storage.join(data_uri, METADATA)))
        except FileNotFoundError:
            meta = {}
        if meta.get("fingerprint"):
            return str(meta["fingerprint"])
        root = storage.localize(data_uri)
        return fingerprint(root, spec_for(root))
    if data_uri.endswith(".csv"):
        # A media list names its media; re-encoded media under unchanged names need force_retrain. The prefix
        # keeps the media list's old name: a new one would change every recorded fingerprint and retrain.
        return "manifest:" + hashlib.sha256(storage.read_bytes(data_uri)).hexdigest()
    return "raw:" + _listing_digest(data_uri)


def artifact_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """What a feature-set artifact shows in KFP (MLMD) from :func:`prepare_data`'s or the merge's result."""
    return {"fingerprint": meta["fingerprint"], "source": meta["source"], "source_kind": meta["source_kind"],
            "source_fingerprint": meta["source_fingerprint"], "label_names": meta.get("label_names", []),
            "num_utterances": meta.get("num_utterances", 0), "feature_spec": meta.get("spec", {})}


class DataChangedError(RuntimeError):
    """The data under a URI changed between the gate's fingerprint and a step that reads it."""


def verify_source(data_uri: str, expected: str, *, preset: str = "iemocap", seed: int = 0) -> str:
    """Check that ``data_uri`` still has the fingerprint ``expected`` (the gate's); "" checks nothing.

    Returns:
        The current fingerprint ("" when nothing was checked).

    Raises:
        DataChangedError: the data changed since the gate ran (the run would record data it did not train on).
    """
    if not expected:
        return ""
    now = source_fingerprint(data_uri, preset=preset, seed=seed)
    if now != expected:
        raise DataChangedError(f"data_uri {data_uri or '(synthetic)'!r} changed after the gate fingerprinted it "
                               f"(gate {expected[:16]}..., now {now[:16]}...): this run would train on other data than "
                               "it records; start the pipeline again")
    return now


def prepare_data(data_uri: str, out: str, *, preset: str = "demo", seed: int = 0, workers: int = 1,
                 progress: bool | None = None, expected_fingerprint: str = "") -> dict[str, Any]:
    """Materialise the pipeline's feature set at ``out`` (a new or empty directory).

    Args:
        data_uri: ``""``/``synthetic:<preset>``, a feature set, or raw media (local or gs://).
        out: destination directory (the component's ``Output[Dataset].path``).
        preset: synthetic preset when ``data_uri`` does not name one.
        seed: synthetic generator seed.
        workers: feature-extraction processes (raw media).
        progress: progress bars (default: on for a terminal).
        expected_fingerprint: the gate's :func:`source_fingerprint` of ``data_uri``; checked before the data
            is read and, for an imported feature set, on the copy ("" = no check).

    Returns:
        The feature set's ``featureset.json`` plus ``source`` (the URI), ``source_kind`` and
        ``source_fingerprint``.

    Raises:
        FeatureSetError: an imported feature set without fold lists.
        FoldLeakError: a fold whose splits share an utterance or a speaker.
        FileExistsError: ``out`` is not empty.
        DataChangedError: the data no longer has ``expected_fingerprint``.
    """
    verify_source(data_uri, expected_fingerprint, preset=preset, seed=seed)
    kind = source_kind(data_uri)
    show = bool(progress) if progress is not None else False
    if kind == "synthetic":

        meta = generate(synthetic_preset(data_uri, preset), seed, out, progress=show)
    elif kind == "featureset":
        root = storage.localize(data_uri)
        meta = read_metadata(root)
        if not (root / "target").is_dir():
            raise FeatureSetError(f"{data_uri}: feature set has no target/ folder (fold lists)")
        guard_folds(root, list_folds(root), where=data_uri)  # before the copy: refuse leaking folds
        with storage.staged_dir(out) as stage:
            storage.upload_dir(root, stage, overwrite=True)
        if not meta.get("fingerprint"):
            meta = {**meta, "fingerprint": fingerprint(out, spec_for(out))}
        # The copy is what trains: it must be the data the gate fingerprinted, not a newer upload.
        verify_source(out, expected_fingerprint)
    else:

        source = MEDIA_LIST if data_uri.endswith(".csv") else "iemocap"
        meta = extract(source, data_uri, out, workers=workers)["metadata"]
    if kind != "featureset":
        guard_folds(storage.localize(out), list_folds(storage.localize(out)), where=data_uri or "synthetic corpus")
    return {**meta, "source": data_uri or f"{SYNTHETIC_PREFIX}{preset}", "source_kind": kind,
            "source_fingerprint": expected_fingerprint or source_fingerprint(data_uri, preset=preset, seed=seed)}
