"""The serving core, free of any web framework: a model loaded once, requests in, predictions out.

:class:`Predictor` loads the model with the loader of ``mer predict``
(:func:`mer_lib.prediction.load_model`) and predicts with its batched path
(:func:`mer_lib.prediction.predict_clips`): all instances of a request go through the network
together, absent modalities are handled as the model was trained to (``absent``), and a fold
ensemble averages its folds. Raw media use the extractors the model's training features recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mer_lib.conditions import MODALITIES
from mer_lib.features.api import extract_clip
from mer_lib.inference.device import resolve_device
from mer_lib.prediction import ClipSet, LoadedModel, PredictionError, load_model, predict_clips
from mer_lib.prediction.api import absent_policy
from mer_lib.prediction.raw import extraction_settings
from mer_lib.serving.instances import (
    RAW_FIELDS,
    BadInstance,
    Instance,
    Limits,
    check_count,
    check_frames,
    check_instances,
    content_id,
    decode_audio,
    parse_instance,
    where,
)

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """One instance's answer."""

    label: str
    probabilities: dict[str, float]
    modalities: str
    uid: str = ""
    given_id: bool = False

    def to_json(self) -> dict[str, Any]:
        """The v1 protocol's prediction object (``id`` only when the instance named itself)."""
        out: dict[str, Any] = {"label": self.label, "probabilities": self.probabilities,
                               "modalities": self.modalities}
        if self.given_id:
            out["id"] = self.uid
        return out


@dataclass
class Predictor:
    """A loaded model plus the serving settings.

    Attributes:
        loaded: the model (one fold or a fold ensemble).
        device: where the networks run.
        absent: absent-modality policy (``auto``, ``zeros``, ``noise``).
        limits: request size limits.
        raw_settings: extractor settings for raw media (None: raw media are refused, see ``raw_reason``).
        raw_reason: why raw media are refused.
    """

    loaded: LoadedModel
    device: torch.device
    absent: str = "auto"
    limits: Limits = field(default_factory=Limits)
    raw_settings: dict[str, Any] | None = None
    raw_reason: str = ""

    @classmethod
    def load(cls, model: str, *, version: str | int | None = None, fold: str | int | None = "ensemble",
             device: str = "cpu", absent: str = "auto", limits: Limits | None = None,
             warm_up: bool = True) -> Predictor:
        """Load the model once and check what it can serve.

        Args:
            model: run/fold directory, checkpoint or registry model (local or gs://), as for ``mer predict``.
            version: registry version (``champion``, ``latest`` or N).
            fold: a fold number or ``ensemble``.
            device: ``cpu``, ``cuda`` or ``auto``.
            absent: absent-modality policy.
            limits: request size limits.
            warm_up: build the raw-media extractors now (the first raw request is then not slow).

        Raises:
            PredictionError: the model cannot be found or loaded, or a bad ``absent``.
            ValueError: ``cuda`` without a GPU.
        """

        dev = resolve_device(device)
        loaded = load_model(model, version, fold, dev)
        absent_policy(loaded.cfg.model, absent)  # reject a bad policy at start, not per request
        out = cls(loaded, dev, absent, limits or Limits())
        out._init_raw(warm_up)
        return out

    def _init_raw(self, warm_up: bool) -> None:
        where_ = f"model {self.loaded.ref.name}"
        try:
            settings = extraction_settings(self.loaded.features(), self.loaded.spec.dims, where_)
        except PredictionError as exc:
            self.raw_reason = str(exc)
            log.info("raw media disabled: %s", exc)
            return
        usable = {raw: m for raw, m in RAW_FIELDS.items() if m in settings}
        if not usable:
            self.raw_reason = f"{where_}: its training features record no audio or text extractor"
            return
        try:
            if warm_up:

                # One short clip builds the extractors (and loads the text model) before readiness.
                extract_clip(np.zeros(1600, np.float32) if "a" in settings else None, None,
                             "hello" if "l" in settings else None, settings=settings)
        except ImportError as exc:
            self.raw_reason = f"raw media need the `features` extra ({exc})"
            log.warning("raw media disabled: %s", self.raw_reason)
            return
        self.raw_settings = settings

    @property
    def label_names(self) -> tuple[str, ...]:
        """Class names in index order."""
        return self.loaded.label_names

    def describe(self) -> dict[str, Any]:
        """What is being served (for logs and the server's start-up line)."""
        ref = self.loaded.ref
        return {"model": ref.name, "version": ref.version, "type": self.loaded.cfg.model,
                "fold": self.loaded.fold_label, "labels": list(self.label_names),
                "dims": dict(self.loaded.spec.dims), "device": str(self.device),
                "absent": absent_policy(self.loaded.cfg.model, self.absent),
                "raw_media": sorted(k for k, m in RAW_FIELDS.items() if m in (self.raw_settings or {})),
                "raw_media_off": self.raw_reason}

    # ------------------------------------------------------------------------------- v1 protocol
    def predict_instances(self, instances: Any) -> list[dict[str, Any]]:
        """The v1 ``predictions`` list for a v1 ``instances`` list (one answer per instance, in order).

        Raises:
            BadInstance: any instance is bad (the whole request is refused; the message names it).
        """
        parsed = self.parse_instances(instances)
        for i, inst in enumerate(parsed):
            self._extract_raw(inst, i)
        return [p.to_json() for p in self.predict_parsed(parsed)]

    def parse_instances(self, instances: Any) -> list[Instance]:
        """Check a v1 ``instances`` list's structure and features (raw media are decoded later).

        Raises:
            BadInstance: the first bad instance.
        """
        items = check_instances(instances, self.limits)
        return [parse_instance(obj, i, self.loaded.spec.dims, self.limits) for i, obj in enumerate(items)]

    def _extract_raw(self, inst: Instance, index: int) -> None:
        """Turn the instance's audio/text into features with the model's training extractors."""
        given = [raw for raw in RAW_FIELDS if getattr(inst, raw) is not None]
        if not given:
            return
        if self.raw_settings is None:
            raise BadInstance(f"{where(index, given[0])}: this server takes no raw media: {self.raw_reason}; "
                              "send features (a, v, l) instead")

        settings = self.raw_settings
        for raw in given:
            m = RAW_FIELDS[raw]
            if m not in settings:
                raise BadInstance(f"{where(index, raw)}: the model's training features have no {m} extractor; "
                                  f"send {m} features instead")
            try:
                if raw == "audio":
                    signal = decode_audio(inst.audio, index, int(settings["a"]["sample_rate"]), self.limits)
                    feats = extract_clip(signal, settings=settings)
                else:
                    feats = extract_clip(None, None, inst.text, settings=settings)
            except BadInstance:
                raise
            except ValueError as exc:  # MediaError, TextError ...: the extractor's own explanation
                raise BadInstance(f"{where(index, raw)}: {exc}") from exc
            inst.seqs[m] = check_frames(feats[m], where(index, raw), m, self.loaded.spec.dims[m], self.limits)

    def min_frames(self) -> dict[str, int]:
        """Shortest sequence each encoder takes (the text CNN needs its widest kernel's frames)."""
        kernels = getattr(self.loaded.cfg.model_params, "text_kernels", None) or [1]
        return {"a": 1, "v": 1, "l": max(int(k) for k in kernels)}

    def predict_parsed(self, parsed: list[Instance]) -> list[Prediction]:
        """One batched forward pass per fold over valid instances."""
        batch = list(parsed)
        dims = self.loaded.spec.dims
        for m, need in self.min_frames().items():
            # Short sequences get trailing zero frames: padding by the feature-set layout (true lengths
            # exclude them), as stored features are pre-padded.
            for inst in batch:
                x = inst.seqs[m]
                if x is not None and len(x) < need:
                    inst.seqs[m] = np.pad(x, ((0, need - len(x)), (0, 0)))
            # The batch pads an absent modality to its longest given sequence; when no instance has
            # it, a throw-away all-padding row makes that stand-in long enough for the encoder.
            if need > 1 and all(inst.seqs[m] is None for inst in batch):
                pad = {k: None for k in MODALITIES}
                pad[m] = np.zeros((need, dims[m]), np.float32)
                batch.append(Instance("padding", pad))
        clips = ClipSet([p.uid for p in batch], {m: [p.seqs[m] for p in batch] for m in MODALITIES},
                        np.full(len(batch), -1, np.int64), source={"type": "serving"})
        df = predict_clips(self.loaded, clips, batch_size=len(batch), absent=self.absent, device=self.device,
                           progress=False).iloc[: len(parsed)]
        names = self.label_names
        probs = df[[f"p_{n}" for n in names]].to_numpy(np.float64)
        return [Prediction(str(lab), {n: float(p) for n, p in zip(names, row, strict=True)}, str(mods),
                           inst.uid, inst.given_id)
                for inst, lab, mods, row in zip(parsed, df["pred_label"], df["modalities"], probs, strict=True)]

    # ------------------------------------------------------------------------- v2 (Open Inference)
    def predict_tensors(self, tensors: dict[str, np.ndarray]) -> list[Prediction]:
        """Predictions for v2 inputs: a batch ``[N, T, D]`` (or one ``[T, D]``) per modality given.

        Every instance of a request has the modalities given as tensors; trailing all-zero frames are
        padding (as in the feature-set layout).

        Raises:
            BadInstance: unknown tensor, no modality, disagreeing batch sizes, or bad frames.
        """
        unknown = sorted(set(tensors) - set(MODALITIES))
        if unknown:
            raise BadInstance(f"inputs.{unknown[0]}: unknown input; expected any of {', '.join(MODALITIES)} "
                              "(FP32 [N, T, D] feature tensors)")
        if not tensors:
            raise BadInstance(f"inputs: no modality; give at least one of {', '.join(MODALITIES)}")
        batch = {m: (x[None] if x.ndim == 2 else x) for m, x in tensors.items()}
        sizes = {m: x.shape[0] for m, x in batch.items()}
        n = next(iter(sizes.values()))
        if len(set(sizes.values())) > 1 or batch[next(iter(batch))].ndim != 3:
            raise BadInstance(f"inputs: expected [N, T, D] tensors with one N for all modalities, got shapes "
                              f"{ {m: list(x.shape) for m, x in tensors.items()} }")
        check_count(n, self.limits)
        dims = self.loaded.spec.dims
        parsed = []
        for i in range(n):
            seqs: dict[str, np.ndarray | None] = {m: None for m in MODALITIES}
            for m, x in batch.items():
                seqs[m] = check_frames(x[i], where(i, m), m, dims[m], self.limits)
            parsed.append(Instance(content_id(seqs, None, None), seqs))
        return self.predict_parsed(parsed)
