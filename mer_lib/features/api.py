"""Python API of the extraction: whole corpora (:func:`extract`, :func:`merge`) and single clips
(:func:`extract_clip`, used at prediction time with the settings a model was trained with)."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

import numpy as np

from mer_lib import storage
from mer_lib.features.driver import parse_shard, run_listing, write_partial
from mer_lib.features.extractors import ExtractorChoice, Extractors, settings_for
from mer_lib.features.iemocap import SideRule, read_iemocap
from mer_lib.features.media import load_audio, load_video_frames
from mer_lib.features.media_list_source import read_media_list_source
from mer_lib.features.merge import merge_partials
from mer_lib.features.records import Listing, label_set
from mer_lib.media_list import MEDIA_LIST, canonical_source

log = logging.getLogger(__name__)
SOURCES = ("iemocap", MEDIA_LIST)


def read_source(source: str, input: str, *, modalities: str = "avl", labels: str = "4class",
                side: SideRule = SideRule(), text_source: str = "transcript") -> Listing:
    """List the utterances of an IEMOCAP release folder or a media list CSV."""
    source = canonical_source(source)
    if source == "iemocap":
        return read_iemocap(input, label_set(labels), modalities=modalities, side=side, text_source=text_source)
    if source == MEDIA_LIST:
        return read_media_list_source(input, label_set(labels), modalities=modalities)
    raise ValueError(f"unknown source {source!r}; choose one of {SOURCES}")


def default_work_dir(input: str, out: str, shard: tuple[int, int] | None) -> Path:
    """Per-run cache folder under the mer cache, stable across restarts of the same command."""
    key = hashlib.sha256(f"{input}|{out}|{shard}".encode()).hexdigest()[:16]
    return storage.cache_root() / "extract" / key


def extract(source: str, input: str, out: str, *, modalities: str = "avl", choice: ExtractorChoice | None = None,
            labels: str = "4class", side: SideRule = SideRule(), text_source: str = "transcript", workers: int = 1,
            shard: str | tuple[int, int] | None = None, work_dir: str | Path | None = None,
            max_skip_fraction: float = 0.05, overwrite: bool = False) -> dict:
    """Extract a corpus into a feature set at ``out`` (or, with ``shard``, a partial to merge later).

    Args:
        source: ``iemocap`` (release folder) or ``media_list`` (CSV; ``manifest``, its old name, is accepted).
        input: folder / CSV, local or ``gs://``.
        out: feature-set folder (or the shard's partial folder), local or ``gs://``.
        modalities: any of ``a``, ``v``, ``l``.
        choice: extractor choices (default: logmel, landmarks at 10 fps, MiniLM tokens).
        labels: label-set name (``4class`` merges happy and excited).
        side: IEMOCAP dialog-video crop rule.
        text_source: IEMOCAP text from ``transcript`` or ForcedAlignment words (``alignment``).
        workers: processes extracting in parallel.
        shard: ``"i/n"``: extract only this shard and write a partial.
        work_dir: per-utterance cache (default under ``MER_CACHE_DIR``); a rerun re-uses valid entries.
        max_skip_fraction: fail when more than this fraction of utterances has bad input.
        overwrite: replace an existing ``out``.

    Returns:
        Summary: counts (extracted, cached, complete, skipped), output location, and the metadata.
    """
    modalities = "".join(m for m in "avl" if m in modalities.replace(",", ""))
    if not modalities:
        raise ValueError("no modality selected; use any of a, v, l")
    shard_t = parse_shard(shard) if isinstance(shard, str) or shard is None else tuple(shard)
    choice = choice or ExtractorChoice()
    listing = read_source(source, input, modalities=modalities, labels=labels, side=side, text_source=text_source)
    settings = settings_for(choice, modalities)
    work = Path(work_dir) if work_dir else default_work_dir(str(input), str(out), shard_t)
    log.info("work dir (resumable cache): %s", work)
    run = run_listing(listing, settings, work, workers=workers, shard=shard_t)
    summary = {"extracted": run["extracted"], "cached": run["cached"], "work_dir": str(work), "out": str(out)}
    if shard_t is not None:
        with storage.staged_dir(out, overwrite=overwrite) as root:
            meta = write_partial(root, listing, settings, run, work, shard_t)
        return {**summary, "partial": meta}
    with tempfile.TemporaryDirectory(prefix="mer-partial-") as tmp:
        write_partial(Path(tmp), listing, settings, run, work, None)
        # Keep a copy of the skip report beside the cache: it survives a failed skip-fraction check.
        (work / "skip_report.csv").write_bytes((Path(tmp) / "skip_report.csv").read_bytes())
        meta = merge_partials([tmp], str(out), max_skip_fraction=max_skip_fraction, overwrite=overwrite)
    return {**summary, "metadata": meta}


def merge(partials: list[str], out: str, *, max_skip_fraction: float = 0.05, overwrite: bool = False,
          allow_missing_shards: bool = False) -> dict:
    """Combine shard partials into the feature set at ``out`` (see :func:`merge_partials`)."""
    return merge_partials(partials, out, max_skip_fraction=max_skip_fraction, overwrite=overwrite,
                          allow_missing_shards=allow_missing_shards)


def extract_clip(audio: str | Path | np.ndarray | None = None, video: str | Path | None = None,
                 text: str | None = None, *, settings: dict, side: str = "full",
                 start: float | None = None, end: float | None = None) -> dict[str, np.ndarray]:
    """Features of one clip, computed exactly as the corpus described by ``settings`` was.

    Args:
        audio: a media file, or a mono float waveform already at ``settings["a"]["sample_rate"]``.
        video: a media file.
        text: the transcript.
        settings: the ``settings`` dict of the training feature set's ``featureset.json``.
        side: crop of the video (``full``, ``left``, ``right``).
        start: optional window start in seconds (audio and video).
        end: optional window end in seconds.

    Returns:
        ``{modality: [T, D] float32}`` for every modality given (absent inputs are left out), plus
        ``"v_face"`` (bool per V row's source frame) when video is given.

    Raises:
        ValueError: an input the settings do not cover, or unusable media (MediaError, NoFaceError, TextError).
    """
    ex = Extractors(settings).by_modality  # built once per process and settings (see extractors.build)
    out: dict[str, np.ndarray] = {}
    for m, given in (("a", audio), ("v", video), ("l", text)):
        if given is not None and m not in ex:
            raise ValueError(f"modality {m!r} given but the feature-set settings have no {m!r} extractor")
    if audio is not None:
        sig = (np.asarray(audio, np.float32) if isinstance(audio, np.ndarray)
               else load_audio(audio, settings["a"]["sample_rate"], start, end))
        out["a"] = ex["a"](sig)
    if video is not None:
        frames = load_video_frames(video, settings["v"]["fps"], start, end, side)
        out["v"], out["v_face"] = ex["v"](frames.images)
    if text is not None:
        out["l"] = ex["l"](text)
    return out
