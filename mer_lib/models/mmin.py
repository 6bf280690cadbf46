"""``mmin``: MMIN stage 2, the Missing Modality Imagination Network (spec section 3).

Forward: fused = [A(x_a m_a), L(x_l m_l), V(x_v m_v)] (384); recon, latents = AE(fused);
recon_cycle = AE_cycle(recon) (separate weights); logits = FcClassifier(320, [128, 128], C, p=0.5)
of the 5 x 64 latents.  AE and AE_cycle are ResidualAE([256, 128, 64], 5 blocks) in the MMIN
cascade.  Loss = CE + mse_weight * MSE(recon, T) + cycle_weight * MSE(recon_cycle, fused.detach())
with T the frozen utt_fusion teacher's embedding of the complement input (reference: 1, 4, 2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mer_lib.config import ExperimentConfig
from mer_lib.data.dataset import Batch
from mer_lib.models.base import StepOutput
from mer_lib.models.blocks import FcClassifier, ResidualAE, init_reference
from mer_lib.models.encoding import build_encoders, fuse
from mer_lib.models.stage2 import Stage2Model


class MMIN(Stage2Model):
    """Cascade residual autoencoder imagining the missing embeddings, classifier on its latents."""

    name = "mmin"
    teacher_models = ("utt_fusion",)

    def __init__(self, cfg: ExperimentConfig) -> None:
        super().__init__(cfg)
        mp = cfg.model_params
        enc = build_encoders(cfg)
        self.netA, self.netL, self.netV = enc["a"], enc["l"], enc["v"]
        fused_dim = 3 * mp.embd_size
        self.netAE = ResidualAE(fused_dim, mp.ae_layers, mp.ae_blocks, mode="mmin")
        self.netAE_cycle = ResidualAE(fused_dim, mp.ae_layers, mp.ae_blocks, mode="mmin")
        self.netC = FcClassifier(self.classifier_dim(self.netAE.latent_dim), mp.cls_layers, cfg.data.num_classes,
                                 dropout=mp.cls_dropout, use_bn=mp.cls_bn)
        init_reference(self)
        self.init_imagination(self.netAE, self.netAE_cycle)

    def subnets(self) -> dict[str, nn.Module]:
        """Encoders ``A``/``L``/``V``, autoencoders ``AE``/``AE_cycle`` and classifier ``C``."""
        return {"A": self.netA, "L": self.netL, "V": self.netV, "AE": self.netAE, "AE_cycle": self.netAE_cycle,
                "C": self.netC}

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(logits, fused, recon)`` for the masked inputs."""
        fused = fuse(self.encode_student(batch))
        recon, latents = self.netAE(fused)
        return self.netC(self.classifier_input(latents, fused, batch.mask))[0], fused, recon

    def training_step(self, batch: Batch, epoch: int) -> StepOutput:
        """CE + mse_weight * imagination MSE + cycle_weight * cycle MSE."""
        mp = self.cfg.model_params
        logits, fused, recon = self(batch)
        comp, _ = self.teacher_targets(batch, full=False)
        target = fuse(comp)
        recon_cycle, _ = self.netAE_cycle(recon)
        ce = F.cross_entropy(logits, batch.label)
        mse_img = F.mse_loss(recon, target)
        mse_cycle = F.mse_loss(recon_cycle, fused.detach())
        loss = ce + mp.mse_weight * mse_img + mp.cycle_weight * mse_cycle
        terms = {"ce": float(ce.detach()), "mse_img": float(mse_img.detach()),
                 "mse_cycle": float(mse_cycle.detach())}
        return StepOutput(logits=logits, loss=loss, terms=terms)

    def predict_logits(self, batch: Batch) -> torch.Tensor:
        """Evaluation forward: no teacher, no cycle AE."""
        return self(batch)[0]
