"""``ifmmin``: IF-MMIN stage 2, invariant-feature-based imagination (spec section 4.2).

Forward, with m the sample's (a, v, l) mask:

1. e_m = enc_m(x_m m_m); fused = [e_A, e_L, e_V] (384).
2. H' = [Inv(e_A), Inv(e_L), Inv(e_V)] (384); a missing modality contributes Inv(enc(0)).
3. recon, latents = IF-IM(fused, H'); logits = FcClassifier(320, [128, 128], C, p=0.5)(latents).

IF-IM is a ResidualAE([256, 128, 64], 5 blocks) fed with H' at every block, in one of two variants
(``model_params.ifim_variant``): ``head`` (the 2024-09 code, a real cascade; default) or ``paper``
(the code the paper's numbers came from: block i reads fused + i H', decoders 1-4 unused).

Loss = CE + mse_weight * MSE(recon, T) + invariant_weight * MSE(H', H), where T is the frozen
utt_shared teacher's embedding of the complement input and H = teacher Shared(teacher enc(x)) on
the full input (w_inv = 100: the published script's ``--consistent_weight=100`` does not parse; the
authors' sibling script passes ``--invariant_weight=100``).  No CMD term in stage 2.
3,782,852 trainable parameters with the default SharedEncoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mer_lib.config import ExperimentConfig
from mer_lib.data.dataset import Batch
from mer_lib.models.base import StepOutput
from mer_lib.models.blocks import FcClassifier, ResidualAE, SharedEncoder, init_reference
from mer_lib.models.encoding import FUSION_ORDER, build_encoders, fuse
from mer_lib.models.stage2 import Stage2Model


class IFMMIN(Stage2Model):
    """MMIN's imagination cascade driven by modality-invariant features."""

    name = "ifmmin"
    teacher_models = ("utt_shared",)
    init_from_teacher = {"netA": "netA", "netL": "netL", "netV": "netV", "netInv": "netShared"}

    def __init__(self, cfg: ExperimentConfig) -> None:
        super().__init__(cfg)
        mp = cfg.model_params
        enc = build_encoders(cfg)
        self.netA, self.netL, self.netV = enc["a"], enc["l"], enc["v"]
        self.netInv = SharedEncoder(mp.embd_size, variant=mp.shared_encoder, dropout=mp.shared_dropout)
        self.netAE = ResidualAE(3 * mp.embd_size, mp.ae_layers, mp.ae_blocks, mode=mp.ifim_variant)
        self.netC = FcClassifier(self.classifier_dim(self.netAE.latent_dim), mp.cls_layers, cfg.data.num_classes,
                                 dropout=mp.cls_dropout, use_bn=mp.cls_bn)
        init_reference(self)
        self.init_imagination(self.netAE)

    def subnets(self) -> dict[str, nn.Module]:
        """Encoders ``A``/``L``/``V``, invariant encoder ``Inv``, IF-IM ``AE`` and classifier ``C``."""
        return {"A": self.netA, "L": self.netL, "V": self.netV, "Inv": self.netInv, "AE": self.netAE,
                "C": self.netC}

    def forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(logits, recon, invariant H')`` for the masked inputs."""
        emb = self.encode_student(batch)
        invariant = fuse({m: self.netInv(emb[m]) for m in FUSION_ORDER})
        fused = fuse(emb)
        recon, latents = self.netAE(fused, invariant)
        return self.netC(self.classifier_input(latents, fused, batch.mask))[0], recon, invariant

    @torch.no_grad()
    def targets(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher targets ``(T, H)``: complement-input embeddings and full-input invariant features."""
        comp, whole = self.teacher_targets(batch, full=True)
        shared = self.teacher.netShared
        return fuse(comp), fuse({m: shared(whole[m]) for m in FUSION_ORDER})

    def training_step(self, batch: Batch, epoch: int) -> StepOutput:
        """CE + mse_weight * imagination MSE + invariant_weight * invariant MSE."""
        mp = self.cfg.model_params
        logits, recon, invariant = self(batch)
        target_img, target_inv = self.targets(batch)
        ce = F.cross_entropy(logits, batch.label)
        mse_img = F.mse_loss(recon, target_img)
        mse_inv = F.mse_loss(invariant, target_inv)
        loss = ce + mp.mse_weight * mse_img + mp.invariant_weight * mse_inv
        terms = {"ce": float(ce.detach()), "mse_img": float(mse_img.detach()), "mse_inv": float(mse_inv.detach())}
        return StepOutput(logits=logits, loss=loss, terms=terms)

    def predict_logits(self, batch: Batch) -> torch.Tensor:
        """Evaluation forward: no teacher."""
        return self(batch)[0]
