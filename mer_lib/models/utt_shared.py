"""``utt_shared``: IF-MMIN stage 1, invariant-feature pretraining (spec section 4.1).

e_m = enc_m(x_m) and s_m = Shared(e_m) for m in {A, L, V} (one SharedEncoder for all three);
logits = FcClassifier(768, [128, 128], C, p=0.3)([e_A, e_L, e_V, s_A, s_L, s_V]).
Loss = CE + cmd_weight * (CMD(s_L, s_V) + CMD(s_L, s_A) + CMD(s_A, s_V)) / 3 with CMD of order
``cmd_k`` = 5; ``cmd_variant`` / ``cmd_eps`` / ``cmd_bounds`` select the reference (unscaled) or the
original range-scaled CMD.  2,145,796 trainable parameters with the default SharedEncoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mer_lib.config import ExperimentConfig
from mer_lib.data.dataset import Batch
from mer_lib.models.base import MERModel, StepOutput
from mer_lib.models.blocks import FcClassifier, SharedEncoder, init_reference
from mer_lib.models.cmd import cmd
from mer_lib.models.encoding import MASK_COLUMN, build_encoders, encode_fused, fuse


class UttShared(MERModel):
    """Specific + invariant utterance features, classified jointly; CMD aligns the invariant ones."""

    name = "utt_shared"
    needs_teacher = False
    #: the invariant features' pairs, in the reference order (CMD(s_L, s_V), CMD(s_L, s_A), CMD(s_A, s_V))
    cmd_pairs: tuple[tuple[str, str], ...] = (("l", "v"), ("l", "a"), ("a", "v"))

    def __init__(self, cfg: ExperimentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        mp = cfg.model_params
        enc = build_encoders(cfg)
        self.netA, self.netL, self.netV = enc["a"], enc["l"], enc["v"]
        self.netShared = SharedEncoder(mp.embd_size, variant=mp.shared_encoder, dropout=mp.shared_dropout)
        cls_in = 6 * mp.embd_size + (3 if mp.availability_mask else 0)
        self.netC = FcClassifier(cls_in, mp.cls_layers, cfg.data.num_classes, dropout=mp.cls_dropout,
                                 use_bn=mp.cls_bn)
        init_reference(self)

    @property
    def train_conditions(self) -> str:  # type: ignore[override]
        """``full`` (published) or ``random_missing_or_full`` (``model_params.stage1_train_conditions``):
        with text dominating, a stage 1 trained on full modality barely trains the audio and video
        encoders, and those encoders are what stage 2 starts from and imagines towards."""
        return self.cfg.model_params.stage1_train_conditions

    def subnets(self) -> dict[str, nn.Module]:
        """``A``, ``L``, ``V`` encoders, the shared encoder ``Shared`` and classifier ``C``."""
        return {"A": self.netA, "L": self.netL, "V": self.netV, "Shared": self.netShared, "C": self.netC}

    def encode(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Return ``(logits [B, C], specific embeddings, invariant features)``, each ``{"a", "l", "v"} -> [B, emb]``."""
        emb = encode_fused({"a": self.netA, "l": self.netL, "v": self.netV}, batch.features(), batch.mask,
                           batch.lengths, fast=self.cfg.model_params.fast_missing, rows=batch.index)
        shared = {m: self.netShared(e) for m, e in emb.items()}
        x = torch.cat([fuse(emb), fuse(shared)], dim=-1)
        if self.cfg.model_params.availability_mask:
            x = torch.cat([x, batch.mask.to(x.dtype)], dim=-1)
        return self.netC(x)[0], emb, shared

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return ``(logits [B, C], invariant features {"a", "l", "v"} -> [B, emb])``."""
        logits, _, shared = self.encode(batch)
        return logits, shared

    def cmd_loss(self, shared: dict[str, torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of the three pairwise CMDs between the invariant features (reference pair order).

        With a ``mask`` [B, 3] that drops modalities, each pair is matched on the rows that have both (a
        zero-filled modality's constant features would otherwise be pulled onto the real ones); a pair
        with fewer than two such rows is left out, and with none left the loss is 0.
        """
        mp = self.cfg.model_params
        kw = {"k": mp.cmd_k, "eps": mp.cmd_eps, "variant": mp.cmd_variant, "bounds": mp.cmd_bounds or None}
        present = None if mask is None else mask > 0.5
        if present is not None and bool(present.all()):
            present = None  # full modality (the published case): no row selection
        terms = []
        for i, j in self.cmd_pairs:
            if present is None:
                terms.append(cmd(shared[i], shared[j], **kw))
                continue
            rows = present[:, MASK_COLUMN[i]] & present[:, MASK_COLUMN[j]]
            if int(rows.sum()) >= 2:
                terms.append(cmd(shared[i][rows], shared[j][rows], **kw))
        return torch.stack(terms).mean() if terms else shared["l"].sum() * 0.0

    def cmd_weight(self, epoch: int) -> float:
        """CMD weight at 0-based ``epoch``: ``cmd_weight``, ramped up from 0 over ``cmd_warmup_epochs``.

        The warm-up lets cross-entropy shape the encoders (text first: it carries most of the class
        signal) before the moment matching pulls the three invariant distributions together.
        """
        mp = self.cfg.model_params
        if mp.cmd_warmup_epochs <= 0:
            return mp.cmd_weight
        return mp.cmd_weight * min(1.0, epoch / mp.cmd_warmup_epochs)

    def training_step(self, batch: Batch, epoch: int) -> StepOutput:
        """CE + cmd_weight * mean pairwise CMD.

        With ``cmd_into_encoders: false`` the CMD is computed on Shared(e.detach()): it trains the shared
        encoder only, so moment matching cannot reshape a modality's encoder (text's, above all, whose
        class structure the weaker modalities' distributions do not have); CE still trains everything.
        """
        logits, emb, shared = self.encode(batch)
        ce = F.cross_entropy(logits, batch.label)
        if not self.cfg.model_params.cmd_into_encoders:
            shared = {m: self.netShared(e.detach()) for m, e in emb.items()}
        moments = self.cmd_loss(shared, batch.mask)
        loss = ce + self.cmd_weight(epoch) * moments
        return StepOutput(logits=logits, loss=loss, terms={"ce": float(ce.detach()),
                                                           "cmd": float(moments.detach())})

    def predict_logits(self, batch: Batch) -> torch.Tensor:
        """Evaluation forward (missing inputs zero-filled via the mask)."""
        return self(batch)[0]
