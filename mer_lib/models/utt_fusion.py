"""``utt_fusion``: MMIN stage 1, the full-modality baseline (spec section 3).

Encoders A = LSTM(130->128), L = TextCNN(1024->128), V = LSTM(342->128); fused [A, L, V] (384) ->
FcClassifier(384, [128, 128], C, p=0.3).  Loss: cross-entropy only.  Trained on full modality;
evaluated under missing conditions with the missing inputs zero-filled (the MMIN paper's baseline).

With ``model_params.availability_mask`` (improved recipe) the classifier also reads the (a, v, l)
availability mask (3 more inputs).

``utt_fusion_dropout`` is the same network and recipe trained with modality dropout: each training
sample is drawn under one of the six missing conditions or full modality (zero-filled, uniformly, anew
every epoch), and the epoch is selected on the pooled six missing conditions. It is the fair baseline
for the robust models, which also see missing modalities in training; the zero-filled ``utt_fusion``
is the MMIN paper's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mer_lib.config import ExperimentConfig
from mer_lib.data.dataset import Batch
from mer_lib.models.base import MERModel, StepOutput
from mer_lib.models.blocks import FcClassifier, init_reference
from mer_lib.models.encoding import build_encoders, encode_fused, fuse


class UttFusion(MERModel):
    """Early fusion of the three utterance embeddings, one classifier."""

    name = "utt_fusion"
    needs_teacher = False

    def __init__(self, cfg: ExperimentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        mp = cfg.model_params
        enc = build_encoders(cfg)
        self.netA, self.netL, self.netV = enc["a"], enc["l"], enc["v"]
        cls_in = 3 * mp.embd_size + (3 if mp.availability_mask else 0)
        self.netC = FcClassifier(cls_in, mp.cls_layers, cfg.data.num_classes, dropout=mp.cls_dropout,
                                 use_bn=mp.cls_bn)
        init_reference(self)

    @property
    def train_conditions(self) -> str | list[str]:  # type: ignore[override]
        """``full`` (published), or the one condition of a specialist (``model_params.specialist_condition``),
        trained and selected on it alone: the per-condition reference of bench/condition_ceiling.py."""
        special = self.cfg.model_params.specialist_condition
        return [special] if special else "full"

    def subnets(self) -> dict[str, nn.Module]:
        """``A``, ``L``, ``V`` encoders and classifier ``C``."""
        return {"A": self.netA, "L": self.netL, "V": self.netV, "C": self.netC}

    def forward(self, batch: Batch) -> torch.Tensor:
        """Logits [B, C] for the batch's inputs masked by ``batch.mask``."""
        emb = encode_fused({"a": self.netA, "l": self.netL, "v": self.netV}, batch.features(), batch.mask,
                           batch.lengths, fast=self.cfg.model_params.fast_missing, rows=batch.index)
        fused = fuse(emb)
        if self.cfg.model_params.availability_mask:
            fused = torch.cat([fused, batch.mask.to(fused.dtype)], dim=-1)
        return self.netC(fused)[0]

    def training_step(self, batch: Batch, epoch: int) -> StepOutput:
        """Cross-entropy on the (normally full-modality) batch."""
        logits = self(batch)
        ce = F.cross_entropy(logits, batch.label)
        return StepOutput(logits=logits, loss=ce, terms={"ce": float(ce.detach())})

    def predict_logits(self, batch: Batch) -> torch.Tensor:
        """Evaluation forward (missing inputs zero-filled via the mask)."""
        return self(batch)


class UttFusionDropout(UttFusion):
    """:class:`UttFusion` trained with modality dropout (the fair baseline for the robust models)."""

    name = "utt_fusion_dropout"
    train_conditions = "random_missing_or_full"
