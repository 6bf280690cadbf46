"""NMER (Fan et al., arXiv 2311.16114): noise-robust MER with a noise scheduler and a conditional VAE.

Stage 1, ``nmer_pretrain`` (the published ``utt_shared_002``, spec section 5.2): per modality an
invariant encoder and a specific encoder; e_m = spec_m(x_m), s_m = Shared(inv_m(x_m));
logits = FcClassifier(768, [128, 128], C, p=0.2)([e_A, e_L, e_V, s_A, s_L, s_V]);
loss = CE + cmd_weight * mean pairwise CMD_5(s_L, s_A, s_V).  The published model only runs at batch
size 64 (it reshapes batch tensors for its diffusion branch); this one works at any batch size.

The published stage 1 also trains a ``diffusers`` UNet2DConditionModel on the batch's specific
features reshaped into one "image", conditioned on the shared features, with weight 100.  It is off
(``model_params.diffusion_regulariser: false``) and not implemented: its output never reaches the
classifier or stage 2, the loss term reduces to mean(UNet_out^2) (a penalty on the UNet alone), and
it would add the ``diffusers`` dependency and the fixed batch size.

Stage 2, ``nmer`` (spec section 5.4), with the frozen stage-1 model as teacher:

1. x~ = the batch with its missing modalities replaced by scheduled noise
   (:class:`mer_lib.noise.NoiseInjector`, ``train=True``, recipe ``cfg.noise``);
2. fused = [A_spec(x~_A), L_spec(x~_L), V_spec(x~_V)] (384); c = [Inv(A_inv(x~_A)), ...] (384);
3. x_rec, mu, logvar = ConditionVAE(fused, c); logits = FcClassifier(384, [128, 128], C, p=0.1, BN)(x_rec);
4. loss = CE + invariant_weight * MSE(c, H) + mse_weight * MSE(x_rec, T_spec) + kl_weight * KL, with
   the teacher's T_spec = [T_A_spec(x_A), ...] and H = [T_Shared(T_A_inv(x_A)), ...] on the CLEAN FULL input.

Evaluation (:meth:`NMER.predict_logits`) reads ``x * mask`` like every other model, so the zero-filled
missing protocol applies unchanged; noisy evaluation comes from a ``NoiseInjector`` applied to the
batch upstream (it marks the corrupted modalities available).

Published behaviour kept behind flags (the default is the fixed one):

* ``vae_attention: cross_batch``: samples of a batch attend to each other in the VAE (default
  ``per_sample``: a prediction does not depend on the rest of its batch);
* ``kl_reduction: sum``: KL summed over the batch (default ``mean``, weighted by ``kl_weight``);
* ``eval_sample_z: true``: sample z at evaluation (default: use mu, deterministic);
* ``noise.fresh_eval_noise`` / ``noise.noise_pads``: fresh test noise, noise over batch padding;
* dropped evaluation samples: the published loaders use ``drop_last`` on every split, dropping a
  random tail of the val/test set; the engine here never drops evaluation samples.

Improvements, each a named option with the published value as default (``nmer_improved.yaml`` sets
the first two): ``nmer_classifier_input`` (``residual`` = x_rec + fused, as the published code did
before commit 60da665; ``concat`` = [x_rec, c]), ``cls_bn`` (no BatchNorm in the classifier),
``vae_decoder_output`` (tanh / linear instead of Sigmoid), ``vae_init: pytorch`` (the transformer
keeps PyTorch's initialisation) and ``kl_warmup_epochs``.  With x_rec as the only classifier input
the faithful model is slow to start (at chance for its first ~200 steps): the KL term collapses z to
the prior and c varies little across samples (README "Improved NMER", ``bench/nmer_ablation.py``).

Parameter counts of the faithful stage 2 (default SharedEncoder, paper dimensions): six encoders
3,994,624; invariant encoder 33,024; VAE 13,020,160 (transformer 12,814,720, mu/logvar 98,432,
decoder 107,008); classifier with BatchNorm 66,820; total 17,114,628 trainable.  The published
model also holds the unused ``fc_out`` (172,416), 17,287,044 in all (the "about 17.3 M").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mer_lib.config import ConfigError, ExperimentConfig
from mer_lib.data.dataset import Batch
from mer_lib.models.base import MERModel, StepOutput
from mer_lib.models.blocks import FcClassifier, SharedEncoder, init_reference
from mer_lib.models.cmd import mean_pairwise_cmd
from mer_lib.models.encoding import FUSION_ORDER, MASK_COLUMN, Encoder, build_encoders, encode_fused, fuse
from mer_lib.models.stage2 import Stage2Model
from mer_lib.models.vae import ConditionVAE, kl_divergence
from mer_lib.noise import NoiseInjector

_NET = {"a": "A", "l": "L", "v": "V"}


class _TwoEncoderMixin:
    """Invariant and specific encoders per modality (``netA_inv`` ... ``netV_spec``)."""

    def _build_encoders(self, cfg: ExperimentConfig) -> None:
        for kind in ("inv", "spec"):
            for m, enc in build_encoders(cfg).items():
                setattr(self, f"net{_NET[m]}_{kind}", enc)

    def encoders(self, kind: str) -> dict[str, Encoder]:
        """``{"a", "l", "v"}`` -> the ``inv`` or ``spec`` encoder."""
        return {m: getattr(self, f"net{_NET[m]}_{kind}") for m in FUSION_ORDER}

    def encoder_subnets(self) -> dict[str, nn.Module]:
        """``A_inv`` ... ``V_spec`` (one param group and clipping norm each)."""
        return {f"{_NET[m]}_{kind}": getattr(self, f"net{_NET[m]}_{kind}")
                for kind in ("inv", "spec") for m in FUSION_ORDER}


class NMERPretrain(_TwoEncoderMixin, MERModel):
    """NMER stage 1: specific + invariant features, classified jointly; CMD aligns the invariant ones."""

    name = "nmer_pretrain"
    needs_teacher = False
    train_conditions = "full"

    def __init__(self, cfg: ExperimentConfig) -> None:
        super().__init__()
        mp = cfg.model_params
        if mp.diffusion_regulariser:
            raise ConfigError("model_params.diffusion_regulariser: the published stage-1 diffusion branch is not "
                              "available: it needs the `diffusers` package (a UNet2DConditionModel), only runs at "
                              "batch size 64, and its output never reaches the classifier or stage 2 (the term is "
                              "mean(UNet_out^2)); set it to false")
        self.cfg = cfg
        self._build_encoders(cfg)
        self.netShared = SharedEncoder(mp.embd_size, variant=mp.shared_encoder, dropout=mp.shared_dropout)
        cls_in = 6 * mp.embd_size + (3 if mp.availability_mask else 0)
        self.netC = FcClassifier(cls_in, mp.cls_layers, cfg.data.num_classes, dropout=mp.cls_dropout,
                                 use_bn=mp.cls_bn)
        init_reference(self)

    def subnets(self) -> dict[str, nn.Module]:
        """The six encoders, ``Shared`` and the classifier ``C``."""
        return {**self.encoder_subnets(), "Shared": self.netShared, "C": self.netC}

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return ``(logits [B, C], invariant features {"a", "l", "v"} -> [B, emb])`` for ``x * mask``."""
        fast = self.cfg.model_params.fast_missing
        feats = batch.features()
        spec = encode_fused(self.encoders("spec"), feats, batch.mask, batch.lengths, fast=fast,
                            rows=batch.index)
        inv = encode_fused(self.encoders("inv"), feats, batch.mask, batch.lengths, fast=fast,
                            rows=batch.index)
        shared = {m: self.netShared(e) for m, e in inv.items()}
        x = torch.cat([fuse(spec), fuse(shared)], dim=-1)
        if self.cfg.model_params.availability_mask:
            x = torch.cat([x, batch.mask.to(x.dtype)], dim=-1)
        return self.netC(x)[0], shared

    def training_step(self, batch: Batch, epoch: int) -> StepOutput:
        """CE + cmd_weight * mean pairwise CMD (reference pair order (L, V), (L, A), (A, V))."""
        mp = self.cfg.model_params
        logits, shared = self(batch)
        ce = F.cross_entropy(logits, batch.label)
        cmd = mean_pairwise_cmd([shared["l"], shared["a"], shared["v"]], k=mp.cmd_k, eps=mp.cmd_eps,
                                variant=mp.cmd_variant, bounds=mp.cmd_bounds or None,
                                pairs=[(0, 2), (0, 1), (1, 2)])
        loss = ce + mp.cmd_weight * cmd
        return StepOutput(logits=logits, loss=loss, terms={"ce": float(ce.detach()), "cmd": float(cmd.detach())})

    def predict_logits(self, batch: Batch) -> torch.Tensor:
        """Evaluation forward (missing inputs zero-filled via the mask)."""
        return self(batch)[0]


class NMER(_TwoEncoderMixin, Stage2Model):
    """NMER stage 2: noise-scheduled training, specific/invariant features, conditional VAE."""

    name = "nmer"
    teacher_models = ("nmer_pretrain",)
    trains_on_noise = True
    init_from_teacher = {**{f"net{_NET[m]}_{k}": f"net{_NET[m]}_{k}" for k in ("inv", "spec") for m in FUSION_ORDER},
                         "netInv": "netShared"}

    def __init__(self, cfg: ExperimentConfig) -> None:
        super().__init__(cfg)
        mp = cfg.model_params
        if mp.availability_mask:
            raise ConfigError("model_params.availability_mask is not supported by nmer: after noise injection "
                              "every modality counts as available, so the mask carries no information")
        self._build_encoders(cfg)
        self.netInv = SharedEncoder(mp.embd_size, variant=mp.shared_encoder, dropout=mp.shared_dropout)
        dim = 3 * mp.embd_size
        self.netVAE = ConditionVAE(dim, dim, mp.vae_latent, dim, layers=mp.vae_layers, heads=mp.vae_heads,
                                   ff_dim=mp.vae_ff, dropout=mp.vae_dropout, attention=mp.vae_attention,
                                   decoder_output=mp.vae_decoder_output)
        cls_in = 2 * dim if mp.nmer_classifier_input == "concat" else dim
        self.netC = FcClassifier(cls_in, mp.cls_layers, cfg.data.num_classes, dropout=mp.cls_dropout,
                                 use_bn=mp.cls_bn)
        for name, child in self.named_children():
            # vae_init: pytorch keeps nn.Transformer's own (xavier) initialisation, which the
            # published kaiming re-init of every "Linear" overrides
            if not (name == "netVAE" and mp.vae_init == "pytorch"):
                init_reference(child)
        self.injector = NoiseInjector(cfg.noise)

    def subnets(self) -> dict[str, nn.Module]:
        """The six encoders, invariant encoder ``Inv``, ``VAE`` and classifier ``C``."""
        return {**self.encoder_subnets(), "Inv": self.netInv, "VAE": self.netVAE, "C": self.netC}

    def forward(self, batch: Batch, sample: bool | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(logits, x_rec, c, mu, logvar)`` for the inputs ``x * mask`` of ``batch``."""
        feats = batch.features()
        spec = encode_fused(self.encoders("spec"), feats, batch.mask, batch.lengths, fast=self.fast,
                            rows=batch.index)
        inv = encode_fused(self.encoders("inv"), feats, batch.mask, batch.lengths, fast=self.fast,
                            rows=batch.index)
        cond = fuse({m: self.netInv(e) for m, e in inv.items()})
        fused = fuse(spec)
        x_rec, mu, logvar = self.netVAE(fused, cond, sample=sample)
        return self.netC(self._classifier_input(x_rec, fused, cond))[0], x_rec, cond, mu, logvar

    def _classifier_input(self, x_rec: torch.Tensor, fused: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x_rec (published), x_rec + fused (residual) or [x_rec, c] (concat)."""
        mode = self.cfg.model_params.nmer_classifier_input
        if mode == "residual":
            return x_rec + fused
        if mode == "concat":
            return torch.cat([x_rec, cond], dim=-1)
        return x_rec

    def kl_weight(self, epoch: int) -> float:
        """KL weight at 0-based ``epoch``: ``kl_weight``, ramped up from 0 over ``kl_warmup_epochs``."""
        mp = self.cfg.model_params
        if mp.kl_warmup_epochs <= 0:
            return mp.kl_weight
        return mp.kl_weight * min(1.0, epoch / mp.kl_warmup_epochs)

    @torch.no_grad()
    def targets(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher targets on the clean full input: ``(T_spec, H)`` [B, 384] each."""
        t = self.teacher
        feats = batch.features()
        spec, inv = {}, {}
        for m in FUSION_ORDER:
            x, lengths = feats[m], batch.lengths[:, MASK_COLUMN[m]]
            for kind, out in (("spec", spec), ("inv", inv)):
                enc = getattr(t, f"net{_NET[m]}_{kind}")
                if self.cfg.model_params.teacher_cache:  # exact: the frozen teacher is deterministic
                    out[m] = self.cache.embed(f"{m}_{kind}", enc, x, lengths, batch.index)
                else:
                    out[m] = enc(x, lengths if getattr(enc, "pool", "") == "masked_maxpool" else None)
        return fuse(spec), fuse({m: t.netShared(e) for m, e in inv.items()})

    def training_step(self, batch: Batch, epoch: int) -> StepOutput:
        """CE + invariant_weight * MSE(c, H) + mse_weight * MSE(x_rec, T_spec) + kl_weight * KL."""
        mp = self.cfg.model_params
        noisy = self.injector.apply(batch, epoch=epoch, train=True)
        logits, x_rec, cond, mu, logvar = self(noisy, sample=True)
        target_spec, target_inv = self.targets(batch)
        ce = F.cross_entropy(logits, batch.label)
        mse_inv = F.mse_loss(cond, target_inv)
        mse_rec = F.mse_loss(x_rec, target_spec)
        kl = kl_divergence(mu, logvar, mp.kl_reduction)
        loss = ce + mp.invariant_weight * mse_inv + mp.mse_weight * mse_rec + self.kl_weight(epoch) * kl
        terms = {"ce": float(ce.detach()), "mse_inv": float(mse_inv.detach()), "mse_rec": float(mse_rec.detach()),
                 "kl": float(kl.detach())}
        return StepOutput(logits=logits, loss=loss, terms=terms)

    def predict_logits(self, batch: Batch) -> torch.Tensor:
        """Evaluation forward on ``x * mask``: z = mu unless ``eval_sample_z``; no teacher."""
        return self(batch, sample=bool(self.cfg.model_params.eval_sample_z))[0]
