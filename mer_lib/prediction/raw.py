"""Raw media -> features, made exactly like the model's training features.

The model's checkpoint records how its training feature set was extracted (``features.settings``:
extractor names and every parameter, written by ``mer extract``).  Those settings rebuild the same
extractors here, so a new clip gets the same frame rates, dimensions and models; its A frames are then
normalised with the training fold's statistics by the loader, as during training.  A model trained on
synthetic features, or on features from an unknown extractor (such as the released MMIN features),
has no settings and refuses raw media.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

from tqdm.auto import tqdm

from mer_lib.conditions import MODALITIES
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


def extract_clips(clips: list[RawClip], settings: dict[str, Any], dims: dict[str, int], *,
                  skips: list[dict[str, str]] | None = None, progress: bool | None = None,
                  source: dict | None = None) -> ClipSet:
    """Extract every clip's present modalities; a clip with any failing modality is skipped, not fatal.

    Args:
        clips: the utterances (absent modalities are None).
        settings: extractor settings (from :func:`extraction_settings`).
        dims: the model's dimensions (a final check of each sequence).
        skips: skip rows found earlier (e.g. while reading the manifest); extended in place.
        progress: show a progress bar (default: when stderr is a terminal).
        source: provenance recorded with the clip set.
    """
    from mer_lib.features.driver import extract_utterance
    from mer_lib.features.extractors import Extractors
    from mer_lib.features.records import Utterance

    skips = list(skips or [])
    wanted = {m for c in clips for m, ref in zip(MODALITIES, (c.audio, c.video, c.text), strict=True) if ref}
    # Load only the extractors some clip needs (the lexical model alone takes seconds to load).
    extractors = Extractors({k: v for k, v in settings.items() if k not in MODALITIES or k in wanted})
    ids, labels = [], []
    seqs: dict[str, list] = {m: [] for m in MODALITIES}
    show = sys.stderr.isatty() if progress is None else progress
    for clip in tqdm(clips, desc="extract", unit="clip", disable=not show or len(clips) < 2):
        refs = dict(zip(MODALITIES, (clip.audio, clip.video, clip.text), strict=True))
        present = [m for m in MODALITIES if refs[m]]
        unknown = [m for m in present if m not in extractors.by_modality]
        if unknown:
            skips.append({"id": clip.uid, "modality": ",".join(unknown),
                          "reason": f"the model's training features have no extractor for {','.join(unknown)}"})
            continue
        view = copy.copy(extractors)
        view.by_modality = {m: extractors.by_modality[m] for m in present}
        utt = Utterance(uid=clip.uid, speaker="", session="", gender="", label=clip.label, label_code="",
                        audio=clip.audio, video=clip.video, text=clip.text, start=clip.start, end=clip.end,
                        audio_start=clip.start, audio_end=clip.end, side=clip.side)
        feats, _, problems = extract_utterance(utt, view)
        if problems:
            skips.extend({"id": clip.uid, "modality": p.modality, "reason": p.reason} for p in problems)
            continue
        ids.append(clip.uid)
        labels.append(clip.label)
        for m in MODALITIES:
            seqs[m].append(feats.get(m))
    return build_clipset(ids, seqs, labels, dims, skips, source or {"type": "raw"})
