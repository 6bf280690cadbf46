"""``predict()``: the one entry point used by ``mer predict``, the batch-prediction component and tests.

Output, one row per utterance (or per utterance and condition with ``conditions``):
``id, modalities, pred_label, pred, p_<class>..., label, model, model_version, fold, absent``, where
``modalities`` are the ones the prediction used (e.g. ``al``) and ``label`` is the known true label
(empty when unknown).  A fold ensemble averages the folds' class probabilities.

Absent modalities are handled the way the model was trained to handle them (``absent="auto"``):
zero-filled for MMIN/IF-MMIN and the stage-1 models (their inputs are ``x * mask``), and replaced by
the recipe's scheduled noise for NMER (``cfg.noise``, evaluation mode: seeded per utterance, so a
prediction does not depend on the rest of its batch).  ``absent="zeros"`` gives NMER the zero-filled
protocol instead.
"""

from __future__ import annotations

import io
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mer_lib import storage
from mer_lib.conditions import parse_conditions
from mer_lib.data.dataset import Batch
from mer_lib.data.featureset import is_feature_set
from mer_lib.inference.device import resolve_device
from mer_lib.inference.predict import predict_frame
from mer_lib.media_list import MEDIA_LIST
from mer_lib.models.factory import model_class
from mer_lib.noise import NoiseInjector
from mer_lib.prediction.errors import PredictionError
from mer_lib.prediction.inputs import (
    SKIP_COLUMNS,
    ClipSet,
    read_feature_set,
    read_media_list_clips,
    single_clip,
)
from mer_lib.prediction.loader import ClipLoader
from mer_lib.prediction.model import ENSEMBLE, FoldModel, LoadedModel, load_model
from mer_lib.prediction.raw import extract_clips, extraction_settings

log = logging.getLogger(__name__)

ABSENT_CHOICES = ("auto", "zeros", "noise")
OUTPUT_FORMATS = (".csv", ".parquet")


@dataclass
class PredictionResult:
    """Predictions, the skip list and what produced them."""

    predictions: pd.DataFrame
    skipped: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


def absent_policy(model_name: str, absent: str) -> str:
    """``zeros`` or ``noise`` for a model (``auto``: noise for models trained on noise, else zeros)."""
    if absent not in ABSENT_CHOICES:
        raise PredictionError(f"absent={absent!r}: expected one of {', '.join(ABSENT_CHOICES)}")
    if absent == "auto":
        return "noise" if model_class(model_name).trains_on_noise else "zeros"
    return absent


def load_inputs(loaded: LoadedModel, input_uri: str | None = None, *, audio: str | None = None,
                video: str | None = None, text: str | None = None, clip_id: str | None = None,
                split: str | None = None, progress: bool | None = None) -> ClipSet:
    """Read a feature set, or extract a media list / single clip with the model's extractors.

    Raises:
        PredictionError: nothing or too much given, an unrecognised input, or input the model cannot take.
    """
    single = any(x is not None for x in (audio, video, text))
    if single and input_uri:
        raise PredictionError("give either --input or a single clip (--audio/--video/--text), not both")
    where = f"model {loaded.ref.name}" + (f" v{loaded.ref.version}" if loaded.ref.version else "")
    if input_uri and is_feature_set(input_uri):
        return read_feature_set(input_uri, loaded.spec, loaded.label_names, split=split)
    if split:
        raise PredictionError("--split applies to a feature-set input only")

    if single:
        clips, skips = [single_clip(audio, video, text, clip_id)], []
        source = {"type": "clip", "audio": audio or "", "video": video or "", "text": bool(text)}
    elif input_uri and input_uri.lower().endswith(".csv"):
        clips, skips = read_media_list_clips(input_uri, loaded.label_names)
        source = {"type": MEDIA_LIST, "input": input_uri}
    elif input_uri:
        raise PredictionError(f"{input_uri}: neither a feature set (featureset.json or A/V/L folders) nor a "
                              "media list CSV of raw media")
    else:
        raise PredictionError("nothing to predict: give --input or --audio/--video/--text")
    settings = extraction_settings(loaded.features(), loaded.spec.dims, where)
    return extract_clips(clips, settings, loaded.spec.dims, skips=skips, progress=progress, source=source)


def _noise_transform(fold: FoldModel) -> Callable[[Batch], Batch]:
    return NoiseInjector(fold.cfg.noise)


def predict_clips(loaded: LoadedModel, clips: ClipSet, *, batch_size: int | None = None,
                  conditions: list[str] | None = None, absent: str = "auto", device: str | torch.device = "cpu",
                  progress: bool | None = None) -> pd.DataFrame:
    """Predict a clip set with every fold model and average the probabilities.

    Args:
        loaded: the model (one fold or an ensemble).
        clips: the inputs.
        batch_size: items per batch (default: the recipe's ``train.eval_batch_size``).
        conditions: replicate every utterance under these modality subsets (None: as given).
        absent: ``auto``, ``zeros`` or ``noise`` (see the module docstring).
        device: where to compute.
        progress: progress bar (default: when stderr is a terminal and there is more than one batch).

    Returns:
        The prediction table (see the module docstring).
    """
    names = loaded.label_names
    policy = absent_policy(loaded.cfg.model, absent)
    bs = int(batch_size or loaded.cfg.train.eval_batch_size)
    show = sys.stderr.isatty() if progress is None else progress
    probs, first = None, None
    for fm in loaded.folds:
        loader = ClipLoader(clips, mean=fm.mean, std=fm.std, dims=loaded.spec.dims, batch_size=bs,
                            conditions=conditions, min_lengths={"l": max(fm.cfg.model_params.text_kernels)})
        batches = tqdm(loader, desc=f"predict fold {fm.fold}", unit="batch", leave=False,
                       disable=not show or len(loader) < 2)
        df = predict_frame(fm.model, batches, device=device, label_names=names,
                           transform=_noise_transform(fm) if policy == "noise" else None)
        p = df[[f"p_{n}" for n in names]].to_numpy(np.float64)
        probs = p if probs is None else probs + p
        first = df if first is None else first
    assert first is not None and probs is not None  # at least one fold is always loaded
    probs = probs / len(loaded.folds)
    pred = probs.argmax(1) if len(probs) else np.zeros(0, np.int64)
    out = pd.DataFrame({"id": first["id"], "modalities": first["condition"],
                        "pred_label": [names[k] for k in pred], "pred": pred})
    for k, n in enumerate(names):
        out[f"p_{n}"] = probs[:, k].astype(np.float32)
    out["label"] = [names[k] if k >= 0 else "" for k in first["label"].astype(int)]
    out["model"] = loaded.ref.name
    out["model_version"] = loaded.ref.version
    out["fold"] = loaded.fold_label
    out["absent"] = policy
    return out


def predict(model: str, input_uri: str | None = None, *, version: str | int | None = None,
            fold: str | int | None = ENSEMBLE, audio: str | None = None, video: str | None = None,
            text: str | None = None, clip_id: str | None = None, split: str | None = None,
            conditions: str | list[str] | None = None, absent: str = "auto", batch_size: int | None = None,
            device: str = "cpu", progress: bool | None = None) -> PredictionResult:
    """Load a model, read or extract the inputs, and predict.

    Args:
        model: run/fold directory, checkpoint, or registry model URI (``<registry>/<name>``).
        input_uri: a feature set, or a media list CSV of raw media.
        version: registry version: ``champion`` (default for a registry), ``latest`` or N.
        fold: a fold number or ``ensemble`` (every fold of the run).
        audio: single clip: audio (or any media with an audio stream).
        video: single clip: video.
        text: single clip: the transcript.
        clip_id: single clip: its id (default: the media file's stem).
        split: feature sets only: ``"<fold>:<split>"`` to predict one split in its stored order.
        conditions: also predict every utterance under these modality subsets (e.g. ``"a,al,avl"``).
        absent: ``auto``, ``zeros`` or ``noise``.
        batch_size: items per batch (default: the recipe's evaluation batch size).
        device: ``cpu``, ``cuda`` or ``auto``.
        progress: progress bars (default: on for a terminal).

    Raises:
        PredictionError: bad model reference, input or option; or no utterance could be predicted.
    """
    t0 = time.perf_counter()
    dev = resolve_device(device)
    conds = parse_conditions(conditions) if isinstance(conditions, str) else conditions
    loaded = load_model(model, version, fold, dev)
    clips = load_inputs(loaded, input_uri, audio=audio, video=video, text=text, clip_id=clip_id, split=split,
                        progress=progress)
    t_inputs = time.perf_counter() - t0
    skipped = clips.skip_frame()
    if len(clips) == 0:
        reasons = "; ".join(f"{r.id}: {r.reason}" for r in skipped.head(3).itertuples())
        raise PredictionError(f"no utterance could be predicted ({len(skipped)} skipped: {reasons})")
    t1 = time.perf_counter()
    preds = predict_clips(loaded, clips, batch_size=batch_size, conditions=conds, absent=absent, device=dev,
                          progress=progress)
    t_predict = time.perf_counter() - t1
    if len(skipped):
        log.warning("%d utterance(s) skipped, e.g. %s: %s", skipped["id"].nunique(), skipped.iloc[0]["id"],
                    skipped.iloc[0]["reason"])
    info = {"model": model, "model_name": loaded.ref.name, "model_version": loaded.ref.version,
            "model_type": loaded.cfg.model, "fold": loaded.fold_label, "input": clips.source,
            "label_names": list(loaded.label_names), "absent": absent_policy(loaded.cfg.model, absent),
            "conditions": conds, "device": str(dev), "utterances": len(clips),
            "skipped": int(skipped["id"].nunique()) if len(skipped) else 0,
            "timing": {"inputs_s": t_inputs, "predict_s": t_predict,
                       "utterances_per_s": len(clips) / max(t_inputs + t_predict, 1e-9)}}
    return PredictionResult(preds, skipped, info)


def output_paths(out: str) -> tuple[str, str]:
    """``(predictions, skip list)`` URIs for ``--out`` (``x.csv`` -> ``x.csv`` and ``x.skipped.csv``).

    Raises:
        PredictionError: the extension is not ``.csv`` or ``.parquet``.
    """
    ext = next((e for e in OUTPUT_FORMATS if out.lower().endswith(e)), None)
    if ext is None:
        raise PredictionError(f"--out {out!r}: name a .csv or .parquet file")
    return out, out[: -len(ext)] + ".skipped.csv"


def write_result(result: PredictionResult, out: str, *, overwrite: bool = False) -> tuple[str, str]:
    """Write the predictions (CSV or parquet by extension) and the skip list (CSV, always written).

    Raises:
        FileExistsError: an output exists and ``overwrite`` is false (checked before writing anything).
    """
    pred_uri, skip_uri = output_paths(out)
    if not overwrite:
        for uri in (pred_uri, skip_uri):
            if storage.exists(uri):
                raise FileExistsError(f"{uri}: already exists; refusing to overwrite (pass --overwrite)")
    if pred_uri.lower().endswith(".parquet"):

        buf = io.BytesIO()
        result.predictions.to_parquet(buf, index=False)
        storage.write_bytes(pred_uri, buf.getvalue(), overwrite=overwrite)
    else:
        storage.write_text(pred_uri, result.predictions.to_csv(index=False), overwrite=overwrite)
    skipped = result.skipped if len(result.skipped) else pd.DataFrame(columns=SKIP_COLUMNS)
    storage.write_text(skip_uri, skipped.to_csv(index=False), overwrite=overwrite)
    return pred_uri, skip_uri
