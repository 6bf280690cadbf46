"""Raw media -> features, made exactly like the model's training features.

The model's checkpoint records how its training feature set was extracted (``features.settings``:
extractor names and every parameter, written by ``mer extract``).  Those settings rebuild the same
extractors here, so a new clip gets the same frame rates, dimensions and models; its A frames are then
normalised with the training fold's statistics by the loader, as during training.  A model trained on
synthetic features, or on features from an unknown extractor (such as the released MMIN features),
has no settings and refuses raw media.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm

from mer_lib import storage
from mer_lib.conditions import MODALITIES
from mer_lib.features.api import extract_clip
from mer_lib.prediction.errors import PredictionError
from mer_lib.prediction.inputs import ClipSet, RawClip, build_clipset

SYNTHETIC_GENERATOR = "mer_lib.data.synth"


def extraction_settings(features: dict[str, Any], dims: dict[str, int], where: str) -> dict[str, Any]:
    """The extractor settings to use for raw media, after checking they fit the model.

    Args:
        features: the model's feature provenance (``generator``, ``settings``, ``licences``).
        dims: the model's input dimensions per modality.
        where: the model reference (for messages).

    Raises:
        PredictionError: synthetic or unknown training features, or settings whose dimensions differ.
    """
    settings = features.get("settings")
    generator = str(features.get("generator") or "")
    if not settings:
        if "synth" in generator:
            raise PredictionError(f"{where}: trained on synthetic features ({generator}); it cannot score raw "
                                  "media. Pass a feature set with the same synthetic features, or use a model "
                                  "trained on features from `mer extract`")
        raise PredictionError(f"{where}: its training features record no extractor settings (generator "
                              f"{generator or 'unknown'}, e.g. released pre-computed features), so raw media "
                              "cannot be turned into the same features; pass a feature set instead")
    for m in MODALITIES:
        if m in settings and int(settings[m]["dim"]) != int(dims[m]):
            raise PredictionError(f"{where}: extractor settings give {m}={settings[m]['dim']} features but the "
                                  f"model expects {dims[m]}")
    return settings


def _local(ref: str | None) -> str | None:
    return str(storage.localize(ref)) if ref and storage.is_gcs(ref) else ref


def extract_clips(clips: list[RawClip], settings: dict[str, Any], dims: dict[str, int], *,
                  skips: list[dict[str, str]] | None = None, progress: bool | None = None,
                  source: dict | None = None) -> ClipSet:
    """Extract every clip's present modalities; a clip whose media fail is skipped, never fatal.

    Args:
        clips: the utterances (absent modalities are None).
        settings: extractor settings (from :func:`extraction_settings`).
        dims: the model's dimensions (a final check of each sequence).
        skips: skip rows found earlier (e.g. while reading the media list); extended in place.
        progress: show a progress bar (default: when stderr is a terminal).
        source: provenance recorded with the clip set.
    """

    skips = list(skips or [])
    ids, labels = [], []
    seqs: dict[str, list] = {m: [] for m in MODALITIES}
    show = sys.stderr.isatty() if progress is None else progress
    for clip in tqdm(clips, desc="extract", unit="clip", disable=not show or len(clips) < 2):
        refs = dict(zip(MODALITIES, (clip.audio, clip.video, clip.text), strict=True))
        unknown = [m for m in MODALITIES if refs[m] and m not in settings]
        if unknown:
            skips.append({"id": clip.uid, "modality": ",".join(unknown),
                          "reason": f"the model's training features have no extractor for {','.join(unknown)}"})
            continue
        try:
            feats = extract_clip(_local(clip.audio), _local(clip.video), clip.text, settings=settings,
                                 side=clip.side, start=clip.start, end=clip.end)
        except Exception as exc:  # noqa: BLE001 - one bad clip is reported and never stops the others
            reason = str(exc) if isinstance(exc, ValueError) else f"extractor error ({type(exc).__name__}: {exc})"
            skips.append({"id": clip.uid, "modality": "", "reason": reason})
            continue
        ids.append(clip.uid)
        labels.append(clip.label)
        for m in MODALITIES:
            seqs[m].append(feats.get(m))
    return build_clipset(ids, seqs, labels, dims, skips, source or {"type": "raw"})
